//! Crash safety proven by killing (issue 15 part 2): real `exosphere` processes are killed
//! with SIGKILL between every step of a publish (spec §5.1) and at random moments during a
//! publish, an import, usage recording and a rollup. After every kill: SQLite's integrity
//! check passes; every write acknowledged before the kill is there; a sync client that
//! synced before the kill continues from its token without a reset and ends with exactly
//! the records of a fresh full sync (so no sequence number was reused and nothing was
//! skipped); every version and build sync shows is whole (its files download with its
//! hashes); and the interrupted operation, retried, completes.
//!
//! Random kill moments come from a seeded generator: each test prints its seed, and
//! `EXOSPHERE_CRASH_SEED` replays it. `EXOSPHERE_CRASH_KILLS` sets how many random kills
//! each test makes (default [`DEFAULT_KILLS`], and half as many for the import, each of
//! whose kills costs two full syncs of the 2015 catalog).

use std::path::Path;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{Days, Utc};
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use crate::common::{
    Catalog, Ddp, Server, assert_catalog_intact, exosphere, fixture, read_dump, sync_loop,
};
use crate::publish::{
    BLANK_HASH, PORTABLE, World, bare_world, export, file, hash, login, serve, serve_on, try_put,
    version_record,
};
use crate::stats::{Report, packages, record_past, recorded_day, rollup, stats_file};

/// Random kills per test when `EXOSPHERE_CRASH_KILLS` is not set: enough to hit every
/// phase of each operation over a few runs, few enough that the module stays within a
/// minute or two on a loaded 2-core machine.
const DEFAULT_KILLS: usize = 6;

/// The random kill moments of one test: a seeded generator and how many kills to make.
struct Kills {
    rng: ChaCha8Rng,
    count: usize,
}

impl Kills {
    /// The seed of `EXOSPHERE_CRASH_SEED`, or a fresh one, printed so a failure can be
    /// replayed; the count of `EXOSPHERE_CRASH_KILLS`, or `default`.
    fn new(test: &str, default: usize) -> Kills {
        let seed = std::env::var("EXOSPHERE_CRASH_SEED")
            .ok()
            .map(|seed| seed.parse().expect("EXOSPHERE_CRASH_SEED is a number"))
            .unwrap_or_else(rand::random::<u64>);
        let count = std::env::var("EXOSPHERE_CRASH_KILLS")
            .ok()
            .map(|count| count.parse().expect("EXOSPHERE_CRASH_KILLS is a number"))
            .unwrap_or(default);
        eprintln!("{test}: {count} random kills, EXOSPHERE_CRASH_SEED={seed}");
        Kills {
            rng: ChaCha8Rng::seed_from_u64(seed),
            count,
        }
    }

    /// A moment within `span` (a little past it, so some kills land after the end).
    fn moment(&mut self, span: Duration) -> Duration {
        span.mul_f64(self.rng.random_range(0.0..1.1))
    }
}

/// How long the usage test's client reports before its server is killed, at most.
const REPORTING: Duration = Duration::from_millis(500);

/// SIGKILL: the process gets no chance to finish anything.
fn kill_9(pid: u32) {
    let pid = i32::try_from(pid).expect("a process id");
    // SAFETY: `kill` only sends a signal to our own child, which has not been reaped yet.
    let sent = unsafe { libc::kill(pid, libc::SIGKILL) };
    assert_eq!(sent, 0, "kill -9 {pid}");
}

/// Kills a CLI child with SIGKILL (whether or not it already ended: one that did must have
/// succeeded, or the kill interrupted nothing) and reaps it.
fn kill_child(mut child: Child) {
    if let Some(ended) = child.try_wait().expect("the command's state is read") {
        assert!(
            ended.success(),
            "the command failed before its kill: {ended}"
        );
    }
    let _ = child.kill();
    child.wait().expect("the killed command is reaped");
}

/// A tool's local catalog kept across server restarts: what it synced so far and its token.
pub(crate) struct SyncClient {
    catalog: Catalog,
    token: Value,
}

impl SyncClient {
    /// A client that never synced.
    pub(crate) fn new() -> SyncClient {
        SyncClient {
            catalog: Catalog::new(),
            token: json!({"format": "1.1"}),
        }
    }

