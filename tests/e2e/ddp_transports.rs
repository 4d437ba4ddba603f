//! DDP through every door of the real binary (spec §1.1, §1.2): the raw WebSocket at
//! `/websocket`, and SockJS at `/sockjs` over its WebSocket (RFC 6455 and hixie-76) and
//! XHR-polling transports,
//! with clients proposing each DDP version (`1`, `pre2`, `pre1`), the `failed` retry,
//! heartbeats per version, and the SockJS and shutdown limits of the binary.
//!
//! The client here is written for the tests, blocking, independent of the server's code.

use std::collections::VecDeque;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::{Hixie76, PATIENCE, Server, http_get, serve_fixture};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::stream::MaybeTlsStream;
use tokio_tungstenite::tungstenite::{self, Message, WebSocket};

/// How a test client reaches DDP.
#[derive(Debug, Clone, Copy)]
enum Transport {
    /// `ws://…/websocket`, as the `meteor` tool.
    Raw,
    /// `ws://…/sockjs/<server>/<session>/websocket`, SockJS framing.
    SockJsWebSocket,
    /// The same URL, over a hixie-76 (draft-76) WebSocket.
    SockJsHixie76,
    /// `POST …/sockjs/<server>/<session>/xhr` and `xhr_send`.
    XhrPolling,
}

const TRANSPORTS: [Transport; 4] = [
    Transport::Raw,
    Transport::SockJsWebSocket,
    Transport::SockJsHixie76,
    Transport::XhrPolling,
];

/// One DDP connection over any transport.
enum Conn {
    WebSocket {
        socket: Box<WebSocket<MaybeTlsStream<TcpStream>>>,
        framed: bool,
        received: VecDeque<Value>,
    },
    Hixie76 {
        socket: Box<Hixie76>,
        received: VecDeque<Value>,
    },
    Polling {
        url: String,
        agent: ureq::Agent,
        received: VecDeque<Value>,
        closed: bool,
    },
}

