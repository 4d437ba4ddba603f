//! hixie-76 (SockJS's oldest WebSocket dialect): the first byte picks a handshake key or
//! the frame stream. For frames, the next two bytes set the frame limit (1 to 256 bytes,
//! so the limit is reached) and the read buffer's size; every frame read is within the
//! limit and writes back to the same text.
#![no_main]

use exosphere_ddp::fuzzing::{hixie76_frames, hixie76_key};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match data {
        [0, key @ ..] => {
            if let Ok(key) = std::str::from_utf8(key) {
                hixie76_key(key);
            }
        }
        [_, limit, capacity, frames @ ..] => {
            hixie76_frames(frames, usize::from(*limit) + 1, usize::from(*capacity));
        }
        _ => {}
    }
});
