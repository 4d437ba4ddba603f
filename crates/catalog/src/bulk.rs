//! Moving a whole catalog between stores (`exosphere migrate`): every stored row streamed
//! out of one snapshot, and a bulk load into an empty store.
//!
//! The unit is a stored row of one of [`TABLES`], the tables every backend keeps (the same
//! names, columns and meaning on SQLite and PostgreSQL), each value typed by its column's
//! [`Kind`]. A backend's own tables and columns are not moved, and each backend's tests
//! list them (`conformance::bulk::assert_tables_are_moved`): PostgreSQL's schema version
//! (`exosphere_schema`), the written order of the mirror's stage tables (`ord`, kept by
//! loading their rows in that order), and which running server's seat receives an upload
//! (`uploads.receiver`): that is ownership by a process, not catalog data, and a copy
//! leaves it NULL, as no server of the new store receives anything yet (a ticket that was
//! being received is open again there, as after its server stopped). The rows are what the store keeps, not what it serves: records with their
//! sequence numbers, the `meta` row with the data epoch, head `seq` and change counters,
//! stats rows, usage recordings and days, accounts, tokens, upload tickets and pending
//! publishes, the mirror's state, stage and file map, claims, and the audit log. A copy
//! made through this seam is the same catalog: clients' sync tokens stay valid against it.
//!
//! # The contract (every [`BulkStore`] MUST keep it)
//!
//! * [`BulkStore::dump_rows`] visits every row of every table in [`TABLES`] order, each
//!   table in its [`Order`], all from one consistent snapshot (a running server may write
//!   meanwhile), holding no more than a few rows in memory.
//! * [`BulkStore::load_rows`] stores the rows it is given in one write transaction,
//!   serialized with every other write: all of them or, on any error (of the rows' source
//!   included), none. It refuses with [`StoreError::NotEmpty`], changing nothing, when the
//!   store holds anything besides a fresh `meta` row (head `seq` 0, zero counters). Rows of
//!   one table may come in one run or several; a `meta` row replaces the store's own, so
//!   the store keeps the epoch, head `seq` and counters it is given. Rows are stored as
//!   given, without the checks of [`CatalogWriter`](crate::CatalogWriter) (they come from
//!   another store that made them), except the sequence contract's: a record whose `seq`
//!   exceeds the loaded head `seq` is [`StoreError::Corrupt`] and stores nothing, and two
//!   rows of one table with the same key (primary or unique) are
//!   [`StoreError::BulkRefused`], naming the key where the backend tells it.
//!   Generated ids (usage apps and packages, audit entries) continue after the loaded ones.
//! * [`BulkStore::row_counts`] counts the rows of every table, from one snapshot.
//!
//! [`copy`] runs one store's dump into another's load on two threads joined by a bounded
//! channel, and [`verify`] then compares the two stores by counts, row by row and by a full
//! sync read. A copy keeps the source's epoch and head `seq`, which is right only when the
//! source is the newest copy of the catalog and nothing writes to either store meanwhile:
//! [`BulkStore::servers_running`] lets a caller refuse stores that servers run on.
//! [`import_dump`] bulk loads an NDJSON dump into an empty store.

use std::collections::HashSet;
use std::hash::{BuildHasher as _, RandomState};
use std::io::BufRead;
use std::sync::mpsc;

use crate::columns::to_i64;
use crate::dump::{DumpError, DumpLine, ImportOptions, ImportSummary, Lines, ReadLine};
use crate::error::StoreError;
use crate::immutable;
use crate::record::{Record, StatsRow};
use crate::store::{CatalogStore, Cursors, PageLimits};
use exosphere_meteor::Collection;

/// What a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A 64-bit signed integer (counters, times in ms, ids, sequence numbers, days).
    Int,
    /// A flag.
    Bool,
    /// UTF-8 text (names, keys, record and JSON text).
    Text,
}

/// One column of a [`Table`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Its name, the same in every backend.
    pub name: &'static str,
    /// What it holds.
    pub kind: Kind,
    /// Whether it may be NULL ([`Value::Null`]).
    pub nullable: bool,
}

/// The order a table's rows are dumped in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// By these columns (a key), in byte order for text.
    By(&'static [&'static str]),
    /// In the order the rows were written (the mirror's stage, which is served in that
    /// order); loading them in this order keeps it.
    Written,
}

