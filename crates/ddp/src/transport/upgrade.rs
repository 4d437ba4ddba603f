//! The RFC 6455 upgrade every WebSocket transport shares, with or without
//! `permessage-deflate`.
//!
//! A complete HTTP/1.1 upgrade is answered here (the `101`, with `Sec-WebSocket-Extensions`
//! when the client offers the extension and the endpoint allows it) and its connection read
//! and written by [`deflate`](super::deflate)'s frame code, with or without the extension: it
//! writes a shared sync page without joining it into its frame first. Anything else goes
//! through axum, which answers what is wrong with it. Either way the transport gets the same
//! pair, a sink of [`Outgoing`] items and a stream of `Message`s, with the endpoint's limits
//! already applied.

use std::pin::Pin;

use axum::extract::FromRequestParts as _;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::http::header::{
    CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};
use axum::response::{IntoResponse as _, Response};
use futures_util::{Sink, SinkExt as _, Stream, StreamExt as _, future};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::deflate::{self, Agreement};
use super::outgoing::Outgoing;
use crate::config::WebSocketCompression;

/// Bytes read from the socket at a time. tungstenite's default (128 KiB, allocated per
/// socket) would dominate an idle session's memory; DDP clients send small messages, and
/// larger ones are still read whole (the buffer grows for them), in more system calls.
pub(crate) const READ_BUFFER_SIZE: usize = 1024;

/// The sending half of an upgraded socket.
pub(crate) type MessageSink = Pin<Box<dyn Sink<Outgoing, Error = axum::Error> + Send>>;

/// The receiving half of an upgraded socket.
pub(crate) type MessageStream = Pin<Box<dyn Stream<Item = Result<Message, axum::Error>> + Send>>;

/// A WebSocket upgrade request, accepted with `permessage-deflate` or without.
#[derive(Debug)]
pub(crate) enum WebSocketRequest {
    /// Not a complete HTTP/1.1 upgrade: axum and tungstenite do the rest.
    Axum(WebSocketUpgrade),
    /// Answered here; `deflate` holds the extension's agreement and level, if agreed on.
    Direct {
        on_upgrade: OnUpgrade,
        accept: HeaderValue,
        deflate: Option<(Agreement, u32)>,
    },
}

impl WebSocketRequest {
    /// Reads the upgrade from a request's parts; the rejection is axum's, for a request
    /// that is no valid WebSocket upgrade.
    pub(crate) async fn from_parts(
        parts: &mut Parts,
        compression: WebSocketCompression,
    ) -> Result<Self, WebSocketUpgradeRejection> {
        let agreement = compression
            .enabled
            .then(|| deflate::negotiate(parts.headers.get_all(SEC_WEBSOCKET_EXTENSIONS)))
            .flatten();
        if let Some(accept) = valid_http1_upgrade(parts)
            && let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>()
        {
            return Ok(Self::Direct {
                on_upgrade,
                accept,
                deflate: agreement.map(|agreement| (agreement, compression.level)),
            });
        }
        WebSocketUpgrade::from_request_parts(parts, &())
            .await
            .map(Self::Axum)
    }

    /// Answers the upgrade and, once the connection is upgraded, runs `callback` on its
    /// halves on a task of its own. Messages over `limit` bytes (after inflation) fail the
    /// stream.
    pub(crate) fn on_upgrade<F, Fut>(self, limit: usize, callback: F) -> Response
    where
        F: FnOnce(MessageSink, MessageStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        match self {
            Self::Axum(upgrade) => upgrade
                .max_message_size(limit)
                .max_frame_size(limit)
                .read_buffer_size(READ_BUFFER_SIZE)
                // Each frame is written out as soon as it is queued: nothing to gather.
                .write_buffer_size(0)
                .on_upgrade(move |socket| {
                    let (sink, stream) = socket.split();
                    let sink = sink.with(|item: Outgoing| future::ok(item.into_message()));
                    callback(Box::pin(sink), Box::pin(stream))
                }),
            Self::Direct {
                on_upgrade,
                accept,
                deflate,
            } => {
                exosphere_task::spawn(async move {
                    let Ok(upgraded) = on_upgrade.await else {
                        tracing::debug!("WebSocket upgrade failed");
                        return;
                    };
                    let (reader, writer) = tokio::io::split(TokioIo::new(upgraded));
                    let (sink, stream) =
                        deflate::split(reader, writer, deflate, limit, READ_BUFFER_SIZE);
                    callback(Box::pin(sink), Box::pin(stream)).await;
                });
                let mut headers = HeaderMap::new();
                headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
                headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
                headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
                if let Some((agreement, _)) = deflate {
                    headers.insert(SEC_WEBSOCKET_EXTENSIONS, agreement.response());
                }
                (StatusCode::SWITCHING_PROTOCOLS, headers).into_response()
            }
        }
    }
}

/// The `Sec-WebSocket-Accept` answer to a `GET` that is a complete HTTP/1.1 RFC 6455
/// upgrade, checked as axum checks it; `None` sends the request through axum, which answers
/// what is wrong.
fn valid_http1_upgrade(parts: &Parts) -> Option<HeaderValue> {
    let headers = &parts.headers;
    let valid = parts.method == Method::GET
        && parts.version == Version::HTTP_11
        && has_token(headers, &CONNECTION, "upgrade")
        && has_token(headers, &UPGRADE, "websocket")
        && headers
            .get(SEC_WEBSOCKET_VERSION)
            .is_some_and(|version| version == "13");
    let key = headers.get(SEC_WEBSOCKET_KEY).filter(|_| valid)?;
    HeaderValue::from_str(&derive_accept_key(key.as_bytes())).ok()
}

/// Whether a comma-separated header lists `token` (ASCII case-insensitively).
fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}
