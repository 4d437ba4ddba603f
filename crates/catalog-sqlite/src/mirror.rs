//! The upstream mirror's rows ([`exosphere_catalog::mirror`]): schema versions 4 to 6.
//!
//! * `mirror_state`: one row (`id = 1`) with the upstream URL, its tokens, a held reason and
//!   the last success and error;
//! * `mirror_stage`: the staged catalog, `(collection, id, json)` rows appended in arrival
//!   order, with a unique index on `(collection, id)` that pages them in `_id` order (a full
//!   catalog arrives in random `_id` order: keyed by it, every insert of a ~1 KB record would
//!   land in a random page of a growing tree); invisible to sync pages, which read only the
//!   `rec_*` tables. Version 5 adds `last_updated` (the record's, as `rec_*` tables keep it)
//!   and an index on `collection` alone, whose entries are in row order: a whole staged
//!   catalog moves into empty `rec_*` tables in one `INSERT … SELECT` per collection, in the
//!   order it was staged, reading the table from start to end rather than a random row per
//!   record, and without a row going through Rust (the natural-key indexes of the `rec_*`
//!   tables dropped and built again after, in the same savepoint);
//!
//!   Version 6 drops the unique index while records are staged: keys in random order dirty
//!   most of its pages in every batch of pages committed, so each commit wrote the whole
//!   index to the WAL again (a first mirror of packages.meteor.com's size spent most of its
//!   staging time there). Staging appends (a record staged again is a second row); the
//!   first read of the stage ([`SqliteWriter::settle_stage`]) keeps the last row of each
//!   `(collection, id)` and builds the index once, sorted, and emptying the stage drops it;
//! * `mirror_files`: served file key → upstream URL, the SHA-256 its bytes must have, and
//!   its size once it is cached; version 5 adds a partial index of the cached ones, so
//!   `/healthz` counts them without reading every key a catalog names (half a million for
//!   packages.meteor.com);
//! * `mirror_stage_files` (version 6): the file entries of staged records, appended in
//!   arrival order and moved into `mirror_files` in key order when the stage is served, for
//!   the same reason: `mirror_files`' key index is as random as the stage's;
//! * `mirror_claims`: names taken over from the upstream for local publishing.

use exosphere_catalog::error::StoreError;
use exosphere_catalog::mirror::{Claim, MirrorState, MirrorWriter, UpstreamFile};
use exosphere_catalog::record::Record;
use exosphere_meteor::{Collection, PerCollection};
use rusqlite::{Connection, OptionalExtension as _, params};

use super::accounts::NATURAL_KEY_INDEXES;
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

/// Schema version 4 → 5: staged records keep their `lastUpdated` and are indexed in the order
/// they were staged, and cached files are indexed. Records staged before it get
/// theirs from their text; one that no longer passes as a record (staged before records were
/// bounded in size) is dropped, as the mirror now drops such an upstream record.
pub(super) fn migrate_v4_to_v5(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(
        "ALTER TABLE mirror_stage ADD COLUMN last_updated INTEGER;
         CREATE INDEX mirror_stage_order ON mirror_stage (collection);
         CREATE INDEX mirror_files_cached ON mirror_files (cached_size)
             WHERE cached_size IS NOT NULL;",
    )?;
    let mut staged = Vec::new();
    {
        let mut stmt = tx.prepare("SELECT rowid, collection, json FROM mirror_stage")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let (rowid, collection, json): (i64, String, String) =
                (row.get(0)?, row.get(1)?, row.get(2)?);
            let record = collection
                .parse::<Collection>()
                .ok()
                .and_then(|collection| Record::from_json(collection, &json).ok());
            staged.push((rowid, record.map(|record| record.last_updated())));
        }
    }
    for (rowid, last_updated) in staged {
        match last_updated {
            Some(last_updated) => tx.execute(
                "UPDATE mirror_stage SET last_updated = ?2 WHERE rowid = ?1",
                params![rowid, last_updated],
            )?,
            None => tx.execute("DELETE FROM mirror_stage WHERE rowid = ?1", [rowid])?,
        };
    }
    Ok(())
}

