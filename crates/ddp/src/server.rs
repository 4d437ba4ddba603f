//! The DDP server: a [`Service`] plus the limits every session runs under.
//!
//! One [`Server`] is shared by all connections; each connection becomes an independent
//! session task (see [`crate::transport::websocket`]), so a slow or hostile client only
//! ever stalls itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::service::Service;

/// Timeouts and limits of DDP sessions.
#[derive(Debug, Clone)]
pub struct DdpConfig {
    /// Drop sockets that never send `connect` within this time (spec §1.1; Meteor: 45 s).
    pub connect_timeout: Duration,
    /// Ping a client only after this long without any inbound frame; zero disables pings.
    pub ping_interval: Duration,
    /// Close the session if nothing arrives this long after a ping. Generous by default:
    /// the `meteor` tool is busy for minutes between calls during `meteor publish`. Also
    /// the longest time one outbound frame may take to write before the client is
    /// considered gone.
    pub ping_timeout: Duration,
    /// Largest inbound text frame in bytes; a larger one closes the session.
    pub max_message_size: usize,
    /// Frames buffered per session before producers (results, publications) wait.
    pub outbound_queue: usize,
    /// `method`/`sub`/`unsub` messages buffered per session before the reader stops reading
    /// from that client. The `meteor` tool never has more than one call in flight.
    pub inbound_queue: usize,
    /// Active subscriptions per session; further `sub`s get `nosub` with error 429, so a
    /// client cannot grow the session's state without bound.
    pub max_subscriptions: usize,
}

impl Default for DdpConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(45),
            ping_interval: Duration::from_secs(30),
            ping_timeout: Duration::from_secs(300),
            max_message_size: 1024 * 1024,
            outbound_queue: 256,
            inbound_queue: 32,
            max_subscriptions: 100,
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
}

impl<S: Service> Server<S> {
    /// A server for `service`, shared by all connections.
    pub fn new(service: Arc<S>, config: DdpConfig) -> Arc<Self> {
        Arc::new(Self {
            service,
            config,
            sessions: AtomicUsize::new(0),
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
}
