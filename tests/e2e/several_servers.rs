//! Several `exosphere serve` processes on one PostgreSQL database (and, where files are
//! published, one S3 bucket) behave as one server: the same catalog and accounts through
//! either, upload URLs of one taken by another, live `changes` everywhere, one server's
//! crash losing nothing another committed, and the jobs they share (the daily rollup, the
//! schema's creation, the mirror) done once. Each test has a database of its own.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{Days, Utc};
use serde_json::{Value, json};

use crate::common::{
    Backend, Ddp, PATIENCE, Server, fixture, http_get, import_on, serve_fixture, sync_loop,
};
use crate::mirror::{mirror_of, wait_status};
use crate::pg_database::TestDatabase;
use crate::publish::{
    S3, World, assert_downloads, file, login, new_package, publish_files, publish_version, put,
    put_when_free, read_response, serve, start_upload, world_on,
};
use crate::stats::{record_past_on, stats_file};

/// How soon a write through one server must reach `changes` subscribers of another (issue
/// 12, part 3). The servers poll only every [`SLOW_POLL`], so only the database's change
/// notification can explain a tick this soon.
const LIVE: Duration = Duration::from_secs(1);

/// A watch interval far longer than any of these tests.
const SLOW_POLL: &str = "10m";

/// The flags of every server of `world`: its database, and the bucket `bucket` of `s3`.
fn fleet_flags<'a>(world: &'a World, s3: &'a S3, bucket: &'a str) -> Vec<&'a str> {
    let mut flags = world.backend.flags();
    flags.extend(s3.flags(bucket));
    flags
}

/// A world on a fresh PostgreSQL database holding the 2015 fixture, and two servers of
/// it, A and B, keeping package files in one fresh bucket of `s3`, with `extra` flags.
fn two_servers(s3: &S3, extra: &[&str]) -> (World, Server, Server) {
    let bucket = s3.create_bucket();
    let world = world_on(Backend::postgres());
    let mut flags = fleet_flags(&world, s3, &bucket);
    flags.extend_from_slice(extra);
    let a = serve(&world.data, &flags);
    let b = serve(&other_data(&world, "b"), &flags);
    (world, a, b)
}

/// A data directory of its own for another server of `world` (each server locks its own).
fn other_data(world: &World, name: &str) -> PathBuf {
    world.data.with_file_name(name)
}

/// `url` (handed out by the server at `from`) sent to `to` instead, as a load balancer
/// may send it.
fn via(url: &str, from: &str, to: &Server) -> String {
    url.replacen(from, to.address(), 1)
}

/// The catalog a fresh client syncs from `server` (spec §3.3).
async fn synced(server: &Server) -> crate::common::Catalog {
    let mut ddp = server.ddp().await;
    sync_loop(&mut ddp, json!({"format": "1.1"}), json!({}))
        .await
        .catalog
}

/// The version record `name@version` of a synced catalog.
fn version_of<'a>(catalog: &'a crate::common::Catalog, name: &str, version: &str) -> &'a Value {
    catalog["versions"]
        .values()
        .find(|v| v["packageName"] == name && v["version"] == version)
        .unwrap_or_else(|| panic!("{name}@{version} is not in the synced catalog"))
}

/// Spec §6.2, §5.1, §5.2, §3.3 and §8.1 across two servers: a token made with `exosphere
/// token create --database-url` logs in on both; a publish through A whose uploads are PUT
/// to B (one bucket, one ticket table) succeeds; right after it returns, a sync through B
/// sees it (read-your-writes), its files download through B, and both servers sync the same
/// catalog.
#[tokio::test]
async fn two_servers_on_one_database_and_bucket_serve_one_catalog() {
    let s3 = S3::start();
    let (world, a, b) = two_servers(&s3, &[]);
    let mut on_a = login(&a, &world.alice).await;
    login(&b, &world.alice).await;

    let name = "acme:shared";
    let (token, upload_url, readme_url) = new_package(&mut on_a, name).await;
    let readme = b"# shared\n".to_vec();
    let source = file("source of acme:shared", 20_000);
    assert!(upload_url.starts_with(&a.http), "{upload_url}");
    assert_eq!(put(&via(&readme_url, a.address(), &b), &readme).0, 200);
    assert_eq!(put(&via(&upload_url, a.address(), &b), &source).0, 200);
    publish_files(&mut on_a, &token, &source, Some(&readme)).await;

    let through_b = synced(&b).await;
    let record = version_of(&through_b, name, "1.0.0");
    assert_eq!(record["publishedBy"]["username"], "alice");
    let source_url = record["source"]["url"].as_str().unwrap();
    assert_downloads(&via(source_url, a.address(), &b), &source);
    assert_downloads(
        &via(record["readme"]["url"].as_str().unwrap(), a.address(), &b),
        &readme,
    );
    assert_eq!(
        synced(&a).await,
        through_b,
        "both servers serve one catalog"
    );
}

