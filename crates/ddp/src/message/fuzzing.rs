//! Property checks over the DDP message parsers, re-exported by [`crate::fuzzing`] for the
//! fuzz targets in `fuzz/`.

use axum::extract::ws::Utf8Bytes;

use super::{ClientFrame, ClientMessage, Inbound, ServerFrame};

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
