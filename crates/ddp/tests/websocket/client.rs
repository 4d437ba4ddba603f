//! The DDP client against the real DDP server of this crate (and, for misbehaviour no real
//! server shows, small fake servers), over real sockets: spec §1.1–§1.3 from the other side.

use std::sync::Arc;
use std::time::Duration;

use exosphere_ddp::DdpConfig;
use exosphere_ddp::client::{Client, ClientConfig, ClientError, certificates_from_pem};
use exosphere_ddp::ejson::Ejson;
use exosphere_ddp::{DdpError, ErrorCode};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::value::RawValue;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::TestServer;

fn ws_url(server: &TestServer) -> String {
    format!("ws://{}/websocket", server.addr)
}

async fn connect(server: &TestServer, config: ClientConfig) -> Client {
    match Client::connect(&ws_url(server), config).await {
        Ok(client) => client,
        Err(error) => panic!("client connects: {error}"),
    }
}

fn must<T>(outcome: Result<T, ClientError>) -> T {
    outcome.unwrap_or_else(|error| panic!("unexpected client error: {error}"))
}

#[tokio::test]
async fn calls_carry_ejson_both_ways() {
    let server = TestServer::start(DdpConfig::default()).await;
    let client = connect(&server, ClientConfig::default()).await;
    assert_eq!(client.session().len(), 17);
    assert_eq!(client.version(), "1");
    let params = [Ejson::Date(1_424_908_800_000.0), Ejson::from("x")];
    let answer = must(client.call("echo", &params).await);
    assert_eq!(must(answer.ejson()), Ejson::Array(params.to_vec()));
    // No `result` key and `null` both read as nothing.
    assert_eq!(
        must(must(client.call("nothing", &[]).await).ejson()),
        Ejson::Null
    );
    assert_eq!(
        must(must(client.call("null", &[]).await).ejson()),
        Ejson::Null
    );
}

