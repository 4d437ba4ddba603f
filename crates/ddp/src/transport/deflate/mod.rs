//! WebSocket compression, `permessage-deflate` (RFC 7692), written here because neither
//! tungstenite 0.29 nor axum 0.8 has it: tungstenite fails any frame with RSV1 set.
//!
//! [`negotiate`] picks the client's first acceptable offer and always answers
//! `server_no_context_takeover`, so each outbound message is compressed on its own
//! ([`codec`]); [`frames`] reads and writes the frames of every HTTP/1.1 WebSocket, negotiated
//! or not, inflating what the client compressed within the message size limit.

mod codec;
mod frames;
mod negotiate;

pub(crate) use frames::split;
pub(crate) use negotiate::{Agreement, negotiate};
