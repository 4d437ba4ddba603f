//! One DDP connection's state machine (spec §1.1–§1.3).
//!
//! [`run`] reads client frames until the connection should end and says why:
//!
//! 1. **Handshake**: until a `connect` arrives (within `connect_timeout`), every other
//!    message is answered `Must connect first`. The `connect` is negotiated
//!    ([`crate::version`]): `connected`, or `failed` and close.
//! 2. **Connected**: pings are answered on the spot, `method`/`sub`/`unsub` go to the
//!    session [`worker`](super::worker) in order, protocol errors are answered with
//!    Meteor's reasons, and the [`heartbeat`](super::heartbeat) pings a silent client and
//!    gives up on a dead one.
//!
//! Oversized frames end the session. The transport owns the socket and turns the
//! returned [`CloseReason`] into a close frame and a log line.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::ws::{Message, Utf8Bytes};
use futures_util::{Stream, StreamExt as _};
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};

use super::close::CloseReason;
use super::heartbeat::{Beat, Heartbeat};
use super::shared::SessionShared;
use super::worker::{Work, WorkQueue};
use crate::config::{DdpConfig, Trust};
use crate::context::SessionContext;
use crate::message::{ClientMessage, Inbound, ProtocolError, ServerMessage};
use crate::outbox::Outbox;
use crate::rate_limit::RateLimit;
use crate::server::Server;
use crate::service::Service;
use crate::version::{DdpVersion, Negotiation, negotiate};

/// Serves one connection from its first frame to its end.
pub(crate) async fn run<S, R>(
    server: Arc<Server<S>>,
    mut incoming: R,
    outbox: Outbox,
    ctx: Arc<SessionContext>,
) -> CloseReason
where
    S: Service,
    R: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let config = server.config();
    // Every wait of the session, a send to a client that stopped reading included, ends
    // at the connect deadline and at shutdown.
    let mut stop = server.shutdown.subscribe();
    let handshaking = timeout(
        config.connect_timeout,
        handshake(config, &mut incoming, &outbox, &ctx),
    );
    let version = tokio::select! {
        result = handshaking => match result {
            Ok(Ok(version)) => version,
            Ok(Err(reason)) => return reason,
            Err(_) => return CloseReason::ConnectTimeout(config.connect_timeout),
        },
        () = stopping(&mut stop) => return CloseReason::ShuttingDown,
    };
    tracing::info!(%version, "DDP session established");
    ctx.mark_established();
    outbox.raise(config.session_budget(Trust::Anonymous));
    let session = Arc::new(SessionShared::new(ctx, outbox, config.max_subscriptions));
    let _live = LiveSession::start(&server, &session);
    let mut queue = WorkQueue::new(
        Arc::clone(server.service()),
        Arc::clone(&session),
        config.inbound_queue,
    );
    let shutdown = server.shutdown.subscribe();
    let serving = connected(
        config,
        &mut incoming,
        &session,
        &mut queue,
        version,
        shutdown,
    );
    let reason = tokio::select! {
        result = serving => match result {
            Err(reason) => reason,
            Ok(never) => match never {},
        },
        () = stopping(&mut stop) => CloseReason::ShuttingDown,
    };
    if matches!(reason, CloseReason::ShuttingDown) {
        // Nothing more is read: finish what is already queued, then end.
        if timeout(config.shutdown_grace, queue.drain()).await.is_err() {
            tracing::warn!(grace = ?config.shutdown_grace, "calls still running at shutdown; closing anyway");
        }
    }
    reason
}

/// Counts a live session and marks it closed (stopping its worker and subscriptions) when
/// dropped, whichever way the connection ends.
struct LiveSession<'a, S: Service> {
    server: &'a Server<S>,
    session: &'a SessionShared,
}

impl<'a, S: Service> LiveSession<'a, S> {
    fn start(server: &'a Server<S>, session: &'a SessionShared) -> Self {
        server.sessions.fetch_add(1, Ordering::Relaxed);
        Self { server, session }
    }
}

