//! The PostgreSQL backend of the catalog's [`CatalogStore`]: one database shared by any
//! number of Exosphere commands and servers. This crate's one job is storing the catalog in
//! PostgreSQL; the trait, its contract and everything built on it are `exosphere-catalog`'s,
//! and its contract tests run here from `tests/conformance.rs` against a real server.
//!
//! # Driver and pool
//!
//! `tokio-postgres`, the standard Rust PostgreSQL driver, behind the synchronous store trait
//! (`bridge.rs`: one background runtime drives the sockets, callers park until their answer
//! comes, so the store works from any thread, inside a Tokio runtime or not). No TLS stack is
//! linked: connections are plain TCP or Unix sockets, and a database across an untrusted
//! network needs a TLS-terminating proxy or tunnel. The pool is this crate's own (`pool.rs`):
//! bounded, shared by reads and writes, each connection keeping its prepared statements
//! (`session.rs`).
//!
//! # Schema
//!
//! See `schema.rs` (with the rule for servers of different releases on one database);
//! natural-key indexes are `keys.rs`'s, the mirror's tables `mirror.rs`'s.
//!
//! # Concurrency and durability
//!
//! * Writes lock the one `meta` row first and allocate `seq` under that lock (`writer.rs`), so
//!   sequence numbers become visible in increasing order across servers.
//! * Reads that must be consistent (exports, a stats day) run in one `REPEATABLE READ, READ
//!   ONLY` transaction: one snapshot. A sync page, the state and the snapshot are each one
//!   statement, which sees one snapshot without a transaction block.
//! * A process's writes queue before they take a connection (`queue.rs`), so waiting writers
//!   never hold the connections reads need. A write that waits longer than
//!   [`PgOptions::lock_timeout`], in that queue or for another process's lock, fails with
//!   [`StoreError::Busy`], and so do deadlocks, serialization failures and a pool whose
//!   connections all stayed in use.
//! * Several servers share the database: each holds a seat, a session advisory lock whose
//!   presence in `pg_locks` tells the others it runs ([`SERVER_LOCK_CLASS`]); the jobs they
//!   share run under duty locks ([`DUTY_LOCK_CLASS`]) (`servers.rs`); and writes that change
//!   the state `NOTIFY` every server's change listener at commit (`hints.rs`).
//! * Every new connection (the first at open included) is refused where `synchronous_commit`
//!   or `fsync` is off: a crash could lose commits that clients already saw, and their
//!   sequence numbers would be handed out again.
//! * A database whose head `seq` went backwards under a running store (restored from a
//!   backup, or failed over to a standby that lacked the last commits) would hand out again
//!   numbers clients already hold; the store notices (the head it reads is below one it read
//!   before in the same epoch) and starts a new data epoch, so every client resyncs
//!   (`seen.rs`).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use chrono::NaiveDate;
use exosphere_catalog::accounts::UploadTicket;
use exosphere_catalog::audit::{AuditEntry, AuditQuery};
use exosphere_catalog::columns::{stats_range, stats_row, to_u64};
use exosphere_catalog::day::parse_day;
use exosphere_catalog::error::StoreError;
use exosphere_catalog::mirror::{MirrorState, UpstreamFile};
use exosphere_catalog::record::StatsRow;
use exosphere_catalog::replica::SyncReplica;
use exosphere_catalog::store::{
    CatalogState, CatalogStore, CatalogWriter, Cursors, Duty, ExportItem, Hold, Next, Page,
    PageFill, PageLimits, PageRecord, ServerSeat, Snapshot,
};
use exosphere_meteor::{Collection, PerCollection};
use tokio_postgres::{Config, IsolationLevel};

use crate::bridge::{
    KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_RETRIES, Redial, TCP_USER_TIMEOUT, wait,
};
use crate::error::{Db as _, name_storage_trouble, refusal};
use crate::pool::{Conn, Pool};
use crate::queue::WriteQueue;
use crate::seen::Seen;
use crate::session::{Session, col};
use crate::writer::{META_COLUMNS, META_PART, PAGE_COLUMNS, PgWriter, Sql, meta_of};

mod accounts;
mod audit;
pub mod bench;
mod bridge;
mod bulk;
mod error;
mod hints;
mod keys;
mod mirror;
mod pool;
mod queue;
mod replica;
mod schema;
mod seen;
mod servers;
mod session;
mod writer;

