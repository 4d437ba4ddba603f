//! The SockJS WebSocket transport (`<server>/<session>/websocket`, with SockJS framing)
//! and the raw WebSocket endpoint (`<prefix>/websocket`, without).
//!
//! Unlike the HTTP transports, a WebSocket session lives exactly as long as its socket,
//! so no registry is involved: a reader pushes client messages to the application and a
//! writer sends the application's output, each on its own, so neither can block the
//! other. Broken JSON from the client ends the connection at once, as the protocol says.
//!
//! The socket is RFC 6455 (tungstenite, through axum) or, on the SockJS transport,
//! hixie-76 ([`hixie76`](super::hixie76)). Both run the one loop here, [`serve`], over a
//! stream of the client's text messages and a sink of [`SocketFrame`]s.

use std::future::ready;
use std::ops::Deref;
use std::pin::pin;
use std::time::Duration;

use axum::extract::FromRequestParts as _;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::header::SEC_WEBSOCKET_VERSION;
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse as _, Response};
use futures_util::stream::SplitStream;
use futures_util::{Sink, SinkExt as _, Stream, StreamExt as _, stream};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tracing::Instrument as _;

use super::app::Channels;
use super::{Endpoint, SockJsConfig, connection_info, framing, hixie76};
use super::{method_not_allowed, not_found};
use crate::outbox::{Outbound, OutboxReceiver};
use crate::transport::websocket::{READ_BUFFER_SIZE, refused};

/// Why a request to a WebSocket URL is no WebSocket handshake.
pub(super) const NOT_AN_UPGRADE: &str = "Can \"Upgrade\" only to \"WebSocket\".";

/// One message the writer hands to a socket, whatever WebSocket dialect the socket speaks.
#[derive(Debug)]
pub(super) enum SocketFrame {
    /// A text message.
    Text(String),
    /// The closing handshake; nothing follows it. hixie-76 carries no code or reason.
    Close { code: u16, reason: &'static str },
}

impl SocketFrame {
    /// A text message (spelled like tungstenite's `Message::text`).
    pub(super) fn text(text: impl Into<String>) -> Self {
        Self::Text(text.into())
    }
}

/// `<prefix>/websocket`: the application over a plain WebSocket.
pub(super) async fn raw(endpoint: &Endpoint, request: Parts) -> Response {
    if !endpoint.websocket {
        return not_found();
    }
    let info = connection_info(&request);
    match upgrade_from(request).await {
        Ok(upgrade) => endpoint.app.raw_websocket(upgrade, info, &endpoint.config),
        Err(response) => response,
    }
}

/// `<server>/<session>/websocket`: the application over a WebSocket with SockJS framing.
pub(super) async fn sockjs(endpoint: &Endpoint, request: Parts) -> Response {
    if hixie76::is_handshake(&request.headers) {
        return hixie76::upgrade(endpoint, request);
    }
    let info = connection_info(&request);
    let upgrade = match upgrade_from(request).await {
        Ok(upgrade) => upgrade,
        Err(response) => return response,
    };
    match endpoint.app.open(info, endpoint.config.queue) {
        Some(channels) => bridge(upgrade, channels, endpoint.config.clone(), true),
        None => refused(),
    }
}

/// The WebSocket upgrade of a `GET`; `405` for other methods, `400` for a request that
/// is no valid upgrade.
async fn upgrade_from(mut request: Parts) -> Result<WebSocketUpgrade, Response> {
    if request.method != Method::GET {
        return Err(method_not_allowed("GET"));
    }
    accept_hybi_drafts(&mut request);
    WebSocketUpgrade::from_request_parts(&mut request, &())
        .await
        .map_err(|_| bad_request(NOT_AN_UPGRADE))
}

/// Lets the hybi-07 and hybi-08 drafts (`Sec-WebSocket-Version` 7 and 8: Firefox 6 and 7,
/// Chrome 14 and 15) through the RFC 6455 handshake, as SockJS servers do (the 0.3.3 suite's
/// `WebsocketHybi10`): their handshake computes the same `Sec-WebSocket-Accept` and their
/// frames are the RFC's, so only the version number differs, and the WebSocket layer
/// accepts 13 alone.
fn accept_hybi_drafts(request: &mut Parts) {
    let draft = request
        .headers
        .get(SEC_WEBSOCKET_VERSION)
        .is_some_and(|version| matches!(version.as_bytes(), b"7" | b"8"));
    if draft {
        request
            .headers
            .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
    }
}

/// `400 Bad Request` saying `reason`.
pub(super) fn bad_request(reason: &str) -> Response {
    (StatusCode::BAD_REQUEST, format!("{reason}\n")).into_response()
}

/// Completes the upgrade and connects the socket to an application's `channels`.
pub(super) fn bridge(
    upgrade: WebSocketUpgrade,
    channels: Channels,
    config: SockJsConfig,
    framed: bool,
) -> Response {
    let limit = config.max_message_size;
    upgrade
        .max_message_size(limit)
        .max_frame_size(limit)
        .read_buffer_size(READ_BUFFER_SIZE)
        .write_buffer_size(0)
        .on_upgrade(move |socket| {
            async move {
                let (sink, stream) = socket.split();
                let sink = sink.with(|frame| ready(Ok::<_, axum::Error>(message(frame))));
                serve(texts(stream), sink, channels, &config, framed).await;
            }
            .in_current_span()
        })
}

/// Runs one session over a socket until either side ends it: a reader pushing the
/// client's `texts` to the application, and a writer sending its output to `sink`.
pub(super) async fn serve<T, S>(
    texts: T,
    sink: S,
    channels: Channels,
    config: &SockJsConfig,
    framed: bool,
) where
    T: Stream<Item: Deref<Target = str>>,
    S: Sink<SocketFrame, Error: std::fmt::Display>,
{
    // Held until the socket is done, close frame included.
    let _slot = channels.slot;
    let (texts, sink) = (pin!(texts), pin!(sink));
    tokio::select! {
        () = read(texts, channels.inbound, framed) => {}
        () = write(sink, channels.outbound, config, framed) => {}
    }
}

/// The text messages of an RFC 6455 socket, until it closes or fails.
fn texts(stream: SplitStream<WebSocket>) -> impl Stream<Item = Utf8Bytes> {
    stream::unfold(stream, |mut stream| async move {
        loop {
            match stream.next().await? {
                Ok(Message::Text(text)) => return Some((text, stream)),
                Ok(Message::Binary(_) | Message::Ping(_) | Message::Pong(_)) => {}
                Ok(Message::Close(_)) | Err(_) => return None,
            }
        }
    })
}

/// A writer's frame as an RFC 6455 message.
fn message(frame: SocketFrame) -> Message {
    match frame {
        SocketFrame::Text(text) => Message::text(text),
        SocketFrame::Close { code, reason } => Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })),
    }
}

