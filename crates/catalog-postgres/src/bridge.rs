//! The bridge from the synchronous store trait to the asynchronous driver: connections'
//! sockets are driven by one background Tokio runtime of this crate's own, and callers wait
//! for results by parking their thread.
//!
//! Why not the `postgres` crate (the driver's own blocking wrapper): it runs each
//! connection on a private runtime entered with `Runtime::block_on`, which panics on a
//! thread that is already inside a runtime, and the store is called there, e.g.
//! [`exosphere_catalog::watch()`] reads the state once from the async task that starts it.
//! Parking a thread to wait for a channel is allowed everywhere (it blocks that thread, as a
//! SQLite call does), so the store works from the blocking pool, from `block_in_place` and,
//! for short calls, from an async task itself.

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake};
use std::thread::Thread;
use std::time::Duration;

use exosphere_catalog::store::Kept;
use tokio::runtime::Runtime;
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{Client, Config, Connection, NoTls, Socket};

/// Wakes a parked thread.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `future` to completion on this thread, parking it while the future waits. The
/// futures given here (driver requests, a join handle) only wait on channels fed by the
/// background runtime, so they need no reactor of their own.
pub(crate) fn wait<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}

/// The runtime that drives every connection's socket: one worker thread, which only moves
/// protocol messages (rows are decoded on the calling threads), started on first use and
/// kept for the life of the process.
pub(crate) fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("exosphere-postgres")
            .enable_all()
            .build()
            .expect("the PostgreSQL connections' runtime starts")
    })
}

/// How long a connection may be idle before TCP keepalive probes start, on both ends.
pub(crate) const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
/// The pause between keepalive probes.
pub(crate) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// How many unanswered probes end the connection.
pub(crate) const KEEPALIVE_RETRIES: u32 = 3;
/// How long sent data may stay unacknowledged before the connection ends.
pub(crate) const TCP_USER_TIMEOUT: Duration = Duration::from_secs(60);

/// The settings that make PostgreSQL's end of a connection notice a peer that went away
/// without closing its socket (a host that vanished, a cut network) as this end does,
/// within about a minute ([`KEEPALIVE_IDLE`] plus [`KEEPALIVE_RETRIES`] ×
/// [`KEEPALIVE_INTERVAL`], or [`TCP_USER_TIMEOUT`] of unacknowledged data), instead of
/// after the server's default two hours: only then does it release a vanished server's
/// seat and duties. Ignored on Unix sockets.
fn server_keepalives() -> String {
    format!(
        "SET tcp_keepalives_idle = {}; SET tcp_keepalives_interval = {}; \
         SET tcp_keepalives_count = {KEEPALIVE_RETRIES}; SET tcp_user_timeout = {}",
        KEEPALIVE_IDLE.as_secs(),
        KEEPALIVE_INTERVAL.as_secs(),
        TCP_USER_TIMEOUT.as_millis()
    )
}

/// Connects by `config` without TLS and leaves the connection's socket to the background
/// runtime; an error is returned as its text. The whole of connecting (the TCP connection,
/// the startup and the authentication) must end within `limit`: a server or proxy that
/// accepts the connection and then never answers would otherwise hold the caller forever.
pub(crate) fn connect(config: &Config, limit: Duration) -> Result<Client, String> {
    let config = config.clone();
    let connected = runtime().spawn(async move { connect_here(&config, limit).await });
    wait(connected).unwrap_or_else(|join| Err(format!("the connection task failed: {join}")))
}

/// [`connect`] from a task already on the background runtime, which must not park its one
/// thread: the connection's socket is driven by a task of its own. Sets the server's
/// keepalives ([`server_keepalives`]) within `limit` too.
pub(crate) async fn connect_here(config: &Config, limit: Duration) -> Result<Client, String> {
    let (client, connection) = open(config, limit).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "a PostgreSQL connection ended");
        }
    });
    tokio::time::timeout(limit, client.batch_execute(&server_keepalives()))
        .await
        .map_err(|_| format!("the server did not answer within {limit:?}"))?
        .map_err(|e| e.to_string())?;
    Ok(client)
}

/// Connects by `config` without TLS within `limit` (see [`connect`]) and returns the
/// connection for the caller to drive (a listener reads its notifications from it); the
/// caller runs [`listening_setup`] on it.
pub(crate) async fn open(
    config: &Config,
    limit: Duration,
) -> Result<(Client, Connection<Socket, NoTlsStream>), String> {
    tokio::time::timeout(limit, config.connect(NoTls))
        .await
        .map_err(|_| format!("the server did not finish the connection within {limit:?}"))?
        .map_err(|e| e.to_string())
}

/// The statements that set up a connection from [`open`] to listen on `channel`: the
/// server's keepalives ([`server_keepalives`]), then `LISTEN`.
pub(crate) fn listening_setup(channel: &str) -> String {
    format!("{}; LISTEN {channel}", server_keepalives())
}

/// How a connection of its own that must stay up (the change listener, a server's seat)
/// connects again after it dropped: pauses doubling from [`Redial::FIRST_BACKOFF`] up to
/// `max_backoff` between attempts.
#[derive(Clone)]
pub(crate) struct Redial {
    /// The database's connection settings.
    pub(crate) config: Config,
    /// The database as logs name it.
    pub(crate) database: String,
    /// How long establishing a connection may take.
    pub(crate) connect_timeout: Duration,
    /// The longest pause between attempts.
    pub(crate) max_backoff: Duration,
}

impl Redial {
    /// The first pause before connecting again.
    pub(crate) const FIRST_BACKOFF: Duration = Duration::from_millis(100);

    /// The pause after `backoff`.
    pub(crate) fn next(&self, backoff: Duration) -> Duration {
        (backoff * 2).min(self.max_backoff.max(Self::FIRST_BACKOFF))
    }
}

/// A task on the background runtime that keeps a claim by itself (reconnecting when its
/// connection drops), so the claim is never lost for good; aborted, releasing the claim,
/// when dropped.
pub(crate) struct Keeper(pub(crate) tokio::task::AbortHandle);

impl Kept for Keeper {
    fn lost(&self) -> bool {
        false
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}