pub use servers::{DUTY_LOCK_CLASS, SERVER_LOCK_CLASS};

/// The longest time limit PostgreSQL accepts (`lock_timeout` and the like are a 32-bit
/// count of milliseconds, about 24.8 days); longer options are taken as this.
const LONGEST_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

/// Tunables of the PostgreSQL backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgOptions {
    /// Most connections this store holds at once (reads and writes together); every server
    /// on the database takes up to this many of PostgreSQL's `max_connections`.
    pub max_connections: usize,
    /// How long a write waits for the writes before it, of this process (queued before
    /// they take a connection) and then of other processes (PostgreSQL's `lock_timeout`),
    /// before failing with [`StoreError::Busy`]. At most about 24.8 days (PostgreSQL's
    /// limit); a longer one is taken as that.
    pub lock_timeout: Duration,
    /// How long a call waits for a free connection when all are in use (then
    /// [`StoreError::Busy`]), and how long establishing a new connection may take in all:
    /// the TCP connection, PostgreSQL's startup and the authentication. Limited as
    /// `lock_timeout` is.
    pub connect_timeout: Duration,
    /// The longest pause between attempts to reconnect the change listener
    /// ([`CatalogStore::hint_changes`]) or a server's seat ([`CatalogStore::join_servers`])
    /// after its connection dropped; the first pause is 100 ms, doubling up to this.
    /// Changes are noticed by polling meanwhile; other servers see the seat's uploads as
    /// abandoned until it is taken again.
    pub reconnect_max_backoff: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            max_connections: 8,
            lock_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(30),
            reconnect_max_backoff: Duration::from_secs(5),
        }
    }
}

/// Opens the catalog in the database at `url` (`postgres://user@host:port/dbname`) with
/// default options, creating its schema if the database has none.
pub fn open_postgres(url: &str) -> Result<PgStore, StoreError> {
    PgStore::open(url, &PgOptions::default())
}

/// Opens the catalog in the database at `url` with default options to read it, writing
/// nothing at open ([`PgStore::open_existing`]).
pub fn open_postgres_existing(url: &str) -> Result<PgStore, StoreError> {
    PgStore::open_existing(url, &PgOptions::default())
}

/// The database at `url` as logs and errors name it ("the PostgreSQL database NAME on
/// HOST:PORT"), never with its password: what a server says it serves from. `None` when
/// `url` is not a PostgreSQL connection string.
pub fn describe_url(url: &str) -> Option<String> {
    url.parse::<Config>().ok().map(|config| describe(&config))
}

/// A catalog stored in a PostgreSQL database.
pub struct PgStore {
    pool: Pool,
    sql: Sql,
    /// Where this process's writes wait their turn before taking a connection.
    writes: WriteQueue,
    /// Run first in every write transaction: PostgreSQL ends a write that stays idle in its
    /// transaction (its process stopped, its network gone) longer than `lock_timeout`,
    /// releasing the meta row's lock that every other writer would have given up waiting
    /// for by then anyway.
    write_setup: String,
    /// The database as errors name it ("the PostgreSQL database … on …").
    database: String,
    /// The epoch and the highest head `seq` this store has read in it.
    seen: Seen,
    /// How the connections of its own that must stay up (the change listener, the seat)
    /// connect again when they drop.
    redial: Redial,
    /// The local copy of the records that sync pages are read from, if the store was given
    /// one ([`PgStore::with_sync_replica`], `replica.rs`).
    replica: Option<Box<dyn SyncReplica>>,
    /// Set while sync pages are read from the database because the replica failed, so that
    /// a failure is logged when it starts and when it ends, not once for every page.
    replica_failing: AtomicBool,
}

impl PgStore {
    /// Connects to the database at `url`, refuses it if commits there may be lost
    /// (`synchronous_commit` or `fsync` off; checked again on every new connection) or if it
    /// does not store text as UTF-8, and creates or checks the schema (once across servers
    /// opening it at the same time).
    pub fn open(url: &str, options: &PgOptions) -> Result<PgStore, StoreError> {
        let (store, mut client) = PgStore::connect(url, options)?;
        schema::init(&mut client, &store.database)
            .map_err(|error| name_storage_trouble(error, &store.database))?;
        Ok(store)
    }

