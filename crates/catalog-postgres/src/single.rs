//! The single-server guard ([`CatalogStore::claim_single_server`]) on PostgreSQL: a
//! session-level advisory lock on a connection of its own, outside the pool, held for as
//! long as the guard lives. PostgreSQL releases it when that connection closes, so a server
//! that crashed or lost its network never keeps its successor out (beyond the time the
//! database takes to notice the connection is gone).
//!
//! [`CatalogStore::claim_single_server`]: exosphere_catalog::CatalogStore::claim_single_server

use exosphere_catalog::error::StoreError;
use exosphere_catalog::store::SingleServer;

use crate::bridge::wait;
use crate::error::{Db as _, refusal};
use crate::pool::Pool;
use crate::session::col;

/// The key of the advisory lock that `exosphere serve` holds on its database
/// (`pg_try_advisory_lock(1165520723)`, "ExoS" in ASCII); below 2^31, so `pg_locks` shows
/// it as `classid = 0, objid = 1165520723, objsubid = 1`. Documented so that operators can
/// find the server holding it, and so that nothing else on the database takes it.
pub const SERVE_LOCK_KEY: i64 = 0x4578_6f53;

/// Takes the serve lock on a new connection from `pool`'s configuration (not a pooled one,
/// which would hand the lock to other work and could be closed by the pool), or fails at
/// once, naming the server that holds it as far as `pg_stat_activity` tells.
pub(crate) fn claim(pool: &Pool, database: &str) -> Result<SingleServer, StoreError> {
    let client = pool.connect()?;
    let row = wait(client.query_one("SELECT pg_try_advisory_lock($1)", &[&SERVE_LOCK_KEY])).db()?;
    if col::<bool>(&row, 0)? {
        return Ok(SingleServer::holding(client));
    }
    let holder = wait(client.query_opt(
        &format!(
            "SELECT coalesce(a.client_hostname, host(a.client_addr), 'a local socket') \
             || CASE WHEN a.client_port > 0 THEN ':' || a.client_port ELSE '' END, a.pid \
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0 \
             AND l.objid = {SERVE_LOCK_KEY} AND l.objsubid = 1 \
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ),
        &[],
    ))
    .db()?;
    let from = match holder {
        Some(row) => {
            let address: String = col(&row, 0)?;
            let pid: i32 = col(&row, 1)?;
            format!(" (connected from {address}, PostgreSQL backend pid {pid})")
        }
        None => String::new(),
    };
    Err(refusal(format!(
        "another exosphere serve is using {database}{from}; several servers on one database \
         are not supported yet (issue 12): stop that server first, or give this one a \
         database of its own"
    )))
}
