//! SockJS 0.3.3, server side: how browsers reach DDP (`<prefix>/sockjs`), with or without
//! WebSockets.
//!
//! One endpoint (mounted at a URL prefix) serves, as `sockjs/sockjs-protocol` defines them:
//!
//! * `<prefix>` (greeting), `<prefix>/info` and the `iframe*.html` page ([`pages`]);
//! * `<prefix>/websocket`: a raw WebSocket, no SockJS framing;
//! * `<prefix>/<server>/<session>/<transport>`: the SockJS WebSocket transport
//!   ([`websocket`], RFC 6455 or [`hixie76`]) and the HTTP transports `xhr`,
//!   `xhr_streaming`, `eventsource`, `htmlfile`, `jsonp`, with `xhr_send`/`jsonp_send`
//!   ([`http`]), whose sessions live in [`session`];
//! * frames and payloads are encoded and decoded in [`framing`].
//!
//! This module knows nothing of what it carries: an [`app::Application`] gets one
//! inbound message stream and one [`Outbox`](crate::session::Outbox) per session. DDP is
//! one application ([`ddp_routes`]); the conformance suite's echo and close services are
//! others ([`test_service_routes`]).

mod app;
mod framing;
mod hixie76;
mod http;
mod pages;
mod session;
mod websocket;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use axum::http::{Method, Request, StatusCode};
use axum::response::{IntoResponse as _, Response};
use axum::routing::any;

use crate::server::Server;
use crate::service::Service;
use crate::transport::websocket::ConnectionInfo;
use app::{Application, Ddp, TestService};
use session::Sessions;

/// Where the iframe page loads `sockjs-client` from unless told otherwise: the public CDN's
/// latest 1.x, the version browsers running a current `sockjs-client` carry (the iframe's
/// copy must be the same version as the page's).
pub const DEFAULT_CLIENT_URL: &str =
    "https://cdn.jsdelivr.net/npm/sockjs-client@1/dist/sockjs.min.js";

/// Tuning of a SockJS endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SockJsConfig {
    /// Send a heartbeat frame (`h`) after this long without output (SockJS: 25 s).
    pub heartbeat: Duration,
    /// Remove an HTTP-transport session once no response of it has been in delivery for
    /// this long (Meteor: 60 s; the SockJS suite: 5 s); the application sees the client
    /// leave. The clock starts when a response body is written out, so a slow link
    /// receiving a large result is not dropped.
    pub disconnect_delay: Duration,
    /// Bytes one streaming response carries before the server ends it and the client
    /// opens the next (SockJS: 128 KiB), so browsers can free what they received.
    pub response_limit: usize,
    /// Largest body of one `xhr_send`/`jsonp_send` request, and largest WebSocket message.
    pub max_message_size: usize,
    /// Longest time one write to a client may take; a client that stops reading is
    /// disconnected instead of holding the server's memory (`--write-timeout`).
    pub write_timeout: Duration,
    /// Longest wait for the 8-byte nonce a hixie-76 client sends after its handshake
    /// headers; a client that never sends it is disconnected.
    pub handshake_timeout: Duration,
    /// Client messages buffered per session on their way to the application; when full,
    /// the transport stops reading (`--inbound-queue`). The application's output is
    /// bounded by its own byte budget (`--outbound-buffer-size`).
    pub queue: usize,
    /// The SockJS client script the iframe page loads (the iframe-based transports run
    /// their requests from it): [`DEFAULT_CLIENT_URL`], or a copy served where the CDN is
    /// out of reach.
    pub client_url: String,
}

impl Default for SockJsConfig {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(25),
            disconnect_delay: Duration::from_secs(60),
            response_limit: 128 * 1024,
            max_message_size: 1024 * 1024,
            write_timeout: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(45),
            queue: 32,
            client_url: DEFAULT_CLIENT_URL.to_owned(),
        }
    }
}

/// One SockJS endpoint: its application, its options and its HTTP-transport sessions.
struct Endpoint {
    app: Arc<dyn Application>,
    config: SockJsConfig,
    /// Whether the WebSocket transports are offered (`/info` says so).
    websocket: bool,
    /// Whether load-balancer cookies (`JSESSIONID`) are set (`/info` says so).
    cookie_needed: bool,
    sessions: Arc<Sessions>,
}

/// Serves DDP through SockJS at `prefix` (Meteor's is `/sockjs`): every transport, and
/// the raw WebSocket at `<prefix>/websocket`, all counted against the server's session
/// limit.
pub fn ddp_routes<S: Service, St>(
    prefix: &str,
    server: Arc<Server<S>>,
    config: SockJsConfig,
) -> Router<St>
where
    St: Clone + Send + Sync + 'static,
{
    let endpoint = Endpoint {
        app: Arc::new(Ddp(server)),
        config,
        websocket: true,
        cookie_needed: false,
        sessions: Arc::default(),
    };
    routes(prefix, endpoint)
}

/// The services the SockJS conformance suite (`sockjs-protocol.py`) expects: `/echo`,
/// `/disabled_websocket_echo`, `/cookie_needed_echo` and `/close`. The suite expects a
/// 4096-byte streaming response limit; `config` is used as given.
pub fn test_service_routes<St>(config: &SockJsConfig) -> Router<St>
where
    St: Clone + Send + Sync + 'static,
{
    let endpoint = |app: TestService, websocket: bool, cookie_needed: bool| Endpoint {
        app: Arc::new(app),
        config: config.clone(),
        websocket,
        cookie_needed,
        sessions: Arc::default(),
    };
    Router::new()
        .merge(routes("/echo", endpoint(TestService::Echo, true, false)))
        .merge(routes(
            "/disabled_websocket_echo",
            endpoint(TestService::Echo, false, false),
        ))
        .merge(routes(
            "/cookie_needed_echo",
            endpoint(TestService::Echo, true, true),
        ))
        .merge(routes("/close", endpoint(TestService::Close, true, false)))
}

