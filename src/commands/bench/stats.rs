//! `exosphere bench stats`: how fast `recordAppPackages` is recorded over DDP, and how long a
//! day's rollup takes, measured against physical limits taken in the same run.
//!
//! A deterministic workload simulates apps (each with its own package list, popular packages
//! more often, upgraded now and then to newer versions) making calls spread over a number of
//! days. The same calls are run three ways:
//!
//! 1. straight into SQLite through the catalog library, in large transactions, with the
//!    simulated day of each call (the storage limit); every simulated day is then rolled up
//!    and timed, and the data directory's size is the storage used;
//! 2. over DDP to a method that does not exist, from many connections at once: the same
//!    frames and round trips without any storage (the protocol limit);
//! 3. over DDP as `recordAppPackages` to an `exosphere serve` child process, from the same
//!    connections; the server records them on today's date (it takes the system clock), so
//!    rolling up that one day afterwards is the worst case of a day holding every add.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use chrono::{Days, NaiveDate, Utc};
use exosphere_catalog::CatalogStore;
use exosphere_catalog::usage::{self, AppReport, UsedPackage};
use exosphere_catalog_sqlite::open_sqlite;
use futures_util::{SinkExt as _, StreamExt as _};
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use tokio_tungstenite::tungstenite::Message;

use super::{ServerProcess, WorkDir, dir_size, mb};
use crate::cli::BenchStatsArgs;

/// Distinct packages the simulated apps choose from.
const PACKAGE_POOL: usize = 3000;

/// Reports per transaction when writing straight into SQLite.
const BULK_BATCH: usize = 10_000;

/// The first simulated day.
const FIRST_DAY: NaiveDate = NaiveDate::from_ymd_opt(2025, 1, 1).expect("a valid date");

/// Runs the whole benchmark and prints a Markdown report to standard output.
pub fn run(args: BenchStatsArgs) -> anyhow::Result<()> {
    let work_dir = WorkDir::new(args.work_dir.as_deref())?;
    let workload = Arc::new(Workload::new(&args)?);

    // 1. The storage limit: the same reports written straight into SQLite, day by day.
    let bulk_dir = work_dir.path().join("bulk");
    if bulk_dir.exists() {
        std::fs::remove_dir_all(&bulk_dir)?;
    }
    let store = open_sqlite(&bulk_dir)?;
    let started = Instant::now();
    let mut pending = Vec::with_capacity(BULK_BATCH);
    let write = |pending: &mut Vec<(NaiveDate, AppReport)>| {
        store.write(&mut |w| {
            pending
                .iter()
                .try_for_each(|(day, report)| w.record_usage(*day, report))
        })?;
        pending.clear();
        anyhow::Ok(())
    };
    for shard in workload.shards(1) {
        for call in shard {
            pending.push((call.day, call.report(&workload)));
            if pending.len() == BULK_BATCH {
                write(&mut pending)?;
            }
        }
    }
    write(&mut pending)?;
    let bulk_time = started.elapsed();
    eprintln!(
        "wrote {} calls straight into SQLite in {bulk_time:.2?}",
        workload.calls
    );
    let mut rollups = Vec::new();
    for offset in 0..workload.days {
        let day = workload.day(offset);
        let started = Instant::now();
        let rows = usage::roll_up(&store, day)?.unwrap_or(0);
        rollups.push((day, rows, started.elapsed()));
    }
    drop(store);
    let bulk_bytes = dir_size(&bulk_dir)?;

    // 2 and 3: over DDP, first to a missing method, then recording for real.
    let data_dir = work_dir.path().join("data");
    if data_dir.exists() {
        std::fs::remove_dir_all(&data_dir)?;
    }
    // The workload's packages are in no catalog here, and one address makes every call:
    // count them all and lift the rate budgets, to measure recording itself.
    let server = ServerProcess::start(
        &data_dir,
        &[
            "--stats-count-unknown-packages",
            "--stats-rate-per-address",
            "0",
            "--stats-rate-global",
            "0",
        ],
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let noop = runtime.block_on(call_all(
        &server.ws_url(),
        &workload,
        args.connections,
        "benchNoSuchMethod",
    ))?;
    eprintln!("{} calls to a missing method in {noop:.2?}", workload.calls);
    let recorded = runtime.block_on(call_all(
        &server.ws_url(),
        &workload,
        args.connections,
        "recordAppPackages",
    ))?;
    eprintln!(
        "{} recordAppPackages calls in {recorded:.2?}",
        workload.calls
    );
    let peak_rss_kib = server.memory_kib("VmHWM")?;
    let today = Utc::now().date_naive();
    let store = open_sqlite(&data_dir)?;
    let started = Instant::now();
    let today_rows = usage::roll_up(&store, today)?.unwrap_or(0);
    let today_rollup = started.elapsed();
    drop(store);
    drop(server);
    let served_bytes = dir_size(&data_dir)?;

    let rate = |elapsed: Duration| workload.calls as f64 / elapsed.as_secs_f64();
    let (ddp_rate, noop_rate, bulk_rate) = (rate(recorded), rate(noop), rate(bulk_time));
    let worst = rollups
        .iter()
        .max_by_key(|(_, _, elapsed)| *elapsed)
        .context("no day was rolled up")?;
    let mean = rollups
        .iter()
        .map(|(_, _, elapsed)| elapsed.as_secs_f64())
        .sum::<f64>()
        / rollups.len() as f64;
    println!(
        "## exosphere bench stats ({} calls, {} apps, {} days, {} packages per call, {} connections, seed {})",
        workload.calls, workload.apps, workload.days, args.packages, args.connections, args.seed
    );
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| recordAppPackages over DDP | {:.0} calls/s ({:.2} s) |",
        ddp_rate,
        recorded.as_secs_f64()
    );
    println!(
        "| limit: missing method over DDP (same frames, no storage) | {:.0} calls/s, ratio {:.2} |",
        noop_rate,
        ddp_rate / noop_rate
    );
    println!(
        "| limit: straight into SQLite, {BULK_BATCH} calls per transaction | {:.0} calls/s, ratio {:.2} |",
        bulk_rate,
        ddp_rate / bulk_rate
    );
    println!(
        "| rollup per simulated day | mean {:.3} s, worst {:.3} s ({}, {} rows) |",
        mean,
        worst.2.as_secs_f64(),
        worst.0,
        worst.1
    );
    println!(
        "| rollup of the DDP day (every call on one day) | {:.3} s ({today_rows} rows) |",
        today_rollup.as_secs_f64()
    );
    println!(
        "| storage, {} simulated days | {:.1} MB ({:.0} bytes per call) |",
        workload.days,
        mb(bulk_bytes),
        bulk_bytes as f64 / workload.calls as f64
    );
    println!("| storage, DDP run | {:.1} MB |", mb(served_bytes));
    println!(
        "| server peak RSS | {:.1} MB |",
        peak_rss_kib as f64 / 1024.0
    );
    println!(
        "| targets (≥ 5,000 calls/s, a day's rollup < 5 s) | {} calls/s, {} rollup |",
        if ddp_rate >= 5000.0 { "met" } else { "NOT met" },
        if worst.2.max(today_rollup) < Duration::from_secs(5) {
            "met"
        } else {
            "NOT met"
        }
    );
    Ok(())
}

