//! Top-level protocol errors (spec §1.3 table).

use exosphere_ddp::DdpConfig;
use serde_json::{Value, json};

use crate::harness::{Client, TestServer};

fn error(reason: &str, offending: Option<Value>) -> Value {
    match offending {
        Some(message) => json!({"msg": "error", "reason": reason, "offendingMessage": message}),
        None => json!({"msg": "error", "reason": reason}),
    }
}

async fn exchange(client: &mut Client, text: &str) -> Value {
    client.send_text(text).await;
    client.recv().await
}

#[tokio::test]
async fn before_connect() {
    let server = TestServer::start(DdpConfig::default()).await;
    let mut client = server.open().await;
    let method = json!({"msg": "method", "id": "1", "method": "echo"});
    assert_eq!(
        exchange(&mut client, &method.to_string()).await,
        error("Must connect first", Some(method))
    );
    // Even heartbeats and malformed messages need a session first.
    for message in [json!({"msg": "ping"}), json!({"msg": "sub", "id": 5})] {
        assert_eq!(
            exchange(&mut client, &message.to_string()).await,
            error("Must connect first", Some(message))
        );
    }
    assert_eq!(
        exchange(&mut client, "nope").await,
        error("Bad request", None)
    );
    // The connection is still usable.
    client
        .send(json!({"msg": "connect", "version": "1", "support": ["1"]}))
        .await;
    assert_eq!(client.recv().await["msg"], "connected");
}

#[tokio::test]
async fn after_connect() {
    let server = TestServer::start(DdpConfig::default()).await;
    let (mut client, _) = server.connect().await;
    // Not JSON, or not an object: no offendingMessage.
    for text in ["{", "[1,2]", "\"method\"", "null", "42"] {
        assert_eq!(
            exchange(&mut client, text).await,
            error("Bad request", None),
            "{text}"
        );
    }
    // An object without (a truthy) `msg`, or with an unknown one.
    for message in [
        json!({"id": "1"}),
        json!({"msg": ""}),
        json!({"msg": "launch"}),
        json!({"msg": 3}),
    ] {
        assert_eq!(
            exchange(&mut client, &message.to_string()).await,
            error("Bad request", Some(message))
        );
    }
    // EJSON that cannot be decoded.
    let unknown_type =
        r#"{"msg":"method","id":"1","method":"echo","params":[{"$type":"oid","$value":"x"}]}"#;
    assert_eq!(
        exchange(&mut client, unknown_type).await,
        error("Parse error", None)
    );
    let connect = json!({"msg": "connect", "version": "1", "support": ["1"]});
    assert_eq!(
        exchange(&mut client, &connect.to_string()).await,
        error("Already connected", Some(connect))
    );
    for message in [
        json!({"msg": "sub", "id": 1, "name": "docs"}),
        json!({"msg": "sub", "id": "1", "name": "docs", "params": {}}),
    ] {
        assert_eq!(
            exchange(&mut client, &message.to_string()).await,
            error("Malformed subscription", Some(message))
        );
    }
    for message in [
        json!({"msg": "method", "id": "1"}),
        json!({"msg": "method", "id": "1", "method": "echo", "params": "x"}),
        json!({"msg": "method", "id": "1", "method": "echo", "randomSeed": 7}),
    ] {
        assert_eq!(
            exchange(&mut client, &message.to_string()).await,
            error("Malformed method invocation", Some(message))
        );
    }
    // None of this hurt the session; unknown fields are ignored.
    client
        .send(
            json!({"msg": "method", "id": "9", "method": "echo", "params": [1], "extra": {"a": 1}}),
        )
        .await;
    assert_eq!(client.answer("9").await["result"], json!([1]));
}

#[tokio::test]
async fn binary_frames_are_ignored() {
    let server = TestServer::start(DdpConfig::default()).await;
    let (mut client, _) = server.connect().await;
    client
        .send_binary(b"{\"msg\":\"ping\",\"id\":\"bin\"}")
        .await;
    client.send(json!({"msg": "ping", "id": "text"})).await;
    assert_eq!(client.recv().await, json!({"msg": "pong", "id": "text"}));
}