/// A table every backend keeps, as moved by [`BulkStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Table {
    /// Its name, the same in every backend.
    pub name: &'static str,
    /// Its columns, in the order of a [`Row`]'s values.
    pub columns: &'static [Column],
    /// The order its rows are dumped in.
    pub order: Order,
}

impl Table {
    /// Its column names in order, comma-separated, as a backend's statements list them.
    pub fn column_names(&self) -> String {
        let names: Vec<&str> = self.columns.iter().map(|c| c.name).collect();
        names.join(", ")
    }

    /// The columns its rows are dumped in order of, comma-separated; `written` names the
    /// backend's own column of the order rows were written in ([`Order::Written`]).
    pub fn order_by(&self, written: &str) -> String {
        match self.order {
            Order::By(key) => key.join(", "),
            Order::Written => written.to_owned(),
        }
    }
}

impl Row {
    /// The row's key as messages name it: its table's order columns with their values
    /// (`day = "2015-01-02", name = "tracker", version = "1.0.0"`), or `in written order`
    /// for a table kept in the order its rows were written.
    pub fn describe_key(&self) -> String {
        let Order::By(columns) = self.table.order else {
            return "in written order".to_owned();
        };
        let shown: Vec<String> = columns
            .iter()
            .filter_map(|name| {
                let index = self.table.columns.iter().position(|c| c.name == *name)?;
                let value = match self.values.get(index)? {
                    Value::Null => "NULL".to_owned(),
                    Value::Int(n) => n.to_string(),
                    Value::Bool(flag) => flag.to_string(),
                    Value::Text(text) => format!("{text:?}"),
                };
                Some(format!("{name} = {value}"))
            })
            .collect();
        shown.join(", ")
    }

    /// A row of `table` as a backend reads it: `get` returns column `index`'s value of
    /// `kind` (`None` for NULL); a NULL where the column holds none is corruption.
    pub fn read(
        table: &'static Table,
        mut get: impl FnMut(usize, Kind) -> Result<Option<Value>, StoreError>,
    ) -> Result<Row, StoreError> {
        let mut values = Vec::with_capacity(table.columns.len());
        for (index, column) in table.columns.iter().enumerate() {
            values.push(match get(index, column.kind)? {
                Some(value) => value,
                None if column.nullable => Value::Null,
                None => {
                    return Err(StoreError::Corrupt(format!(
                        "{}.{} is NULL",
                        table.name, column.name
                    )));
                }
            });
        }
        Ok(Row { table, values })
    }
}

/// One value of a [`Row`], of its column's [`Kind`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// NULL, in a nullable column.
    Null,
    /// A [`Kind::Int`] value.
    Int(i64),
    /// A [`Kind::Bool`] value.
    Bool(bool),
    /// A [`Kind::Text`] value.
    Text(String),
}

/// One stored row: the table and its values, one per column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The table, one of [`TABLES`].
    pub table: &'static Table,
    /// The values, in the table's column order.
    pub values: Vec<Value>,
}

/// A column of `kind`, NULL not allowed.
const fn col(name: &'static str, kind: Kind) -> Column {
    Column {
        name,
        kind,
        nullable: false,
    }
}

/// A column of `kind` that may be NULL.
const fn opt(name: &'static str, kind: Kind) -> Column {
    Column {
        name,
        kind,
        nullable: true,
    }
}

use Kind::{Bool, Int, Text};

/// The columns of every record table (`rec_<collection>`).
const RECORD_COLUMNS: &[Column] = &[
    col("seq", Int),
    col("id", Text),
    opt("last_updated", Int),
    col("json", Text),
];

/// A record table, ordered by `seq`.
const fn records(name: &'static str) -> Table {
    Table {
        name,
        columns: RECORD_COLUMNS,
        order: Order::By(&["seq"]),
    }
}

/// The name of the single-row table holding the epoch, head `seq` and change counters.
pub const META: &str = "meta";

/// The name of the table of stats rows.
const STATS: &str = "stats";

