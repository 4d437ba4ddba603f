//! A PostgreSQL catalog put back in time (here: the database replaced by a copy taken
//! earlier, as pg_restore or a failover to a lagging standby would leave it): a server that
//! saw the newer head starts a new data epoch at startup, so a client holding the newer
//! cursor gets `resetData` (spec §3.5) instead of skipping the records that reuse its
//! sequence numbers; `exosphere epoch new` starts one by hand; a seen-head file of another
//! epoch starts nothing; and a server records the head it stops at.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use serde_json::json;

use crate::backup::packages;
use crate::common::{Backend, Server, assert_success, exosphere, import_on, sync_loop};
use crate::pg_database::{TestDatabase, admin_execute};

/// A copy of a database taken with `CREATE DATABASE … TEMPLATE`, dropped on drop.
struct Snapshot(String);

impl Snapshot {
    /// Copies `database` (no connection may be open to it).
    fn of(database: &TestDatabase) -> Snapshot {
        let name = format!("{}_snap", database.name);
        admin_execute(format!("CREATE DATABASE {name} TEMPLATE {}", database.name))
            .expect("the snapshot is taken");
        Snapshot(name)
    }

    /// Puts `database` back as it was when this copy was taken.
    fn restore(&self, database: &TestDatabase) {
        admin_execute(format!("DROP DATABASE {} WITH (FORCE)", database.name))
            .expect("the database is dropped");
        admin_execute(format!(
            "CREATE DATABASE {} TEMPLATE {}",
            database.name, self.0
        ))
        .expect("the database is restored");
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        let _ = admin_execute(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0));
    }
}

/// The database of a PostgreSQL backend.
fn database(backend: &Backend) -> &TestDatabase {
    match backend {
        Backend::Postgres(database) => database,
        Backend::Sqlite => unreachable!("these tests run on PostgreSQL"),
    }
}

/// Imports `count` new packages named `<prefix>-<i>`.
fn import_packages(backend: &Backend, data: &Path, prefix: &str, count: usize) {
    let file = data.with_extension(format!("{prefix}.ndjson"));
    std::fs::write(&file, packages(prefix, count)).expect("the dump is written");
    import_on(backend, data, &file);
}

/// A new data directory with a catalog of three packages in a PostgreSQL database of its own:
/// the temporary directory (keep it alive), the data directory and the backend.
fn three_packages() -> (tempfile::TempDir, PathBuf, Backend) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let backend = Backend::postgres();
    import_packages(&backend, &data, "some", 3);
    (dir, data, backend)
}

/// Runs `exosphere <args> --data-dir DATA` on `backend` and asserts it succeeded.
fn command(backend: &Backend, data: &Path, args: &[&str]) -> Output {
    let output = exosphere()
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .args(backend.flags())
        .output()
        .expect("exosphere runs");
    assert_success(&output);
    output
}

/// The catalog's data epoch, as the store reads it.
fn epoch(backend: &Backend, data: &Path) -> String {
    backend.open(data).state().expect("the state reads").epoch
}

/// Starts a server on `data` and asserts that its startup check kept the catalog's epoch.
fn assert_start_keeps_epoch(backend: &Backend, data: &Path) {
    let before = epoch(backend, data);
    // The check runs before the server says it listens; nothing else is needed from it.
    drop(Server::start(data, &backend.flags()));
    assert_eq!(epoch(backend, data), before);
}

/// Stops `server` as `docker stop` does and checks it exited cleanly.
fn stop(mut server: Server) {
    server.signal_terminate();
    assert!(server.wait_exit(Duration::from_secs(20)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_database_starts_a_new_epoch_at_startup_and_clients_reset_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let backend = Backend::postgres();
    import_packages(&backend, &data, "before", 5);
    let snapshot = Snapshot::of(database(&backend));

    // The server sees the catalog move on while it runs, and a client syncs all of it.
    let server = Server::start(&data, &backend.flags());
    import_packages(&backend, &data, "after", 20);
    let mut ddp = server.ddp().await;
    let synced = sync_loop(&mut ddp, json!({"format": "1.1"}), json!({})).await;
    assert_eq!(synced.catalog["packages"].len(), 25);
    drop(ddp);
    std::thread::sleep(Duration::from_secs(2)); // The seen-head file follows within a second.
    stop(server);
    let old_epoch = epoch(&backend, &data);

    snapshot.restore(database(&backend));
    assert_eq!(
        epoch(&backend, &data),
        old_epoch,
        "a restore keeps the epoch"
    );
    let log_path = dir.path().join("restarted.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let server = Server::start_logging_to(&data, &backend.flags(), log);
    let mut ddp = server.ddp().await;
    let resumed = sync_loop(&mut ddp, synced.token, json!({})).await;
    assert_eq!(resumed.pages[0]["resetData"], true, "{}", resumed.pages[0]);
    assert_eq!(resumed.catalog["packages"].len(), 5);
    assert_ne!(epoch(&backend, &data), old_epoch);
    drop(ddp);
    stop(server);
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("started a new data epoch"), "{log}");

    // Started again on the same catalog, nothing goes back: the epoch stays.
    assert_start_keeps_epoch(&backend, &data);
}

#[test]
fn a_seen_head_file_of_another_epoch_starts_nothing_and_one_of_this_epoch_does_whatever_its_name() {
    let (_dir, data, backend) = three_packages();
    std::fs::create_dir_all(&data).unwrap();
    let write = |epoch: &str| {
        std::fs::write(
            data.join("seen-head.json"),
            json!({"catalog": "the PostgreSQL database other on db:5432",
                   "epoch": epoch, "head_seq": 1_000_000})
            .to_string(),
        )
        .unwrap();
    };
    write("another epoch");
    assert_start_keeps_epoch(&backend, &data);

    std::fs::write(data.join("seen-head.json"), "not json").unwrap();
    assert_start_keeps_epoch(&backend, &data);

    // The same epoch seen further on under another name (a standby promoted on another
    // host): the head went back all the same.
    let before = epoch(&backend, &data);
    write(&before);
    drop(Server::start(&data, &backend.flags()));
    assert_ne!(
        epoch(&backend, &data),
        before,
        "a new data epoch was started"
    );
}

#[test]
fn epoch_new_starts_a_new_epoch_and_audits_it() {
    let (_dir, data, backend) = three_packages();
    let old = epoch(&backend, &data);
    let output = command(&backend, &data, &["epoch", "new"]);
    let new = epoch(&backend, &data);
    assert_ne!(new, old);
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        printed.contains(&old) && printed.contains(&new),
        "{printed}"
    );
    let audit = command(&backend, &data, &["audit"]);
    let audit = String::from_utf8_lossy(&audit.stdout);
    assert!(audit.contains("epoch.start"), "{audit}");
}

/// A server records the catalog's head when it stops, so a head that moved on in its last
/// moments (here: an import its watcher, polling every ten minutes on SQLite, which gives no
/// change hints, never saw) is the one its next start compares with.
#[test]
fn a_server_records_the_head_it_stops_at() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let backend = Backend::Sqlite;
    import_packages(&backend, &data, "before", 2);
    let server = Server::start(&data, &["--watch-interval", "10m"]);
    import_packages(&backend, &data, "after", 3);
    stop(server);
    let recorded: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("seen-head.json")).unwrap()).unwrap();
    let state = backend.open(&data).state().unwrap();
    assert_eq!(recorded["head_seq"], state.head_seq, "{recorded}");
    assert_eq!(recorded["epoch"], state.epoch.as_str());
}
