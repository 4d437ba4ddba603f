//! The audit log and immutability end to end (issue 15 part 5): accounts made with the CLI,
//! publishing methods called over a real WebSocket, then `exosphere audit` reading who did
//! what, when and from where; failed logins refused over their limit; and a published
//! version whose content no write can change, while its metadata still can.

use serde_json::{Value, json};

use crate::common::{Ddp, Server, assert_success, run};
use crate::publish::{World, export, login, ok, publish_build, publish_version, refused, world};

/// `exosphere audit --json` with `extra` flags: one object per line.
fn audit(data: &std::path::Path, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["audit", "--json", "--data-dir", data.to_str().unwrap()];
    args.extend_from_slice(extra);
    let output = run(&args);
    assert_success(&output);
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect()
}

fn actions(entries: &[Value]) -> Vec<&str> {
    entries
        .iter()
        .map(|entry| entry["action"].as_str().unwrap())
        .collect()
}

/// A server on the fixture catalog where alice, logged in on the session returned, has
/// published `name@1.0.0` and its `os+web.browser` build.
async fn published_by_alice(name: &str) -> (World, Server, Ddp) {
    let world = world();
    let server = Server::start(&world.data, &[]);
    let mut alice = login(&server, &world.alice).await;
    publish_version(&mut alice, name, "1.0.0", true).await;
    publish_build(&mut alice, name, "1.0.0", "os+web.browser").await;
    (world, server, alice)
}

#[tokio::test]
async fn the_audit_log_says_who_did_what_when_and_from_where() {
    let (world, server, mut alice) = published_by_alice("acme:widget").await;
    let version = json!({"packageName": "acme:widget", "version": "1.0.0"});
    let metadata = json!({"description": "A better widget"});
    ok(
        &mut alice,
        "changeVersionMetadata",
        json!([version, metadata]),
    )
    .await;
    ok(
        &mut alice,
        "addMaintainer",
        json!(["acme:widget", "mallory"]),
    )
    .await;
    let homepage = json!(["acme:widget", "https://example.com/widget"]);
    ok(&mut alice, "_changePackageHomepage", homepage).await;
    // A refused call changes nothing, so it records nothing.
    refused(
        &mut alice,
        "addMaintainer",
        json!(["acme:widget", "nobody"]),
    )
    .await;
    let mut stranger = server.ddp().await;
    let answer = stranger
        .call("login", json!([{"resume": "not-a-token"}]))
        .await;
    assert_eq!(answer["error"]["error"], 403, "{answer}");

    let everything = audit(&world.data, &["--limit", "0"]);
    let times: Vec<&str> = everything
        .iter()
        .map(|e| e["time"].as_str().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|pair| pair[0] >= pair[1]),
        "newest first: {times:?}"
    );
    let mut oldest_first = actions(&everything);
    oldest_first.reverse();
    assert_eq!(
        oldest_first,
        [
            "user.add",
            "user.add",
            "user.add",
            "org.add",
            "org.member.add",
            "token.create",
            "token.create",
            "login",
            "package.create",
            "version.create",
            "version.publish",
            "build.create",
            "build.publish",
            "version.metadata",
            "maintainer.add",
            "package.homepage",
            "login.failed",
        ]
    );
    let cli = &everything[everything.len() - 1];
    assert!(cli["actor"].as_str().unwrap().starts_with("cli"), "{cli}");
    assert_eq!(cli["address"], Value::Null);
    let failed = &everything[0];
    assert_eq!(failed["actor"], "anonymous");
    assert_eq!(failed["address"], "127.0.0.1");
    assert_eq!(failed["detail"]["reason"], "unknown or revoked token");

    let widget = audit(&world.data, &["--package", "acme:widget"]);
    assert_eq!(widget.len(), 8, "{widget:?}");
    for entry in &widget {
        assert_eq!(entry["actor"], "alice", "{entry}");
        assert_eq!(entry["address"], "127.0.0.1", "{entry}");
    }
    assert_eq!(
        widget[0]["detail"]["homepage"],
        "https://example.com/widget"
    );
    assert_eq!(widget[1]["detail"]["maintainer"], "mallory");
    assert_eq!(widget[2]["detail"]["description"], "A better widget");
    assert_eq!(widget[3]["target"], "acme:widget@1.0.0");
    assert_eq!(widget[3]["detail"]["buildArchitectures"], "os+web.browser");

    let alice_entries = audit(&world.data, &["--user", "alice", "--limit", "2"]);
    assert_eq!(
        actions(&alice_entries),
        ["package.homepage", "maintainer.add"]
    );
    assert!(audit(&world.data, &["--since", "2999-01-01"]).is_empty());
    assert_eq!(
        audit(&world.data, &["--until", "2999-01-01"]).len(),
        everything.len()
    );

    let text = run(&[
        "audit",
        "--data-dir",
        world.data.to_str().unwrap(),
        "--limit",
        "0",
    ]);
    assert_success(&text);
    let text = String::from_utf8(text.stdout).unwrap();
    assert_eq!(text.lines().count(), everything.len());
    assert!(
        !text.contains(&world.alice) && !text.contains(&world.mallory),
        "the log never holds a token's secret"
    );
    let wrong = run(&[
        "audit",
        "--data-dir",
        world.data.to_str().unwrap(),
        "--since",
        "monday",
    ]);
    assert!(!wrong.status.success());
    let said = String::from_utf8(wrong.stderr).unwrap();
    assert!(
        said.contains("exosphere audit --since 2026-12-01"),
        "{said}"
    );
}

