//! The SQLite side of [`AccountWriter`] and of natural-key lookups: schema version 3.

use rusqlite::{Connection, OptionalExtension as _, params};

use super::{Db as _, SqliteWriter, to_i64, to_u64};
use exosphere_catalog::accounts::{
    AccountWriter, Org, Pending, PendingKind, ReceivingElsewhere, Token, Upload, UploadState,
    UploadTicket, User,
};
use exosphere_catalog::error::StoreError;
use exosphere_catalog::store::Lookup;

/// Version 3: accounts, tokens, upload tickets, pending publishes and natural-key indexes.
pub(super) fn migrate_v2_to_v3(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(
        "CREATE TABLE users (
             id TEXT PRIMARY KEY,
             username TEXT NOT NULL UNIQUE,
             admin INTEGER NOT NULL
         ) STRICT;
         CREATE TABLE orgs (
             id TEXT PRIMARY KEY,
             name TEXT NOT NULL UNIQUE
         ) STRICT;
         CREATE TABLE org_members (
             org_id TEXT NOT NULL,
             user_id TEXT NOT NULL,
             PRIMARY KEY (org_id, user_id)
         ) STRICT, WITHOUT ROWID;
         CREATE TABLE tokens (
             id TEXT PRIMARY KEY,
             hash TEXT NOT NULL UNIQUE,
             user_id TEXT NOT NULL,
             created INTEGER NOT NULL,
             expires INTEGER NOT NULL
         ) STRICT;
         CREATE TABLE uploads (
             hash TEXT PRIMARY KEY,
             staging TEXT NOT NULL,
             destination TEXT NOT NULL,
             max_size INTEGER NOT NULL,
             expires INTEGER NOT NULL,
             state TEXT NOT NULL,
             size INTEGER,
             sha256 TEXT
         ) STRICT;
         CREATE TABLE pending (
             hash TEXT PRIMARY KEY,
             kind TEXT NOT NULL,
             subject TEXT NOT NULL,
             user_id TEXT NOT NULL,
             record TEXT NOT NULL,
             uploads TEXT NOT NULL,
             expires INTEGER NOT NULL
         ) STRICT;
         CREATE INDEX pending_by_subject ON pending (kind, subject);",
    )?;
    for (_, create) in NATURAL_KEY_INDEXES {
        tx.execute_batch(create)?;
    }
    Ok(())
}

/// The natural-key indexes of the record tables (version 3), by name: what [`find`] reads.
/// Filling an empty table first and building its index after is a sort instead of an insert
/// into a random place of the index per record (`mirror.rs` moves a first mirror so).
pub(super) const NATURAL_KEY_INDEXES: [(&str, &str); 5] = [
    (
        "rec_packages_by_name",
        "CREATE INDEX rec_packages_by_name ON rec_packages (json_extract(json, '$.name'))",
    ),
    (
        "rec_versions_by_key",
        "CREATE INDEX rec_versions_by_key ON rec_versions
             (json_extract(json, '$.packageName'), json_extract(json, '$.version'))",
    ),
    (
        "rec_builds_by_version",
        "CREATE INDEX rec_builds_by_version ON rec_builds (json_extract(json, '$.versionId'))",
    ),
    (
        "rec_release_tracks_by_name",
        "CREATE INDEX rec_release_tracks_by_name ON rec_release_tracks
             (json_extract(json, '$.name'))",
    ),
    (
        "rec_release_versions_by_key",
        "CREATE INDEX rec_release_versions_by_key ON rec_release_versions
             (json_extract(json, '$.track'), json_extract(json, '$.version'))",
    ),
];

