//! [`SqliteReplica`]: a [`SyncReplica`] in a SQLite file of its own, from which a server on
//! a shared database (PostgreSQL) answers sync pages in its own process.
//!
//! The file holds the catalog's record tables exactly as a catalog file does (the same
//! columns, so a page is read by the catalog's own reader, [`read_page_in`]) and one row,
//! `replica`, with the primary's epoch and head it holds. Nothing else: no lookup indexes,
//! since the replica is only paged by `seq`, and no accounts or stats. It is a cache of the
//! primary, never a catalog: another `PRAGMA application_id` keeps `exosphere serve` from
//! opening it as one. A file this build cannot read (a replica of another version, or not a
//! database at all) is replaced by an empty one, which the next catch-up fills again; another
//! application's database (a catalog, say) is refused, never replaced.
//!
//! `synchronous = NORMAL`: a crash may lose the last catch-ups, and then the file holds the
//! snapshot before them, whole (WAL commits are atomic), which the next catch-up brings up
//! to date. The primary is where durability is kept.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use exosphere_catalog::columns::{snake, to_i64, to_u64};
use exosphere_catalog::error::StoreError;
use exosphere_catalog::replica::{ReplicaRow, ReplicaSink, SyncReplica};
use exosphere_catalog::store::{Cursors, Page, PageLimits, Snapshot};
use exosphere_meteor::{Collection, PerCollection};
use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior, params};

use crate::{Db as _, ReaderPool, Sql, open_connection, read_page_in, record_tables_sql};

/// `PRAGMA application_id` of sync replicas: "EXOR" in ASCII.
const REPLICA_APPLICATION_ID: i64 = 0x4558_4F52;

/// `PRAGMA user_version` of the replica's schema.
const REPLICA_VERSION: i64 = 1;

/// How many read connections the replica keeps open.
const IDLE_READERS: usize = 4;

/// How long a read waits for the file's lock (only a checkpoint takes it), and a
/// checkpoint for the reads before it.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// A catch-up of at least this many records is copied into the file and the WAL emptied
/// when it commits. Reads search the WAL's index for every page they read until the WAL is
/// emptied, which SQLite leaves to the next write: a sync read through the WAL of a whole
/// copy (hundreds of megabytes) took twice as long.
const CHECKPOINT_AFTER_ROWS: u64 = 10_000;

/// A local copy of a primary store's records in a SQLite file (see the module doc).
pub struct SqliteReplica {
    writer: Mutex<Connection>,
    readers: ReaderPool,
    sql: Sql,
    inserts: PerCollection<String>,
    path: PathBuf,
}

impl SqliteReplica {
    /// Opens the replica at `path`, creating it, or replacing a file that is not a replica
    /// this build reads by an empty one (logged).
    pub fn open(path: &Path) -> Result<SqliteReplica, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                path: dir.to_owned(),
                source,
            })?;
        }
        let mut writer = open_connection(path, BUSY_TIMEOUT)?;
        if let Found::Stale = found(&writer, path)? {
            drop(writer);
            tracing::warn!(path = %path.display(), "the sync replica is not one this build reads; starting an empty one");
            for suffix in ["", "-wal", "-shm"] {
                let file = PathBuf::from(format!("{}{suffix}", path.display()));
                match std::fs::remove_file(&file) {
                    Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
                        return Err(StoreError::Io { path: file, source });
                    }
                    _ => {}
                }
            }
            writer = open_connection(path, BUSY_TIMEOUT)?;
        }
        writer.pragma_update(None, "journal_mode", "WAL").db()?;
        writer.pragma_update(None, "synchronous", "NORMAL").db()?;
        create_schema(&mut writer)?;
        Ok(SqliteReplica {
            writer: Mutex::new(writer),
            readers: ReaderPool::open(path.to_owned(), BUSY_TIMEOUT, IDLE_READERS)?,
            sql: Sql::new(),
            inserts: PerCollection::from_fn(|c| {
                format!(
                    "INSERT OR REPLACE INTO rec_{} (seq, id, last_updated, json) \
                     VALUES (?1, ?2, ?3, ?4)",
                    snake(c)
                )
            }),
            path: path.to_owned(),
        })
    }
}

/// What [`SqliteReplica::open`] found in its file.
enum Found {
    /// A replica of this build's version, or an empty file.
    Usable,
    /// A replica of another version, or not a database at all: replaced.
    Stale,
}

/// What the file `conn` opened holds; another application's database (a catalog, say) is
/// an error, never replaced.
fn found(conn: &Connection, path: &Path) -> Result<Found, StoreError> {
    let pragma = |name: &str| -> Result<i64, StoreError> {
        conn.query_row(&format!("PRAGMA {name}"), [], |row| row.get(0))
            .db()
    };
    let (app_id, version) = match (pragma("application_id"), pragma("user_version")) {
        (Ok(app_id), Ok(version)) => (app_id, version),
        // The header cannot be read: not a database.
        (Err(StoreError::Database(_)), _) | (_, Err(StoreError::Database(_))) => {
            return Ok(Found::Stale);
        }
        (Err(error), _) | (_, Err(error)) => return Err(error),
    };
    if app_id == REPLICA_APPLICATION_ID {
        return Ok(if version == REPLICA_VERSION {
            Found::Usable
        } else {
            Found::Stale
        });
    }
    let objects: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))
        .db()?;
    if app_id == 0 && objects == 0 {
        return Ok(Found::Usable);
    }
    Err(StoreError::NotACatalog(path.to_owned()))
}

