//! The SQLite backend of the catalog's [`CatalogStore`]: one database file,
//! `catalog.sqlite3`, in the data directory, shared safely by a running `exosphere serve`
//! and an `exosphere import`. This crate's one job is storing the catalog in SQLite; the
//! trait, its contract and everything built on it are `exosphere-catalog`'s, and its
//! contract tests run here from `tests/conformance.rs`. Whole-file backups of a catalog, and
//! putting one back, are [`backup`]'s. A server on a shared database keeps its local copy of
//! the records for sync pages in a SQLite file too, [`replica::SqliteReplica`].
//!
//! # Schema (version 7, `PRAGMA user_version`)
//!
//! Version 1:
//!
//! * one table per collection (`rec_packages`, `rec_versions`, `rec_builds`,
//!   `rec_release_tracks`, `rec_release_versions`):
//!   `seq INTEGER PRIMARY KEY` (the rowid, so a sync page is a pure rowid range scan that
//!   reads the record text from the same b-tree), `id TEXT NOT NULL UNIQUE` (upserts look
//!   records up by `_id`), `last_updated INTEGER` and `json TEXT NOT NULL` (the compact
//!   EJSON text spliced into sync pages);
//! * `meta`: a single row with the data epoch, the head `seq` and one change counter per
//!   collection — everything `state()` needs in one row lookup;
//! * `stats`: `(day, name, version)` primary key, `WITHOUT ROWID`, so a day's rows are one
//!   contiguous range and the earliest/latest day are b-tree edge lookups.
//!
//! Version 2 adds package usage recording ([`exosphere_catalog::usage`]):
//!
//! * `usage_apps`: one row per app id (`id INTEGER PRIMARY KEY`, the `app` text, and
//!   `list_hash`, a hash of the app's last reported package list, so a repeated list is
//!   recognised with one lookup);
//! * `usage_packages`: every `name@version` ever reported, interned to an integer id;
//! * `usage_adds`: `(app, package) -> (day, direct)`, `WITHOUT ROWID`: the first UTC day
//!   (days since 0001-01-01) a version appeared in an app, and whether it was direct then.
//!   An index on `(day, package, direct)` makes a day's rollup an index range scan;
//! * `usage_days`: per recorded day (`YYYY-MM-DD`), whether recordings arrived since its
//!   last rollup (`pending`) and whether it was ever rolled up (`rolled_up`);
//! * the index `stats_by_name (name, day, …)` answers per-package date ranges.
//!
//! Version 3 adds accounts and publishing ([`exosphere_catalog::accounts`], `accounts.rs`):
//!
//! * `users`, `orgs` and `org_members`; `tokens` (login tokens by SHA-256 hash);
//! * `uploads` (upload tickets by hash of their URL secret) and `pending` (publishes in
//!   progress by hash of their `uploadToken`), both with an expiry time;
//! * expression indexes on the record text (`json_extract` of `name`, `packageName` and
//!   `version`, `versionId`, `track`), so the publishing methods find records by their
//!   natural keys without a column the import path would have to fill.
//!
//! Version 4 adds the upstream mirror's rows ([`exosphere_catalog::mirror`], `mirror.rs`):
//! its state, the staged catalog and the upstream files behind mirrored file URLs.
//!
//! Version 5 keeps each staged record's `lastUpdated` beside its text (`mirror.rs`), so a
//! first mirror's staged catalog moves into the served tables without re-reading each record.
//!
//! Version 6 stages without random-order index updates (`mirror.rs`): staged records are
//! appended and indexed once when read, and their file entries wait in `mirror_stage_files`
//! until the stage is served.
//!
//! Version 7 adds the audit log (`audit.rs`, [`exosphere_catalog::audit`]): one row per
//! recorded action, indexed by time, actor and package for `exosphere audit`.
//!
//! # Migrations
//!
//! A fresh file gets the version-1 schema and then every step of `MIGRATIONS`; an older
//! file gets the steps it lacks. Opening runs them all in the one immediate transaction
//! that checks the schema, so a file is upgraded completely or not at all.
//!
//! `PRAGMA application_id` marks the file as an Exosphere catalog; a file from a newer
//! Exosphere (higher `user_version`) is refused with [`StoreError::SchemaTooNew`].
//!
//! # Durability and concurrency
//!
//! WAL journal mode: readers never block the writer or each other, and another process's
//! commits become visible to our next read transaction. `synchronous = FULL`: every commit
//! is fsynced before it returns. `NORMAL` would be crash-safe too (no corruption), but a
//! power loss could roll back the last commits *after* sync clients saw them; the
//! sequence numbers of those commits would then be handed out again and clients whose
//! cursors are past them would skip the new records forever. Writes are rare (publishes,
//! imports in one transaction), so the extra fsync per commit costs nothing that matters.
//!
//! Writes run in `BEGIN IMMEDIATE` transactions on one writer connection: the write lock
//! is taken up front (waiting up to the busy timeout for another process), and `seq` is
//! allocated inside the transaction, so sequence numbers become visible in increasing
//! order as the [`exosphere_catalog::store`] contract requires.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{Datelike as _, NaiveDate};
use exosphere_meteor::{Collection, PerCollection};
use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior, params};

use exosphere_catalog::accounts::{AccountWriter, UploadTicket};
use exosphere_catalog::audit::{AuditEntry, AuditQuery};
use exosphere_catalog::columns::{new_epoch, snake, stats_range, stats_row, to_i64, to_u64};
use exosphere_catalog::day::parse_day;
use exosphere_catalog::error::{Storage, StoreError};
use exosphere_catalog::immutable;
use exosphere_catalog::mirror::{MirrorState, MirrorWriter, UpstreamFile};
use exosphere_catalog::record::{Record, StatsRow};
use exosphere_catalog::store::{
    CatalogState, CatalogStore, CatalogWriter, Cursors, Duty, ExportItem, Hold, Lookup, Next, Page,
    PageFill, PageLimits, PageRecord, ServerSeat, Snapshot, Upsert,
};
use exosphere_catalog::usage::{self, AppReport, UsageRows};

mod accounts;
mod audit;
pub mod backup;
mod bulk;
mod mirror;
pub mod replica;

/// The database file name inside the data directory.
pub const DATABASE_FILE: &str = "catalog.sqlite3";