impl Conn {
    fn open(server: &Server, transport: Transport) -> Conn {
        let session = format!("{}/sockjs/000/{}", server.http, exosphere_ddp::random_id());
        match transport {
            Transport::Raw => Self::websocket(&server.ws, false),
            Transport::SockJsWebSocket => {
                let mut conn = Self::websocket(
                    &format!("{}/websocket", session.replace("http", "ws")),
                    true,
                );
                if let Conn::WebSocket { socket, .. } = &mut conn {
                    assert!(matches!(socket.read(), Ok(Message::Text(t)) if t.as_str() == "o"));
                }
                conn
            }
            Transport::SockJsHixie76 => {
                let addr = server.http.trim_start_matches("http://");
                let path = session.trim_start_matches(&server.http);
                let mut socket = Box::new(Hixie76::connect(addr, &format!("{path}/websocket")));
                assert_eq!(socket.recv().as_deref(), Some("o"));
                Conn::Hixie76 {
                    socket,
                    received: VecDeque::new(),
                }
            }
            Transport::XhrPolling => {
                let agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(PATIENCE))
                    .build()
                    .new_agent();
                let mut response = agent
                    .post(format!("{session}/xhr"))
                    .send_empty()
                    .expect("poll");
                assert_eq!(response.body_mut().read_to_string().expect("body"), "o\n");
                Conn::Polling {
                    url: session,
                    agent,
                    received: VecDeque::new(),
                    closed: false,
                }
            }
        }
    }

    fn websocket(url: &str, framed: bool) -> Conn {
        let (socket, _) = tungstenite::connect(url).expect("WebSocket connects");
        if let MaybeTlsStream::Plain(tcp) = socket.get_ref() {
            tcp.set_read_timeout(Some(PATIENCE)).expect("read timeout");
        }
        Conn::WebSocket {
            socket: Box::new(socket),
            framed,
            received: VecDeque::new(),
        }
    }

    fn send(&mut self, message: &Value) {
        let text = message.to_string();
        match self {
            Conn::WebSocket { socket, framed, .. } => {
                let payload = if *framed {
                    json!([text]).to_string()
                } else {
                    text
                };
                socket.send(Message::text(payload)).expect("sent");
            }
            Conn::Hixie76 { socket, .. } => socket.send(&json!([text]).to_string()),
            Conn::Polling { url, agent, .. } => {
                let response = agent
                    .post(format!("{url}/xhr_send"))
                    .send(json!([text]).to_string())
                    .expect("xhr_send");
                assert_eq!(response.status().as_u16(), 204);
            }
        }
    }

    /// The next DDP message, or `None` once the server closed the connection.
    fn recv(&mut self) -> Option<Value> {
        loop {
            match self {
                Conn::WebSocket { received, .. }
                | Conn::Hixie76 { received, .. }
                | Conn::Polling { received, .. } => {
                    if let Some(message) = received.pop_front() {
                        return Some(message);
                    }
                }
            }
            match self {
                Conn::WebSocket {
                    socket,
                    framed,
                    received,
                } => match socket.read() {
                    Ok(Message::Text(text)) if !*framed => {
                        received.push_back(serde_json::from_str(text.as_str()).expect("JSON"));
                    }
                    Ok(Message::Text(text)) => {
                        if !sockjs_frame(text.as_str(), received) {
                            return None;
                        }
                    }
                    Ok(Message::Close(_)) | Err(_) => return None,
                    Ok(_) => {}
                },
                Conn::Hixie76 { socket, received } => match socket.recv() {
                    Some(frame) if sockjs_frame(&frame, received) => {}
                    _ => return None,
                },
                Conn::Polling {
                    url,
                    agent,
                    received,
                    closed,
                } => {
                    if *closed {
                        return None;
                    }
                    let mut response = agent.post(format!("{url}/xhr")).send_empty().expect("poll");
                    let body = response.body_mut().read_to_string().expect("body");
                    *closed = !sockjs_frame(body.trim_end(), received);
                }
            }
        }
    }

    /// The next message that is not a server `ping` (answered like the `meteor` tool).
    fn recv_answering_pings(&mut self) -> Option<Value> {
        loop {
            let message = self.recv()?;
            if message["msg"] != "ping" {
                return Some(message);
            }
            self.send(&json!({"msg": "pong"}));
        }
    }

    /// Connects with `version` and `support`; the first answer (`connected` or `failed`).
    fn handshake(&mut self, version: &str, support: &[&str]) -> Value {
        self.send(&json!({"msg": "connect", "version": version, "support": support}));
        self.recv().expect("an answer to connect")
    }

    /// Calls `method` and returns its `result` message (after checking `updated` came).
    fn call(&mut self, id: &str, method: &str, params: Value) -> Value {
        self.send(&json!({"msg": "method", "id": id, "method": method, "params": params}));
        let (mut result, mut updated) = (None, false);
        while result.is_none() || !updated {
            let message = self.recv_answering_pings().expect("the session stays open");
            match message["msg"].as_str() {
                Some("result") if message["id"] == id => result = Some(message),
                Some("updated") => updated = true,
                _ => {}
            }
        }
        result.expect("a result")
    }
}

/// Decodes one SockJS frame into `received`; `false` for a close frame.
fn sockjs_frame(frame: &str, received: &mut VecDeque<Value>) -> bool {
    match frame.split_at(1) {
        ("o" | "h", _) => true,
        ("a", list) => {
            let messages: Vec<String> =
                serde_json::from_str(list).expect("a JSON array of strings");
            received.extend(
                messages
                    .iter()
                    .map(|m| serde_json::from_str::<Value>(m).expect("DDP JSON")),
            );
            true
        }
        ("c", _) => false,
        _ => panic!("unexpected SockJS frame {frame:?}"),
    }
}

/// A client that follows `failed` like Meteor's: it re-dials proposing the suggested
/// version, and returns the version of the session it got.
fn connect_like_meteor(
    server: &Server,
    transport: Transport,
    mut version: String,
    support: &[&str],
) -> (Conn, String, u32) {
    for attempt in 1..=3 {
        let mut conn = Conn::open(server, transport);
        let answer = conn.handshake(&version, support);
        match answer["msg"].as_str() {
            Some("connected") => return (conn, version, attempt),
            Some("failed") => {
                version = answer["version"]
                    .as_str()
                    .expect("a suggested version")
                    .to_owned();
                assert_eq!(conn.recv(), None, "§1.2: `failed` closes the connection");
            }
            _ => panic!("unexpected answer to connect: {answer}"),
        }
    }
    panic!("no session after three attempts");
}