/// Every table a catalog keeps, in dump order. The record tables follow
/// [`Collection::ALL`] (see [`record_table`]).
pub const TABLES: &[Table] = &[
    Table {
        name: META,
        columns: &[
            col("id", Int),
            col("epoch", Text),
            col("head_seq", Int),
            col("changes_packages", Int),
            col("changes_versions", Int),
            col("changes_builds", Int),
            col("changes_release_tracks", Int),
            col("changes_release_versions", Int),
        ],
        order: Order::By(&["id"]),
    },
    records("rec_packages"),
    records("rec_versions"),
    records("rec_builds"),
    records("rec_release_tracks"),
    records("rec_release_versions"),
    Table {
        name: STATS,
        columns: &[
            col("day", Text),
            col("name", Text),
            col("version", Text),
            col("direct_adds", Int),
            col("total_adds", Int),
        ],
        order: Order::By(&["day", "name", "version"]),
    },
    Table {
        name: "usage_apps",
        columns: &[col("id", Int), col("app", Text), col("list_hash", Int)],
        order: Order::By(&["id"]),
    },
    Table {
        name: "usage_packages",
        columns: &[col("id", Int), col("name", Text), col("version", Text)],
        order: Order::By(&["id"]),
    },
    Table {
        name: "usage_adds",
        columns: &[
            col("app_id", Int),
            col("package_id", Int),
            col("day", Int),
            col("direct", Bool),
        ],
        order: Order::By(&["app_id", "package_id"]),
    },
    Table {
        name: "usage_days",
        columns: &[
            col("day", Text),
            col("pending", Bool),
            col("rolled_up", Bool),
        ],
        order: Order::By(&["day"]),
    },
    Table {
        name: "users",
        columns: &[col("id", Text), col("username", Text), col("admin", Bool)],
        order: Order::By(&["id"]),
    },
    Table {
        name: "orgs",
        columns: &[col("id", Text), col("name", Text)],
        order: Order::By(&["id"]),
    },
    Table {
        name: "org_members",
        columns: &[col("org_id", Text), col("user_id", Text)],
        order: Order::By(&["org_id", "user_id"]),
    },
    Table {
        name: "tokens",
        columns: &[
            col("id", Text),
            col("hash", Text),
            col("user_id", Text),
            col("created", Int),
            col("expires", Int),
        ],
        order: Order::By(&["id"]),
    },
    Table {
        name: "uploads",
        columns: &[
            col("hash", Text),
            col("staging", Text),
            col("destination", Text),
            col("max_size", Int),
            col("expires", Int),
            col("state", Text),
            opt("size", Int),
            opt("sha256", Text),
        ],
        order: Order::By(&["hash"]),
    },
    Table {
        name: "pending",
        columns: &[
            col("hash", Text),
            col("kind", Text),
            col("subject", Text),
            col("user_id", Text),
            col("record", Text),
            col("uploads", Text),
            col("expires", Int),
        ],
        order: Order::By(&["hash"]),
    },
    Table {
        name: "mirror_state",
        columns: &[
            col("id", Int),
            col("upstream", Text),
            opt("token", Text),
            opt("staging_token", Text),
            opt("held", Text),
            opt("last_success", Int),
            opt("last_error_at", Int),
            opt("last_error", Text),
            opt("sync_requested", Int),
        ],
        order: Order::By(&["id"]),
    },
    Table {
        name: "mirror_stage",
        columns: &[
            col("collection", Text),
            col("id", Text),
            opt("last_updated", Int),
            col("json", Text),
        ],
        order: Order::Written,
    },
    Table {
        name: "mirror_stage_files",
        columns: &[col("key", Text), col("url", Text), opt("sha256", Text)],
        order: Order::Written,
    },
    Table {
        name: "mirror_files",
        columns: &[
            col("key", Text),
            col("url", Text),
            opt("sha256", Text),
            opt("cached_size", Int),
        ],
        order: Order::By(&["key"]),
    },
    Table {
        name: "mirror_claims",
        columns: &[col("kind", Text), col("name", Text)],
        order: Order::By(&["kind", "name"]),
    },
    Table {
        name: "audit",
        columns: &[
            col("id", Int),
            col("time", Int),
            col("actor", Text),
            opt("address", Text),
            col("action", Text),
            col("target", Text),
            opt("package", Text),
            col("detail", Text),
        ],
        order: Order::By(&["id"]),
    },
];

/// The tables whose integer `id` the store generates for new rows (usage apps and
/// packages, audit entries): after a load, new ids continue after the loaded ones.
pub const GENERATED_IDS: &[&str] = &["usage_apps", "usage_packages", "audit"];

/// The table of `collection`'s records.
pub fn record_table(collection: Collection) -> &'static Table {
    let index = Collection::ALL
        .iter()
        .position(|c| *c == collection)
        .expect("every collection is in Collection::ALL");
    &TABLES[1 + index]
}

