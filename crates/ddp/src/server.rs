//! The DDP server: a [`Service`], the limits of [`DdpConfig`], admission of connections
//! (`max_sessions`), the gauges operators watch, and the shutdown signal.
//!
//! One [`Server`] is shared by all connections; each connection becomes an independent
//! session task (see [`crate::transport::websocket`]), so a slow or hostile client only
//! ever stalls itself. Sessions and transports consult the server; it knows nothing of
//! them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::config::DdpConfig;
use crate::outbox::{Outbox, OutboxReceiver};
use crate::service::Service;

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