#[test]
fn every_version_is_served_over_every_transport() {
    let (_dir, _data, server) = serve_fixture();
    let cases: [(&str, &[&str]); 3] = [
        ("1", &["1", "pre2", "pre1"]),
        ("pre2", &["pre2", "pre1"]),
        ("pre1", &["pre1"]),
    ];
    for transport in TRANSPORTS {
        for (version, support) in cases {
            let (mut conn, got, attempts) =
                connect_like_meteor(&server, transport, version.to_owned(), support);
            assert_eq!((got.as_str(), attempts), (version, 1), "{transport:?}");
            // The package server answers: one sync page (spec §3.1) and the `changes` publication.
            let page = conn.call("s", "syncNewPackageData", json!([{}, {}]));
            assert!(
                page["result"]["collections"]["packages"].is_array(),
                "{transport:?} {version}: {page}"
            );
            conn.send(&json!({"msg": "sub", "id": "c", "name": "changes", "params": []}));
            let ready = loop {
                let message = conn.recv_answering_pings().expect("open");
                if message["msg"] == "ready" {
                    break message;
                }
            };
            assert_eq!(ready["subs"], json!(["c"]), "{transport:?} {version}");
            // Heartbeats: answered under 1 and pre2, a bad request under pre1 (spec §1.2).
            conn.send(&json!({"msg": "ping", "id": "p"}));
            let answer = conn.recv_answering_pings().expect("open");
            if version == "pre1" {
                assert_eq!(answer["msg"], "error", "{transport:?}: {answer}");
            } else {
                assert_eq!(
                    answer,
                    json!({"msg": "pong", "id": "p"}),
                    "{transport:?} {version}"
                );
            }
        }
    }
}

#[test]
fn failed_makes_meteor_like_clients_retry_with_the_suggested_version() {
    let (_dir, _data, server) = serve_fixture();
    for transport in TRANSPORTS {
        // A client that prefers `1` but proposes `pre2` first is told to use `1`.
        let (mut conn, version, attempts) =
            connect_like_meteor(&server, transport, "pre2".into(), &["1", "pre2"]);
        assert_eq!((version.as_str(), attempts), ("1", 2), "{transport:?}");
        assert!(conn.call("1", "nope", json!([]))["error"]["error"] == 404);
        // A client from the future that also speaks pre1 gets pre1.
        let (_, version, attempts) =
            connect_like_meteor(&server, transport, "2".into(), &["2", "pre1"]);
        assert_eq!((version.as_str(), attempts), ("pre1", 2), "{transport:?}");
    }
}

#[test]
fn the_server_pings_clients_of_1_and_pre2_but_never_pre1_clients() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(
        &dir.path().join("data"),
        &["--ping-interval", "200ms", "--ping-timeout", "30s"],
    );
    for transport in [Transport::Raw, Transport::XhrPolling] {
        for (version, support) in [("1", &["1"][..]), ("pre2", &["pre2"])] {
            let mut conn = Conn::open(&server, transport);
            assert_eq!(conn.handshake(version, support)["msg"], "connected");
            assert_eq!(
                conn.recv(),
                Some(json!({"msg": "ping"})),
                "{transport:?} {version}"
            );
        }
        let mut conn = Conn::open(&server, transport);
        assert_eq!(conn.handshake("pre1", &["pre1"])["msg"], "connected");
        // Five ping intervals of silence, then a call: nothing but its answer arrives.
        std::thread::sleep(Duration::from_secs(1));
        conn.send(&json!({"msg": "method", "id": "m", "method": "nope", "params": []}));
        for _ in 0..2 {
            let message = conn.recv().expect("open");
            assert!(
                message["msg"] == "updated" || message["msg"] == "result",
                "{transport:?}: {message}"
            );
        }
    }
}

