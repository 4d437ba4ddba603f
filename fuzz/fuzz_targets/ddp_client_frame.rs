//! A client's DDP frame, parsed as a session parses it; a `connect`, `method`, `sub` or
//! `unsub` re-encodes to a frame that parses the same (`exosphere_ddp::fuzzing`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        exosphere_ddp::fuzzing::client_frame(text);
    }
});
