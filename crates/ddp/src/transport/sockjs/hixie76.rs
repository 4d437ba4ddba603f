//! The hixie-76 WebSocket dialect (draft-hixie-thewebsocketprotocol-76, also called
//! hybi-00) on the SockJS WebSocket transport `<server>/<session>/websocket`.
//!
//! Browsers of 2010–2011 spoke it, and the SockJS suite still checks it
//! (`Websocket.test_haproxy`). tungstenite speaks RFC 6455 only, and no maintained crate
//! speaks hixie-76, so this module does it by hand:
//!
//! * the handshake: two keys in the request headers, each standing for a number (its
//!   digits divided by its spaces), and an 8-byte nonce (`key3`) the client sends after
//!   the headers. The server proves it read the handshake by answering MD5 of both numbers
//!   and the nonce. The `101` goes out *before* the nonce is read: HAProxy forwards the
//!   nonce only once it has seen the server's answer, so a server waiting for it first
//!   would wait forever. The nonce is then read from the upgraded connection, within
//!   `handshake_timeout`, and bytes the client sent early are not lost (hyper's upgraded
//!   connection replays what it had already read);
//! * the frames: `0x00 <UTF-8 text> 0xFF`, and the closing handshake `0xFF 0x00`.
//!
//! After the handshake the session runs on the same loop as the RFC 6455 transport
//! ([`socket::serve`](super::socket::serve)), so SockJS behaves identically on both.
//!
//! `Sec-WebSocket-Location` is `ws://` + `Host` + the request path: the server cannot tell
//! whether a TLS-terminating proxy stands in front of it, so a hixie-76 client behind
//! `https` is told a `ws://` location, which it refuses. hixie-76 clients predate such
//! setups; RFC 6455 has no location header.

use axum::http::header::{CONNECTION, HOST, ORIGIN, UPGRADE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse as _, Response};
use bytes::Buf;
use futures_util::{sink, stream};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use md5::{Digest as _, Md5};
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt as _, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _,
};
use tokio::time::timeout;

use super::app::Channels;
use super::config::SockJsConfig;
use super::endpoint::{Endpoint, connection_info};
use super::responses::{NOT_AN_UPGRADE, bad_request};
use super::socket::{self, SocketFrame};
use crate::transport::upgrade::READ_BUFFER_SIZE;
use crate::transport::websocket::refused;

/// The first key header of a hixie-76 handshake.
const KEY1: HeaderName = HeaderName::from_static("sec-websocket-key1");
/// The second key header of a hixie-76 handshake.
const KEY2: HeaderName = HeaderName::from_static("sec-websocket-key2");

/// Byte that opens a text frame.
const TEXT_START: u8 = 0x00;
/// Byte that ends a text frame, and opens the closing handshake.
const TEXT_END: u8 = 0xFF;
/// The closing handshake, both ways.
const CLOSE: [u8; 2] = [0xFF, 0x00];

/// Whether `headers` open a hixie-76 handshake rather than an RFC 6455 one: only hixie-76
/// sends the two numbered keys.
pub(super) fn is_handshake(headers: &HeaderMap) -> bool {
    headers.contains_key(KEY1) && headers.contains_key(KEY2)
}

/// Answers a hixie-76 handshake: `400` if it is malformed, `503` if the application
/// refuses the session, else `101` at once, and the session runs on its own task once
/// the client's nonce arrives.
pub(super) fn upgrade(endpoint: &Endpoint, mut request: Parts) -> Response {
    let handshake = match Handshake::parse(&request) {
        Ok(handshake) => handshake,
        Err(reason) => {
            tracing::debug!(%reason, "hixie-76 handshake refused");
            return bad_request(&reason);
        }
    };
    let Some(on_upgrade) = request.extensions.remove::<OnUpgrade>() else {
        return bad_request("This connection cannot be upgraded.");
    };
    let Some(channels) = endpoint
        .app
        .open(connection_info(&request), endpoint.config.queue)
    else {
        return refused();
    };
    let (keys, config) = (handshake.keys, endpoint.config.clone());
    exosphere_task::spawn(run(on_upgrade, keys, channels, config));
    (
        StatusCode::SWITCHING_PROTOCOLS,
        [
            (UPGRADE, HeaderValue::from_static("WebSocket")),
            (CONNECTION, HeaderValue::from_static("Upgrade")),
            (
                HeaderName::from_static("sec-websocket-origin"),
                handshake.origin,
            ),
            (
                HeaderName::from_static("sec-websocket-location"),
                handshake.location,
            ),
        ],
    )
        .into_response()
}

