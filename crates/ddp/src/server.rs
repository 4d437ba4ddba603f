//! The DDP server: a [`Service`], the limits of [`DdpConfig`], admission of connections
//! (`max_sessions`), the gauges operators watch, and the shutdown signal.
//!
//! One [`Server`] is shared by all connections; each connection becomes an independent
//! session task (see [`crate::transport::websocket`]), so a slow or hostile client only
//! ever stalls itself. Sessions and transports consult the server; it knows nothing of
//! them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::address::{AddressSlot, PerAddress};
use crate::config::{DdpConfig, Trust};
use crate::outbox::{Outbox, OutboxReceiver, SharedBudget};
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
    /// Admitted connections per client address ([`DdpConfig::max_sessions_per_address`]).
    per_address: Arc<PerAddress>,
    /// The bytes of outbound frames all sessions may hold, and hold.
    outbound: Arc<SharedBudget>,
    /// Becomes `true` when the server starts shutting down.
    pub(crate) shutdown: watch::Sender<bool>,
}

impl<S: Service> Server<S> {
    /// A server for `service`, shared by all connections.
    pub fn new(service: Arc<S>, config: DdpConfig) -> Arc<Self> {
        Arc::new(Self {
            service,
            per_address: PerAddress::new(config.max_sessions_per_address),
            outbound: SharedBudget::new(config.max_outbound_bytes),
            config,
            sessions: AtomicUsize::new(0),
            connections: Arc::new(AtomicUsize::new(0)),
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

    /// How many DDP sessions are established right now (sent `connect`, not yet closed).
    pub fn session_count(&self) -> usize {
        self.sessions.load(Ordering::Relaxed)
    }

    /// How many connections count against `max_sessions` right now: established sessions,
    /// and those still waiting for `connect` (a SockJS session until its close frame is
    /// delivered or it expires).
    pub fn admitted_count(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// Bytes of outbound DDP frames held for clients right now, over every session
    /// (queued, or taken by a writer that has not handed them to the socket yet), each
    /// counted in full: what `max_outbound_bytes` bounds, for operators to watch.
    pub fn outbound_bytes(&self) -> usize {
        self.outbound.held()
    }

    /// Bytes of outbound DDP frames already encoded and waiting for room in their
    /// session's budget or the server's (at most one frame per producer: a session's
    /// worker, each of its publications): memory the queues do not count yet.
    pub fn outbound_waiting_bytes(&self) -> usize {
        self.outbound.waiting()
    }

    /// The bytes all sessions may hold together (`max_outbound_bytes`, as honoured).
    pub fn outbound_budget(&self) -> usize {
        self.outbound.capacity()
    }

    /// A new connection's outbound queue: the handshake's small budget until the session
    /// raises it ([`DdpConfig::session_budget`]), drawing on the server's budget.
    pub(crate) fn outbox(&self) -> (Outbox, OutboxReceiver) {
        Outbox::channel(
            self.config.session_budget(Trust::Handshake),
            &self.outbound,
            self.config.write_timeout,
        )
    }

    /// Admits one more connection from `remote`, or `None` when `max_sessions` are open,
    /// `remote`'s address holds `max_sessions_per_address`, or the server is shutting
    /// down. The connection counts until the returned guard is dropped.
    pub(crate) fn admit(&self, remote: Option<SocketAddr>) -> Option<Admission> {
        if *self.shutdown.borrow() {
            return None;
        }
        let address = match remote {
            Some(remote) => Some(self.per_address.take(remote.ip())?),
            None => None,
        };
        let limit = self.config.max_sessions;
        self.connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < limit).then_some(open + 1)
            })
            .ok()
            .map(|_| Admission {
                connections: Arc::clone(&self.connections),
                _address: address,
            })
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

/// One admitted connection (see [`Server::admit`]), with its address's slot.
#[derive(Debug)]
pub(crate) struct Admission {
    connections: Arc<AtomicUsize>,
    _address: Option<AddressSlot>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.connections.fetch_sub(1, Ordering::AcqRel);
    }
}
