//! Protection against silent and oversized clients (spec §1.1).

use std::time::Duration;

use exosphere_ddp::DdpConfig;
use serde_json::json;

use crate::harness::{Closed, TestServer};

#[tokio::test]
async fn sockets_that_never_connect_are_dropped() {
    let config = DdpConfig {
        connect_timeout: Duration::from_millis(100),
        ..DdpConfig::default()
    };
    let server = TestServer::start(config).await;
    let mut client = server.open().await;
    assert_eq!(client.closed().await, Closed::Code(1008));
    assert_eq!(server.server.session_count(), 0);
}

#[tokio::test]
async fn chatter_without_connect_does_not_extend_the_deadline() {
    let config = DdpConfig {
        connect_timeout: Duration::from_millis(200),
        ..DdpConfig::default()
    };
    let server = TestServer::start(config).await;
    let mut client = server.open().await;
    loop {
        client.send(json!({"msg": "ping"})).await;
        // Until the deadline every message is refused; then the socket closes.
        match client.next().await {
            Ok(answer) => assert_eq!(answer["reason"], "Must connect first"),
            Err(closed) => {
                assert_eq!(closed, Closed::Code(1008));
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn oversized_messages_close_the_session() {
    let config = DdpConfig {
        max_message_size: 1024,
        ..DdpConfig::default()
    };
    let server = TestServer::start(config).await;
    let (mut client, _) = server.connect().await;
    // At the limit is fine.
    let padding =
        "x".repeat(1024 - r#"{"msg":"method","id":"1","method":"echo","params":[""]}"#.len());
    let at_limit = json!({"msg": "method", "id": "1", "method": "echo", "params": [padding]});
    assert_eq!(at_limit.to_string().len(), 1024);
    client.send(at_limit).await;
    assert_eq!(
        client.answer("1").await["result"][0].as_str().map(str::len),
        Some(padding.len())
    );
    // One byte more ends the session.
    client
        .send(json!({"msg": "method", "id": "2", "method": "echo", "params": [format!("{padding}x")]}))
        .await;
    client.closed().await;
    server
        .eventually("the session to end", |s| s.session_count() == 0)
        .await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_without_hurting_others() {
    let config = DdpConfig {
        outbound_queue: 4,
        ping_timeout: Duration::from_millis(300),
        ..DdpConfig::default()
    };
    let server = TestServer::start(config).await;
    let (mut hostile, _) = server.connect().await;
    hostile
        .send(json!({"msg": "sub", "id": "f", "name": "flood", "params": []}))
        .await;
    // `hostile` never reads again. Others are served meanwhile.
    let (mut polite, _) = server.connect().await;
    assert_eq!(
        polite.call("1", "echo", json!(["hi"])).await["result"],
        json!(["hi"])
    );
    // Once the socket buffers are full, writing stalls and the server gives up on it.
    server
        .eventually("the stalled session to end", |s| s.session_count() == 1)
        .await;
    assert_eq!(
        polite.call("2", "echo", json!([2])).await["result"],
        json!([2])
    );
    drop(hostile);
}
