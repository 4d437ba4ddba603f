//! Several servers on one database: each server's seat ([`CatalogStore::join_servers`]) and
//! the duties they run once between them ([`CatalogStore::try_duty`]), both session-level
//! advisory locks, each on a connection of its own outside the pool (a pooled one would
//! hand the lock to other work and could be closed by the pool). PostgreSQL releases such a
//! lock when its connection closes, so a server that crashed or lost its network gives up
//! its seat and its duties (once the database notices the connection is gone), and whether
//! a seat's server still runs is whether its lock is in `pg_locks` ([`live_receiver`]).
//!
//! [`CatalogStore::join_servers`]: exosphere_catalog::CatalogStore::join_servers
//! [`CatalogStore::try_duty`]: exosphere_catalog::CatalogStore::try_duty

use exosphere_catalog::error::StoreError;
use exosphere_catalog::store::{Duty, Hold, Kept, ServerSeat};
use tokio_postgres::Client;

use crate::bridge::wait;
use crate::error::{Db as _, refusal};
use crate::pool::Pool;
use crate::session::col;

/// The first key of every server's seat lock, `pg_try_advisory_lock(1165520723, id)`
/// ("ExoS" in ASCII), the second being the seat's id: `pg_locks` shows a running server as
/// `locktype = 'advisory', classid = 1165520723, objid = <its id>, objsubid = 2`, and its
/// `pid` leads to `pg_stat_activity`. Documented so that operators can list the servers
/// of a database, and so that nothing else on it takes these keys.
pub const SERVER_LOCK_CLASS: i32 = 0x4578_6f53;

/// The first key of the duty locks, `pg_try_advisory_lock(1165520708, duty)` ("ExoD"),
/// the second being 1 for the mirror, 2 for the rollup and 3 for the sweep.
pub const DUTY_LOCK_CLASS: i32 = 0x4578_6f44;

/// How many random seat ids are tried before giving up (each is taken only when free; two
/// running servers drawing the same one of 2^31 ids is already unlikely).
const SEAT_DRAWS: usize = 8;

/// The SQL condition that is true when the upload mark `receiver` (a column or parameter
/// holding a seat id) belongs to a server that still runs on this database.
pub(crate) fn live_receiver(receiver: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted \
         AND l.classid = {SERVER_LOCK_CLASS} AND l.objsubid = 2 \
         AND l.objid::text = {receiver} \
         AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))"
    )
}

/// A session-level advisory lock kept by keeping its connection open.
struct Locked(Client);

impl Kept for Locked {
    fn lost(&self) -> bool {
        self.0.is_closed()
    }
}

/// Takes a seat with a random free id on a new connection from `pool`'s configuration.
pub(crate) fn join(pool: &Pool, database: &str) -> Result<ServerSeat, StoreError> {
    let client = pool.connect()?;
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
            return Ok(ServerSeat::new(
                id.to_string(),
                Hold::keeping(Locked(client)),
            ));
        }
    }
    Err(refusal(format!(
        "cannot find a free server seat on {database} after {SEAT_DRAWS} tries; check for \
         sessions holding advisory locks with classid {SERVER_LOCK_CLASS} in pg_locks"
    )))
}

/// Takes `duty` on a new connection from `pool`'s configuration, or `None` at once when
/// another session holds it.
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
    Ok(col::<bool>(&row, 0)?.then(|| Hold::keeping(Locked(client))))
}