/// The index in [`TABLES`] of a loaded row's `table`; a table that is not one of them (a
/// [`Row`] made up elsewhere) is refused, so that a load never writes to a table the
/// catalog does not move.
pub fn known_table(table: &Table) -> Result<usize, StoreError> {
    TABLES
        .iter()
        .position(|known| known == table)
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "a loaded row names the table {}, which is not one of the catalog's tables",
                table.name
            ))
        })
}

/// The rows of every table, as [`BulkStore::row_counts`] returns them: one count per table
/// of [`TABLES`], in that order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowCounts(pub Vec<u64>);

impl RowCounts {
    /// All rows together.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Each table with its count, in [`TABLES`] order.
    pub fn by_table(&self) -> impl Iterator<Item = (&'static Table, u64)> + '_ {
        TABLES.iter().zip(self.0.iter().copied())
    }

    /// What a store holds besides a fresh `meta` row, for [`StoreError::NotEmpty`]: e.g.
    /// `rec_packages 210, users 2`; empty when it holds nothing else.
    pub fn describe_contents(&self) -> String {
        self.by_table()
            .filter(|(table, n)| *n > 0 && table.name != META)
            .map(|(table, n)| format!("{} {n}", table.name))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Refuses a bulk load into a store that holds anything besides a fresh `meta` row: any
/// row of another table (`counts`, read inside the load's transaction) or a head `seq`
/// above zero (records were written, perhaps all deleted since).
pub fn check_empty(counts: &RowCounts, head_seq: u64) -> Result<(), StoreError> {
    let contents = counts.describe_contents();
    match (contents.is_empty(), head_seq) {
        (true, 0) => Ok(()),
        (true, head) => Err(StoreError::NotEmpty(format!(
            "no rows, but its head sequence number is {head}"
        ))),
        (false, _) => Err(StoreError::NotEmpty(contents)),
    }
}

/// Keeps the sequence contract after a bulk load: a record numbered above the loaded head
/// `seq` would be handed its number again by the next write, so such a load is refused.
pub fn check_loaded_seq(table: &Table, max_seq: u64, head_seq: u64) -> Result<(), StoreError> {
    if max_seq > head_seq {
        return Err(StoreError::Corrupt(format!(
            "the loaded {} holds sequence number {max_seq}, above the loaded head {head_seq}",
            table.name
        )));
    }
    Ok(())
}

/// A store whose whole contents can be streamed out and loaded in bulk (see the module's
/// contract). Its own trait beside [`CatalogStore`], so the serving paths keep a small
/// interface; every backend implements both.
pub trait BulkStore: CatalogStore {
    /// Calls `f` with every row of every table of [`TABLES`], in that order, each table in
    /// its [`Order`], from one consistent snapshot. An `Err` from `f` stops and is returned.
    fn dump_rows(&self, f: &mut dyn FnMut(Row) -> Result<(), StoreError>)
    -> Result<(), StoreError>;

    /// Loads every row `next` yields (until `Ok(None)`) into this empty store, in one write
    /// transaction; an `Err` from `next` rolls everything back and is returned. Refuses a
    /// store that is not empty with [`StoreError::NotEmpty`], and rows that share a key
    /// with [`StoreError::BulkRefused`].
    fn load_rows(
        &self,
        next: &mut dyn FnMut() -> Result<Option<Row>, StoreError>,
    ) -> Result<(), StoreError>;

    /// The number of rows of every table, from one snapshot.
    fn row_counts(&self) -> Result<RowCounts, StoreError>;

    /// How many servers run on this store now, as far as the store itself can tell: on a
    /// store shared by several servers, the seats they hold
    /// ([`CatalogStore::join_servers`]) and any server of an older release; a copy must
    /// not run beside them (a write during it would be missing from the copy). A store
    /// whose server locks it some other way (SQLite's data directory's serve lock, which
    /// its caller takes) counts none.
    fn servers_running(&self) -> Result<u64, StoreError>;
}

/// How many rows may wait between the dumping and the loading thread of [`copy`], and
/// between the reading and the loading thread of [`import_dump`] (there in batches of at
/// most [`BATCH_ROWS`] rows and [`BATCH_BYTES`] bytes, `CHANNEL_ROWS / BATCH_ROWS` batches).
const CHANNEL_ROWS: usize = 1024;

/// Copies every row of `from` into the empty store `to` ([`BulkStore::load_rows`]): `from`
/// is dumped on a thread of its own while `to` loads, joined by a bounded channel, so the
/// copy holds a bounded number of rows whatever the catalog's size. `progress` is called
/// with each row as it is loaded. Either everything is copied or `to` is left as it was.
pub fn copy(
    from: &dyn BulkStore,
    to: &dyn BulkStore,
    progress: &mut dyn FnMut(&Row),
) -> Result<(), StoreError> {
    beside_dump(from, |receiver| {
        to.load_rows(&mut || match receiver.recv() {
            Ok(Some(row)) => {
                progress(&row);
                Ok(Some(row))
            }
            Ok(None) => Ok(None),
            Err(_) => Err(StoreError::Aborted),
        })
    })
}

/// Runs `consume` on a channel receiving every row of `from` ([`BulkStore::dump_rows`],
/// dumped on a thread of its own, at most [`CHANNEL_ROWS`] waiting), then `None` once the
/// dump is complete; a dump that failed closes the channel without it. Returns `consume`'s
/// result, or the dump's own failure, which explains a consumer that saw the channel
/// close ([`StoreError::Aborted`]).
fn beside_dump<T>(
    from: &dyn BulkStore,
    consume: impl FnOnce(&mpsc::Receiver<Option<Row>>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let (sender, receiver) = mpsc::sync_channel::<Option<Row>>(CHANNEL_ROWS);
    std::thread::scope(|scope| {
        let dumping = scope.spawn(move || {
            let sent =
                from.dump_rows(&mut |row| sender.send(Some(row)).map_err(|_| StoreError::Aborted));
            sent.and_then(|()| sender.send(None).map_err(|_| StoreError::Aborted))
        });
        let consumed = consume(&receiver);
        drop(receiver);
        let dumped = dumping
            .join()
            .unwrap_or_else(|_| Err(StoreError::TaskFailed("the dump panicked".into())));
        match (dumped, consumed) {
            (Err(error), _) if !matches!(error, StoreError::Aborted) => Err(error),
            (_, consumed) => consumed,
        }
    })
}

/// Imports a dump into an empty store as one bulk load, storing what
/// [`crate::dump::import_with`] would (sequence numbers in file order, one change per
/// record, the store's epoch kept) several times faster. A dump it cannot load this way
/// fails with [`StoreError::NotEmpty`] or [`StoreError::BulkRefused`] (in
/// [`DumpError::Store`]) and stores nothing; import it with [`crate::dump::import_with`]
/// then, whose upserts decide those cases: the store is not empty, an `_id` or a stats
/// row's day, name and version comes twice, or two version records share a `name@version`
/// (upserts refuse the whole dump when the first is published,
/// [`StoreError::PublishedVersionTaken`]; the load remembers a 64-bit hash of each
/// version's name and version, a few megabytes for the largest catalogs, and a repeat or a
/// hash collision stops it). Any other store error (busy, a full disk, a lost connection)
/// is the import's failure, not a reason to try upserts. Errors of the input itself name
/// the line, as there. Rows are loaded in the dump's order: a dump grouped by collection,
/// as exports write it, loads fastest (see the backend's bulk load).
///
/// The calling thread reads the dump (each record line in one pass where it can,
/// `dump::parse_line`, with the key its `name@version` check needs) while a thread of its
/// own runs the load (inside the caller's tracing span), joined by a bounded channel of
/// rows in batches, so that reading and the backend's encoding and sending overlap; the
/// load stores nothing unless every line was read. A bad line is the error even when the
/// load failed too.
pub fn import_dump(
    store: &dyn BulkStore,
    input: impl BufRead,
    options: &ImportOptions,
) -> Result<ImportSummary, DumpError> {
    let mut rows = DumpRows {
        lines: Lines::new(input, options),
        epoch: store.state()?.epoch,
        head: 0,
        summary: ImportSummary::default(),
        hasher: RandomState::new(),
        versions: HashSet::new(),
    };
    let (sender, receiver) = mpsc::sync_channel::<Option<Vec<Row>>>(CHANNEL_ROWS / BATCH_ROWS);
    let carried = exosphere_task::carry();
    std::thread::scope(|scope| {
        let loading = std::thread::Builder::new()
            .name("bulk load".to_owned())
            .spawn_scoped(scope, move || {
                carried.run(|| {
                    let mut batch = Vec::new().into_iter();
                    store.load_rows(&mut || {
                        loop {
                            if let Some(row) = batch.next() {
                                return Ok(Some(row));
                            }
                            match receiver.recv() {
                                Ok(Some(rows)) => batch = rows.into_iter(),
                                Ok(None) => return Ok(None),
                                Err(_) => return Err(StoreError::Aborted),
                            }
                        }
                    })
                })
            })
            .map_err(|error| {
                StoreError::TaskFailed(format!("starting the bulk load's thread: {error}"))
            })?;
        let read = rows.send(&sender);
        drop(sender);
        let loaded = loading
            .join()
            .unwrap_or_else(|_| Err(StoreError::TaskFailed("the bulk load panicked".into())));
        // The reader's failure first: the load then saw the channel close (Aborted), and a
        // bad line is what the user must fix whatever the load made of the lines before it.
        match (read, loaded) {
            (Err(failure), _) => Err(failure),
            (Ok(()), Err(error)) => Err(DumpError::Store(error)),
            (Ok(()), Ok(())) => Ok(std::mem::take(&mut rows.summary)),
        }
    })
}

/// How many rows [`import_dump`] hands its loading thread at a time, at most.
const BATCH_ROWS: usize = 256;

/// How many bytes of values [`import_dump`] hands its loading thread at a time, at most
/// (a batch is cut at the row that reaches it): records run up to `MAX_RECORD_SIZE`, so a
/// batch of rows alone could hold hundreds of megabytes.
const BATCH_BYTES: usize = 1 << 20;

/// The rows of a dump, as [`import_dump`] reads them: its records numbered in file order,
/// its stats rows, and a final `meta` row.
struct DumpRows<R> {
    lines: Lines<R>,
    epoch: String,
    /// The last record's `seq`.
    head: u64,
    summary: ImportSummary,
    hasher: RandomState,
    /// The hashes of the versions' `name@version` so far.
    versions: HashSet<u64>,
}

impl<R: BufRead> DumpRows<R> {
    /// Reads every line into rows and sends them to `sender` in batches, then the `meta`
    /// row and `None`. Stops at the first invalid line or repeated `name@version` (without
    /// sending `None`, so the load stores nothing), or when the load stopped.
    fn send(&mut self, sender: &mpsc::SyncSender<Option<Vec<Row>>>) -> Result<(), DumpError> {
        let mut batch = Vec::with_capacity(BATCH_ROWS);
        let mut bytes = 0;
        loop {
            let (row, last) = match self.lines.next_read()? {
                Some(read) => (self.row(read)?, false),
                None => (meta_row(&self.epoch, self.head, &self.summary)?, true),
            };
            bytes += row_bytes(&row);
            batch.push(row);
            if last || batch.len() == BATCH_ROWS || bytes >= BATCH_BYTES {
                bytes = 0;
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_ROWS));
                if sender.send(Some(full)).is_err() {
                    return Ok(());
                }
            }
            if last {
                // A load that stopped meanwhile has its own error to tell.
                let _ = sender.send(None);
                return Ok(());
            }
        }
    }

    /// The row of one line; a version record repeating a `name@version` is refused.
    fn row(&mut self, read: ReadLine) -> Result<Row, StoreError> {
        match read.line {
            DumpLine::Record(record) => {
                if record.collection() == Collection::Versions {
                    let key = match &read.key {
                        Some([Some(package), Some(version)]) => {
                            Some(self.hasher.hash_one((package.as_str(), version.as_str())))
                        }
                        Some(_) => None,
                        None => version_key(&record, &self.hasher)?,
                    };
                    if key.is_some_and(|key| !self.versions.insert(key)) {
                        return Err(StoreError::BulkRefused(format!(
                            "the version record {} shares its packageName and version with \
                             another of the dump (or their hashes collide)",
                            record.id()
                        )));
                    }
                }
                self.head += 1;
                self.summary.records[record.collection()].inserted += 1;
                record_row(record, self.head)
            }
            DumpLine::Stats(row) => {
                self.summary.stats_rows += 1;
                stats_row(&row)
            }
        }
    }
}

/// A hash by `hasher` of a version record's natural key, `(packageName, version)`
/// ([`immutable::version_key`]), when it has both as strings; a record that names them
/// otherwise is refused (left to the upserts).
fn version_key(record: &Record, hasher: &RandomState) -> Result<Option<u64>, StoreError> {
    let key = immutable::version_key(record.json()).map_err(|_| {
        StoreError::BulkRefused(format!(
            "the packageName or version of the version record {} is not a string",
            record.id()
        ))
    })?;
    Ok(key.map(|(package, version)| hasher.hash_one((&*package, &*version))))
}

/// The row of `record`, numbered `seq`.
fn record_row(record: Record, seq: u64) -> Result<Row, StoreError> {
    let table = record_table(record.collection());
    let (id, last_updated, json) = record.into_parts();
    Ok(Row {
        table,
        values: vec![
            Value::Int(to_i64(seq, "seq")?),
            Value::Text(id),
            last_updated.map_or(Value::Null, Value::Int),
            Value::Text(json),
        ],
    })
}

/// The row of a stats row.
fn stats_row(row: &StatsRow) -> Result<Row, StoreError> {
    Ok(Row {
        table: table(STATS),
        values: vec![
            Value::Text(row.date().to_owned()),
            Value::Text(row.name().to_owned()),
            Value::Text(row.version().to_owned()),
            Value::Int(to_i64(row.direct_adds(), "directAdds")?),
            Value::Int(to_i64(row.total_adds(), "totalAdds")?),
        ],
    })
}

/// About how many bytes a row's values hold, for cutting [`import_dump`]'s batches.
fn row_bytes(row: &Row) -> usize {
    row.values
        .iter()
        .map(|value| match value {
            Value::Text(text) => text.len(),
            Value::Null | Value::Int(_) | Value::Bool(_) => 8,
        })
        .sum()
}

/// The `meta` row of a catalog of `epoch` whose records were numbered up to `head`, one
/// change each.
fn meta_row(epoch: &str, head: u64, summary: &ImportSummary) -> Result<Row, StoreError> {
    let mut values = vec![
        Value::Int(1),
        Value::Text(epoch.to_owned()),
        Value::Int(to_i64(head, "head_seq")?),
    ];
    for c in Collection::ALL {
        values.push(Value::Int(to_i64(
            summary.records[c].inserted,
            "change counter",
        )?));
    }
    Ok(Row {
        table: table(META),
        values,
    })
}

/// The table named `name`, one of [`TABLES`].
fn table(name: &str) -> &'static Table {
    TABLES
        .iter()
        .find(|table| table.name == name)
        .expect("the table is one of TABLES")
}

/// How two stores differ, as [`verify`] finds it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    /// A table holds a different number of rows.
    #[error("table {table} holds {from} rows in the source and {to} in the target")]
    Count {
        /// The table.
        table: &'static str,
        /// Its rows in the source.
        from: u64,
        /// Its rows in the target.
        to: u64,
    },
    /// A stored row differs, or is in one store only: the first such row in dump order.
    #[error("table {table} differs at its row {row} in dump order ({what})")]
    Row {
        /// The table.
        table: &'static str,
        /// The row's 1-based position in its table's dump order.
        row: u64,
        /// The row's key in the source (or the target, for a row the source lacks), and
        /// how it differs.
        what: String,
    },
    /// A full sync read returned different pages.
    #[error("a full sync read differs after {records} identical records (epoch, head or a record)")]
    Sync {
        /// Records that were identical before the difference.
        records: u64,
    },
}

