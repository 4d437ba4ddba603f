//! Nobody can take the server down: the attacks of a hostile tester against the real binary,
//! each run with small limits, and each contained while an honest client keeps syncing.
//!
//! * outbound buffers: SockJS sessions that ask for sync pages and never poll, and
//!   WebSockets that stop reading, hold no more than `--max-outbound-bytes` in all, as
//!   `/healthz` reports it;
//! * sessions: one address cannot hold more than `--max-sessions-per-address`, and
//!   `/healthz` counts what admission counts;
//! * connections: idle, half-sent and idle keep-alive connections close after
//!   `--header-read-timeout` (WebSockets do not), and one address cannot open more than
//!   `--max-connections-per-address`;
//! * SockJS: one-character session ids are not sessions; the iframe page pins its script.
//!
//! Another client is another loopback address (127.0.0.2): the per-address caps tell them
//! apart as they would two machines.

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite;

use crate::common::{Ddp, PATIENCE, Server, fixture, fixture_catalog, http_get, import, sync_loop};

/// The honest client's address: another machine to the server.
const HONEST: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// The `/healthz` document.
fn health(server: &Server) -> Value {
    let (_, body, _) = http_get(&format!("{}/healthz", server.http));
    serde_json::from_str(&body).expect("JSON")
}

/// The server's `host:port`.
fn authority(server: &Server) -> &str {
    server.http.trim_start_matches("http://")
}

/// A TCP connection to the server from the local address `from`.
fn tcp_from(server: &Server, from: IpAddr) -> TcpStream {
    let address: SocketAddr = authority(server).parse().expect("an address");
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("a socket");
    socket
        .bind(&SocketAddr::new(from, 0).into())
        .expect("binds the local address");
    socket.connect(&address.into()).expect("connects");
    let tcp = TcpStream::from(socket);
    tcp.set_read_timeout(Some(PATIENCE)).expect("read timeout");
    tcp
}

/// Reads until the server closes `tcp`; fails if it is still open after [`PATIENCE`].
fn closed_by_server(mut tcp: TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let mut chunk = [0; 4096];
    loop {
        match tcp.read(&mut chunk) {
            Ok(0) => return received,
            Ok(read) => received.extend_from_slice(&chunk[..read]),
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("the server left the connection open")
            }
            // Reset: closed too.
            Err(_) => return received,
        }
    }
}

/// A GET over `tcp`, answered (`Connection: close`): the response's text, or `None` if
/// the server closed the connection without one.
fn get_over(mut tcp: TcpStream, path: &str) -> Option<String> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).ok()?;
    let response = String::from_utf8_lossy(&closed_by_server(tcp)).into_owned();
    (!response.is_empty()).then_some(response)
}

/// A new SockJS `xhr` session from the test's default address: its status and body.
fn open_xhr_session(server: &Server) -> (u16, String) {
    let url = format!(
        "{}/sockjs/000/{}/xhr",
        server.http,
        exosphere_ddp::random_id()
    );
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut response = agent.post(url).send_empty().expect("answered");
    let status = response.status().as_u16();
    (
        status,
        response.body_mut().read_to_string().unwrap_or_default(),
    )
}

/// `count` pipelined first-page `syncNewPackageData` calls, each answered with a full page.
fn sync_calls(count: usize) -> Vec<Value> {
    (0..count)
        .map(|id| json!({"msg": "method", "id": id.to_string(), "method": "syncNewPackageData", "params": [{}, {}]}))
        .collect()
}

/// A SockJS `xhr` session that connects, asks for `calls` sync pages and never polls.
fn hostile_xhr_session(server: &Server, calls: usize) {
    let session = format!("{}/sockjs/000/{}", server.http, exosphere_ddp::random_id());
    let opened = ureq::post(format!("{session}/xhr"))
        .send_empty()
        .expect("xhr");
    assert_eq!(opened.status().as_u16(), 200);
    let mut messages = vec![json!({"msg": "connect", "version": "1", "support": ["1"]})];
    messages.extend(sync_calls(calls));
    let payload: Vec<String> = messages.iter().map(Value::to_string).collect();
    let sent = ureq::post(format!("{session}/xhr_send"))
        .send(json!(payload).to_string())
        .expect("xhr_send");
    assert_eq!(sent.status().as_u16(), 204);
}

/// A WebSocket to `url` (`/websocket`, or SockJS's raw `/sockjs/websocket`) that connects,
/// asks for `calls` sync pages and never reads; returned so it stays open.
fn hostile_websocket(
    url: &str,
    calls: usize,
) -> tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>> {
    let (mut socket, _) = tungstenite::connect(url).expect("WebSocket connects");
    let mut messages = vec![json!({"msg": "connect", "version": "1", "support": ["1"]})];
    messages.extend(sync_calls(calls));
    for message in messages {
        socket
            .send(tungstenite::Message::text(message.to_string()))
            .expect("sent");
    }
    socket
}

