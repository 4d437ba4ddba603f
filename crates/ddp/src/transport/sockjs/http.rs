//! The HTTP transports: polling (`xhr`, `jsonp`), streaming (`xhr_streaming`,
//! `eventsource`, `htmlfile`) and the send URLs (`xhr_send`, `jsonp_send`), with the
//! headers of [`headers`](super::headers).
//!
//! A polling request answers with the first thing the session has to say (open frame,
//! queued messages, close frame, or a heartbeat after the heartbeat interval). A streaming
//! response writes a prelude, then frames as they come, and ends after
//! `response_limit` bytes so the browser can free them. Each chunk for a streaming client
//! must be taken by the HTTP layer within the write timeout, so a client that stops
//! reading is dropped rather than buffered for. The messages in a chunk hold their bytes of the
//! session's outbound budget until the body hands the chunk to the HTTP layer.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse as _, Response};
use tokio::sync::mpsc;
use tokio::time::timeout;

use super::endpoint::{Endpoint, connection_info};
use super::framing::{self, PayloadError};
use super::headers::{cookie, cors, no_cache};
use super::responses::{not_found, server_error};
use super::session::{Next, Receiver, Session, is_session_id};
use crate::outbox::{Charge, Eviction};
use crate::transport::DeliberateStatus;
use crate::transport::websocket::refused;

/// How a transport wraps each frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Format {
    /// `xhr` and `xhr_streaming`: one frame per line.
    Xhr,
    /// `eventsource`: one server-sent event per frame.
    EventSource,
    /// `htmlfile`: one `<script>` calling `p(frame)` per frame.
    HtmlFile(String),
    /// `jsonp`: one call of the named callback.
    Jsonp(String),
}

impl Format {
    fn content_type(&self) -> &'static str {
        match self {
            Self::Xhr | Self::Jsonp(_) => "application/javascript; charset=UTF-8",
            Self::EventSource => "text/event-stream",
            Self::HtmlFile(_) => "text/html; charset=UTF-8",
        }
    }

    fn wrap(&self, frame: &str) -> String {
        match self {
            Self::Xhr => format!("{frame}\n"),
            Self::EventSource => format!("data: {frame}\r\n\r\n"),
            Self::HtmlFile(_) => {
                let mut out = String::from("<script>\np(");
                framing::push_json_string(&mut out, frame);
                out.push_str(");\n</script>\r\n");
                out
            }
            Self::Jsonp(callback) => {
                let mut out = format!("/**/{callback}(");
                framing::push_json_string(&mut out, frame);
                out.push_str(");\r\n");
                out
            }
        }
    }

    /// What a streaming response starts with, before any frame: enough bytes to get
    /// through browsers' and proxies' buffering.
    fn prelude(&self) -> String {
        match self {
            Self::Xhr => format!("{}\n", "h".repeat(2048)),
            Self::EventSource => "\r\n".to_owned(),
            Self::HtmlFile(callback) => {
                let mut head = format!(
                    r#"<!doctype html>
<html><head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
</head><body><h2>Don't panic!</h2>
  <script>
    document.domain = document.domain;
    var c = parent.{callback};
    c.start();
    function p(d) {{c.message(d);}};
    window.onload = function() {{c.stop();}};
  </script>"#
                );
                // Old browsers render nothing before 1 KiB.
                let padding = 1024usize.saturating_sub(head.len()) + 14;
                head.push_str(&" ".repeat(padding));
                head.push_str("\r\n");
                head
            }
            Self::Jsonp(_) => String::new(),
        }
    }
}

/// The JSONP/htmlfile callback from `?c=`, or why there is no valid one (answered with
/// [`server_error`]).
pub(super) fn callback(request: &Parts) -> Result<String, &'static str> {
    let query = request.uri.query().unwrap_or_default();
    let callback = form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == "c")
        .map(|(_, value)| value.into_owned());
    match callback {
        None => Err("\"callback\" parameter required"),
        Some(name) if !framing::valid_callback(&name) => Err("invalid \"callback\" parameter"),
        Some(name) => Ok(name),
    }
}