/// Schema version 5 → 6: staging appends, without the stage's unique index (built when the
/// stage is first read), and staged records' file entries wait in a table of their own.
pub(super) fn migrate_v5_to_v6(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(
        "DROP INDEX mirror_stage_key;
         CREATE TABLE mirror_stage_files (
             key TEXT NOT NULL,
             url TEXT NOT NULL,
             sha256 TEXT
         ) STRICT;",
    )
}

/// The stage's unique index, which exists only while a staged catalog is being read.
const STAGE_KEY_INDEX: &str =
    "CREATE UNIQUE INDEX mirror_stage_key ON mirror_stage (collection, id)";

/// The upsert of one file entry, from `?1, ?2, ?3` (key, url, sha256) or, with the values
/// clause replaced, from a query: only an entry without a hash changes, and one that gets a
/// hash is no longer counted as cached (`MirrorWriter::put_file`).
const UPSERT_FILE: &str = "ON CONFLICT (key) DO UPDATE SET url = excluded.url, \
     sha256 = excluded.sha256, cached_size = CASE WHEN sha256 IS excluded.sha256 THEN \
     cached_size END WHERE sha256 IS NULL \
     AND (url IS NOT excluded.url OR sha256 IS NOT excluded.sha256)";

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

/// The count and bytes of the cached files, read from their partial index alone.
const CACHED: &str = "SELECT count(*), coalesce(sum(cached_size), 0) FROM mirror_files \
                      WHERE cached_size IS NOT NULL";