/// What [`verify`] compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The row counts both stores share.
    pub counts: RowCounts,
    /// Rows compared value for value, identical.
    pub rows: u64,
    /// Records a full sync read returned from each store, identical.
    pub synced_records: u64,
}

/// The page size [`verify`] reads with: what a sync client gets per page.
const VERIFY_PAGE: PageLimits = PageLimits {
    records: 500,
    bytes: 4 << 20,
};

/// Checks that `to` holds what `from` holds: the same row count in every table, every row
/// of both dumps ([`BulkStore::dump_rows`], read side by side, a bounded number of rows at a
/// time) identical value for value, and a full sync read (every page from cursor zero
/// through [`CatalogStore::read_page`]) returning identical pages, epochs and head sequence
/// numbers included. Reads a page at a time.
pub fn verify(
    from: &dyn BulkStore,
    to: &dyn BulkStore,
) -> Result<Result<Verified, Mismatch>, StoreError> {
    let (counts, to_counts) = (from.row_counts()?, to.row_counts()?);
    for ((table, a), b) in counts.by_table().zip(to_counts.0.iter().copied()) {
        if a != b {
            return Ok(Err(Mismatch::Count {
                table: table.name,
                from: a,
                to: b,
            }));
        }
    }
    let rows = match compare_rows(from, to)? {
        Ok(rows) => rows,
        Err(mismatch) => return Ok(Err(mismatch)),
    };
    let mut cursors = Cursors::default();
    let mut records = 0u64;
    loop {
        let page = from.read_page(&cursors, &VERIFY_PAGE)?;
        if page != to.read_page(&cursors, &VERIFY_PAGE)? {
            return Ok(Err(Mismatch::Sync { records }));
        }
        records += page.advance(&mut cursors);
        if !page.has_more {
            return Ok(Ok(Verified {
                counts,
                rows,
                synced_records: records,
            }));
        }
    }
}

