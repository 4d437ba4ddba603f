//! The upstream mirror's rows ([`exosphere_catalog::mirror`]): schema version 4.
//!
//! * `mirror_state`: one row (`id = 1`) with the upstream URL, its tokens, a held reason and
//!   the last success and error;
//! * `mirror_stage`: the staged catalog, `(collection, id, json)` rows appended in arrival
//!   order, with a unique index on `(collection, id)` that pages them in `_id` order (a full
//!   catalog arrives in random `_id` order: keyed by it, every insert of a ~1 KB record would
//!   land in a random page of a growing tree); invisible to sync pages, which read only the
//!   `rec_*` tables;
//! * `mirror_files`: served file key → upstream URL, the SHA-256 its bytes must have, and
//!   its size once it is cached;
//! * `mirror_claims`: names taken over from the upstream for local publishing.

use exosphere_catalog::error::StoreError;
use exosphere_catalog::mirror::{Claim, MirrorState, MirrorWriter, UpstreamFile};
use exosphere_catalog::record::Record;
use exosphere_meteor::{Collection, PerCollection};
use rusqlite::{Connection, OptionalExtension as _, params};

use super::{Db as _, SqliteWriter, snake, to_i64, to_u64};

/// Schema version 3 → 4: the mirror's tables.
pub(super) fn migrate_v3_to_v4(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(
        "CREATE TABLE mirror_state (
             id INTEGER PRIMARY KEY CHECK (id = 1),
             upstream TEXT NOT NULL,
             token TEXT,
             staging_token TEXT,
             held TEXT,
             last_success INTEGER,
             last_error_at INTEGER,
             last_error TEXT,
             sync_requested INTEGER
         ) STRICT;
         CREATE TABLE mirror_stage (
             collection TEXT NOT NULL,
             id TEXT NOT NULL,
             json TEXT NOT NULL
         ) STRICT;
         CREATE UNIQUE INDEX mirror_stage_key ON mirror_stage (collection, id);
         CREATE TABLE mirror_files (
             key TEXT PRIMARY KEY,
             url TEXT NOT NULL,
             sha256 TEXT,
             cached_size INTEGER
         ) STRICT;
         CREATE TABLE mirror_claims (
             kind TEXT NOT NULL,
             name TEXT NOT NULL,
             PRIMARY KEY (kind, name)
         ) STRICT, WITHOUT ROWID;",
    )
}

/// The mirror's state row, if any (a reader or the writer's connection).
pub(super) fn state(conn: &Connection) -> Result<Option<MirrorState>, StoreError> {
    conn.prepare_cached(
        "SELECT upstream, token, staging_token, held, last_success, last_error_at, last_error, \
         sync_requested FROM mirror_state WHERE id = 1",
    )
    .db()?
    .query_row([], |row| {
        let error_at: Option<i64> = row.get(5)?;
        let error: Option<String> = row.get(6)?;
        Ok(MirrorState {
            upstream: row.get(0)?,
            token: row.get(1)?,
            staging_token: row.get(2)?,
            held: row.get(3)?,
            last_success_ms: row.get(4)?,
            last_error: error_at.zip(error),
            sync_requested_ms: row.get(7)?,
        })
    })
    .optional()
    .db()
}

/// The upstream file behind a served key (a reader's connection).
pub(super) fn file(conn: &Connection, key: &str) -> Result<Option<UpstreamFile>, StoreError> {
    conn.prepare_cached("SELECT url, sha256 FROM mirror_files WHERE key = ?1")
        .db()?
        .query_row([key], |row| {
            Ok(UpstreamFile {
                url: row.get(0)?,
                sha256: row.get(1)?,
            })
        })
        .optional()
        .db()
}

/// How many mirrored files are cached, and their bytes (a reader's connection).
pub(super) fn cached(conn: &Connection) -> Result<(u64, u64), StoreError> {
    let (count, bytes): (i64, i64) = conn
        .prepare_cached(
            "SELECT count(cached_size), coalesce(sum(cached_size), 0) FROM mirror_files",
        )
        .db()?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))
        .db()?;
    Ok((
        to_u64(count, "cached files")?,
        to_u64(bytes, "cached bytes")?,
    ))
}

/// A page of file keys in key order (a reader's connection).
pub(super) fn files(
    conn: &Connection,
    after: &str,
    limit: usize,
) -> Result<Vec<(String, UpstreamFile)>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT key, url, sha256 FROM mirror_files WHERE key > ?1 ORDER BY key LIMIT ?2",
        )
        .db()?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = stmt
        .query_map(params![after, limit], |row| {
            Ok((
                row.get(0)?,
                UpstreamFile {
                    url: row.get(1)?,
                    sha256: row.get(2)?,
                },
            ))
        })
        .db()?;
    rows.collect::<rusqlite::Result<Vec<_>>>().db()
}