/// One schema upgrade step: `MIGRATIONS[i]` takes a file from version `i + 1` to `i + 2`.
/// Later versions append a step; a step never changes once released.
type Migration = fn(&rusqlite::Transaction<'_>) -> rusqlite::Result<()>;

/// Every upgrade step, in order.
const MIGRATIONS: [Migration; 6] = [
    migrate_v1_to_v2,
    accounts::migrate_v2_to_v3,
    mirror::migrate_v3_to_v4,
    mirror::migrate_v4_to_v5,
    mirror::migrate_v5_to_v6,
    audit::migrate_v6_to_v7,
];

/// The schema version this build creates and reads (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1 + MIGRATIONS.len() as i64;

/// How much of the database file each read connection maps into memory (`PRAGMA mmap_size`).
const READER_MMAP_BYTES: i64 = 1 << 30;

/// The writer connection's page cache (`PRAGMA cache_size`, in KiB). Recording package
/// usage looks up app ids and versions all over b-trees of millions of rows; SQLite's
/// default 2 MiB cache would send most of those lookups to the operating system.
const WRITER_CACHE_KIB: i64 = 64 * 1024;

/// WAL pages after which a commit checkpoints (`PRAGMA wal_autocheckpoint`): 64 MiB of 4 KiB
/// pages rather than SQLite's 4 MiB. A mirror commits one upstream page (1–2 MB) at a time;
/// at the default nearly every commit copied the WAL into the database again, rewriting the
/// same b-tree pages over and over (a third of an initial mirror's time).
const WAL_AUTOCHECKPOINT_PAGES: i64 = 16 * 1024;

/// `PRAGMA application_id` of Exosphere catalogs: "EXOS" in ASCII.
const APPLICATION_ID: i64 = 0x4558_4F53;

/// Tunables of the SQLite backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteOptions {
    /// How long a write (or the initial schema check) waits for another writer, e.g. an
    /// `exosphere import` in another process, before failing with [`StoreError::Busy`].
    pub busy_timeout: Duration,
    /// How many read connections to open with the store and keep for reuse. More are
    /// opened while more reads run at once, and closed after them. Opening them up front
    /// makes a server's open files what they will be from its start (not a count that
    /// creeps up as rarer peaks of concurrent reads come), and a file that cannot be opened
    /// for reading fails at startup, not under load.
    pub max_idle_readers: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            busy_timeout: Duration::from_secs(30),
            max_idle_readers: 8,
        }
    }
}

/// Opens (creating if needed) the catalog in `data_dir` with default options.
pub fn open_sqlite(data_dir: &Path) -> Result<SqliteStore, StoreError> {
    SqliteStore::open(data_dir, &SqliteOptions::default())
}

/// A catalog stored in a SQLite database file.
pub struct SqliteStore {
    writer: Mutex<Connection>,
    readers: ReaderPool,
    sql: Sql,
}

impl SqliteStore {
    /// Creates `data_dir` and the database file if needed, switches it to WAL, creates or
    /// checks the schema, and prepares the connections. A full or read-only disk is named
    /// as such ([`StoreError::DiskFull`], [`StoreError::ReadOnly`]).
    pub fn open(data_dir: &Path, options: &SqliteOptions) -> Result<SqliteStore, StoreError> {
        Self::open_unnamed(data_dir, options).map_err(|error| name_disk_trouble(error, data_dir))
    }

    /// [`SqliteStore::open`] before disk trouble is named.
    fn open_unnamed(data_dir: &Path, options: &SqliteOptions) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::Io {
            path: data_dir.to_owned(),
            source,
        })?;
        let path = data_dir.join(DATABASE_FILE);
        let mut writer = open_connection(&path, options.busy_timeout)?;
        let mode: String = writer
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .db()?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Database(
                format!(
                    "{} cannot use WAL journal mode (got {mode})",
                    path.display()
                )
                .into(),
            ));
        }
        writer.pragma_update(None, "synchronous", "FULL").db()?;
        writer
            .pragma_update(None, "cache_size", -WRITER_CACHE_KIB)
            .db()?;
        writer
            .pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)
            .db()?;
        init_schema(&mut writer, &path)?;
        Ok(SqliteStore {
            writer: Mutex::new(writer),
            readers: ReaderPool::open(path, options.busy_timeout, options.max_idle_readers)?,
            sql: Sql::new(),
        })
    }

    /// `error` of a write with its disk trouble named ([`name_disk_trouble`]) after the
    /// data directory.
    fn name_disk_trouble(&self, error: StoreError) -> StoreError {
        let data_dir = self.readers.path.parent().unwrap_or(Path::new("."));
        name_disk_trouble(error, data_dir)
    }

    /// [`CatalogStore::write`] before disk trouble is named.
    fn write_unnamed(
        &self,
        f: &mut dyn FnMut(&mut dyn CatalogWriter) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        // A panic inside `f` poisons the mutex, but the transaction guard rolled back
        // during unwinding, so the connection is clean and can be reused.
        let mut conn = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .db()?;
        let meta = read_meta(&tx, &self.sql)?;
        let mut writer = SqliteWriter {
            conn: &tx,
            sql: &self.sql,
            head_seq: meta.head_seq,
            changes: meta.changes,
            modified: false,
            starts_epoch: false,
            marked_day: None,
        };
        f(&mut writer)?;
        if writer.modified {
            let epoch = if writer.starts_epoch {
                new_epoch()
            } else {
                meta.epoch
            };
            let mut counters = [0i64; 5];
            for (slot, (_, value)) in counters.iter_mut().zip(writer.changes.iter()) {
                *slot = to_i64(*value, "change counter")?;
            }
            let head = to_i64(writer.head_seq, "head_seq")?;
            tx.prepare_cached(&self.sql.update_meta)
                .db()?
                .execute(params![
                    epoch,
                    head,
                    counters[0],
                    counters[1],
                    counters[2],
                    counters[3],
                    counters[4]
                ])
                .db()?;
        }
        tx.commit().db()
    }
}

/// The usage rows of one write transaction, for [`usage::record`].
struct UsageSql<'a>(&'a Connection);

