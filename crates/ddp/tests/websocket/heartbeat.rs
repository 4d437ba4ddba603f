//! Heartbeats (spec §1.2 "Heartbeats").

use std::time::Duration;

use exosphere_ddp::DdpConfig;
use serde_json::json;

use crate::harness::{Closed, TestServer};

fn fast_heartbeat() -> DdpConfig {
    DdpConfig {
        ping_interval: Duration::from_millis(50),
        ping_timeout: Duration::from_millis(500),
        ..DdpConfig::default()
    }
}

#[tokio::test]
async fn pings_are_answered_with_the_same_id() {
    let server = TestServer::start(DdpConfig::default()).await;
    let (mut client, _) = server.connect().await;
    client.send(json!({"msg": "ping", "id": "abc"})).await;
    assert_eq!(client.recv().await, json!({"msg": "pong", "id": "abc"}));
    client.send(json!({"msg": "ping"})).await;
    assert_eq!(client.recv().await, json!({"msg": "pong"}));
    // A pong is accepted silently.
    client.send(json!({"msg": "pong", "id": "x"})).await;
    assert_eq!(
        client.call("1", "nothing", json!([])).await,
        json!({"msg": "result", "id": "1"})
    );
}

#[tokio::test]
async fn ping_is_answered_while_a_method_runs() {
    let server = TestServer::start(DdpConfig::default()).await;
    let (mut client, _) = server.connect().await;
    client
        .send(json!({"msg": "method", "id": "1", "method": "gate", "params": []}))
        .await;
    client.send(json!({"msg": "ping", "id": "during"})).await;
    // The method cannot finish before the test opens the gate, so this pong overtook it.
    assert_eq!(client.recv().await, json!({"msg": "pong", "id": "during"}));
    server.server.service().gate.add_permits(1);
    assert_eq!(client.answer("1").await["result"], "opened");
}

#[tokio::test]
async fn silent_client_is_pinged_then_dropped() {
    let server = TestServer::start(fast_heartbeat()).await;
    let (mut client, _) = server.connect().await;
    assert_eq!(client.recv().await, json!({"msg": "ping"}));
    // Any inbound frame counts as the answer; the server pings again after more silence.
    client.send(json!({"msg": "pong"})).await;
    assert_eq!(client.recv().await, json!({"msg": "ping"}));
    // Now stay silent: the session is closed.
    assert_eq!(client.closed().await, Closed::Code(1001));
    server
        .eventually("the session to end", |s| s.session_count() == 0)
        .await;
}

#[tokio::test]
async fn pre1_has_no_heartbeats() {
    let server = TestServer::start(fast_heartbeat()).await;
    let mut client = server.open().await;
    client
        .send(json!({"msg": "connect", "version": "pre1", "support": ["pre1"]}))
        .await;
    assert_eq!(client.recv().await["msg"], "connected");
    // Several ping intervals pass during this call, yet only its answer arrives.
    let result = client.call("1", "sleep", json!([300])).await;
    assert_eq!(result["result"], 300);
    // Under pre1, ping and pong are unknown messages.
    for message in [json!({"msg": "ping", "id": "1"}), json!({"msg": "pong"})] {
        client.send(message.clone()).await;
        assert_eq!(
            client.recv().await,
            json!({"msg": "error", "reason": "Bad request", "offendingMessage": message})
        );
    }
}
