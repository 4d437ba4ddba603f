//! Meteor's DDP protocol, server side (spec §1), independent of what is being served.
//!
//! An application implements [`Service`] (methods and publications); a [`Server`] holds
//! it with the session limits of [`DdpConfig`]; [`transport::websocket`] serves each
//! upgraded WebSocket as one session. Inside:
//!
//! * message parsing and encoding: one frame per DDP message, Meteor's exact protocol
//!   errors;
//! * a per-session state machine: version negotiation, heartbeats, and a worker that runs
//!   methods one at a time, in order;
//! * publications writing through a [`Subscription`] into a per-session merge box, so the
//!   client never sees duplicate `added`s or `changed`s for unknown documents.
//!
//! [`client`] is the other side: a DDP client over `ws://` and `wss://`, built on the same
//! message and EJSON code.
//!
//! EJSON lives in its own crate, re-exported as [`ejson`].
//!
//! Dependencies run one way, from the sockets down to the wire format:
//!
//! * [`transport`] owns sockets and runs sessions over them;
//! * `session`: the per-connection state machine, its worker and heartbeat;
//! * `server` (admission, limits, gauges, shutdown) and `service` (the [`Service`] trait);
//! * `publication`: the [`Subscription`] handle, over the state a session shares with its
//!   subscriptions (`session::shared`), over the subscription registry and merge box;
//! * leaves: `message` (frames), `outbox` (the byte-bounded outbound queues and the
//!   server-wide budget), `address` (caps per client address), `config`,
//!   `context`, `reply`, `error`, `id`, `version`.
//!
//! [`client`] sits beside them and uses only `message`, `error`, `id` and `version`.
//!
//! With the `fuzzing` feature (only `fuzz/` turns it on), `fuzzing` holds property checks
//! over the private parsers for the fuzz targets.

pub use exosphere_ejson as ejson;

mod address;
pub mod client;
mod config;
mod context;
mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod id;
mod message;
mod outbox;
mod publication;
mod rate_limit;
mod reply;
mod server;
mod service;
mod session;
pub mod transport;
mod version;

pub use address::{AddressGroup, AddressSlot, PerAddress};
pub use config::{DdpConfig, MAX_OUTBOUND_BUFFER_SIZE, WebSocketCompression};
pub use context::{MethodContext, SessionContext};
pub use error::{DdpError, ErrorCode, SessionClosed};
pub use id::random_id;
pub use publication::Subscription;
pub use rate_limit::{RateLimit, too_many_requests};
pub use reply::{RawText, Reply};
pub use server::Server;
pub use service::Service;
pub use transport::DeliberateStatus;
pub use transport::sockjs::{
    DEFAULT_CLIENT_INTEGRITY as SOCKJS_CLIENT_INTEGRITY, DEFAULT_CLIENT_URL as SOCKJS_CLIENT_URL,
    ScriptIntegrity, SockJsConfig,
};
pub use transport::websocket::{ConnectionInfo, serve_websocket, upgrade};
