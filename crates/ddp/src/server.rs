//! The DDP server: a [`Service`] plus the limits every session runs under.
//!
//! One [`Server`] is shared by all connections; each connection becomes an independent
//! session task (see [`crate::transport::websocket`]), so a slow or hostile client only
//! ever stalls itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::service::Service;
use crate::session::{Outbox, OutboxReceiver};

/// The largest [`DdpConfig::outbound_buffer_size`] honoured (256 MiB); a larger one is
/// lowered to it. A session's budget is a tokio `Semaphore` of bytes, which panics beyond
/// `Semaphore::MAX_PERMITS`, only 2^29 - 1 on 32-bit targets; the CLI refuses more.
pub const MAX_OUTBOUND_BUFFER_SIZE: u32 = 256 << 20;

/// Timeouts and limits of DDP sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DdpConfig {
    /// Drop sockets that never send `connect` within this time (spec §1.1; Meteor: 45 s).
    pub connect_timeout: Duration,
    /// Ping a client only after this long without any inbound frame; zero disables pings.
    pub ping_interval: Duration,
    /// Close the session if nothing arrives this long after a ping. Generous by default:
    /// the `meteor` tool is busy for minutes between calls during `meteor publish`.
    pub ping_timeout: Duration,
    /// The longest the whole write of one outbound frame to the client may take before the
    /// connection is closed as stalled (the client stopped reading). Separate from
    /// `ping_timeout` because a stalled writer pins the session's queued frames. The clock
    /// covers the entire frame, so the client's link must carry the largest frame within
    /// it: at the default (60 s), a 1 MB sync page needs at least ~17 KB/s.
    pub write_timeout: Duration,
    /// Largest inbound text frame in bytes; a larger one closes the session.
    pub max_message_size: usize,
    /// Bytes of outbound frames a session may hold (queued, or handed to its transport but
    /// not yet written) before producers (results, publications) wait. A frame larger
    /// than this still goes through, alone. The default (16 MiB) is several full
    /// `syncNewPackageData` pages of 500 records; at most [`MAX_OUTBOUND_BUFFER_SIZE`].
    pub outbound_buffer_size: u32,
    /// `method`/`sub`/`unsub` messages buffered per session before the reader stops reading
    /// from that client. The `meteor` tool never has more than one call in flight.
    pub inbound_queue: usize,
    /// Active subscriptions per session; further `sub`s get `nosub` with error 429, so a
    /// client cannot grow the session's state without bound.
    pub max_subscriptions: usize,
    /// Connections (DDP over any transport, handshaking or established) served at once;
    /// further ones are refused with HTTP 503 before any session state is allocated.
    pub max_sessions: usize,
    /// Method calls one connection may make per [`method_rate_interval`](Self::method_rate_interval);
    /// further calls are answered with Meteor's `too-many-requests` error. Zero turns the
    /// limit off.
    pub method_rate_limit: u32,
    /// The window of [`method_rate_limit`](Self::method_rate_limit).
    pub method_rate_interval: Duration,
    /// On shutdown, how long sessions may take to finish the calls they already read
    /// before they are closed.
    pub shutdown_grace: Duration,
}

impl Default for DdpConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(45),
            ping_interval: Duration::from_secs(30),
            ping_timeout: Duration::from_secs(300),
            write_timeout: Duration::from_secs(60),
            max_message_size: 1024 * 1024,
            outbound_buffer_size: 16 << 20,
            inbound_queue: 32,
            max_subscriptions: 100,
            max_sessions: 20_000,
            method_rate_limit: 5000,
            method_rate_interval: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// A DDP endpoint serving `service` to any number of connections.
#[derive(Debug)]
pub struct Server<S: Service> {
    service: Arc<S>,
    config: DdpConfig,
    /// Established DDP sessions (after `connected`, until the connection ends).
    pub(crate) sessions: AtomicUsize,
    /// Admitted connections, established or not (see [`DdpConfig::max_sessions`]).
    connections: Arc<AtomicUsize>,
    /// Bytes of outbound frames held for clients, over every session.
    outbound_bytes: Arc<AtomicUsize>,
    /// Becomes `true` when the server starts shutting down.
    pub(crate) shutdown: watch::Sender<bool>,
}

impl<S: Service> Server<S> {
    /// A server for `service`, shared by all connections.
    pub fn new(service: Arc<S>, config: DdpConfig) -> Arc<Self> {
        Arc::new(Self {
            service,
            config,
            sessions: AtomicUsize::new(0),
            connections: Arc::new(AtomicUsize::new(0)),
            outbound_bytes: Arc::new(AtomicUsize::new(0)),
            shutdown: watch::Sender::new(false),
        })
    }

    /// The limits sessions run under.
    pub fn config(&self) -> &DdpConfig {
        &self.config
    }

    /// The application behind this server.
    pub fn service(&self) -> &Arc<S> {
        &self.service
    }

    /// How many DDP sessions are established right now.
    pub fn session_count(&self) -> usize {
        self.sessions.load(Ordering::Relaxed)
    }

    /// Bytes of outbound DDP frames held for clients right now, over every session
    /// (queued, or taken by a writer that has not handed them to the socket yet): what
    /// `outbound_buffer_size` bounds per session, for operators to watch.
    pub fn outbound_bytes(&self) -> usize {
        self.outbound_bytes.load(Ordering::Relaxed)
    }

    /// A new session's outbound queue, bounded by `outbound_buffer_size`.
    pub(crate) fn outbox(&self) -> (Outbox, OutboxReceiver) {
        Outbox::channel(
            self.config.outbound_buffer_size,
            Arc::clone(&self.outbound_bytes),
        )
    }

    /// Admits one more connection, or `None` when `max_sessions` are open or the server
    /// is shutting down. The connection counts until the returned guard is dropped.
    pub(crate) fn admit(&self) -> Option<Admission> {
        if *self.shutdown.borrow() {
            return None;
        }
        let limit = self.config.max_sessions;
        self.connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < limit).then_some(open + 1)
            })
            .ok()
            .map(|_| Admission(Arc::clone(&self.connections)))
    }

    /// Starts a graceful shutdown: new connections are refused, and every session stops
    /// reading, lets the calls it already read finish (within `shutdown_grace`), then
    /// closes with `1001 server shutting down`. Returns once no connection is left, or
    /// after `shutdown_grace` plus `extra` at the latest (returning whether all closed).
    pub async fn shut_down(&self, extra: Duration) -> bool {
        self.shutdown.send_replace(true);
        let deadline = tokio::time::Instant::now() + self.config.shutdown_grace + extra;
        while self.connections.load(Ordering::Acquire) > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}

/// One admitted connection (see [`Server::admit`]).
#[derive(Debug)]
pub(crate) struct Admission(Arc<AtomicUsize>);

impl Drop for Admission {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
