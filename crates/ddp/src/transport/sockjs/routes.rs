//! The SockJS URL scheme: which part of an endpoint answers which request.
//!
//! [`ddp_routes`] and [`test_service_routes`] mount endpoints; every request under a
//! prefix is dispatched by path, transport and method to the pages, the WebSocket
//! transports or the HTTP transports.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{Method, Request};
use axum::response::Response;
use axum::routing::any;

use super::config::SockJsConfig;
use super::ddp::Ddp;
use super::endpoint::Endpoint;
use super::headers::options;
use super::responses::{method_not_allowed, not_found, server_error};
use super::test_service::TestService;
use super::{http, pages, websocket};
use crate::server::Server;
use crate::service::Service;

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
        page if pages::is_iframe(page) => pages::iframe(&endpoint.config, &request),
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
        return options(endpoint, &request, allowed);
    }
    match (transport, method) {
        ("websocket", Method::GET) => websocket::sockjs(endpoint, request).await,
        ("xhr", Method::POST) => http::poll(endpoint, session, http::Format::Xhr, &request).await,
        ("jsonp", Method::GET) => match http::callback(&request) {
            Ok(callback) => {
                http::poll(endpoint, session, http::Format::Jsonp(callback), &request).await
            }
            Err(reason) => server_error(reason),
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
            Err(reason) => server_error(reason),
        },
        ("xhr_send", Method::POST) => http::send(endpoint, session, false, &request, body).await,
        ("jsonp_send", Method::POST) => http::send(endpoint, session, true, &request, body).await,
        _ => method_not_allowed(allowed),
    }
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
