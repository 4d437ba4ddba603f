//! Transports that carry DDP frames.
//!
//! The raw WebSocket endpoint the `meteor` tool uses (spec §1.1), and SockJS for
//! browsers and other DDP clients (spec §1.1, "SockJS"). A transport owns the socket and
//! runs a [`session`](crate::session) over it; sessions know nothing of transports.
//! [`DeliberateStatus`] marks the 5xx answers they give on purpose.

mod deflate;
mod outgoing;
pub mod sockjs;
mod status;
mod upgrade;
pub mod websocket;

pub use status::DeliberateStatus;
