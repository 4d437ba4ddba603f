//! Property checks over the DDP crate's private parsers, for the fuzz targets in `fuzz/`
//! (compiled only with the `fuzzing` feature, which nothing but `fuzz/` turns on).
//!
//! The parsers stay private to the crate; each function here feeds one of them the bytes a
//! client or upstream server could send, exactly as the transport does, and panics when a
//! promise breaks: a frame that parses re-encodes to a frame that parses the same, a
//! hixie-76 frame never exceeds its limit, a SockJS payload re-encodes to the same
//! messages. A panic is what the fuzzer reports as a finding.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use axum::extract::ws::Utf8Bytes;

use crate::message::{ClientFrame, ClientMessage, Inbound, ServerFrame};
pub use crate::transport::sockjs::fuzzing::{
    hixie76_frames, hixie76_key, sockjs_send_body, sockjs_websocket_message,
};

/// Runs a future that never waits (it reads from and writes to memory) to completion.
pub(crate) fn ready<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("an in-memory read or write waited"),
    }
}

/// A client's DDP frame (WebSocket or SockJS message), parsed as a session parses it. A
/// `connect`, `method`, `sub` or `unsub` that parses is encoded again with the client's
/// frame builder and must parse to the same message.
pub fn client_frame(text: &str) {
    let Ok(inbound) = Inbound::parse(Utf8Bytes::from(text)) else {
        return;
    };
    let encoded = match &inbound.message {
        ClientMessage::Connect {
            version: Some(version),
            support: Some(support),
        } => {
            let support: Vec<&str> = support.iter().map(String::as_str).collect();
            ClientFrame::Connect {
                version,
                support: &support,
            }
            .encode()
        }
        ClientMessage::Method(call) => ClientFrame::Method {
            id: &call.id,
            method: &call.method,
            params: &call.params,
        }
        .encode(),
        ClientMessage::Sub(request) => ClientFrame::Sub {
            id: &request.id,
            name: &request.name,
            params: &request.params,
        }
        .encode(),
        ClientMessage::Unsub {
            id: Some(serde_json::Value::String(id)),
        } => ClientFrame::Unsub { id }.encode(),
        _ => return,
    };
    let again = Inbound::parse(Utf8Bytes::from(encoded.as_str()))
        .unwrap_or_else(|rejected| panic!("{encoded} does not parse: {}", rejected.cause));
    assert_eq!(again.message, inbound.message, "{encoded}");
}

/// A server's DDP frame, classified as the DDP client (the mirror's and `sync`'s upstream
/// connection) classifies it. Only "no panic" is promised: the client keeps no state a
/// frame could break.
pub fn server_frame(text: &str) {
    let _ = ServerFrame::parse(text);
}
