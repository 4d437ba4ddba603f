//! The contract between a SockJS endpoint and what it serves: an [`Application`] opens a
//! session and hands the transport its two ends, the [`Channels`].
//!
//! A leaf of the SockJS module: the transports use it, the applications
//! ([`ddp`](super::ddp), [`test_service`](super::test_service)) implement it.

use crate::transport::upgrade::WebSocketRequest;
use axum::response::Response;
use tokio::sync::{mpsc, watch};

use super::config::SockJsConfig;
use crate::outbox::OutboxReceiver;
use crate::server::Admission;
use crate::transport::websocket::ConnectionInfo;

/// The two ends of one SockJS session, seen from the transport.
#[derive(Debug)]
pub(super) struct Channels {
    /// Client messages, in order, for the application.
    pub(super) inbound: mpsc::Sender<String>,
    /// The application's messages and its close, for the client, bounded in bytes.
    pub(super) outbound: OutboxReceiver,
    /// The session's place under `--max-sessions`, if it counts: held by the transport,
    /// not the application, so it is free only once the close frame is written or the
    /// session expired.
    pub(super) slot: Option<Admission>,
    /// Turns `true` once the client has done what the application needs of a new session
    /// (DDP: sent `connect`); a session that does not within the endpoint's connect
    /// timeout is ended. `None`: nothing is needed.
    pub(super) established: Option<watch::Receiver<bool>>,
}

/// An application behind a SockJS endpoint.
pub(super) trait Application: Send + Sync + 'static {
    /// Starts serving a new session on its own task, or refuses it (`None`, answered 503).
    /// `queue` bounds the inbound channel.
    fn open(&self, info: ConnectionInfo, queue: usize) -> Option<Channels>;

    /// Serves `<prefix>/websocket`: the application over a plain WebSocket, without
    /// SockJS framing.
    fn raw_websocket(
        &self,
        upgrade: WebSocketRequest,
        info: ConnectionInfo,
        config: &SockJsConfig,
    ) -> Response;
}