/// A polling request: one answer, then the session waits for the next request.
pub(super) async fn poll(
    endpoint: &Arc<Endpoint>,
    id: &str,
    format: Format,
    request: &Parts,
) -> Response {
    let (_session, attached) = match open_and_attach(endpoint, id, request) {
        Ok(opened) => opened,
        Err(refusal) => return refusal.response(),
    };
    let (frame, delivery) = match attached {
        None => (
            framing::close(framing::ANOTHER_CONNECTION.0, framing::ANOTHER_CONNECTION.1),
            None,
        ),
        Some(mut receiver) => {
            let budget = endpoint.config.response_limit;
            let (next, charge) = receiver.next(endpoint.config.heartbeat, budget).await;
            let delivery = receiver.hold();
            receiver.finish();
            match next {
                Next::Frame(frame) | Next::Close(frame) => (frame, Some((delivery, charge))),
            }
        }
    };
    // The body holds the session's idle clock, and its messages' budget, until it is
    // handed on.
    let chunk = format.wrap(&frame);
    let body = futures_util::stream::once(async move {
        let _delivery = delivery;
        Ok::<_, Infallible>(chunk)
    });
    transport_response(
        endpoint,
        request,
        format.content_type(),
        Body::from_stream(body),
    )
}

/// A streaming request: frames as they come until the response limit or the close frame.
pub(super) fn stream(
    endpoint: &Arc<Endpoint>,
    id: &str,
    format: Format,
    request: &Parts,
) -> Response {
    let (session, attached) = match open_and_attach(endpoint, id, request) {
        Ok(opened) => opened,
        Err(refusal) => return refusal.response(),
    };
    let content_type = format.content_type();
    // Room for the prelude and one frame: a busy session's answer fits without a task.
    let (tx, rx) = mpsc::channel::<(String, Charge)>(2);
    let prelude = format.prelude();
    let mut delivery = None;
    match attached {
        None => {
            let (code, reason) = framing::ANOTHER_CONNECTION;
            let _ = tx.try_send((prelude, Charge::default()));
            let _ = tx.try_send((
                format.wrap(&framing::close(code, reason)),
                Charge::default(),
            ));
        }
        Some(mut receiver) => {
            delivery = Some(receiver.hold());
            let eviction = session.eviction();
            let config = endpoint.config.clone();
            let pump = async move {
                let mut sent = 0;
                let limit = config.write_timeout;
                let hand_over = |chunk| hand_over(&tx, chunk, limit, eviction.clone());
                if hand_over((prelude, Charge::default())).await.is_err() {
                    return;
                }
                loop {
                    let next = tokio::select! {
                        next = receiver.next(config.heartbeat, config.response_limit) => next,
                        // The client went away: `receiver` drops unfinished (interrupted).
                        () = tx.closed() => return,
                    };
                    let ((frame, last), charge) = match next {
                        (Next::Frame(frame), charge) => ((frame, false), charge),
                        (Next::Close(frame), charge) => ((frame, true), charge),
                    };
                    let chunk = format.wrap(&frame);
                    sent += chunk.len();
                    if last || sent >= config.response_limit {
                        // Released first: the client's next request may follow this chunk at once.
                        receiver.finish();
                        let _ = hand_over((chunk, charge)).await;
                        return;
                    }
                    if hand_over((chunk, charge)).await.is_err() {
                        return;
                    }
                }
            };
            exosphere_task::spawn(pump);
        }
    }
    // The body holds the session's idle clock until it is written out; each chunk's
    // budget is given back as the chunk is handed on.
    let body = futures_util::stream::unfold((rx, delivery), |(mut rx, delivery)| async move {
        rx.recv()
            .await
            .map(|(chunk, _charge)| (Ok::<_, Infallible>(chunk), (rx, delivery)))
    });
    transport_response(endpoint, request, content_type, Body::from_stream(body))
}

/// Hands `chunk` to a streaming response's body and waits until the body has passed it
/// to the HTTP layer, all within `limit`; `Err` when the client is gone or stopped reading
/// (logged), or the session was evicted. Waiting for the hand-over, not just for room in the channel, is what notices
/// a stall even when the session has nothing more to send: its budget may be held by the
/// very chunks the client does not take.
async fn hand_over(
    tx: &mpsc::Sender<(String, Charge)>,
    chunk: (String, Charge),
    limit: Duration,
    eviction: Eviction,
) -> Result<(), ()> {
    let taken = async {
        tx.send(chunk).await.map_err(drop)?;
        tx.reserve_many(tx.max_capacity())
            .await
            .map(drop)
            .map_err(drop)
    };
    let taken = tokio::select! {
        taken = timeout(limit, taken) => taken,
        () = eviction.wait() => return Err(()),
    };
    match taken {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!(
                write_timeout = ?limit,
                "SockJS streaming client stopped reading: a frame stayed unwritten; session interrupted"
            );
            Err(())
        }
    }
}

