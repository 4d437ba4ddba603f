//! Several servers on one database: each server's seat ([`CatalogStore::join_servers`]) and
//! the duties they run once between them ([`CatalogStore::try_duty`]), both session-level
//! advisory locks, each on a connection of its own outside the pool (a pooled one would
//! hand the lock to other work and could be closed by the pool). PostgreSQL releases such a
//! lock when its connection closes, so a server that crashed or lost its network gives up
//! its seat and its duties (once the database notices the connection is gone), and whether
//! a seat's server still runs is whether its lock is in `pg_locks` ([`live_receiver`]). A
//! running server whose seat connection dropped takes the same seat again (`keep_seat`); a
//! duty's holder learns that it lost the duty from [`Hold::lost`], within seconds
//! ([`DUTY_PING_TIMEOUT`]) when the database stops answering. A seat also holds the
//! older releases' single-server lock shared ([`OLDER_SERVE_LOCK`]), so that servers of
//! this release and of those never run on one database together.
//!
//! [`CatalogStore::join_servers`]: exosphere_catalog::CatalogStore::join_servers
//! [`CatalogStore::try_duty`]: exosphere_catalog::CatalogStore::try_duty

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use exosphere_catalog::columns::to_u64;
use exosphere_catalog::error::StoreError;
use exosphere_catalog::store::{Duty, Hold, Kept, ServerSeat};
use tokio_postgres::Client;

use crate::bridge::{Keeper, Redial, connect_here, runtime, wait};
use crate::error::{Db as _, refusal};
use crate::pool::Pool;
use crate::session::{Session, col};

/// The first key of every server's seat lock, `pg_try_advisory_lock(1165520723, id)`
/// ("ExoS" in ASCII), the second being the seat's id: `pg_locks` shows a running server as
/// `locktype = 'advisory', classid = 1165520723, objid = <its id>, objsubid = 2`, and its
/// `pid` leads to `pg_stat_activity`. Documented so that operators can list the servers
/// of a database, and so that nothing else on it takes these keys.
pub const SERVER_LOCK_CLASS: i32 = 0x4578_6f53;

/// The first key of the duty locks, `pg_try_advisory_lock(1165520708, duty)` ("ExoD"),
/// the second being 1 for the mirror, 2 for the rollup and 3 for the sweep.
pub const DUTY_LOCK_CLASS: i32 = 0x4578_6f44;

/// The key of the advisory lock that `exosphere serve` of the releases before seats held
/// alone on its database (`pg_try_advisory_lock(1165520723)`, "ExoS" in ASCII; `pg_locks`
/// shows it as `classid = 0, objid = 1165520723, objsubid = 1`). Such a server knows no
/// seats, so its uploads would look abandoned and its duties free: every seat also holds
/// this lock shared, and a server refuses to join while an older one holds it (and an older
/// one refuses to start beside a seat).
const OLDER_SERVE_LOCK: i64 = 0x4578_6f53;

/// How many random seat ids are tried before giving up (each is taken only when free; two
/// running servers drawing the same one of 2^31 ids is already unlikely).
const SEAT_DRAWS: usize = 8;

/// The rows of `pg_locks` (as `l`) that are seats of servers running on this database.
fn seats() -> String {
    format!(
        "pg_locks l WHERE l.locktype = 'advisory' AND l.granted \
         AND l.classid = {SERVER_LOCK_CLASS} AND l.objsubid = 2 \
         AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
}

/// The SQL condition that is true when the upload mark `receiver` (a column or parameter
/// holding a seat id) belongs to a server that still runs on this database.
pub(crate) fn live_receiver(receiver: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM {} AND l.objid::text = {receiver})",
        seats()
    )
}