    /// Syncs from the client's token (spec §3.3). A killed server must not make it start
    /// over: its restart keeps the epoch and every sequence number handed out.
    pub(crate) async fn catch_up(&mut self, server: &Server) {
        let mut ddp = server.ddp().await;
        let outcome = sync_loop(&mut ddp, self.token.clone(), json!({})).await;
        assert!(
            outcome.pages.iter().all(|page| page["resetData"] == false),
            "a sync from a token taken before the kill was reset"
        );
        for (collection, records) in outcome.catalog {
            self.catalog.entry(collection).or_default().extend(records);
        }
        self.token = outcome.token;
    }

    /// Catches up and checks the client now holds exactly what a fresh full sync gets: a
    /// reused sequence number or a lost commit would leave it missing or stale records.
    pub(crate) async fn assert_converges(&mut self, server: &Server) -> Catalog {
        self.catch_up(server).await;
        let fresh = sync_loop(&mut server.ddp().await, json!({"format": "1.1"}), json!({}))
            .await
            .catalog;
        assert!(
            self.catalog == fresh,
            "the client that synced before the kill differs from a fresh sync"
        );
        fresh
    }
}

/// Checks every version and build `server` published that a fresh sync shows is whole:
/// its source, README and build download with the hashes its record names. A
/// half-finished publish must not be visible at all. (Imported records point at other
/// hosts and are left out.)
pub(crate) fn assert_all_whole(server: &Server, catalog: &Catalog) {
    let ours = |url: &Value| {
        url.as_str()
            .is_some_and(|url| url.starts_with(&server.http))
    };
    let download = |url: &Value| {
        let url = url.as_str().expect("a file URL");
        let (status, _, _, bytes) = crate::publish::get(url, None);
        assert_eq!(status, 200, "{url} of a synced record");
        bytes
    };
    let records = |collection: &str| catalog.get(collection).into_iter().flat_map(|r| r.values());
    for version in records("versions").filter(|v| ours(&v["source"]["url"])) {
        let source = download(&version["source"]["url"]);
        assert_eq!(hash(&source), version["source"]["tarballHash"], "{version}");
        let readme = download(&version["readme"]["url"]);
        assert_eq!(hash(&readme), version["readme"]["hash"], "{version}");
    }
    for build in records("builds").filter(|b| ours(&b["build"]["url"])) {
        let tarball = download(&build["build"]["url"]);
        assert_eq!(hash(&tarball), build["build"]["tarballHash"], "{build}");
    }
}

/// A step the server refused: its DDP error code or HTTP status, and its reason.
#[derive(Debug)]
pub(crate) struct Refused {
    pub(crate) status: u16,
    pub(crate) reason: String,
}

/// Calls `method`: its result, or the server's refusal.
async fn call(ddp: &mut Ddp, method: &str, params: Value) -> Result<Value, Refused> {
    let answer = ddp.call(method, params).await;
    match answer.get("error") {
        None => Ok(answer.get("result").cloned().unwrap_or(Value::Null)),
        Some(error) => Err(Refused {
            status: error["error"]
                .as_u64()
                .and_then(|code| u16::try_from(code).ok())
                .unwrap_or(0),
            reason: error["reason"].as_str().unwrap_or_default().to_owned(),
        }),
    }
}

/// One step of the tool's `meteor publish --create` (spec §5.1 steps 3–9).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Step {
    CreatePackage,
    CreatePackageVersion,
    PutReadme,
    PutSource,
    PublishPackageVersion,
    CreatePackageBuild,
    PutBuild,
    PublishPackageBuild,
}

/// Every step in the tool's order.
pub(crate) const STEPS: [Step; 8] = [
    Step::CreatePackage,
    Step::CreatePackageVersion,
    Step::PutReadme,
    Step::PutSource,
    Step::PublishPackageVersion,
    Step::CreatePackageBuild,
    Step::PutBuild,
    Step::PublishPackageBuild,
];

/// A publish of `name@1.0.0` with a portable build, run step by step: its files and what
/// the server answered so far.
pub(crate) struct Publish {
    name: String,
    readme: Vec<u8>,
    source: Vec<u8>,
    build: Vec<u8>,
    version: Value,
    build_ticket: Value,
}

impl Publish {
    /// A publish of a new package `name`; `attempt` makes each attempt's files differ.
    pub(crate) fn new(name: &str, attempt: usize) -> Publish {
        Publish {
            name: name.to_owned(),
            readme: format!("# {name}\n\nattempt {attempt}\n").into_bytes(),
            source: file(&format!("source of {name}, attempt {attempt}"), 20_000),
            build: file(&format!("build of {name}, attempt {attempt}"), 30_000),
            version: Value::Null,
            build_ticket: Value::Null,
        }
    }

