//! What a SockJS endpoint serves: DDP, or one of the conformance suite's test services.

use std::sync::Arc;

use axum::extract::WebSocketUpgrade;
use axum::extract::ws::Message;
use axum::response::Response;
use tokio::sync::mpsc;
use tracing::Instrument as _;

use super::SockJsConfig;
use super::framing;
use super::websocket;
use crate::config::DdpConfig;
use crate::context::SessionContext;
use crate::id::random_id;
use crate::outbox::{Outbox, OutboxReceiver};
use crate::server::{Admission, Server};
use crate::service::Service;
use crate::session;
use crate::transport::websocket::{ConnectionInfo, upgrade};

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
        upgrade: WebSocketUpgrade,
        info: ConnectionInfo,
        config: &SockJsConfig,
    ) -> Response;
}

/// DDP sessions of a [`Server`], exactly as on `/websocket`.
pub(super) struct Ddp<S: Service>(pub(super) Arc<Server<S>>);

impl<S: Service> Application for Ddp<S> {
    fn open(&self, info: ConnectionInfo, queue: usize) -> Option<Channels> {
        let admission = self.0.admit()?;
        let (inbound, incoming) = mpsc::channel(queue.max(1));
        let (outbox, outbound) = self.0.outbox();
        let server = Arc::clone(&self.0);
        tokio::spawn(serve_ddp(server, incoming, outbox, info));
        Some(Channels {
            inbound,
            outbound,
            slot: Some(admission),
        })
    }

    fn raw_websocket(
        &self,
        ws: WebSocketUpgrade,
        info: ConnectionInfo,
        _config: &SockJsConfig,
    ) -> Response {
        upgrade(Arc::clone(&self.0), ws, info)
    }
}

/// Runs one DDP session over a SockJS session, logging open and close with the session id.
async fn serve_ddp<S: Service>(
    server: Arc<Server<S>>,
    incoming: mpsc::Receiver<String>,
    outbox: Outbox,
    info: ConnectionInfo,
) {
    let session_id = random_id();
    let span = tracing::info_span!(
        "ddp",
        session = %session_id,
        remote = %info.remote_addr.map_or_else(|| "unknown".to_owned(), |a| a.to_string()),
        transport = "sockjs",
    );
    async move {
        tracing::info!(
            user_agent = info.user_agent.as_deref().unwrap_or("-"),
            "SockJS session opened"
        );
        let ctx = Arc::new(SessionContext::new(
            session_id,
            info.remote_addr,
            info.user_agent,
        ));
        let frames = Box::pin(futures_util::stream::unfold(
            incoming,
            |mut incoming| async move {
                let text = incoming.recv().await?;
                Some((Ok(Message::Text(text.into())), incoming))
            },
        ));
        let reason = session::run(server, frames, outbox.clone(), ctx).await;
        if let Some((code, text)) = reason.close_frame() {
            // Fails only if the client is already gone.
            let _ = outbox.close(code, text);
        }
        if reason.is_abnormal() {
            tracing::warn!(%reason, "SockJS session closed");
        } else {
            tracing::info!(%reason, "SockJS session closed");
        }
    }
    .instrument(span)
    .await;
}

/// The services `sockjs-protocol.py` runs against.
#[derive(Debug, Clone, Copy)]
pub(super) enum TestService {
    /// Sends every message back.
    Echo,
    /// Closes every session at once with `3000 Go away!`.
    Close,
}

impl Application for TestService {
    fn open(&self, _info: ConnectionInfo, queue: usize) -> Option<Channels> {
        let (inbound, mut incoming) = mpsc::channel::<String>(queue.max(1));
        // The suite's messages are small: DDP's default budget is plenty.
        let (outbox, outbound) =
            Outbox::channel(DdpConfig::default().outbound_buffer_size, Arc::default());
        let service = *self;
        tokio::spawn(async move {
            match service {
                Self::Echo => {
                    while let Some(message) = incoming.recv().await {
                        if outbox.send(message).await.is_err() {
                            return;
                        }
                    }
                }
                Self::Close => {
                    let (code, reason) = framing::GO_AWAY;
                    let _ = outbox.close(code, reason);
                }
            }
        });
        Some(Channels {
            inbound,
            outbound,
            slot: None,
        })
    }

    fn raw_websocket(
        &self,
        ws: WebSocketUpgrade,
        info: ConnectionInfo,
        config: &SockJsConfig,
    ) -> Response {
        match self.open(info, config.queue) {
            Some(channels) => websocket::bridge(ws, channels, config.clone(), false),
            None => crate::transport::websocket::refused(),
        }
    }
}
