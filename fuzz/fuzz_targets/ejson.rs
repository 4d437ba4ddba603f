//! EJSON text (method params, `added` fields, sync tokens, records): what decodes encodes
//! back to text that decodes to the same value, through both of the crate's decoders, and
//! lowers to plain JSON without panicking.
#![no_main]

use exosphere_ejson::{Ejson, parse, plain_json_text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(value) = parse(text) else {
        return;
    };
    let encoded = value.to_json_string();
    let again = parse(&encoded).unwrap_or_else(|e| panic!("{encoded} does not parse: {e}"));
    assert_eq!(again, value, "text round trip of {encoded}");
    let from_value = Ejson::from_json(value.to_json())
        .unwrap_or_else(|e| panic!("{encoded} does not decode as a JSON value: {e}"));
    assert_eq!(from_value, value, "value round trip of {encoded}");
    let _ = value.to_plain_json();
    let _ = plain_json_text(text);
});