    /// Opens the catalog in the database at `url` as [`PgStore::open`] does, but only to
    /// read it, writing nothing at open: a database without this release's schema version
    /// is refused (none at all, an older one that opening would upgrade, or a newer one
    /// whose tables this release may not know), naming the next step. What
    /// `exosphere migrate` opens its `--from` with.
    pub fn open_existing(url: &str, options: &PgOptions) -> Result<PgStore, StoreError> {
        let (store, mut client) = PgStore::connect(url, options)?;
        bulk::check_source_schema(&mut client, &store.database)?;
        Ok(store)
    }

    /// The store of the database at `url` and its first connection, checked for durability
    /// and encoding; its schema is the caller's.
    fn connect(
        url: &str,
        options: &PgOptions,
    ) -> Result<(PgStore, tokio_postgres::Client), StoreError> {
        let mut config: Config = url.parse().map_err(|error| {
            refusal(format!(
                "the database URL is not a PostgreSQL connection string ({error}); write it as \
                 postgres://user@host:port/dbname"
            ))
        })?;
        let connect_timeout = options.connect_timeout.min(LONGEST_TIMEOUT);
        let lock_timeout = options.lock_timeout.min(LONGEST_TIMEOUT);
        // With keepalives and a user timeout, a server that went away without closing the
        // socket (a crash, a cut network) is noticed within about a minute, instead of a
        // call waiting on it forever; every connection sets the same on the server's end.
        config
            .application_name("exosphere")
            .connect_timeout(connect_timeout)
            .keepalives(true)
            .keepalives_idle(KEEPALIVE_IDLE)
            .keepalives_interval(KEEPALIVE_INTERVAL)
            .keepalives_retries(KEEPALIVE_RETRIES)
            .tcp_user_timeout(TCP_USER_TIMEOUT);
        let database = describe(&config);
        let lock_ms = lock_timeout.as_millis().max(1);
        let setup = format!("SET lock_timeout = {lock_ms}");
        let write_setup = format!("SET LOCAL idle_in_transaction_session_timeout = {lock_ms}");
        let pool = Pool::new(
            config.clone(),
            database.clone(),
            setup,
            options.max_connections,
            connect_timeout,
        );
        let mut client = pool.connect()?;
        schema::check_encoding(&mut client, &database)?;
        let store = PgStore {
            pool,
            sql: Sql::new(),
            writes: WriteQueue::new(lock_timeout),
            write_setup,
            seen: Seen::default(),
            redial: Redial {
                config,
                database: database.clone(),
                connect_timeout,
                max_backoff: options.reconnect_max_backoff,
            },
            database,
            replica: None,
            replica_failing: AtomicBool::new(false),
        };
        Ok((store, client))
    }

    /// Runs `read`; when its result's epoch and head (`snapshot`) suggest that the database
    /// went back in time, has an empty write check that under the meta row's lock (starting a
    /// new epoch if so) and runs `read` again. A failed check is logged and the first result
    /// returned: a read must not fail because a write cannot run (a read-only standby).
    fn check_going_back<R>(
        &self,
        read: impl Fn() -> Result<R, StoreError>,
        snapshot: impl Fn(&R) -> (&str, u64),
    ) -> Result<R, StoreError> {
        let before = self.seen.before_read();
        let out = read()?;
        let (epoch, head_seq) = snapshot(&out);
        if !self.seen.read_went_back(before.as_ref(), epoch, head_seq) {
            return Ok(out);
        }
        match self.write(&mut |_| Ok(())) {
            Ok(()) => read(),
            Err(error) => {
                tracing::debug!(%error, "could not check whether the catalog database went back");
                Ok(out)
            }
        }
    }