/// Reads `sessions` from `/healthz` until it equals `expected`.
fn wait_for_sessions(server: &Server, expected: u64) {
    wait_for_health(server, |health| health["sessions"] == expected);
}

/// Waits (at most [`PATIENCE`]) until `/healthz` satisfies `done`.
fn wait_for_health(server: &Server, done: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let health = health(server);
        if done(&health) {
            return;
        }
        assert!(Instant::now() < deadline, "never reached: {health}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_polling_client_that_never_comes_back_is_dropped_after_the_disconnect_delay() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(
        &dir.path().join("data"),
        &["--sockjs-disconnect-delay", "500ms"],
    );
    let mut conn = Conn::open(&server, Transport::XhrPolling);
    assert_eq!(conn.handshake("1", &["1"])["msg"], "connected");
    wait_for_sessions(&server, 1);
    // It asks for a page and a publication, and never polls for them.
    conn.send(
        &json!({"msg": "method", "id": "1", "method": "syncNewPackageData", "params": [{}, {}]}),
    );
    conn.send(&json!({"msg": "sub", "id": "c", "name": "changes", "params": []}));
    wait_for_sessions(&server, 0);
    let Conn::Polling { url, agent, .. } = conn else {
        unreachable!()
    };
    let response = agent
        .post(format!("{url}/xhr_send"))
        .send("[\"{}\"]")
        .expect("xhr_send");
    assert_eq!(response.status().as_u16(), 404, "the session is gone");
}

#[test]
fn the_session_limit_covers_sockjs_too() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(&dir.path().join("data"), &["--max-sessions", "1"]);
    let mut first = Conn::open(&server, Transport::XhrPolling);
    assert_eq!(first.handshake("1", &["1"])["msg"], "connected");
    let refused = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent()
        .post(format!(
            "{}/sockjs/000/{}/xhr",
            server.http,
            exosphere_ddp::random_id()
        ))
        .send_empty()
        .expect("answered");
    assert_eq!(refused.status().as_u16(), 503);
    match tungstenite::connect(&server.ws) {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status().as_u16(), 503),
        other => panic!("expected 503, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn sigterm_closes_sessions_cleanly_and_the_server_exits() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut server = Server::start(&dir.path().join("data"), &["--shutdown-grace", "5s"]);
    let mut raw = Conn::open(&server, Transport::Raw);
    assert_eq!(raw.handshake("1", &["1"])["msg"], "connected");
    let mut polling = Conn::open(&server, Transport::XhrPolling);
    assert_eq!(polling.handshake("1", &["1"])["msg"], "connected");
    // A browser keeps one poll waiting at all times; the close frame arrives on it.
    let waiting = std::thread::spawn(move || polling.recv());
    std::thread::sleep(Duration::from_millis(250));
    server.signal_terminate();
    let Conn::WebSocket { mut socket, .. } = raw else {
        unreachable!()
    };
    match socket.read() {
        Ok(Message::Close(Some(frame))) => assert_eq!(u16::from(frame.code), 1001),
        other => panic!("expected a close frame, got {other:?}"),
    }
    let last = waiting.join().expect("polling thread");
    assert_eq!(last, None, "the SockJS session gets its close frame");
    assert!(server.wait_exit(PATIENCE).success(), "a clean exit");
}

/// The outbound budget the stalled-client tests run with, as given on the command line:
/// above one full sync page of the fixture (up to about 1 MB at 500 records), far below
/// what 200 pages would take.
const BUDGET_FLAG: &str = "2000000";

/// [`BUDGET_FLAG`] as a number, to compare with `/healthz`.
const BUDGET: u64 = match u64::from_str_radix(BUDGET_FLAG, 10) {
    Ok(budget) => budget,
    Err(_) => panic!("BUDGET_FLAG is a number"),
};

/// Flags for the stalled-client tests: a small budget and a short write timeout.
const STALL_FLAGS: [&str; 4] = [
    "--write-timeout",
    "2s",
    "--outbound-buffer-size",
    BUDGET_FLAG,
];