/// Completes the handshake on the upgraded connection (reads the nonce, answers the
/// challenge), then serves the session over hixie-76 frames.
async fn run(on_upgrade: OnUpgrade, keys: Keys, channels: Channels, config: SockJsConfig) {
    let upgraded = match on_upgrade.await {
        Ok(upgraded) => upgraded,
        Err(error) => {
            tracing::debug!(%error, "hixie-76 upgrade failed");
            return;
        }
    };
    let (reader, mut writer) = tokio::io::split(TokioIo::new(upgraded));
    let mut reader = tokio::io::BufReader::with_capacity(READ_BUFFER_SIZE, reader);
    let mut key3 = [0; 8];
    if !matches!(
        timeout(config.handshake_timeout, reader.read_exact(&mut key3)).await,
        Ok(Ok(_))
    ) {
        tracing::debug!("hixie-76 client sent no nonce in time; dropping the connection");
        return;
    }
    let answer = keys.challenge_response(&key3);
    let answered = async {
        writer.write_all(&answer).await?;
        writer.flush().await
    };
    if !matches!(timeout(config.write_timeout, answered).await, Ok(Ok(()))) {
        return;
    }
    let limit = config.max_message_size;
    let texts = stream::unfold(reader, move |mut reader| async move {
        match read_frame(&mut reader, limit).await {
            Ok(Some(text)) => Some((text, reader)),
            Ok(None) => None,
            Err(error) => {
                tracing::debug!(%error, "hixie-76 frame refused; dropping the connection");
                None
            }
        }
    });
    let frames = sink::unfold(writer, |mut writer, frame: SocketFrame| async move {
        write_frame(&mut writer, &frame).await?;
        Ok::<_, std::io::Error>(writer)
    });
    socket::serve(texts, frames, channels, &config, true).await;
}

/// What a hixie-76 handshake request says.
#[derive(Debug)]
struct Handshake {
    keys: Keys,
    /// Echoed as `Sec-WebSocket-Origin`.
    origin: HeaderValue,
    /// `Sec-WebSocket-Location`: `ws://` + `Host` + path and query.
    location: HeaderValue,
}

impl Handshake {
    /// Checks the upgrade headers and the keys; the reason of a refusal otherwise.
    fn parse(request: &Parts) -> Result<Self, String> {
        let headers = &request.headers;
        let text = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        let upgrade = text(&UPGRADE).is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        let connection = text(&CONNECTION).is_some_and(|v| {
            v.split(',')
                .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
        });
        if !upgrade || !connection {
            return Err(NOT_AN_UPGRADE.to_owned());
        }
        let key = |name: &HeaderName| {
            let value = text(name).ok_or_else(|| format!("{name} is not text."))?;
            key_number(value).map_err(|error| format!("{name}: {error}."))
        };
        let keys = Keys {
            key1: key(&KEY1)?,
            key2: key(&KEY2)?,
        };
        let origin = headers
            .get(ORIGIN)
            .cloned()
            .ok_or("A hixie-76 handshake needs an Origin header.")?;
        let host = text(&HOST).ok_or("A hixie-76 handshake needs a Host header.")?;
        let path = request
            .uri
            .path_and_query()
            .map_or_else(|| request.uri.path(), |p| p.as_str());
        let location = HeaderValue::from_str(&format!("ws://{host}{path}"))
            .map_err(|_| "The request's Host and path make no valid location.".to_owned())?;
        Ok(Self {
            keys,
            origin,
            location,
        })
    }
}

/// The numbers of a handshake's two keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Keys {
    key1: u32,
    key2: u32,
}

impl Keys {
    /// The 16 bytes that answer the client's nonce `key3`: MD5 of both numbers (32-bit
    /// big-endian) and the nonce (draft-76 §5.2).
    fn challenge_response(self, key3: &[u8; 8]) -> [u8; 16] {
        let mut md5 = Md5::new();
        md5.update(self.key1.to_be_bytes());
        md5.update(self.key2.to_be_bytes());
        md5.update(key3);
        md5.finalize().into()
    }
}

/// Why a `Sec-WebSocket-Key1`/`Key2` value stands for no number (draft-76 §5.2 aborts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum KeyError {
    /// A key must contain at least one space (the divisor).
    #[error("the key has no spaces")]
    NoSpaces,
    /// The digits, read as one number, must not exceed 4,294,967,295.
    #[error("the key's number is larger than 4294967295")]
    TooLarge,
    /// The number must be an integral multiple of the number of spaces.
    #[error("the key's number is not a multiple of its spaces")]
    NotIntegral,
}

