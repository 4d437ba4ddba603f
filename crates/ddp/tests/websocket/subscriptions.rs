//! Subscriptions and the merge box (spec §1.2 "Subscriptions and data").

use std::sync::atomic::Ordering;

use exosphere_ddp::DdpConfig;
use serde_json::{Value, json};

use crate::harness::{Client, DOC_IDS, TestServer};

async fn sub(client: &mut Client, id: &str, name: &str, params: Value) {
    client
        .send(json!({"msg": "sub", "id": id, "name": name, "params": params}))
        .await;
}

fn added_doc(id: &str, n: i64) -> Value {
    json!({"msg": "added", "collection": "docs", "id": id, "fields": {"n": n}})
}

#[tokio::test]
async fn initial_documents_then_ready_then_live_changes_then_unsub() {
    let server = TestServer::start(DdpConfig::default()).await;
    let (mut client, _) = server.connect().await;
    sub(&mut client, "s1", "docs", json!([])).await;
    assert_eq!(
        client.recv_n(4).await,
        [
            added_doc("d1", 0),
            added_doc("d2", 1),
            added_doc("d3", 2),
            json!({"msg": "ready", "subs": ["s1"]})
        ]
    );
    // A method triggers a live change; it arrives alongside the method's answer.
    client
        .send(json!({"msg": "method", "id": "1", "method": "bump", "params": [42]}))
        .await;
    let frames = client.recv_n(3).await;
    assert!(
        frames.contains(
            &json!({"msg": "changed", "collection": "docs", "id": "d1", "fields": {"n": 42}})
        ),
        "{frames:?}"
    );
    client.send(json!({"msg": "unsub", "id": "s1"})).await;
    let mut expected: Vec<Value> = DOC_IDS
        .iter()
        .map(|id| json!({"msg": "removed", "collection": "docs", "id": id}))
        .collect();
    expected.push(json!({"msg": "nosub", "id": "s1"}));
    assert_eq!(client.recv_n(4).await, expected);
    server
        .eventually("the publication to see stopped()", |s| {
            s.service().stats.docs_stopped.load(Ordering::SeqCst) == 1
        })
        .await;
}

#[tokio::test]
async fn repeated_sub_with_an_active_id_is_ignored() {
    let server = TestServer::start(DdpConfig::default()).await;
    let (mut client, _) = server.connect().await;
    sub(&mut client, "s1", "docs", json!([])).await;
    assert_eq!(client.recv_n(4).await[3]["msg"], "ready");
    sub(&mut client, "s1", "docs", json!([])).await;
    // Messages are handled in order, so by this answer the repeated sub was processed.
    client.call("1", "nothing", json!([])).await;
    assert_eq!(
        server
            .server
            .service()
            .stats
            .docs_started
            .load(Ordering::SeqCst),
        1
    );
}

#[tokio::test]
async fn refused_subscriptions_get_nosub_with_the_error() {
    let server = TestServer::start(DdpConfig::default()).await;
    let (mut client, _) = server.connect().await;
    sub(&mut client, "a", "nope", json!([])).await;
    assert_eq!(
        client.recv().await,
        json!({"msg": "nosub", "id": "a", "error": {
            "isClientSafe": true, "error": 404, "reason": "Subscription 'nope' not found",
            "message": "Subscription 'nope' not found [404]", "errorType": "Meteor.Error"}})
    );
    sub(&mut client, "b", "refuse", json!([])).await;
    let refused = client.recv().await;
    assert_eq!(refused["error"]["error"], "not-allowed");
    sub(&mut client, "c", "explode", json!([])).await;
    let exploded = client.recv().await;
    assert_eq!(
        (&exploded["id"], &exploded["error"]["error"]),
        (&json!("c"), &json!(500))
    );
    // The id of a refused subscription can be used again.
    sub(&mut client, "a", "docs", json!([])).await;
    assert_eq!(
        client.recv_n(4).await[3],
        json!({"msg": "ready", "subs": ["a"]})
    );
}

#[tokio::test]
async fn unsub_of_an_unknown_id_answers_nosub() {
    let server = TestServer::start(DdpConfig::default()).await;
    let (mut client, _) = server.connect().await;
    client.send(json!({"msg": "unsub", "id": "never"})).await;
    assert_eq!(client.recv().await, json!({"msg": "nosub", "id": "never"}));
}

#[tokio::test]
async fn overlapping_subscriptions_share_one_document() {
    let server = TestServer::start(DdpConfig::default()).await;
    let (mut client, _) = server.connect().await;
    let doc = |msg: &str| json!({"msg": msg, "collection": "things", "id": "shared"});
    let with = |mut base: Value, key: &str, value: Value| {
        base[key] = value;
        base
    };

    sub(&mut client, "A", "shared", json!(["a"])).await;
    assert_eq!(
        client.recv_n(2).await,
        [
            with(doc("added"), "fields", json!({"common": "a", "a": true})),
            json!({"msg": "ready", "subs": ["A"]})
        ]
    );
    // The second publication of the same id only adds its new field: never a second `added`.
    sub(&mut client, "B", "shared", json!(["b"])).await;
    assert_eq!(
        client.recv_n(2).await,
        [
            with(doc("changed"), "fields", json!({"b": true})),
            json!({"msg": "ready", "subs": ["B"]})
        ]
    );
    // A leaves: its exclusive field is cleared and B's value of `common` shows.
    client.send(json!({"msg": "unsub", "id": "A"})).await;
    assert_eq!(
        client.recv_n(2).await,
        [
            with(
                with(doc("changed"), "fields", json!({"common": "b"})),
                "cleared",
                json!(["a"])
            ),
            json!({"msg": "nosub", "id": "A"})
        ]
    );
    // B leaves: the document is gone.
    client.send(json!({"msg": "unsub", "id": "B"})).await;
    assert_eq!(
        client.recv_n(2).await,
        [doc("removed"), json!({"msg": "nosub", "id": "B"})]
    );
}

#[tokio::test]
async fn closing_the_connection_stops_publications() {
    let server = TestServer::start(DdpConfig::default()).await;
    let (mut client, _) = server.connect().await;
    sub(&mut client, "s1", "docs", json!([])).await;
    assert_eq!(client.recv_n(4).await[3]["msg"], "ready");
    drop(client);
    server
        .eventually("the publication to stop", |s| {
            s.service().stats.docs_stopped.load(Ordering::SeqCst) == 1
        })
        .await;
    server
        .eventually("the session to end", |s| s.session_count() == 0)
        .await;
}

#[tokio::test]
async fn subscriptions_per_session_are_limited() {
    let server = TestServer::start(DdpConfig::default()).await;
    let (mut client, _) = server.connect().await;
    for n in 0..100 {
        sub(&mut client, &n.to_string(), "idle", json!([])).await;
    }
    sub(&mut client, "one too many", "idle", json!([])).await;
    let refused = client.recv().await;
    assert_eq!(
        (&refused["msg"], &refused["id"], &refused["error"]["error"]),
        (&json!("nosub"), &json!("one too many"), &json!(429))
    );
    // Ending one makes room again.
    client.send(json!({"msg": "unsub", "id": "0"})).await;
    assert_eq!(client.recv().await, json!({"msg": "nosub", "id": "0"}));
    sub(&mut client, "s", "docs", json!([])).await;
    assert_eq!(
        client.recv_n(4).await[3],
        json!({"msg": "ready", "subs": ["s"]})
    );
}
