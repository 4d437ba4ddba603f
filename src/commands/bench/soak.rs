//! `exosphere bench soak`: a mixed load held for many minutes against one `exosphere serve`
//! child process, so that a slow leak of memory, files or sessions shows as a curve in a
//! report rather than as an outage weeks after a deploy.
//!
//! Every load runs on its own loop until the deadline: clients syncing incrementally (and
//! reconnecting), full syncs of every kind in turn, publishes with uploads, usage reports,
//! reads of the stats API, WebSocket and SockJS sessions opened and dropped, and clients that
//! ask for sync pages and stop reading. Every second the process's memory and open files are
//! sampled from `/proc`; every minute the medians, the server's own session and connection
//! counts from `/healthz`, each operation's latency percentiles and the errors become a row.
//! An error is anything the load did not cause on purpose: the clients that stop reading are
//! expected to be dropped, and are not counted.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio_tungstenite::tungstenite::Message;

use super::abuse::{request, sync_requests};
use super::publish::{Ddp, create_user, publish_version};
use super::sync::full_sync;
use super::{ServerProcess, WorkDir, prepare_catalog, process_memory_kib};
use crate::cli::BenchSoakArgs;

/// How often memory and open files are sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// The widest spread (max ÷ min − 1) of a per-minute median after the warm-up that still
/// counts as flat: the issue's target.
const FLAT: f64 = 0.10;

/// How long the load goes on past the last minute, so that minute's last samples and its
/// `/healthz` see the load still running.
const OVERRUN: Duration = Duration::from_secs(5);

/// The longest one operation may take before it counts as an error: a hung call would
/// otherwise stop its loop without a word, and the minutes after it would look quiet.
const OP_LIMIT: Duration = Duration::from_secs(60);

/// How long the load loops get to stop after the deadline.
const STOP_LIMIT: Duration = Duration::from_secs(120);

/// The package the soak publishes into.
const PACKAGE: &str = "soak:pkg";

/// Runs the soak and prints a Markdown report to standard output.
pub fn run(args: BenchSoakArgs) -> anyhow::Result<()> {
    if args.warmup_minutes >= args.minutes {
        bail!(
            "--warmup-minutes ({}) must be less than --minutes ({}): the verdict needs minutes \
             after the warm-up",
            args.warmup_minutes,
            args.minutes
        );
    }
    let work_dir = WorkDir::new(args.work_dir.as_deref())?;
    let catalog = prepare_catalog(work_dir.path(), args.scale, args.seed)?;
    let token = create_user(&catalog.data_dir)?;
    // The server as shipped, its read model (what the JSON API answers from) included.
    let server = ServerProcess::start(&catalog.data_dir, &["--read-model", "on"])?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let started = Instant::now();
    let load = Arc::new(Load {
        address: server.address.clone(),
        ws_url: server.ws_url(),
        token,
        initial_records: catalog.records(),
        deadline: started + Duration::from_secs(60 * u64::from(args.minutes)) + OVERRUN,
        attempted: AtomicU32::new(0),
        published: AtomicU32::new(0),
        abandoned: AtomicU64::new(0),
        tally: Mutex::new(Tally::default()),
    });
    let mut drivers = Vec::new();
    for client in 0..args.syncing_clients {
        drivers.push(runtime.spawn(incremental_syncs(Arc::clone(&load), client)));
    }
    drivers.push(runtime.spawn(full_syncs(Arc::clone(&load))));
    drivers.push(runtime.spawn(publishes(Arc::clone(&load))));
    drivers.push(runtime.spawn(usage_reports(Arc::clone(&load))));
    drivers.push(runtime.spawn(stats_reads(Arc::clone(&load))));
    drivers.push(runtime.spawn(websocket_churn(Arc::clone(&load))));
    drivers.push(runtime.spawn(sockjs_churn(Arc::clone(&load))));
    drivers.push(runtime.spawn(stopped_readers(Arc::clone(&load))));

    eprintln!(
        "soaking {} for {} minutes: {} records, {} syncing clients",
        server.address,
        args.minutes,
        catalog.records(),
        args.syncing_clients
    );
    let mut rows = Vec::new();
    for minute in 1..=args.minutes {
        let end = started + Duration::from_secs(60 * u64::from(minute));
        let mut samples = Samples::default();
        while Instant::now() < end {
            samples.take(server.pid())?;
            std::thread::sleep(SAMPLE_EVERY.min(end.saturating_duration_since(Instant::now())));
        }
        let health = runtime.block_on(health(&server.address));
        let tally = std::mem::take(&mut *load.tally());
        let row = Row::new(minute, &samples, health, tally);
        eprintln!("{}", row.progress());
        rows.push(row);
    }
    let stopped = runtime.block_on(async {
        tokio::time::timeout(STOP_LIMIT, futures_util::future::join_all(drivers)).await
    });
    let failed_loops: Vec<String> = match stopped {
        Ok(ended) => ended
            .into_iter()
            .filter_map(|ended| ended.err().map(|error| error.to_string()))
            .collect(),
        Err(_) => vec![format!(
            "the load did not stop within {STOP_LIMIT:?} of the deadline"
        )],
    };
    report(
        &args,
        &catalog_summary(&load, &catalog),
        &rows,
        &failed_loops,
    );
    Ok(())
}