impl UsageRows for UsageSql<'_> {
    fn mark_pending(&mut self, day: NaiveDate) -> Result<(), StoreError> {
        self.0
            .prepare_cached(
                "INSERT INTO usage_days (day, pending, rolled_up) VALUES (?1, 1, 0) \
                 ON CONFLICT (day) DO UPDATE SET pending = 1",
            )
            .db()?
            .execute([day.to_string()])
            .db()?;
        Ok(())
    }

    fn app(&mut self, app_id: &str) -> Result<Option<(i64, i64)>, StoreError> {
        self.0
            .prepare_cached("SELECT id, list_hash FROM usage_apps WHERE app = ?1")
            .db()?
            .query_row([app_id], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()
            .db()
    }

    fn set_list_hash(&mut self, app: i64, list_hash: i64) -> Result<(), StoreError> {
        self.0
            .prepare_cached("UPDATE usage_apps SET list_hash = ?2 WHERE id = ?1")
            .db()?
            .execute(params![app, list_hash])
            .db()?;
        Ok(())
    }

    fn add_app(&mut self, app_id: &str, list_hash: i64) -> Result<i64, StoreError> {
        self.0
            .prepare_cached("INSERT INTO usage_apps (app, list_hash) VALUES (?1, ?2)")
            .db()?
            .execute(params![app_id, list_hash])
            .db()?;
        Ok(self.0.last_insert_rowid())
    }

    fn package(&mut self, name: &str, version: &str) -> Result<Option<i64>, StoreError> {
        self.0
            .prepare_cached("SELECT id FROM usage_packages WHERE name = ?1 AND version = ?2")
            .db()?
            .query_row([name, version], |row| row.get(0))
            .optional()
            .db()
    }

    fn add_package(&mut self, name: &str, version: &str) -> Result<i64, StoreError> {
        self.0
            .prepare_cached("INSERT INTO usage_packages (name, version) VALUES (?1, ?2)")
            .db()?
            .execute([name, version])
            .db()?;
        Ok(self.0.last_insert_rowid())
    }

    fn add_use(
        &mut self,
        app: i64,
        package: i64,
        day: i32,
        direct: bool,
    ) -> Result<(), StoreError> {
        self.0
            .prepare_cached(
                "INSERT OR IGNORE INTO usage_adds (app_id, package_id, day, direct) \
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .db()?
            .execute(params![app, package, i64::from(day), direct])
            .db()?;
        Ok(())
    }
}

/// Names a failed write's disk trouble: SQLite's "database or disk is full" becomes
/// [`StoreError::DiskFull`], and a refused or failed write on a file system that is
/// read-only [`StoreError::ReadOnly`], both naming the data directory, so the operator
/// reads what to fix instead of a bare database error and clients can be told why.
/// Anything else is returned unchanged.
fn name_disk_trouble(error: StoreError, data_dir: &Path) -> StoreError {
    let StoreError::Database(source) = &error else {
        return error;
    };
    let code = source
        .downcast_ref::<rusqlite::Error>()
        .and_then(rusqlite::Error::sqlite_error_code);
    match code {
        Some(ErrorCode::DiskFull) => StoreError::DiskFull(Storage::Directory(data_dir.to_owned())),
        Some(ErrorCode::ReadOnly | ErrorCode::SystemIoFailure | ErrorCode::CannotOpen)
            if is_read_only(data_dir) =>
        {
            StoreError::ReadOnly(Storage::Directory(data_dir.to_owned()))
        }
        _ => error,
    }
}

/// Whether the file system of `dir` refuses writes as read-only. SQLite reports such a
/// write as a plain I/O error (it keeps `EROFS` to itself), so this asks the file system,
/// by creating and removing a probe file.
fn is_read_only(dir: &Path) -> bool {
    let probe = dir.join(".exosphere-write-probe");
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            false
        }
        Err(error) => error.kind() == std::io::ErrorKind::ReadOnlyFilesystem,
    }
}

/// Opens one connection with the busy timeout every connection needs.
fn open_connection(path: &Path, busy_timeout: Duration) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).db()?;
    conn.busy_timeout(busy_timeout).db()?;
    Ok(conn)
}

/// Creates the schema in a fresh file, or checks that an existing file is a catalog this
/// build can read. Runs in an immediate transaction so two processes opening a new data
/// directory at once do not both create it.
fn init_schema(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .db()?;
    let pragma = |name: &str| -> Result<i64, StoreError> {
        tx.query_row(&format!("PRAGMA {name}"), [], |row| row.get(0))
            .db()
    };
    let (app_id, version) = (pragma("application_id")?, pragma("user_version")?);
    let objects: i64 = tx
        .query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))
        .db()?;
    let fresh = app_id == 0 && version == 0 && objects == 0;
    if !fresh && app_id != APPLICATION_ID {
        return Err(StoreError::NotACatalog(path.to_owned()));
    }
    let mut version = version;
    if fresh {
        create_v1(&tx).db()?;
        version = 1;
    } else if version > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found: version,
            supported: SCHEMA_VERSION,
        });
    } else if version < 1 {
        return Err(StoreError::Corrupt(format!(
            "unknown schema version {version}"
        )));
    }
    while version < SCHEMA_VERSION {
        let step = usize::try_from(version - 1).unwrap_or(usize::MAX);
        MIGRATIONS[step](&tx).db()?;
        version += 1;
        tx.pragma_update(None, "user_version", version).db()?;
        if !fresh {
            tracing::info!(path = %path.display(), version, "upgraded the catalog schema");
        }
    }
    tx.commit().db()
}

/// Creates schema version 1 in an empty file, exactly as the first release did.
pub(crate) fn create_v1(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(&schema_v1_sql())?;
    tx.execute(
        "INSERT INTO meta (id, epoch, head_seq) VALUES (1, ?1, 0)",
        [new_epoch()],
    )?;
    tx.execute_batch(&format!(
        "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = 1;"
    ))
}