#[tokio::test]
async fn failed_logins_are_refused_over_their_limit_and_logged() {
    let world = world();
    let server = Server::start(&world.data, &["--login-failures-per-address", "3"]);
    let mut guesser = server.ddp().await;
    for guess in 0..3 {
        let answer = guesser
            .call("login", json!([{"resume": format!("guess {guess}")}]))
            .await;
        assert_eq!(answer["error"]["error"], 403, "{answer}");
    }
    let answer = guesser.call("login", json!([{"resume": "guess 3"}])).await;
    assert_eq!(answer["error"]["error"], "too-many-requests", "{answer}");
    assert!(answer["error"]["details"]["timeToReset"].as_u64().unwrap() > 0);
    // From the same address, even a good token waits for the window to end.
    let answer = guesser
        .call("login", json!([{"resume": world.alice}]))
        .await;
    assert_eq!(answer["error"]["error"], "too-many-requests", "{answer}");

    let failed = audit(&world.data, &["--user", "anonymous"]);
    assert_eq!(
        actions(&failed),
        ["login.failed"; 3],
        "refused attempts write nothing"
    );
    assert!(audit(&world.data, &["--user", "alice"]).is_empty());
}

#[tokio::test]
async fn a_published_versions_content_never_changes_but_its_metadata_does() {
    let (world, _server, mut alice) = published_by_alice("acme:fixed").await;
    let version = json!({"packageName": "acme:fixed", "version": "1.0.0"});
    let metadata = json!({"description": "Still fixed", "git": "", "longDescription": "More."});
    ok(
        &mut alice,
        "changeVersionMetadata",
        json!([version, metadata]),
    )
    .await;
    ok(
        &mut alice,
        "_changeVersionMigrationStatus",
        json!(["acme:fixed", "1.0.0", true]),
    )
    .await;
    let error = refused(
        &mut alice,
        "createPackageVersion",
        json!([crate::publish::version_record("acme:fixed", "1.0.0")]),
    )
    .await;
    assert_eq!(error["error"], 409, "{error}");

    let before = export(&world.data);
    let published = before
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .find(|entry| {
            entry["collection"] == "versions" && entry["doc"]["packageName"] == "acme:fixed"
        })
        .unwrap();
    assert_eq!(published["doc"]["description"], "Still fixed");
    assert_eq!(published["doc"]["unmigrated"], true);
    for (field, value) in [
        ("/source/tarballHash", json!("AAAA")),
        ("/dependencies/meteor", json!({"constraint": "9.9.9"})),
    ] {
        let mut changed = published.clone();
        *changed.pointer_mut(&format!("/doc{field}")).unwrap() = value;
        let dump = world.data.with_extension("changed.ndjson");
        std::fs::write(&dump, format!("{changed}\n")).unwrap();
        let output = run(&[
            "import",
            "--data-dir",
            world.data.to_str().unwrap(),
            dump.to_str().unwrap(),
        ]);
        assert!(!output.status.success(), "{field} must not change");
        let said = String::from_utf8(output.stderr).unwrap();
        assert!(
            said.contains("published") && said.contains("new version"),
            "{said}"
        );
        assert_eq!(
            export(&world.data),
            before,
            "a refused write changes nothing"
        );
    }
}