/// How many mirrored files are cached, and their bytes (a reader's connection).
pub(super) fn cached(conn: &Connection) -> Result<(u64, u64), StoreError> {
    let (count, bytes): (i64, i64) = conn
        .prepare_cached(CACHED)
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

/// Per collection with a natural key, a query that finds a served record sharing its key with
/// another (the lookups of `accounts::find`, through the same expression indexes).
const DUPLICATE_KEYS: [&str; 4] = [
    "SELECT 1 FROM rec_packages WHERE json_extract(json, '$.name') IS NOT NULL \
     GROUP BY json_extract(json, '$.name') HAVING count(*) > 1 LIMIT 1",
    "SELECT 1 FROM rec_versions WHERE json_extract(json, '$.packageName') IS NOT NULL \
     AND json_extract(json, '$.version') IS NOT NULL \
     GROUP BY json_extract(json, '$.packageName'), json_extract(json, '$.version') \
     HAVING count(*) > 1 LIMIT 1",
    "SELECT 1 FROM rec_release_tracks WHERE json_extract(json, '$.name') IS NOT NULL \
     GROUP BY json_extract(json, '$.name') HAVING count(*) > 1 LIMIT 1",
    "SELECT 1 FROM rec_release_versions WHERE json_extract(json, '$.track') IS NOT NULL \
     AND json_extract(json, '$.version') IS NOT NULL \
     GROUP BY json_extract(json, '$.track'), json_extract(json, '$.version') \
     HAVING count(*) > 1 LIMIT 1",
];

/// Whether no two served records share a natural key.
fn natural_keys_unique(conn: &Connection) -> Result<bool, StoreError> {
    for sql in DUPLICATE_KEYS {
        let duplicate = conn
            .prepare_cached(sql)
            .db()?
            .query_row([], |_| Ok(()))
            .optional()
            .db()?;
        if duplicate.is_some() {
            return Ok(false);
        }
    }
    Ok(true)
}

impl SqliteWriter<'_> {
    /// Makes the stage readable: keeps only the last row staged of each `(collection, id)`
    /// and builds the stage's unique index, once per staged catalog (staging appends without
    /// it, see the module doc).
    fn settle_stage(&mut self) -> Result<(), StoreError> {
        let indexed = self
            .conn
            .prepare_cached(
                "SELECT 1 FROM sqlite_schema WHERE type = 'index' AND name = 'mirror_stage_key'",
            )
            .db()?
            .query_row([], |_| Ok(()))
            .optional()
            .db()?
            .is_some();
        if !indexed {
            self.conn
                .execute_batch(&format!(
                    "DELETE FROM mirror_stage WHERE rowid NOT IN \
                     (SELECT max(rowid) FROM mirror_stage GROUP BY collection, id);
                     {STAGE_KEY_INDEX};"
                ))
                .db()?;
        }
        Ok(())
    }

    /// Appends every staged record to its `rec_*` table, collection by collection in the order
    /// they were staged, with the sequence numbers and change counts one upsert each would
    /// have given; returns how many, or `None` when a record was staged twice and the stage
    /// is not settled (the `rec_*` tables' unique `_id` refuses the second: the caller rolls
    /// back, settles and moves again). The tables are empty, so their natural-key indexes are
    /// built after the records are in.
    fn move_stage(&mut self) -> Result<Option<u64>, StoreError> {
        for (name, _) in NATURAL_KEY_INDEXES {
            self.conn
                .execute_batch(&format!("DROP INDEX {name}"))
                .db()?;
        }
        let mut moved = 0;
        for collection in Collection::ALL {
            let head = to_i64(self.head_seq, "head_seq")?;
            let inserted = self
                .conn
                .prepare_cached(&format!(
                    "INSERT INTO rec_{} (seq, id, last_updated, json) \
                     SELECT ?1 + row_number() OVER (ORDER BY rowid), id, last_updated, json \
                     FROM mirror_stage INDEXED BY mirror_stage_order WHERE collection = ?2 \
                     ORDER BY rowid",
                    snake(collection)
                ))
                .db()?
                .execute(params![head, collection.as_str()]);
            let count = match inserted {
                Ok(count) => count as u64,
                Err(rusqlite::Error::SqliteFailure(error, _))
                    if error.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
                {
                    return Ok(None);
                }
                Err(error) => return Err(error).db(),
            };
            self.head_seq = self
                .head_seq
                .checked_add(count)
                .ok_or_else(|| StoreError::Corrupt("sequence numbers exhausted".into()))?;
            self.changes[collection] = self.changes[collection].saturating_add(count);
            self.modified |= count > 0;
            moved += count;
        }
        for (_, create) in NATURAL_KEY_INDEXES {
            self.conn.execute_batch(create).db()?;
        }
        Ok(Some(moved))
    }

    /// [`move_stage`](Self::move_stage) inside a savepoint, kept only if it moved every
    /// record and no two served records share a natural key: `Ok(Err(twice))` when it changed
    /// nothing, `twice` telling whether a record staged twice stopped it.
    fn try_move_stage(&mut self) -> Result<Result<u64, bool>, StoreError> {
        let (head_seq, changes, modified) = (self.head_seq, self.changes.clone(), self.modified);
        self.conn.execute_batch("SAVEPOINT serve_stage").db()?;
        let moved = self.move_stage().and_then(|moved| match moved {
            Some(moved) => Ok(if natural_keys_unique(self.conn)? {
                Ok(moved)
            } else {
                Err(false)
            }),
            None => Ok(Err(true)),
        });
        if let Ok(Ok(_)) = moved {
            self.conn.execute_batch("RELEASE serve_stage").db()?;
            return moved;
        }
        self.conn
            .execute_batch("ROLLBACK TO serve_stage; RELEASE serve_stage")
            .db()?;
        self.head_seq = head_seq;
        self.changes = changes;
        self.modified = modified;
        moved
    }
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
                "INSERT OR REPLACE INTO mirror_stage (collection, id, json, last_updated) \
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .db()?
            .execute(params![
                record.collection().as_str(),
                record.id(),
                record.json(),
                record.last_updated()
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
        self.settle_stage()?;
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
        self.settle_stage()?;
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
        self.settle_stage()?;
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
            .execute_batch(
                "DELETE FROM mirror_stage; DELETE FROM mirror_stage_files;
                 DROP INDEX IF EXISTS mirror_stage_key;",
            )
            .db()
    }

    fn stage_file(&mut self, key: &str, file: &UpstreamFile) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("INSERT INTO mirror_stage_files (key, url, sha256) VALUES (?1, ?2, ?3)")
            .db()?
            .execute(params![key, file.url, file.sha256])
            .db()?;
        Ok(())
    }

    fn serve_staged_files(&mut self) -> Result<(), StoreError> {
        // In key order, so that `mirror_files`' key index is written from start to end; the
        // entries of one key in the order staged, so that the last one wins. `WHERE true`
        // keeps SQLite from reading `ON CONFLICT` as a join constraint.
        self.conn
            .execute_batch(&format!(
                "INSERT INTO mirror_files (key, url, sha256) \
                 SELECT key, url, sha256 FROM mirror_stage_files WHERE true \
                 ORDER BY key, rowid {UPSERT_FILE};
                 DELETE FROM mirror_stage_files;"
            ))
            .db()
    }

    fn serve_stage(&mut self) -> Result<Option<u64>, StoreError> {
        for collection in Collection::ALL {
            let any: bool = self
                .conn
                .prepare_cached(&format!(
                    "SELECT EXISTS (SELECT 1 FROM rec_{})",
                    snake(collection)
                ))
                .db()?
                .query_row([], |row| row.get(0))
                .db()?;
            if any {
                return Ok(None);
            }
        }
        // The records go in first, and the natural keys are checked in the served tables'
        // own indexes (an index scan; the stage has no such index); a duplicate rolls the
        // move back. A first mirror rarely stages a record twice (only one that changed
        // upstream while it was staged), so the stage is moved as it is, and settled (its
        // duplicates dropped) only if a twice-staged `_id` stopped the move.
        let moved = match self.try_move_stage()? {
            Err(true) => {
                self.settle_stage()?;
                self.try_move_stage()?
            }
            moved => moved,
        };
        match moved {
            Ok(moved) => {
                self.conn.execute_batch("DELETE FROM mirror_stage").db()?;
                Ok(Some(moved))
            }
            Err(_) => Ok(None),
        }
    }

    fn put_file(&mut self, key: &str, file: &UpstreamFile) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(&format!(
                "INSERT INTO mirror_files (key, url, sha256) VALUES (?1, ?2, ?3) {UPSERT_FILE}"
            ))
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

#[cfg(test)]
mod tests {
    use exosphere_catalog::conformance::with;

    use super::*;
    use crate::{DATABASE_FILE, MIGRATIONS, create_v1, open_sqlite, temp_store};

    #[test]
    fn records_staged_before_version_5_get_their_date_or_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
        let tx = conn.transaction().unwrap();
        create_v1(&tx).unwrap();
        for step in &MIGRATIONS[..3] {
            step(&tx).unwrap();
        }
        tx.pragma_update(None, "user_version", 4).unwrap();
        let oversized = format!(
            r#"{{"_id":"big","s":"{}"}}"#,
            "x".repeat(exosphere_catalog::record::MAX_RECORD_SIZE)
        );
        for (id, json) in [
            (
                "v1",
                r#"{"_id":"v1","lastUpdated":{"$date":42}}"#.to_owned(),
            ),
            ("v2", r#"{"_id":"v2"}"#.to_owned()),
            ("big", oversized),
        ] {
            tx.execute(
                "INSERT INTO mirror_stage (collection, id, json) VALUES ('versions', ?1, ?2)",
                params![id, json],
            )
            .unwrap();
        }
        tx.commit().unwrap();
        drop(conn);
        let store = open_sqlite(dir.path()).unwrap();
        let conn = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
        let rows: Vec<(String, Option<i64>)> = conn
            .prepare("SELECT id, last_updated FROM mirror_stage ORDER BY id")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(rows, [("v1".to_owned(), Some(42)), ("v2".to_owned(), None)]);
        assert_eq!(with(&store, |w| w.mirror().serve_stage()), Some(2));
    }

    /// `/healthz` counts cached files in their partial index.
    #[test]
    fn cached_files_are_counted_in_their_index() {
        let (dir, _store) = temp_store();
        let conn = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
        let plan: String = conn
            .query_row(&format!("EXPLAIN QUERY PLAN {CACHED}"), [], |row| {
                row.get(3)
            })
            .unwrap();
        assert!(plan.contains("mirror_files_cached"), "{plan}");
    }

    /// The duplicate check of a moved stage reads the expression indexes, not every record.
    #[test]
    fn duplicate_natural_keys_are_found_in_their_indexes() {
        let (dir, _store) = temp_store();
        let conn = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
        for sql in DUPLICATE_KEYS {
            let plan: String = conn
                .query_row(&format!("EXPLAIN QUERY PLAN {sql}"), [], |row| row.get(3))
                .unwrap();
            assert!(plan.contains("USING COVERING INDEX"), "{sql}: {plan}");
        }
    }
}