/// Version 2: package usage recording and per-package stats ranges (see the module docs).
pub(crate) fn migrate_v1_to_v2(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(
        "CREATE TABLE usage_apps (
             id INTEGER PRIMARY KEY,
             app TEXT NOT NULL UNIQUE,
             list_hash INTEGER NOT NULL
         ) STRICT;
         CREATE TABLE usage_packages (
             id INTEGER PRIMARY KEY,
             name TEXT NOT NULL,
             version TEXT NOT NULL,
             UNIQUE (name, version)
         ) STRICT;
         CREATE TABLE usage_adds (
             app_id INTEGER NOT NULL,
             package_id INTEGER NOT NULL,
             day INTEGER NOT NULL,
             direct INTEGER NOT NULL,
             PRIMARY KEY (app_id, package_id)
         ) STRICT, WITHOUT ROWID;
         CREATE INDEX usage_adds_by_day ON usage_adds (day, package_id, direct);
         CREATE TABLE usage_days (
             day TEXT PRIMARY KEY,
             pending INTEGER NOT NULL,
             rolled_up INTEGER NOT NULL
         ) STRICT, WITHOUT ROWID;
         CREATE INDEX stats_by_name ON stats (name, day, version, direct_adds, total_adds);",
    )
}

/// The `CREATE` statements of schema version 1.
fn schema_v1_sql() -> String {
    let mut sql = String::from(
        "CREATE TABLE meta (
             id INTEGER PRIMARY KEY CHECK (id = 1),
             epoch TEXT NOT NULL,
             head_seq INTEGER NOT NULL",
    );
    for c in Collection::ALL {
        sql.push_str(&format!(
            ",\n changes_{} INTEGER NOT NULL DEFAULT 0",
            snake(c)
        ));
    }
    sql.push_str(
        ") STRICT;
         CREATE TABLE stats (
             day TEXT NOT NULL,
             name TEXT NOT NULL,
             version TEXT NOT NULL,
             direct_adds INTEGER NOT NULL,
             total_adds INTEGER NOT NULL,
             PRIMARY KEY (day, name, version)
         ) STRICT, WITHOUT ROWID;",
    );
    sql.push_str(&record_tables_sql());
    sql
}

/// The record tables, one per collection: the catalog's (schema version 1) and its sync
/// replica's (`replica.rs`), which pages are read from by one reader, [`read_page_in`].
fn record_tables_sql() -> String {
    Collection::ALL
        .map(|c| {
            format!(
                // The text as schema version 1 wrote it into every catalog's `sqlite_schema`.
                "CREATE TABLE rec_{} (
                 seq INTEGER PRIMARY KEY,
                 id TEXT NOT NULL UNIQUE,
                 last_updated INTEGER,
                 json TEXT NOT NULL
             ) STRICT;",
                snake(c)
            )
        })
        .concat()
}

/// The SQL text of every statement, built once; statements are prepared through each
/// connection's statement cache.
struct Sql {
    tables: PerCollection<TableSql>,
    read_meta: String,
    update_meta: String,
}

/// Per-collection statements.
struct TableSql {
    get: String,
    find: String,
    insert: String,
    update: String,
    delete: String,
    page: String,
    export: String,
}

impl Sql {
    fn new() -> Sql {
        let counters: Vec<String> = Collection::ALL
            .iter()
            .map(|c| format!("changes_{}", snake(*c)))
            .collect();
        let assignments: Vec<String> = counters
            .iter()
            .enumerate()
            .map(|(i, col)| format!("{col} = ?{}", i + 3))
            .collect();
        Sql {
            tables: PerCollection::from_fn(|c| {
                let t = format!("rec_{}", snake(c));
                TableSql {
                    get: format!("SELECT json FROM {t} WHERE id = ?1"),
                    find: format!("SELECT seq, json = ?2 FROM {t} WHERE id = ?1"),
                    insert: format!(
                        "INSERT INTO {t} (seq, id, last_updated, json) VALUES (?1, ?2, ?3, ?4)"
                    ),
                    update: format!(
                        "UPDATE {t} SET seq = ?1, last_updated = ?2, json = ?3 WHERE seq = ?4"
                    ),
                    delete: format!("DELETE FROM {t} WHERE id = ?1"),
                    page: format!(
                        "SELECT seq, last_updated, json FROM {t} WHERE seq > ?1 ORDER BY seq"
                    ),
                    export: format!("SELECT json FROM {t} ORDER BY seq"),
                }
            }),
            read_meta: format!(
                "SELECT epoch, head_seq, {} FROM meta WHERE id = 1",
                counters.join(", ")
            ),
            update_meta: format!(
                "UPDATE meta SET epoch = ?1, head_seq = ?2, {} WHERE id = 1",
                assignments.join(", ")
            ),
        }
    }
}

/// The page after `cursors` within `limits` from the record tables `conn` reads (in one
/// transaction), reported at `epoch` and `head_seq`: the catalog's own pages and its sync
/// replica's (`replica.rs`) are cut by this one reader.
fn read_page_in(
    conn: &Connection,
    sql: &Sql,
    cursors: &Cursors,
    limits: &PageLimits,
    epoch: String,
    head_seq: u64,
) -> Result<Page, StoreError> {
    let mut fill = PageFill::new(*limits);
    'collections: for c in Collection::ALL {
        let after = i64::try_from(cursors[c]).unwrap_or(i64::MAX);
        let mut stmt = conn.prepare_cached(&sql.tables[c].page).db()?;
        // Rows are stepped one at a time, so the scan reads only what the page takes (plus
        // the one row that tells whether more remain).
        let mut rows = stmt.query(params![after]).db()?;
        while let Some(row) = rows.next().db()? {
            let record = PageRecord {
                seq: to_u64(row.get(0).db()?, "seq")?,
                last_updated: row.get(1).db()?,
                json: row.get(2).db()?,
            };
            match fill.offer(c, record) {
                Next::Continue => {}
                Next::NextCollection => continue 'collections,
                Next::Stop => break 'collections,
            }
        }
    }
    Ok(fill.finish(epoch, head_seq))
}

/// The `meta` row.
struct Meta {
    epoch: String,
    head_seq: u64,
    changes: PerCollection<u64>,
}

fn read_meta(conn: &Connection, sql: &Sql) -> Result<Meta, StoreError> {
    let raw = conn
        .prepare_cached(&sql.read_meta)
        .db()?
        .query_row([], |row| {
            let mut counters = [0i64; 5];
            for (i, counter) in counters.iter_mut().enumerate() {
                *counter = row.get(i + 2)?;
            }
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?, counters))
        })
        .optional()
        .db()?;
    let (epoch, head_seq, counters) =
        raw.ok_or_else(|| StoreError::Corrupt("the meta row is missing".into()))?;
    let mut changes = PerCollection::default();
    for (c, value) in Collection::ALL.into_iter().zip(counters) {
        changes[c] = to_u64(value, "change counter")?;
    }
    Ok(Meta {
        epoch,
        head_seq: to_u64(head_seq, "head_seq")?,
        changes,
    })
}

