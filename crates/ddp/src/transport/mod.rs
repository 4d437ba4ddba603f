//! Transports that carry DDP frames.
//!
//! Only the raw WebSocket endpoint the `meteor` tool uses (spec §1.1); SockJS is not
//! provided.

pub mod websocket;
