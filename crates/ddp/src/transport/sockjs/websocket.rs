//! The SockJS WebSocket transport (`<server>/<session>/websocket`, with SockJS framing)
//! and the raw WebSocket endpoint (`<prefix>/websocket`, without).
//!
//! Unlike the HTTP transports, a WebSocket session lives exactly as long as its socket,
//! so no registry is involved. This module does the upgrade: RFC 6455 (tungstenite,
//! through axum) here, or, on the SockJS transport, hixie-76
//! ([`hixie76`](super::hixie76)). Both then run the loop of [`socket`](super::socket).

use std::future::ready;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use axum::http::header::SEC_WEBSOCKET_VERSION;
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method};
use axum::response::Response;
use futures_util::{SinkExt as _, Stream, StreamExt as _, stream};
use tracing::Instrument as _;

use super::app::Channels;
use super::config::SockJsConfig;
use super::endpoint::{Endpoint, connection_info};
use super::hixie76;
use super::responses::{NOT_AN_UPGRADE, bad_request, method_not_allowed, not_found};
use super::socket::{SocketFrame, serve};
use crate::transport::outgoing::Outgoing;
use crate::transport::upgrade::{MessageStream, WebSocketRequest};
use crate::transport::websocket::refused;

/// `<prefix>/websocket`: the application over a plain WebSocket.
pub(super) async fn raw(endpoint: &Endpoint, request: Parts) -> Response {
    if !endpoint.websocket {
        return not_found();
    }
    let info = connection_info(&request);
    match upgrade_from(request, &endpoint.config).await {
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
    let upgrade = match upgrade_from(request, &endpoint.config).await {
        Ok(upgrade) => upgrade,
        Err(response) => return response,
    };
    match endpoint.app.open(info, endpoint.config.queue) {
        Some(channels) => bridge(upgrade, channels, endpoint.config.clone(), true),
        None => refused(),
    }
}

/// The WebSocket upgrade of a `GET`, with `permessage-deflate` if `config` allows it and
/// the client offers it; `405` for other methods, `400` for a request that is no valid
/// upgrade.
async fn upgrade_from(
    mut request: Parts,
    config: &SockJsConfig,
) -> Result<WebSocketRequest, Response> {
    if request.method != Method::GET {
        return Err(method_not_allowed("GET"));
    }
    accept_hybi_drafts(&mut request);
    WebSocketRequest::from_parts(&mut request, config.compression)
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

/// Completes the upgrade and connects the socket to an application's `channels`.
pub(super) fn bridge(
    upgrade: WebSocketRequest,
    channels: Channels,
    config: SockJsConfig,
    framed: bool,
) -> Response {
    let limit = config.max_message_size;
    // The upgrade runs on a task of its own, outside any span: take the caller's.
    let span = tracing::Span::current();
    upgrade.on_upgrade(limit, move |sink, stream| {
        async move {
            let sink = sink.with(|frame| ready(Ok::<_, axum::Error>(message(frame))));
            serve(texts(stream), sink, channels, &config, framed).await;
        }
        .instrument(span)
    })
}

/// The text messages of an RFC 6455 socket, until it closes or fails. A client that broke
/// the protocol (RSV1 without `permessage-deflate`, a bad frame) or sent a message over the
/// limit ends its stream with a note of why; the SockJS session then closes.
fn texts(stream: MessageStream) -> impl Stream<Item = Utf8Bytes> {
    stream::unfold(stream, |mut stream| async move {
        loop {
            match stream.next().await? {
                Ok(Message::Text(text)) => return Some((text, stream)),
                Ok(Message::Binary(_) | Message::Ping(_) | Message::Pong(_)) => {}
                Ok(Message::Close(_)) => return None,
                Err(error) => {
                    tracing::debug!(%error, "SockJS WebSocket read failed");
                    return None;
                }
            }
        }
    })
}

/// A writer's frame as what an RFC 6455 socket sends: a message, or one in parts that a
/// `permessage-deflate` socket splices.
fn message(frame: SocketFrame) -> Outgoing {
    match frame {
        SocketFrame::Text(text) => Outgoing::Message(Message::text(text)),
        SocketFrame::Spliced(spliced) => Outgoing::Spliced(spliced),
        SocketFrame::Close { code, reason } => {
            Outgoing::Message(Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })))
        }
    }
}