/// One line on what was soaked, for the report's heading.
fn catalog_summary(load: &Load, catalog: &super::PreparedCatalog) -> String {
    format!(
        "{} records to start with, {} versions published, {} stopped readers dropped",
        catalog.records(),
        load.published.load(Ordering::Relaxed),
        load.abandoned.load(Ordering::Relaxed)
    )
}

/// What every load loop shares.
struct Load {
    /// `host:port` of the server.
    address: String,
    ws_url: String,
    /// A login token of an administrator, for publishing.
    token: String,
    /// Records of the catalog before the first publish: a full sync gets at least these.
    initial_records: u64,
    deadline: Instant,
    /// Versions of [`PACKAGE`] publishes have tried so far (`1.0.0` up to
    /// `1.0.{attempted - 1}`); the next attempt takes the next one.
    attempted: AtomicU32,
    /// Versions of [`PACKAGE`] published so far.
    published: AtomicU32,
    /// Clients that stopped reading, opened and dropped on purpose.
    abandoned: AtomicU64,
    tally: Mutex<Tally>,
}

impl Load {
    fn running(&self) -> bool {
        Instant::now() < self.deadline
    }

    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records how one operation of `kind` that began at `started` went.
    fn record(&self, kind: Kind, started: Instant, outcome: anyhow::Result<()>) {
        let elapsed = started.elapsed();
        let mut tally = self.tally();
        match outcome {
            Ok(()) => tally.latencies[kind as usize].push(elapsed),
            Err(error) => tally.error(kind, &error),
        }
    }

    /// Runs one operation of `kind` within [`OP_LIMIT`] and records how it went; true if
    /// it succeeded.
    async fn attempt(
        &self,
        kind: Kind,
        operation: impl Future<Output = anyhow::Result<()>>,
    ) -> bool {
        let started = Instant::now();
        let outcome = within_limit(operation).await;
        let succeeded = outcome.is_ok();
        self.record(kind, started, outcome);
        succeeded
    }

    /// Sleeps until `period` after `started`, or until the deadline if that is sooner.
    async fn pace(&self, started: Instant, period: Duration) {
        let until = (started + period).min(self.deadline);
        tokio::time::sleep_until(until.into()).await;
    }
}

/// `operation`'s outcome, or an error if it took longer than [`OP_LIMIT`].
async fn within_limit<T>(operation: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::time::timeout(OP_LIMIT, operation)
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within {OP_LIMIT:?}")))
}

/// The operations whose latencies the report gives.
#[derive(Clone, Copy)]
enum Kind {
    IncrementalSync,
    FullSync,
    Publish,
    Usage,
    StatsRead,
    WebSocket,
    SockJs,
}