/// The simulated apps and calls; the same arguments always give the same calls.
struct Workload {
    calls: u64,
    apps: u64,
    days: u32,
    packages: usize,
    seed: u64,
    names: Vec<String>,
}

/// One simulated call: its day, its app, and `(package index, minor version, direct)` of
/// each package the app uses.
struct Call {
    day: NaiveDate,
    app: u64,
    packages: Vec<(usize, u32, bool)>,
}

impl Call {
    /// The app id the call reports.
    fn app_id(&self) -> String {
        format!("app{:08}", self.app)
    }

    /// The call as the catalog library records it.
    fn report(&self, workload: &Workload) -> AppReport {
        let packages = self
            .packages
            .iter()
            .map(|(k, minor, direct)| UsedPackage {
                name: workload.names[*k].clone(),
                version: format!("1.{minor}.0"),
                direct: *direct,
            })
            .collect();
        AppReport::new(self.app_id(), packages).expect("simulated app ids are valid")
    }

    /// The `method` frame of the call, shaped as the tool sends it (spec §7.1), with one
    /// local package that the server must leave out.
    fn frame(&self, id: usize, method: &str, workload: &Workload) -> String {
        use std::fmt::Write as _;
        let mut out = String::with_capacity(200 + self.packages.len() * 80);
        let _ = write!(
            out,
            r#"{{"msg":"method","id":"{id}","method":"{method}","params":["{}",["#,
            self.app_id()
        );
        for (k, minor, direct) in &self.packages {
            let _ = write!(
                out,
                r#"{{"name":"{}","version":"1.{minor}.0","local":false,"direct":{direct}}},"#,
                workload.names[*k]
            );
        }
        out.push_str(
            r#"{"name":"my-app-code","version":"0.0.1","local":true,"direct":true}],{"what":"sdk.run","userAgent":"Meteor/3.0.4 OS/linux","sessionId":"bench"}]}"#,
        );
        out
    }
}

impl Workload {
    fn new(args: &BenchStatsArgs) -> anyhow::Result<Self> {
        let packages = args.packages as usize;
        if packages > PACKAGE_POOL {
            bail!("at most {PACKAGE_POOL} packages per call");
        }
        let names = (0..PACKAGE_POOL)
            .map(|k| format!("author{}:package{k}", k % 211))
            .collect();
        Ok(Self {
            calls: args.calls,
            apps: args.apps,
            days: args.days,
            packages,
            seed: args.seed,
            names,
        })
    }

