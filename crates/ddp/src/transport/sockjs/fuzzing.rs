//! Property checks over the SockJS transport's decoders, re-exported by
//! [`crate::fuzzing`] for the fuzz targets in `fuzz/`.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use super::framing::{decode_payload, messages, send_payload};
use super::hixie76::{KeyError, key_number, read_frame, write_frame};
use super::socket::SocketFrame;
use crate::message::fuzzing::client_frame;

/// The body of an `xhr_send` or `jsonp_send` request (`form`: a JSONP form post), decoded
/// as [`http::send`](super::http) decodes it; every message then goes through the DDP
/// parser (see [`client_frame`]), and the messages survive the server's own `a[…]` framing.
pub fn sockjs_send_body(body: &[u8], form: bool) {
    if let Ok(list) = decode_payload(&send_payload(body, form), false) {
        check_messages(&list);
    }
}

/// One message of a SockJS WebSocket, decoded as the socket loop decodes it (one JSON
/// string is a message too).
pub fn sockjs_websocket_message(text: &str) {
    if let Ok(list) = decode_payload(text, true) {
        check_messages(&list);
    }
}

/// Decoded messages parse as DDP without panicking, and `a[…]` frames them so that a
/// client decodes the same strings.
fn check_messages(list: &[String]) {
    for message in list {
        client_frame(message);
    }
    let frame = messages(list.iter().map(String::as_str));
    let array = frame
        .strip_prefix('a')
        .expect("a message frame starts with `a`");
    let again: Vec<String> = serde_json::from_str(array)
        .unwrap_or_else(|error| panic!("{frame:?} is not a JSON array of strings: {error}"));
    assert_eq!(again, list);
}

/// A hixie-76 connection's bytes after the handshake, read frame by frame with the frame
/// limit `limit` through a read buffer of `capacity` bytes (so frames straddle reads as
/// they do on a socket). Every text frame is at most `limit` bytes, and writing it as the
/// server writes frames reads back the same text.
pub fn hixie76_frames(bytes: &[u8], limit: usize, capacity: usize) {
    let mut reader = tokio::io::BufReader::with_capacity(capacity.max(1), bytes);
    while let Ok(Some(text)) = ready(read_frame(&mut reader, limit)) {
        assert!(
            text.len() <= limit,
            "a frame of {} > {limit} bytes",
            text.len()
        );
        let mut wire = Vec::new();
        ready(write_frame(&mut wire, &SocketFrame::text(text.as_str())))
            .expect("writing to memory");
        let again = ready(read_frame(&mut wire.as_slice(), limit));
        assert_eq!(again.ok().flatten().as_deref(), Some(text.as_str()));
    }
}

/// A hixie-76 `Sec-WebSocket-Key1`/`Key2` value: an accepted key stands for its digits
/// divided by its spaces, and a refused one says truly why.
pub fn hixie76_key(key: &str) {
    let digits = key
        .bytes()
        .filter(u8::is_ascii_digit)
        .try_fold(0_u64, |number, digit| {
            number.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
        })
        .filter(|&number| number <= u64::from(u32::MAX));
    let spaces = key.bytes().filter(|&b| b == b' ').count() as u64;
    match key_number(key) {
        Ok(number) => assert_eq!(Some(u64::from(number) * spaces), digits, "{key:?}"),
        Err(KeyError::TooLarge) => assert_eq!(digits, None, "{key:?}"),
        Err(KeyError::NoSpaces) => assert_eq!(spaces, 0, "{key:?}"),
        Err(KeyError::NotIntegral) => {
            let digits = digits.expect("a number within u32");
            assert!(spaces > 0 && digits % spaces != 0, "{key:?}");
        }
    }
}

/// Runs a future that never waits (it reads from and writes to memory) to completion.
fn ready<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("an in-memory read or write waited"),
    }
}
