//! DDP on the wire of the real binary (spec §1): endpoints, negotiation, heartbeats, method
//! framing, protocol errors and limits. The DDP crate's own tests go deeper; these prove the
//! server as shipped behaves.

use crate::common::{Ddp, PATIENCE, Server};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

async fn raw(
    url: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    tokio_tungstenite::connect_async(url)
        .await
        .expect("connects")
        .0
}

async fn next_json(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Option<Value> {
    loop {
        match tokio::time::timeout(PATIENCE, socket.next())
            .await
            .expect("in time")
        {
            Some(Ok(Message::Text(text))) => {
                return Some(serde_json::from_str(text.as_str()).unwrap());
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn both_websocket_paths_accept_the_tool_without_a_subprotocol() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    for url in [server.ws.clone(), format!("{}/", server.ws)] {
        let mut request = url.as_str().into_client_request().unwrap();
        request.headers_mut().insert(
            "user-agent",
            "Meteor/METEOR@3.0.4 OS/linux (Linux; 6.5.0; x64;)"
                .parse()
                .unwrap(),
        );
        let (mut socket, response) = tokio_tungstenite::connect_async(request).await.unwrap();
        assert!(
            response.headers().get("sec-websocket-protocol").is_none(),
            "§1.1: no subprotocol in the answer"
        );
        socket
            .send(Message::text(
                r#"{"msg":"connect","version":"1","support":["1","pre2","pre1"]}"#,
            ))
            .await
            .unwrap();
        let connected = next_json(&mut socket).await.unwrap();
        assert_eq!(connected["msg"], "connected", "{url}");
        let session = connected["session"].as_str().unwrap();
        assert_eq!(session.len(), 17, "§1.2: a Meteor Random.id");
        assert!(
            session
                .chars()
                .all(|c| "23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz".contains(c))
        );
    }
}

#[tokio::test]
async fn version_negotiation_follows_meteor() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let cases = [
        (
            json!({"msg": "connect", "version": "pre1", "support": ["pre1"]}),
            "connected",
            None,
        ),
        (
            json!({"msg": "connect", "version": "pre2", "support": ["pre2", "pre1"]}),
            "connected",
            None,
        ),
        (
            json!({"msg": "connect", "version": "2", "support": ["2", "1"]}),
            "failed",
            Some("1"),
        ),
        // A proposal outside its own support list: suggest from that list, never the version
        // just proposed, which would make the client re-dial forever (§1.2).
        (
            json!({"msg": "connect", "version": "1", "support": ["pre2"]}),
            "failed",
            Some("pre2"),
        ),
        (
            json!({"msg": "connect", "version": "pre2", "support": ["1", "pre2"]}),
            "failed",
            Some("1"),
        ),
    ];
    for (connect, expected, version) in cases {
        let mut socket = raw(&server.ws).await;
        socket
            .send(Message::text(connect.to_string()))
            .await
            .unwrap();
        let answer = next_json(&mut socket).await.unwrap();
        assert_eq!(answer["msg"], expected, "§1.2 for {connect}: {answer}");
        if let Some(version) = version {
            assert_eq!(answer["version"], version);
            assert!(
                next_json(&mut socket).await.is_none(),
                "§1.2: failed closes the socket"
            );
        }
    }
}

#[tokio::test]
async fn pings_are_answered_with_their_id() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let mut ddp = server.ddp().await;
    ddp.send(json!({"msg": "ping", "id": "x"})).await;
    assert_eq!(ddp.recv().await, json!({"msg": "pong", "id": "x"}));
    ddp.send(json!({"msg": "ping"})).await;
    assert_eq!(ddp.recv().await, json!({"msg": "pong"}));
}

#[tokio::test]
async fn unknown_methods_get_meteors_exact_error_and_updated() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let mut ddp = server.ddp().await;

    let reply = ddp.call("foo", json!([])).await;

    assert_eq!(
        reply,
        json!({"msg": "result", "id": "1", "error": {
            "isClientSafe": true, "error": 404, "reason": "Method 'foo' not found",
            "message": "Method 'foo' not found [404]", "errorType": "Meteor.Error"}}),
        "§1.3"
    );
}

#[tokio::test]
async fn protocol_errors_are_reported_and_the_session_survives() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);

    let mut early = raw(&server.ws).await;
    early
        .send(Message::text(r#"{"msg":"method","id":"1","method":"x"}"#))
        .await
        .unwrap();
    let error = next_json(&mut early).await.unwrap();
    assert_eq!(error["msg"], "error");
    assert_eq!(error["reason"], "Must connect first", "§1.3");

    let mut ddp: Ddp = server.ddp().await;
    let cases = [
        ("{not json", "Bad request", false),
        (r#"{"id":"1"}"#, "Bad request", true),
        (
            r#"{"msg":"connect","version":"1","support":["1"]}"#,
            "Already connected",
            true,
        ),
        (
            r#"{"msg":"sub","id":1,"name":"x"}"#,
            "Malformed subscription",
            true,
        ),
        (
            r#"{"msg":"method","id":"1","method":"x","params":{}}"#,
            "Malformed method invocation",
            true,
        ),
        (
            r#"{"msg":"method","id":"2","method":"x","params":[{"$type":"nope","$value":1}]}"#,
            "Parse error",
            false,
        ),
    ];
    for (frame, reason, offending) in cases {
        ddp.send_text(frame).await;
        let error = ddp.recv().await;
        assert_eq!(error["msg"], "error", "{frame}: {error}");
        assert_eq!(error["reason"], reason, "§1.3 for {frame}");
        assert_eq!(
            error.get("offendingMessage").is_some(),
            offending,
            "{frame}: {error}"
        );
    }
    let reply = ddp
        .call("syncNewPackageData", json!([{"format": "1.1"}, {}]))
        .await;
    assert_eq!(reply["result"]["upToDate"], true, "the session still works");
}

#[tokio::test]
async fn an_oversized_message_closes_only_that_session() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--max-message-size", "4096"]);
    let mut bystander = server.ddp().await;
    let mut hostile = server.ddp().await;

    let huge = format!(
        r#"{{"msg":"method","id":"1","method":"syncNewPackageData","params":["{}"]}}"#,
        "x".repeat(10_000)
    );
    hostile.send_text(&huge).await;
    assert!(
        hostile.recv_or_close().await.is_none(),
        "the oversized sender is disconnected"
    );

    let reply = bystander
        .call("syncNewPackageData", json!([{"format": "1.1"}, {}]))
        .await;
    assert_eq!(
        reply["result"]["upToDate"], true,
        "other sessions are unaffected"
    );
}

#[tokio::test]
async fn a_socket_that_never_connects_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--connect-timeout", "1s"]);
    let mut silent = raw(&server.ws).await;
    assert!(
        next_json(&mut silent).await.is_none(),
        "§1.1: pre-connect idle timeout"
    );
}

#[tokio::test]
async fn the_server_pings_idle_clients_and_drops_silent_ones() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &["--ping-interval", "1s", "--ping-timeout", "1s"],
    );
    let mut socket = raw(&server.ws).await;
    socket
        .send(Message::text(
            r#"{"msg":"connect","version":"1","support":["1"]}"#,
        ))
        .await
        .unwrap();
    assert_eq!(next_json(&mut socket).await.unwrap()["msg"], "connected");
    let ping = next_json(&mut socket).await.unwrap();
    assert_eq!(ping["msg"], "ping", "§1.2 heartbeats");
    // Never answer: the server gives up on the session.
    assert!(next_json(&mut socket).await.is_none());
}