    /// Runs `step`: `Err` with the server's refusal (its DDP error code or HTTP status, and
    /// its reason) if it refuses. Uploads run on a thread of their own, so a kill can land
    /// while one is in flight (the caller drops this future then).
    pub(crate) async fn try_run(&mut self, ddp: &mut Ddp, step: Step) -> Result<(), Refused> {
        let upload = |url: &Value, body: &[u8]| {
            let (url, body) = (
                url.as_str().expect("an upload URL").to_owned(),
                body.to_vec(),
            );
            async move {
                let sent = tokio::task::spawn_blocking(move || try_put(&url, &body));
                match sent.await.unwrap().expect("upload request") {
                    (200, _) => Ok(()),
                    (status, reason) => Err(Refused { status, reason }),
                }
            }
        };
        match step {
            Step::CreatePackage => {
                call(ddp, "createPackage", json!([{"name": self.name}])).await?;
            }
            Step::CreatePackageVersion => {
                let record = version_record(&self.name, "1.0.0");
                self.version = call(ddp, "createPackageVersion", json!([record])).await?;
            }
            Step::PutReadme => upload(&self.version["readmeUrl"], &self.readme).await?,
            Step::PutSource => upload(&self.version["uploadUrl"], &self.source).await?,
            Step::PublishPackageVersion => {
                let hashes = json!({"tarballHash": hash(&self.source), "treeHash": BLANK_HASH,
                                    "readmeHash": hash(&self.readme)});
                let token = &self.version["uploadToken"];
                call(ddp, "publishPackageVersion", json!([token, hashes])).await?;
            }
            Step::CreatePackageBuild => {
                let spec = json!({"packageName": self.name, "version": "1.0.0",
                                  "buildArchitectures": PORTABLE});
                self.build_ticket = call(ddp, "createPackageBuild", json!([spec])).await?;
            }
            Step::PutBuild => upload(&self.build_ticket["uploadUrl"], &self.build).await?,
            Step::PublishPackageBuild => {
                let token = &self.build_ticket["uploadToken"];
                let params = json!([token, hash(&self.build), BLANK_HASH]);
                call(ddp, "publishPackageBuild", params).await?;
            }
        }
        Ok(())
    }

    /// The steps a retry after a crash still needs, judged as the tool does from a synced
    /// catalog: the package, the version, then its build.
    pub(crate) fn remaining(&self, catalog: &Catalog) -> &'static [Step] {
        let find = |collection: &str, pred: &dyn Fn(&Value) -> bool| {
            catalog
                .get(collection)
                .and_then(|records| records.values().find(|r| pred(r)).cloned())
        };
        let Some(_) = find("packages", &|p| p["name"] == self.name.as_str()) else {
            return &STEPS;
        };
        let Some(version) = find("versions", &|v| v["packageName"] == self.name.as_str()) else {
            return &STEPS[1..];
        };
        match find("builds", &|b| b["versionId"] == version["_id"]) {
            None => &STEPS[5..],
            Some(_) => &[],
        }
    }
}

/// The steps of `publish` acknowledged so far, shared with the task running them.
pub(crate) type Acknowledged = Arc<Mutex<Vec<Step>>>;

/// Runs `steps` of `publish` as alice in a session of its own, noting each acknowledged
/// step; panics (ending its task) when the server is killed under it.
pub(crate) async fn publish_steps(
    server: &Server,
    world_token: &str,
    publish: &mut Publish,
    steps: &[Step],
    acked: &Acknowledged,
) {
    let mut ddp = login(server, world_token).await;
    for step in steps {
        let done = publish.try_run(&mut ddp, *step).await;
        done.unwrap_or_else(|refused| panic!("{step:?} was refused: {refused:?}"));
        acked.lock().unwrap().push(*step);
    }
}