impl Kind {
    const ALL: [Kind; 7] = [
        Kind::IncrementalSync,
        Kind::FullSync,
        Kind::Publish,
        Kind::Usage,
        Kind::StatsRead,
        Kind::WebSocket,
        Kind::SockJs,
    ];

    fn label(self) -> &'static str {
        match self {
            Kind::IncrementalSync => "incremental sync",
            Kind::FullSync => "full sync",
            Kind::Publish => "publish",
            Kind::Usage => "usage report",
            Kind::StatsRead => "stats API read",
            Kind::WebSocket => "WebSocket session",
            Kind::SockJs => "SockJS session",
        }
    }
}

/// A minute's latencies and errors.
#[derive(Default)]
struct Tally {
    latencies: [Vec<Duration>; Kind::ALL.len()],
    errors: u64,
    /// The first few errors of the minute, for the report.
    first_errors: Vec<String>,
}

impl Tally {
    fn error(&mut self, kind: Kind, error: &anyhow::Error) {
        self.errors += 1;
        if self.first_errors.len() < 3 {
            self.first_errors
                .push(format!("{}: {error:#}", kind.label()));
        }
    }
}

/// A minute's one-second samples of the server process.
#[derive(Default)]
struct Samples {
    rss_kib: Vec<u64>,
    anon_kib: Vec<u64>,
    files: Vec<u64>,
}

impl Samples {
    fn take(&mut self, pid: u32) -> anyhow::Result<()> {
        self.rss_kib.push(process_memory_kib(pid, "VmRSS")?);
        self.anon_kib.push(process_memory_kib(pid, "RssAnon")?);
        let files = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .context("open files need /proc (Linux)")?
            .count();
        self.files.push(files as u64);
        Ok(())
    }
}

/// The median of `values` (0 for none).
fn median(values: &[u64]) -> u64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted.get(sorted.len() / 2).copied().unwrap_or(0)
}

/// The `q` quantile (0..=1) of `values`, by nearest rank; `None` for none.
fn quantile(values: &[Duration], q: f64) -> Option<Duration> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied()
}

/// What `/healthz` said at the end of a minute: sessions and open connections, or why it
/// did not answer (which is an error of that minute).
type Health = Result<(u64, u64), String>;

async fn health(address: &str) -> Health {
    let (status, body) = within_limit(request(address, "GET", "/healthz", ""))
        .await
        .map_err(|error| format!("{error:#}"))?;
    if status != 200 {
        return Err(format!("/healthz answered {status}: {body}"));
    }
    let health: Value = serde_json::from_str(&body).map_err(|error| error.to_string())?;
    Ok((
        health["sessions"].as_u64().unwrap_or(0),
        health["connections"]["open"].as_u64().unwrap_or(0),
    ))
}

/// One minute of the report.
struct Row {
    minute: u32,
    rss_kib: u64,
    anon_kib: u64,
    files: u64,
    files_max: u64,
    health: Health,
    tally: Tally,
}

impl Row {
    fn new(minute: u32, samples: &Samples, health: Health, tally: Tally) -> Row {
        Row {
            minute,
            rss_kib: median(&samples.rss_kib),
            anon_kib: median(&samples.anon_kib),
            files: median(&samples.files),
            files_max: samples.files.iter().copied().max().unwrap_or(0),
            health,
            tally,
        }
    }

    /// Errors of the minute, the health check's included.
    fn errors(&self) -> u64 {
        self.tally.errors + u64::from(self.health.is_err())
    }

    fn operations(&self) -> usize {
        self.tally.latencies.iter().map(Vec::len).sum()
    }

    fn progress(&self) -> String {
        format!(
            "minute {}: RSS {:.1} MB, anonymous {:.1} MB, {} open files, {} operations, {} errors",
            self.minute,
            self.rss_kib as f64 / 1024.0,
            self.anon_kib as f64 / 1024.0,
            self.files,
            self.operations(),
            self.errors()
        )
    }
}

