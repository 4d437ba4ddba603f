//! The SQLite side of the audit log ([`exosphere_catalog::audit`]): schema version 7.

use rusqlite::{Connection, params};

use super::Db as _;
use exosphere_catalog::audit::{AuditEntry, AuditQuery, detail_from_text};
use exosphere_catalog::error::StoreError;

/// Version 7: the `audit` table, appended to in the transaction of each action it records,
/// with indexes for reading it newest first by time, actor or package.
pub(super) fn migrate_v6_to_v7(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(
        "CREATE TABLE audit (
             id INTEGER PRIMARY KEY,
             time INTEGER NOT NULL,
             actor TEXT NOT NULL,
             address TEXT,
             action TEXT NOT NULL,
             target TEXT NOT NULL,
             package TEXT,
             detail TEXT NOT NULL
         ) STRICT;
         CREATE INDEX audit_by_time ON audit (time, id);
         CREATE INDEX audit_by_actor ON audit (actor, time, id);
         CREATE INDEX audit_by_package ON audit (package, time, id);",
    )
}

/// Appends `entry`.
pub(super) fn insert(conn: &Connection, entry: &AuditEntry) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO audit (time, actor, address, action, target, package, detail) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .db()?
    .execute(params![
        entry.time,
        entry.actor,
        entry.address,
        entry.action,
        entry.target,
        entry.package,
        entry.detail.to_string()
    ])
    .db()?;
    Ok(())
}

/// The entries matching `query`, newest first.
pub(super) fn read(conn: &Connection, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
    let limit = match query.limit {
        0 => i64::MAX,
        n => i64::try_from(n).unwrap_or(i64::MAX),
    };
    let mut statement = conn
        .prepare_cached(
            "SELECT time, actor, address, action, target, package, detail FROM audit \
             WHERE (?1 IS NULL OR actor = ?1) AND (?2 IS NULL OR package = ?2) \
             AND (?3 IS NULL OR time >= ?3) AND (?4 IS NULL OR time < ?4) \
             ORDER BY time DESC, id DESC LIMIT ?5",
        )
        .db()?;
    let rows = statement
        .query_map(
            params![query.actor, query.package, query.since, query.until, limit],
            |row| {
                let detail: String = row.get(6)?;
                Ok(AuditEntry {
                    time: row.get(0)?,
                    actor: row.get(1)?,
                    address: row.get(2)?,
                    action: row.get(3)?,
                    target: row.get(4)?,
                    package: row.get(5)?,
                    detail: detail_from_text(detail),
                })
            },
        )
        .db()?;
    rows.collect::<rusqlite::Result<Vec<_>>>().db()
}