/// Samples `/healthz` until stopped, failing on any sample above `budget`; returns the
/// most it saw held.
fn watch_outbound_bytes(
    server_http: String,
    budget: u64,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let most = AtomicU64::new(0);
        while !stop.load(Ordering::Relaxed) {
            let (_, body, _) = http_get(&format!("{server_http}/healthz"));
            let health: Value = serde_json::from_str(&body).expect("JSON");
            let held = health["ddp"]["outbound_bytes"].as_u64().expect("a count");
            assert_eq!(health["ddp"]["outbound_budget"], budget, "{health}");
            assert!(held <= budget, "over the server-wide budget: {health}");
            assert_eq!(
                health["outbound_bytes"], held,
                "the old field says the same"
            );
            most.fetch_max(held, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(20));
        }
        most.into_inner()
    })
}

/// Finding A: sessions that ask for pages and never take them (SockJS sessions that never
/// poll, WebSockets and SockJS WebSockets that stop reading) hold no more than the server-wide budget between
/// them, the stalled ones are closed when others need the room, and an honest client
/// syncs the whole catalog meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_take_their_pages_hold_no_more_than_the_server_budget() {
    const BUDGET: u64 = 6_000_000;
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    import(&data, &fixture());
    let server = Server::start(
        &data,
        &[
            "--max-outbound-bytes",
            &BUDGET.to_string(),
            "--anonymous-outbound-buffer-size",
            "2000000",
            "--write-timeout",
            "5s",
        ],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch_outbound_bytes(server.http.clone(), BUDGET, Arc::clone(&stop));
    let server = Arc::new(server);
    let attack = tokio::task::spawn_blocking({
        let server = Arc::clone(&server);
        move || {
            let sockjs = server.ws.replace("/websocket", "/sockjs/websocket");
            let sockets: Vec<_> = (0..4)
                .flat_map(|_| {
                    [
                        hostile_websocket(&server.ws, 40),
                        hostile_websocket(&sockjs, 40),
                    ]
                })
                .collect();
            for _ in 0..10 {
                hostile_xhr_session(&server, 40);
            }
            sockets
        }
    });
    let sockets = attack.await.expect("the attack ran");
    let mut honest = Ddp::connect_from(&server.ws, HONEST).await;
    let synced = sync_loop(&mut honest, json!({"format": "1.1"}), json!({})).await;
    assert_eq!(
        synced.catalog,
        fixture_catalog(),
        "the honest client synced"
    );
    stop.store(true, Ordering::Relaxed);
    let most = tokio::task::spawn_blocking(move || watcher.join().expect("within the budget"))
        .await
        .expect("the watcher");
    assert!(most > 0, "the attack held bytes at some point");
    drop(sockets);
}

/// Finding B: one address opening SockJS sessions it never uses fills only its own share
/// of the sessions, `/healthz` counts them as admission does, and another address is
/// served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_every_session() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    import(&data, &fixture());
    let server = Arc::new(Server::start(&data, &["--max-sessions-per-address", "3"]));
    let refused = tokio::task::spawn_blocking({
        let server = Arc::clone(&server);
        move || {
            for _ in 0..3 {
                assert_eq!(open_xhr_session(&server), (200, "o\n".to_owned()));
            }
            let over = open_xhr_session(&server).0;
            let websocket = match tungstenite::connect(&server.ws) {
                Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
                other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
            };
            (over, websocket, health(&server))
        }
    })
    .await
    .expect("the attack ran");
    assert_eq!((refused.0, refused.1), (503, 503));
    assert_eq!(refused.2["ddp"]["admitted"], 3, "{}", refused.2);
    assert_eq!(refused.2["ddp"]["sessions"], 0, "none sent connect");
    let mut honest = Ddp::connect_from(&server.ws, HONEST).await;
    let page = honest
        .call("syncNewPackageData", json!([{"format": "1.1"}, {}]))
        .await;
    assert!(page["result"]["syncToken"].is_object(), "{page}");
}

/// Finding B: SockJS sessions that never send DDP `connect` are closed after the SockJS
/// connect timeout, and their places are free again.
#[test]
fn sockjs_sessions_that_never_connect_free_their_places_after_the_connect_timeout() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(
        &dir.path().join("data"),
        &["--max-sessions", "2", "--sockjs-connect-timeout", "1s"],
    );
    for _ in 0..2 {
        assert_eq!(open_xhr_session(&server), (200, "o\n".to_owned()));
    }
    assert_eq!(open_xhr_session(&server).0, 503, "full");
    let deadline = Instant::now() + PATIENCE;
    while health(&server)["ddp"]["admitted"] != 0 {
        assert!(Instant::now() < deadline, "the sessions were never closed");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(open_xhr_session(&server), (200, "o\n".to_owned()));
}

