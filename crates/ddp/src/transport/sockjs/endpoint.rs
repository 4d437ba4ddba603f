//! One SockJS endpoint as its requests see it: the application behind it, its options,
//! its HTTP-transport sessions, and what a request tells about the client.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use axum::http::request::Parts;

use super::app::Application;
use super::config::SockJsConfig;
use super::session::Sessions;
use crate::transport::websocket::ConnectionInfo;

/// One SockJS endpoint: its application, its options and its HTTP-transport sessions.
pub(super) struct Endpoint {
    /// What the endpoint serves.
    pub(super) app: Arc<dyn Application>,
    /// Its options.
    pub(super) config: SockJsConfig,
    /// Whether the WebSocket transports are offered (`/info` says so).
    pub(super) websocket: bool,
    /// Whether load-balancer cookies (`JSESSIONID`) are set (`/info` says so).
    pub(super) cookie_needed: bool,
    /// The sessions of the HTTP transports, which outlive any one request.
    pub(super) sessions: Arc<Sessions>,
}

/// What the application learns about the client from the request that opened a session.
pub(super) fn connection_info(request: &Parts) -> ConnectionInfo {
    let remote = request
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    ConnectionInfo::from_request(remote, &request.headers)
}
