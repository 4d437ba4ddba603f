//! WebSocket compression (`permessage-deflate`, RFC 7692) on the wire, by hand: which offers
//! the server accepts and what it answers, on `/websocket` and the SockJS WebSocket transport;
//! compressed and fragmented client messages, with a ping between fragments;
//! a compressed frame that inflates past `--max-message-size` (a deflate bomb) and a frame
//! with RSV1 set on a connection that did not negotiate the extension are refused with a
//! close, and the server carries on. The Node clients' full syncs are in `interop`.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;

use flate2::Compression;
use flate2::write::DeflateEncoder;
use serde_json::{Value, json};

use crate::common::{PATIENCE, Server, serve_fixture};

/// The RFC's sample key (its answer is `s3pPLMBiTxaQ9kYGzzhZRbK+xOo=`).
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A connection after its handshake, reading and writing frames by hand.
struct Raw {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

/// A server frame: (FIN, RSV1, opcode, payload).
type Frame = (bool, bool, u8, Vec<u8>);

/// Upgrades `path` offering `offers` (one `Sec-WebSocket-Extensions` line each): the status
/// line, the extension answer, and the connection.
fn handshake(server: &Server, path: &str, offers: &[&str]) -> (String, Option<String>, Raw) {
    let addr = server.http.trim_start_matches("http://");
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
    );
    for offer in offers {
        request.push_str(&format!("Sec-WebSocket-Extensions: {offer}\r\n"));
    }
    request.push_str("\r\n");
    writer.write_all(request.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    let mut extensions = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("sec-websocket-extensions")
        {
            extensions = Some(value.trim().to_owned());
        }
    }
    (
        status.trim_end().to_owned(),
        extensions,
        Raw { reader, writer },
    )
}

impl Raw {
    /// Sends one masked, final frame.
    fn send(&mut self, rsv1: bool, opcode: u8, payload: &[u8]) {
        self.send_fragment(rsv1, opcode, true, payload);
    }