/// A client pages through a server that reads sync pages from its replica (the default)
/// and one that reads them from PostgreSQL (`--sync-replica false`) as through one server:
/// the same catalog from both, and a token of one resumed on the other after an import
/// beside them, with the change and no reset (spec §3.3, §3.6).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_tokens_of_a_server_reading_its_replica_resume_on_one_reading_the_database() {
    let world = world_on(Backend::postgres());
    let flags = world.backend.flags();
    let replicated = serve(&world.data, &flags);
    let direct_data = other_data(&world, "b");
    let mut direct_flags = flags.clone();
    direct_flags.extend(["--sync-replica", "false"]);
    let direct = serve(&direct_data, &direct_flags);
    assert!(world.data.join("sync-replica.sqlite3").is_file());
    assert!(!direct_data.join("sync-replica.sqlite3").exists());

    let mut ddp = replicated.ddp().await;
    let first = sync_loop(&mut ddp, json!({"format": "1.1"}), json!({})).await;
    assert_eq!(first.catalog, synced(&direct).await, "one catalog");

    import_line(
        &world,
        &changed_package_line("https://example.invalid/replica"),
    );
    for (from, to) in [(&replicated, &direct), (&direct, &replicated)] {
        let mut ddp = to.ddp().await;
        let resumed = sync_loop(&mut ddp, first.token.clone(), json!({})).await;
        assert!(
            resumed.pages.iter().all(|page| page["resetData"] == false),
            "{:?}",
            resumed.pages
        );
        let packages = resumed.catalog.get("packages").map_or(0, |p| p.len());
        assert_eq!(packages, 1, "only the changed package");
        assert_eq!(synced(from).await, synced(to).await);
    }
    let changed = synced(&replicated).await;
    assert!(
        changed["packages"]
            .values()
            .any(|p| p["homepage"] == "https://example.invalid/replica")
    );
}

/// Waits for the next `changed` message of the `changes` publication (spec §4.3) for
/// `collection`, and returns its counter.
async fn next_change(ddp: &mut Ddp, collection: &'static str) -> u64 {
    let changed = tokio::time::timeout(
        PATIENCE,
        ddp.wait_for(|m| {
            m["msg"] == "changed" && m["collection"] == "changes" && m["id"] == collection
        }),
    )
    .await
    .unwrap_or_else(|_| panic!("no change of {collection} arrived"));
    changed["fields"]["changes"].as_u64().unwrap()
}

