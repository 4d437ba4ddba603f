//! `exosphere migrate` end to end: a data directory with published packages, accounts and
//! tokens, a publish under way, recorded and rolled-up usage and stats rows moves into
//! PostgreSQL; a server on it syncs the very records the SQLite one did (same epoch, so a
//! client's token stays valid), serves the same stats, and takes the old tokens; the
//! catalog moves back into a new directory unchanged; a target holding anything is refused.

use std::path::Path;
use std::process::Output;

use chrono::NaiveDate;
use serde_json::{Value, json};

use crate::common::{Ddp, assert_success, run, serve_fixture, sync_loop};
use crate::pg_database::TestDatabase;
use crate::publish::{export, login, new_package, ok, serve, world};
use crate::stats::{record_past, rollup, stats_file};

/// `exosphere migrate --from FROM --to TO`.
fn migrate(from: &str, to: &str) -> Output {
    run(&["migrate", "--from", from, "--to", to])
}

/// A full sync from scratch, as the tool's first sync runs it: every page and the catalog.
async fn full_sync(ddp: &mut Ddp) -> (Vec<Value>, Value) {
    let outcome = sync_loop(ddp, json!({"format": "1.1"}), json!({})).await;
    let records: Vec<Value> = outcome
        .pages
        .iter()
        .map(|page| page["collections"].clone())
        .collect();
    (records, outcome.token)
}

#[tokio::test]
async fn a_data_directory_moves_into_postgres_and_back_and_serves_the_same_catalog() {
    let world = world();
    let data = world.data.to_str().unwrap().to_owned();
    let day = NaiveDate::from_ymd_opt(2024, 10, 1).unwrap();
    record_past(
        &world.data,
        day,
        &[("app-1", &[("tracker", "1.0.0", true)])],
    );
    rollup(&world.data, &["--date", "2024-10-01"]);

    let server = serve(&world.data, &[]);
    let mut alice = login(&server, &world.alice).await;
    // A published package, then a version whose files never came: a pending publish.
    new_package(&mut alice, "acme:moved").await;
    let (sqlite_pages, sqlite_token) = full_sync(&mut server.ddp().await).await;
    let sqlite_stats = stats_file(&server, day);
    drop(alice);
    drop(server);

    let database = TestDatabase::new();
    let migrated = migrate(&data, database.url());
    assert_success(&migrated);
    let said = String::from_utf8_lossy(&migrated.stderr);
    assert!(said.contains("verified"), "{said}");
    assert!(
        said.contains("pending"),
        "the pending publish moved: {said}"
    );
    assert!(said.contains("usage_adds"), "usage moved: {said}");

    let pg_dir = tempfile::tempdir().unwrap();
    let pg_server = serve(pg_dir.path(), &["--database-url", database.url()]);
    let mut ddp = pg_server.ddp().await;
    let (pg_pages, pg_token) = full_sync(&mut ddp).await;
    assert_eq!(pg_pages, sqlite_pages, "the same records, page for page");
    assert_eq!(
        pg_token, sqlite_token,
        "the same epoch and sequence numbers"
    );
    let resumed = ddp
        .call("syncNewPackageData", json!([sqlite_token, {}]))
        .await;
    assert_eq!(resumed["result"]["upToDate"], true, "{resumed}");
    assert_ne!(resumed["result"]["resetData"], true, "{resumed}");
    assert_eq!(stats_file(&pg_server, day), sqlite_stats);
    let mut alice = login(&pg_server, &world.alice).await;
    ok(
        &mut alice,
        "createPackage",
        json!([{"name": "acme:after-the-move"}]),
    )
    .await;
    drop(alice);
    let beside_server = tempfile::tempdir().unwrap();
    let refused = migrate(database.url(), beside_server.path().to_str().unwrap());
    assert!(!refused.status.success());
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(
        error.contains("server(s) run on") && error.contains("Stop every server"),
        "{error}"
    );
    drop(pg_server);

    let refused = migrate(&data, database.url());
    assert!(!refused.status.success());
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(error.contains("is not empty"), "{error}");
    assert!(error.contains("createdb"), "names what to do: {error}");

    let back = tempfile::tempdir().unwrap();
    let back_data = back.path().join("data");
    assert_success(&migrate(database.url(), back_data.to_str().unwrap()));
    let moved_back = export(&back_data);
    assert!(moved_back.contains("acme:moved") && moved_back.contains("acme:after-the-move"));
    let refused = migrate(database.url(), back_data.to_str().unwrap());
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && error.contains("is not empty"),
        "{error}"
    );
    assert_catalog_equal(&back_data, database.url());
}

/// The export of a data directory equals the export of a PostgreSQL catalog, byte for
/// byte.
fn assert_catalog_equal(data: &Path, url: &str) {
    let pg_dir = tempfile::tempdir().unwrap();
    let output = run(&[
        "export",
        "--data-dir",
        pg_dir.path().to_str().unwrap(),
        "--database-url",
        url,
    ]);
    assert_success(&output);
    assert_eq!(String::from_utf8(output.stdout).unwrap(), export(data));
}

#[test]
fn a_missing_source_and_a_busy_directory_are_refused_with_the_next_step() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing");
    let target = dir.path().join("target");
    let refused = migrate(missing.to_str().unwrap(), target.to_str().unwrap());
    assert!(!refused.status.success());
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(error.contains("there is no catalog in"), "{error}");

    let (_dir, data, server) = serve_fixture();
    let refused = migrate(data.to_str().unwrap(), target.to_str().unwrap());
    assert!(!refused.status.success());
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(error.contains("stop that server"), "{error}");
    drop(server);
}

#[test]
fn an_empty_or_schemaless_source_is_refused_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target");
    let database = TestDatabase::new();
    let refused = migrate(database.url(), target.to_str().unwrap());
    assert!(!refused.status.success());
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(error.contains("holds no Exosphere catalog"), "{error}");
    let created = run(&[
        "user",
        "list",
        "--data-dir",
        dir.path().join("pg").to_str().unwrap(),
        "--database-url",
        database.url(),
    ]);
    assert_success(&created);
    let refused = migrate(database.url(), target.to_str().unwrap());
    assert!(!refused.status.success());
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(error.contains("holds an empty catalog"), "{error}");
    assert!(error.contains("check --from"), "{error}");
}