/// Creates the replica's tables in a fresh file; nothing in a current one.
fn create_schema(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .db()?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .db()?;
    if version == REPLICA_VERSION {
        return tx.commit().db();
    }
    let mut sql = format!(
        "PRAGMA application_id = {REPLICA_APPLICATION_ID};
         PRAGMA user_version = {REPLICA_VERSION};
         CREATE TABLE replica (
             id INTEGER PRIMARY KEY CHECK (id = 1),
             epoch TEXT NOT NULL,
             head_seq INTEGER NOT NULL
         ) STRICT;
         INSERT INTO replica (id, epoch, head_seq) VALUES (1, '', 0);"
    );
    sql.push_str(&record_tables_sql());
    tx.execute_batch(&sql).db()?;
    tx.commit().db()
}

/// The snapshot the replica holds, read on `conn`.
fn held_on(conn: &Connection) -> Result<Snapshot, StoreError> {
    let (epoch, head): (String, i64) = conn
        .prepare_cached("SELECT epoch, head_seq FROM replica WHERE id = 1")
        .db()?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()
        .db()?
        .ok_or_else(|| StoreError::Corrupt("the sync replica's row is missing".into()))?;
    Ok(Snapshot {
        epoch,
        head_seq: to_u64(head, "the sync replica's head")?,
    })
}

/// The rows of one catch-up, written into its transaction.
struct Sink<'a> {
    tx: &'a Connection,
    inserts: &'a PerCollection<String>,
    /// How many rows were put.
    put: u64,
}

impl ReplicaSink for Sink<'_> {
    fn reset(&mut self) -> Result<(), StoreError> {
        for c in Collection::ALL {
            self.tx
                .execute(&format!("DELETE FROM rec_{}", snake(c)), [])
                .db()?;
        }
        Ok(())
    }

    fn put(&mut self, row: &ReplicaRow) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(&self.inserts[row.collection])
            .db()?
            .execute(params![
                to_i64(row.seq, "seq")?,
                row.id,
                row.last_updated,
                row.json
            ])
            .db()?;
        self.put += 1;
        Ok(())
    }
}

impl SyncReplica for SqliteReplica {
    fn held(&self) -> Result<Snapshot, StoreError> {
        self.readers.with(|conn| held_on(conn))
    }

    fn apply(
        &self,
        feed: &mut dyn FnMut(&Snapshot, &mut dyn ReplicaSink) -> Result<Snapshot, StoreError>,
    ) -> Result<Snapshot, StoreError> {
        // A panic inside `feed` poisons the mutex, but the transaction rolled back while
        // unwinding, so the connection is clean.
        let mut conn = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .db()?;
        let held = held_on(&tx)?;
        let mut sink = Sink {
            tx: &tx,
            inserts: &self.inserts,
            put: 0,
        };
        let to = feed(&held, &mut sink)?;
        let put = sink.put;
        tx.execute(
            "UPDATE replica SET epoch = ?1, head_seq = ?2 WHERE id = 1",
            params![to.epoch, to_i64(to.head_seq, "head_seq")?],
        )
        .db()?;
        tx.commit().db()?;
        if put >= CHECKPOINT_AFTER_ROWS {
            // Only an optimization: reads see the same records either way.
            let checkpoint = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
            if let Err(error) = checkpoint {
                tracing::debug!(%error, path = %self.path.display(), "the sync replica's WAL was not emptied");
            }
        }
        Ok(to)
    }