/// The condition on `pg_locks` (as `l`) of [`OLDER_SERVE_LOCK`] held by a server of an
/// older release (a seat holds it shared) on this database.
fn older_server_lock() -> String {
    format!(
        "l.locktype = 'advisory' AND l.granted AND l.mode = 'ExclusiveLock' \
         AND l.classid = 0 AND l.objid = {OLDER_SERVE_LOCK} AND l.objsubid = 1 \
         AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
}

/// How many servers run on this database now: the seats held, and a server of an older
/// release ([`OLDER_SERVE_LOCK`]).
pub(crate) fn running(s: &mut Session<'_, '_>) -> Result<u64, StoreError> {
    let row = s.query_one(
        &format!(
            "SELECT (SELECT count(*) FROM {}) \
             + (SELECT count(*) FROM pg_locks l WHERE {})",
            seats(),
            older_server_lock()
        ),
        &[],
    )?;
    to_u64(col(&row, 0)?, "servers running")
}

/// How often a seat's keeper checks that its connection is open.
const SEAT_CHECK: Duration = Duration::from_secs(1);

/// How often a duty's holder asks the connection holding the duty whether it still
/// answers.
const DUTY_PING: Duration = Duration::from_secs(1);

/// How long that question may go unanswered before the duty counts as lost (and its
/// connection is closed, releasing the lock if the database still holds it): well within
/// the minute after which the database drops a connection that stopped answering
/// (`bridge::KEEPALIVE_IDLE`), so a holder cut off from the database stops its duty's
/// work before another server can take the duty.
const DUTY_PING_TIMEOUT: Duration = Duration::from_secs(5);

/// A duty's session-level advisory lock, kept by a task that holds its connection and
/// checks it ([`check_duty`]); dropped, the task ends and the connection closes.
struct Locked {
    /// Set once the check failed.
    lost: Arc<AtomicBool>,
    /// The checking task.
    _checker: Keeper,
}

impl Kept for Locked {
    fn lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }
}

/// Every [`DUTY_PING`], runs `SELECT 1` on the duty's connection; when that fails or takes
/// longer than [`DUTY_PING_TIMEOUT`], sets `lost` and closes the connection.
async fn check_duty(client: Client, lost: Arc<AtomicBool>) {
    loop {
        tokio::time::sleep(DUTY_PING).await;
        let answered = tokio::time::timeout(DUTY_PING_TIMEOUT, client.simple_query("SELECT 1"));
        if !matches!(answered.await, Ok(Ok(_))) {
            lost.store(true, Ordering::Release);
            return;
        }
    }
}

/// Takes a seat with a random free id on a new connection from `pool`'s configuration,
/// and leaves it to a keeper on the background runtime that takes the same seat again
/// when its connection drops (a database restart, a failover, a cut network), so that the
/// other servers see this one's uploads as abandoned only meanwhile.
pub(crate) fn join(pool: &Pool, redial: &Redial) -> Result<ServerSeat, StoreError> {
    let database = &redial.database;
    let client = pool.connect()?;
    let beside_older: bool = col(
        &wait(client.query_one(
            "SELECT pg_try_advisory_lock_shared($1)",
            &[&OLDER_SERVE_LOCK],
        ))
        .db()?,
        0,
    )?;
    if !beside_older {
        return Err(older_server_runs(&client, database));
    }
    for _ in 0..SEAT_DRAWS {
        let row = wait(client.query_opt(
            "SELECT id FROM (SELECT (1 + floor(random() * 2147483646))::int AS id) drawn \
             WHERE pg_try_advisory_lock($1, drawn.id)",
            &[&SERVER_LOCK_CLASS],
        ))
        .db()?;
        if let Some(row) = row {
            let id: i32 = col(&row, 0)?;
            tracing::info!(database, seat = id, "joined the servers of the catalog");
            let keeper = runtime().spawn(keep_seat(redial.clone(), id, client));
            return Ok(ServerSeat::new(
                id.to_string(),
                Hold::keeping(Keeper(keeper.abort_handle())),
            ));
        }
    }
    Err(refusal(format!(
        "cannot find a free server seat on {database} after {SEAT_DRAWS} tries; check for \
         sessions holding advisory locks with classid {SERVER_LOCK_CLASS} in pg_locks"
    )))
}