/// Finding C: a connection that sends nothing, one that sends half a request head, and
/// an idle keep-alive connection are all closed after the header-read timeout; a
/// WebSocket is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_sent_connections_are_closed_after_the_header_timeout() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = Arc::new(Server::start(
        &dir.path().join("data"),
        &["--header-read-timeout", "1s"],
    ));
    let mut websocket = server.ddp().await;
    tokio::task::spawn_blocking({
        let server = Arc::clone(&server);
        move || {
            let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
            assert!(closed_by_server(tcp_from(&server, local)).is_empty());
            let mut half = tcp_from(&server, local);
            half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                .expect("half a head");
            assert!(closed_by_server(half).is_empty());
            let mut keep_alive = tcp_from(&server, local);
            keep_alive
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .expect("a request");
            let answered = String::from_utf8_lossy(&closed_by_server(keep_alive)).into_owned();
            assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
        }
    })
    .await
    .expect("the idle connections were closed");
    // The WebSocket was idle just as long, and still works.
    let answer = websocket
        .call("syncNewPackageData", json!([{"format": "1.1"}, {}]))
        .await;
    assert!(answer["result"]["syncToken"].is_object(), "{answer}");
}

/// Finding C: one address cannot open more TCP connections than its cap (the next one is
/// closed at once), another address still can, and a closed connection frees its place.
#[test]
fn connections_beyond_the_per_address_cap_are_refused() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(
        &dir.path().join("data"),
        &["--max-connections-per-address", "2"],
    );
    let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let first = tcp_from(&server, local);
    let _second = tcp_from(&server, local);
    assert_eq!(get_over(tcp_from(&server, local), "/healthz"), None);
    let other = get_over(tcp_from(&server, HONEST), "/healthz").expect("answered");
    assert!(other.starts_with("HTTP/1.1 200"), "{other}");
    drop(first);
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(answer) = get_over(tcp_from(&server, local), "/healthz") {
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            let health: Value =
                serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap_or_default())
                    .unwrap_or_default();
            assert!(health["connections"]["max"].as_u64() > Some(2), "{health}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the closed connection's place never came back"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Finding C: the connection cap follows the open-file limit, so connections beyond it are
/// closed at once and the server never runs out of descriptors; and a server whose cap is set
/// above its descriptors (so `accept` fails with `EMFILE`) keeps running and serves again once
/// connections close.
#[test]
fn the_open_file_limit_caps_connections_and_running_out_does_not_stop_the_server() {
    const OPEN_FILES: u64 = 64;
    let dir = tempfile::tempdir().expect("temporary directory");
    let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
    for (flags, derived) in [
        (&["--header-read-timeout", "1s"][..], true),
        (
            &["--header-read-timeout", "1s", "--max-connections", "1000"][..],
            false,
        ),
    ] {
        let server = Server::start_with_open_files(&dir.path().join("data"), flags, OPEN_FILES);
        if derived {
            let health = health(&server);
            assert_eq!(health["connections"]["max"], 32, "64 less half: {health}");
        }
        // More than the process has descriptors for.
        let idle: Vec<TcpStream> = (0..OPEN_FILES + 20)
            .map(|_| tcp_from(&server, local))
            .collect();
        drop(idle);
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(answer) = get_over(tcp_from(&server, local), "/healthz") {
                assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
                break;
            }
            assert!(Instant::now() < deadline, "the server never served again");
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(server);
    }
}

/// Finding D: a one-character id opens no SockJS session, and the iframe page pins the
/// exact script it loads.
#[test]
fn sockjs_sessions_need_a_real_id_and_the_iframe_pins_its_script() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(&dir.path().join("data"), &[]);
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let short = agent
        .post(format!("{}/sockjs/000/a/xhr", server.http))
        .send_empty()
        .expect("answered");
    assert_eq!(short.status().as_u16(), 404);
    assert_eq!(open_xhr_session(&server), (200, "o\n".to_owned()));
    let (status, page, _) = http_get(&format!("{}/sockjs/iframe.html", server.http));
    assert_eq!(status, 200);
    assert!(
        page.contains(&format!(
            r#"<script src="{}" integrity="{}" crossorigin="anonymous"></script>"#,
            exosphere_ddp::SOCKJS_CLIENT_URL,
            exosphere_ddp::SOCKJS_CLIENT_INTEGRITY
        )),
        "{page}"
    );
    assert!(exosphere_ddp::SOCKJS_CLIENT_URL.contains("@1.6.1/"));
}