/// After a kill during `publish` (with `acked` acknowledged): the integrity check, a
/// restart where the killed server listened, the sync client's convergence, every
/// acknowledged step in place, nothing half-published visible; then the tool's retry
/// from the synced catalog, which must complete with files that download intact.
async fn recover_publish(
    world: &World,
    address: &str,
    client: &mut SyncClient,
    name: &str,
    attempt: usize,
    acked: &[Step],
) -> Server {
    assert_catalog_intact(&world.data);
    let server = serve_on(address, &world.data, &[]);
    let synced = client.assert_converges(&server).await;
    assert_all_whole(&server, &synced);
    let mut retry = Publish::new(name, attempt);
    let remaining = retry.remaining(&synced);
    let at_most = if acked.contains(&Step::PublishPackageBuild) {
        0
    } else if acked.contains(&Step::PublishPackageVersion) {
        STEPS.len() - 5
    } else if acked.contains(&Step::CreatePackage) {
        STEPS.len() - 1
    } else {
        STEPS.len()
    };
    assert!(
        remaining.len() <= at_most,
        "{acked:?} were acknowledged before the kill, but after it {name} still needs {remaining:?}"
    );
    let acked = Arc::new(Mutex::new(Vec::new()));
    publish_steps(&server, &world.alice, &mut retry, remaining, &acked).await;
    let synced = client.assert_converges(&server).await;
    assert_all_whole(&server, &synced);
    assert!(
        retry.remaining(&synced).is_empty(),
        "the retry did not complete {name}"
    );
    server
}

/// Spec §5.1 killed after each of its steps in turn (and before the first): each time the
/// catalog is intact, what was acknowledged is there, a half-finished publish is invisible
/// to sync, and the tool's retry completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_killed_after_any_step_is_invisible_until_retried_to_completion() {
    let world = bare_world();
    let mut server = serve(&world.data, &[]);
    let address = server.address().to_owned();
    let mut client = SyncClient::new();
    for kill_after in 0..=STEPS.len() {
        let name = format!("acme:after-step-{kill_after}");
        client.catch_up(&server).await;
        let mut publish = Publish::new(&name, 0);
        let acked = Arc::new(Mutex::new(Vec::new()));
        publish_steps(
            &server,
            &world.alice,
            &mut publish,
            &STEPS[..kill_after],
            &acked,
        )
        .await;
        kill_9(server.pid());
        drop(server);
        let acked = acked.lock().unwrap().clone();
        server = recover_publish(&world, &address, &mut client, &name, 1, &acked).await;
    }
}

/// Publishes killed at random moments: the same checks as the deterministic kills, with
/// the kill landing inside a method call or an upload as often as between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_killed_at_random_moments_recover_and_can_be_retried() {
    let mut kills = Kills::new("publish", DEFAULT_KILLS);
    let world = bare_world();
    let mut server = serve(&world.data, &[]);
    let address = server.address().to_owned();
    let mut client = SyncClient::new();
    // An uninterrupted publish sets the span the kills fall in.
    let started = Instant::now();
    let acked = Arc::new(Mutex::new(Vec::new()));
    publish_steps(
        &server,
        &world.alice,
        &mut Publish::new("acme:measure", 0),
        &STEPS,
        &acked,
    )
    .await;
    let span = started.elapsed();
    for kill in 0..kills.count {
        let name = format!("acme:random-{kill}");
        client.catch_up(&server).await;
        let acked: Acknowledged = Arc::new(Mutex::new(Vec::new()));
        let mut publish = Publish::new(&name, 0);
        let pid = server.pid();
        // The kill lands first; the publish in flight is then dropped with its connection.
        tokio::select! {
            () = publish_steps(&server, &world.alice, &mut publish, &STEPS, &acked) => kill_9(pid),
            () = async { tokio::time::sleep(kills.moment(span)).await; kill_9(pid) } => {}
        }
        drop(server);
        let acked = acked.lock().unwrap().clone();
        eprintln!(
            "publish kill {kill}: after {} of {} steps",
            acked.len(),
            STEPS.len()
        );
        server = recover_publish(&world, &address, &mut client, &name, 1, &acked).await;
    }
}

/// The 2015 fixture with every version's description set to `revision {n}`: an import
/// of it after another revision rewrites thousands of records in one transaction.
fn fixture_revision(n: usize) -> String {
    let text = std::fs::read_to_string(fixture()).expect("the fixture is readable");
    let mut revised = String::with_capacity(text.len());
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let mut entry: Value = serde_json::from_str(line).expect("a dump line");
        if entry["collection"] == "versions" {
            entry["doc"]["description"] = json!(format!("revision {n}"));
        }
        revised.push_str(&entry.to_string());
        revised.push('\n');
    }
    revised
}

