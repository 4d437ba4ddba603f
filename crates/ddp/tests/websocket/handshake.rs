//! Version negotiation (spec §1.2 "Connection establishment").

use exosphere_ddp::DdpConfig;
use serde_json::json;

use crate::harness::{Closed, TestServer};

const METEOR_ALPHABET: &str = "23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz";

#[tokio::test]
async fn connected_with_a_meteor_style_session_id() {
    let server = TestServer::start(DdpConfig::default()).await;
    let (mut client, session) = server.connect().await;
    assert_eq!(session.len(), 17);
    assert!(
        session.chars().all(|c| METEOR_ALPHABET.contains(c)),
        "{session}"
    );
    server
        .eventually("one live session", |s| s.session_count() == 1)
        .await;
    // The session id the service sees is the one sent in `connected`.
    let result = client.call("1", "whoami", json!([])).await;
    assert_eq!(result["result"]["session"], session.as_str());
}

#[tokio::test]
async fn each_supported_version_is_accepted() {
    let server = TestServer::start(DdpConfig::default()).await;
    for (version, support) in [
        ("1", json!(["1"])),
        ("pre2", json!(["pre2", "pre1"])),
        ("pre1", json!(["pre1"])),
    ] {
        let mut client = server.open().await;
        client
            .send(json!({"msg": "connect", "version": version, "support": support}))
            .await;
        let answer = client.recv().await;
        assert_eq!(answer["msg"], "connected", "version {version}: {answer}");
    }
}

#[tokio::test]
async fn failed_suggests_the_preferred_common_version_then_closes() {
    let server = TestServer::start(DdpConfig::default()).await;
    for (version, support, suggested) in [
        (json!("pre2"), json!(["1", "pre2"]), "1"),
        (json!("2"), json!(["2", "pre1"]), "pre1"),
        (json!("2"), json!(["2"]), "1"),
        // The proposal is missing from its own support list.
        (json!("1"), json!(["pre1"]), "pre1"),
        (json!(1), json!(["1"]), "1"),
    ] {
        let mut client = server.open().await;
        client
            .send(json!({"msg": "connect", "version": version, "support": support}))
            .await;
        assert_eq!(
            client.recv().await,
            json!({"msg": "failed", "version": suggested})
        );
        assert_eq!(client.closed().await, Closed::Code(1000));
    }
    assert_eq!(server.server.session_count(), 0);
}

#[tokio::test]
async fn never_answers_failed_with_the_proposed_version() {
    let server = TestServer::start(DdpConfig::default()).await;
    let connect = json!({"msg": "connect", "version": "1"});
    let mut client = server.open().await;
    client.send(connect.clone()).await;
    assert_eq!(
        client.recv().await,
        json!({"msg": "error", "reason": "Bad request", "offendingMessage": connect})
    );
    assert_eq!(client.closed().await, Closed::Code(1000));
}

#[tokio::test]
async fn reconnect_session_field_is_ignored() {
    let server = TestServer::start(DdpConfig::default()).await;
    let mut client = server.open().await;
    client
        .send(json!({"msg": "connect", "version": "1", "support": ["1"], "session": "OLD"}))
        .await;
    let answer = client.recv().await;
    assert_eq!(answer["msg"], "connected");
    assert_ne!(answer["session"], "OLD");
}
