//! SockJS 0.3.3, server side: how browsers reach DDP (`<prefix>/sockjs`), with or without
//! WebSockets.
//!
//! One endpoint (mounted at a URL prefix by [`routes`]) serves, as
//! `sockjs/sockjs-protocol` defines them:
//!
//! * `<prefix>` (greeting), `<prefix>/info` and the `iframe*.html` page ([`pages`]);
//! * `<prefix>/websocket`: a raw WebSocket, no SockJS framing;
//! * `<prefix>/<server>/<session>/<transport>`: the SockJS WebSocket transport
//!   ([`websocket`], RFC 6455 or [`hixie76`], both running the loop of [`socket`]) and the
//!   HTTP transports `xhr`, `xhr_streaming`, `eventsource`, `htmlfile`, `jsonp`, with
//!   `xhr_send`/`jsonp_send` ([`http`]), whose sessions live in [`session`];
//! * frames and payloads are encoded and decoded in [`framing`]; the shared headers are in
//!   [`headers`], the plain error answers in [`responses`].
//!
//! This module knows nothing of what it carries: an [`app::Application`] gets one
//! inbound message stream and one [`Outbox`](crate::outbox::Outbox) per session. DDP is
//! one application ([`ddp`], mounted by [`ddp_routes`]); the conformance suite's echo and
//! close services are others ([`test_service`], mounted by [`test_service_routes`]).
//!
//! Dependencies run one way: routes → transports → [`endpoint`] → [`app`] → [`config`];
//! the applications sit above the transports they hand sockets to.

mod app;
mod config;
mod ddp;
mod endpoint;
mod framing;
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzzing;
mod headers;
mod hixie76;
mod http;
mod pages;
mod responses;
mod routes;
mod session;
mod socket;
mod test_service;
mod websocket;

pub use config::{DEFAULT_CLIENT_INTEGRITY, DEFAULT_CLIENT_URL, ScriptIntegrity, SockJsConfig};
pub use routes::{ddp_routes, test_service_routes};
