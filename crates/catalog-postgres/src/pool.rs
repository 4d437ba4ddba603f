//! [`Pool`]: a bounded set of connections shared by reads and writes.
//!
//! Why not a pool crate: the policy needed is "reuse an idle connection, open one while
//! under the cap, else wait a bounded time", which is a `Vec` and a count behind a mutex
//! with a condition variable; `r2d2` would add background threads, and `deadpool` an async
//! API this synchronous store would have to bridge again. Why bounded: every server on the
//! database takes up to `max_connections` of PostgreSQL's own `max_connections`.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use exosphere_catalog::error::StoreError;
use tokio_postgres::{Client, Config};

use crate::bridge::{connect, wait};
use crate::error::{Db as _, connection_lost, refusal};
use crate::schema::check_durability;
use crate::session::Statements;

/// One pooled connection and the statements it has prepared.
pub(crate) struct Conn {
    /// The connection.
    pub(crate) client: Client,
    /// Its prepared statements.
    pub(crate) statements: Statements,
}

/// Connections to one database, at most `max` at a time.
pub(crate) struct Pool {
    config: Config,
    /// The database as error messages name it.
    database: String,
    /// Run on every new connection (session settings).
    setup: String,
    max: usize,
    wait: Duration,
    state: Mutex<State>,
    freed: Condvar,
}

/// The idle connections and how many exist (idle or lent).
struct State {
    idle: Vec<Conn>,
    open: usize,
}

impl Pool {
    /// A pool of up to `max` connections by `config`, each set up with `setup` (SQL run
    /// once per connection); a caller waits up to `wait` for a connection when all are lent,
    /// and a new connection must be established within `wait`.
    pub(crate) fn new(
        config: Config,
        database: String,
        setup: String,
        max: usize,
        wait: Duration,
    ) -> Pool {
        Pool {
            config,
            database,
            setup,
            max: max.max(1),
            wait,
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        }
    }

    /// Runs `f` on an idle or new connection, returning the connection to the pool
    /// afterwards unless it was closed, `f` failed because the connection was lost or is
    /// being ended by the server ([`connection_lost`]), or `f` panicked.
    pub(crate) fn with<R>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut lease = Lease {
            pool: self,
            conn: Some(self.take()?),
            lost: false,
        };
        let conn = lease.conn.as_mut().expect("a lease holds its connection");
        let result = f(conn);
        lease.lost = result.as_ref().is_err_and(connection_lost);
        result
    }

    /// Opens a connection by this pool's configuration, outside the pool's count (the
    /// schema check at open uses it so), refusing it if its commits may be lost in a crash:
    /// every connection is checked, as a setting may change while the store runs.
    pub(crate) fn connect(&self) -> Result<Client, StoreError> {
        let mut client = connect(&self.config, self.wait).map_err(|error| {
            refusal(format!(
                "cannot connect to {}: {error}; check the host, port, user and database name \
                 in the database URL, and that PostgreSQL runs there and accepts this user",
                self.database
            ))
        })?;
        wait(client.batch_execute(&self.setup)).db()?;
        check_durability(&mut client, &self.database)?;
        Ok(client)
    }

    /// An idle connection, or a new one while under the cap, waiting for one to be given
    /// back otherwise; [`StoreError::Busy`] when none came back within the wait.
    fn take(&self) -> Result<Conn, StoreError> {
        let deadline = Instant::now() + self.wait;
        let mut state = self.lock();
        loop {
            if let Some(conn) = state.idle.pop() {
                if !conn.client.is_closed() {
                    return Ok(conn);
                }
                state.open -= 1;
                continue;
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                return self
                    .connect()
                    .map(|client| Conn {
                        client,
                        statements: Statements::default(),
                    })
                    .inspect_err(|_| self.forget());
            }
            let now = Instant::now();
            if now >= deadline {
                // Busy, as a write waiting past `lock_timeout` is: the caller may retry, and
                // the server answers 503 instead of 500. The log says which limit was hit.
                tracing::warn!(
                    database = %self.database,
                    connections = self.max,
                    waited = ?self.wait,
                    "every connection of the catalog's PostgreSQL pool stayed in use; the \
                     database is too slow for the load, or the pool too small"
                );
                return Err(StoreError::Busy);
            }
            state = self
                .freed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Counts a connection that was closed or never opened as gone.
    fn forget(&self) {
        self.lock().open -= 1;
        self.freed.notify_one();
    }

    /// The pool's state; it is only pushed to, popped from and counted under the lock, so
    /// a panic elsewhere cannot leave it inconsistent and poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A lent connection, given back (or forgotten) however the borrower ends.
struct Lease<'a> {
    pool: &'a Pool,
    conn: Option<Conn>,
    /// Whether the borrower's work failed because the connection was lost.
    lost: bool,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if self.lost || conn.client.is_closed() || std::thread::panicking() {
            drop(conn);
            self.pool.forget();
        } else {
            self.pool.lock().idle.push(conn);
            self.pool.freed.notify_one();
        }
    }
}
