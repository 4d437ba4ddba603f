//! Choosing the PostgreSQL backend with `--database-url` (or `EXOSPHERE_DATABASE_URL`): the
//! server says which catalog it serves and never shows the URL's password, a database that
//! accepts no writes is told to clients as such, and the commands that work on SQLite's
//! catalog file refuse it, naming PostgreSQL's own tool instead. The
//! flows themselves (import and sync, publishing, usage and rollups, export) run the same test
//! bodies on both backends in their own modules (`Backend`).

use std::path::Path;
use std::process::Output;

use serde_json::json;

use crate::common::{Backend, Server, exosphere, fixture, http_get, import_on};
use crate::pg_database::TestDatabase;
use crate::stats::packages;

/// A password the test server never asks for (trust authentication), written into the
/// database URLs so that the tests can check it appears nowhere.
const PASSWORD: &str = "not-to-be-logged-7f3a";

/// `exosphere <args>` with the catalog in `url`, given through `EXOSPHERE_DATABASE_URL`.
fn with_database_env(url: &str, args: &[&str]) -> Output {
    exosphere()
        .env("EXOSPHERE_DATABASE_URL", url)
        .args(args)
        .output()
        .expect("exosphere runs")
}

#[test]
fn the_server_names_its_postgres_catalog_in_its_startup_log_without_the_password() {
    let database = TestDatabase::new();
    let url = format!("{} password={PASSWORD}", database.url());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log_path = dir.path().join("serve.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let server = Server::start_logging_to(&data, &["--database-url", &url], log);
    let (status, _, _) = http_get(&format!("{}/healthz", server.http));
    assert_eq!(status, 200, "the server answers from PostgreSQL");
    drop(server);
    let log = std::fs::read_to_string(&log_path).unwrap();
    // The startup line of `serve` itself (the read model logs "serving" lines of its own).
    let serving = log
        .lines()
        .find(|line| line.contains("exosphere::commands::serve") && line.contains("serving"))
        .unwrap_or_else(|| panic!("a startup line in {log}"));
    assert!(
        serving.contains(&format!("the PostgreSQL database {}", database.name)),
        "{serving}"
    );
    assert!(!log.contains(PASSWORD), "the password is in the log: {log}");
    assert!(
        data.join("serve.lock").is_file(),
        "the serve lock stays in the data directory"
    );
}

#[test]
fn an_unreachable_database_is_named_without_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("postgres://postgres:{PASSWORD}@127.0.0.1:1/nowhere");
    let output = with_database_env(
        &url,
        &["export", "--data-dir", dir.path().to_str().unwrap()],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("the PostgreSQL database nowhere on 127.0.0.1:1"),
        "{stderr}"
    );
    assert!(!stderr.contains(PASSWORD), "{stderr}");
}

/// Runs `exosphere <command> --data-dir DATA <args>` with `--database-url` and checks that
/// it refuses, naming `instead` and changing nothing in `data`.
fn assert_refused(database: &Backend, data: &Path, command: &str, args: &[&str], instead: &str) {
    let output = exosphere()
        .arg(command)
        .arg("--data-dir")
        .arg(data)
        .args(database.flags())
        .args(args)
        .output()
        .expect("exosphere runs");
    assert!(!output.status.success(), "{command} ran on PostgreSQL");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--database-url"), "{stderr}");
    assert!(stderr.contains(instead), "{command}: {stderr}");
    assert!(stderr.contains("docs/OPERATIONS.md"), "{stderr}");
    assert!(!data.exists(), "{command} touched the data directory");
}

#[test]
fn backup_restore_and_verify_refuse_a_postgres_catalog_naming_the_postgres_tools() {
    let database = Backend::postgres();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("catalog.backup");
    let file = file.to_str().unwrap();
    assert_refused(&database, &data, "backup", &["--output", file], "pg_dump");
    assert_refused(
        &database,
        &data,
        "backup",
        &["--output", file],
        "pg_basebackup",
    );
    assert_refused(
        &database,
        &data,
        "restore",
        &["--input", file],
        "pg_restore",
    );
    assert_refused(&database, &data, "verify", &[], "pg_amcheck");
    assert!(!Path::new(file).exists(), "no backup file was written");
    // The environment variable chooses PostgreSQL as the flag does.
    let Backend::Postgres(test_database) = &database else {
        unreachable!("made as PostgreSQL")
    };
    let output = with_database_env(
        test_database.url(),
        &[
            "backup",
            "--data-dir",
            data.to_str().unwrap(),
            "--output",
            file,
        ],
    );
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("pg_dump"));
}

/// A PostgreSQL catalog that stops accepting writes under a running server
/// (`default_transaction_read_only`, as on a hot standby) is told to DDP clients as the
/// database refusing writes (503), not as a read-only disk of the server's, while reads go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_postgres_catalog_is_told_to_clients_as_the_database_refusing_writes() {
    let backend = Backend::postgres();
    let Backend::Postgres(database) = &backend else {
        unreachable!("made as PostgreSQL")
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    import_on(&backend, &data, &fixture());
    let server = Server::start(
        &data,
        &[&["--stats-count-unknown-packages"][..], &backend.flags()].concat(),
    );
    let (url, name) = (database.url().to_owned(), database.name.clone());
    // New connections start read-only, and the server's are ended so that it opens new
    // ones. The blocking client refuses to run inside the test's runtime: a thread of its own.
    std::thread::spawn(move || {
        postgres::Client::connect(&url, postgres::NoTls)
            .expect("the test database answers")
            .batch_execute(&format!(
                "ALTER DATABASE {name} SET default_transaction_read_only = on; \
                 SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            ))
            .expect("the database turns read-only");
    })
    .join()
    .unwrap();
    let mut ddp = server.ddp().await;
    let report = json!(["app-ro", packages(&[("tracker", "1.0.0", false, true)]), {}]);
    // A call may first meet a connection the database ended; the next ones get new ones.
    let mut answers = Vec::new();
    for _ in 0..10 {
        let answer = ddp.call("recordAppPackages", report.clone()).await;
        let refused = answer["error"]["error"] == 503;
        answers.push(answer);
        if refused {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let answer = answers.last().expect("a call was made");
    assert_eq!(answer["error"]["error"], 503, "{answers:?}");
    let reason = answer["error"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("its database accepts no writes"),
        "{answer}"
    );
    assert!(!reason.contains("disk"), "{answer}");
    let (status, _, _) = http_get(&format!("{}/healthz", server.http));
    assert_eq!(status, 200, "reads go on");
}
