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
        outbound_buffer_size: 4096,
        write_timeout: Duration::from_millis(300),
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

#[tokio::test]
async fn calls_over_the_rate_limit_get_meteors_too_many_requests_error() {
    let config = DdpConfig {
        method_rate_limit: 2,
        method_rate_interval: Duration::from_secs(60),
        ..DdpConfig::default()
    };
    let server = TestServer::start(config).await;
    let (mut client, _) = server.connect().await;
    assert_eq!(
        client.call("1", "echo", json!([1])).await["result"],
        json!([1])
    );
    assert_eq!(
        client.call("2", "echo", json!([2])).await["result"],
        json!([2])
    );
    let refused = client.call("3", "echo", json!([3])).await;
    let error = &refused["error"];
    assert_eq!(error["error"], "too-many-requests", "{refused}");
    let reason = error["reason"].as_str().expect("a reason");
    assert!(
        reason.starts_with("Error, too many requests. Please slow down. You must wait ")
            && reason.ends_with(" seconds before trying again."),
        "{reason}"
    );
    let time_to_reset = error["details"]["timeToReset"]
        .as_u64()
        .expect("timeToReset");
    assert!(
        time_to_reset > 0 && time_to_reset <= 60_000,
        "{time_to_reset}"
    );
    // The limit is per connection: another client is served.
    let (mut other, _) = server.connect().await;
    assert_eq!(
        other.call("1", "echo", json!([1])).await["result"],
        json!([1])
    );
}

#[tokio::test]
async fn connections_over_the_session_limit_are_refused_until_one_leaves() {
    let config = DdpConfig {
        max_sessions: 2,
        ..DdpConfig::default()
    };
    let server = TestServer::start(config).await;
    let (first, _) = server.connect().await;
    let (_second, _) = server.connect().await;
    let refused = server
        .try_open()
        .await
        .expect_err("a third connection is refused");
    assert_eq!(refused, 503);
    drop(first);
    server
        .eventually("the first session to end", |s| s.session_count() == 1)
        .await;
    let (mut third, _) = server.connect().await;
    assert_eq!(
        third.call("1", "echo", json!([3])).await["result"],
        json!([3])
    );
}

#[tokio::test]
async fn shutdown_lets_calls_in_flight_finish_then_closes_cleanly() {
    let config = DdpConfig {
        shutdown_grace: Duration::from_secs(10),
        ..DdpConfig::default()
    };
    let server = TestServer::start(config).await;
    let (mut busy, _) = server.connect().await;
    let (mut idle, _) = server.connect().await;
    busy.send(json!({"msg": "method", "id": "slow", "method": "sleep", "params": [300]}))
        .await;
    // Let the call start before the shutdown begins.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let stopping = tokio::spawn({
        let server = std::sync::Arc::clone(&server.server);
        async move { server.shut_down(Duration::from_secs(1)).await }
    });
    assert_eq!(idle.closed().await, Closed::Code(1001));
    assert_eq!(busy.answer("slow").await["result"], json!(300));
    assert_eq!(busy.closed().await, Closed::Code(1001));
    assert!(
        stopping.await.expect("shutdown task"),
        "every session closed in time"
    );
    assert_eq!(
        server.try_open().await.expect_err("no new connections"),
        503
    );
}

#[tokio::test]
async fn shutdown_does_not_wait_past_the_grace_period() {
    let config = DdpConfig {
        shutdown_grace: Duration::from_millis(200),
        ..DdpConfig::default()
    };
    let server = TestServer::start(config).await;
    let (mut stuck, _) = server.connect().await;
    // `gate` never opens: the call outlives the grace period.
    stuck
        .send(json!({"msg": "method", "id": "g", "method": "gate", "params": []}))
        .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let closed = server.server.shut_down(Duration::from_secs(5)).await;
    assert!(closed, "the session closed after the grace period");
    assert_eq!(stuck.closed().await, Closed::Code(1001));
}

#[tokio::test]
async fn a_full_inbound_queue_stops_reading_until_a_call_finishes() {
    let config = DdpConfig {
        inbound_queue: 1,
        ..DdpConfig::default()
    };
    let server = TestServer::start(config).await;
    let (mut client, _) = server.connect().await;
    // "1" runs (held by the gate), "2" fills the one-slot queue: the ping stays unread.
    for (id, method) in [("1", "gate"), ("2", "echo")] {
        client
            .send(json!({"msg": "method", "id": id, "method": method, "params": []}))
            .await;
    }
    client.send(json!({"msg": "ping", "id": "behind"})).await;
    server.server.service().gate.add_permits(1);
    let mut seen = Vec::new();
    while !seen.contains(&json!({"msg": "pong", "id": "behind"})) {
        seen.push(client.recv().await);
    }
    let first_result = seen
        .iter()
        .position(|m| m["msg"] == "result" && m["id"] == "1");
    assert!(
        first_result.is_some_and(|at| at < seen.len() - 1),
        "the ping was read before call 1 finished: {seen:?}"
    );
}