#[test]
fn an_outbound_buffer_size_past_what_a_session_budget_can_count_is_refused() {
    // A session's budget is a semaphore of bytes, which cannot count past 2^29 - 1 on
    // 32-bit targets: the flag stops at 256 MiB everywhere, with a clear error.
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    let too_large = (u64::from(exosphere_ddp::MAX_OUTBOUND_BUFFER_SIZE) + 1).to_string();
    let output = crate::common::run(&[
        "serve",
        "--data-dir",
        data.to_str().expect("UTF-8 path"),
        "--outbound-buffer-size",
        &too_large,
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--outbound-buffer-size"), "{stderr}");
    assert!(stderr.contains("268435456"), "{stderr}");
}

/// `count` pipelined first-page `syncNewPackageData` calls (each answered with a full
/// page of the fixture), as DDP messages.
fn sync_calls(count: usize) -> Vec<Value> {
    (0..count)
        .map(|id| json!({"msg": "method", "id": id.to_string(), "method": "syncNewPackageData", "params": [{}, {}]}))
        .collect()
}

/// The `/healthz` document.
fn health(server: &Server) -> Value {
    let (_, body, _) = http_get(&format!("{}/healthz", server.http));
    serde_json::from_str(&body).expect("JSON")
}

/// Watches `/healthz` while a client that stopped reading is stalled: waits until the
/// server holds outbound bytes for it, checks over several samples that it never holds
/// more than the budget, then checks another client is served meanwhile.
fn check_stall_is_bounded(server: &Server) {
    let deadline = Instant::now() + PATIENCE;
    let mut stalled_samples = 0;
    while stalled_samples < 5 {
        let health = health(server);
        let held = health["outbound_bytes"].as_u64().expect("outbound_bytes");
        assert!(held <= BUDGET, "over the budget: {health}");
        if held > 0 {
            stalled_samples += 1;
        }
        assert!(
            Instant::now() < deadline,
            "the writer never held any bytes: {health}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut polite = Conn::open(server, Transport::Raw);
    assert_eq!(polite.handshake("1", &["1"])["msg"], "connected");
    let page = polite.call("p", "syncNewPackageData", json!([{}, {}]));
    assert!(page["result"]["syncToken"].is_object(), "{page}");
}

/// Reads what the server sent until it closed the connection; panics if it is still
/// open after [`PATIENCE`] (the read timeout).
fn read_until_closed(conn: Conn) {
    let Conn::WebSocket { mut socket, .. } = conn else {
        unreachable!()
    };
    loop {
        match socket.read() {
            Ok(_) => {}
            Err(tungstenite::Error::Io(error))
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("the server never closed the stalled connection")
            }
            Err(_) => return,
        }
    }
}

#[test]
fn a_websocket_client_that_stops_reading_is_disconnected_within_the_outbound_budget() {
    // §1.1: one session per socket; a client that pipelines calls and never reads must
    // not grow the server's memory: its writer stalls, its producers wait on the byte
    // budget, and after --write-timeout the server closes the socket.
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    crate::common::import(&data, &crate::common::fixture());
    let server = Server::start(&data, &STALL_FLAGS);
    for transport in [Transport::Raw, Transport::SockJsWebSocket] {
        let mut hostile = Conn::open(&server, transport);
        assert_eq!(
            hostile.handshake("1", &["1"])["msg"],
            "connected",
            "{transport:?}"
        );
        for call in sync_calls(200) {
            hostile.send(&call);
        }
        check_stall_is_bounded(&server);
        wait_for_health(&server, |h| h["sessions"] == 0 && h["outbound_bytes"] == 0);
        read_until_closed(hostile);
        // The server serves others as before.
        let mut after = Conn::open(&server, transport);
        assert_eq!(after.handshake("1", &["1"])["msg"], "connected");
        let page = after.call("a", "syncNewPackageData", json!([{}, {}]));
        assert!(page["result"]["syncToken"].is_object(), "{page}");
    }
}

#[test]
fn an_xhr_streaming_receiver_that_stops_reading_ends_its_session_within_the_outbound_budget() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    crate::common::import(&data, &crate::common::fixture());
    // One endless streaming response, so only the write timeout can end it.
    let mut flags = STALL_FLAGS.to_vec();
    flags.extend(["--sockjs-response-limit", "1073741824"]);
    let server = Server::start(&data, &flags);
    let session = format!("/sockjs/000/{}", exosphere_ddp::random_id());
    // The receiver: a streaming request whose response is never read.
    let address = server.http.trim_start_matches("http://");
    let mut receiver = TcpStream::connect(address).expect("connects");
    std::io::Write::write_all(
        &mut receiver,
        format!(
            "POST {session}/xhr_streaming HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\n\r\n"
        )
        .as_bytes(),
    )
    .expect("request sent");
    // It reads as far as the open frame (the session exists), then stops reading.
    receiver
        .set_read_timeout(Some(PATIENCE))
        .expect("read timeout");
    let mut head = Vec::new();
    while !String::from_utf8_lossy(&head).contains("\r\no\n") {
        let mut chunk = [0; 4096];
        let read = std::io::Read::read(&mut receiver, &mut chunk).expect("the open frame");
        assert!(read > 0, "the response ended early");
        head.extend_from_slice(&chunk[..read]);
    }
    let mut messages = vec![json!({"msg": "connect", "version": "1", "support": ["1"]})];
    // Few enough to be taken at once (the session's read-ahead), so the send answers.
    messages.extend(sync_calls(40));
    let payload: Vec<String> = messages.iter().map(Value::to_string).collect();
    let sent = ureq::post(format!("{}{session}/xhr_send", server.http))
        .send(json!(payload).to_string())
        .expect("xhr_send");
    assert_eq!(sent.status().as_u16(), 204);
    check_stall_is_bounded(&server);
    // The session ends; what the stuck response had already handed to the HTTP layer goes
    // with its connection, which the kernel drops after --write-timeout: `serve` sets
    // TCP_USER_TIMEOUT on Linux only, elsewhere those chunks wait for the client.
    wait_for_health(&server, |h| h["sessions"] == 0);
    if cfg!(target_os = "linux") {
        wait_for_health(&server, |h| h["outbound_bytes"] == 0);
    }
    let mut after = Conn::open(&server, Transport::XhrPolling);
    assert_eq!(after.handshake("1", &["1"])["msg"], "connected");
    drop(receiver);
}

#[test]
fn a_hixie76_client_without_a_nonce_or_with_an_oversized_frame_is_dropped() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(
        &dir.path().join("data"),
        &[
            "--connect-timeout",
            "1s",
            "--max-message-size",
            "1024",
            "--max-sessions",
            "1",
        ],
    );
    let addr = server.http.trim_start_matches("http://");
    let path = || format!("/sockjs/000/{}/websocket", exosphere_ddp::random_id());
    // The `101` comes before the nonce; a nonce that never comes ends the connection after
    // --connect-timeout, and frees the session's place.
    let mut silent = Hixie76::connect_without_nonce(addr, &path());
    assert_eq!(silent.recv(), None, "closed without a nonce");
    wait_for_sessions(&server, 0);
    // A frame longer than --max-message-size ends the connection before it is complete.
    let mut conn = Conn::open(&server, Transport::SockJsHixie76);
    assert_eq!(conn.handshake("1", &["1"])["msg"], "connected");
    let Conn::Hixie76 { mut socket, .. } = conn else {
        unreachable!()
    };
    let endless = [b"\x00".as_slice(), &[b'x'; 2048]].concat();
    socket.send_raw(&endless);
    assert_eq!(socket.recv(), None, "closed after an oversized frame");
    wait_for_sessions(&server, 0);
    // A frame of an unknown type ends the connection too.
    let mut conn = Conn::open(&server, Transport::SockJsHixie76);
    assert_eq!(conn.handshake("1", &["1"])["msg"], "connected");
    let Conn::Hixie76 { mut socket, .. } = conn else {
        unreachable!()
    };
    socket.send_raw(b"\x80\x01x");
    assert_eq!(socket.recv(), None, "closed after a binary frame");
    wait_for_sessions(&server, 0);
}

/// One `xhr_send` carrying `count` messages that are not DDP: each is answered with an
/// error frame (spec §1.3), which nobody polls for. Returns the status, or `None` if no
/// answer came within [`PATIENCE`].
fn send_junk(conn: &Conn, count: usize) -> Option<u16> {
    let Conn::Polling { url, agent, .. } = conn else {
        unreachable!()
    };
    let junk: Vec<String> = (0..count).map(|i| format!("junk {i}")).collect();
    agent
        .post(format!("{url}/xhr_send"))
        .send(json!(junk).to_string())
        .ok()
        .map(|response| response.status().as_u16())
}

#[test]
fn an_xhr_send_to_a_session_that_never_polls_ends_the_session_instead_of_waiting_forever() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut server = Server::start(
        &dir.path().join("data"),
        &[
            "--sockjs-disconnect-delay",
            "1s",
            "--outbound-buffer-size",
            "4096",
            "--max-sessions",
            "1",
        ],
    );
    let conn = Conn::open(&server, Transport::XhrPolling);
    // The error frames fill the outbox, the session stops reading, its input fills: the
    // send waits at most the disconnect delay, by which the session is torn down.
    let status = send_junk(&conn, 600);
    assert!(
        matches!(status, Some(204 | 503)),
        "the send is answered: {status:?}"
    );
    let Conn::Polling { url, agent, .. } = &conn else {
        unreachable!()
    };
    let response = agent
        .post(format!("{url}/xhr_send"))
        .send("[\"{}\"]")
        .expect("xhr_send");
    assert_eq!(response.status().as_u16(), 404, "the session is gone");
    // Its slot is free again (--max-sessions 1).
    let mut next = Conn::open(&server, Transport::XhrPolling);
    assert_eq!(next.handshake("1", &["1"])["msg"], "connected");
    server.signal_terminate();
    assert!(server.wait_exit(PATIENCE).success(), "a clean exit");
}