impl MirrorWriter for SqliteWriter<'_> {
    fn state(&mut self) -> Result<Option<MirrorState>, StoreError> {
        state(self.conn)
    }

    fn put_state(&mut self, state: &MirrorState) -> Result<(), StoreError> {
        let (error_at, error) = match &state.last_error {
            Some((at, error)) => (Some(*at), Some(error.as_str())),
            None => (None, None),
        };
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO mirror_state (id, upstream, token, staging_token, held, \
                 last_success, last_error_at, last_error, sync_requested) \
                 VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .db()?
            .execute(params![
                state.upstream,
                state.token,
                state.staging_token,
                state.held,
                state.last_success_ms,
                error_at,
                error,
                state.sync_requested_ms
            ])
            .db()?;
        Ok(())
    }

    fn stage(&mut self, record: &Record) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO mirror_stage (collection, id, json) VALUES (?1, ?2, ?3)",
            )
            .db()?
            .execute(params![
                record.collection().as_str(),
                record.id(),
                record.json()
            ])
            .db()?;
        Ok(())
    }

    fn staged(
        &mut self,
        collection: Collection,
        after: &str,
        limit: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, json FROM mirror_stage WHERE collection = ?1 AND id > ?2 \
                 ORDER BY id LIMIT ?3",
            )
            .db()?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![collection.as_str(), after, limit], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .db()?;
        rows.collect::<rusqlite::Result<Vec<_>>>().db()
    }

    fn staged_counts(&mut self) -> Result<PerCollection<u64>, StoreError> {
        let mut counts = PerCollection::from_fn(|_| 0);
        for collection in Collection::ALL {
            let count: i64 = self
                .conn
                .prepare_cached("SELECT count(*) FROM mirror_stage WHERE collection = ?1")
                .db()?
                .query_row([collection.as_str()], |row| row.get(0))
                .db()?;
            counts[collection] = to_u64(count, "staged count")?;
        }
        Ok(counts)
    }

    fn served_counts(&mut self) -> Result<PerCollection<u64>, StoreError> {
        let mut counts = PerCollection::from_fn(|_| 0);
        for collection in Collection::ALL {
            let count: i64 = self
                .conn
                .prepare_cached(&format!("SELECT count(*) FROM rec_{}", snake(collection)))
                .db()?
                .query_row([], |row| row.get(0))
                .db()?;
            counts[collection] = to_u64(count, "record count")?;
        }
        Ok(counts)
    }

    fn is_staged(&mut self, collection: Collection, id: &str) -> Result<bool, StoreError> {
        self.conn
            .prepare_cached("SELECT 1 FROM mirror_stage WHERE collection = ?1 AND id = ?2")
            .db()?
            .query_row(params![collection.as_str(), id], |_| Ok(()))
            .optional()
            .db()
            .map(|found| found.is_some())
    }

    fn clear_stage(&mut self) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM mirror_stage")
            .db()?
            .execute([])
            .db()?;
        Ok(())
    }

    fn put_file(&mut self, key: &str, file: &UpstreamFile) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO mirror_files (key, url, sha256) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (key) DO UPDATE SET url = excluded.url, sha256 = excluded.sha256, \
                 cached_size = CASE WHEN sha256 IS excluded.sha256 THEN cached_size END \
                 WHERE url IS NOT excluded.url OR sha256 IS NOT excluded.sha256",
            )
            .db()?
            .execute(params![key, file.url, file.sha256])
            .db()?;
        Ok(())
    }

    fn mark_cached(&mut self, key: &str, size: Option<u64>) -> Result<(), StoreError> {
        let size = size.map(|size| to_i64(size, "file size")).transpose()?;
        self.conn
            .prepare_cached("UPDATE mirror_files SET cached_size = ?2 WHERE key = ?1")
            .db()?
            .execute(params![key, size])
            .db()?;
        Ok(())
    }

    fn claim(&mut self, claim: &Claim) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("INSERT OR IGNORE INTO mirror_claims (kind, name) VALUES (?1, ?2)")
            .db()?
            .execute(params![claim.kind(), claim.name()])
            .db()?;
        Ok(())
    }

    fn is_claimed(&mut self, claim: &Claim) -> Result<bool, StoreError> {
        self.conn
            .prepare_cached("SELECT 1 FROM mirror_claims WHERE kind = ?1 AND name = ?2")
            .db()?
            .query_row(params![claim.kind(), claim.name()], |_| Ok(()))
            .optional()
            .db()
            .map(|found| found.is_some())
    }

    fn claims(&mut self) -> Result<Vec<Claim>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT kind, name FROM mirror_claims ORDER BY kind, name")
            .db()?;
        let rows = stmt
            .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get(1)?)))
            .db()?;
        let mut claims = Vec::new();
        for row in rows {
            let (kind, name) = row.db()?;
            claims.push(
                Claim::from_parts(&kind, name)
                    .ok_or_else(|| StoreError::Corrupt(format!("unknown claim kind {kind}")))?,
            );
        }
        Ok(claims)
    }
}