/// A client that syncs incrementally, keeping its token across sessions: each session
/// connects, catches up with the head (untimed the first time), then syncs again every two
/// seconds, 30 times, before the client reconnects.
async fn incremental_syncs(load: Arc<Load>, client: u32) {
    let mut token = json!({"format": "1.1"});
    let mut caught_up = false;
    tokio::time::sleep(Duration::from_millis(250 * u64::from(client % 8))).await;
    while load.running() {
        let started = Instant::now();
        if let Err(error) = incremental_session(&load, &mut token, &mut caught_up).await {
            load.record(Kind::IncrementalSync, started, Err(error));
            load.pace(started, Duration::from_secs(1)).await;
        }
    }
}

async fn incremental_session(
    load: &Load,
    token: &mut Value,
    caught_up: &mut bool,
) -> anyhow::Result<()> {
    let mut ddp = within_limit(Ddp::connect(&load.ws_url)).await?;
    for _ in 0..30 {
        if !load.running() {
            break;
        }
        let started = Instant::now();
        within_limit(async {
            loop {
                let page = ddp.call("syncNewPackageData", json!([&*token, {}])).await?;
                *token = page["syncToken"].clone();
                if page["upToDate"] == true {
                    return Ok(());
                }
            }
        })
        .await?;
        if *caught_up {
            load.record(Kind::IncrementalSync, started, Ok(()));
        }
        *caught_up = true;
        load.pace(started, Duration::from_secs(2)).await;
    }
    Ok(())
}

/// A full sync from scratch every 20 seconds: plain, with `permessage-deflate`, and with
/// `collectionsCompressed`, in turn; each must get at least the catalog it started with.
async fn full_syncs(load: Arc<Load>) {
    let kinds = [(false, false), (false, true), (true, false)];
    for turn in 0.. {
        if !load.running() {
            break;
        }
        let started = Instant::now();
        let (compress, deflate) = kinds[turn % kinds.len()];
        load.attempt(Kind::FullSync, async {
            let run = full_sync(&load.ws_url, compress, deflate, false, None).await?;
            if run.records < load.initial_records {
                bail!(
                    "a full sync got {} records of at least {}",
                    run.records,
                    load.initial_records
                );
            }
            Ok(())
        })
        .await;
        load.pace(started, Duration::from_secs(20)).await;
    }
}

/// A new version of [`PACKAGE`] every five seconds, with a 64 KiB source tarball. Each
/// attempt takes a version of its own, so one whose answer was lost after it committed does
/// not make every later attempt publish a version already taken.
async fn publishes(load: Arc<Load>) {
    let body: Vec<u8> = (0..64 << 10).map(|i| (i % 253) as u8).collect();
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&body));
    let mut session: Option<Ddp> = None;
    let mut created = false;
    while load.running() {
        let started = Instant::now();
        let succeeded = load
            .attempt(Kind::Publish, async {
                let ddp = match session.as_mut() {
                    Some(ddp) => ddp,
                    None => {
                        let mut ddp = Ddp::connect(&load.ws_url).await?;
                        ddp.call("login", json!([{"resume": load.token}])).await?;
                        session.insert(ddp)
                    }
                };
                if !created {
                    ddp.call("createPackage", json!([{"name": PACKAGE}]))
                        .await?;
                    created = true;
                }
                let version = format!("1.0.{}", load.attempted.fetch_add(1, Ordering::Relaxed));
                publish_version(ddp, &load.address, PACKAGE, &version, &body, &hash).await?;
                load.published.fetch_add(1, Ordering::Relaxed);
                Ok(())
            })
            .await;
        if !succeeded {
            session = None;
        }
        load.pace(started, Duration::from_secs(5)).await;
    }
}