    /// Sends one masked frame, final or not.
    fn send_fragment(&mut self, rsv1: bool, opcode: u8, fin: bool, payload: &[u8]) {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut frame = vec![if fin { 0x80 } else { 0 } | if rsv1 { 0x40 } else { 0 } | opcode];
        match payload.len() {
            len @ 0..=125 => frame.push(0x80 | len as u8),
            len @ 126..=0xFFFF => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        // The server may close before taking it all.
        let _ = self.writer.write_all(&frame);
    }

    /// The next server frame, or `None` once the connection ended.
    fn frame(&mut self) -> Option<Frame> {
        let mut head = [0u8; 2];
        self.reader.read_exact(&mut head).ok()?;
        assert_eq!(head[1] & 0x80, 0, "server frames are not masked");
        let len = match head[1] & 0x7F {
            126 => {
                let mut ext = [0u8; 2];
                self.reader.read_exact(&mut ext).ok()?;
                u64::from(u16::from_be_bytes(ext))
            }
            127 => {
                let mut ext = [0u8; 8];
                self.reader.read_exact(&mut ext).ok()?;
                u64::from_be_bytes(ext)
            }
            len => u64::from(len),
        };
        let mut payload = vec![0; usize::try_from(len).unwrap()];
        self.reader.read_exact(&mut payload).ok()?;
        Some((
            head[0] & 0x80 != 0,
            head[0] & 0x40 != 0,
            head[0] & 0x0F,
            payload,
        ))
    }

    /// The next text message, inflated if it came compressed.
    fn text(&mut self) -> Option<String> {
        let (fin, rsv1, opcode, payload) = self.frame()?;
        assert!(fin, "the server does not fragment");
        if opcode != 1 {
            return None;
        }
        let payload = if rsv1 { inflate(&payload) } else { payload };
        Some(String::from_utf8(payload).expect("UTF-8"))
    }

    fn send_json(&mut self, message: &Value) {
        self.send(false, 1, message.to_string().as_bytes());
    }

    /// DDP `connect`, answered with `connected`.
    fn connect(&mut self) {
        self.send_json(&json!({"msg": "connect", "version": "1", "support": ["1"]}));
        let connected = self.text().expect("connected");
        assert!(connected.contains(r#""msg":"connected""#), "{connected}");
    }

    /// The close code the server ends with, skipping other frames; `None` if the connection
    /// ended without a close frame.
    fn close_code(&mut self) -> Option<u16> {
        while let Some((_, _, opcode, payload)) = self.frame() {
            if opcode == 8 {
                return Some(u16::from_be_bytes([payload[0], payload[1]]));
            }
        }
        None
    }
}

/// A `permessage-deflate` payload inflated as a client does: the tail put back.
fn inflate(payload: &[u8]) -> Vec<u8> {
    let data = [payload, &[0, 0, 0xff, 0xff]].concat();
    let mut out = Vec::new();
    let mut decoder = flate2::read::DeflateDecoder::new(&data[..]);
    // The stream has no final block: reading ends with an error after all the data.
    let _ = decoder.read_to_end(&mut out);
    out
}

/// `text` compressed as a client compresses a message: raw DEFLATE, sync-flushed, tail off.
fn deflate(text: &[u8]) -> Vec<u8> {
    let mut encoder = DeflateEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(text).unwrap();
    encoder.flush().unwrap();
    let mut out = encoder.get_ref().clone();
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

/// The high-water mark of the server's resident memory, in KiB.
fn peak_rss_kib(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

const ANSWER: &str = "permessage-deflate; server_no_context_takeover";

#[test]
fn offers_are_accepted_or_declined_as_rfc_7692_says() {
    let (_dir, _data, server) = serve_fixture();
    let sockjs = format!("/sockjs/000/{}/websocket", exosphere_ddp::random_id());
    let cases: &[(&[&str], Option<&str>)] = &[
        (&[], None),
        (&["permessage-deflate"], Some(ANSWER)),
        // Browsers: client_max_window_bits without a value.
        (
            &["permessage-deflate; client_max_window_bits"],
            Some(ANSWER),
        ),
        // faye's module, as the `meteor` tool sends it.
        (
            &["permessage-deflate; client_max_window_bits; client_no_context_takeover"],
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
        ),
        // The compressor keeps a 32 KiB window: a smaller one is declined.
        (&["permessage-deflate; server_max_window_bits=10"], None),
        (
            &["permessage-deflate; server_max_window_bits=15"],
            Some(ANSWER),
        ),
        (&["permessage-deflate; x-unknown=1"], None),
        (&["x-webkit-deflate-frame"], None),
        // Several offers: the first acceptable one, across header lines too.
        (
            &[
                "permessage-deflate; server_max_window_bits=9, permessage-deflate; client_max_window_bits=12",
            ],
            Some(ANSWER),
        ),
        (
            &[
                "permessage-deflate; unknown",
                "permessage-deflate; client_no_context_takeover",
            ],
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
        ),
    ];
    for path in ["/websocket", "/sockjs/websocket", sockjs.as_str()] {
        for (offers, expected) in cases {
            let (status, answer, _) = handshake(&server, path, offers);
            assert_eq!(
                status, "HTTP/1.1 101 Switching Protocols",
                "{path} {offers:?}"
            );
            assert_eq!(answer.as_deref(), *expected, "{path} {offers:?}");
        }
    }
    // A declined offer still gives a working session.
    let (_, answer, mut raw) = handshake(
        &server,
        "/websocket",
        &["permessage-deflate; server_max_window_bits=10"],
    );
    assert_eq!(answer, None);
    raw.connect();
}

#[test]
fn the_flag_turns_compression_off() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &["--websocket-compression", "false"],
    );
    let (status, answer, mut raw) = handshake(&server, "/websocket", &["permessage-deflate"]);
    assert_eq!(status, "HTTP/1.1 101 Switching Protocols");
    assert_eq!(answer, None);
    raw.connect();
}

#[test]
fn compressed_messages_are_read_and_answered_compressed() {
    let (_dir, _data, server) = serve_fixture();
    let (_, answer, mut raw) = handshake(&server, "/websocket", &["permessage-deflate"]);
    assert_eq!(answer.as_deref(), Some(ANSWER));
    // A compressed connect, then a compressed call split over two frames.
    raw.send(
        true,
        1,
        &deflate(br#"{"msg":"connect","version":"1","support":["1"]}"#),
    );
    assert!(raw.text().unwrap().contains("connected"));
    let call = deflate(br#"{"msg":"method","id":"1","method":"syncNewPackageData","params":[{"format":"1.1"},{}]}"#);
    let (first, rest) = call.split_at(call.len() / 2);
    raw.send_fragment(true, 1, false, first);
    // A ping may come between a message's frames; it is answered and the message goes on.
    raw.send(false, 9, b"between");
    raw.send_fragment(false, 0, true, rest);
    let (result, compressed) = loop {
        let (_, rsv1, opcode, payload) = raw.frame().expect("a result");
        if opcode == 10 {
            assert_eq!(payload, b"between", "the pong echoes the ping");
            continue;
        }
        assert_eq!(opcode, 1);
        let message: Value =
            serde_json::from_slice(&if rsv1 { inflate(&payload) } else { payload }).unwrap();
        if message["msg"] == "result" {
            break (message, rsv1);
        }
    };
    assert!(compressed, "a sync page goes compressed");
    assert_eq!(result["id"], "1");
    assert!(
        result["result"]["collections"]["packages"]
            .as_array()
            .is_some_and(|p| !p.is_empty())
    );
}

#[test]
fn a_deflate_bomb_is_refused_with_a_close_without_growing_memory() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let (_, answer, mut raw) = handshake(&server, "/websocket", &["permessage-deflate"]);
    assert_eq!(answer.as_deref(), Some(ANSWER));
    raw.connect();
    // 256 MiB of one byte in about 256 KB: far past the 1 MiB --max-message-size.
    let mut encoder = DeflateEncoder::new(Vec::new(), Compression::best());
    let chunk = vec![b' '; 1 << 20];
    for _ in 0..256 {
        encoder.write_all(&chunk).unwrap();
    }
    encoder.flush().unwrap();
    let mut bomb = encoder.get_ref().clone();
    bomb.truncate(bomb.len() - 4);
    assert!(bomb.len() < 1 << 20, "the frame itself is within the limit");
    let before = peak_rss_kib(&server);
    raw.send(true, 1, &bomb);
    assert_eq!(raw.close_code(), Some(1009), "message too big");
    let after = peak_rss_kib(&server);
    assert!(
        after < before + 64 * 1024,
        "peak memory grew from {before} KiB to {after} KiB"
    );
    // The server carries on.
    let (_, _, mut other) = handshake(&server, "/websocket", &["permessage-deflate"]);
    other.connect();
}

#[test]
fn rsv1_without_the_extension_is_refused_with_a_close() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let (_, answer, mut raw) = handshake(&server, "/websocket", &[]);
    assert_eq!(answer, None);
    raw.connect();
    raw.send(true, 1, &deflate(br#"{"msg":"ping"}"#));
    assert_eq!(raw.close_code(), Some(1002), "protocol error");
    // Negotiated, RSV1 on a continuation frame or on a control frame is a violation too.
    let (_, _, mut raw) = handshake(&server, "/websocket", &["permessage-deflate"]);
    raw.connect();
    raw.send(true, 9, b"ping");
    assert_eq!(raw.close_code(), Some(1002));
    // On the SockJS WebSocket transport the connection ends too.
    let path = format!("/sockjs/000/{}/websocket", exosphere_ddp::random_id());
    let (_, answer, mut raw) = handshake(&server, &path, &[]);
    assert_eq!(answer, None);
    assert_eq!(raw.text().as_deref(), Some("o"));
    raw.send(true, 1, &deflate(br#"["{\"msg\":\"ping\"}"]"#));
    while raw.frame().is_some_and(|(_, _, opcode, _)| opcode != 8) {}
}

/// A sync page over the SockJS WebSocket transport, framed (`a["…"]`) or raw, goes out
/// compressed (its shared body spliced, escaped once for SockJS framing) and reads back as
/// the page.
#[test]
fn sockjs_websockets_get_sync_pages_compressed_and_whole() {
    let (_dir, _data, server) = serve_fixture();
    let framed_path = format!("/sockjs/000/{}/websocket", exosphere_ddp::random_id());
    for (path, framed) in [(framed_path.as_str(), true), ("/sockjs/websocket", false)] {
        let (_, answer, mut raw) = handshake(&server, path, &["permessage-deflate"]);
        assert_eq!(answer.as_deref(), Some(ANSWER));
        if framed {
            assert_eq!(raw.text().as_deref(), Some("o"));
        }
        let send = |raw: &mut Raw, message: Value| {
            let text = message.to_string();
            let text = if framed {
                json!([text]).to_string()
            } else {
                text
            };
            raw.send(false, 1, text.as_bytes());
        };
        send(
            &mut raw,
            json!({"msg": "connect", "version": "1", "support": ["1"]}),
        );
        send(
            &mut raw,
            json!({"msg": "method", "id": "7", "method": "syncNewPackageData", "params": [{"format": "1.1"}, {}]}),
        );
        let result = loop {
            let (_, rsv1, opcode, payload) = raw.frame().expect("a result");
            assert_eq!(opcode, 1);
            let text = String::from_utf8(if rsv1 { inflate(&payload) } else { payload }).unwrap();
            let messages: Vec<String> = match (framed, text.strip_prefix('a')) {
                (true, Some(array)) => serde_json::from_str(array).unwrap(),
                (true, None) => continue,
                (false, _) => vec![text],
            };
            let found = messages
                .iter()
                .map(|message| serde_json::from_str::<Value>(message).unwrap())
                .find(|message| message["msg"] == "result");
            if let Some(result) = found {
                assert!(rsv1, "a sync page goes compressed on {path}");
                break result;
            }
        };
        assert_eq!(result["id"], "7");
        assert!(
            result["result"]["collections"]["packages"]
                .as_array()
                .is_some_and(|p| !p.is_empty()),
            "{path}"
        );
    }
}
