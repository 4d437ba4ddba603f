//! `exosphere backup`, `restore` and `verify` end to end: backups taken from a served data
//! directory while imports write to it, restored under a real server whose clients synced
//! past the backup, refused while a server runs, and checked against a real file store.

use std::path::{Path, PathBuf};
use std::process::Output;

use base64::Engine as _;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::common::{
    COLLECTIONS, Server, assert_success, exosphere, fixture, import, import_text, read_dump,
    sync_loop,
};

/// Runs `exosphere <command> --data-dir DATA <args>`.
fn command(name: &str, data: &Path, args: &[&str]) -> Output {
    exosphere()
        .arg(name)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .expect("exosphere runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// `exosphere backup --data-dir DATA --output FILE`, asserted to succeed.
fn backup(data: &Path, file: &Path) {
    assert_success(&command("backup", data, &["--output", path_str(file)]));
}

/// The data directory's catalog as an export: (collection → _id → record, stats rows).
fn export(data: &Path) -> crate::common::Catalog {
    let output = command("export", data, &[]);
    assert_success(&output);
    read_dump(&stdout(&output)).0
}

/// A dump of `count` new packages named `<prefix>-<i>`.
pub(crate) fn packages(prefix: &str, count: usize) -> String {
    (0..count)
        .map(|i| {
            format!(
                "{}\n",
                json!({"collection": "packages", "doc": {
                    "_id": format!("{prefix}-{i}"), "name": format!("{prefix}:p{i}"),
                    "lastUpdated": {"$date": 1_700_000_000_000_i64}
                }})
            )
        })
        .collect()
}

/// The base64 SHA-256 of `bytes`, as records carry tarball hashes.
fn sha256(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(bytes))
}

/// Imports a version record whose source tarball was published here under `key` with the
/// hash of `bytes`, and writes `stored` (when given) into the data directory's file store.
fn published_file(data: &Path, id: &str, key: &str, bytes: &[u8], stored: Option<&[u8]>) {
    import_text(
        data,
        &format!(
            "{}\n",
            json!({"collection": "versions", "doc": {
                "_id": id, "packageName": "acme:files", "version": format!("1.0.{}", id.len()),
                "source": {"url": format!("http://127.0.0.1:1/{key}"), "tarballHash": sha256(bytes)},
                "lastUpdated": {"$date": 1_700_000_000_000_i64}
            }})
        ),
    );
    if let Some(stored) = stored {
        store_file(data, key, stored);
    }
}

/// Writes `bytes` as the file `key` of the data directory's file store.
fn store_file(data: &Path, key: &str, bytes: &[u8]) {
    let path = data.join("files").join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn backups_taken_while_a_server_serves_and_imports_write_are_consistent_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    import(&data, &fixture());
    published_file(
        &data,
        "pubA",
        "packages/acme_files/1.0.4/x1/acme_files.tgz",
        b"tarball",
        Some(b"tarball"),
    );
    let _server = Server::start(&data, &[]);

    // Imports of 40 packages each, one transaction apiece, go on while backups are taken.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (data, stop) = (data.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut round = 0;
            while round < 3 || !stop.load(std::sync::atomic::Ordering::SeqCst) {
                import_text(&data, &packages(&format!("round{round}"), 40));
                round += 1;
            }
            round
        })
    };
    let mut files = Vec::new();
    for i in 0..4 {
        let file = dir.path().join(format!("backup-{i}.exosphere"));
        backup(&data, &file);
        files.push(file);
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let rounds_written = writer.join().unwrap();
    assert!(rounds_written >= 3);

    for (i, file) in files.iter().enumerate() {
        let verified = command("verify", &data, &["--backup", path_str(file)]);
        assert_success(&verified);
        assert!(
            stdout(&verified).contains("1 good, 0 mirrored not cached"),
            "{}",
            stdout(&verified)
        );
        // Restored on its own, each backup holds whole imports only: every round is all in
        // or all out, and the fixture and the published version are always there.
        let restored = dir.path().join(format!("restored-{i}"));
        assert_success(&command("restore", &restored, &["--input", path_str(file)]));
        assert_success(&command(
            "verify",
            &restored,
            &["--files-dir", path_str(&data.join("files"))],
        ));
        let catalog = export(&restored);
        let mut rounds = std::collections::BTreeMap::<String, usize>::new();
        for id in catalog["packages"].keys() {
            if let Some((round, _)) = id.split_once('-').filter(|(r, _)| r.starts_with("round")) {
                *rounds.entry(round.to_owned()).or_default() += 1;
            }
        }
        assert!(rounds.values().all(|&n| n == 40), "{rounds:?}");
        assert!(catalog["versions"].contains_key("pubA"));
        let fixture = read_dump(&std::fs::read_to_string(fixture()).unwrap()).0;
        assert!(catalog["builds"].len() >= fixture["builds"].len());
    }
    // A backup taken after the imports holds every round.
    let last = dir.path().join("last.exosphere");
    backup(&data, &last);
    let restored = dir.path().join("restored-last");
    assert_success(&command(
        "restore",
        &restored,
        &["--input", path_str(&last)],
    ));
    assert_eq!(export(&restored), export(&data));
    // Nothing but the finished files is left beside them.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.'))
        .collect();
    names.sort();
    assert!(names.is_empty(), "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restoring_an_older_backup_resets_clients_once_then_serves_it_in_full() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    import(&data, &fixture());
    let file = dir.path().join("older.exosphere");
    backup(&data, &file);

    // The catalog moves on, and a client syncs all of it: its cursors pass the backup's head.
    import_text(&data, &packages("after-backup", 30));
    let mut server = Server::start(&data, &[]);
    let mut ddp = server.ddp().await;
    let before = sync_loop(&mut ddp, json!({"format": "1.1"}), json!({})).await;
    assert_eq!(
        before.catalog["packages"].len(),
        export(&data)["packages"].len()
    );
    drop(ddp);
    server.signal_terminate();
    assert!(
        server
            .wait_exit(std::time::Duration::from_secs(20))
            .success()
    );

    let restored = command("restore", &data, &["--input", path_str(&file), "--force"]);
    assert_success(&restored);
    assert!(
        stdout(&restored).contains("new data epoch"),
        "{}",
        stdout(&restored)
    );
    // Records written after the restore take the sequence numbers the client already holds.
    import_text(&data, &packages("after-restore", 30));
    let expected = export(&data);
    assert!(!expected["packages"].contains_key("after-backup-0"));

    let server = Server::start(&data, &[]);
    let mut ddp = server.ddp().await;
    let after = sync_loop(&mut ddp, before.token.clone(), json!({})).await;
    let resets: Vec<bool> = after
        .pages
        .iter()
        .map(|page| page["resetData"] == true)
        .collect();
    assert!(resets[0], "the first page resets the client");
    assert_eq!(
        resets.iter().filter(|&&reset| reset).count(),
        1,
        "{resets:?}"
    );
    for name in COLLECTIONS {
        assert_eq!(
            after.catalog.get(name).cloned().unwrap_or_default(),
            expected.get(name).cloned().unwrap_or_default(),
            "{name}"
        );
    }
    assert_ne!(after.token["epoch"], before.token["epoch"]);
    // Converged: the next sync from the new token is no reset and brings nothing.
    let again = sync_loop(&mut ddp, after.token.clone(), json!({})).await;
    assert!(again.pages.iter().all(|page| page["resetData"] == false));
    assert!(again.catalog.values().all(|records| records.is_empty()));
}

#[test]
fn restore_refuses_while_a_server_runs_and_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    import_text(&data, &packages("first", 5));
    let file = dir.path().join("b.exosphere");
    backup(&data, &file);
    import_text(&data, &packages("second", 5));
    let catalog = export(&data);

    let mut server = Server::start(&data, &[]);
    let refused = command("restore", &data, &["--input", path_str(&file), "--force"]);
    assert!(!refused.status.success());
    let error = stderr(&refused);
    assert!(error.contains("stop the server first"), "{error}");
    assert!(error.contains(&format!("pid {}", server.pid())), "{error}");
    server.signal_terminate();
    assert!(
        server
            .wait_exit(std::time::Duration::from_secs(20))
            .success()
    );

    let refused = command("restore", &data, &["--input", path_str(&file)]);
    assert!(!refused.status.success());
    let error = stderr(&refused);
    assert!(error.contains("already holds a catalog"), "{error}");
    assert!(error.contains("--force"), "{error}");
    assert_eq!(export(&data), catalog);
    assert_eq!(replaced(&data), Vec::<PathBuf>::new());

    assert_success(&command(
        "restore",
        &data,
        &["--input", path_str(&file), "--force"],
    ));
    assert!(!export(&data)["packages"].contains_key("second-0"));
    assert_eq!(replaced(&data).len(), 1, "the replaced catalog is kept");
}