    /// Runs `f` in one `REPEATABLE READ, READ ONLY` transaction: everything it reads comes
    /// from one snapshot.
    fn read<R>(
        &self,
        f: impl FnOnce(&mut Session<'_, '_>) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.pool.with(|conn| {
            let Conn { client, statements } = conn;
            let mut tx = wait(
                client
                    .build_transaction()
                    .isolation_level(IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start(),
            )
            .db()?;
            let out = f(&mut Session::new(&mut tx, statements))?;
            wait(tx.commit()).db()?;
            Ok(out)
        })
    }

    /// Starts a write transaction on `client`, in READ COMMITTED whatever the server's
    /// default (a writer that waited for the meta row's lock must then read the row as the
    /// previous writer committed it), with the write's time limits set.
    fn begin_write<'c>(
        &self,
        client: &'c mut tokio_postgres::Client,
    ) -> Result<tokio_postgres::Transaction<'c>, StoreError> {
        let tx = wait(
            client
                .build_transaction()
                .isolation_level(IsolationLevel::ReadCommitted)
                .start(),
        )
        .db()?;
        wait(tx.batch_execute(&self.write_setup)).db()?;
        Ok(tx)
    }

    /// [`CatalogStore::write`] before storage trouble is named.
    fn write_unnamed(
        &self,
        f: &mut dyn FnMut(&mut dyn CatalogWriter) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let _turn = self.writes.turn()?;
        self.pool.with(|conn| {
            let Conn { client, statements } = conn;
            let mut tx = self.begin_write(client)?;
            let mut session = Session::new(&mut tx, statements);
            let mut writer = PgWriter::start(&mut session, &self.sql)?;
            if self.seen.write_went_back(writer.epoch(), writer.head_seq()) {
                tracing::warn!(
                    database = %self.database,
                    epoch = writer.epoch(),
                    head_seq = writer.head_seq(),
                    "the catalog's head sequence number went backwards (a restored or \
                     failed-over database); starting a new data epoch so every client resyncs"
                );
                writer.start_epoch()?;
            }
            f(&mut writer)?;
            let (epoch, head_seq) = writer.finish()?;
            wait(tx.commit()).db()?;
            self.seen.committed(&epoch, head_seq);
            Ok(())
        })
    }
}

/// The records of collection number `index` in a page read with aggregates
/// ([`writer::Sql::page`]): its [`PAGE_COLUMNS`] columns hold their `seq`s, `lastUpdated`s
/// and text lengths as arrays and their texts end to end. The arrays and texts line
/// up record for record (one aggregate node fills them all); `None` when the `seq`s do not
/// strictly increase, which the statement's unordered aggregates do not rule out: the page
/// must then be read with [`writer::Sql::page`] with `ordered`, never served in that order.
fn page_records(
    row: &tokio_postgres::Row,
    index: usize,
) -> Result<Option<Vec<PageRecord>>, StoreError> {
    let first = META_COLUMNS + index * PAGE_COLUMNS;
    let seqs: Vec<i64> = col::<Option<Vec<i64>>>(row, first)?.unwrap_or_default();
    let updated: Vec<Option<i64>> =
        col::<Option<Vec<Option<i64>>>>(row, first + 1)?.unwrap_or_default();
    let lengths: Vec<i32> = col::<Option<Vec<i32>>>(row, first + 2)?.unwrap_or_default();
    let texts: &str = col::<Option<&str>>(row, first + 3)?.unwrap_or_default();
    let corrupt = || StoreError::Corrupt("a page's records do not match their lengths".into());
    if updated.len() != seqs.len() || lengths.len() != seqs.len() {
        return Err(corrupt());
    }
    if seqs.windows(2).any(|pair| pair[0] >= pair[1]) {
        return Ok(None);
    }
    let mut records = Vec::with_capacity(seqs.len());
    let mut start = 0;
    for ((seq, last_updated), length) in seqs.into_iter().zip(updated).zip(lengths) {
        let end = start + usize::try_from(length).map_err(|_| corrupt())?;
        let json = texts.get(start..end).ok_or_else(corrupt)?;
        records.push(PageRecord {
            seq: to_u64(seq, "seq")?,
            last_updated,
            json: json.to_owned(),
        });
        start = end;
    }
    if start != texts.len() {
        return Err(corrupt());
    }
    Ok(Some(records))
}

/// The parameters of both page statements for the page after `cursors` within `limits`:
/// the cursors in [`Collection::ALL`] order, the count a part reads (what a collection can
/// take plus the one record that tells it has more) and the byte budget.
fn page_params(cursors: &Cursors, limits: &PageLimits) -> ([i64; 5], i64, i64) {
    (
        Collection::ALL.map(|c| i64::try_from(cursors[c]).unwrap_or(i64::MAX)),
        i64::try_from(limits.records.max(1)).unwrap_or(i64::MAX - 1) + 1,
        i64::try_from(limits.bytes).unwrap_or(i64::MAX),
    )
}

/// What reading a page by count ([`read_page_by_count`]) gave.
enum ByCount {
    /// The page.
    Page(Page),
    /// Its byte budget may cut the page: it must be read with [`writer::Sql::page`].
    OverBudget,
    /// The rows came out of order: the page must be read with [`writer::Sql::page`].
    OutOfOrder,
}