/// A usage report every second, from one of 50 apps, naming versions published so far and
/// one local package (spec §7.1).
async fn usage_reports(load: Arc<Load>) {
    let mut session: Option<Ddp> = None;
    for call in 0u64.. {
        if !load.running() {
            break;
        }
        let started = Instant::now();
        let published = load.published.load(Ordering::Relaxed);
        let packages: Vec<Value> = (published.saturating_sub(3)..published)
            .map(|k| json!({"name": PACKAGE, "version": format!("1.0.{k}"), "local": false, "direct": true}))
            .chain([json!({"name": "my-app-code", "version": "0.0.1", "local": true, "direct": true})])
            .collect();
        let params = json!([format!("soakapp{:04}", call % 50), packages,
            {"what": "sdk.run", "userAgent": "Meteor/3.0.4 OS/linux"}]);
        let succeeded = load
            .attempt(Kind::Usage, async {
                let ddp = match session.as_mut() {
                    Some(ddp) => ddp,
                    None => session.insert(Ddp::connect(&load.ws_url).await?),
                };
                ddp.call("recordAppPackages", params).await?;
                Ok(())
            })
            .await;
        if !succeeded {
            session = None;
        }
        load.pace(started, Duration::from_secs(1)).await;
    }
}

/// A read of the per-package stats API every five seconds (docs/STATS.md).
async fn stats_reads(load: Arc<Load>) {
    let path = format!("/api/v1/stats/packages/{PACKAGE}?interval=week");
    while load.running() {
        let started = Instant::now();
        load.attempt(Kind::StatsRead, async {
            match request(&load.address, "GET", &path, "").await? {
                (200, _) => Ok(()),
                (status, body) => bail!("{path} answered {status}: {body}"),
            }
        })
        .await;
        load.pace(started, Duration::from_secs(5)).await;
    }
}

/// Five raw-WebSocket DDP sessions a second, each connected, then closed.
async fn websocket_churn(load: Arc<Load>) {
    while load.running() {
        let started = Instant::now();
        load.attempt(Kind::WebSocket, async {
            let (mut socket, _) = tokio_tungstenite::connect_async(&load.ws_url).await?;
            socket
                .send(Message::text(
                    r#"{"msg":"connect","version":"1","support":["1"]}"#,
                ))
                .await?;
            wait_for_connected(&mut socket, |text| text.to_owned()).await?;
            socket.close(None).await?;
            Ok(())
        })
        .await;
        load.pace(started, Duration::from_millis(200)).await;
    }
}

/// Reads `socket` until a DDP `connected` message arrives in a text frame, which `unwrap`
/// turns into the DDP message (SockJS wraps it).
async fn wait_for_connected<S>(
    socket: &mut tokio_tungstenite::WebSocketStream<S>,
    unwrap: impl Fn(&str) -> String,
) -> anyhow::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(message) = socket.next().await {
        if let Message::Text(text) = message?
            && unwrap(text.as_str()).contains(r#""msg":"connected""#)
        {
            return Ok(());
        }
    }
    bail!("the server closed the session before `connected`")
}