/// Compares the dumps of `from` and `to` row by row, `from`'s read on a thread of its own
/// ([`beside_dump`]); the number of identical rows, or the first that differs.
fn compare_rows(
    from: &dyn BulkStore,
    to: &dyn BulkStore,
) -> Result<Result<u64, Mismatch>, StoreError> {
    let mut mismatch = None;
    let mut place = Place::default();
    let compared = beside_dump(from, |source| {
        let compared = to.dump_rows(&mut |theirs| {
            let ours = source.recv().map_err(|_| StoreError::Aborted)?;
            let at = place.next(ours.as_ref().unwrap_or(&theirs).table);
            match ours {
                Some(ours) if ours == theirs => Ok(()),
                Some(ours) => {
                    mismatch = Some(at.mismatch(&ours, "its values differ in the target"));
                    Err(StoreError::Aborted)
                }
                None => {
                    mismatch = Some(at.mismatch(&theirs, "in the target only"));
                    Err(StoreError::Aborted)
                }
            }
        });
        match compared {
            Err(StoreError::Aborted) if mismatch.is_some() => return Ok(()),
            compared => compared?,
        }
        if let Some(ours) = source.recv().map_err(|_| StoreError::Aborted)? {
            let at = place.next(ours.table);
            mismatch = Some(at.mismatch(&ours, "missing from the target"));
        }
        Ok(())
    });
    match (compared, mismatch) {
        (_, Some(mismatch)) => Ok(Err(mismatch)),
        (Err(error), None) => Err(error),
        (Ok(()), None) => Ok(Ok(place.total)),
    }
}