/// Maps backend errors to [`StoreError`] without exposing rusqlite types.
trait Db<T> {
    fn db(self) -> Result<T, StoreError>;
}

impl<T> Db<T> for rusqlite::Result<T> {
    fn db(self) -> Result<T, StoreError> {
        self.map_err(|e| match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Busy,
            _ => StoreError::Database(Box::new(e)),
        })
    }
}

/// Read connections kept for reuse.
///
/// Why a pool and not a connection per call: `state()` is polled several times a second
/// and every sync page is a read, and opening a connection re-reads the schema and loses
/// the prepared-statement cache. Why not a pool crate: the only policy needed is "reuse an
/// idle connection or open one", which is a `Vec` behind a mutex held for a push or pop,
/// without tying us to a crate that must track our rusqlite version. Concurrency is not
/// capped here: in WAL mode readers do not block each other, and callers already bound
/// it (the server's blocking-thread pool).
struct ReaderPool {
    path: PathBuf,
    busy_timeout: Duration,
    max_idle: usize,
    idle: Mutex<Vec<Connection>>,
}

impl ReaderPool {
    /// A pool of the catalog at `path` holding `size` read connections, opened now.
    fn open(path: PathBuf, busy_timeout: Duration, size: usize) -> Result<Self, StoreError> {
        let pool = ReaderPool {
            path,
            busy_timeout,
            max_idle: size,
            idle: Mutex::new(Vec::with_capacity(size)),
        };
        let connections = (0..size)
            .map(|_| pool.connect())
            .collect::<Result<Vec<_>, _>>()?;
        *pool.lock() = connections;
        Ok(pool)
    }

    /// A new read connection.
    fn connect(&self) -> Result<Connection, StoreError> {
        let conn = open_connection(&self.path, self.busy_timeout)?;
        conn.pragma_update(None, "query_only", true).db()?;
        // Sync pages read megabytes of record text: map the file instead of copying every
        // page through read(2) into each connection's private cache.
        conn.pragma_update(None, "mmap_size", READER_MMAP_BYTES)
            .db()?;
        Ok(conn)
    }