/// The number a key stands for: its digits read as one number, divided by its spaces.
pub(super) fn key_number(key: &str) -> Result<u32, KeyError> {
    let number = key
        .bytes()
        .filter(u8::is_ascii_digit)
        .try_fold(0_u32, |number, digit| {
            number.checked_mul(10)?.checked_add(u32::from(digit - b'0'))
        })
        .ok_or(KeyError::TooLarge)?;
    // A header is far shorter than 4 GiB: the count fits.
    let spaces = u32::try_from(key.bytes().filter(|&b| b == b' ').count())
        .map_err(|_| KeyError::NotIntegral)?;
    match spaces {
        0 => Err(KeyError::NoSpaces),
        _ if number % spaces != 0 => Err(KeyError::NotIntegral),
        _ => Ok(number / spaces),
    }
}

/// Why a client's frame ended the connection.
#[derive(Debug, thiserror::Error)]
pub(super) enum FrameError {
    #[error("reading the socket failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("a text frame is longer than {0} bytes")]
    TooLarge(usize),
    #[error("the connection ended inside a frame")]
    Truncated,
    #[error("a text frame is not UTF-8")]
    NotUtf8,
    /// hixie-76 defines length-prefixed binary frames (a leading byte with the high bit
    /// set) but no browser sends them; SockJS carries text only.
    #[error("unsupported frame type 0x{0:02x}")]
    Unsupported(u8),
}

/// Reads one frame: `Some(text)` for a text frame, `None` at the closing handshake or at
/// the end of the connection between frames. A frame longer than `limit` bytes is refused
/// as soon as its `limit + 1`th byte arrives, so a client cannot grow the buffer without
/// bound.
pub(super) async fn read_frame<R>(
    reader: &mut R,
    limit: usize,
) -> Result<Option<String>, FrameError>
where
    R: AsyncBufRead + Unpin,
{
    let Some(kind) = read_byte(reader).await? else {
        return Ok(None);
    };
    match kind {
        TEXT_START => {
            let mut text = Vec::new();
            let most = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
            (&mut *reader)
                .take(most)
                .read_until(TEXT_END, &mut text)
                .await?;
            match text.pop() {
                Some(TEXT_END) => String::from_utf8(text)
                    .map(Some)
                    .map_err(|_| FrameError::NotUtf8),
                _ if text.len() >= limit => Err(FrameError::TooLarge(limit)),
                _ => Err(FrameError::Truncated),
            }
        }
        TEXT_END => match read_byte(reader).await? {
            Some(0x00) => Ok(None),
            Some(_) => Err(FrameError::Unsupported(TEXT_END)),
            None => Err(FrameError::Truncated),
        },
        other => Err(FrameError::Unsupported(other)),
    }
}

/// The next byte, or `None` at the end of the connection.
async fn read_byte<R: AsyncBufRead + Unpin>(reader: &mut R) -> std::io::Result<Option<u8>> {
    let mut byte = [0; 1];
    Ok((reader.read(&mut byte).await? == 1).then_some(byte[0]))
}