/// Record texts by natural key; each query repeats its index's expression exactly, so
/// SQLite answers it from the index.
pub(super) fn find(conn: &Connection, key: &Lookup<'_>) -> Result<Vec<String>, StoreError> {
    let (sql, first, second) = match *key {
        Lookup::Package(name) => (
            "SELECT json FROM rec_packages WHERE json_extract(json, '$.name') = ?1 AND ?2 IS NULL",
            name,
            None,
        ),
        Lookup::Version { package, version } => (
            "SELECT json FROM rec_versions WHERE json_extract(json, '$.packageName') = ?1 \
             AND json_extract(json, '$.version') = ?2",
            package,
            Some(version),
        ),
        Lookup::VersionsOf(package) => (
            "SELECT json FROM rec_versions WHERE json_extract(json, '$.packageName') = ?1 \
             AND ?2 IS NULL ORDER BY seq",
            package,
            None,
        ),
        Lookup::BuildsOf(version_id) => (
            "SELECT json FROM rec_builds WHERE json_extract(json, '$.versionId') = ?1 \
             AND ?2 IS NULL ORDER BY seq",
            version_id,
            None,
        ),
        Lookup::ReleaseTrack(name) => (
            "SELECT json FROM rec_release_tracks WHERE json_extract(json, '$.name') = ?1 \
             AND ?2 IS NULL",
            name,
            None,
        ),
        Lookup::ReleaseVersion { track, version } => (
            "SELECT json FROM rec_release_versions WHERE json_extract(json, '$.track') = ?1 \
             AND json_extract(json, '$.version') = ?2",
            track,
            Some(version),
        ),
        Lookup::ReleaseVersionsOf(track) => (
            "SELECT json FROM rec_release_versions WHERE json_extract(json, '$.track') = ?1 \
             AND ?2 IS NULL ORDER BY seq",
            track,
            None,
        ),
    };
    let mut stmt = conn.prepare_cached(sql).db()?;
    let mut rows = stmt.query(params![first, second]).db()?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().db()? {
        out.push(row.get(0).db()?);
    }
    Ok(out)
}

fn user_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get(0)?,
        username: row.get(1)?,
        admin: row.get(2)?,
    })
}

fn token_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Token> {
    Ok(Token {
        id: row.get(0)?,
        hash: row.get(1)?,
        user_id: row.get(2)?,
        created: row.get(3)?,
        expires: row.get(4)?,
    })
}

/// The upload ticket with this hash, on any connection (a writer's transaction or a
/// read connection).
fn upload(conn: &Connection, hash: &str) -> Result<Option<Upload>, StoreError> {
    type Row = (
        String,
        String,
        i64,
        i64,
        String,
        Option<i64>,
        Option<String>,
    );
    let row: Option<Row> = conn
        .prepare_cached(
            "SELECT staging, destination, max_size, expires, state, size, sha256 \
             FROM uploads WHERE hash = ?1",
        )
        .db()?
        .query_row([hash], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
                row.get(6)?,
            ))
        })
        .optional()
        .db()?;
    let Some((staging, destination, max_size, expires, state, size, sha256)) = row else {
        return Ok(None);
    };
    let state = UploadState::from_columns(&state, size, sha256)?;
    Ok(Some(Upload {
        staging,
        destination,
        max_size: to_u64(max_size, "upload limit")?,
        expires,
        state,
    }))
}

/// [`exosphere_catalog::CatalogStore::upload_ticket`] on a read connection: the ticket, and the user
/// of the pending publish that lists it. Pending publishes keep their tickets as a
/// space-separated list that no index covers, so this reads every pending row of every
/// user with `instr` until one matches: a full scan of the table. That is acceptable at
/// this scale: the table holds only unfinished publishes (at most `--max-open-publishes`
/// per user, plus expired ones until the next sweep), and only a PUT to an existing
/// ticket gets this far, so made-up secrets cannot make it run.
pub(super) fn upload_ticket(
    conn: &Connection,
    hash: &str,
) -> Result<Option<UploadTicket>, StoreError> {
    let Some(upload) = upload(conn, hash)? else {
        return Ok(None);
    };
    let user_id: Option<String> = conn
        .prepare_cached(
            "SELECT user_id FROM pending \
             WHERE instr(' ' || uploads || ' ', ' ' || ?1 || ' ') > 0 LIMIT 1",
        )
        .db()?
        .query_row([hash], |row| row.get(0))
        .optional()
        .db()?;
    Ok(user_id.map(|user_id| UploadTicket { upload, user_id }))
}

impl SqliteWriter<'_> {
    fn one_user(&self, sql: &str, key: &str) -> Result<Option<User>, StoreError> {
        self.conn
            .prepare_cached(sql)
            .db()?
            .query_row([key], user_row)
            .optional()
            .db()
    }

    fn one_org(&self, sql: &str, key: &str) -> Result<Option<Org>, StoreError> {
        self.conn
            .prepare_cached(sql)
            .db()?
            .query_row([key], |row| {
                Ok(Org {
                    id: row.get(0)?,
                    name: row.get(1)?,
                })
            })
            .optional()
            .db()
    }
}