/// `exosphere import` killed at random moments while a server serves the data directory
/// (every other time the server is killed with it, as in a power cut). Each import is a
/// new revision of the 2015 fixture, so every kill interrupts a transaction rewriting
/// thousands of records: the catalog stays intact, a sync client sees a revision whole,
/// never a mix; and the retried import of the fixture leaves exactly the catalog of a
/// clean import.
///
/// Which revision a sync may see: the one before, the one just imported, or, after a
/// restart, one killed earlier. An import killed inside its commit's `fsync` has its commit
/// on disk but not in SQLite's shared WAL index, so a server still running does not see it
/// (and its next write overwrites it); once every process that had the database open has
/// died, the next one to open it recovers that commit whole from the WAL. That is SQLite's
/// "maybe committed" outcome of a kill at the commit point (docs/RELIABILITY.md, "Crashes"):
/// never a part of an import, never a sequence number handed out twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_killed_at_random_moments_can_be_retried_to_a_clean_catalog() {
    let mut kills = Kills::new("import", DEFAULT_KILLS / 2);
    let clean = tempfile::tempdir().unwrap();
    let clean_data = clean.path().join("data");
    let revision_file = clean.path().join("revision.ndjson");
    let started = Instant::now();
    crate::common::import(&clean_data, &fixture());
    let loading = started.elapsed();
    let expected = read_dump(&export(&clean_data));
    // A revision over a catalog rewrites every record instead of loading an empty one in
    // bulk, and takes several times as long: each kill is timed within the import it cuts.
    std::fs::write(&revision_file, fixture_revision(usize::MAX)).expect("a revision is written");
    let started = Instant::now();
    crate::common::import(&clean_data, &revision_file);
    let rewriting = started.elapsed();

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data, &[]);
    let address = server.address().to_owned();
    let mut client = SyncClient::new();
    let mut before = client.assert_converges(&server).await;
    // Revisions killed since the server last started, each possibly committed unseen.
    let mut unseen: Vec<Catalog> = Vec::new();
    let mut landed = 0;
    for kill in 0..kills.count {
        let revision = fixture_revision(kill);
        std::fs::write(&revision_file, &revision).expect("the revision is written");
        let empty = before.values().all(std::collections::BTreeMap::is_empty);
        let span = if empty { loading } else { rewriting };
        let importing = exosphere()
            .arg("import")
            .arg("--data-dir")
            .arg(&data)
            .arg(&revision_file)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("exosphere import starts");
        tokio::time::sleep(kills.moment(span)).await;
        let with_server = kill % 2 == 1;
        if with_server {
            kill_9(server.pid());
        }
        kill_child(importing);
        assert_catalog_intact(&data);
        if with_server {
            drop(server);
            server = Server::start_on(&address, &data, &[]);
        }
        let synced = client.assert_converges(&server).await;
        let revised = read_dump(&revision).0;
        let imported = synced == revised;
        let recovered = with_server && unseen.contains(&synced);
        assert!(
            imported || recovered || synced == before,
            "a sync saw part of an import"
        );
        landed += usize::from(!imported);
        eprintln!(
            "import kill {kill} (the server too: {with_server}): imported {imported}, an earlier one recovered {recovered}"
        );
        if with_server {
            unseen.clear();
        }
        if !imported {
            unseen.push(revised);
        }
        before = synced;
    }
    eprintln!(
        "import: {landed} of {} kills came before the commit",
        kills.count
    );
    crate::common::import(&data, &fixture());
    client.assert_converges(&server).await;
    assert!(
        read_dump(&export(&data)) == expected,
        "the retried import differs from a clean one"
    );
}