impl<S: Service> Drop for LiveSession<'_, S> {
    fn drop(&mut self) {
        self.session.closed.send_replace(true);
        self.server.sessions.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A frame that matters to the protocol, or just proof that the client is alive.
enum Frame {
    Text(Utf8Bytes),
    Activity,
}

/// Classifies what the socket produced; anything that ends the connection is an `Err`.
fn frame(item: Option<Result<Message, axum::Error>>, limit: usize) -> Result<Frame, CloseReason> {
    match item {
        None | Some(Ok(Message::Close(_))) => Err(CloseReason::ClientClosed),
        Some(Err(error)) => {
            Err(refusal(&error).unwrap_or_else(|| CloseReason::read_failed(&error)))
        }
        Some(Ok(Message::Text(text))) if text.len() > limit => Err(CloseReason::MessageTooLarge {
            size: text.len(),
            limit,
        }),
        Some(Ok(Message::Text(text))) => Ok(Frame::Text(text)),
        // Binary frames are ignored (spec §1.1); control frames only prove liveness.
        Some(Ok(Message::Binary(_) | Message::Ping(_) | Message::Pong(_))) => Ok(Frame::Activity),
    }
}

/// The close a read error calls for when it is the client's fault, as either socket reports
/// it (tungstenite's, or the `permessage-deflate` one, which uses tungstenite's errors): a
/// message over the limit (counted after inflation), or a broken protocol, such as RSV1
/// set without `permessage-deflate`, an unmasked frame, invalid UTF-8 or corrupt DEFLATE
/// data.
fn refusal(error: &(dyn std::error::Error + 'static)) -> Option<CloseReason> {
    let mut cause = Some(error);
    while let Some(error) = cause {
        match error.downcast_ref::<WsError>() {
            Some(WsError::Capacity(CapacityError::MessageTooLong { size, max_size })) => {
                return Some(CloseReason::MessageTooLarge {
                    size: *size,
                    limit: *max_size,
                });
            }
            Some(WsError::Protocol(_) | WsError::Utf8(_)) => {
                return Some(CloseReason::ProtocolViolation(error.to_string()));
            }
            _ => {}
        }
        if error
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::InvalidData)
        {
            return Some(CloseReason::ProtocolViolation(error.to_string()));
        }
        cause = error.source();
    }
    None
}

/// Phase 1: wait for an acceptable `connect` (the caller bounds it by `connect_timeout`).
async fn handshake<R>(
    config: &DdpConfig,
    incoming: &mut R,
    outbox: &Outbox,
    ctx: &SessionContext,
) -> Result<DdpVersion, CloseReason>
where
    R: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    loop {
        let item = incoming.next().await;
        let Some(inbound) = accept(item, config.max_message_size, outbox).await? else {
            continue;
        };
        let ClientMessage::Connect { version, support } = &inbound.message else {
            send_error(
                outbox,
                ProtocolError::MustConnectFirst,
                inbound.offending().as_ref(),
            )
            .await?;
            continue;
        };
        return match negotiate(version.as_deref(), support.as_deref()) {
            Negotiation::Accept(version) => {
                let connected = ServerMessage::Connected {
                    session: &ctx.session_id,
                };
                send(outbox, connected).await?;
                Ok(version)
            }
            Negotiation::Suggest(suggested) => {
                send(
                    outbox,
                    ServerMessage::Failed {
                        version: suggested.as_str(),
                    },
                )
                .await?;
                Err(CloseReason::VersionMismatch {
                    suggested: suggested.as_str(),
                })
            }
            Negotiation::Reject => {
                send_error(
                    outbox,
                    ProtocolError::BadRequest,
                    inbound.offending().as_ref(),
                )
                .await?;
                Err(CloseReason::BadConnect)
            }
        };
    }
}