/// Pushes client messages to the application until the socket or the application ends.
async fn read<T>(mut texts: T, inbound: mpsc::Sender<String>, framed: bool)
where
    T: Stream<Item: Deref<Target = str>> + Unpin,
{
    while let Some(text) = texts.next().await {
        let text = &*text;
        let messages = if !framed {
            vec![text.to_owned()]
        } else if text.is_empty() {
            continue;
        } else {
            match framing::decode_payload(text, true) {
                Ok(messages) => messages,
                Err(error) => {
                    tracing::debug!(%error, "SockJS WebSocket payload refused; dropping the connection");
                    return;
                }
            }
        };
        for message in messages {
            if inbound.send(message).await.is_err() {
                return;
            }
        }
    }
}

/// Sends the application's output (framed: open frame, `a[...]` per message, heartbeats,
/// close frame) until the application closes or a write fails or stalls. A message's
/// bytes count against the session's outbound budget until the socket has taken it.
async fn write(
    mut sink: impl Sink<SocketFrame, Error: std::fmt::Display> + Unpin,
    mut outbound: OutboxReceiver,
    config: &SockJsConfig,
    framed: bool,
) {
    let limit = config.write_timeout;
    if framed && !send(&mut sink, SocketFrame::text(framing::OPEN), limit).await {
        return;
    }
    let idle = if framed {
        config.heartbeat
    } else {
        Duration::MAX
    };
    loop {
        let item = match timeout(idle, outbound.recv()).await {
            Ok(item) => item,
            Err(_) => {
                if send(&mut sink, SocketFrame::text(framing::HEARTBEAT), limit).await {
                    continue;
                }
                return;
            }
        };
        let (code, reason) = match item {
            // The charge is kept until the socket took the frame; the text is not.
            Some(Outbound::Frame(text, _charge)) => {
                if send(&mut sink, message_frame(text, framed), limit).await {
                    continue;
                }
                return;
            }
            Some(Outbound::Close { code, reason }) => (code, reason),
            None => (1000, "Normal closure"),
        };
        if framed
            && !send(
                &mut sink,
                SocketFrame::text(framing::close(code, reason)),
                limit,
            )
            .await
        {
            return;
        }
        send(&mut sink, SocketFrame::Close { code, reason }, limit).await;
        return;
    }
}

/// The socket frame carrying one application message: `a["…"]` when `framed`. Takes the
/// text by value so it is freed before its framed copy is written.
fn message_frame(text: String, framed: bool) -> SocketFrame {
    if framed {
        SocketFrame::text(framing::messages([text.as_str()]))
    } else {
        SocketFrame::text(text)
    }
}

/// Sends one frame within `limit`; `false` when the client is gone or not reading.
async fn send(
    sink: &mut (impl Sink<SocketFrame, Error: std::fmt::Display> + Unpin),
    frame: SocketFrame,
    limit: Duration,
) -> bool {
    match timeout(limit, sink.send(frame)).await {
        Ok(Ok(())) => true,
        Ok(Err(error)) => {
            tracing::debug!(%error, "SockJS WebSocket write failed; closing");
            false
        }
        Err(_) => {
            tracing::warn!(
                write_timeout = ?limit,
                "SockJS WebSocket client stopped reading: a frame stayed unwritten; closing"
            );
            false
        }
    }
}
