//! The SockJS 0.3.3 conformance suite (`sockjs/sockjs-protocol`, `sockjs-protocol.py`),
//! rewritten in Rust and run against a real `exosphere serve --sockjs-test-services` over
//! real HTTP and WebSockets. Each test names the suite's class and method it mirrors, and
//! checks what that method checks. One server per suite class.
//!
//! Every class and method of the latest `sockjs-protocol.py` is mirrored, `test_haproxy`
//! (the hixie-76 handshake, headers answered before the nonce arrives) included. Older
//! revisions of the suite also had a `WebsocketHixie76` class, which runs the WebSocket
//! tests over hixie-76; it is mirrored too ([`websocket_hixie76`]), and so is their
//! `WebsocketHybi10` class ([`websocket_hybi10`]: the `Sec-WebSocket-Version` 7 and 8
//! drafts).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::thread::sleep;
use std::time::Duration;

use crate::common::{HIXIE76_ANSWER, HIXIE76_KEY1, HIXIE76_KEY2, HIXIE76_NONCE, Hixie76, Server};
use serde_json::Value;
use tokio_tungstenite::tungstenite::{self, Message};

/// Time for a request the test fires and forgets to reach the server (the suite's 0.25 s).
const SETTLE: Duration = Duration::from_millis(250);
/// How long a read may block before the test fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(20);

/// A server with the suite's services, in a scratch data directory.
struct Suite {
    _dir: tempfile::TempDir,
    server: Server,
}