/// Phase 2: serve the established session until the connection ends.
async fn connected<S, R>(
    config: &DdpConfig,
    incoming: &mut R,
    session: &SessionShared,
    queue: &mut WorkQueue<S>,
    version: DdpVersion,
    mut shutdown: watch::Receiver<bool>,
) -> Result<Infallible, CloseReason>
where
    S: Service,
    R: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let outbox = &session.outbox;
    let mut rate_limit = RateLimit::new(
        config.method_rate_limit,
        config.method_rate_interval,
        Instant::now(),
    );
    let mut heartbeat = Heartbeat::new(
        Instant::now(),
        config.ping_interval,
        config.ping_timeout,
        version.has_heartbeats(),
    );
    loop {
        // While the queue is full nothing is read (backpressure on this client only), and
        // time spent not reading is not the client's silence.
        let reading = !queue.is_full();
        let item = tokio::select! {
            item = incoming.next(), if reading => item,
            finished = queue.finish_one(), if queue.is_busy() => {
                finished.map_err(|_| CloseReason::WriterGone)?;
                if session.ctx.user_id().is_some() {
                    // A login method set it: the session has earned the full budget.
                    outbox.raise(config.session_budget(Trust::LoggedIn));
                }
                if !reading {
                    heartbeat.activity(Instant::now());
                }
                continue;
            }
            () = stopping(&mut shutdown) => return Err(CloseReason::ShuttingDown),
            () = sleep_until(heartbeat.deadline()), if heartbeat.enabled() && reading => {
                match heartbeat.expire(Instant::now()) {
                    Beat::Ping => send(outbox, ServerMessage::Ping).await?,
                    Beat::TimedOut => return Err(CloseReason::HeartbeatTimeout(config.ping_timeout)),
                }
                continue;
            }
        };
        heartbeat.activity(Instant::now());
        let Some(inbound) = accept(item, config.max_message_size, outbox).await? else {
            continue;
        };
        let heartbeats = version.has_heartbeats();
        let work = match inbound.message {
            ClientMessage::Ping { id } if heartbeats => {
                send(outbox, ServerMessage::Pong { id: id.as_ref() }).await?;
                continue;
            }
            ClientMessage::Pong if heartbeats => continue,
            ClientMessage::Method(call) => match rate_limit.check(Instant::now()) {
                Ok(()) => Work::Method(call),
                Err(error) => {
                    tracing::debug!(method = %call.method, "method rate limit reached; refused");
                    Work::Refuse {
                        id: call.id,
                        error: Box::new(error),
                    }
                }
            },
            ClientMessage::Sub(request) => Work::Sub(request),
            ClientMessage::Unsub { id } => Work::Unsub(id),
            ClientMessage::Connect { .. } => {
                send_error(
                    outbox,
                    ProtocolError::AlreadyConnected,
                    inbound.offending().as_ref(),
                )
                .await?;
                continue;
            }
            ClientMessage::Malformed(error) => {
                send_error(outbox, error, inbound.offending().as_ref()).await?;
                continue;
            }
            // Includes `ping`/`pong` under pre1, which has no heartbeats.
            ClientMessage::Ping { .. } | ClientMessage::Pong | ClientMessage::Unknown => {
                send_error(
                    outbox,
                    ProtocolError::BadRequest,
                    inbound.offending().as_ref(),
                )
                .await?;
                continue;
            }
        };
        queue.push(work);
    }
}

/// Resolves once the server starts shutting down (never, if the server is gone).
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|stopping| *stopping).await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn send(outbox: &Outbox, message: ServerMessage<'_>) -> Result<(), CloseReason> {
    outbox
        .send(message.encode())
        .await
        .map_err(|_| CloseReason::WriterGone)
}

/// Reads one received item as a DDP message. Non-text frames and frames that are not valid
/// DDP yield `None`; the latter are answered with the protocol error of spec §1.3 first.
async fn accept(
    item: Option<Result<Message, axum::Error>>,
    limit: usize,
    outbox: &Outbox,
) -> Result<Option<Inbound>, CloseReason> {
    let Frame::Text(text) = frame(item, limit)? else {
        return Ok(None);
    };
    match Inbound::parse(text) {
        Ok(inbound) => Ok(Some(inbound)),
        Err(rejected) => {
            tracing::debug!(cause = %rejected.cause, "rejected frame");
            send_error(outbox, rejected.error, rejected.offending.as_ref()).await?;
            Ok(None)
        }
    }
}

async fn send_error(
    outbox: &Outbox,
    error: ProtocolError,
    offending: Option<&serde_json::Value>,
) -> Result<(), CloseReason> {
    tracing::debug!(reason = error.reason(), "protocol error");
    let message = ServerMessage::Error {
        reason: error.reason(),
        offending,
    };
    send(outbox, message).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::ws::{CloseFrame, close_code};

    fn classify(message: Message) -> Result<Frame, CloseReason> {
        frame(Some(Ok(message)), 4)
    }

    #[test]
    fn frames_are_classified() {
        assert!(matches!(classify(Message::text("abcd")), Ok(Frame::Text(t)) if t == "abcd"));
        assert!(matches!(
            classify(Message::text("abcde")),
            Err(CloseReason::MessageTooLarge { size: 5, limit: 4 })
        ));
        assert!(matches!(
            classify(Message::binary(vec![0; 99])),
            Ok(Frame::Activity)
        ));
        assert!(matches!(
            classify(Message::Ping(Default::default())),
            Ok(Frame::Activity)
        ));
        assert!(matches!(
            classify(Message::Pong(Default::default())),
            Ok(Frame::Activity)
        ));
        let close = Message::Close(Some(CloseFrame {
            code: close_code::NORMAL,
            reason: "bye".into(),
        }));
        assert!(matches!(classify(close), Err(CloseReason::ClientClosed)));
        assert!(matches!(frame(None, 4), Err(CloseReason::ClientClosed)));
        let reset = axum::Error::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(matches!(
            frame(Some(Err(reset)), 4),
            Err(CloseReason::ClientReset(_))
        ));
        let other = axum::Error::new(std::io::Error::other("disk on fire"));
        assert!(matches!(
            frame(Some(Err(other)), 4),
            Err(CloseReason::ReadFailed(_))
        ));
    }
}