    /// Runs `f` on an idle or new read connection, returning the connection to the pool
    /// afterwards unless `f` failed (a failed connection is not trusted for reuse).
    fn with<R>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let pooled = self.lock().pop();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => self.connect()?,
        };
        let result = f(&mut conn);
        if result.is_ok() {
            let mut idle = self.lock();
            if idle.len() < self.max_idle {
                idle.push(conn);
            }
        }
        result
    }

    /// The idle list; a panic while it was locked cannot leave it inconsistent (it is
    /// only pushed to or popped from), so poisoning is ignored.
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl CatalogStore for SqliteStore {
    fn write(
        &self,
        f: &mut dyn FnMut(&mut dyn CatalogWriter) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.write_unnamed(f)
            .map_err(|error| self.name_disk_trouble(error))
    }

    fn read_page(&self, cursors: &Cursors, limits: &PageLimits) -> Result<Page, StoreError> {
        self.readers.with(|conn| {
            let tx = conn.transaction().db()?;
            let meta = read_meta(&tx, &self.sql)?;
            read_page_in(&tx, &self.sql, cursors, limits, meta.epoch, meta.head_seq)
        })
    }

    fn state(&self) -> Result<CatalogState, StoreError> {
        self.readers.with(|conn| {
            let tx = conn.transaction().db()?;
            let meta = read_meta(&tx, &self.sql)?;
            // Scalar subqueries, because SQLite answers a lone MIN or MAX from the
            // primary-key b-tree's edge but scans for both in one SELECT. Rolled-up days
            // count too: a day without adds still has a (empty) file. Days from the current
            // UTC day on are left out: a rollup of today is unfinished, and consumers fetch
            // an advertised day once and keep it (spec §4.4, §7.2).
            let today = chrono::Utc::now().date_naive().to_string();
            let (imported_min, imported_max, rolled_min, rolled_max): (
                Option<String>,
                Option<String>,
                Option<String>,
                Option<String>,
            ) = tx
                .prepare_cached(
                    "SELECT (SELECT MIN(day) FROM stats WHERE day < ?1), \
                     (SELECT MAX(day) FROM stats WHERE day < ?1), \
                     (SELECT MIN(day) FROM usage_days WHERE rolled_up = 1 AND day < ?1), \
                     (SELECT MAX(day) FROM usage_days WHERE rolled_up = 1 AND day < ?1)",
                )
                .db()?
                .query_row([&today], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                })
                .db()?;
            let (stats_earliest, stats_latest) =
                stats_range((imported_min, imported_max), (rolled_min, rolled_max));
            Ok(CatalogState {
                epoch: meta.epoch,
                head_seq: meta.head_seq,
                change_counters: meta.changes,
                stats_earliest,
                stats_latest,
            })
        })
    }

    /// One statement on the meta row, its own read transaction: no stats day range.
    fn snapshot(&self) -> Result<Snapshot, StoreError> {
        self.readers.with(|conn| {
            let meta = read_meta(conn, &self.sql)?;
            Ok(Snapshot {
                epoch: meta.epoch,
                head_seq: meta.head_seq,
            })
        })
    }

    fn stats_day(
        &self,
        date: &str,
        f: &mut dyn FnMut(&StatsRow) -> Result<(), StoreError>,
    ) -> Result<bool, StoreError> {
        self.readers.with(|conn| {
            // The rows and the rollup mark from one snapshot.
            let tx = conn.unchecked_transaction().db()?;
            let mut stmt = tx
                .prepare_cached(
                    "SELECT name, version, direct_adds, total_adds FROM stats \
                     WHERE day = ?1 ORDER BY name, version",
                )
                .db()?;
            let mut rows = stmt.query([date]).db()?;
            let mut any = false;
            while let Some(row) = rows.next().db()? {
                any = true;
                f(&stats_row(
                    date,
                    row.get(0).db()?,
                    row.get(1).db()?,
                    row.get(2).db()?,
                    row.get(3).db()?,
                )?)?;
            }
            drop(rows);
            drop(stmt);
            if any {
                return Ok(true);
            }
            let rolled_up: Option<i64> = tx
                .prepare_cached("SELECT rolled_up FROM usage_days WHERE day = ?1")
                .db()?
                .query_row([date], |row| row.get(0))
                .optional()
                .db()?;
            Ok(rolled_up == Some(1))
        })
    }

    fn package_stats_rows(
        &self,
        name: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<StatsRow>, StoreError> {
        self.readers.with(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT day, version, direct_adds, total_adds FROM stats \
                     WHERE name = ?1 AND day >= ?2 AND day <= ?3 ORDER BY day, version",
                )
                .db()?;
            let mut rows = stmt
                .query(params![name, from.to_string(), to.to_string()])
                .db()?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().db()? {
                let day: String = row.get(0).db()?;
                out.push(stats_row(
                    &day,
                    name.to_owned(),
                    row.get(1).db()?,
                    row.get(2).db()?,
                    row.get(3).db()?,
                )?);
            }
            Ok(out)
        })
    }

    fn pending_usage_days(&self, before: NaiveDate) -> Result<Vec<NaiveDate>, StoreError> {
        self.readers.with(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT day FROM usage_days WHERE pending = 1 AND day < ?1 ORDER BY day",
                )
                .db()?;
            let mut rows = stmt.query([before.to_string()]).db()?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().db()? {
                let day: String = row.get(0).db()?;
                out.push(
                    parse_day(&day).map_err(|e| StoreError::Corrupt(format!("usage day: {e}")))?,
                );
            }
            Ok(out)
        })
    }

    fn upload_ticket(&self, hash: &str) -> Result<Option<UploadTicket>, StoreError> {
        self.readers
            .with(|conn| accounts::upload_ticket(conn, hash))
    }

    fn mirror_state(&self) -> Result<Option<MirrorState>, StoreError> {
        self.readers.with(|conn| mirror::state(conn))
    }

    fn mirror_file(&self, key: &str) -> Result<Option<UpstreamFile>, StoreError> {
        self.readers.with(|conn| mirror::file(conn, key))
    }

    fn mirror_files(
        &self,
        after: &str,
        limit: usize,
    ) -> Result<Vec<(String, UpstreamFile)>, StoreError> {
        self.readers.with(|conn| mirror::files(conn, after, limit))
    }

    fn mirror_cached(&self) -> Result<(u64, u64), StoreError> {
        self.readers.with(|conn| mirror::cached(conn))
    }

    fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        self.readers.with(|conn| audit::read(conn, query))
    }

    /// One server per data directory: its serve lock, which `exosphere serve` takes
    /// before opening the catalog, keeps a second one out.
    fn join_servers(&self) -> Result<ServerSeat, StoreError> {
        Ok(ServerSeat::sole())
    }

    /// The one server of the data directory runs every duty.
    fn try_duty(&self, _duty: Duty) -> Result<Option<Hold>, StoreError> {
        Ok(Some(Hold::sole()))
    }

    /// No hints: commits by other processes on the file (an import beside the server) are
    /// noticed by polling.
    fn hint_changes(&self, _wake: Arc<dyn Fn() + Send + Sync>) -> Result<Option<Hold>, StoreError> {
        Ok(None)
    }

    fn export(
        &self,
        f: &mut dyn FnMut(ExportItem<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.readers.with(|conn| {
            let tx = conn.transaction().db()?;
            for c in Collection::ALL {
                let mut stmt = tx.prepare_cached(&self.sql.tables[c].export).db()?;
                let mut rows = stmt.query([]).db()?;
                while let Some(row) = rows.next().db()? {
                    let json = row
                        .get_ref(0)
                        .db()?
                        .as_str()
                        .map_err(|e| StoreError::Corrupt(format!("record text: {e}")))?;
                    f(ExportItem::Record {
                        collection: c,
                        json,
                    })?;
                }
            }
            let mut stmt = tx
                .prepare_cached(
                    "SELECT day, name, version, direct_adds, total_adds FROM stats \
                     ORDER BY day, name, version",
                )
                .db()?;
            let mut rows = stmt.query([]).db()?;
            while let Some(row) = rows.next().db()? {
                let day: String = row.get(0).db()?;
                let row = stats_row(
                    &day,
                    row.get(1).db()?,
                    row.get(2).db()?,
                    row.get(3).db()?,
                    row.get(4).db()?,
                )?;
                f(ExportItem::Stats(&row))?;
            }
            Ok(())
        })
    }
}

/// The [`CatalogWriter`] of one write transaction. Counters and the head `seq` are kept
/// in memory and written to `meta` once, at commit.
struct SqliteWriter<'a> {
    conn: &'a Connection,
    sql: &'a Sql,
    head_seq: u64,
    changes: PerCollection<u64>,
    modified: bool,
    /// Whether the commit starts a new data epoch: a deletion, or
    /// [`CatalogWriter::start_epoch`].
    starts_epoch: bool,
    /// The last day this transaction marked pending in `usage_days`, so a batch of
    /// reports of one day marks it once.
    marked_day: Option<NaiveDate>,
}

impl SqliteWriter<'_> {
    /// Allocates the next sequence number and counts a change in `collection`.
    fn next_seq(&mut self, collection: Collection) -> Result<i64, StoreError> {
        let seq = self
            .head_seq
            .checked_add(1)
            .ok_or_else(|| StoreError::Corrupt("sequence numbers exhausted".into()))?;
        let seq_i64 = to_i64(seq, "seq")?;
        self.head_seq = seq;
        self.count_change(collection);
        Ok(seq_i64)
    }

    fn count_change(&mut self, collection: Collection) {
        self.changes[collection] = self.changes[collection].saturating_add(1);
        self.modified = true;
    }
}