/// The refusal to join while a server of an older release holds [`OLDER_SERVE_LOCK`],
/// naming where it connects from as far as `pg_stat_activity` tells.
fn older_server_runs(client: &Client, database: &str) -> StoreError {
    let holder = wait(client.query_opt(
        &format!(
            "SELECT coalesce(a.client_hostname, host(a.client_addr), 'a local socket') \
             || CASE WHEN a.client_port > 0 THEN ':' || a.client_port ELSE '' END, a.pid \
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE {}",
            older_server_lock()
        ),
        &[],
    ));
    let from = match holder {
        Ok(Some(row)) => match (col::<String>(&row, 0), col::<i32>(&row, 1)) {
            (Ok(address), Ok(pid)) => {
                format!(" (connected from {address}, PostgreSQL backend pid {pid})")
            }
            _ => String::new(),
        },
        _ => String::new(),
    };
    refusal(format!(
        "an exosphere serve of an older release, which runs alone on its database, is using \
         {database}{from}; stop the exosphere serve of the older release first, then start \
         this one (the first upgrade to a release that runs several servers on one database \
         cannot overlap with an older server)"
    ))
}

/// Holds the seat `id` on `client`, and takes it again on a new connection whenever that
/// one closes.
async fn keep_seat(redial: Redial, id: i32, mut client: Client) {
    loop {
        while !client.is_closed() {
            tokio::time::sleep(SEAT_CHECK).await;
        }
        tracing::warn!(
            database = %redial.database,
            seat = id,
            "this server's seat connection closed; taking the seat again (meanwhile the other \
             servers see its uploads as abandoned)"
        );
        let mut backoff = Redial::FIRST_BACKOFF;
        client = loop {
            match retake_seat(&redial, id).await {
                Ok(Some(again)) => break again,
                Ok(None) => tracing::warn!(
                    database = %redial.database,
                    seat = id,
                    retry_in = ?backoff,
                    "this server's old seat session still holds its seat lock; waiting for the \
                     database to drop that session (about a minute after the connection broke, \
                     by TCP keepalives), or end it with pg_terminate_backend"
                ),
                Err(error) => tracing::warn!(
                    database = %redial.database,
                    seat = id,
                    %error,
                    retry_in = ?backoff,
                    "cannot take the seat again yet"
                ),
            }
            tokio::time::sleep(backoff).await;
            backoff = redial.next(backoff);
        };
        tracing::info!(database = %redial.database, seat = id, "took the seat again");
    }
}

/// Connects and takes the seat lock `id` (and [`OLDER_SERVE_LOCK`] shared, as
/// [`join`] does); `None` when another session holds the seat.
async fn retake_seat(redial: &Redial, id: i32) -> Result<Option<Client>, String> {
    let client = connect_here(&redial.config, redial.connect_timeout).await?;
    let row = client
        .query_one(
            "SELECT pg_try_advisory_lock($1, $2), pg_try_advisory_lock_shared($3)",
            &[&SERVER_LOCK_CLASS, &id, &OLDER_SERVE_LOCK],
        )
        .await
        .map_err(|e| e.to_string())?;
    let taken: bool = row.try_get(0).map_err(|e| e.to_string())?;
    let beside_older: bool = row.try_get(1).map_err(|e| e.to_string())?;
    if taken && !beside_older {
        tracing::error!(
            database = %redial.database,
            seat = id,
            "an exosphere serve of an older release started on this database while this \
             server's seat connection was down; stop that older server: it does not see \
             this one's uploads and duties"
        );
    }
    Ok(taken.then_some(client))
}

/// Takes `duty` on a new connection from `pool`'s configuration, or `None` at once when
/// another session holds it; the hold checks its connection every [`DUTY_PING`].
pub(crate) fn try_duty(pool: &Pool, duty: Duty) -> Result<Option<Hold>, StoreError> {
    let client = pool.connect()?;
    let key = match duty {
        Duty::Mirror => 1i32,
        Duty::Rollup => 2,
        Duty::Sweep => 3,
    };
    let row = wait(client.query_one(
        "SELECT pg_try_advisory_lock($1, $2)",
        &[&DUTY_LOCK_CLASS, &key],
    ))
    .db()?;
    if !col::<bool>(&row, 0)? {
        return Ok(None);
    }
    let lost = Arc::new(AtomicBool::new(false));
    let checker = runtime().spawn(check_duty(client, Arc::clone(&lost)));
    Ok(Some(Hold::keeping(Locked {
        lost,
        _checker: Keeper(checker.abort_handle()),
    })))
}