/// The catalogs a restore moved aside in `data`.
fn replaced(data: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(data)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path_str(path).contains("catalog.sqlite3.replaced-"))
        .collect()
}

#[test]
fn verify_names_missing_and_damaged_files_and_restore_refuses_a_damaged_backup() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let good = "packages/acme_files/1.0.4/a1/good.tgz";
    let damaged = "packages/acme_files/1.0.5/a2/damaged.tgz";
    let missing = "packages/acme_files/1.0.6/a3/missing.tgz";
    published_file(&data, "good", good, b"good bytes", Some(b"good bytes"));
    published_file(
        &data,
        "dmgd1",
        damaged,
        b"right bytes",
        Some(b"wrong bytes"),
    );
    published_file(&data, "missng", missing, b"lost bytes", None);

    let failed = command("verify", &data, &[]);
    assert!(!failed.status.success());
    let (out, error) = (stdout(&failed), stderr(&failed));
    assert!(out.contains(&format!("missing: {missing}")), "{out}");
    assert!(out.contains(&format!("wrong hash: {damaged}")), "{out}");
    assert!(!out.contains(&format!(": {good}")), "{out}");
    assert!(
        out.contains("database ok; 3 files referenced: 1 good"),
        "{out}"
    );
    assert!(
        error.contains("copy them back from the file store's backup"),
        "{error}"
    );

    // The backup's manifest names the same files; checked against the same store, it fails
    // the same way, and passes once the files are back.
    let file = dir.path().join("b.exosphere");
    backup(&data, &file);
    assert!(
        !command("verify", &data, &["--backup", path_str(&file)])
            .status
            .success()
    );
    store_file(&data, damaged, b"right bytes");
    store_file(&data, missing, b"lost bytes");
    let verified = command("verify", &data, &["--backup", path_str(&file)]);
    assert_success(&verified);
    assert!(
        stdout(&verified).contains("3 good"),
        "{}",
        stdout(&verified)
    );
    assert_success(&command("verify", &data, &[]));

    // A backup damaged on its way is refused, and changes nothing.
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    for byte in &mut bytes[middle..middle + 4096] {
        *byte = 0xA5;
    }
    std::fs::write(&file, &bytes).unwrap();
    let catalog = export(&data);
    let refused = command("restore", &data, &["--input", path_str(&file), "--force"]);
    assert!(!refused.status.success());
    let error = stderr(&refused);
    assert!(error.contains("nothing was changed"), "{error}");
    assert_eq!(export(&data), catalog);
    assert!(replaced(&data).is_empty());
    assert!(
        !command("verify", &data, &["--backup", path_str(&file)])
            .status
            .success()
    );
}

