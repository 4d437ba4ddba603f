//! DDP over a raw WebSocket (axum), as the `meteor` tool speaks it (spec §1.1).
//!
//! One text frame per DDP message in both directions, no subprotocol. Each connection is
//! served by its own task: the session reads, a writer drains the session's outbound
//! queue into the socket. A writer that cannot get a frame out within `write_timeout`
//! (the client stopped reading) ends the connection, so a stuck client cannot pin memory
//! or tasks forever. Every log line carries the session id through a span.

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::http::header::{RETRY_AFTER, USER_AGENT};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse as _, Response};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::time::timeout;
use tracing::Instrument as _;

use crate::context::SessionContext;
use crate::id::random_id;
use crate::outbox::{Charge, Outbound, Outbox, OutboxReceiver};
use crate::server::Server;
use crate::service::Service;
use crate::session::{self, CloseReason};
use crate::transport::DeliberateStatus;
use crate::transport::outgoing::Outgoing;
use crate::transport::upgrade::{MessageSink, MessageStream, WebSocketRequest};

/// How long a closing connection may take to flush its last frames and the close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// What the HTTP layer knows about a connection.
#[derive(Debug, Clone, Default)]
pub struct ConnectionInfo {
    /// The peer's address (from axum's `ConnectInfo`, if the server provides it).
    pub remote_addr: Option<SocketAddr>,
    /// The upgrade request's `User-Agent`.
    pub user_agent: Option<String>,
}

impl ConnectionInfo {
    /// Collects the connection facts from the upgrade request.
    pub fn from_request(remote_addr: Option<SocketAddr>, headers: &HeaderMap) -> Self {
        Self {
            remote_addr,
            user_agent: headers
                .get(USER_AGENT)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned),
        }
    }
}

/// Completes a WebSocket upgrade request (the parts of a `GET` with its upgrade headers)
/// and serves DDP on it.
///
/// Prefer this over calling [`serve_websocket`] from a custom `on_upgrade`: it negotiates
/// `permessage-deflate` when the configuration allows it, makes the WebSocket layer itself
/// refuse messages over `max_message_size` (after inflation), so an oversized message is
/// never buffered whole, keeps the socket's buffers small, and counts the connection
/// against `max_sessions` (answering `503` when the server is full or shutting down). A
/// request that is no valid upgrade gets axum's rejection.
pub async fn upgrade<S: Service>(
    server: Arc<Server<S>>,
    mut request: Parts,
    info: ConnectionInfo,
) -> Response {
    let compression = server.config().compression;
    match WebSocketRequest::from_parts(&mut request, compression).await {
        Ok(upgrade) => serve_upgrade(server, upgrade, info),
        Err(rejection) => rejection.into_response(),
    }
}

/// [`upgrade`] once the request is read: admission, then the session on the socket.
pub(crate) fn serve_upgrade<S: Service>(
    server: Arc<Server<S>>,
    upgrade: WebSocketRequest,
    info: ConnectionInfo,
) -> Response {
    let Some(admission) = server.admit(info.remote_addr) else {
        return refused();
    };
    let limit = server.config().max_message_size;
    upgrade.on_upgrade(limit, move |sink, stream| async move {
        serve_halves(server, sink, stream, info).await;
        drop(admission);
    })
}

/// `503 Service Unavailable`: the session limit is reached or the server is stopping.
pub(crate) fn refused() -> Response {
    tracing::warn!("connection refused: session limit reached or shutting down");
    DeliberateStatus::Refused.mark(
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(RETRY_AFTER, "5")],
            "too many sessions, or the server is shutting down; retry later\n",
        )
            .into_response(),
    )
}

/// Serves one upgraded WebSocket as a DDP session until it closes, logging open and close
/// (with session id, remote address and reason).
pub async fn serve_websocket<S: Service>(
    server: Arc<Server<S>>,
    socket: WebSocket,
    info: ConnectionInfo,
) {
    let (sink, stream) = socket.split();
    let sink = sink.with(|item: Outgoing| futures_util::future::ok(item.into_message()));
    serve_halves(server, Box::pin(sink), Box::pin(stream), info).await;
}

