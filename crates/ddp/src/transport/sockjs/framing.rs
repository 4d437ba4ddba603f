//! SockJS frames (protocol 0.3.3): what the server sends, and how client payloads decode.
//!
//! The server sends four frames: `o` (open), `h` (heartbeat), `a[...]` (an array of
//! messages, each a JSON string) and `c[code,"reason"]` (close). Clients send a JSON array
//! of strings (or, on WebSockets, a single JSON string). Messages are encoded here once,
//! straight from the DDP frame text, with the escaping SockJS asks of servers: besides
//! JSON's own escapes, characters that browsers or proxies mangle (`U+200C..U+200F`,
//! `U+2028..U+202F`, `U+2060..U+206F`, `U+FFF0..U+FFFF`) go out as `\uXXXX`.

use std::fmt::Write as _;

/// The open frame, sent once when a session starts.
pub(crate) const OPEN: &str = "o";
/// The heartbeat frame, sent when a receiver has been idle for the heartbeat interval.
pub(crate) const HEARTBEAT: &str = "h";

/// `c[2010,"Another connection still open"]`: a second receiver on a busy session.
pub(crate) const ANOTHER_CONNECTION: (u16, &str) = (2010, "Another connection still open");
/// `c[1002,"Connection interrupted"]`: the previous receiver went away mid-request.
pub(crate) const INTERRUPTED: (u16, &str) = (1002, "Connection interrupted");
/// `c[3000,"Go away!"]`: what the conformance suite's `close` service sends.
pub(crate) const GO_AWAY: (u16, &str) = (3000, "Go away!");

/// Appends `text` to `out` as a JSON string literal, with SockJS's extra escapes.
pub(crate) fn push_json_string(out: &mut String, text: &str) {
    out.reserve(text.len() + 2);
    out.push('"');
    push_escaped(out, text);
    out.push('"');
}

/// `text` as the inside of a SockJS JSON string literal (no quotes): what a message's
/// shared body becomes inside `a["…"]`.
pub(crate) fn escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    push_escaped(&mut out, text);
    out
}

/// Appends `text` with JSON's and SockJS's escapes, without quotes.
fn push_escaped(out: &mut String, text: &str) {
    let mut run_start = 0;
    for (index, c) in text.char_indices() {
        let escape: Option<&str> = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            _ if needs_unicode_escape(c) => Some(""),
            _ => None,
        };
        let Some(escape) = escape else { continue };
        out.push_str(&text[run_start..index]);
        if escape.is_empty() {
            // Lowercase hex, as SockJS servers write it.
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push_str(escape);
        }
        run_start = index + c.len_utf8();
    }
    out.push_str(&text[run_start..]);
}

/// Control characters, and the ranges SockJS servers must escape.
fn needs_unicode_escape(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}'
        | '\u{200c}'..='\u{200f}'
        | '\u{2028}'..='\u{202f}'
        | '\u{2060}'..='\u{206f}'
        | '\u{fff0}'..='\u{ffff}')
}

/// `a[...]` for `messages`, each encoded as a JSON string.
pub(crate) fn messages<'a>(messages: impl IntoIterator<Item = &'a str>) -> String {
    let mut frame = String::from("a[");
    for (index, message) in messages.into_iter().enumerate() {
        if index > 0 {
            frame.push(',');
        }
        push_json_string(&mut frame, message);
    }
    frame.push(']');
    frame
}

/// `c[code,"reason"]`.
pub(crate) fn close(code: u16, reason: &str) -> String {
    let mut frame = format!("c[{code},");
    push_json_string(&mut frame, reason);
    frame.push(']');
    frame
}

/// Why a client payload was refused; the text is what the SockJS reference servers
/// answer (status 500), and what clients and the conformance suite look for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PayloadError {
    /// An empty body (or an empty `d` form field).
    #[error("Payload expected.")]
    Missing,
    /// Not a JSON array of strings (nor, on WebSockets, one JSON string).
    #[error("Broken JSON encoding.")]
    BrokenJson,
}

/// The payload text of an `xhr_send` or `jsonp_send` body: the `d` field of a JSONP form
/// post (`form`), else the body itself, with invalid UTF-8 replaced (a payload that
/// becomes invalid JSON is then refused by [`decode_payload`]).
pub(crate) fn send_payload(body: &[u8], form: bool) -> String {
    if form {
        form_urlencoded::parse(body)
            .find(|(key, _)| key == "d")
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default()
    } else {
        String::from_utf8_lossy(body).into_owned()
    }
}

/// Decodes a client payload: a JSON array of strings, or (`single_allowed`, WebSockets) one
/// JSON string. An empty array is a valid payload without messages.
pub(crate) fn decode_payload(
    body: &str,
    single_allowed: bool,
) -> Result<Vec<String>, PayloadError> {
    if body.is_empty() {
        return Err(PayloadError::Missing);
    }
    if let Ok(list) = serde_json::from_str::<Vec<String>>(body) {
        return Ok(list);
    }
    if single_allowed && let Ok(one) = serde_json::from_str::<String>(body) {
        return Ok(vec![one]);
    }
    Err(PayloadError::BrokenJson)
}

/// Whether a JSONP/htmlfile callback name is acceptable: `[a-zA-Z0-9-_.]+`, so it cannot
/// inject script.
pub(crate) fn valid_callback(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_encoded_like_the_reference_servers() {
        assert_eq!(messages(["a"]), r#"a["a"]"#);
        assert_eq!(
            messages(["x", "{\"msg\":\"ping\"}"]),
            r#"a["x","{\"msg\":\"ping\"}"]"#
        );
        assert_eq!(close(3000, "Go away!"), r#"c[3000,"Go away!"]"#);
        let (code, reason) = ANOTHER_CONNECTION;
        assert_eq!(
            close(code, reason),
            r#"c[2010,"Another connection still open"]"#
        );
    }

    #[test]
    fn server_escapes_what_browsers_mangle() {
        let mut out = String::new();
        push_json_string(&mut out, "a\u{2028}b\u{ffff}\u{0}\n\"\\é");
        assert_eq!(out, r#""a\u2028b\uffff\u0000\n\"\\é""#);
        // Round trip through a JSON parser.
        let back: String = serde_json::from_str(&out).unwrap_or_default();
        assert_eq!(back, "a\u{2028}b\u{ffff}\u{0}\n\"\\é");
    }

    #[test]
    fn payloads_decode_or_say_why_not() {
        assert_eq!(
            decode_payload(r#"["a","b"]"#, false),
            Ok(vec!["a".into(), "b".into()])
        );
        assert_eq!(decode_payload("[]", false), Ok(vec![]));
        assert_eq!(decode_payload(r#""a""#, true), Ok(vec!["a".into()]));
        assert_eq!(
            decode_payload(r#""a""#, false),
            Err(PayloadError::BrokenJson)
        );
        assert_eq!(
            decode_payload(r#"["x"#, false),
            Err(PayloadError::BrokenJson)
        );
        assert_eq!(decode_payload("[1]", false), Err(PayloadError::BrokenJson));
        assert_eq!(decode_payload("", true), Err(PayloadError::Missing));
        assert_eq!(PayloadError::Missing.to_string(), "Payload expected.");
    }

    #[test]
    fn callbacks_cannot_inject_script() {
        assert!(valid_callback("callback"));
        assert!(valid_callback("a.b_c-1"));
        for bad in ["", " ", "*", "abc(", "a;b"] {
            assert!(!valid_callback(bad), "{bad:?}");
        }
    }
}