/// A SockJS session a second, over `xhr` polling and the SockJS WebSocket in turn. Each
/// connects DDP and is then left alone: the server must expire the `xhr` ones itself.
async fn sockjs_churn(load: Arc<Load>) {
    let connect = serde_json::to_string(&[r#"{"msg":"connect","version":"1","support":["1"]}"#])
        .expect("a list of strings is JSON");
    for n in 0u64.. {
        if !load.running() {
            break;
        }
        let started = Instant::now();
        let base = format!("/sockjs/000/soak{n:010}");
        load.attempt(Kind::SockJs, async {
            if n % 2 == 0 {
                sockjs_xhr(&load.address, &base, &connect).await
            } else {
                sockjs_websocket(&load.address, &base, &connect).await
            }
        })
        .await;
        load.pace(started, Duration::from_secs(1)).await;
    }
}

async fn sockjs_xhr(address: &str, base: &str, connect: &str) -> anyhow::Result<()> {
    let (status, body) = request(address, "POST", &format!("{base}/xhr"), "").await?;
    if status != 200 || body != "o\n" {
        bail!("{base}/xhr opened with {status} {body:?}");
    }
    let (status, body) = request(address, "POST", &format!("{base}/xhr_send"), connect).await?;
    if status != 204 {
        bail!("{base}/xhr_send answered {status} {body:?}");
    }
    let (status, body) = request(address, "POST", &format!("{base}/xhr"), "").await?;
    if status != 200 || !body.contains(r#"\"msg\":\"connected\""#) {
        bail!("{base}/xhr polled {status} {body:?}, not `connected`");
    }
    Ok(())
}

async fn sockjs_websocket(address: &str, base: &str, connect: &str) -> anyhow::Result<()> {
    let url = format!("ws://{address}{base}/websocket");
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await?;
    socket.send(Message::text(connect)).await?;
    wait_for_connected(&mut socket, |frame| {
        frame
            .strip_prefix('a')
            .and_then(|array| serde_json::from_str::<Vec<String>>(array).ok())
            .map(|messages| messages.concat())
            .unwrap_or_default()
    })
    .await?;
    socket.close(None).await?;
    Ok(())
}

/// Every 30 seconds, four WebSocket clients ask for 20 first sync pages each, stop reading
/// for 20 seconds, then vanish. What the server does with them is its own business (it may
/// close them); only failing to connect is an error.
async fn stopped_readers(load: Arc<Load>) {
    while load.running() {
        let started = Instant::now();
        let mut held = Vec::new();
        for _ in 0..4 {
            let connected = within_limit(async {
                let (mut socket, _) = tokio_tungstenite::connect_async(&load.ws_url).await?;
                for frame in sync_requests(20) {
                    socket.feed(Message::text(frame)).await?;
                }
                socket.flush().await?;
                Ok(socket)
            })
            .await;
            match connected {
                Ok(socket) => held.push(socket),
                Err(error) => load.tally().error(Kind::WebSocket, &error),
            }
        }
        tokio::time::sleep_until(
            (started + Duration::from_secs(20))
                .min(load.deadline)
                .into(),
        )
        .await;
        load.abandoned
            .fetch_add(held.len() as u64, Ordering::Relaxed);
        drop(held);
        load.pace(started, Duration::from_secs(30)).await;
    }
}

/// The spread of a per-minute figure over the minutes after the warm-up: max ÷ min − 1.
fn spread(rows: &[Row], figure: fn(&Row) -> u64) -> f64 {
    let min = rows.iter().map(figure).min().unwrap_or(0);
    let max = rows.iter().map(figure).max().unwrap_or(0);
    max as f64 / min.max(1) as f64 - 1.0
}

/// Prints the Markdown report: a row per minute, the latencies, the errors and the verdict.
fn report(args: &BenchSoakArgs, summary: &str, rows: &[Row], failed_loops: &[String]) {
    let mb = |kib: u64| kib as f64 / 1024.0;
    println!(
        "## bench soak: {} minutes, {:?} catalog (seed {}), {} syncing clients\n",
        args.minutes, args.scale, args.seed, args.syncing_clients
    );
    println!("{summary}.\n");
    println!(
        "| minute | RSS MB | anonymous MB | open files (max) | sessions | connections | operations | errors |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for row in rows {
        let (sessions, connections) = match &row.health {
            Ok((sessions, connections)) => (sessions.to_string(), connections.to_string()),
            Err(_) => ("?".to_owned(), "?".to_owned()),
        };
        println!(
            "| {} | {:.1} | {:.1} | {} ({}) | {sessions} | {connections} | {} | {} |",
            row.minute,
            mb(row.rss_kib),
            mb(row.anon_kib),
            row.files,
            row.files_max,
            row.operations(),
            row.errors()
        );
    }

    println!("\nLatency, each minute's median / 99th percentile, in milliseconds:\n");
    let mut head = "| minute |".to_owned();
    let mut rule = "|---|".to_owned();
    for kind in Kind::ALL {
        head.push_str(&format!(" {} |", kind.label()));
        rule.push_str("---|");
    }
    println!("{head}\n{rule}");
    let ms = |latency: Option<Duration>| {
        latency.map_or_else(
            || "–".to_owned(),
            |l| format!("{:.0}", l.as_secs_f64() * 1e3),
        )
    };
    for row in rows {
        let mut line = format!("| {} |", row.minute);
        for latencies in &row.tally.latencies {
            line.push_str(&format!(
                " {} / {} |",
                ms(quantile(latencies, 0.5)),
                ms(quantile(latencies, 0.99))
            ));
        }
        println!("{line}");
    }

    let errors: u64 = rows.iter().map(Row::errors).sum();
    for failure in failed_loops {
        println!("\nA load loop failed: {failure}");
    }
    if errors > 0 {
        println!("\nErrors the load did not cause on purpose (the first of each minute):\n");
        for row in rows {
            for error in &row.tally.first_errors {
                println!("- minute {}: {error}", row.minute);
            }
            if let Err(error) = &row.health {
                println!("- minute {}: /healthz: {error}", row.minute);
            }
        }
    }

    let settled = &rows[args.warmup_minutes as usize..];
    let spreads = [
        ("RSS", spread(settled, |row| row.rss_kib)),
        ("anonymous memory", spread(settled, |row| row.anon_kib)),
        ("open files", spread(settled, |row| row.files)),
    ];
    println!(
        "\nAfter the first {} minutes (target: each within {:.0}% over the rest of the run, and no error):\n",
        args.warmup_minutes,
        FLAT * 100.0
    );
    println!("| figure | spread (max ÷ min − 1) | flat |");
    println!("|---|---|---|");
    for (name, spread) in spreads {
        let flat = if spread <= FLAT { "yes" } else { "**no**" };
        println!("| {name} | {:.1}% | {flat} |", spread * 100.0);
    }
    let settled_errors: u64 = settled.iter().map(Row::errors).sum();
    let verdict = |met: bool| if met { "yes" } else { "**no**" };
    println!(
        "| errors | {settled_errors} (all minutes: {errors}) | {} |",
        verdict(settled_errors == 0)
    );
    let idle: Vec<String> = settled
        .iter()
        .flat_map(|row| {
            Kind::ALL
                .iter()
                .filter(|kind| row.tally.latencies[**kind as usize].is_empty())
                .map(move |kind| format!("{} in minute {}", kind.label(), row.minute))
        })
        .collect();
    println!(
        "| every kind of operation succeeded every minute | {} | {} |",
        if idle.is_empty() {
            "yes".to_owned()
        } else {
            format!("none of: {}", idle.join(", "))
        },
        verdict(idle.is_empty())
    );
    println!(
        "| every load loop ran to the end | {} failed | {} |",
        failed_loops.len(),
        verdict(failed_loops.is_empty())
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_ranks() {
        let latencies: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        assert_eq!(quantile(&latencies, 0.5), Some(Duration::from_millis(50)));
        assert_eq!(quantile(&latencies, 0.99), Some(Duration::from_millis(99)));
        assert_eq!(quantile(&latencies, 1.0), Some(Duration::from_millis(100)));
        assert_eq!(
            quantile(&[Duration::from_millis(7)], 0.99),
            Some(Duration::from_millis(7))
        );
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn the_median_of_samples_ignores_a_spike() {
        assert_eq!(median(&[40, 38, 900, 39, 41]), 40);
        assert_eq!(median(&[]), 0);
    }

    #[test]
    fn spread_is_max_over_min_of_the_rows_given() {
        let row = |files| Row {
            minute: 1,
            rss_kib: 0,
            anon_kib: 0,
            files,
            files_max: files,
            health: Ok((0, 0)),
            tally: Tally::default(),
        };
        let rows = [row(40), row(44), row(42)];
        assert!((spread(&rows, |row| row.files) - 0.10).abs() < 1e-9);
        assert_eq!(spread(&rows[..1], |row| row.files), 0.0);
    }
}
