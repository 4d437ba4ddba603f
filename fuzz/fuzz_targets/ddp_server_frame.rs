//! A server's DDP frame, classified as the DDP client (mirror, `exosphere sync`) does.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        exosphere_ddp::fuzzing::server_frame(text);
    }
});