/// The page after `cursors` within `limits`, read as rows ([`writer::Sql::page_by_count`])
/// on `conn`, unless its byte budget may cut it.
fn read_page_by_count(
    conn: &mut Conn,
    sql: &Sql,
    cursors: &Cursors,
    limits: &PageLimits,
) -> Result<ByCount, StoreError> {
    let ([a, b, c, d, e], limit, bytes) = page_params(cursors, limits);
    let rows = conn.statements.rows_alone(
        &conn.client,
        &sql.page_by_count(limit),
        &[&a, &b, &c, &d, &e, &bytes],
    )?;
    let mut rows = rows.iter();
    let Some(meta) = rows.next() else {
        return Err(StoreError::Corrupt("the meta row is missing".into()));
    };
    if col::<i32>(meta, 0)? != META_PART {
        return Ok(ByCount::OutOfOrder);
    }
    if !col::<bool>(meta, 4)? {
        return Ok(ByCount::OverBudget);
    }
    let mut fill = PageFill::new(*limits);
    let mut last: Option<(usize, i64)> = None;
    for row in rows {
        let part = usize::try_from(col::<i32>(row, 0)?).ok();
        let seq: i64 = col(row, 1)?;
        let Some(part) = part.filter(|&part| part < Collection::ALL.len()) else {
            return Ok(ByCount::OutOfOrder);
        };
        if last.is_some_and(|last| last >= (part, seq)) {
            return Ok(ByCount::OutOfOrder);
        }
        last = Some((part, seq));
        let record = PageRecord {
            seq: to_u64(seq, "seq")?,
            last_updated: col(row, 2)?,
            json: col(row, 3)?,
        };
        if fill.offer(Collection::ALL[part], record) == Next::Stop {
            break;
        }
    }
    Ok(ByCount::Page(
        fill.finish(col(meta, 3)?, to_u64(col(meta, 1)?, "head_seq")?),
    ))
}

/// The page after `cursors` within `limits`, read as one statement ([`writer::Sql::page`],
/// with aggregates that order their input if `ordered`) on `conn`; `None` when a
/// collection's records came out of `seq` order ([`page_records`]).
fn read_page_with(
    conn: &mut Conn,
    sql: &Sql,
    ordered: bool,
    cursors: &Cursors,
    limits: &PageLimits,
) -> Result<Option<Page>, StoreError> {
    let ([a, b, c, d, e], limit, bytes) = page_params(cursors, limits);
    let row = conn.statements.query_alone(
        &conn.client,
        &sql.page(ordered, limit),
        &[&a, &b, &c, &d, &e, &bytes],
    )?;
    let mut parts = PerCollection::<Vec<PageRecord>>::default();
    if let Some(row) = &row {
        for (i, c) in Collection::ALL.into_iter().enumerate() {
            match page_records(row, i)? {
                Some(records) => parts[c] = records,
                None => return Ok(None),
            }
        }
    }
    let meta = meta_of(row)?;
    let mut fill = PageFill::new(*limits);
    'collections: for c in Collection::ALL {
        for record in std::mem::take(&mut parts[c]) {
            match fill.offer(c, record) {
                Next::Continue => {}
                Next::NextCollection => continue 'collections,
                Next::Stop => break 'collections,
            }
        }
    }
    Ok(Some(fill.finish(meta.epoch, meta.head_seq)))
}

