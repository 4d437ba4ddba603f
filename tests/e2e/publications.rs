//! The publications of spec §4, live, with writes made by another `exosphere` process.

use crate::common::{Server, fixture, import, import_text};
use serde_json::{Value, json};

fn stats_line(date: &str, name: &str, version: &str, direct: u64, total: u64) -> String {
    format!(
        "{}\n",
        json!({"collection": "stats", "date": date,
               "doc": {"name": name, "version": version, "directAdds": direct, "totalAdds": total}})
    )
}

#[tokio::test]
async fn login_service_configuration_has_a_client_id_before_ready() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &["--oauth-client-id", "AbCdEf123"],
    );
    let mut ddp = server.ddp().await;

    let (data, ready) = ddp
        .subscribe("cfg", "meteor.loginServiceConfiguration")
        .await;

    assert_eq!(ready["msg"], "ready", "§4.1: {ready}");
    assert_eq!(data.len(), 1, "{data:?}");
    let added = &data[0];
    assert_eq!(
        added["msg"], "added",
        "§4.1 requires `added`, not `changed`"
    );
    assert_eq!(
        added["collection"],
        "meteor_accounts_loginServiceConfiguration"
    );
    assert_eq!(added["fields"]["service"], "meteor-developer");
    assert_eq!(added["fields"]["clientId"], "AbCdEf123");
    assert!(
        added["fields"].get("secret").is_none(),
        "§4.1: never publish a secret"
    );
}

#[tokio::test]
async fn defaults_gives_the_base_sync_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let mut ddp = server.ddp().await;

    let (data, ready) = ddp.subscribe("d", "defaults").await;

    assert_eq!(ready["msg"], "ready");
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["collection"], "defaults");
    assert_eq!(
        data[0]["fields"]["syncToken"],
        json!({"format": "1.1"}),
        "§4.2"
    );
}

#[tokio::test]
async fn changes_moves_live_when_another_process_imports() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    import(&data, &fixture());
    let server = Server::start(&data, &[]);
    let mut ddp = server.ddp().await;

    let (docs, ready) = ddp.subscribe("c", "changes").await;
    assert_eq!(ready["msg"], "ready");
    let counters: std::collections::BTreeMap<String, u64> = docs
        .iter()
        .map(|doc| {
            assert_eq!(doc["msg"], "added");
            assert_eq!(doc["collection"], "changes");
            assert_eq!(
                doc["fields"]["collection"], doc["id"],
                "§4.3: one doc per collection"
            );
            (
                doc["id"].as_str().unwrap().to_owned(),
                doc["fields"]["changes"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(counters.len(), 5);
    assert_eq!(
        counters["versions"], 4039,
        "every imported version counted once"
    );

    let line = std::fs::read_to_string(fixture())
        .unwrap()
        .lines()
        .find(|line| line.contains(r#""collection":"packages""#))
        .map(|line| {
            let mut entry: Value = serde_json::from_str(line).unwrap();
            entry["doc"]["homepage"] = json!("https://example.invalid/changed");
            format!("{entry}\n")
        })
        .unwrap();
    import_text(&data, &line);

    let changed = ddp
        .wait_for(|m| m["msg"] == "changed" && m["collection"] == "changes")
        .await;
    assert_eq!(changed["id"], "packages", "§4.3: {changed}");
    assert_eq!(changed["fields"]["changes"], counters["packages"] + 1);
}

#[tokio::test]
async fn stats_gives_the_day_range_and_follows_new_days() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    import_text(
        &data,
        &[
            stats_line("2024-10-01", "iron:router", "1.0.0", 2, 8),
            stats_line("2024-10-03", "tracker", "1.0.1", 250, 1000),
        ]
        .concat(),
    );
    let server = Server::start(&data, &[]);
    let mut ddp = server.ddp().await;

    let (docs, ready) = ddp.subscribe("s", "stats").await;
    assert_eq!(ready["msg"], "ready");
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["collection"], "stats");
    assert_eq!(docs[0]["fields"]["earliest"], "2024-10-01", "§4.4");
    assert_eq!(docs[0]["fields"]["latest"], "2024-10-03", "§4.4");

    import_text(&data, &stats_line("2024-10-04", "tracker", "1.0.1", 1, 1));
    let changed = ddp
        .wait_for(|m| m["msg"] == "changed" && m["collection"] == "stats")
        .await;
    assert_eq!(
        changed["fields"]["latest"], "2024-10-04",
        "§4.4: latest moves live"
    );
}

#[tokio::test]
async fn unknown_publications_get_nosub_404_and_unsub_gets_nosub() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let mut ddp = server.ddp().await;

    let (data, nosub) = ddp.subscribe("x", "no-such-thing").await;
    assert!(data.is_empty());
    assert_eq!(nosub["msg"], "nosub");
    assert_eq!(nosub["error"]["error"], 404, "§1.2: {nosub}");
    assert_eq!(
        nosub["error"]["reason"],
        "Subscription 'no-such-thing' not found"
    );

    let (_, ready) = ddp.subscribe("d", "defaults").await;
    assert_eq!(ready["msg"], "ready");
    ddp.send(json!({"msg": "unsub", "id": "d"})).await;
    let removed = ddp.recv().await;
    assert_eq!(
        removed["msg"], "removed",
        "§1.2: unsub removes the documents"
    );
    assert_eq!(removed["collection"], "defaults");
    let nosub = ddp.recv().await;
    assert_eq!(
        nosub,
        json!({"msg": "nosub", "id": "d"}),
        "§1.2: then nosub without error"
    );
}