#[test]
fn backup_and_verify_of_a_directory_without_a_catalog_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nothing-here");
    let file = dir.path().join("b.exosphere");
    for output in [
        command("backup", &data, &["--output", path_str(&file)]),
        command("verify", &data, &[]),
    ] {
        assert!(!output.status.success());
        let error = stderr(&output);
        assert!(error.contains("there is no catalog in"), "{error}");
    }
    assert!(!file.exists());
    assert!(!data.join("catalog.sqlite3").exists());
}

/// Every file under `dir`, as paths relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path_str(path.strip_prefix(dir).unwrap()).to_owned());
            }
        }
    }
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_taken_while_packages_are_published_list_their_files_and_verify() {
    use crate::publish::{login, publish_build, publish_version, serve, world};
    let world = world();
    let server = serve(&world.data, &[]);
    let mut ddp = login(&server, &world.alice).await;
    let out = tempfile::tempdir().unwrap();

    // Backups run while versions and builds are published: none may name a file the store
    // does not hold (files go into place before their records become visible).
    let backups = {
        let (data, out) = (world.data.clone(), out.path().to_owned());
        std::thread::spawn(move || {
            (0..3)
                .map(|i| {
                    let file = out.join(format!("during-{i}.exosphere"));
                    backup(&data, &file);
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    file
                })
                .collect::<Vec<_>>()
        })
    };
    for i in 0..3 {
        let version = format!("1.0.{i}");
        publish_version(&mut ddp, "acme:widget", &version, i == 0).await;
        publish_build(&mut ddp, "acme:widget", &version, "os+web.browser").await;
    }
    for file in backups.join().unwrap() {
        let verified = command("verify", &world.data, &["--backup", path_str(&file)]);
        assert_success(&verified);
    }

    // Afterwards: three versions' source and README, and three builds.
    let last = out.path().join("last.exosphere");
    backup(&world.data, &last);
    let verified = command("verify", &world.data, &["--backup", path_str(&last)]);
    assert_success(&verified);
    let report = stdout(&verified);
    assert!(report.contains("9 files in its manifest"), "{report}");
    assert!(report.contains("9 good"), "{report}");
    let stored = files_under(&world.data.join("files"));
    let published: Vec<&String> = stored
        .iter()
        .filter(|key| key.starts_with("packages/"))
        .collect();
    assert_eq!(published.len(), 9, "{stored:?}");

    // One published file lost from the store: both checks name it.
    std::fs::remove_file(world.data.join("files").join(published[0])).unwrap();
    for args in [vec![], vec!["--backup", path_str(&last)]] {
        let failed = command("verify", &world.data, &args);
        assert!(!failed.status.success());
        assert!(
            stdout(&failed).contains(&format!("missing: {}", published[0])),
            "{}",
            stdout(&failed)
        );
    }
}
