//! SockJS client payloads: the first byte picks the way in (an `xhr_send` body, a
//! `jsonp_send` form post, a WebSocket message), the rest is the payload. Decoded messages
//! go through the DDP parser and survive the server's `a[…]` framing.
#![no_main]

use exosphere_ddp::fuzzing::{sockjs_send_body, sockjs_websocket_message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&way, payload)) = data.split_first() else {
        return;
    };
    match way % 3 {
        0 => sockjs_send_body(payload, false),
        1 => sockjs_send_body(payload, true),
        _ => {
            if let Ok(text) = std::str::from_utf8(payload) {
                sockjs_websocket_message(text);
            }
        }
    }
});