    /// The `offset`-th simulated day.
    fn day(&self, offset: u32) -> NaiveDate {
        FIRST_DAY + Days::new(u64::from(offset))
    }

    /// The calls split into `count` shards by app: each shard holds every call of its apps,
    /// round by round, so each app's upgrades happen in the simulated order.
    fn shards(self: &Arc<Self>, count: u64) -> Vec<Shard> {
        (0..count)
            .map(|shard| {
                let apps: Vec<u64> = (shard..self.apps).step_by(count as usize).collect();
                Shard {
                    workload: Arc::clone(self),
                    states: apps.iter().map(|_| None).collect(),
                    apps,
                    round: 0,
                    position: 0,
                }
            })
            .collect()
    }

    /// The newest version of package `k` on simulated day `offset`: packages release at
    /// different paces, so apps upgrading on the same day often meet the same version.
    fn latest(k: usize, offset: u64) -> u32 {
        u32::try_from(offset / (2 + k as u64 % 9)).unwrap_or(u32::MAX)
    }
}

/// What one simulated app currently uses: package indices, their minor versions, and
/// whether each is listed directly.
struct AppState {
    packages: Vec<(usize, u32, bool)>,
}

/// The calls of some apps, in order.
struct Shard {
    workload: Arc<Workload>,
    apps: Vec<u64>,
    states: Vec<Option<AppState>>,
    round: u64,
    position: usize,
}

impl Iterator for Shard {
    type Item = Call;

    fn next(&mut self) -> Option<Call> {
        let w = Arc::clone(&self.workload);
        loop {
            if self.apps.is_empty() || self.round.saturating_mul(w.apps) >= w.calls {
                return None;
            }
            let position = self.position;
            let round = self.round;
            self.position += 1;
            if self.position == self.apps.len() {
                self.position = 0;
                self.round += 1;
            }
            let app = self.apps[position];
            let index = round * w.apps + app;
            if index >= w.calls {
                continue;
            }
            let offset = index * u64::from(w.days) / w.calls;
            let mut rng =
                ChaCha8Rng::seed_from_u64(w.seed ^ app.rotate_left(24) ^ round.rotate_left(52));
            let state = self.states[position].get_or_insert_with(|| {
                let mut packages: Vec<(usize, u32, bool)> = Vec::with_capacity(w.packages);
                while packages.len() < w.packages {
                    // Cubing a uniform number makes low indices (popular packages) likely.
                    let k = (PACKAGE_POOL as f64 * rng.random::<f64>().powi(3)) as usize;
                    if packages.iter().all(|(other, _, _)| *other != k) {
                        let direct = packages.len().is_multiple_of(5);
                        packages.push((k, Workload::latest(k, offset), direct));
                    }
                }
                AppState { packages }
            });
            if round > 0 && rng.random_bool(0.2) {
                for _ in 0..rng.random_range(1..=3) {
                    let slot = rng.random_range(0..state.packages.len());
                    let (k, minor, _) = &mut state.packages[slot];
                    *minor = (*minor).max(Workload::latest(*k, offset));
                }
            }
            return Some(Call {
                day: w.day(u32::try_from(offset).unwrap_or(u32::MAX)),
                app,
                packages: state.packages.clone(),
            });
        }
    }
}

/// Makes every call of the workload as `method` over `connections` DDP sessions, each
/// waiting for its answer before the next call like the tool; returns the elapsed time.
/// Every `recordAppPackages` call must succeed; every call to another method must fail.
async fn call_all(
    url: &str,
    workload: &Arc<Workload>,
    connections: u32,
    method: &'static str,
) -> anyhow::Result<Duration> {
    let mut sessions = Vec::new();
    for shard in workload.shards(u64::from(connections)) {
        let (mut socket, _) = tokio_tungstenite::connect_async(url).await?;
        socket
            .send(Message::text(
                r#"{"msg":"connect","version":"1","support":["1"]}"#,
            ))
            .await?;
        sessions.push((socket, shard));
    }
    let started = Instant::now();
    let tasks: Vec<_> = sessions
        .into_iter()
        .map(|(mut socket, shard)| {
            let workload = Arc::clone(workload);
            tokio::spawn(async move {
                for (id, call) in shard.enumerate() {
                    socket
                        .send(Message::text(call.frame(id, method, &workload)))
                        .await?;
                    loop {
                        let Some(message) = socket.next().await else {
                            bail!("the server closed a connection");
                        };
                        let Message::Text(text) = message? else {
                            continue;
                        };
                        let text = text.as_str();
                        if !text.starts_with(r#"{"msg":"result""#) {
                            continue;
                        }
                        let failed = text.contains(r#""error":"#);
                        if failed == (method == "recordAppPackages") {
                            bail!("unexpected answer to {method}: {text}");
                        }
                        break;
                    }
                }
                socket.close(None).await?;
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(started.elapsed())
}