/// `xhr_send` (a JSON array body, answered `204`) or `jsonp_send` (the same, possibly as
/// the form field `d`, answered `200 ok`).
pub(super) async fn send(
    endpoint: &Arc<Endpoint>,
    id: &str,
    jsonp: bool,
    head: &Parts,
    body: Body,
) -> Response {
    let Some(session) = endpoint.sessions.get(id) else {
        return not_found();
    };
    let Ok(bytes) = to_bytes(body, endpoint.config.max_message_size).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "message too large\n").into_response();
    };
    let form = jsonp
        && head
            .headers
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
    let messages = match framing::decode_payload(&framing::send_payload(&bytes, form), false) {
        Ok(messages) => messages,
        Err(error @ (PayloadError::Missing | PayloadError::BrokenJson)) => {
            return server_error(&error.to_string());
        }
    };
    // A torn-down session or an ended application: the next poll carries the close frame.
    if let Some(inbound) = session.inbound() {
        // Waits while the application is behind (backpressure on this client only), but
        // no longer than the disconnect delay: an application that stays stuck means a
        // client that never reads what it asked for, and its session ends.
        let delivered = timeout(endpoint.config.disconnect_delay, async {
            for message in messages {
                if inbound.send(message).await.is_err() {
                    break;
                }
            }
        })
        .await;
        if delivered.is_err() {
            tracing::info!("SockJS session not reading its output; closed");
            endpoint.sessions.remove(id, &session);
            session.tear_down();
            return DeliberateStatus::Refused
                .mark((StatusCode::SERVICE_UNAVAILABLE, "session closed\n").into_response());
        }
        Session::taken(&inbound).await;
    }
    let (status, body) = if jsonp {
        (StatusCode::OK, Body::from("ok"))
    } else {
        (StatusCode::NO_CONTENT, Body::empty())
    };
    let mut response = transport_response(endpoint, head, "text/plain; charset=UTF-8", body);
    *response.status_mut() = status;
    response
}

/// The session `id` (opened if new, as [`open`] does) with this request as its receiver,
/// or no receiver when another one is attached; `Err` when `id` is not a session id a
/// SockJS client makes or the application refuses a new session.
/// A session that expired between the lookup and the attach is left for a new one.
fn open_and_attach(
    endpoint: &Arc<Endpoint>,
    id: &str,
    request: &Parts,
) -> Result<(Arc<Session>, Option<Receiver>), Refusal> {
    if !is_session_id(id) {
        return Err(Refusal::NotASessionId);
    }
    loop {
        let session = open(endpoint, id, request).ok_or(Refusal::Full)?;
        let receiver = session.attach();
        if !session.expired() {
            return Ok((session, receiver));
        }
    }
}

/// Why a polling or streaming request gets no session.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    /// Not an id a SockJS client makes: `404`, as for any unknown URL.
    NotASessionId,
    /// The application refused a new session (a session limit, or shutdown): `503`.
    Full,
}

impl Refusal {
    fn response(self) -> Response {
        match self {
            Self::NotASessionId => not_found(),
            Self::Full => refused(),
        }
    }
}

/// The session `id`, opened (and its application started) if it is new; `None` when
/// the application refuses a new session.
fn open(endpoint: &Arc<Endpoint>, id: &str, request: &Parts) -> Option<Arc<Session>> {
    let (session, created) = endpoint.sessions.get_or_create(id, || {
        let channels = endpoint
            .app
            .open(connection_info(request), endpoint.config.queue)?;
        Some(Session::new(
            channels.inbound,
            channels.outbound,
            channels.slot,
            channels.established,
        ))
    })?;
    if created {
        let expiry = Arc::clone(&session).expire(
            Arc::clone(&endpoint.sessions),
            id.to_owned(),
            endpoint.config.disconnect_delay,
            endpoint.config.connect_timeout,
        );
        exosphere_task::spawn(expiry);
    }
    Some(session)
}

/// A transport answer: content type, no caching, CORS and the session cookie.
fn transport_response(
    endpoint: &Endpoint,
    request: &Parts,
    content_type: &'static str,
    body: Body,
) -> Response {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    no_cache(headers);
    cors(headers, request);
    cookie(endpoint, headers, request);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_wrapped_per_transport() {
        assert_eq!(Format::Xhr.wrap("o"), "o\n");
        assert_eq!(Format::EventSource.wrap("o"), "data: o\r\n\r\n");
        assert_eq!(
            Format::Jsonp("x".into()).wrap(r#"a["x"]"#),
            "/**/x(\"a[\\\"x\\\"]\");\r\n"
        );
        assert_eq!(
            Format::HtmlFile("c".into()).wrap("o"),
            "<script>\np(\"o\");\n</script>\r\n"
        );
        assert!(Format::HtmlFile("c".into()).prelude().len() > 1024);
        assert_eq!(Format::Xhr.prelude().len(), 2049);
    }
}