#[test]
fn sigterm_is_not_held_up_by_an_xhr_send_that_cannot_be_delivered() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut server = Server::start(
        &dir.path().join("data"),
        &[
            "--sockjs-disconnect-delay",
            "60s",
            "--outbound-buffer-size",
            "4096",
            "--shutdown-grace",
            "1s",
        ],
    );
    let conn = Conn::open(&server, Transport::XhrPolling);
    let sending = std::thread::spawn(move || send_junk(&conn, 600));
    std::thread::sleep(Duration::from_millis(500));
    server.signal_terminate();
    assert!(server.wait_exit(PATIENCE).success(), "a clean exit");
    // Answered or cut off by the exit, but not left waiting.
    let _ = sending.join().expect("sending thread");
}

/// Opens a SockJS polling session: its first poll's status.
fn open_polling(server: &Server) -> u16 {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(PATIENCE))
        .build()
        .new_agent()
        .post(format!(
            "{}/sockjs/000/{}/xhr",
            server.http,
            exosphere_ddp::random_id()
        ))
        .send_empty()
        .expect("answered")
        .status()
        .as_u16()
}

#[test]
fn a_sockjs_session_keeps_its_slot_until_its_close_frame_is_delivered() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(
        &dir.path().join("data"),
        &["--max-sessions", "1", "--sockjs-disconnect-delay", "1s"],
    );
    let mut conn = Conn::open(&server, Transport::XhrPolling);
    // A version the server does not speak: `failed`, and the DDP session ends (spec §1.1),
    // its close frame waiting for the next poll.
    conn.send(&json!({"msg": "connect", "version": "2", "support": ["2"]}));
    assert_eq!(
        open_polling(&server),
        503,
        "the undelivered close frame still counts"
    );
    // Sending to the ended session is accepted (204, checked by `send`), as sockjs-node
    // does: the next poll tells the client.
    conn.send(&json!({"msg": "ping"}));
    assert_eq!(conn.recv().expect("failed")["msg"], "failed");
    assert_eq!(conn.recv(), None, "then the close frame");
    assert_eq!(
        open_polling(&server),
        200,
        "the slot is free once the close frame went out"
    );
}
