//! The PostgreSQL side of the audit log ([`exosphere_catalog::audit`]): the `audit` table,
//! appended to in the transaction of each action it records, indexed for reading it newest
//! first by time, actor or package.

use exosphere_catalog::audit::{AuditEntry, AuditQuery, detail_from_text};
use exosphere_catalog::error::StoreError;

use crate::session::{Session, col};

/// Appends `entry`.
pub(crate) fn insert(s: &mut Session<'_, '_>, entry: &AuditEntry) -> Result<(), StoreError> {
    s.execute(
        "INSERT INTO audit (time, actor, address, action, target, package, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &entry.time,
            &entry.actor,
            &entry.address,
            &entry.action,
            &entry.target,
            &entry.package,
            &entry.detail.to_string(),
        ],
    )?;
    Ok(())
}

/// The entries matching `query`, newest first.
pub(crate) fn read(
    s: &mut Session<'_, '_>,
    query: &AuditQuery,
) -> Result<Vec<AuditEntry>, StoreError> {
    let limit = match query.limit {
        0 => i64::MAX,
        n => i64::try_from(n).unwrap_or(i64::MAX),
    };
    s.query(
        "SELECT time, actor, address, action, target, package, detail FROM audit \
         WHERE ($1::text IS NULL OR actor = $1) AND ($2::text IS NULL OR package = $2) \
         AND ($3::bigint IS NULL OR time >= $3) AND ($4::bigint IS NULL OR time < $4) \
         ORDER BY time DESC, id DESC LIMIT $5",
        &[
            &query.actor,
            &query.package,
            &query.since,
            &query.until,
            &limit,
        ],
    )?
    .iter()
    .map(|row| {
        let detail: String = col(row, 6)?;
        Ok(AuditEntry {
            time: col(row, 0)?,
            actor: col(row, 1)?,
            address: col(row, 2)?,
            action: col(row, 3)?,
            target: col(row, 4)?,
            package: col(row, 5)?,
            detail: detail_from_text(detail),
        })
    })
    .collect()
}
