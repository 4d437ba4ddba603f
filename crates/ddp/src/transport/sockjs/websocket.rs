//! The SockJS WebSocket transport (`<server>/<session>/websocket`, with SockJS framing)
//! and the raw WebSocket endpoint (`<prefix>/websocket`, without).
//!
//! Unlike the HTTP transports, a WebSocket session lives exactly as long as its socket,
//! so no registry is involved: a reader pushes client messages to the application and a
//! writer sends the application's output, each on its own, so neither can block the
//! other. Broken JSON from the client ends the connection at once, as the protocol says.

use std::time::Duration;

use axum::extract::FromRequestParts as _;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse as _, Response};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tracing::Instrument as _;

use super::app::Channels;
use super::framing;
use super::{Endpoint, SockJsConfig, connection_info, method_not_allowed, not_found};
use crate::session::{Outbound, OutboxReceiver};
use crate::transport::websocket::{READ_BUFFER_SIZE, refused};

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
    WebSocketUpgrade::from_request_parts(&mut request, &())
        .await
        .map_err(|_| {
            (
                StatusCode::BAD_REQUEST,
                "Can \"Upgrade\" only to \"WebSocket\".\n",
            )
                .into_response()
        })
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
                // Held until the socket is done, close frame included.
                let _slot = channels.slot;
                let (sink, stream) = socket.split();
                tokio::select! {
                    () = read(stream, channels.inbound, framed) => {}
                    () = write(sink, channels.outbound, &config, framed) => {}
                }
            }
            .in_current_span()
        })
}

/// Pushes client messages to the application until the socket or the application ends.
async fn read(mut stream: SplitStream<WebSocket>, inbound: mpsc::Sender<String>, framed: bool) {
    while let Some(Ok(message)) = stream.next().await {
        let text = match message {
            Message::Text(text) => text,
            Message::Close(_) => return,
            Message::Binary(_) | Message::Ping(_) | Message::Pong(_) => continue,
        };
        let messages = if !framed {
            vec![text.as_str().to_owned()]
        } else if text.is_empty() {
            continue;
        } else {
            match framing::decode_payload(&text, true) {
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
    mut sink: SplitSink<WebSocket, Message>,
    mut outbound: OutboxReceiver,
    config: &SockJsConfig,
    framed: bool,
) {
    let limit = config.write_timeout;
    if framed && !send(&mut sink, Message::text(framing::OPEN), limit).await {
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
                if send(&mut sink, Message::text(framing::HEARTBEAT), limit).await {
                    continue;
                }
                return;
            }
        };
        let (code, reason) = match item {
            Some(Outbound::Frame(text, _charge)) => {
                let message = if framed {
                    Message::text(framing::messages([text.as_str()]))
                } else {
                    Message::text(text)
                };
                if send(&mut sink, message, limit).await {
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
                Message::text(framing::close(code, reason)),
                limit,
            )
            .await
        {
            return;
        }
        let close = CloseFrame {
            code,
            reason: reason.into(),
        };
        send(&mut sink, Message::Close(Some(close)), limit).await;
        return;
    }
}

/// Sends one message within `limit`; `false` when the client is gone or not reading.
async fn send(sink: &mut SplitSink<WebSocket, Message>, message: Message, limit: Duration) -> bool {
    match timeout(limit, sink.send(message)).await {
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
