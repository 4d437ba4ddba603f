//! The `permessage-deflate` handshake (RFC 7692 §5 and §7.1): which of a client's offers the
//! server accepts, and what it answers.
//!
//! The server always answers `server_no_context_takeover` (RFC 7692 §7.1.1.1 lets a server
//! add it to any offer): every message it sends is then a DEFLATE stream of its own, so a
//! message can be compressed once and the same bytes sent to every client, and a connection
//! keeps no compressor between messages. The compressor (flate2's Rust backend) always uses
//! a 32 KiB window, so an offer asking for `server_max_window_bits` below 15 is declined; the
//! inflater reads any window size, so `client_max_window_bits` is accepted with or without a
//! value and not answered (the client keeps the window it chose).

use axum::http::HeaderValue;

/// The extension's registered name.
const NAME: &str = "permessage-deflate";

/// What the server and a client agreed on for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Agreement {
    /// The client compresses each message on its own (it offered
    /// `client_no_context_takeover`, and the answer repeats it), so the inflater is reset
    /// after every message.
    pub(crate) client_no_context_takeover: bool,
}

impl Agreement {
    /// The `Sec-WebSocket-Extensions` value of the handshake's answer.
    pub(crate) fn response(self) -> HeaderValue {
        HeaderValue::from_static(if self.client_no_context_takeover {
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        } else {
            "permessage-deflate; server_no_context_takeover"
        })
    }
}

/// The first `permessage-deflate` offer in the request's `Sec-WebSocket-Extensions` headers
/// that the server accepts, in the client's order of preference; `None` when there is none
/// (the connection then runs without the extension).
pub(crate) fn negotiate<'a>(
    headers: impl IntoIterator<Item = &'a HeaderValue>,
) -> Option<Agreement> {
    headers
        .into_iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(accept)
}

/// The agreement for one offer (`name; param; param=value`), or `None` to decline it: another
/// extension, an unknown or repeated parameter, or a value the RFC does not allow.
fn accept(offer: &str) -> Option<Agreement> {
    let mut parts = offer.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case(NAME) {
        return None;
    }
    let mut seen = [false; 4];
    let mut agreement = Agreement {
        client_no_context_takeover: false,
    };
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((name, value)) => (name.trim(), Some(unquote(value.trim())?)),
            None => (param, None),
        };
        let index = match name.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" if value.is_none() => 0,
            "client_no_context_takeover" if value.is_none() => {
                agreement.client_no_context_takeover = true;
                1
            }
            // The compressor's window is 32 KiB: only 15 can be honoured.
            "server_max_window_bits" if value.and_then(window_bits) == Some(15) => 2,
            "client_max_window_bits" if value.is_none_or(|bits| window_bits(bits).is_some()) => 3,
            _ => return None,
        };
        if std::mem::replace(&mut seen[index], true) {
            return None;
        }
    }
    Some(agreement)
}

/// A parameter value given as a quoted string, unquoted (its text must be a token anyway,
/// RFC 7692 §5.1, so it holds no escapes); `None` for a malformed quote.
fn unquote(value: &str) -> Option<&str> {
    match value.strip_prefix('"') {
        Some(rest) => rest
            .strip_suffix('"')
            .filter(|inner| !inner.contains(['"', '\\'])),
        None => Some(value),
    }
}

/// A window size parameter's value: 8 to 15, decimal, without leading zeros.
fn window_bits(value: &str) -> Option<u8> {
    if value.starts_with('0') || !value.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    value.parse().ok().filter(|bits| (8..=15).contains(bits))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(values: &[&'static str]) -> Option<Agreement> {
        let values: Vec<HeaderValue> = values.iter().map(|v| HeaderValue::from_static(v)).collect();
        negotiate(&values)
    }

    const PLAIN: Option<Agreement> = Some(Agreement {
        client_no_context_takeover: false,
    });
    const CLIENT_RESETS: Option<Agreement> = Some(Agreement {
        client_no_context_takeover: true,
    });

    #[test]
    fn no_offer_means_no_extension() {
        assert_eq!(offer(&[]), None);
        assert_eq!(offer(&["x-webkit-deflate-frame"]), None);
        assert_eq!(offer(&[""]), None);
    }

    #[test]
    fn what_browsers_ws_and_faye_offer_is_accepted() {
        // Chrome and Firefox; Node's `ws`; faye's `permessage-deflate` (the `meteor` tool).
        assert_eq!(
            offer(&["permessage-deflate; client_max_window_bits"]),
            PLAIN
        );
        assert_eq!(offer(&["permessage-deflate"]), PLAIN);
        assert_eq!(
            offer(&["permessage-deflate; client_max_window_bits=15"]),
            PLAIN
        );
        assert_eq!(
            offer(&["permessage-deflate;client_no_context_takeover;client_max_window_bits"]),
            CLIENT_RESETS
        );
    }

    #[test]
    fn the_answer_always_takes_server_no_context_takeover() {
        assert_eq!(
            PLAIN.unwrap().response(),
            "permessage-deflate; server_no_context_takeover"
        );
        assert_eq!(
            CLIENT_RESETS.unwrap().response(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
        assert_eq!(
            offer(&["permessage-deflate; server_no_context_takeover"]),
            PLAIN
        );
    }

    #[test]
    fn window_sizes_the_compressor_cannot_keep_are_declined() {
        assert_eq!(
            offer(&["permessage-deflate; server_max_window_bits=10"]),
            None
        );
        assert_eq!(
            offer(&["permessage-deflate; server_max_window_bits=15"]),
            PLAIN
        );
        assert_eq!(
            offer(&["permessage-deflate; server_max_window_bits=\"15\""]),
            PLAIN
        );
        // A value is required, and must be 8 to 15 without leading zeros.
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=015",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; client_max_window_bits=abc",
            "permessage-deflate; client_max_window_bits=\"9",
        ] {
            assert_eq!(offer(&[bad]), None, "{bad}");
        }
        assert_eq!(
            offer(&["permessage-deflate; client_max_window_bits=8"]),
            PLAIN
        );
    }

    #[test]
    fn unknown_repeated_or_valued_flags_decline_the_offer() {
        for bad in [
            "permessage-deflate; x-unknown",
            "permessage-deflate; mux=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
            "permessage-deflate; server_no_context_takeover=1",
        ] {
            assert_eq!(offer(&[bad]), None, "{bad}");
        }
    }

    #[test]
    fn the_first_acceptable_of_several_offers_wins() {
        assert_eq!(
            offer(&[
                "permessage-deflate; server_max_window_bits=10, permessage-deflate; client_no_context_takeover, permessage-deflate"
            ]),
            CLIENT_RESETS
        );
        // Offers spread over several header lines count in order too.
        assert_eq!(
            offer(&[
                "x-webkit-deflate-frame",
                "permessage-deflate; unknown",
                "PerMessage-Deflate",
            ]),
            PLAIN
        );
    }
}