/// [`serve_websocket`] on the halves of a socket, whichever kind it is.
async fn serve_halves<S: Service>(
    server: Arc<Server<S>>,
    sink: MessageSink,
    stream: MessageStream,
    info: ConnectionInfo,
) {
    let session_id = random_id();
    let span = tracing::info_span!(
        "ddp",
        session = %session_id,
        remote = %info.remote_addr.map_or_else(|| "unknown".to_owned(), |a| a.to_string()),
    );
    async move {
        tracing::info!(
            user_agent = info.user_agent.as_deref().unwrap_or("-"),
            "WebSocket opened"
        );
        let stall_limit = server.config().write_timeout;
        let (outbox, queue) = server.outbox();
        let ctx = Arc::new(SessionContext::new(
            session_id,
            info.remote_addr,
            info.user_agent,
        ));
        let reason = connection(
            session::run(server, stream, outbox.clone(), ctx),
            write_frames(sink, queue, stall_limit),
            &outbox,
        )
        .await;
        if reason.is_abnormal() {
            tracing::warn!(%reason, "WebSocket closed");
        } else {
            tracing::info!(%reason, "WebSocket closed");
        }
    }
    .instrument(span)
    .await;
}

/// Runs the session and the writer side by side; whichever ends first ends the
/// connection. When the session ends first, the writer gets a short grace period to
/// deliver queued frames (such as `failed`) and the close frame.
async fn connection(
    session: impl Future<Output = CloseReason>,
    writer: impl Future<Output = Result<(), CloseReason>>,
    outbox: &Outbox,
) -> CloseReason {
    let mut session = pin!(session);
    let mut writer = pin!(writer);
    tokio::select! {
        reason = &mut session => {
            if let Some((code, text)) = reason.close_frame() {
                // If the writer is gone, `writer` below finishes at once.
                let _ = outbox.close(code, text);
                match timeout(CLOSE_GRACE, &mut writer).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => tracing::debug!(%error, "close frame not delivered"),
                    Err(_) => tracing::debug!("close frame not delivered in time"),
                }
            }
            reason
        }
        written = &mut writer => written.err().unwrap_or(CloseReason::WriterGone),
    }
}

/// Writes queued items to the socket until a close frame or a closed queue (`Ok`), or a
/// failure. A frame's bytes count against the session's outbound budget until the socket
/// has taken it.
async fn write_frames(
    mut sink: MessageSink,
    mut queue: OutboxReceiver,
    stall_limit: Duration,
) -> Result<(), CloseReason> {
    let evicted = queue.eviction().wait();
    let mut evicted = pin!(evicted);
    while let Some(item) = queue.recv().await {
        let (message, last, _charge) = match item {
            Outbound::Frame(text, charge) => (Outgoing::from(text), false, charge),
            Outbound::Close { code, reason } => (
                Outgoing::Message(Message::Close(Some(CloseFrame {
                    code,
                    reason: reason.into(),
                }))),
                true,
                Charge::default(),
            ),
        };
        let written = tokio::select! {
            written = timeout(stall_limit, sink.send(message)) => written,
            () = &mut evicted => return Err(CloseReason::Evicted),
        };
        match written {
            Err(_) => return Err(CloseReason::WriteStalled(stall_limit)),
            Ok(Err(error)) => return Err(CloseReason::write_failed(&error)),
            Ok(Ok(())) if last => return Ok(()),
            Ok(Ok(())) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn refusals_are_marked_deliberate() {
        let response = refused();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.extensions().get::<DeliberateStatus>(),
            Some(&DeliberateStatus::Refused)
        );
    }

    #[test]
    fn connection_info_reads_the_user_agent() {
        let mut headers = HeaderMap::new();
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static("Meteor/METEOR@3.0.4 OS/linux (Linux; 6.5.0; x64;)"),
        );
        let addr: SocketAddr = ([127, 0, 0, 1], 9).into();
        let info = ConnectionInfo::from_request(Some(addr), &headers);
        assert_eq!(info.remote_addr, Some(addr));
        assert_eq!(
            info.user_agent.as_deref(),
            Some("Meteor/METEOR@3.0.4 OS/linux (Linux; 6.5.0; x64;)")
        );
        assert_eq!(
            ConnectionInfo::from_request(None, &HeaderMap::new()).user_agent,
            None
        );
    }
}