impl AccountWriter for SqliteWriter<'_> {
    fn user_by_name(&mut self, username: &str) -> Result<Option<User>, StoreError> {
        self.one_user(
            "SELECT id, username, admin FROM users WHERE username = ?1",
            username,
        )
    }

    fn user_by_id(&mut self, id: &str) -> Result<Option<User>, StoreError> {
        self.one_user("SELECT id, username, admin FROM users WHERE id = ?1", id)
    }

    fn users(&mut self) -> Result<Vec<User>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, username, admin FROM users ORDER BY username")
            .db()?;
        let users = stmt.query_map([], user_row).db()?;
        users.collect::<rusqlite::Result<_>>().db()
    }

    fn insert_user(&mut self, user: &User) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("INSERT INTO users (id, username, admin) VALUES (?1, ?2, ?3)")
            .db()?
            .execute(params![user.id, user.username, user.admin])
            .db()?;
        Ok(())
    }

    fn org_by_name(&mut self, name: &str) -> Result<Option<Org>, StoreError> {
        self.one_org("SELECT id, name FROM orgs WHERE name = ?1", name)
    }

    fn insert_org(&mut self, org: &Org) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("INSERT INTO orgs (id, name) VALUES (?1, ?2)")
            .db()?
            .execute(params![org.id, org.name])
            .db()?;
        Ok(())
    }

    fn add_org_member(&mut self, org_id: &str, user_id: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO org_members (org_id, user_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            )
            .db()?
            .execute(params![org_id, user_id])
            .db()?;
        Ok(())
    }

    fn is_org_member(&mut self, org_id: &str, user_id: &str) -> Result<bool, StoreError> {
        self.conn
            .prepare_cached("SELECT 1 FROM org_members WHERE org_id = ?1 AND user_id = ?2")
            .db()?
            .query_row(params![org_id, user_id], |_| Ok(()))
            .optional()
            .db()
            .map(|found| found.is_some())
    }

    fn org_members(&mut self, org_id: &str) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT users.username FROM org_members JOIN users ON users.id = org_members.user_id \
                 WHERE org_members.org_id = ?1 ORDER BY users.username",
            )
            .db()?;
        let names = stmt.query_map([org_id], |row| row.get(0)).db()?;
        names.collect::<rusqlite::Result<_>>().db()
    }

    fn insert_token(&mut self, token: &Token) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO tokens (id, hash, user_id, created, expires) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .db()?
            .execute(params![
                token.id,
                token.hash,
                token.user_id,
                token.created,
                token.expires
            ])
            .db()?;
        Ok(())
    }

    fn token_by_hash(&mut self, hash: &str) -> Result<Option<Token>, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT id, hash, user_id, created, expires FROM tokens WHERE hash = ?1",
            )
            .db()?
            .query_row([hash], token_row)
            .optional()
            .db()
    }

    fn tokens(&mut self, user_id: Option<&str>) -> Result<Vec<Token>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, hash, user_id, created, expires FROM tokens \
                 WHERE ?1 IS NULL OR user_id = ?1 ORDER BY created, id",
            )
            .db()?;
        let tokens = stmt.query_map([user_id], token_row).db()?;
        tokens.collect::<rusqlite::Result<_>>().db()
    }

    fn revoke_token(&mut self, id: &str) -> Result<Option<u64>, StoreError> {
        let user_id: Option<String> = self
            .conn
            .prepare_cached("DELETE FROM tokens WHERE id = ?1 RETURNING user_id")
            .db()?
            .query_row([id], |row| row.get(0))
            .optional()
            .db()?;
        let Some(user_id) = user_id else {
            return Ok(None);
        };
        self.withdraw_pending(
            "DELETE FROM pending WHERE user_id = ?1 RETURNING uploads",
            &user_id,
        )
        .map(Some)
    }

    fn put_upload(&mut self, hash: &str, upload: &Upload) -> Result<(), StoreError> {
        let (state, size, sha256) = upload.state.columns()?;
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO uploads \
                 (hash, staging, destination, max_size, expires, state, size, sha256) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .db()?
            .execute(params![
                hash,
                upload.staging,
                upload.destination,
                to_i64(upload.max_size, "upload limit")?,
                upload.expires,
                state,
                size,
                sha256
            ])
            .db()?;
        Ok(())
    }

    /// One server per data directory: every claim is `_server`'s.
    fn end_receiving(
        &mut self,
        hash: &str,
        _server: &str,
        outcome: &UploadState,
        now: i64,
    ) -> Result<bool, StoreError> {
        let (state, size, sha256) = outcome.columns()?;
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE uploads SET state = ?2, size = ?3, sha256 = ?4 \
                 WHERE hash = ?1 AND state = 'receiving' AND expires > ?5",
            )
            .db()?
            .execute(params![hash, state, size, sha256, now])
            .db()?;
        Ok(changed > 0)
    }

    fn upload(&mut self, hash: &str) -> Result<Option<Upload>, StoreError> {
        upload(self.conn, hash)
    }

    fn delete_upload(&mut self, hash: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM uploads WHERE hash = ?1")
            .db()?
            .execute([hash])
            .db()?;
        Ok(())
    }

    fn put_pending(&mut self, hash: &str, pending: &Pending) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO pending \
                 (hash, kind, subject, user_id, record, uploads, expires) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .db()?
            .execute(params![
                hash,
                pending.kind.as_str(),
                pending.subject,
                pending.user_id,
                pending.record,
                pending.uploads.join(" "),
                pending.expires
            ])
            .db()?;
        Ok(())
    }

    fn pending(&mut self, hash: &str) -> Result<Option<Pending>, StoreError> {
        type Row = (String, String, String, String, String, i64);
        let row: Option<Row> = self
            .conn
            .prepare_cached(
                "SELECT kind, subject, user_id, record, uploads, expires FROM pending WHERE hash = ?1",
            )
            .db()?
            .query_row([hash], |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                    row.get(5)?,
                ))
            })
            .optional()
            .db()?;
        let Some((kind, subject, user_id, record, uploads, expires)) = row else {
            return Ok(None);
        };
        Ok(Some(Pending {
            kind: PendingKind::parse(&kind)?,
            subject,
            user_id,
            record,
            uploads: uploads.split_whitespace().map(str::to_owned).collect(),
            expires,
        }))
    }

    fn pending_for(&mut self, kind: PendingKind, subject: &str) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT hash FROM pending WHERE kind = ?1 AND subject = ?2")
            .db()?;
        let hashes = stmt
            .query_map(params![kind.as_str(), subject], |row| row.get(0))
            .db()?;
        hashes.collect::<rusqlite::Result<_>>().db()
    }

    fn open_pending_of(&mut self, user_id: &str, now: i64) -> Result<u64, StoreError> {
        let count: i64 = self
            .conn
            .prepare_cached("SELECT COUNT(*) FROM pending WHERE user_id = ?1 AND expires > ?2")
            .db()?
            .query_row(params![user_id, now], |row| row.get(0))
            .db()?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    fn delete_pending(&mut self, hash: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM pending WHERE hash = ?1")
            .db()?
            .execute([hash])
            .db()?;
        Ok(())
    }

    fn retire_upload(&mut self, hash: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("UPDATE uploads SET expires = 0 WHERE hash = ?1")
            .db()?
            .execute([hash])
            .db()?;
        Ok(())
    }

    /// One server per data directory: the mark needs no owner.
    fn start_receiving(&mut self, hash: &str, _server: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("UPDATE uploads SET state = 'receiving' WHERE hash = ?1")
            .db()?
            .execute([hash])
            .db()?;
        Ok(())
    }

    /// No other server can run on this data directory.
    fn receiving_elsewhere(
        &mut self,
        _server: &str,
        _hash: &str,
        _user_id: &str,
    ) -> Result<ReceivingElsewhere, StoreError> {
        Ok(ReceivingElsewhere::default())
    }

    /// Every receiving ticket: called at the startup of the data directory's one server.
    fn reopen_abandoned_uploads(&mut self) -> Result<u64, StoreError> {
        let reopened = self
            .conn
            .prepare_cached("UPDATE uploads SET state = 'open' WHERE state = 'receiving'")
            .db()?
            .execute([])
            .db()?;
        Ok(u64::try_from(reopened).unwrap_or(u64::MAX))
    }

    /// One server per data directory: every receiving mark is `_server`'s.
    fn reopen_unheld_uploads(&mut self, _server: &str, held: &[String]) -> Result<u64, StoreError> {
        let receiving: Vec<String> = self
            .conn
            .prepare_cached("SELECT hash FROM uploads WHERE state = 'receiving'")
            .db()?
            .query_map([], |row| row.get(0))
            .db()?
            .collect::<Result<_, _>>()
            .db()?;
        let mut reopen = self
            .conn
            .prepare_cached("UPDATE uploads SET state = 'open' WHERE hash = ?1")
            .db()?;
        let mut reopened = 0;
        for hash in receiving.iter().filter(|hash| !held.contains(hash)) {
            reopened += reopen.execute([hash]).db()?;
        }
        Ok(u64::try_from(reopened).unwrap_or(u64::MAX))
    }

    fn expired_uploads(
        &mut self,
        now: i64,
        limit: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT hash, staging FROM uploads WHERE expires < ?1 ORDER BY expires LIMIT ?2",
            )
            .db()?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![now, limit], |row| Ok((row.get(0)?, row.get(1)?)))
            .db()?;
        rows.collect::<rusqlite::Result<_>>().db()
    }

    fn delete_expired_pending(&mut self, now: i64) -> Result<(), StoreError> {
        self.withdraw_pending(
            "DELETE FROM pending WHERE expires < ?1 RETURNING uploads",
            now,
        )
        .map(drop)
    }
}

