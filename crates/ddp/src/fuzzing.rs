//! Property checks over the DDP crate's private parsers, for the fuzz targets in `fuzz/`
//! (compiled only with the `fuzzing` feature, which nothing but `fuzz/` turns on).
//!
//! The parsers stay private to the crate; each function here feeds one of them the bytes a
//! client or upstream server could send, exactly as the transport does, and panics when a
//! promise breaks: a frame that parses re-encodes to a frame that parses the same, a
//! hixie-76 frame never exceeds its limit, a SockJS payload re-encodes to the same
//! messages. A panic is what the fuzzer reports as a finding.

pub use crate::message::fuzzing::{client_frame, server_frame};
pub use crate::transport::sockjs::fuzzing::{
    hixie76_frames, hixie76_key, sockjs_send_body, sockjs_websocket_message,
};