/// An NDJSON line that changes one fixture package's record.
fn changed_package_line(homepage: &str) -> String {
    let line = std::fs::read_to_string(fixture())
        .unwrap()
        .lines()
        .find(|line| line.contains(r#""collection":"packages""#))
        .map(str::to_owned)
        .unwrap();
    let mut entry: Value = serde_json::from_str(&line).unwrap();
    entry["doc"]["homepage"] = json!(homepage);
    format!("{entry}\n")
}

/// Imports `ndjson` with `exosphere import --database-url`, as an operator does beside the
/// running servers.
fn import_line(world: &World, ndjson: &str) {
    let file = world
        .data
        .with_file_name(format!("import-{}.ndjson", ndjson.len()));
    std::fs::write(&file, ndjson).unwrap();
    import_on(&world.backend, &world.data, &file);
}

/// The PostgreSQL sessions listening for catalog changes on `database`.
fn listeners(database: &str) -> Vec<i32> {
    let url = database.to_owned();
    std::thread::spawn(move || {
        postgres::Client::connect(&url, postgres::NoTls)
            .unwrap()
            .query(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
                 AND query LIKE '%LISTEN exosphere_changes'",
                &[],
            )
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect()
    })
    .join()
    .unwrap()
}

/// Ends every listening session on `database`, as a failover or a network cut does.
fn terminate_listeners(database: &str) {
    admin_sql(
        database,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE '%LISTEN exosphere_changes'",
    );
}

/// Issue 12, part 3: `changes` (spec §4.3) on server B ticks within a second of an import
/// beside server A and of a publish through A, although B polls only every ten minutes,
/// and again after the database ended the servers' listening sessions.
#[tokio::test]
async fn changes_on_one_server_tick_within_a_second_of_writes_through_another() {
    let world = world_on(Backend::postgres());
    let mut flags = world.backend.flags();
    flags.extend(["--watch-interval", SLOW_POLL]);
    let a = serve(&world.data, &flags);
    let b = serve(&other_data(&world, "b"), &flags);
    let mut watcher = b.ddp().await;
    let (docs, ready) = watcher.subscribe("c", "changes").await;
    assert_eq!(ready["msg"], "ready");
    let counter = |name: &str| {
        docs.iter()
            .find(|doc| doc["id"] == name)
            .and_then(|doc| doc["fields"]["changes"].as_u64())
            .unwrap()
    };
    let (packages, versions) = (counter("packages"), counter("versions"));

    import_line(&world, &changed_package_line("https://example.invalid/one"));
    let imported = Instant::now();
    assert_eq!(next_change(&mut watcher, "packages").await, packages + 1);
    assert!(imported.elapsed() < LIVE, "took {:?}", imported.elapsed());

    let mut alice = login(&a, &world.alice).await;
    publish_version(&mut alice, "acme:live", "1.0.0", true).await;
    let published = Instant::now();
    assert_eq!(next_change(&mut watcher, "versions").await, versions + 1);
    assert!(published.elapsed() < LIVE, "took {:?}", published.elapsed());

    let url = match &world.backend {
        Backend::Postgres(database) => database.url().to_owned(),
        Backend::Sqlite => unreachable!("a PostgreSQL world"),
    };
    let before = listeners(&url);
    assert_eq!(before.len(), 2, "one listener per server: {before:?}");
    terminate_listeners(&url);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let now = listeners(&url);
        if now.len() == 2 && now.iter().all(|pid| !before.contains(pid)) {
            break;
        }
        assert!(Instant::now() < deadline, "the listeners did not come back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The packages counter moved once more for the new package published above.
    let packages = packages + 2;
    import_line(&world, &changed_package_line("https://example.invalid/two"));
    let imported = Instant::now();
    let mut seen = next_change(&mut watcher, "packages").await;
    while seen < packages + 1 {
        seen = next_change(&mut watcher, "packages").await;
    }
    assert_eq!(seen, packages + 1);
    assert!(imported.elapsed() < LIVE, "took {:?}", imported.elapsed());
}

/// Issue 12, part 4: server A is killed (SIGKILL) while it receives an upload. While A
/// runs, B refuses a second body for the same URL (spec §5.2: one body per upload URL);
/// once A is gone, B takes the body and alice finishes the publish through B. Nothing B
/// committed before is lost.
#[tokio::test]
async fn killing_a_server_mid_upload_loses_nothing_and_another_completes_the_publish() {
    let s3 = S3::start();
    let (world, a, b) = two_servers(&s3, &[]);
    let mut on_b = login(&b, &world.alice).await;
    let committed = publish_version(&mut on_b, "acme:committed", "1.0.0", true).await;

    let mut on_a = login(&a, &world.alice).await;
    let name = "acme:interrupted";
    let (token, upload_url, readme_url) = new_package(&mut on_a, name).await;
    let source = file("source of acme:interrupted", 20_000);
    let readme = b"# interrupted\n".to_vec();
    let mut receiving = start_upload(&upload_url, source.len());
    std::io::Write::write_all(&mut receiving, &source[..source.len() / 2]).unwrap();
    std::io::Write::flush(&mut receiving).unwrap();
    // A claimed the ticket before it asked for the body (`100 Continue`).
    let a_address = a.address().to_owned();
    let (status, text) = put(&via(&upload_url, &a_address, &b), &source);
    assert_eq!(status, 409, "A receives this URL's body: {text}");
    assert!(text.contains("receiving a file right now"), "{text}");

    drop(on_a);
    drop(a);
    drop(receiving);
    let (status, text) = put_when_free(&via(&upload_url, &a_address, &b), &source).await;
    assert_eq!(status, 200, "B takes the body once A is gone: {text}");
    assert_eq!(put(&via(&readme_url, &a_address, &b), &readme).0, 200);
    publish_files(&mut on_b, &token, &source, Some(&readme)).await;

    let catalog = synced(&b).await;
    version_of(&catalog, name, "1.0.0");
    let record = version_of(&catalog, "acme:committed", "1.0.0");
    assert_downloads(record["source"]["url"].as_str().unwrap(), &committed.source);
}

/// Issue 12, part 4, and spec §5.2: `--max-uploads-per-user` counts a user's uploads on
/// every server. With one allowed, alice's upload arriving at A makes B refuse her second
/// one (429, the URL staying usable), which B takes once the first has ended.
#[tokio::test]
async fn a_users_uploads_are_counted_across_servers() {
    let s3 = S3::start();
    let (world, a, b) = two_servers(&s3, &["--max-uploads-per-user", "1"]);
    let mut on_a = login(&a, &world.alice).await;
    let (token, upload_url, readme_url) = new_package(&mut on_a, "acme:counted").await;
    let source = file("source of acme:counted", 20_000);
    let readme = b"# counted\n".to_vec();
    let mut receiving = start_upload(&upload_url, source.len());
    std::io::Write::write_all(&mut receiving, &source[..source.len() / 2]).unwrap();
    let readme_via_b = via(&readme_url, a.address(), &b);
    let (status, text) = put(&readme_via_b, &readme);
    assert_eq!(status, 429, "alice's upload at A counts on B: {text}");
    assert!(text.contains("this upload URL stays valid"), "{text}");

    std::io::Write::write_all(&mut receiving, &source[source.len() / 2..]).unwrap();
    let (status, text) = read_response(receiving);
    assert_eq!(status, 200, "{text}");
    assert_eq!(put(&readme_via_b, &readme).0, 200);
    publish_files(&mut on_a, &token, &source, Some(&readme)).await;
}

/// Starts `count` servers on `backend` at the same moment, each with a data directory of
/// its own under `dir` and logging what `filter` (a `RUST_LOG` value) lets through into a
/// file there; returns them with their log files.
fn start_together(
    backend: &Backend,
    dir: &Path,
    count: usize,
    filter: &'static str,
) -> Vec<(Server, PathBuf)> {
    let starts: Vec<_> = (0..count)
        .map(|i| {
            let data = dir.join(format!("server-{i}"));
            let log_path = dir.join(format!("server-{i}.log"));
            let flags: Vec<String> = backend.flags().into_iter().map(str::to_owned).collect();
            std::thread::spawn(move || {
                let log = std::fs::File::create(&log_path).unwrap();
                let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
                (
                    Server::start_logging_at(&data, &flags, log, filter),
                    log_path,
                )
            })
        })
        .collect();
    starts
        .into_iter()
        .map(|start| start.join().expect("a server starts"))
        .collect()
}

/// The lines of a server's log that contain `text`.
fn logged_by(log: &Path, text: &str) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter(|line| line.contains(text))
        .map(str::to_owned)
        .collect()
}

/// The lines of the servers' logs that contain `text`.
fn logged(servers: &[(Server, PathBuf)], text: &str) -> Vec<String> {
    servers
        .iter()
        .flat_map(|(_, log)| logged_by(log, text))
        .collect()
}

/// Issue 12, part 4: three servers started at once on an empty database create its schema
/// exactly once (the others wait for the lock, then find it) and all serve.
#[test]
fn three_servers_starting_at_once_on_an_empty_database_create_the_schema_once() {
    let backend = Backend::postgres();
    let dir = tempfile::tempdir().unwrap();
    let servers = start_together(&backend, dir.path(), 3, "info");
    for (server, _) in &servers {
        let (status, _, _) = http_get(&format!("{}/healthz", server.http));
        assert_eq!(status, 200);
    }
    assert_eq!(logged(&servers, "created the catalog schema").len(), 1);
}

/// Past days with usage recordings nobody rolled up: enough that one server's catch-up
/// is still running when the other starts, so that both would roll up the same days if
/// they did not share the rollup's duty.
const PENDING_DAYS: u64 = 150;

/// Issue 12, part 4, and spec §7.2: two servers that start at once over many days with
/// usage recordings nobody rolled up roll up each day once between them (the rollup's
/// duty), and a day's `/stats/v1` file counts every app once, on both.
#[test]
fn the_rollup_of_a_day_runs_once_across_servers() {
    let backend = Backend::postgres();
    let dir = tempfile::tempdir().unwrap();
    let today = Utc::now().date_naive();
    let days: Vec<_> = (2..2 + PENDING_DAYS)
        .map(|ago| today - Days::new(ago))
        .collect();
    record_past_on(
        &backend,
        &dir.path().join("recorder"),
        &days,
        &[
            ("app-1", &[("tracker", "1.0.0", true)]),
            (
                "app-2",
                &[("tracker", "1.0.0", false), ("base", "2.0.0", true)],
            ),
        ],
    );
    let servers = start_together(&backend, dir.path(), 2, "info,exosphere::jobs=debug");
    // Each server's first run ends in rollups (one line per day, then one for the run), in
    // finding nothing to roll up, or in leaving the run to the server that holds the duty
    // (a line naming the rollup: the sweep's duty is logged alike).
    let ended = |log: &Path| {
        !logged_by(log, "the rollup run ended").is_empty()
            || !logged_by(log, "no day of package usage").is_empty()
            || logged_by(log, "another server runs")
                .iter()
                .any(|line| line.contains("rollup"))
    };
    let deadline = Instant::now() + PATIENCE;
    while !servers.iter().all(|(_, log)| ended(log)) {
        assert!(Instant::now() < deadline, "a rollup run did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
    let first = days[0];
    let row = |name: &str, version: &str, direct: u64, total: u64| json!({"name": name, "version": version, "directAdds": direct, "totalAdds": total});
    let expected = vec![row("base", "2.0.0", 1, 1), row("tracker", "1.0.0", 1, 2)];
    for server in &servers {
        assert_eq!(stats_file(&server.0, first), Ok(expected.clone()));
    }
    let rollups = logged(&servers, "rolled up package usage");
    for day in &days {
        let of_day = rollups
            .iter()
            .filter(|line| line.contains(&day.to_string()))
            .count();
        assert_eq!(of_day, 1, "{day} was rolled up {of_day} times");
    }
    assert_eq!(rollups.len(), days.len(), "{rollups:?}");
}

/// Issue 12, part 4: of two servers given the same `--upstream`, one runs the mirror and
/// the other stands by (`/healthz`); when the one running it is killed, the other takes
/// over and brings the shared catalog up to date.
#[tokio::test]
async fn one_of_several_servers_with_an_upstream_runs_the_mirror() {
    let (_upstream_dir, _, upstream) = serve_fixture();
    let database = TestDatabase::new();
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--database-url", database.url()];
    let first = mirror_of(&upstream.http, &dir.path().join("a"), &flags);
    wait_status(&first, "up to date", |s| s["state"] == "up to date").await;
    let second = mirror_of(&upstream.http, &dir.path().join("b"), &flags);
    let standby = "standby: another server runs the mirror";
    wait_status(&second, "standing by", |s| s["state"] == standby).await;
    assert_eq!(
        crate::mirror::status(&first).await["state"],
        "up to date",
        "the first still runs it"
    );

    drop(first);
    wait_status(&second, "up to date", |s| s["state"] == "up to date").await;
}

/// Runs `sql` on the database at `url` from a thread of its own (the blocking client
/// refuses to run inside the test's runtime), as an operator's `psql` would.
fn admin_sql(url: &str, sql: &str) {
    let (url, sql) = (url.to_owned(), sql.to_owned());
    std::thread::spawn(move || {
        postgres::Client::connect(&url, postgres::NoTls)
            .unwrap()
            .batch_execute(&sql)
            .unwrap();
    })
    .join()
    .unwrap();
}

/// Issue 12, part 4, rolling deploys: a server of this release keeps starting on a
/// database a newer release upgraded compatibly (an additive step), and refuses, naming the
/// upgrade to make, one whose upgrade this release cannot use.
#[test]
fn an_older_server_starts_on_a_compatible_upgrade_and_refuses_an_incompatible_one() {
    let database = TestDatabase::new();
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--database-url", database.url()];
    drop(Server::start(&dir.path().join("a"), &flags));
    admin_sql(
        database.url(),
        "UPDATE exosphere_schema SET version = version + 1",
    );
    let older = Server::start(&dir.path().join("a"), &flags);
    let (status, _, _) = http_get(&format!("{}/healthz", older.http));
    assert_eq!(status, 200, "an additive upgrade keeps older servers");
    drop(older);

    admin_sql(
        database.url(),
        "UPDATE exosphere_schema SET compatible = version",
    );
    let refused = crate::common::exosphere()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("a"))
        .args(flags)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("upgrade Exosphere to open it"), "{stderr}");
}