#[tokio::test]
async fn raw_results_are_borrowed_from_the_frame() {
    let server = TestServer::start(DdpConfig::default()).await;
    let client = connect(&server, ClientConfig::default()).await;
    let answer = must(client.call("raw", &[]).await);
    let raw: &RawValue = must(answer.raw()).expect("a result");
    // Byte for byte what the service produced (spaces included): nothing re-encoded…
    assert_eq!(raw.get(), r#"{"n": 1, "at": {"$date": 5}}"#);
    // …and a slice of the received frame, not a copy.
    let frame = answer.frame().as_bytes().as_ptr_range();
    assert!(frame.contains(&raw.get().as_ptr()));
}

#[tokio::test]
async fn method_errors_are_meteor_errors() {
    let server = TestServer::start(DdpConfig::default()).await;
    let client = connect(&server, ClientConfig::default()).await;
    let answer = must(client.call("fail", &[]).await);
    match answer.ejson() {
        Err(ClientError::Method(error)) => {
            assert_eq!(*error, DdpError::new(401, "Not authorized"));
        }
        other => panic!("expected a method error, got {other:?}"),
    }
    let answer = must(client.call("nope", &[]).await);
    let Err(error) = answer.raw() else {
        panic!("unknown method succeeded");
    };
    assert_eq!(
        error.to_string(),
        "the server answered with an error: Method 'nope' not found [404]"
    );
}

#[tokio::test]
async fn pipelined_calls_are_answered_in_order() {
    let server = TestServer::start(DdpConfig::default()).await;
    let client = connect(&server, ClientConfig::default()).await;
    let slow = must(client.start_call("sleep", &[Ejson::from(50_i64)]).await);
    let fast = must(client.start_call("echo", &[Ejson::from("after")]).await);
    assert_eq!((slow.id(), fast.id()), ("1", "2"));
    let fast = must(fast.result().await);
    let slow = must(slow.result().await);
    assert_eq!(must(slow.ejson()), Ejson::from(50_i64));
    assert_eq!(must(fast.ejson()), Ejson::Array(vec![Ejson::from("after")]));
}

#[tokio::test]
async fn subscriptions_fill_the_local_store_and_follow_changes() {
    let server = TestServer::start(DdpConfig::default()).await;
    let client = connect(&server, ClientConfig::default()).await;
    let mut moved = client.watch();
    let sub = must(client.subscribe("docs", &[]).await);
    let n_of = |client: &Client, id: &str| {
        client
            .documents("docs")
            .into_iter()
            .find(|(doc, _)| doc == id)
            .and_then(|(_, fields)| fields.get("n").and_then(Ejson::as_i64))
    };
    assert_eq!(client.documents("docs").len(), 3);
    assert_eq!(n_of(&client, "d3"), Some(2));

    must(client.call("bump", &[Ejson::from(7_i64)]).await);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while n_of(&client, "d1") != Some(7) {
        tokio::time::timeout_at(deadline, moved.changed())
            .await
            .expect("the change arrives")
            .expect("the client is alive");
    }

    // Unsubscribing removes the documents (the server sends `removed`).
    must(client.unsubscribe(&sub).await);
    while !client.documents("docs").is_empty() {
        tokio::time::timeout_at(deadline, moved.changed())
            .await
            .expect("the removals arrive")
            .expect("the client is alive");
    }
}

#[tokio::test]
async fn a_flooding_subscription_ends_the_connection_at_the_document_limit() {
    let server = TestServer::start(DdpConfig::default()).await;
    // The `flood` publication adds documents "0", "1", … each with one 64 KiB string field
    // `blob`, without end and never says `ready`.
    let limit = 1 << 20;
    let config = ClientConfig {
        max_document_bytes: limit,
        ..ClientConfig::default()
    };
    let client = connect(&server, config).await;
    match client.subscribe("flood", &[]).await {
        Err(ClientError::Protocol(why)) => {
            assert!(why.contains("limit of 1048576 bytes"), "{why}");
        }
        other => panic!("expected the document limit to end the connection, got {other:?}"),
    }
    assert!(client.is_closed());
    // Sixteen 64 KiB values alone fill the 1 MiB limit, and each document also costs its
    // id, its field's name and some bookkeeping (far less than 64 KiB): fifteen fit. The
    // sixteenth was refused before it was stored.
    assert_eq!(client.documents("flood").len(), 15);
}

#[tokio::test]
async fn a_flood_of_empty_documents_also_ends_at_the_document_limit() {
    let server = TestServer::start(DdpConfig::default()).await;
    // `flood` with size 0 adds documents without fields: a few bytes of data each, but
    // their bookkeeping counts, so the flood cannot grow the client without bound.
    let config = ClientConfig {
        max_document_bytes: 64 * 1024,
        ..ClientConfig::default()
    };
    let client = connect(&server, config).await;
    match client.subscribe("flood", &[Ejson::from(0_i64)]).await {
        Err(ClientError::Protocol(why)) => {
            assert!(why.contains("limit of 65536 bytes"), "{why}");
        }
        other => panic!("expected the document limit to end the connection, got {other:?}"),
    }
    let held = client.documents("flood").len();
    assert!(
        (1..65_536 / 64).contains(&held),
        "{held} empty documents kept under a 64 KiB limit"
    );
}

#[tokio::test]
async fn changes_to_one_document_cost_what_it_holds_not_what_the_frames_added_up_to() {
    let server = TestServer::start(DdpConfig::default()).await;
    // The three `docs` documents cost well under 1 KiB with their bookkeeping; each
    // `changed` frame on the wire is about 60 bytes, so 100 of them are far more than
    // this limit.
    let config = ClientConfig {
        max_document_bytes: 2048,
        ..ClientConfig::default()
    };
    let client = connect(&server, config).await;
    let mut moved = client.watch();
    must(client.subscribe("docs", &[]).await);
    let n_of_d1 = |client: &Client| {
        client
            .documents("docs")
            .into_iter()
            .find(|(doc, _)| doc == "d1")
            .and_then(|(_, fields)| fields.get("n").and_then(Ejson::as_i64))
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    // One bump at a time: the publication's channel would drop bursts.
    for value in 1..=100_i64 {
        must(client.call("bump", &[Ejson::from(value)]).await);
        while n_of_d1(&client) != Some(value) {
            tokio::time::timeout_at(deadline, moved.changed())
                .await
                .expect("the change arrives")
                .expect("the client is alive (the document limit was not hit)");
        }
    }
    assert!(!client.is_closed());
    assert_eq!(client.documents("docs").len(), 3);
}

#[tokio::test]
async fn refused_subscriptions_carry_the_servers_error() {
    let server = TestServer::start(DdpConfig::default()).await;
    let client = connect(&server, ClientConfig::default()).await;
    match client.subscribe("refuse", &[]).await {
        Err(ClientError::Subscription { name, error }) => {
            assert_eq!(name, "refuse");
            assert_eq!(error.error, ErrorCode::Text("not-allowed".to_owned()));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    match client.subscribe("missing", &[]).await {
        Err(ClientError::Subscription { error, .. }) => {
            assert_eq!(*error, DdpError::sub_not_found("missing"));
        }
        other => panic!("expected 404, got {other:?}"),
    }
}

#[tokio::test]
async fn server_pings_are_answered() {
    // The server gives up on a client 200 ms after an unanswered ping.
    let config = DdpConfig {
        ping_interval: Duration::from_millis(50),
        ping_timeout: Duration::from_millis(200),
        ..DdpConfig::default()
    };
    let server = TestServer::start(config).await;
    let client = connect(&server, ClientConfig::default()).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!client.is_closed());
    must(client.call("echo", &[]).await);
}

#[tokio::test]
async fn slow_calls_time_out_and_the_client_lives_on() {
    let server = TestServer::start(DdpConfig::default()).await;
    let config = ClientConfig {
        call_timeout: Duration::from_millis(200),
        ..ClientConfig::default()
    };
    let client = connect(&server, config).await;
    match client.call("gate", &[]).await {
        Err(ClientError::Timeout { what, .. }) => assert_eq!(what, "method `gate`"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    server.server.service().gate.add_permits(1);
    assert_eq!(
        must(must(client.call("echo", &[Ejson::from(1_i64)]).await).ejson()),
        Ejson::Array(vec![Ejson::from(1_i64)])
    );
}

#[tokio::test]
async fn unreachable_servers_are_reported() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    drop(listener);
    match Client::connect(&format!("http://{addr}"), ClientConfig::default()).await {
        Err(ClientError::Unreachable { address, .. }) => assert_eq!(address, addr.to_string()),
        other => panic!("expected unreachable, got {other:?}"),
    }
}

#[tokio::test]
async fn silent_servers_time_out_on_connect() {
    // Accepts TCP (the kernel does) but never answers the upgrade.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let config = ClientConfig {
        connect_timeout: Duration::from_millis(300),
        ..ClientConfig::default()
    };
    let url = format!("http://{}", listener.local_addr().expect("address"));
    match Client::connect(&url, config).await {
        Err(ClientError::Timeout { what, .. }) => assert!(what.starts_with("connecting to")),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[tokio::test]
async fn http_errors_on_upgrade_are_reported() {
    let server = TestServer::start(DdpConfig::default()).await;
    let url = format!("ws://{}/not-ddp", server.addr);
    match Client::connect(&url, ClientConfig::default()).await {
        Err(ClientError::HttpStatus { status, .. }) => assert_eq!(status, 404),
        other => panic!("expected HTTP 404, got {other:?}"),
    }
}

/// A WebSocket server on loopback that runs `script` on each accepted connection.
async fn fake_server<F, Fut>(script: F) -> String
where
    F: Fn(usize, tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>) -> Fut
        + Send
        + Sync
        + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let script = Arc::new(script);
    tokio::spawn(async move {
        for n in 0.. {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let Ok(socket) = tokio_tungstenite::accept_async(stream).await else {
                continue;
            };
            tokio::spawn(script(n, socket));
        }
    });
    format!("ws://{addr}/websocket")
}

/// The fake server's next text frame as JSON.
async fn read_json(
    socket: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
) -> serde_json::Value {
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => {
                return serde_json::from_str(text.as_str()).expect("client frames are JSON");
            }
            Some(Ok(_)) => {}
            other => panic!("the client went away: {other:?}"),
        }
    }
}

/// Reads the client's `connect` and accepts it with session `S`.
async fn accept_connect(socket: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>) {
    let _ = read_json(socket).await;
    let _ = socket
        .send(Message::text(r#"{"msg":"connected","session":"S"}"#))
        .await;
}

#[tokio::test]
async fn version_negotiation_redials_with_the_suggestion() {
    let url = fake_server(|n, mut socket| async move {
        let connect = read_json(&mut socket).await;
        let answer = if n == 0 {
            assert_eq!(connect["version"], "1");
            assert_eq!(connect["support"], serde_json::json!(["1", "pre2", "pre1"]));
            r#"{"msg":"failed","version":"pre2"}"#.to_owned()
        } else {
            assert_eq!(connect["version"], "pre2");
            r#"{"msg":"connected","session":"S"}"#.to_owned()
        };
        let _ = socket.send(Message::text(answer)).await;
        let _ = read_json(&mut socket).await;
    })
    .await;
    let client = must(Client::connect(&url, ClientConfig::default()).await);
    assert_eq!((client.version(), client.session()), ("pre2", "S"));

    let url = fake_server(|_, mut socket| async move {
        let _ = read_json(&mut socket).await;
        let _ = socket
            .send(Message::text(r#"{"msg":"failed","version":"2"}"#))
            .await;
    })
    .await;
    match Client::connect(&url, ClientConfig::default()).await {
        Err(ClientError::Version { offered }) => assert_eq!(offered, "2"),
        other => panic!("expected a version error, got {other:?}"),
    }
}

#[tokio::test]
async fn protocol_violations_are_reported() {
    // Garbage instead of `connected`.
    let url = fake_server(|_, mut socket| async move {
        let _ = read_json(&mut socket).await;
        let _ = socket.send(Message::text("[1, 2]")).await;
    })
    .await;
    match Client::connect(&url, ClientConfig::default()).await {
        Err(ClientError::Protocol(why)) => assert!(why.contains("not a JSON object"), "{why}"),
        other => panic!("expected a protocol error, got {other:?}"),
    }

    // Garbage instead of a result: the pending call fails with it.
    let url = fake_server(|_, mut socket| async move {
        let _ = read_json(&mut socket).await;
        let _ = socket.send(Message::text(r#"{"server_id":"0"}"#)).await;
        let _ = socket
            .send(Message::text(r#"{"msg":"connected","session":"S"}"#))
            .await;
        let _ = read_json(&mut socket).await;
        let _ = socket.send(Message::text("this is not DDP")).await;
        let _ = socket.next().await;
    })
    .await;
    let client = must(Client::connect(&url, ClientConfig::default()).await);
    match client.call("anything", &[]).await {
        Err(ClientError::Protocol(why)) => assert!(why.contains("not JSON"), "{why}"),
        other => panic!("expected a protocol error, got {other:?}"),
    }
    assert!(client.is_closed());
}

#[tokio::test]
async fn a_dropped_connection_fails_pending_calls() {
    let url = fake_server(|_, mut socket| async move {
        accept_connect(&mut socket).await;
        let _ = read_json(&mut socket).await;
        let _ = socket.close(None).await;
    })
    .await;
    let client = must(Client::connect(&url, ClientConfig::default()).await);
    match client.call("anything", &[]).await {
        Err(ClientError::Disconnected(why)) => assert!(why.contains("closed"), "{why}"),
        other => panic!("expected a disconnection, got {other:?}"),
    }
    assert!(matches!(
        client.call("again", &[]).await,
        Err(ClientError::Disconnected(_))
    ));
    assert!(matches!(
        client.closed().await,
        ClientError::Disconnected(_)
    ));
}

/// A TLS front for `server` with a fresh self-signed certificate for `localhost`; returns the
/// `wss://` URL and the certificate in PEM.
async fn tls_front(server: &TestServer) -> (String, String) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    let pem = certified.cert.pem();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(vec![certified.cert.der().clone()], key)
    .expect("server certificate");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let backend = server.addr;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (format!("wss://localhost:{port}/websocket"), pem)
}

#[tokio::test]
async fn wss_works_with_a_trusted_ca() {
    let server = TestServer::start(DdpConfig::default()).await;
    let (url, pem) = tls_front(&server).await;
    let config = ClientConfig {
        extra_roots: must(certificates_from_pem(pem.as_bytes())),
        ..ClientConfig::default()
    };
    let client = must(Client::connect(&url, config).await);
    let answer = must(client.call("echo", &[Ejson::from("over TLS")]).await);
    assert_eq!(
        must(answer.ejson()),
        Ejson::Array(vec![Ejson::from("over TLS")])
    );
}

#[tokio::test]
async fn wss_refuses_an_untrusted_certificate() {
    let server = TestServer::start(DdpConfig::default()).await;
    let (url, _) = tls_front(&server).await;
    match Client::connect(&url, ClientConfig::default()).await {
        Err(error @ ClientError::Tls { .. }) => {
            let message = error.to_string();
            assert!(message.contains("certificate"), "{message}");
        }
        other => panic!("expected a TLS error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_silent_server_is_given_up_after_a_heartbeat() {
    let url = fake_server(|_, mut socket| async move {
        accept_connect(&mut socket).await;
        // Reads the client's ping and never answers it.
        let ping = read_json(&mut socket).await;
        assert_eq!(ping["msg"], "ping");
        let _ = socket.next().await;
    })
    .await;
    let config = ClientConfig {
        heartbeat: Some(Duration::from_millis(100)),
        ..ClientConfig::default()
    };
    let client = must(Client::connect(&url, config).await);
    let ended = tokio::time::timeout(Duration::from_secs(10), client.closed())
        .await
        .expect("the client gives up");
    assert!(
        ended.to_string().contains("did not answer a ping"),
        "{ended}"
    );
}