/// Writes a writer's frame on the wire, and flushes it. A text frame's markers and text go
/// out as one vectored write where the connection supports it, without copying the text.
/// hixie-76's closing handshake carries no code or reason: the SockJS close frame sent
/// just before it does.
pub(super) async fn write_frame(
    writer: &mut (impl AsyncWrite + Unpin),
    frame: &SocketFrame,
) -> std::io::Result<()> {
    match frame {
        SocketFrame::Text(text) => {
            let mut framed = Buf::chain(
                Buf::chain([TEXT_START].as_slice(), text.as_bytes()),
                [TEXT_END].as_slice(),
            );
            writer.write_all_buf(&mut framed).await?;
        }
        SocketFrame::Spliced(spliced) => {
            let text = Buf::chain(
                Buf::chain(spliced.head.as_bytes(), spliced.body.as_str().as_bytes()),
                spliced.tail.as_bytes(),
            );
            let mut framed = Buf::chain(
                Buf::chain([TEXT_START].as_slice(), text),
                [TEXT_END].as_slice(),
            );
            writer.write_all_buf(&mut framed).await?;
        }
        SocketFrame::Close { .. } => writer.write_all(&CLOSE).await?,
    }
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys of draft-76's example handshake (§1.3), which the SockJS suite's
    /// `test_haproxy` sends too.
    const EXAMPLE_KEY1: &str = "4 @1  46546xW%0l 1 5";
    const EXAMPLE_KEY2: &str = "12998 5 Y3 1  .P00";

    fn example_keys() -> Keys {
        Keys {
            key1: key_number(EXAMPLE_KEY1).expect("key1"),
            key2: key_number(EXAMPLE_KEY2).expect("key2"),
        }
    }

    #[test]
    fn the_draft_example_keys_stand_for_its_numbers() {
        // draft-76 §1.3: 4146546015 / 5 and 1299853100 / 5.
        assert_eq!(
            example_keys(),
            Keys {
                key1: 829_309_203,
                key2: 259_970_620
            }
        );
    }

    #[test]
    fn the_challenge_response_matches_the_draft_and_the_sockjs_suite() {
        // draft-76 §1.3: nonce `^n:ds[4U`, answer `8jKS'y:G*Co,Wxa-`.
        assert_eq!(
            &example_keys().challenge_response(b"^n:ds[4U"),
            b"8jKS'y:G*Co,Wxa-"
        );
        // sockjs-protocol.py, Websocket.test_haproxy: nonce `aaaaaaaa`.
        assert_eq!(
            &example_keys().challenge_response(b"aaaaaaaa"),
            b"\xca4\x00\xd8\xa5\x08G\x97,\xd5qZ\xba\xbfC{"
        );
    }

    #[test]
    fn malformed_keys_are_refused() {
        assert_eq!(key_number("12345"), Err(KeyError::NoSpaces));
        assert_eq!(key_number("1 2 3"), Err(KeyError::NotIntegral)); // 123 / 2
        assert_eq!(key_number("4294967296 "), Err(KeyError::TooLarge));
        assert_eq!(
            key_number("99999999999999999999999 "),
            Err(KeyError::TooLarge)
        );
        assert_eq!(key_number("4294967295 "), Ok(u32::MAX));
        assert_eq!(key_number("1 2 4"), Ok(62)); // 124 / 2
    }

    /// Reads every frame of `bytes` until the first error or the end.
    async fn frames(mut bytes: &[u8], limit: usize) -> Vec<Result<Option<String>, String>> {
        let mut frames = Vec::new();
        loop {
            let frame = read_frame(&mut bytes, limit)
                .await
                .map_err(|e| e.to_string());
            let last = !matches!(frame, Ok(Some(_)));
            frames.push(frame);
            if last {
                return frames;
            }
        }
    }

    #[tokio::test]
    async fn text_frames_and_the_closing_handshake_decode() {
        let wire = b"\x00[\"a\"]\xff\x00\xff\x00\xc3\xa9\xff\xff\x00";
        assert_eq!(
            frames(wire, 100).await,
            vec![
                Ok(Some(r#"["a"]"#.to_owned())),
                Ok(Some(String::new())),
                Ok(Some("é".to_owned())),
                Ok(None),
            ]
        );
        assert_eq!(frames(b"", 100).await, vec![Ok(None)]);
    }

    #[tokio::test]
    async fn a_frame_up_to_the_limit_passes_and_a_longer_one_is_refused() {
        assert_eq!(
            frames(b"\x00abcd\xff", 4).await,
            vec![Ok(Some("abcd".to_owned())), Ok(None)]
        );
        // Refused after `limit + 1` bytes, whether or not the frame ever ends.
        let refused = Err("a text frame is longer than 4 bytes".to_owned());
        assert_eq!(frames(b"\x00abcde\xff", 4).await, vec![refused.clone()]);
        let endless = [b"\x00".as_slice(), &[b'x'; 1000]].concat();
        assert_eq!(frames(&endless, 4).await, vec![refused]);
    }

    #[tokio::test]
    async fn bad_frames_end_the_connection() {
        let unsupported = |byte: u8| Err(format!("unsupported frame type 0x{byte:02x}"));
        assert_eq!(frames(b"x", 100).await, vec![unsupported(b'x')]);
        assert_eq!(frames(b"\x80\x05hello", 100).await, vec![unsupported(0x80)]);
        assert_eq!(frames(b"\xff\x05", 100).await, vec![unsupported(0xff)]);
        let truncated = Err("the connection ended inside a frame".to_owned());
        assert_eq!(frames(b"\x00abc", 100).await, vec![truncated.clone()]);
        assert_eq!(frames(b"\xff", 100).await, vec![truncated]);
        assert_eq!(
            frames(b"\x00\xc3\xff", 100).await,
            vec![Err("a text frame is not UTF-8".to_owned())]
        );
    }

    #[tokio::test]
    async fn frames_are_written_as_the_draft_says() {
        let mut wire = Vec::new();
        let close = SocketFrame::Close {
            code: 3000,
            reason: "Go away!",
        };
        for frame in [SocketFrame::text("o"), close] {
            write_frame(&mut wire, &frame).await.expect("written");
        }
        assert_eq!(wire, b"\x00o\xff\xff\x00");
    }
}