/// `recordAppPackages` calls from a client while the server is killed at random moments:
/// every report the server acknowledged is counted after the restart, and the restarted
/// server records the next reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_reports_acknowledged_before_a_kill_are_counted_after_it() {
    let mut kills = Kills::new("usage", DEFAULT_KILLS);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let flags = ["--stats-count-unknown-packages"];
    let mut server = Server::start(&data, &flags);
    let address = server.address().to_owned();
    let mut acknowledged = Vec::new();
    for kill in 0..kills.count {
        let pid = server.pid();
        let reports = async {
            let mut ddp = server.ddp().await;
            for app in kill * 1_000_000.. {
                let list = packages(&[(&format!("used-{app}"), "1.0.0", false, true)]);
                let params = json!([format!("app-{app}"), list, {}]);
                let answer = ddp.call("recordAppPackages", params).await;
                assert!(answer.get("error").is_none(), "{answer}");
                acknowledged.push(app);
            }
        };
        tokio::select! {
            () = reports => {}
            () = async { tokio::time::sleep(kills.moment(REPORTING)).await; kill_9(pid) } => {}
        }
        drop(server);
        assert_catalog_intact(&data);
        server = Server::start_on(&address, &data, &flags);
        eprintln!(
            "usage kill {kill}: {} reports acknowledged so far",
            acknowledged.len()
        );
    }
    let mut ddp = server.ddp().await;
    let list = packages(&[("after-the-kills", "1.0.0", false, true)]);
    let answer = ddp
        .call("recordAppPackages", json!(["app-last", list, {}]))
        .await;
    assert!(answer.get("error").is_none(), "{answer}");
    let day = recorded_day(&data);
    rollup(&data, &["--date", &day.to_string()]);
    let rows = stats_file(&server, day).expect("the day was rolled up");
    let counted: std::collections::BTreeSet<&str> =
        rows.iter().filter_map(|row| row["name"].as_str()).collect();
    for app in &acknowledged {
        let name = format!("used-{app}");
        assert!(
            counted.contains(name.as_str()),
            "the acknowledged report of app-{app} was lost"
        );
    }
    assert!(counted.contains("after-the-kills"));
}

/// `exosphere stats rollup` killed at random moments, then run again, publishes the same
/// day as an uninterrupted rollup of the same recordings; a killed rollup leaves the day
/// either as it was or whole.
#[test]
fn a_killed_rollup_run_again_gives_the_same_day_as_an_uninterrupted_one() {
    let mut kills = Kills::new("rollup", DEFAULT_KILLS);
    let day = Utc::now().date_naive() - Days::new(1);
    // 10,000 apps, each using 10 of 400 packages: a rollup long enough to be cut short.
    let names: Vec<String> = (0..400).map(|n| format!("package-{n}")).collect();
    let apps: Vec<String> = (0..10_000).map(|app| format!("app-{app}")).collect();
    type Used<'a> = Vec<(&'a str, &'a str, bool)>;
    let lists: Vec<Used<'_>> = (0..apps.len())
        .map(|app| {
            let used = |n: usize| {
                (
                    names[(app * 7 + n) % names.len()].as_str(),
                    "1.0.0",
                    n.is_multiple_of(3),
                )
            };
            (0..10).map(used).collect()
        })
        .collect();
    let reports: Vec<Report<'_>> = apps
        .iter()
        .zip(&lists)
        .map(|(app, list)| (app.as_str(), list.as_slice()))
        .collect();
    let record = |data: &Path| record_past(data, day, &reports);
    let day_rows = |data: &Path| read_dump(&export(data)).1;

    let clean = tempfile::tempdir().unwrap();
    let clean = clean.path().join("data");
    record(&clean);
    let started = Instant::now();
    rollup(&clean, &["--date", &day.to_string()]);
    let span = started.elapsed();
    let expected = day_rows(&clean);
    assert!(!expected.is_empty());

    // Each kill interrupts a first rollup of a copy of the same recordings.
    let pristine = tempfile::tempdir().unwrap();
    record(pristine.path());
    let mut landed = 0;
    for kill in 0..kills.count {
        let copy = tempfile::tempdir().unwrap();
        for file in std::fs::read_dir(pristine.path()).unwrap() {
            let file = file.unwrap().path();
            std::fs::copy(&file, copy.path().join(file.file_name().unwrap())).unwrap();
        }
        let data = copy.path();
        let rolling = exosphere()
            .args(["stats", "rollup", "--date", &day.to_string(), "--data-dir"])
            .arg(data)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("exosphere stats rollup starts");
        let moment = kills.moment(span);
        std::thread::sleep(moment);
        kill_child(rolling);
        assert_catalog_intact(data);
        let rows = day_rows(data);
        assert!(
            rows.is_empty() || rows == expected,
            "a killed rollup left part of a day"
        );
        landed += usize::from(rows.is_empty());
        eprintln!(
            "rollup kill {kill} {moment:?} into a run taking {span:?}: the day is {}",
            if rows.is_empty() {
                "not rolled up yet"
            } else {
                "whole"
            }
        );
        rollup(data, &["--date", &day.to_string()]);
        assert_eq!(day_rows(data), expected, "the rollup run again differs");
    }
    eprintln!(
        "rollup: {landed} of {} kills came before the commit",
        kills.count
    );
}