impl Suite {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let server = Server::start(&dir.path().join("data"), &["--sockjs-test-services"]);
        Self { _dir: dir, server }
    }

    fn addr(&self) -> String {
        self.server.http.trim_start_matches("http://").to_owned()
    }

    /// A fresh session URL path under `service` (`/echo/000/<random>`).
    fn session(&self, service: &str) -> String {
        format!("/{service}/000/{}", exosphere_ddp::random_id())
    }

    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Response {
        let mut stream = self.send(method, path, headers, body, "1.1", true);
        Response::read(&mut stream, method)
    }

    fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[], "")
    }

    fn post(&self, path: &str, body: &str) -> Response {
        self.request("POST", path, &[], body)
    }

    /// Starts a request and returns the connection with the response head read: for
    /// streaming responses, read with [`Streaming::chunk`].
    fn stream(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Streaming {
        let stream = self.send(method, path, headers, "", "1.1", false);
        Streaming::start(stream, method)
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
        version: &str,
        close: bool,
    ) -> TcpStream {
        let mut stream = TcpStream::connect(self.addr()).expect("connects");
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        let mut head = format!(
            "{method} {path} HTTP/{version}\r\nHost: {}\r\n",
            self.addr()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if close {
            head.push_str("Connection: close\r\n");
        }
        if !body.is_empty() || method == "POST" {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        head.push_str(body);
        stream.write_all(head.as_bytes()).expect("request sent");
        stream
    }

    /// A WebSocket whose handshake says `Sec-WebSocket-Version: version` (a draft the
    /// WebSocket client library will not send); the frames are the RFC's.
    fn ws_draft(&self, path: &str, version: &str) -> tungstenite::WebSocket<TcpStream> {
        let mut stream = self.send(
            "GET",
            path,
            &[
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Version", version),
                ("Sec-WebSocket-Key", "x3JJHMbDL1EzLkh9GBhXDw=="),
            ],
            "",
            "1.1",
            false,
        );
        // The response head, byte by byte, so no frame after it is read here.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0];
            stream.read_exact(&mut byte).expect("the handshake answer");
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        tungstenite::WebSocket::from_raw_socket(stream, tungstenite::protocol::Role::Client, None)
    }

    fn ws(
        &self,
        path: &str,
    ) -> tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>> {
        let (socket, _) = tungstenite::connect(format!("ws://{}{path}", self.addr()))
            .expect("WebSocket connects");
        socket
    }
}

/// A whole HTTP response.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn read(stream: &mut TcpStream, method: &str) -> Self {
        let mut streaming = Streaming::start(stream.try_clone().expect("clone"), method);
        let mut body = String::new();
        loop {
            let chunk = streaming.chunk();
            if chunk.is_empty() {
                break;
            }
            body.push_str(&chunk);
        }
        Self {
            status: streaming.status,
            headers: streaming.headers,
            body,
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// A response read piece by piece: one chunk of a chunked body per [`chunk`](Self::chunk),
/// like the suite's `r.read()`.
struct Streaming {
    reader: BufReader<TcpStream>,
    status: u16,
    http: String,
    headers: Vec<(String, String)>,
    chunked: bool,
    remaining: Option<usize>,
}

impl Streaming {
    fn start(stream: TcpStream, method: &str) -> Self {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).expect("status line");
        let mut parts = line.split_whitespace();
        let http = parts
            .next()
            .unwrap_or_default()
            .trim_start_matches("HTTP/")
            .to_owned();
        let status = parts
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("header line");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').expect("header");
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
        let chunked = header(&headers, "transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        let bodiless = method == "HEAD" || status == 204 || status == 304 || status == 101;
        let remaining = if bodiless {
            Some(0)
        } else {
            header(&headers, "content-length").map(|v| v.parse().expect("length"))
        };
        Self {
            reader,
            status,
            http,
            headers,
            chunked,
            remaining,
        }
    }

    /// The next chunk of the body; empty at its end.
    fn chunk(&mut self) -> String {
        if self.chunked {
            let mut size = String::new();
            self.reader.read_line(&mut size).expect("chunk size");
            let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            let mut data = vec![0; size + 2];
            if size == 0 {
                let _ = self.reader.read(&mut data);
                return String::new();
            }
            self.reader.read_exact(&mut data).expect("chunk");
            data.truncate(size);
            return String::from_utf8(data).expect("UTF-8");
        }
        match self.remaining {
            Some(0) => String::new(),
            Some(length) => {
                let mut data = vec![0; length];
                self.reader.read_exact(&mut data).expect("body");
                self.remaining = Some(0);
                String::from_utf8(data).expect("UTF-8")
            }
            None => {
                let mut data = vec![0; 65536];
                let read = self.reader.read(&mut data).unwrap_or(0);
                data.truncate(read);
                String::from_utf8(data).expect("UTF-8")
            }
        }
    }

    /// Exactly `n` bytes of a body without framing (HTTP/1.0).
    fn exact(&mut self, n: usize) -> String {
        let mut data = vec![0; n];
        self.reader.read_exact(&mut data).expect("bytes");
        String::from_utf8(data).expect("UTF-8")
    }

    fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// Whether the server closed the connection.
    fn closed(&mut self) -> bool {
        let mut byte = [0; 1];
        matches!(self.reader.read(&mut byte), Ok(0))
    }
}

// The suite's `Test` helpers.

fn verify_404(r: &Response) {
    assert_eq!(r.status, 404, "{r:?}");
}

fn verify_405(r: &Response) {
    assert_eq!(r.status, 405, "{r:?}");
    assert!(r.header("content-type").is_none(), "{r:?}");
    assert!(r.header("allow").is_some(), "{r:?}");
    assert!(r.body.is_empty(), "{r:?}");
}

fn verify_content_type(headers: &[(String, String)], expected: &str) {
    let actual = header(headers, "content-type")
        .unwrap_or_default()
        .replace(' ', "");
    assert_eq!(actual, expected);
}

fn verify_no_cookie(r: &Response) {
    assert!(r.header("set-cookie").is_none(), "{r:?}");
}

fn verify_cors(headers: &[(String, String)], origin: Option<&str>) {
    match origin {
        Some(origin) => {
            assert_eq!(header(headers, "access-control-allow-origin"), Some(origin));
            assert_eq!(
                header(headers, "access-control-allow-credentials"),
                Some("true")
            );
        }
        None => {
            assert_eq!(header(headers, "access-control-allow-origin"), Some("*"));
            assert!(header(headers, "access-control-allow-credentials").is_none());
        }
    }
}

fn verify_not_cached(headers: &[(String, String)]) {
    assert_eq!(
        header(headers, "cache-control"),
        Some("no-store, no-cache, no-transform, must-revalidate, max-age=0")
    );
    assert!(header(headers, "expires").is_none());
    assert!(header(headers, "last-modified").is_none());
}

fn verify_long_cache(headers: &[(String, String)]) {
    let cache = header(headers, "cache-control").unwrap_or_default();
    assert!(cache.contains("public"), "{cache}");
    let max_age: u64 = cache
        .split("max-age=")
        .nth(1)
        .and_then(|v| v.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(max_age >= 1_000_000, "max-age must be large: {cache}");
    assert!(header(headers, "expires").is_some());
}

fn verify_options(suite: &Suite, path: &str, allowed: &str) {
    for origin in ["test", "null"] {
        let r = suite.request(
            "OPTIONS",
            path,
            &[
                ("Access-Control-Request-Method", allowed),
                ("Origin", origin),
            ],
            "",
        );
        assert!(r.status == 204 || r.status == 200, "{r:?}");
        verify_long_cache(&r.headers);
        let max_age: u64 = r
            .header("access-control-max-age")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        assert!(max_age > 1_000_000);
        let methods = r.header("access-control-allow-methods").unwrap_or_default();
        for method in allowed.split(',') {
            assert!(methods.contains(method.trim()), "{methods} lacks {method}");
        }
        assert!(r.body.is_empty());
        verify_cors(&r.headers, Some(origin));
    }
}

fn verify_cookie(headers: &[(String, String)], value: &str) {
    let cookie = header(headers, "set-cookie").expect("Set-Cookie");
    let mut parts = cookie.split(';');
    assert_eq!(
        parts.next().map(str::trim),
        Some(format!("JSESSIONID={value}").as_str())
    );
    assert_eq!(
        parts.next().map(|p| p.trim().to_lowercase()),
        Some("path=/".to_owned())
    );
}

#[test]
fn base_url_greeting() {
    let suite = Suite::start();
    // test_greeting
    for path in ["/echo", "/echo/"] {
        let r = suite.get(path);
        assert_eq!(r.status, 200);
        verify_content_type(&r.headers, "text/plain;charset=UTF-8");
        assert_eq!(r.body, "Welcome to SockJS!\n");
        verify_no_cookie(&r);
    }
    // test_notFound
    for suffix in ["/a", "/a.html", "//", "///", "/a/a", "/a/a/", "/a", "/a/"] {
        verify_404(&suite.get(&format!("/echo{suffix}")));
    }
}

#[test]
fn iframe_page() {
    let suite = Suite::start();
    let verify = |path: &str| {
        let r = suite.get(path);
        assert_eq!(r.status, 200, "{path}");
        verify_content_type(&r.headers, "text/html;charset=UTF-8");
        verify_long_cache(&r.headers);
        assert!(r.header("etag").is_some());
        assert!(r.header("last-modified").is_none());
        let body = r.body.trim();
        let (before, after) = body.split_once("<script src=\"").expect("script tag");
        assert_eq!(
            before,
            "<!DOCTYPE html>\n<html>\n<head>\n  <meta http-equiv=\"X-UA-Compatible\" content=\"IE=edge\" />\n  <meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\" />\n  "
        );
        let (sockjs_url, rest) = after.split_once('"').expect("closing quote");
        assert!(sockjs_url.starts_with('/') || sockjs_url.starts_with("http"));
        assert_eq!(
            rest,
            "></script>\n  <script>\n    document.domain = document.domain;\n    SockJS.bootstrap_iframe();\n  </script>\n</head>\n<body>\n  <h2>Don't panic!</h2>\n  <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>\n</body>\n</html>"
        );
        verify_no_cookie(&r);
    };
    // test_simpleUrl
    verify("/echo/iframe.html");
    // test_versionedUrl
    for suffix in [
        "/iframe-a.html",
        "/iframe-.html",
        "/iframe-0.1.2.html",
        "/iframe-0.1.2abc-dirty.2144.html",
    ] {
        verify(&format!("/echo{suffix}"));
    }
    // test_queriedUrl
    for suffix in [
        "/iframe-a.html?t=1234",
        "/iframe-0.1.2.html?t=123414",
        "/iframe-0.1.2abc-dirty.2144.html?t=qweqweq123",
    ] {
        verify(&format!("/echo{suffix}"));
    }
    // test_invalidUrl
    for suffix in [
        "/iframe.htm",
        "/iframe",
        "/IFRAME.HTML",
        "/IFRAME",
        "/iframe.HTML",
        "/iframe.xml",
        "/iframe-/.html",
    ] {
        verify_404(&suite.get(&format!("/echo{suffix}")));
    }
    // test_cacheability
    let r1 = suite.get("/echo/iframe.html");
    let r2 = suite.get("/echo/iframe.html");
    let etag = r1.header("etag").expect("ETag");
    assert_eq!(Some(etag), r2.header("etag"));
    let r = suite.request("GET", "/echo/iframe.html", &[("If-None-Match", etag)], "");
    assert_eq!(r.status, 304);
    assert!(r.header("content-type").is_none());
    assert!(r.body.is_empty());
}

#[test]
fn info_test() {
    let suite = Suite::start();
    // test_basic
    let r = suite.request("GET", "/echo/info", &[("Origin", "test")], "");
    assert_eq!(r.status, 200);
    verify_content_type(&r.headers, "application/json;charset=UTF-8");
    verify_no_cookie(&r);
    verify_not_cached(&r.headers);
    verify_cors(&r.headers, Some("test"));
    let data: Value = serde_json::from_str(&r.body).expect("JSON");
    assert_eq!(data["websocket"], Value::Bool(true));
    assert!(data["cookie_needed"].is_boolean());
    assert_eq!(data["origins"], serde_json::json!(["*:*"]));
    assert!(data["entropy"].is_u64());
    // test_entropy
    let entropy = |_| {
        serde_json::from_str::<Value>(&suite.get("/echo/info").body).expect("JSON")["entropy"]
            .clone()
    };
    let (e1, e2) = (entropy(1), entropy(2));
    assert!(e1.is_u64() && e2.is_u64());
    assert_ne!(e1, e2);
    // test_options
    verify_options(&suite, "/echo/info", "OPTIONS, GET");
    // test_options_null_origin
    let r = suite.request(
        "OPTIONS",
        "/echo/info",
        &[
            ("Origin", "null"),
            ("Access-Control-Request-Method", "POST"),
        ],
        "",
    );
    assert!(r.status == 204 || r.status == 200);
    assert!(r.body.is_empty());
    assert_eq!(r.header("access-control-allow-origin"), Some("null"));
    // test_disabled_websocket
    let r = suite.get("/disabled_websocket_echo/info");
    assert_eq!(r.status, 200);
    let data: Value = serde_json::from_str(&r.body).expect("JSON");
    assert_eq!(data["websocket"], Value::Bool(false));
}

#[test]
fn session_urls() {
    let suite = Suite::start();
    let verify = |part: &str| {
        let r = suite.post(&format!("/echo{part}/xhr"), "");
        assert_eq!(r.status, 200, "{part}");
        assert_eq!(r.body, "o\n");
    };
    // test_anyValue
    let salt = exosphere_ddp::random_id();
    verify(&format!("/a/a{salt}"));
    for part in [
        format!("/_/_{salt}"),
        format!("/1/{salt}"),
        format!("/abcdefgh_i-j%20/abcdefg_i-j%20{salt}"),
    ] {
        verify(&part);
    }
    // test_invalidPaths
    for suffix in ["//", "/a./a", "/a/a.", "/./.", "/", "///"] {
        verify_404(&suite.get(&format!("/echo{suffix}/xhr")));
        verify_404(&suite.post(&format!("/echo{suffix}/xhr"), ""));
    }
    // test_ignoringServerId
    let id = exosphere_ddp::random_id();
    let r = suite.post(&format!("/echo/000/{id}/xhr"), "");
    assert_eq!((r.status, r.body.as_str()), (200, "o\n"));
    let r = suite.post(&format!("/echo/000/{id}/xhr_send"), r#"["a"]"#);
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    let r = suite.post(&format!("/echo/999/{id}/xhr"), "");
    assert_eq!((r.status, r.body.as_str()), (200, "a[\"a\"]\n"));
}

#[test]
fn protocol() {
    let suite = Suite::start();
    // test_simpleSession
    let url = suite.session("echo");
    let r = suite.post(&format!("{url}/xhr"), "");
    assert_eq!((r.status, r.body.as_str()), (200, "o\n"));
    let r = suite.post(&format!("{url}/xhr_send"), r#"["a"]"#);
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    let r = suite.post(&format!("{url}/xhr"), "");
    assert_eq!((r.status, r.body.as_str()), (200, "a[\"a\"]\n"));
    verify_404(&suite.post("/echo/000/bad_session/xhr_send", r#"["a"]"#));
    let waiting = suite.send("POST", &format!("{url}/xhr"), &[], "", "1.1", true);
    sleep(SETTLE);
    let r2 = suite.post(&format!("{url}/xhr"), "");
    assert_eq!(r2.body, "c[2010,\"Another connection still open\"]\n");
    assert_eq!(r2.status, 200);
    drop(waiting);
    // test_closeSession
    let url = suite.session("close");
    let r = suite.post(&format!("{url}/xhr"), "");
    assert_eq!((r.status, r.body.as_str()), (200, "o\n"));
    for _ in 0..2 {
        let r = suite.post(&format!("{url}/xhr"), "");
        assert_eq!((r.status, r.body.as_str()), (200, "c[3000,\"Go away!\"]\n"));
    }
}

#[test]
fn websocket_http_errors() {
    let suite = Suite::start();
    // test_httpMethod
    assert_eq!(suite.get("/echo/0/0/websocket").status, 400);
    // test_invalidConnectionHeader
    let r = suite.request(
        "GET",
        "/echo/0/0/websocket",
        &[("Upgrade", "WebSocket"), ("Connection", "close")],
        "",
    );
    assert_eq!(r.status, 400);
    // test_invalidMethod
    for headers in [
        &[("Upgrade", "WebSocket"), ("Connection", "Upgrade")][..],
        &[],
    ] {
        verify_405(&suite.request("POST", "/echo/0/0/websocket", headers, ""));
    }
}

#[test]
fn websocket() {
    let suite = Suite::start();
    let text = |ws: &mut tungstenite::WebSocket<_>| match ws.read().expect("message") {
        Message::Text(text) => text.as_str().to_owned(),
        other => panic!("expected text, got {other:?}"),
    };
    // test_transport
    let mut ws = suite.ws(&format!("{}/websocket", suite.session("echo")));
    assert_eq!(text(&mut ws), "o");
    ws.send(Message::text(r#"["a"]"#)).expect("sent");
    assert_eq!(text(&mut ws), r#"a["a"]"#);
    ws.close(None).expect("closed");
    // test_close
    let mut ws = suite.ws(&format!("{}/websocket", suite.session("close")));
    assert_eq!(text(&mut ws), "o");
    assert_eq!(text(&mut ws), r#"c[3000,"Go away!"]"#);
    assert!(
        !matches!(ws.read(), Ok(Message::Text(_))),
        "the connection closes after the close frame"
    );
    // test_headersSanity
    verify_headers_sanity(&suite, "13", "Upgrade");
    // test_empty_frame
    let mut ws = suite.ws(&format!("{}/websocket", suite.session("echo")));
    assert_eq!(text(&mut ws), "o");
    for payload in ["", "[]", r#"["a"]"#] {
        ws.send(Message::text(payload)).expect("sent");
    }
    assert_eq!(text(&mut ws), r#"a["a"]"#);
    // test_reuseSessionId
    let url = format!("{}/websocket", suite.session("echo"));
    let mut ws1 = suite.ws(&url);
    assert_eq!(text(&mut ws1), "o");
    let mut ws2 = suite.ws(&url);
    assert_eq!(text(&mut ws2), "o");
    ws1.send(Message::text(r#"["a"]"#)).expect("sent");
    assert_eq!(text(&mut ws1), r#"a["a"]"#);
    ws2.send(Message::text(r#"["b"]"#)).expect("sent");
    assert_eq!(text(&mut ws2), r#"a["b"]"#);
    ws1.close(None).expect("closed");
    ws2.close(None).expect("closed");
    let mut ws1 = suite.ws(&url);
    assert_eq!(text(&mut ws1), "o");
    ws1.send(Message::text(r#"["a"]"#)).expect("sent");
    assert_eq!(text(&mut ws1), r#"a["a"]"#);
    // test_broken_json
    let mut ws = suite.ws(&format!("{}/websocket", suite.session("echo")));
    assert_eq!(text(&mut ws), "o");
    ws.send(Message::text(r#"["a"#)).expect("sent");
    assert!(
        !matches!(ws.read(), Ok(Message::Text(_))),
        "broken JSON drops the connection"
    );
    // test_haproxy: hixie-76, the response headers written before the nonce is sent.
    let path = format!("{}/websocket", suite.session("echo"));
    let origin = format!("http://{}", suite.addr());
    let mut stream = suite.send(
        "GET",
        &path,
        &[
            ("Connection", "Upgrade"),
            ("Upgrade", "WebSocket"),
            ("Origin", &origin),
            ("Sec-WebSocket-Key1", HIXIE76_KEY1),
            ("Sec-WebSocket-Key2", HIXIE76_KEY2),
        ],
        "",
        "1.1",
        false,
    );
    let mut r = Streaming::start(stream.try_clone().expect("clone"), "GET");
    assert_eq!(r.status, 101);
    assert_eq!(
        r.header("connection").map(str::to_lowercase).as_deref(),
        Some("upgrade")
    );
    assert_eq!(
        r.header("upgrade").map(str::to_lowercase).as_deref(),
        Some("websocket")
    );
    let location = format!("ws://{}{path}", suite.addr());
    assert_eq!(r.header("sec-websocket-location"), Some(location.as_str()));
    assert_eq!(r.header("sec-websocket-origin"), Some(origin.as_str()));
    assert!(r.header("content-length").is_none());
    stream.write_all(HIXIE76_NONCE).expect("nonce sent");
    let mut answer = [0; 16];
    r.reader
        .read_exact(&mut answer)
        .expect("challenge response");
    assert_eq!(&answer, HIXIE76_ANSWER);
}

#[test]
fn hixie76_handshakes_without_origin_or_host_or_with_a_malformed_key_are_refused() {
    // §1.1 (SockJS, MAY): a handshake hixie-76 cannot answer is refused with 400 and the
    // reason, before any session exists.
    let suite = Suite::start();
    let origin = format!("http://{}", suite.addr());
    let upgrade = [("Connection", "Upgrade"), ("Upgrade", "WebSocket")];
    let keys = [
        ("Sec-WebSocket-Key1", HIXIE76_KEY1),
        ("Sec-WebSocket-Key2", HIXIE76_KEY2),
    ];
    let path = || format!("{}/websocket", suite.session("echo"));
    let refused = |response: Response, reason: &str| {
        assert_eq!(response.status, 400, "{response:?}");
        assert!(response.body.contains(reason), "{response:?}");
    };
    refused(
        suite.request("GET", &path(), &[&upgrade[..], &keys].concat(), ""),
        "needs an Origin header",
    );
    // A key without spaces stands for no number (draft-76 §5.2).
    let bad_key = [
        ("Origin", origin.as_str()),
        ("Sec-WebSocket-Key1", "12998"),
        ("Sec-WebSocket-Key2", HIXIE76_KEY2),
    ];
    refused(
        suite.request("GET", &path(), &[&upgrade[..], &bad_key].concat(), ""),
        "sec-websocket-key1: the key has no spaces",
    );
    // Suite::send always names the Host, so this request is written by hand.
    let mut stream = TcpStream::connect(suite.addr()).expect("connects");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let mut head = format!("GET {} HTTP/1.1\r\nOrigin: {origin}\r\n", path());
    for (name, value) in [&upgrade[..], &keys].concat() {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).expect("request sent");
    refused(Response::read(&mut stream, "GET"), "needs a Host header");
}

/// `Websocket.test_headersSanity` for one `Sec-WebSocket-Version` and `Connection` header:
/// a `101` with the RFC's `Sec-WebSocket-Accept` for the suite's key, no `Content-Length`.
fn verify_headers_sanity(suite: &Suite, version: &str, connection: &str) {
    let path = format!("{}/websocket", suite.session("echo"));
    let stream = suite.send(
        "GET",
        &path,
        &[
            ("Upgrade", "websocket"),
            ("Connection", connection),
            ("Sec-WebSocket-Version", version),
            ("Sec-WebSocket-Origin", "http://asd"),
            ("Sec-WebSocket-Key", "x3JJHMbDL1EzLkh9GBhXDw=="),
        ],
        "",
        "1.1",
        false,
    );
    let r = Streaming::start(stream, "GET");
    assert_eq!(r.status, 101, "version {version}, Connection: {connection}");
    assert_eq!(
        r.header("sec-websocket-accept"),
        Some("HSmrc0sMlYUkAGmm5OPpG2HaGWk=")
    );
    assert_eq!(
        r.header("connection").map(str::to_lowercase).as_deref(),
        Some("upgrade")
    );
    assert_eq!(
        r.header("upgrade").map(str::to_lowercase).as_deref(),
        Some("websocket")
    );
    assert!(r.header("content-length").is_none());
}

/// The 0.3.3 suite's `WebsocketHybi10`: clients of the hybi-07/08 drafts (Firefox 6 and 7,
/// Chrome 14 and 15) get the same WebSocket as RFC 6455 clients.
#[test]
fn websocket_hybi10() {
    let suite = Suite::start();
    let text = |ws: &mut tungstenite::WebSocket<TcpStream>| match ws.read().expect("message") {
        Message::Text(text) => text.as_str().to_owned(),
        other => panic!("expected text, got {other:?}"),
    };
    // test_transport, over a client that says version 8 (the suite's WebSocket8Client)
    let mut ws = suite.ws_draft(&format!("{}/websocket", suite.session("echo")), "8");
    assert_eq!(text(&mut ws), "o");
    ws.send(Message::text("")).expect("sent");
    ws.send(Message::text(r#"["a"]"#)).expect("sent");
    assert_eq!(text(&mut ws), r#"a["a"]"#);
    ws.close(None).expect("closed");
    // test_close
    let mut ws = suite.ws_draft(&format!("{}/websocket", suite.session("close")), "8");
    assert_eq!(text(&mut ws), "o");
    assert_eq!(text(&mut ws), r#"c[3000,"Go away!"]"#);
    assert!(
        !matches!(ws.read(), Ok(Message::Text(_))),
        "the connection closes after the close frame"
    );
    // test_headersSanity
    for version in ["7", "8", "13"] {
        verify_headers_sanity(&suite, version, "Upgrade");
    }
    // test_broken_json
    let mut ws = suite.ws_draft(&format!("{}/websocket", suite.session("echo")), "8");
    assert_eq!(text(&mut ws), "o");
    ws.send(Message::text(r#"["a"#)).expect("sent");
    assert!(
        !matches!(ws.read(), Ok(Message::Text(_))),
        "broken JSON drops the connection"
    );
    // test_firefox_602_connection_header
    verify_headers_sanity(&suite, "7", "keep-alive, Upgrade");
    // Only the drafts are let through: other versions are still refused.
    let r = suite.request(
        "GET",
        &format!("{}/websocket", suite.session("echo")),
        &[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", "6"),
            ("Sec-WebSocket-Key", "x3JJHMbDL1EzLkh9GBhXDw=="),
        ],
        "",
    );
    assert_eq!(r.status, 400);
}

/// The `WebsocketHixie76` class of earlier `sockjs-protocol.py` revisions: the WebSocket
/// tests over a hixie-76 socket (`websocket.create_connection` spoke it then).
#[test]
fn websocket_hixie76() {
    let suite = Suite::start();
    let connect = |service: &str| {
        Hixie76::connect(
            &suite.addr(),
            &format!("{}/websocket", suite.session(service)),
        )
    };
    // test_transport
    let mut ws = connect("echo");
    assert_eq!(ws.recv().as_deref(), Some("o"));
    ws.send(r#"["a"]"#);
    assert_eq!(ws.recv().as_deref(), Some(r#"a["a"]"#));
    ws.close();
    // test_close
    let mut ws = connect("close");
    assert_eq!(ws.recv().as_deref(), Some("o"));
    assert_eq!(ws.recv().as_deref(), Some(r#"c[3000,"Go away!"]"#));
    assert_eq!(
        ws.recv(),
        None,
        "the connection closes after the close frame"
    );
    // test_empty_frame
    let mut ws = connect("echo");
    assert_eq!(ws.recv().as_deref(), Some("o"));
    for payload in ["", "[]", r#"["a"]"#] {
        ws.send(payload);
    }
    assert_eq!(ws.recv().as_deref(), Some(r#"a["a"]"#));
    ws.close();
    // test_reuseSessionId
    let path = format!("{}/websocket", suite.session("echo"));
    let mut ws1 = Hixie76::connect(&suite.addr(), &path);
    assert_eq!(ws1.recv().as_deref(), Some("o"));
    let mut ws2 = Hixie76::connect(&suite.addr(), &path);
    assert_eq!(ws2.recv().as_deref(), Some("o"));
    ws1.send(r#"["a"]"#);
    assert_eq!(ws1.recv().as_deref(), Some(r#"a["a"]"#));
    ws2.send(r#"["b"]"#);
    assert_eq!(ws2.recv().as_deref(), Some(r#"a["b"]"#));
    ws1.close();
    ws2.close();
    let mut ws1 = Hixie76::connect(&suite.addr(), &path);
    assert_eq!(ws1.recv().as_deref(), Some("o"));
    ws1.send(r#"["a"]"#);
    assert_eq!(ws1.recv().as_deref(), Some(r#"a["a"]"#));
    ws1.close();
    // test_broken_json
    let mut ws = connect("echo");
    assert_eq!(ws.recv().as_deref(), Some("o"));
    ws.send(r#"["a"#);
    assert_eq!(ws.recv(), None, "broken JSON drops the connection");
}

#[test]
fn xhr_polling() {
    let suite = Suite::start();
    // test_options
    for suffix in ["/xhr", "/xhr_send"] {
        verify_options(&suite, &format!("/echo/abc/abc{suffix}"), "OPTIONS, POST");
    }
    // test_transport
    let url = suite.session("echo");
    let r = suite.request("POST", &format!("{url}/xhr"), &[("Origin", "test")], "");
    assert_eq!((r.status, r.body.as_str()), (200, "o\n"));
    verify_content_type(&r.headers, "application/javascript;charset=UTF-8");
    verify_cors(&r.headers, Some("test"));
    verify_not_cached(&r.headers);
    let r = suite.request(
        "POST",
        &format!("{url}/xhr_send"),
        &[("Origin", "test")],
        r#"["x"]"#,
    );
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    verify_content_type(&r.headers, "text/plain;charset=UTF-8");
    verify_cors(&r.headers, Some("test"));
    verify_not_cached(&r.headers);
    let r = suite.post(&format!("{url}/xhr"), "");
    assert_eq!((r.status, r.body.as_str()), (200, "a[\"x\"]\n"));
    // test_invalid_session
    verify_404(&suite.post(&format!("{}/xhr_send", suite.session("echo")), r#"["x"]"#));
    // test_invalid_json
    let url = suite.session("echo");
    assert_eq!(suite.post(&format!("{url}/xhr"), "").body, "o\n");
    let r = suite.post(&format!("{url}/xhr_send"), r#"["x"#);
    assert_eq!(r.status, 500);
    assert!(r.body.contains("Broken JSON encoding."));
    let r = suite.post(&format!("{url}/xhr_send"), "");
    assert_eq!(r.status, 500);
    assert!(r.body.contains("Payload expected."));
    let r = suite.post(&format!("{url}/xhr_send"), r#"["a"]"#);
    assert_eq!((r.status, r.body.as_str()), (204, ""));
    let r = suite.post(&format!("{url}/xhr"), "");
    assert_eq!((r.status, r.body.as_str()), (200, "a[\"a\"]\n"));
    // test_content_types
    let url = suite.session("echo");
    assert_eq!(suite.post(&format!("{url}/xhr"), "").body, "o\n");
    let types = [
        "text/plain",
        "T",
        "application/json",
        "application/xml",
        "",
        "application/json; charset=utf-8",
        "text/xml; charset=utf-8",
        "text/xml",
    ];
    for content_type in types {
        let r = suite.request(
            "POST",
            &format!("{url}/xhr_send"),
            &[("Content-Type", content_type)],
            r#"["a"]"#,
        );
        assert_eq!((r.status, r.body.as_str()), (204, ""));
    }
    let r = suite.post(&format!("{url}/xhr"), "");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        format!("a[{}]\n", vec![r#""a""#; types.len()].join(","))
    );
    // test_request_headers_cors
    let preflight = |extra: Option<&str>| {
        let mut headers = vec![
            ("Origin", "test"),
            ("Access-Control-Request-Method", "POST"),
        ];
        if let Some(requested) = extra {
            headers.push(("Access-Control-Request-Headers", requested));
        }
        let r = suite.request(
            "OPTIONS",
            &format!("{}/xhr", suite.session("echo")),
            &headers,
            "",
        );
        assert!(r.status == 204 || r.status == 200);
        verify_cors(&r.headers, Some("test"));
        r.header("access-control-allow-headers").map(str::to_owned)
    };
    assert_eq!(preflight(Some("a, b, c")).as_deref(), Some("a, b, c"));
    assert_eq!(preflight(Some("")), None);
    assert_eq!(preflight(None), None);
    // test_sending_empty_frame
    let url = suite.session("echo");
    assert_eq!(suite.post(&format!("{url}/xhr"), "").body, "o\n");
    assert_eq!(suite.post(&format!("{url}/xhr_send"), "[]").status, 204);
    assert_eq!(
        suite.post(&format!("{url}/xhr_send"), r#"["a"]"#).status,
        204
    );
    let r = suite.post(&format!("{url}/xhr"), "");
    assert_eq!((r.status, r.body.as_str()), (200, "a[\"a\"]\n"));
}

#[test]
fn xhr_streaming() {
    let suite = Suite::start();
    // test_options
    verify_options(&suite, "/echo/abc/abc/xhr_streaming", "OPTIONS, POST");
    // test_transport
    let url = suite.session("echo");
    let mut r = suite.stream(
        "POST",
        &format!("{url}/xhr_streaming"),
        &[("Origin", "test")],
    );
    assert_eq!(r.status, 200);
    verify_content_type(&r.headers, "application/javascript;charset=UTF-8");
    verify_cors(&r.headers, Some("test"));
    verify_not_cached(&r.headers);
    assert_eq!(r.chunk(), format!("{}\n", "h".repeat(2048)));
    assert_eq!(r.chunk(), "o\n");
    let sent = suite.post(&format!("{url}/xhr_send"), r#"["x"]"#);
    assert_eq!((sent.status, sent.body.as_str()), (204, ""));
    assert_eq!(r.chunk(), "a[\"x\"]\n");
    // test_response_limit
    let url = suite.session("echo");
    let mut r = suite.stream("POST", &format!("{url}/xhr_streaming"), &[]);
    assert_eq!(r.status, 200);
    assert!(!r.chunk().is_empty());
    assert_eq!(r.chunk(), "o\n");
    let message = format!("\"{}\"", "x".repeat(128));
    for _ in 0..31 {
        let sent = suite.post(&format!("{url}/xhr_send"), &format!("[{message}]"));
        assert_eq!(sent.status, 204);
        assert_eq!(r.chunk(), format!("a[{message}]\n"));
    }
    assert_eq!(r.chunk(), "", "the response ends after 4096 bytes");
}

#[test]
fn event_source() {
    let suite = Suite::start();
    // test_transport
    let url = suite.session("echo");
    let mut r = suite.stream("GET", &format!("{url}/eventsource"), &[]);
    assert_eq!(r.status, 200);
    verify_content_type(&r.headers, "text/event-stream");
    verify_not_cached(&r.headers);
    assert_eq!(r.chunk(), "\r\n");
    assert_eq!(r.chunk(), "data: o\r\n\r\n");
    let sent = suite.post(&format!("{url}/xhr_send"), r#"["x"]"#);
    assert_eq!((sent.status, sent.body.as_str()), (204, ""));
    assert_eq!(r.chunk(), "data: a[\"x\"]\r\n\r\n");
    let sent = suite.post(&format!("{url}/xhr_send"), r#"["  \u0000\n\r "]"#);
    assert_eq!((sent.status, sent.body.as_str()), (204, ""));
    assert_eq!(r.chunk(), "data: a[\"  \\u0000\\n\\r \"]\r\n\r\n");
    // test_response_limit
    let url = suite.session("echo");
    let mut r = suite.stream("GET", &format!("{url}/eventsource"), &[]);
    assert_eq!(r.status, 200);
    assert!(!r.chunk().is_empty());
    assert_eq!(r.chunk(), "data: o\r\n\r\n");
    let message = format!("\"{}\"", "x".repeat(4096));
    let sent = suite.post(&format!("{url}/xhr_send"), &format!("[{message}]"));
    assert_eq!(sent.status, 204);
    assert_eq!(r.chunk(), format!("data: a[{message}]\r\n\r\n"));
    assert_eq!(r.chunk(), "");
}

#[test]
fn html_file() {
    let suite = Suite::start();
    let head = "<!doctype html>\n<html><head>\n  <meta http-equiv=\"X-UA-Compatible\" content=\"IE=edge\" />\n  <meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\" />\n</head><body><h2>Don't panic!</h2>\n  <script>\n    document.domain = document.domain;\n    var c = parent.callback;\n    c.start();\n    function p(d) {c.message(d);};\n    window.onload = function() {c.stop();};\n  </script>";
    // test_transport
    let url = suite.session("echo");
    let mut r = suite.stream("GET", &format!("{url}/htmlfile?c=%63allback"), &[]);
    assert_eq!(r.status, 200);
    verify_content_type(&r.headers, "text/html;charset=UTF-8");
    verify_not_cached(&r.headers);
    let prelude = r.chunk();
    assert_eq!(prelude.trim(), head);
    assert!(prelude.len() > 1024);
    assert_eq!(r.chunk(), "<script>\np(\"o\");\n</script>\r\n");
    let sent = suite.post(&format!("{url}/xhr_send"), r#"["x"]"#);
    assert_eq!((sent.status, sent.body.as_str()), (204, ""));
    assert_eq!(r.chunk(), "<script>\np(\"a[\\\"x\\\"]\");\n</script>\r\n");
    // test_no_callback
    let r = suite.get("/echo/a/a/htmlfile");
    assert_eq!(r.status, 500);
    assert!(r.body.contains("\"callback\" parameter required"));
    // test_invalid_callback
    for callback in ["%20", "*", "abc(", "abc%28"] {
        let r = suite.get(&format!("/echo/a/a/htmlfile?c={callback}"));
        assert_eq!(r.status, 500);
        assert!(r.body.contains("invalid \"callback\" parameter"));
    }
    // test_response_limit
    let url = suite.session("echo");
    let mut r = suite.stream("GET", &format!("{url}/htmlfile?c=callback"), &[]);
    assert_eq!(r.status, 200);
    assert!(!r.chunk().is_empty());
    assert_eq!(r.chunk(), "<script>\np(\"o\");\n</script>\r\n");
    let message = "x".repeat(4096);
    let sent = suite.post(&format!("{url}/xhr_send"), &format!("[\"{message}\"]"));
    assert_eq!(sent.status, 204);
    assert_eq!(
        r.chunk(),
        format!("<script>\np(\"a[\\\"{message}\\\"]\");\n</script>\r\n")
    );
    assert_eq!(r.chunk(), "");
}

#[test]
fn json_polling() {
    let suite = Suite::start();
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    // test_transport
    let url = suite.session("echo");
    let r = suite.get(&format!("{url}/jsonp?c=%63allback"));
    assert_eq!(r.status, 200);
    verify_content_type(&r.headers, "application/javascript;charset=UTF-8");
    verify_not_cached(&r.headers);
    assert_eq!(r.body, "/**/callback(\"o\");\r\n");
    let r = suite.request(
        "POST",
        &format!("{url}/jsonp_send"),
        &form,
        "d=%5B%22x%22%5D",
    );
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    verify_content_type(&r.headers, "text/plain;charset=UTF-8");
    verify_not_cached(&r.headers);
    let r = suite.get(&format!("{url}/jsonp?c=%63allback"));
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "/**/callback(\"a[\\\"x\\\"]\");\r\n")
    );
    // test_no_callback
    let r = suite.get("/echo/a/a/jsonp");
    assert_eq!(r.status, 500);
    assert!(r.body.contains("\"callback\" parameter required"));
    // test_invalid_callback
    for callback in ["%20", "*", "abc(", "abc%28"] {
        let r = suite.get(&format!("/echo/a/a/jsonp?c={callback}"));
        assert_eq!(r.status, 500);
        assert!(r.body.contains("invalid \"callback\" parameter"));
    }
    // test_invalid_json
    let url = suite.session("echo");
    assert_eq!(
        suite.get(&format!("{url}/jsonp?c=x")).body,
        "/**/x(\"o\");\r\n"
    );
    let r = suite.request("POST", &format!("{url}/jsonp_send"), &form, "d=%5B%22x");
    assert_eq!(r.status, 500);
    assert!(r.body.contains("Broken JSON encoding."));
    for data in ["", "d=", "p=p"] {
        let r = suite.request("POST", &format!("{url}/jsonp_send"), &form, data);
        assert_eq!(r.status, 500, "{data:?}");
        assert!(r.body.contains("Payload expected."));
    }
    let r = suite.request(
        "POST",
        &format!("{url}/jsonp_send"),
        &form,
        "d=%5B%22b%22%5D",
    );
    assert_eq!(r.body, "ok");
    let r = suite.get(&format!("{url}/jsonp?c=x"));
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "/**/x(\"a[\\\"b\\\"]\");\r\n")
    );
    // test_content_types
    let url = suite.session("echo");
    assert_eq!(
        suite.get(&format!("{url}/jsonp?c=x")).body,
        "/**/x(\"o\");\r\n"
    );
    let r = suite.request(
        "POST",
        &format!("{url}/jsonp_send"),
        &form,
        "d=%5B%22abc%22%5D",
    );
    assert_eq!(r.body, "ok");
    let r = suite.request(
        "POST",
        &format!("{url}/jsonp_send"),
        &[("Content-Type", "text/plain")],
        r#"["%61bc"]"#,
    );
    assert_eq!(r.body, "ok");
    let r = suite.get(&format!("{url}/jsonp?c=x"));
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "/**/x(\"a[\\\"abc\\\",\\\"%61bc\\\"]\");\r\n")
    );
    // test_close
    let url = suite.session("close");
    assert_eq!(
        suite.get(&format!("{url}/jsonp?c=x")).body,
        "/**/x(\"o\");\r\n"
    );
    for _ in 0..2 {
        assert_eq!(
            suite.get(&format!("{url}/jsonp?c=x")).body,
            "/**/x(\"c[3000,\\\"Go away!\\\"]\");\r\n"
        );
    }
    // test_sending_empty_frame
    let url = suite.session("echo");
    assert_eq!(
        suite.get(&format!("{url}/jsonp?c=x")).body,
        "/**/x(\"o\");\r\n"
    );
    assert_eq!(
        suite
            .request("POST", &format!("{url}/jsonp_send"), &form, "d=%5B%5D")
            .body,
        "ok"
    );
    assert_eq!(
        suite
            .request(
                "POST",
                &format!("{url}/jsonp_send"),
                &form,
                "d=%5B%22x%22%5D"
            )
            .body,
        "ok"
    );
    let r = suite.get(&format!("{url}/jsonp?c=x"));
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "/**/x(\"a[\\\"x\\\"]\");\r\n")
    );
}

#[test]
fn jsessionid_cookie() {
    let suite = Suite::start();
    // test_basic
    let r = suite.get("/cookie_needed_echo/info");
    assert_eq!(r.status, 200);
    verify_no_cookie(&r);
    let data: Value = serde_json::from_str(&r.body).expect("JSON");
    assert_eq!(data["cookie_needed"], Value::Bool(true));
    // test_xhr
    let r = suite.post(&format!("{}/xhr", suite.session("cookie_needed_echo")), "");
    assert_eq!((r.status, r.body.as_str()), (200, "o\n"));
    verify_cookie(&r.headers, "dummy");
    let url = suite.session("cookie_needed_echo");
    let r = suite.request(
        "POST",
        &format!("{url}/xhr"),
        &[("Cookie", "JSESSIONID=abcdef")],
        "",
    );
    assert_eq!((r.status, r.body.as_str()), (200, "o\n"));
    verify_cookie(&r.headers, "abcdef");
    // test_xhr_streaming
    let r = suite.stream(
        "POST",
        &format!("{}/xhr_streaming", suite.session("cookie_needed_echo")),
        &[],
    );
    assert_eq!(r.status, 200);
    verify_cookie(&r.headers, "dummy");
    // test_eventsource
    let r = suite.stream(
        "GET",
        &format!("{}/eventsource", suite.session("cookie_needed_echo")),
        &[],
    );
    assert_eq!(r.status, 200);
    verify_cookie(&r.headers, "dummy");
    // test_htmlfile
    let r = suite.stream(
        "GET",
        &format!(
            "{}/htmlfile?c=%63allback",
            suite.session("cookie_needed_echo")
        ),
        &[],
    );
    assert_eq!(r.status, 200);
    verify_cookie(&r.headers, "dummy");
    // test_jsonp
    let url = suite.session("cookie_needed_echo");
    let r = suite.get(&format!("{url}/jsonp?c=%63allback"));
    assert_eq!(r.status, 200);
    verify_cookie(&r.headers, "dummy");
    assert_eq!(r.body, "/**/callback(\"o\");\r\n");
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let r = suite.request(
        "POST",
        &format!("{url}/jsonp_send"),
        &form,
        "d=%5B%22x%22%5D",
    );
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    verify_cookie(&r.headers, "dummy");
}

#[test]
fn raw_websocket() {
    let suite = Suite::start();
    // test_transport
    let mut ws = suite.ws("/echo/websocket");
    ws.send(Message::text("Hello world!\u{ffff}"))
        .expect("sent");
    assert!(matches!(ws.read(), Ok(Message::Text(t)) if t.as_str() == "Hello world!\u{ffff}"));
    ws.close(None).expect("closed");
    // test_close
    let mut ws = suite.ws("/close/websocket");
    match ws.read() {
        Ok(Message::Close(Some(frame))) => assert_eq!(frame.reason.as_str(), "Go away!"),
        other => panic!("expected the close frame, got {other:?}"),
    }
}

/// The characters the suite's `escapable_by_server` pattern matches, from U+00FF up.
fn server_killer_string() -> String {
    (0xff_u32..=0xffff)
        .filter_map(char::from_u32)
        .filter(|c| matches!(c, '\u{200c}'..='\u{200f}' | '\u{2028}'..='\u{202f}' | '\u{2060}'..='\u{206f}' | '\u{fff0}'..='\u{ffff}'))
        .collect()
}

#[test]
fn json_encoding() {
    let suite = Suite::start();
    // test_xhr_server_encodes
    let url = suite.session("echo");
    assert_eq!(suite.post(&format!("{url}/xhr"), "").body, "o\n");
    let killer = server_killer_string();
    let escaped: String = format!(
        "\"{}\"",
        killer
            .chars()
            .map(|c| format!("\\u{:04x}", u32::from(c)))
            .collect::<String>()
    );
    let r = suite.post(&format!("{url}/xhr_send"), &format!("[\"{killer}\"]"));
    assert_eq!(r.status, 204);
    let r = suite.post(&format!("{url}/xhr"), "");
    assert_eq!(r.status, 200);
    let body = r.body.trim();
    assert_eq!(&body[2..body.len() - 1], escaped);
    // test_xhr_server_decodes: every character a client must escape, sent escaped.
    let url = suite.session("echo");
    assert_eq!(suite.post(&format!("{url}/xhr"), "").body, "o\n");
    let client_escaped: String = (0u32..=0xffff)
        .filter(|&i| client_must_escape(i))
        .map(|i| format!("\\u{i:04x}"))
        .collect();
    let r = suite.post(
        &format!("{url}/xhr_send"),
        &format!("[\"{client_escaped}\"]"),
    );
    assert_eq!(r.status, 204);
    let r = suite.post(&format!("{url}/xhr"), "");
    assert_eq!(r.status, 200);
    let body = r.body.trim();
    let received: String = serde_json::from_str(&body[2..body.len() - 1]).expect("JSON string");
    let sent: String = serde_json::from_str(&format!("\"{client_escaped}\"")).expect("JSON string");
    assert_eq!(received, sent);
}

/// The suite's `escapable_by_client` ranges, without the surrogates (U+D800..U+DFFF are
/// not in the pattern either).
fn client_must_escape(i: u32) -> bool {
    const RANGES: &[(u32, u32)] = &[
        (0x22, 0x22),
        (0x5c, 0x5c),
        (0x00, 0x1f),
        (0x7f, 0x9f),
        (0xad, 0xad),
        (0x600, 0x604),
        (0x70f, 0x70f),
        (0x17b4, 0x17b5),
        (0x2000, 0x20ff),
        (0xfeff, 0xfeff),
        (0xfff0, 0xffff),
        (0x300, 0x333),
        (0x33d, 0x346),
        (0x34a, 0x34c),
        (0x350, 0x352),
        (0x357, 0x358),
        (0x35c, 0x362),
        (0x374, 0x374),
        (0x37e, 0x37e),
        (0x387, 0x387),
        (0x591, 0x5af),
        (0x5c4, 0x5c4),
        (0x610, 0x617),
        (0x653, 0x654),
        (0x657, 0x65b),
        (0x65d, 0x65e),
        (0x6df, 0x6e2),
        (0x6eb, 0x6ec),
        (0x730, 0x730),
        (0x732, 0x733),
        (0x735, 0x736),
        (0x73a, 0x73a),
        (0x73d, 0x73d),
        (0x73f, 0x741),
        (0x743, 0x743),
        (0x745, 0x745),
        (0x747, 0x747),
        (0x7eb, 0x7f1),
        (0x951, 0x951),
        (0x958, 0x95f),
        (0x9dc, 0x9dd),
        (0x9df, 0x9df),
        (0xa33, 0xa33),
        (0xa36, 0xa36),
        (0xa59, 0xa5b),
        (0xa5e, 0xa5e),
        (0xb5c, 0xb5d),
        (0xe38, 0xe39),
        (0xf43, 0xf43),
        (0xf4d, 0xf4d),
        (0xf52, 0xf52),
        (0xf57, 0xf57),
        (0xf5c, 0xf5c),
        (0xf69, 0xf69),
        (0xf72, 0xf76),
        (0xf78, 0xf78),
        (0xf80, 0xf83),
        (0xf93, 0xf93),
        (0xf9d, 0xf9d),
        (0xfa2, 0xfa2),
        (0xfa7, 0xfa7),
        (0xfac, 0xfac),
        (0xfb9, 0xfb9),
        (0x1939, 0x193a),
        (0x1a17, 0x1a17),
        (0x1b6b, 0x1b6b),
        (0x1cda, 0x1cdb),
        (0x1dc0, 0x1dcf),
        (0x1dfc, 0x1dfc),
        (0x1dfe, 0x1dfe),
        (0x1f71, 0x1f71),
        (0x1f73, 0x1f73),
        (0x1f75, 0x1f75),
        (0x1f77, 0x1f77),
        (0x1f79, 0x1f79),
        (0x1f7b, 0x1f7b),
        (0x1f7d, 0x1f7d),
        (0x1fbb, 0x1fbb),
        (0x1fbe, 0x1fbe),
        (0x1fc9, 0x1fc9),
        (0x1fcb, 0x1fcb),
        (0x1fd3, 0x1fd3),
        (0x1fdb, 0x1fdb),
        (0x1fe3, 0x1fe3),
        (0x1feb, 0x1feb),
        (0x1fee, 0x1fef),
        (0x1ff9, 0x1ff9),
        (0x1ffb, 0x1ffb),
        (0x1ffd, 0x1ffd),
        (0x2126, 0x2126),
        (0x212a, 0x212b),
        (0x2329, 0x232a),
        (0x2adc, 0x2adc),
        (0x302b, 0x302c),
        (0xaab2, 0xaab3),
        (0xf900, 0xfa0d),
        (0xfa10, 0xfa10),
        (0xfa12, 0xfa12),
        (0xfa15, 0xfa1e),
        (0xfa20, 0xfa20),
        (0xfa22, 0xfa22),
        (0xfa25, 0xfa26),
        (0xfa2a, 0xfa2d),
        (0xfa30, 0xfa6d),
        (0xfa70, 0xfad9),
        (0xfb1d, 0xfb1d),
        (0xfb1f, 0xfb1f),
        (0xfb2a, 0xfb36),
        (0xfb38, 0xfb3c),
        (0xfb3e, 0xfb3e),
        (0xfb40, 0xfb41),
        (0xfb43, 0xfb44),
        (0xfb46, 0xfb4e),
    ];
    RANGES.iter().any(|&(low, high)| (low..=high).contains(&i))
}

#[test]
fn handling_close() {
    let suite = Suite::start();
    // test_close_frame
    let url = suite.session("close");
    let mut r1 = suite.stream("POST", &format!("{url}/xhr_streaming"), &[]);
    r1.chunk();
    assert_eq!(r1.chunk(), "o\n");
    assert_eq!(r1.chunk(), "c[3000,\"Go away!\"]\n");
    let mut r2 = suite.stream("POST", &format!("{url}/xhr_streaming"), &[]);
    r2.chunk();
    assert_eq!(r2.chunk(), "c[3000,\"Go away!\"]\n");
    assert_eq!(r1.chunk(), "");
    assert_eq!(r2.chunk(), "");
    // test_close_request
    let url = suite.session("echo");
    let mut r1 = suite.stream("POST", &format!("{url}/xhr_streaming"), &[]);
    r1.chunk();
    assert_eq!(r1.chunk(), "o\n");
    let mut r2 = suite.stream("POST", &format!("{url}/xhr_streaming"), &[]);
    r2.chunk();
    assert_eq!(r2.chunk(), "c[2010,\"Another connection still open\"]\n");
    assert_eq!(r2.chunk(), "");
    drop(r1);
    // test_abort_xhr_streaming
    let url = suite.session("echo");
    let mut r1 = suite.stream("POST", &format!("{url}/xhr_streaming"), &[]);
    r1.chunk();
    assert_eq!(r1.chunk(), "o\n");
    let mut r2 = suite.stream("POST", &format!("{url}/xhr_streaming"), &[]);
    r2.chunk();
    assert_eq!(r2.chunk(), "c[2010,\"Another connection still open\"]\n");
    assert_eq!(r2.chunk(), "");
    drop(r1);
    sleep(SETTLE);
    let mut r3 = suite.stream("POST", &format!("{url}/xhr_streaming"), &[]);
    r3.chunk();
    let third = r3.chunk();
    assert!(
        third == "o\n" || third == "c[1002,\"Connection interrupted\"]\n",
        "{third:?}"
    );
    // test_abort_xhr_polling
    let url = suite.session("echo");
    assert_eq!(suite.post(&format!("{url}/xhr"), "").body, "o\n");
    let waiting = suite.send("POST", &format!("{url}/xhr"), &[], "", "1.1", true);
    sleep(SETTLE);
    let r2 = suite.post(&format!("{url}/xhr"), "");
    assert_eq!(r2.body, "c[2010,\"Another connection still open\"]\n");
    drop(waiting);
    sleep(SETTLE);
    let r3 = suite.post(&format!("{url}/xhr"), "");
    assert!(
        r3.body == "o\n" || r3.body == "c[1002,\"Connection interrupted\"]\n",
        "{:?}",
        r3.body
    );
}

#[test]
fn http10() {
    let suite = Suite::start();
    // test_synchronous
    let stream = suite.send(
        "GET",
        "/echo",
        &[("Connection", "Keep-Alive")],
        "",
        "1.0",
        false,
    );
    let mut r = Streaming::start(stream, "GET");
    assert_eq!(r.status, 200);
    assert!(r.http == "1.0" || r.http == "1.1");
    assert!(r.header("transfer-encoding").is_none());
    match r.header("content-length") {
        None => {
            assert_eq!(
                r.header("connection").map(str::to_lowercase).as_deref(),
                Some("close")
            );
            assert_eq!(r.chunk(), "Welcome to SockJS!\n");
            assert!(r.closed());
        }
        Some(length) => {
            assert_eq!(length, "19");
            let connection = r.header("connection").unwrap_or_default().to_lowercase();
            assert_eq!(r.exact(19), "Welcome to SockJS!\n");
            if connection == "close" || connection.is_empty() {
                assert!(r.closed());
            } else {
                assert_eq!(connection, "keep-alive");
                // "We should be able to issue another request on the same connection."
                let again = format!(
                    "GET /echo HTTP/1.0\r\nHost: {}\r\nConnection: Keep-Alive\r\n\r\n",
                    suite.addr()
                );
                let mut stream = r.reader.into_inner();
                stream.write_all(again.as_bytes()).expect("second request");
                assert_eq!(Streaming::start(stream, "GET").status, 200);
            }
        }
    }
    // test_streaming
    let url = suite.session("close");
    let stream = suite.send(
        "POST",
        &format!("{url}/xhr_streaming"),
        &[("Connection", "Keep-Alive")],
        "",
        "1.0",
        false,
    );
    let mut r = Streaming::start(stream, "POST");
    assert_eq!(r.status, 200);
    assert!(r.header("transfer-encoding").is_none());
    assert!(r.header("content-length").is_none());
    assert_eq!(&r.exact(2049)[..1], "h");
    assert_eq!(r.exact(2), "o\n");
    assert_eq!(r.exact(19), "c[3000,\"Go away!\"]\n");
    assert!(r.closed());
}

#[test]
fn http11() {
    let suite = Suite::start();
    // test_synchronous
    let stream = suite.send(
        "GET",
        "/echo",
        &[("Connection", "Keep-Alive")],
        "",
        "1.1",
        false,
    );
    let mut writer = stream.try_clone().expect("clone");
    let mut r = Streaming::start(stream, "GET");
    assert_eq!(r.http, "1.1");
    let connection = r.header("connection").unwrap_or_default().to_lowercase();
    assert!(connection == "keep-alive" || connection.is_empty());
    if r.header("content-length").is_some() {
        assert_eq!(r.header("content-length"), Some("19"));
        assert!(r.header("transfer-encoding").is_none());
        assert_eq!(r.chunk(), "Welcome to SockJS!\n");
    } else {
        assert_eq!(
            r.header("transfer-encoding")
                .map(str::to_lowercase)
                .as_deref(),
            Some("chunked")
        );
        assert_eq!(r.chunk(), "Welcome to SockJS!\n");
        assert_eq!(r.chunk(), "");
    }
    let again = format!(
        "GET /echo HTTP/1.1\r\nHost: {}\r\nConnection: Keep-Alive\r\n\r\n",
        suite.addr()
    );
    writer.write_all(again.as_bytes()).expect("second request");
    let second = Streaming::start(r.reader.into_inner(), "GET");
    assert_eq!(second.status, 200);
    // test_streaming
    let url = suite.session("close");
    let stream = suite.send(
        "POST",
        &format!("{url}/xhr_streaming"),
        &[("Connection", "Keep-Alive")],
        "",
        "1.1",
        false,
    );
    let mut r = Streaming::start(stream, "POST");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("transfer-encoding")
            .map(str::to_lowercase)
            .as_deref(),
        Some("chunked")
    );
    assert!(r.header("content-length").is_none());
    assert_eq!(&r.chunk()[..1], "h");
    assert_eq!(r.chunk(), "o\n");
    assert_eq!(r.chunk(), "c[3000,\"Go away!\"]\n");
    assert_eq!(r.chunk(), "");
}
