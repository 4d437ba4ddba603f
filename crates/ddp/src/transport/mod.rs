//! Transports that carry DDP frames.
//!
//! The raw WebSocket endpoint the `meteor` tool uses (spec §1.1), and SockJS for
//! browsers and other DDP clients (spec §1.1, "SockJS").

pub mod sockjs;
pub mod websocket;