/// The database of `config` as messages name it: "the PostgreSQL database NAME on HOST:PORT".
/// A host with an `@` in it is not printed: the driver splits the credentials at the URL's
/// first `@`, so `postgres://u:pw@secret@db/x` has the host `secret@db`, which holds the end of the
/// password.
fn describe(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let host = if host.contains('@') {
        "<host hidden: percent-encode @ in the password as %40>".to_owned()
    } else {
        host
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let name = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("the PostgreSQL database {name} on {host}:{port}")
}

impl CatalogStore for PgStore {
    fn write(
        &self,
        f: &mut dyn FnMut(&mut dyn CatalogWriter) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.write_unnamed(f)
            .map_err(|error| name_storage_trouble(error, &self.database))
    }

    fn read_page(&self, cursors: &Cursors, limits: &PageLimits) -> Result<Page, StoreError> {
        if let Some(page) = self.read_replica_page(cursors, limits) {
            return Ok(page);
        }
        // One statement, in one snapshot and one round trip, without `BEGIN` and `COMMIT`.
        // A page its byte budget cannot cut (nearly every page) is read as rows
        // (`Sql::page_by_count`), the cheapest for PostgreSQL. Any other is read with
        // `Sql::page`: the meta row and every collection's part of the page as aggregates,
        // each part what the page can still take of the collection by count and bytes plus
        // the one record that ends it, so every record the statement returns is one
        // `PageFill` counts. Records either statement returned out of `seq` order are never
        // served: the page is read again with aggregates that order their input (`Sql::page`
        // with `ordered`).
        let read = || {
            self.pool.with(|conn| {
                match read_page_by_count(conn, &self.sql, cursors, limits)? {
                    ByCount::Page(page) => return Ok(page),
                    ByCount::OverBudget => {}
                    ByCount::OutOfOrder => tracing::warn!(
                        database = %self.database,
                        "a sync page's rows came out of order; reading it with aggregates"
                    ),
                }
                if let Some(page) = read_page_with(conn, &self.sql, false, cursors, limits)? {
                    return Ok(page);
                }
                tracing::warn!(
                    database = %self.database,
                    "a sync page's records came out of seq order; reading it again with \
                     ordered aggregates"
                );
                read_page_with(conn, &self.sql, true, cursors, limits)?.ok_or_else(|| {
                    StoreError::Corrupt("a page's records are out of seq order".into())
                })
            })
        };
        self.check_going_back(read, |page| (&page.epoch, page.head_seq))
    }

    fn state(&self) -> Result<CatalogState, StoreError> {
        // Days from the current UTC day on are left out: a rollup of today is unfinished,
        // and consumers fetch an advertised day once and keep it (spec §4.4, §7.2).
        let today = chrono::Utc::now().date_naive().to_string();
        // One statement (`Sql::state`), one round trip: the watcher reads the state several
        // times a second (a sync page answered reads only `snapshot`).
        let read = || {
            self.pool.with(|conn| {
                let row = conn
                    .statements
                    .query_alone(&conn.client, &self.sql.state, &[&today])?;
                let days = META_COLUMNS;
                let range = match &row {
                    Some(row) => stats_range(
                        (col(row, days)?, col(row, days + 1)?),
                        (col(row, days + 2)?, col(row, days + 3)?),
                    ),
                    None => (None, None),
                };
                let meta = meta_of(row)?;
                Ok(CatalogState {
                    epoch: meta.epoch,
                    head_seq: meta.head_seq,
                    change_counters: meta.changes,
                    stats_earliest: range.0,
                    stats_latest: range.1,
                })
            })
        };
        self.check_going_back(read, |state| (&state.epoch, state.head_seq))
    }

    fn snapshot(&self) -> Result<Snapshot, StoreError> {
        // The meta row alone (`Sql::read_meta`, one statement): the page cache checks the
        // snapshot before every answer, and needs none of the stats days `state` reads.
        let read = || {
            self.pool.with(|conn| {
                let row = conn
                    .statements
                    .query_alone(&conn.client, &self.sql.read_meta, &[])?;
                let meta = meta_of(row)?;
                Ok(Snapshot {
                    epoch: meta.epoch,
                    head_seq: meta.head_seq,
                })
            })
        };
        self.check_going_back(read, |snapshot| (&snapshot.epoch, snapshot.head_seq))
    }

    fn stats_day(
        &self,
        date: &str,
        f: &mut dyn FnMut(&StatsRow) -> Result<(), StoreError>,
    ) -> Result<bool, StoreError> {
        self.read(|s| {
            let mut any = false;
            s.stream(
                "SELECT name, version, direct_adds, total_adds FROM stats \
                 WHERE day = $1 ORDER BY name, version",
                &[&date],
                |row| {
                    any = true;
                    f(&stats_row(
                        date,
                        col(row, 0)?,
                        col(row, 1)?,
                        col(row, 2)?,
                        col(row, 3)?,
                    )?)
                },
            )?;
            if any {
                return Ok(true);
            }
            let rolled_up = s.query_opt(
                "SELECT 1 FROM usage_days WHERE day = $1 AND rolled_up",
                &[&date],
            )?;
            Ok(rolled_up.is_some())
        })
    }

    fn package_stats_rows(
        &self,
        name: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<StatsRow>, StoreError> {
        self.read(|s| {
            s.query(
                "SELECT day, version, direct_adds, total_adds FROM stats \
                 WHERE name = $1 AND day >= $2 AND day <= $3 ORDER BY day, version",
                &[&name, &from.to_string(), &to.to_string()],
            )?
            .iter()
            .map(|row| {
                let day: String = col(row, 0)?;
                stats_row(
                    &day,
                    name.to_owned(),
                    col(row, 1)?,
                    col(row, 2)?,
                    col(row, 3)?,
                )
            })
            .collect()
        })
    }

    fn pending_usage_days(&self, before: NaiveDate) -> Result<Vec<NaiveDate>, StoreError> {
        self.read(|s| {
            s.query(
                "SELECT day FROM usage_days WHERE pending AND day < $1 ORDER BY day",
                &[&before.to_string()],
            )?
            .iter()
            .map(|row| {
                let day: String = col(row, 0)?;
                parse_day(&day).map_err(|e| StoreError::Corrupt(format!("usage day: {e}")))
            })
            .collect()
        })
    }

    fn upload_ticket(&self, hash: &str) -> Result<Option<UploadTicket>, StoreError> {
        self.read(|s| accounts::upload_ticket(s, hash))
    }

    fn export(
        &self,
        f: &mut dyn FnMut(ExportItem<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.read(|s| {
            for c in Collection::ALL {
                s.stream(&self.sql.tables[c].export, &[], |row| {
                    let json: &str = col(row, 0)?;
                    f(ExportItem::Record {
                        collection: c,
                        json,
                    })
                })?;
            }
            s.stream(
                "SELECT day, name, version, direct_adds, total_adds FROM stats \
                 ORDER BY day, name, version",
                &[],
                |row| {
                    let day: &str = col(row, 0)?;
                    let row =
                        stats_row(day, col(row, 1)?, col(row, 2)?, col(row, 3)?, col(row, 4)?)?;
                    f(ExportItem::Stats(&row))
                },
            )
        })
    }

    fn mirror_state(&self) -> Result<Option<MirrorState>, StoreError> {
        self.read(mirror::state)
    }

    fn mirror_file(&self, key: &str) -> Result<Option<UpstreamFile>, StoreError> {
        self.read(|s| mirror::file(s, key))
    }

    fn mirror_files(
        &self,
        after: &str,
        limit: usize,
    ) -> Result<Vec<(String, UpstreamFile)>, StoreError> {
        self.read(|s| mirror::files(s, after, limit))
    }

    fn mirror_cached(&self) -> Result<(u64, u64), StoreError> {
        self.read(mirror::cached)
    }

    fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        self.read(|s| audit::read(s, query))
    }

    /// A session-level advisory lock with a random free id ([`SERVER_LOCK_CLASS`]) on a
    /// connection of its own, held until the seat is dropped or the process ends, and taken
    /// again when that connection drops.
    fn join_servers(&self) -> Result<ServerSeat, StoreError> {
        servers::join(&self.pool, &self.redial)
    }

    /// A session-level advisory lock per duty ([`DUTY_LOCK_CLASS`]) on a connection of its
    /// own.
    fn try_duty(&self, duty: Duty) -> Result<Option<Hold>, StoreError> {
        servers::try_duty(&self.pool, duty)
    }

    /// `LISTEN` on a connection of its own, reconnecting when it drops (`hints.rs`).
    fn hint_changes(&self, wake: Arc<dyn Fn() + Send + Sync>) -> Result<Option<Hold>, StoreError> {
        Ok(Some(hints::listen(self.redial.clone(), wake)))
    }
}

/// The integration tests' fresh databases, for the unit tests that need one.
#[cfg(test)]
#[allow(dead_code)]
#[path = "../tests/common/mod.rs"]
mod test_database;

#[cfg(test)]
mod tests {
    use exosphere_catalog::conformance::store::{record, upsert};

    use super::test_database::TestDatabase;
    use super::*;

    #[test]
    fn a_password_with_an_unescaped_at_sign_is_never_printed_as_part_of_the_host() {
        let described = describe_url("postgres://u:pw@secret9@db/x").expect("the driver parses it");
        assert!(!described.contains("secret9"), "{described}");
        assert!(described.contains("percent-encode @"), "{described}");
        assert_eq!(
            describe_url("postgres://u:pw%40secret9@db/x").as_deref(),
            Some("the PostgreSQL database x on db:5432")
        );
    }

    /// A fresh catalog of forty records of growing lengths spread over every collection,
    /// with one of `moved`'s records written again (moved to the end of its collection):
    /// pages of a few records cut by count and, with a small budget, by bytes.
    fn forty_records(moved: Collection) -> (TestDatabase, PgStore) {
        let database = TestDatabase::new();
        let store = open_postgres(database.url()).expect("the store opens");
        for i in 0..40 {
            let c = Collection::ALL[i % Collection::ALL.len()];
            let body = format!("\"{}\"", "x".repeat(i * 7));
            upsert(&store, &record(c, &format!("r{i}"), &body));
        }
        let id = format!(
            "r{}",
            Collection::ALL
                .iter()
                .position(|c| *c == moved)
                .unwrap_or(0)
        );
        upsert(&store, &record(moved, &id, "\"moved to the end\""));
        (database, store)
    }

    /// The page after `cursors` within `limits` read with aggregates (`Sql::page`),
    /// ordering their input if `ordered`.
    fn read_with_aggregates(
        store: &PgStore,
        ordered: bool,
        cursors: &Cursors,
        limits: &PageLimits,
    ) -> Page {
        store
            .pool
            .with(|conn| read_page_with(conn, &store.sql, ordered, cursors, limits))
            .expect("the page is read")
            .expect("in seq order")
    }

    /// The statement a page is read again with when its unordered aggregates came out of
    /// `seq` order (which nothing here can provoke) reads the very pages the unordered one
    /// does, cut by count and by bytes, across every collection.
    #[test]
    fn the_ordered_page_statement_reads_the_pages_the_unordered_one_does() {
        let (_database, store) = forty_records(Collection::Versions);
        for limits in [
            PageLimits {
                records: 3,
                bytes: 1 << 20,
            },
            PageLimits {
                records: 100,
                bytes: 300,
            },
        ] {
            let mut cursors = Cursors::default();
            let mut pages = 0;
            loop {
                let read = |ordered| read_with_aggregates(&store, ordered, &cursors, &limits);
                let page = read(false);
                assert_eq!(page, read(true), "page {pages} with {limits:?}");
                pages += 1;
                page.advance(&mut cursors);
                if !page.has_more {
                    break;
                }
            }
            assert!(pages >= 3, "{pages} pages with {limits:?}");
        }
    }

    /// A page read as rows (`Sql::page_by_count`) is the page the aggregates cut by count
    /// and bytes read, whenever the texts of what the page can take of every collection fit
    /// its byte budget, to the byte; one byte less and the rows give way to the
    /// aggregates, which cut by bytes.
    #[test]
    fn a_page_read_as_rows_is_the_page_cut_by_count_and_bytes_while_it_fits_the_budget() {
        let (_database, store) = forty_records(Collection::Builds);
        let by_count = |cursors: &Cursors, limits: &PageLimits| {
            store
                .pool
                .with(|conn| read_page_by_count(conn, &store.sql, cursors, limits))
                .expect("the page is read")
        };
        let exact = |cursors: &Cursors, limits: &PageLimits| {
            read_with_aggregates(&store, false, cursors, limits)
        };
        let mut cursors = Cursors::default();
        let mut pages = 0;
        loop {
            let wide = PageLimits {
                records: 3,
                bytes: 1 << 20,
            };
            let page = exact(&cursors, &wide);
            let ByCount::Page(rows) = by_count(&cursors, &wide) else {
                panic!("page {pages} fits a megabyte");
            };
            assert_eq!(rows, page, "page {pages}");

            let texts: usize = page
                .records
                .iter()
                .flat_map(|(_, r)| r)
                .map(|r| r.json.len())
                .sum();
            let tight = PageLimits {
                records: 3,
                bytes: texts,
            };
            let ByCount::Page(rows) = by_count(&cursors, &tight) else {
                panic!("page {pages} fits {texts} bytes");
            };
            assert_eq!(
                rows,
                exact(&cursors, &tight),
                "page {pages} in {texts} bytes"
            );
            if texts > 0 {
                let short = PageLimits {
                    records: 3,
                    bytes: texts - 1,
                };
                assert!(
                    matches!(by_count(&cursors, &short), ByCount::OverBudget),
                    "page {pages} in {} bytes",
                    texts - 1
                );
            }
            pages += 1;
            page.advance(&mut cursors);
            if !page.has_more {
                break;
            }
        }
        assert!(pages >= 3, "{pages} pages");
    }
}