/// Where [`compare_rows`] is: the table and the row in it, and the rows compared.
#[derive(Default)]
struct Place {
    table: Option<&'static str>,
    row: u64,
    total: u64,
}

impl Place {
    /// Moves to the next row, of `table`.
    fn next(&mut self, table: &'static Table) -> &Self {
        if self.table != Some(table.name) {
            (self.table, self.row) = (Some(table.name), 0);
        }
        self.row += 1;
        self.total += 1;
        self
    }

    /// The mismatch at this row, `row` (of the source, or of the target for a row only it
    /// holds) and `how` it differs.
    fn mismatch(&self, row: &Row, how: &str) -> Mismatch {
        Mismatch::Row {
            table: row.table.name,
            row: self.row,
            what: format!("{}: {how}", row.describe_key()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::columns::snake;

    #[test]
    fn record_tables_and_change_counters_follow_the_collections() {
        let meta = table(META);
        let counters: Vec<&str> = meta.columns[3..].iter().map(|c| c.name).collect();
        let expected: Vec<String> = Collection::ALL
            .iter()
            .map(|c| format!("changes_{}", snake(*c)))
            .collect();
        assert_eq!(counters, expected);
        for c in Collection::ALL {
            let records = record_table(c);
            assert_eq!(records.name, format!("rec_{}", snake(c)));
            assert_eq!(records.columns, RECORD_COLUMNS);
            assert_eq!(
                known_table(records).ok(),
                TABLES.iter().position(|t| t == records)
            );
        }
        let record = Record::from_json(Collection::Builds, r#"{"_id":"b"}"#).unwrap();
        let row = record_row(record, 7).unwrap();
        assert_eq!(row.table.name, "rec_builds");
        assert_eq!(row.values.len(), RECORD_COLUMNS.len());
        let made_up = Table {
            name: "users; DROP TABLE meta",
            columns: &[],
            order: Order::Written,
        };
        assert!(matches!(known_table(&made_up), Err(StoreError::Corrupt(_))));
    }
}
