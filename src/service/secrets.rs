//! The unguessable secrets this server hands out: login tokens, upload tokens and upload
//! URLs.

use base64::Engine as _;
use rand::RngCore as _;

/// A fresh unguessable secret (256 bits, URL-safe base64) for login tokens, upload
/// tokens and upload URLs.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether `text` could be a secret this server handed out (used before any lookup, so
/// odd URL text never reaches the store).
pub fn looks_like_secret(text: &str) -> bool {
    text.len() == 43
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