/// Mounts `endpoint` at `prefix`: everything under it is dispatched by [`dispatch`].
fn routes<St>(prefix: &str, endpoint: Endpoint) -> Router<St>
where
    St: Clone + Send + Sync + 'static,
{
    let endpoint = Arc::new(endpoint);
    let handler = {
        let prefix = prefix.to_owned();
        move |request: Request<Body>| {
            let endpoint = Arc::clone(&endpoint);
            let prefix = prefix.clone();
            async move { dispatch(&endpoint, &prefix, request).await }
        }
    };
    Router::new()
        .route(prefix, any(handler.clone()))
        .route(&format!("{prefix}/"), any(handler.clone()))
        .route(&format!("{prefix}/{{*rest}}"), any(handler))
}

/// Routes one request under the endpoint's prefix by the SockJS URL scheme.
async fn dispatch(endpoint: &Arc<Endpoint>, prefix: &str, request: Request<Body>) -> Response {
    let (request, body) = request.into_parts();
    let path = request.uri.path().to_owned();
    let rest = path
        .strip_prefix(prefix)
        .map(|rest| rest.strip_prefix('/').unwrap_or(rest))
        .unwrap_or_default();
    match rest {
        "" => pages::greeting(),
        "info" => pages::info(endpoint, &request),
        "websocket" => websocket::raw(endpoint, request).await,
        page if pages::is_iframe(page) => pages::iframe(&endpoint.config.client_url, &request),
        session_url => match parse_session_url(session_url) {
            Some((session, transport)) => {
                transport_request(endpoint, session, transport, request, body).await
            }
            None => not_found(),
        },
    }
}

/// `<server>/<session>/<transport>`: three non-empty parts, no dots in the first two.
fn parse_session_url(path: &str) -> Option<(&str, &str)> {
    let mut parts = path.split('/');
    let (server, session, transport) = (parts.next()?, parts.next()?, parts.next()?);
    let valid = |part: &str| !part.is_empty() && !part.contains('.');
    (parts.next().is_none() && valid(server) && valid(session) && !transport.is_empty())
        .then_some((session, transport))
}

/// One request on a session URL, by transport and method.
async fn transport_request(
    endpoint: &Arc<Endpoint>,
    session: &str,
    transport: &str,
    request: Parts,
    body: Body,
) -> Response {
    let method = request.method.clone();
    let allowed = match transport {
        "websocket" if endpoint.websocket => "GET",
        "xhr" | "xhr_streaming" | "xhr_send" | "jsonp_send" => "OPTIONS, POST",
        "eventsource" | "htmlfile" | "jsonp" => "OPTIONS, GET",
        _ => return not_found(),
    };
    if method == Method::OPTIONS && allowed != "GET" {
        return http::options(endpoint, &request, allowed);
    }
    match (transport, method) {
        ("websocket", Method::GET) => websocket::sockjs(endpoint, request).await,
        ("xhr", Method::POST) => http::poll(endpoint, session, http::Format::Xhr, &request).await,
        ("jsonp", Method::GET) => match http::callback(&request) {
            Ok(callback) => {
                http::poll(endpoint, session, http::Format::Jsonp(callback), &request).await
            }
            Err(reason) => http::server_error(reason),
        },
        ("xhr_streaming", Method::POST) => {
            http::stream(endpoint, session, http::Format::Xhr, &request)
        }
        ("eventsource", Method::GET) => {
            http::stream(endpoint, session, http::Format::EventSource, &request)
        }
        ("htmlfile", Method::GET) => match http::callback(&request) {
            Ok(callback) => http::stream(
                endpoint,
                session,
                http::Format::HtmlFile(callback),
                &request,
            ),
            Err(reason) => http::server_error(reason),
        },
        ("xhr_send", Method::POST) => http::send(endpoint, session, false, &request, body).await,
        ("jsonp_send", Method::POST) => http::send(endpoint, session, true, &request, body).await,
        _ => method_not_allowed(allowed),
    }
}

/// What the application learns about the client from the request that opened a session.
fn connection_info(request: &Parts) -> ConnectionInfo {
    let remote = request
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    ConnectionInfo::from_request(remote, &request.headers)
}

/// `404 Not Found` with no body.
fn not_found() -> Response {
    StatusCode::NOT_FOUND.into_response()
}

/// `405 Method Not Allowed` with `Allow` and nothing else.
fn method_not_allowed(allowed: &'static str) -> Response {
    let mut response = StatusCode::METHOD_NOT_ALLOWED.into_response();
    response.headers_mut().insert(
        axum::http::header::ALLOW,
        axum::http::HeaderValue::from_static(allowed),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::parse_session_url;

    #[test]
    fn session_urls_have_three_parts_and_no_dots() {
        assert_eq!(parse_session_url("000/abc/xhr"), Some(("abc", "xhr")));
        assert_eq!(parse_session_url("_/_1/xhr_send"), Some(("_1", "xhr_send")));
        for bad in [
            "/a/xhr",
            "a./a/xhr",
            "a/a./xhr",
            "./././xhr",
            "a/a/",
            "a/a",
            "a/a/xhr/",
        ] {
            assert_eq!(parse_session_url(bad), None, "{bad}");
        }
    }
}