impl CatalogWriter for SqliteWriter<'_> {
    fn find(&mut self, key: &Lookup<'_>) -> Result<Vec<String>, StoreError> {
        accounts::find(self.conn, key)
    }

    fn accounts(&mut self) -> &mut dyn AccountWriter {
        self
    }

    fn audit(&mut self, entry: &AuditEntry) -> Result<(), StoreError> {
        audit::insert(self.conn, entry)
    }

    fn mirror(&mut self) -> &mut dyn MirrorWriter {
        self
    }

    fn get(&mut self, collection: Collection, id: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .prepare_cached(&self.sql.tables[collection].get)
            .db()?
            .query_row([id], |row| row.get(0))
            .optional()
            .db()
    }

    fn upsert(&mut self, record: &Record) -> Result<Upsert, StoreError> {
        let c = record.collection();
        let existing: Option<(i64, bool)> = self
            .conn
            .prepare_cached(&self.sql.tables[c].find)
            .db()?
            .query_row(params![record.id(), record.json()], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()
            .db()?;
        let upsert = immutable::check_upsert(self, record, existing.map(|(_, same)| same))?;
        let table = &self.sql.tables[c];
        match (upsert, existing) {
            (Upsert::Updated, Some((old_seq, _))) => {
                let seq = self.next_seq(c)?;
                self.conn
                    .prepare_cached(&table.update)
                    .db()?
                    .execute(params![seq, record.last_updated(), record.json(), old_seq])
                    .db()?;
            }
            (Upsert::Inserted, _) => {
                let seq = self.next_seq(c)?;
                self.conn
                    .prepare_cached(&table.insert)
                    .db()?
                    .execute(params![
                        seq,
                        record.id(),
                        record.last_updated(),
                        record.json()
                    ])
                    .db()?;
            }
            _ => {}
        }
        Ok(upsert)
    }

    fn delete(&mut self, collection: Collection, id: &str) -> Result<bool, StoreError> {
        immutable::check_deletion(self, collection, id)?;
        let removed = self
            .conn
            .prepare_cached(&self.sql.tables[collection].delete)
            .db()?
            .execute([id])
            .db()?;
        if removed > 0 {
            self.count_change(collection);
            self.starts_epoch = true;
        }
        Ok(removed > 0)
    }

    fn start_epoch(&mut self) -> Result<(), StoreError> {
        self.modified = true;
        self.starts_epoch = true;
        Ok(())
    }

    fn upsert_stats(&mut self, row: &StatsRow) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO stats (day, name, version, direct_adds, total_adds) \
                 VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (day, name, version) DO UPDATE SET \
                 direct_adds = excluded.direct_adds, total_adds = excluded.total_adds",
            )
            .db()?
            .execute(params![
                row.date(),
                row.name(),
                row.version(),
                to_i64(row.direct_adds(), "directAdds")?,
                to_i64(row.total_adds(), "totalAdds")?
            ])
            .db()?;
        Ok(())
    }

    fn record_usage(&mut self, day: NaiveDate, report: &AppReport) -> Result<(), StoreError> {
        usage::record(&mut UsageSql(self.conn), &mut self.marked_day, day, report)
    }

    fn roll_up_usage(&mut self, day: NaiveDate) -> Result<Option<u64>, StoreError> {
        let conn = self.conn;
        let text = day.to_string();
        let recorded: Option<i64> = conn
            .prepare_cached("SELECT 1 FROM usage_days WHERE day = ?1")
            .db()?
            .query_row([&text], |row| row.get(0))
            .optional()
            .db()?;
        if recorded.is_none() {
            return Ok(None);
        }
        conn.prepare_cached("DELETE FROM stats WHERE day = ?1")
            .db()?
            .execute([&text])
            .db()?;
        let rows = conn
            .prepare_cached(
                "INSERT INTO stats (day, name, version, direct_adds, total_adds) \
                 SELECT ?1, p.name, p.version, SUM(a.direct), COUNT(*) \
                 FROM usage_adds a JOIN usage_packages p ON p.id = a.package_id \
                 WHERE a.day = ?2 GROUP BY a.package_id",
            )
            .db()?
            .execute(params![text, i64::from(day.num_days_from_ce())])
            .db()?;
        conn.prepare_cached("UPDATE usage_days SET pending = 0, rolled_up = 1 WHERE day = ?1")
            .db()?
            .execute([&text])
            .db()?;
        Ok(Some(rows as u64))
    }
}

/// A store in a fresh temporary directory, for tests across the crate; the directory lives
/// as long as the returned guard.
#[cfg(test)]
pub(crate) fn temp_store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = open_sqlite(dir.path()).expect("a fresh store opens");
    (dir, store)
}

#[cfg(test)]
mod tests {
    use exosphere_catalog::conformance::store::{all, record, upsert};

    use super::*;