    fn read_page(&self, cursors: &Cursors, limits: &PageLimits) -> Result<Page, StoreError> {
        self.readers.with(|conn| {
            let tx = conn.transaction().db()?;
            let held = held_on(&tx)?;
            read_page_in(&tx, &self.sql, cursors, limits, held.epoch, held.head_seq)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(collection: Collection, seq: u64, id: &str) -> ReplicaRow {
        ReplicaRow {
            collection,
            seq,
            id: id.to_owned(),
            last_updated: Some(i64::try_from(seq).unwrap() * 10),
            json: format!(r#"{{"_id":"{id}","seq":{seq}}}"#),
        }
    }

    fn at(epoch: &str, head_seq: u64) -> Snapshot {
        Snapshot {
            epoch: epoch.to_owned(),
            head_seq,
        }
    }

    /// Applies `rows` (after a reset if `reset`) and then holds `to`.
    fn apply(replica: &SqliteReplica, reset: bool, rows: &[ReplicaRow], to: Snapshot) {
        replica
            .apply(&mut |_, sink| {
                if reset {
                    sink.reset()?;
                }
                for row in rows {
                    sink.put(row)?;
                }
                Ok(to.clone())
            })
            .unwrap();
    }

    /// Every record of a full read from the start, as (collection, seq, json).
    fn records(replica: &SqliteReplica) -> (Snapshot, Vec<(Collection, u64, String)>) {
        let limits = PageLimits {
            records: 500,
            bytes: usize::MAX,
        };
        let page = replica.read_page(&Cursors::default(), &limits).unwrap();
        assert!(!page.has_more);
        let mut out = Vec::new();
        for (c, records) in page.records.iter() {
            for r in records {
                out.push((c, r.seq, r.json.clone()));
            }
        }
        (at(&page.epoch, page.head_seq), out)
    }

    #[test]
    fn a_new_replica_holds_nothing_and_a_catch_up_holds_its_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let replica = SqliteReplica::open(&dir.path().join("r.sqlite3")).unwrap();
        assert_eq!(replica.held().unwrap(), at("", 0));
        apply(
            &replica,
            true,
            &[
                row(Collection::Packages, 1, "p"),
                row(Collection::Builds, 2, "b"),
            ],
            at("e1", 2),
        );
        assert_eq!(replica.held().unwrap(), at("e1", 2));
        let (snapshot, got) = records(&replica);
        assert_eq!(snapshot, at("e1", 2), "pages report the held snapshot");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].2, r#"{"_id":"p","seq":1}"#, "the text as given");
    }

    #[test]
    fn a_row_replaces_the_record_with_its_id_and_a_reset_removes_every_record() {
        let dir = tempfile::tempdir().unwrap();
        let replica = SqliteReplica::open(&dir.path().join("r.sqlite3")).unwrap();
        let first = [
            row(Collection::Versions, 1, "v1"),
            row(Collection::Versions, 2, "v2"),
        ];
        apply(&replica, false, &first, at("e", 2));
        // v1 moved to seq 3 (an update); the same id in another collection is another record.
        let moved = [
            row(Collection::Versions, 3, "v1"),
            row(Collection::Builds, 4, "v1"),
        ];
        apply(&replica, false, &moved, at("e", 4));
        let seqs: Vec<_> = records(&replica).1.iter().map(|r| (r.0, r.1)).collect();
        assert_eq!(
            seqs,
            [
                (Collection::Versions, 2),
                (Collection::Versions, 3),
                (Collection::Builds, 4)
            ]
        );
        apply(
            &replica,
            true,
            &[row(Collection::Packages, 1, "p")],
            at("f", 1),
        );
        let (snapshot, got) = records(&replica);
        assert_eq!(snapshot, at("f", 1));
        assert_eq!(got.len(), 1, "the reset removed the old epoch's records");
    }

    #[test]
    fn a_failed_catch_up_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let replica = SqliteReplica::open(&dir.path().join("r.sqlite3")).unwrap();
        apply(
            &replica,
            false,
            &[row(Collection::Packages, 1, "p")],
            at("e", 1),
        );
        let failed = replica.apply(&mut |_, sink| {
            sink.reset()?;
            sink.put(&row(Collection::Packages, 2, "q"))?;
            Err(StoreError::Busy)
        });
        assert!(matches!(failed, Err(StoreError::Busy)));
        let (snapshot, got) = records(&replica);
        assert_eq!(snapshot, at("e", 1));
        assert_eq!(
            got,
            [(Collection::Packages, 1, r#"{"_id":"p","seq":1}"#.to_owned())]
        );
    }

    #[test]
    fn a_reopened_replica_holds_what_it_committed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.sqlite3");
        apply(
            &SqliteReplica::open(&path).unwrap(),
            false,
            &[row(Collection::ReleaseTracks, 7, "t")],
            at("e", 7),
        );
        let replica = SqliteReplica::open(&path).unwrap();
        assert_eq!(replica.held().unwrap(), at("e", 7));
        assert_eq!(records(&replica).1.len(), 1);
    }

    #[test]
    fn a_file_of_another_version_or_no_database_is_replaced_and_a_catalog_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.sqlite3");
        apply(
            &SqliteReplica::open(&path).unwrap(),
            false,
            &[row(Collection::Packages, 1, "p")],
            at("e", 1),
        );
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", REPLICA_VERSION + 1)
            .unwrap();
        assert_eq!(
            SqliteReplica::open(&path).unwrap().held().unwrap(),
            at("", 0)
        );

        let garbage = dir.path().join("garbage.sqlite3");
        std::fs::write(&garbage, vec![7u8; 8192]).unwrap();
        assert_eq!(
            SqliteReplica::open(&garbage).unwrap().held().unwrap(),
            at("", 0)
        );

        let catalog_dir = dir.path().join("catalog");
        crate::open_sqlite(&catalog_dir).unwrap();
        let catalog = catalog_dir.join(crate::DATABASE_FILE);
        let before = std::fs::metadata(&catalog).unwrap().len();
        assert!(matches!(
            SqliteReplica::open(&catalog),
            Err(StoreError::NotACatalog(_))
        ));
        assert_eq!(
            std::fs::metadata(&catalog).unwrap().len(),
            before,
            "left as it was"
        );
    }
}
