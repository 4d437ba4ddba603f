//! Remote procedure calls (spec §1.2 "Remote procedure calls", §1.3 error objects).

use exosphere_ddp::DdpConfig;
use serde_json::json;

use crate::harness::{TestServer, USER_AGENT};

#[tokio::test]
async fn results_carry_ejson_and_come_with_updated() {
    let server = TestServer::start(DdpConfig::default()).await;
    let (mut client, _) = server.connect().await;
    let params =
        json!([{"$date": 1424908800000_i64}, {"$escape": {"$type": "literal", "$value": 1}}, "x"]);
    assert_eq!(
        client.call("1", "echo", params.clone()).await,
        json!({"msg": "result", "id": "1", "result": params})
    );
}

#[tokio::test]
async fn result_key_rules() {
    let server = TestServer::start(DdpConfig::default()).await;
    let (mut client, _) = server.connect().await;
    // Nothing returned: no `result` key at all.
    assert_eq!(
        client.call("1", "nothing", json!([])).await,
        json!({"msg": "result", "id": "1"})
    );
    // `null` is sent as such.
    assert_eq!(
        client.call("2", "null", json!([])).await,
        json!({"msg": "result", "id": "2", "result": null})
    );
    // Raw EJSON text is embedded as is.
    assert_eq!(
        client.call("3", "raw", json!([])).await,
        json!({"msg": "result", "id": "3", "result": {"n": 1, "at": {"$date": 5}}})
    );
    // `params` may be omitted.
    client
        .send(json!({"msg": "method", "id": "4", "method": "echo"}))
        .await;
    assert_eq!(client.answer("4").await["result"], json!([]));
}

#[tokio::test]
async fn errors_are_meteor_errors() {
    let server = TestServer::start(DdpConfig::default()).await;
    let (mut client, _) = server.connect().await;
    assert_eq!(
        client.call("7", "foo", json!([])).await,
        json!({"msg": "result", "id": "7", "error": {
            "isClientSafe": true, "error": 404, "reason": "Method 'foo' not found",
            "message": "Method 'foo' not found [404]", "errorType": "Meteor.Error"}})
    );
    let denied = client.call("8", "fail", json!([])).await;
    assert_eq!(denied["error"]["error"], 401);
    assert_eq!(denied["error"]["reason"], "Not authorized");
}

#[tokio::test]
async fn a_panicking_method_gets_500_and_the_session_survives() {
    let server = TestServer::start(DdpConfig::default()).await;
    let (mut client, _) = server.connect().await;
    let crashed = client.call("1", "panic", json!([])).await;
    assert_eq!(crashed["error"]["error"], 500);
    assert_eq!(crashed["error"]["reason"], "Internal server error");
    assert_eq!(
        client.call("2", "echo", json!([1])).await["result"],
        json!([1])
    );
}

#[tokio::test]
async fn methods_run_one_at_a_time_in_arrival_order() {
    let server = TestServer::start(DdpConfig::default()).await;
    let (mut client, _) = server.connect().await;
    let calls = [
        ("1", "sleep", json!([150])),
        ("2", "echo", json!(["b"])),
        ("3", "sleep", json!([20])),
        ("4", "echo", json!(["d"])),
    ];
    for (id, method, params) in &calls {
        client
            .send(json!({"msg": "method", "id": id, "method": method, "params": params}))
            .await;
    }
    for (id, _, _) in &calls {
        client.answer(id).await;
    }
}

#[tokio::test]
async fn context_exposes_session_facts_and_keeps_the_user() {
    let server = TestServer::start(DdpConfig::default()).await;
    let (mut client, session) = server.connect().await;
    let first = client.call("1", "whoami", json!([])).await["result"].clone();
    assert_eq!(
        first,
        json!({"session": session, "method_id": "1", "user_agent": USER_AGENT,
               "has_addr": true, "user_before": null})
    );
    let second = client.call("2", "whoami", json!([])).await["result"].clone();
    assert_eq!(second["user_before"], "u1");
}

#[tokio::test]
async fn sessions_are_independent() {
    let server = TestServer::start(DdpConfig::default()).await;
    let (mut stuck, _) = server.connect().await;
    stuck
        .send(json!({"msg": "method", "id": "1", "method": "gate", "params": []}))
        .await;
    // Another client is served while the first one's method is blocked.
    let (mut other, _) = server.connect().await;
    assert_eq!(
        other.call("1", "echo", json!(["free"])).await["result"],
        json!(["free"])
    );
    server.server.service().gate.add_permits(1);
    assert_eq!(stuck.answer("1").await["result"], "opened");
}