    #[test]
    fn creates_directory_and_file_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("a/b");
        let store = open_sqlite(&data).unwrap();
        assert!(data.join(DATABASE_FILE).is_file());
        let epoch = store.state().unwrap().epoch;
        assert_eq!(epoch.len(), 17);
        upsert(&store, &record(Collection::Packages, "p1", "1"));
        drop(store);
        let store = open_sqlite(&data).unwrap();
        let state = store.state().unwrap();
        assert_eq!((state.epoch.as_str(), state.head_seq), (epoch.as_str(), 1));
        assert_eq!(state.changes(Collection::Packages), 1);
    }

    #[test]
    fn read_connections_are_open_from_the_start_and_stay_pooled() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_sqlite(dir.path()).unwrap();
        let pooled = SqliteOptions::default().max_idle_readers;
        assert_eq!(store.readers.lock().len(), pooled);
        upsert(&store, &record(Collection::Packages, "p1", "1"));
        assert_eq!(all(&store).len(), 1);
        assert_eq!(store.readers.lock().len(), pooled);
    }

    #[test]
    fn refuses_newer_schema_and_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        drop(open_sqlite(dir.path()).unwrap());
        let conn = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        let err = open_sqlite(dir.path()).err().unwrap();
        assert!(matches!(
            err,
            StoreError::SchemaTooNew { found, supported }
                if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION
        ));
        assert!(err.to_string().contains("upgrade Exosphere"), "{err}");

        let other = tempfile::tempdir().unwrap();
        let conn = Connection::open(other.path().join(DATABASE_FILE)).unwrap();
        conn.execute_batch("CREATE TABLE t (x)").unwrap();
        drop(conn);
        assert!(matches!(
            open_sqlite(other.path()),
            Err(StoreError::NotACatalog(_))
        ));
    }

    #[test]
    fn a_full_disk_is_named_with_the_data_directory_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_sqlite(dir.path()).unwrap();
        upsert(&store, &record(Collection::Packages, "p1", "1"));
        // SQLite answers a write past `max_page_count` exactly as a write to a full disk:
        // SQLITE_FULL.
        {
            let writer = store.writer.lock().unwrap();
            let pages: i64 = writer
                .query_row("PRAGMA page_count", [], |row| row.get(0))
                .unwrap();
            writer.pragma_update(None, "max_page_count", pages).unwrap();
        }
        let big = format!("\"{}\"", "x".repeat(60_000));
        let error = store
            .write(&mut |w| {
                w.upsert(&record(Collection::Packages, "p2", &big))
                    .map(drop)
            })
            .unwrap_err();
        assert!(
            matches!(&error, StoreError::DiskFull(Storage::Directory(path)) if path == dir.path()),
            "{error:?}"
        );
        assert!(error.to_string().contains("is full"), "{error}");
        assert_eq!(store.state().unwrap().head_seq, 1, "nothing was written");
    }

    #[test]
    fn records_stored_before_the_size_bound_are_paged_around() {
        use exosphere_catalog::record::MAX_RECORD_SIZE;
        use exosphere_catalog::sync::{Paging, sync_new_package_data};
        use serde_json::{Value, json};

        let dir = tempfile::tempdir().unwrap();
        let store = open_sqlite(dir.path()).unwrap();
        for (id, body) in [("v1", "1"), ("huge", "2"), ("v2", "3"), ("last", "4")] {
            upsert(&store, &record(Collection::Versions, id, body));
        }
        drop(store);
        // An older Exosphere stored any record it was given: put one far over the bound
        // into the file directly, as a database from before the upgrade holds it.
        let huge = format!(
            r#"{{"_id":"huge","junk":"{}"}}"#,
            "x".repeat(MAX_RECORD_SIZE)
        );
        let conn = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
        conn.execute(
            "UPDATE rec_versions SET json = ?1 WHERE id = 'huge'",
            [&huge],
        )
        .unwrap();
        drop(conn);

        let store = open_sqlite(dir.path()).unwrap();
        let paging = Paging {
            page_size: 1,
            ..Paging::default()
        };
        let mut token = json!({"format": "1.1"});
        let mut sent = Vec::new();
        for _ in 0..10 {
            let text = sync_new_package_data(&store, &token, &json!({}), &paging).unwrap();
            assert!(
                text.len() < MAX_RECORD_SIZE,
                "the oversized record was sent"
            );
            let result: Value = serde_json::from_str(&text).unwrap();
            for record in result["collections"]["versions"].as_array().unwrap() {
                sent.push(record["_id"].as_str().unwrap().to_owned());
            }
            token = result["syncToken"].clone();
            if result["upToDate"] == true {
                break;
            }
        }
        assert_eq!(sent, ["v1", "v2", "last"]);
        // Still stored: an operator can export it, and a publish can replace it.
        assert!(
            all(&store)
                .iter()
                .any(|(_, text)| text.len() > MAX_RECORD_SIZE)
        );
    }

    #[test]
    fn a_version_1_file_is_upgraded_in_place_and_keeps_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DATABASE_FILE);
        {
            // A catalog exactly as the version-1 build left it, with a record and a row.
            let mut conn = Connection::open(&path).unwrap();
            let tx = conn.transaction().unwrap();
            create_v1(&tx).unwrap();
            tx.execute(
                "INSERT INTO rec_packages (seq, id, last_updated, json) VALUES (1, 'p', 7, '{\"_id\":\"p\"}')",
                [],
            )
            .unwrap();
            tx.execute("UPDATE meta SET head_seq = 1, changes_packages = 1", [])
                .unwrap();
            tx.execute(
                "INSERT INTO stats VALUES ('2015-01-02', 'tracker', '1.0.0', 1, 2)",
                [],
            )
            .unwrap();
            tx.commit().unwrap();
            let version: i64 = conn
                .query_row("PRAGMA user_version", [], |row| row.get(0))
                .unwrap();
            assert_eq!(version, 1);
        }
        let store = open_sqlite(dir.path()).unwrap();
        let conn = Connection::open(&path).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let state = store.state().unwrap();
        assert_eq!(
            (state.head_seq, state.changes(Collection::Packages)),
            (1, 1)
        );
        assert_eq!(state.stats_latest.as_deref(), Some("2015-01-02"));
        assert_eq!(
            all(&store),
            [(Collection::Packages, r#"{"_id":"p"}"#.into())]
        );
        // The new tables work on the upgraded file.
        let day = NaiveDate::from_ymd_opt(2015, 1, 2).unwrap();
        let report = AppReport::new(
            "app",
            vec![exosphere_catalog::usage::UsedPackage {
                name: "tracker".into(),
                version: "1.0.0".into(),
                direct: true,
            }],
        )
        .unwrap();
        store.write(&mut |w| w.record_usage(day, &report)).unwrap();
        assert_eq!(
            exosphere_catalog::usage::roll_up(&store, day).unwrap(),
            Some(1)
        );
        let rows = store.package_stats_rows("tracker", day, day).unwrap();
        assert_eq!(
            rows,
            [StatsRow::new("2015-01-02", "tracker", "1.0.0", 1, 1).unwrap()]
        );
        // Opening the upgraded file again runs no step and keeps everything.
        drop(store);
        let reopened = open_sqlite(dir.path()).unwrap();
        assert_eq!(reopened.state().unwrap().head_seq, 1);
        assert_eq!(
            reopened.package_stats_rows("tracker", day, day).unwrap(),
            rows
        );
    }

    #[test]
    fn second_handle_sees_writes_and_waits_for_the_write_lock() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_sqlite(dir.path()).unwrap();
        let impatient = SqliteStore::open(
            dir.path(),
            &SqliteOptions {
                busy_timeout: Duration::from_millis(50),
                max_idle_readers: 0,
            },
        )
        .unwrap();
        upsert(&store, &record(Collection::Packages, "p", "1"));
        assert_eq!(impatient.state().unwrap().head_seq, 1);
        store
            .write(&mut |_| {
                let blocked = impatient.write(&mut |_| Ok(()));
                assert!(matches!(blocked, Err(StoreError::Busy)), "{blocked:?}");
                Ok(())
            })
            .unwrap();
        upsert(&impatient, &record(Collection::Packages, "p", "2"));
        assert_eq!(store.state().unwrap().head_seq, 2);
    }
}