impl SqliteWriter<'_> {
    /// Runs `delete`, a `DELETE FROM pending … RETURNING uploads` with one parameter, and
    /// retires the upload tickets of every pending publish it deleted; returns how many.
    fn withdraw_pending(
        &mut self,
        delete: &str,
        param: impl rusqlite::ToSql,
    ) -> Result<u64, StoreError> {
        let deleted: Vec<String> = {
            let mut stmt = self.conn.prepare_cached(delete).db()?;
            let rows = stmt.query_map([param], |row| row.get(0)).db()?;
            rows.collect::<rusqlite::Result<_>>().db()?
        };
        for uploads in &deleted {
            for hash in uploads.split_whitespace() {
                self.retire_upload(hash)?;
            }
        }
        Ok(deleted.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use exosphere_catalog::conformance::with;

    use super::*;
    use crate::{DATABASE_FILE, create_v1, migrate_v1_to_v2, open_sqlite, temp_store};

    #[test]
    fn a_version_2_file_is_upgraded_and_its_records_found_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
        let tx = conn.transaction().unwrap();
        create_v1(&tx).unwrap();
        migrate_v1_to_v2(&tx).unwrap();
        tx.pragma_update(None, "user_version", 2).unwrap();
        tx.execute(
            "INSERT INTO rec_packages (seq, id, json) VALUES (1, 'p1', '{\"_id\":\"p1\",\"name\":\"acme:old\"}')",
            [],
        )
        .unwrap();
        tx.commit().unwrap();
        drop(conn);
        let store = open_sqlite(dir.path()).unwrap();
        let found = with(&store, |w| w.find(&Lookup::Package("acme:old")));
        assert_eq!(
            found,
            vec!["{\"_id\":\"p1\",\"name\":\"acme:old\"}".to_owned()]
        );
        let users = with(&store, |w| w.accounts().users());
        assert!(users.is_empty());
    }

    /// Natural-key lookups (checked by the conformance suite) use the expression indexes.
    #[test]
    fn natural_key_lookups_use_their_indexes() {
        let (_dir, _store) = temp_store();
        let conn = Connection::open(_dir.path().join(DATABASE_FILE)).unwrap();
        let plan: String = conn
            .query_row(
                "EXPLAIN QUERY PLAN SELECT json FROM rec_versions WHERE json_extract(json, '$.packageName') = 'a' \
                 AND json_extract(json, '$.version') = 'b'",
                [],
                |row| row.get(3),
            )
            .unwrap();
        assert!(plan.contains("rec_versions_by_key"), "{plan}");
    }
}
