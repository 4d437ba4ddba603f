//! `exosphere bench abuse`: the hostile tester's attacks (issue 17) at full size against an
//! `exosphere serve` child process with default flags, one attack per fresh server.
//!
//! Each attack is set up and held while an honest client, from another loopback address
//! (`127.0.0.2`, so per-address limits do not mix the two), makes a full catalog sync. The
//! limit is the same sync against the same server before the attack, in the same run. The
//! report gives, per attack, what the server did with it, its peak resident memory and open
//! files while the attack ran (sampled from `/proc`), and the honest sync's time against
//! the limit.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use exosphere_catalog::{CatalogStore as _, StatsRow};
use exosphere_catalog_sqlite::open_sqlite;
use exosphere_synth::Scale;
use futures_util::SinkExt as _;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use super::publish::{Ddp, create_user};
use super::sync::{SyncRun, full_sync};
use super::{ServerProcess, WorkDir, prepare_catalog};
use crate::cli::BenchAbuseArgs;
use crate::fd_limit;

/// The honest client's address: another loopback address than the attacker's.
const HONEST: &str = "127.0.0.2";

/// How often the server's memory and open files are sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);

/// Runs every attack and prints the report.
pub fn run(args: BenchAbuseArgs) -> anyhow::Result<()> {
    let limit = fd_limit::raise().context("cannot raise the open-file limit")?;
    eprintln!("open-file limit of the load generator: {}", limit.soft);
    let work_dir = WorkDir::new(args.work_dir.as_deref())?;
    eprintln!("preparing the small synthetic catalog…");
    let catalog = prepare_catalog(work_dir.path(), Scale::Small, args.seed)?;
    let token = create_user(&catalog.data_dir)?;
    let stats_day = chrono::Utc::now().date_naive() - chrono::Days::new(2);
    eprintln!("writing a stats day of {} rows…", args.stats_rows);
    write_large_day(&catalog.data_dir, &stats_day.to_string(), args.stats_rows)?;
    let env = Env {
        data_dir: catalog.data_dir.clone(),
        token,
        stats_day: stats_day.to_string(),
        idle_connections: usize::try_from(
            args.idle_connections.min(limit.soft.saturating_sub(1024)),
        )?,
        args,
    };
    let runtime = crate::commands::runtime()?;
    let mut rows = Vec::new();
    for attack in ATTACKS {
        eprintln!("attack: {}", attack.name);
        let server = ServerProcess::start(&catalog.data_dir, &[])?;
        let limit_sync = runtime.block_on(honest_sync(&server)).map_err(|error| {
            anyhow::anyhow!("the honest sync failed before any attack: {error}")
        })?;
        let probe = Probe::start(server.pid());
        let outcome = runtime.block_on((attack.run)(&server, &env));
        let (peak_kib, peak_files) = probe.stop();
        let (outcome, honest) = outcome.with_context(|| format!("attack {}", attack.name))?;
        rows.push(Row {
            name: attack.name,
            size: attack.size,
            outcome,
            peak_kib,
            peak_files,
            limit_sync,
            honest,
        });
    }
    report(&rows, &env);
    Ok(())
}

/// What every attack may need.
struct Env {
    data_dir: std::path::PathBuf,
    token: String,
    stats_day: String,
    idle_connections: usize,
    args: BenchAbuseArgs,
}

/// One attack: its name, its size as the report says it, and its run, which sets it up,
/// holds it during an honest sync, and returns what happened and the honest sync's time.
struct Attack {
    name: &'static str,
    size: &'static str,
    run: for<'a> fn(&'a ServerProcess, &'a Env) -> BoxedRun<'a>,
}

/// The future of one attack's run.
type BoxedRun<'a> = std::pin::Pin<Box<dyn Future<Output = anyhow::Result<(String, Honest)>> + 'a>>;

/// Every attack of the issue, in its order.
const ATTACKS: [Attack; 7] = [
    Attack {
        name: "oversized records from a publisher",
        size: "70 versions with ~900 KB of extra fields",
        run: |server, env| Box::pin(junk_publish(server, env)),
    },
    Attack {
        name: "SockJS sessions that never poll",
        size: "200 xhr + xhr_send pairs, 20 sync pages asked each",
        run: |server, _| Box::pin(sockjs_never_poll(server)),
    },
    Attack {
        name: "WebSockets that stop reading",
        size: "200 sockets, 20 sync pages asked each",
        run: |server, _| Box::pin(websockets_not_reading(server)),
    },
    Attack {
        name: "SockJS session flood",
        size: "20,000 xhr POSTs, no DDP connect",
        run: |server, _| Box::pin(xhr_flood(server)),
    },
    Attack {
        name: "idle TCP connections",
        size: "up to 19,995 (the load generator's open-file limit)",
        run: |server, env| Box::pin(idle_connections(server, env)),
    },
    Attack {
        name: "usage report flood",
        size: "4 connections, 2,000 made-up names per call",
        run: |server, env| Box::pin(usage_flood(server, env)),
    },
    Attack {
        name: "slow readers of a large stats day",
        size: "16 readers that stop after 1 KB",
        run: |server, env| Box::pin(slow_stats_readers(server, env)),
    },
];

/// One line of the report.
struct Row {
    name: &'static str,
    size: &'static str,
    outcome: String,
    peak_kib: u64,
    peak_files: u64,
    limit_sync: Duration,
    honest: Honest,
}

/// How the honest client's sync went: its time, or why it failed (the attack won).
type Honest = Result<Duration, String>;

/// A full sync from the honest address.
async fn honest_sync(server: &ServerProcess) -> Honest {
    honest_run(server).await.map(|run| run.elapsed)
}

/// A full sync from the honest address, with what it transferred.
async fn honest_run(server: &ServerProcess) -> Result<SyncRun, String> {
    let source: IpAddr = HONEST.parse().map_err(|error| format!("{error}"))?;
    full_sync(&server.ws_url(), false, false, false, Some(source))
        .await
        .map_err(|error| format!("{error:#}"))
}

/// Samples a process's resident memory and open files until stopped; keeps the peaks.
struct Probe {
    stop: Arc<AtomicBool>,
    sampler: std::thread::JoinHandle<(u64, u64)>,
}

impl Probe {
    /// Starts sampling process `pid` on a thread of its own.
    fn start(pid: u32) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let sampler = std::thread::spawn(move || {
            let (mut kib, mut files) = (0, 0);
            while !stopping.load(Ordering::Relaxed) {
                kib = kib.max(super::process_memory_kib(pid, "VmRSS").unwrap_or(0));
                let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
                    .map(|entries| entries.count() as u64)
                    .unwrap_or(0);
                files = files.max(open);
                std::thread::sleep(SAMPLE_EVERY);
            }
            (kib, files)
        });
        Probe { stop, sampler }
    }

    /// The peak resident KiB and open files seen.
    fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.sampler.join().unwrap_or((0, 0))
    }
}

/// `/healthz`'s `outbound_bytes`: what the server says its sessions hold.
async fn outbound_bytes(server: &ServerProcess) -> anyhow::Result<u64> {
    let (_, body) = request(&server.address, "GET", "/healthz", "").await?;
    let health: Value = serde_json::from_str(&body)?;
    Ok(health["outbound_bytes"].as_u64().unwrap_or(0))
}

/// One HTTP/1.1 request with `Connection: close`; the status and the body as text (joined,
/// if the answer came in chunks).
pub(super) async fn request(
    address: &str,
    method: &str,
    path: &str,
    body: &str,
) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(address).await?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\n\
         Content-Type: text/plain\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .context("an HTTP status line")?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let chunked = head
        .lines()
        .any(|line| line.eq_ignore_ascii_case("transfer-encoding: chunked"));
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

/// The body of a `Transfer-Encoding: chunked` answer: its chunks joined.
fn dechunk(mut raw: &str) -> anyhow::Result<String> {
    let mut body = String::new();
    loop {
        let (size, rest) = raw.split_once("\r\n").context("a chunk size line")?;
        let size = size.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16).context("a hexadecimal chunk size")?;
        if size == 0 {
            return Ok(body);
        }
        body.push_str(rest.get(..size).context("a whole chunk")?);
        raw = rest.get(size + 2..).context("a chunk's line end")?;
    }
}

/// A SockJS session id nobody else uses.
fn session_id(n: u64) -> String {
    format!("abuse{n:012}")
}

/// The DDP frames of a client that connects and asks for the first sync page `pages` times.
pub(super) fn sync_requests(pages: usize) -> Vec<String> {
    let mut frames = vec![r#"{"msg":"connect","version":"1","support":["1"]}"#.to_owned()];
    frames.extend((0..pages).map(|id| {
        format!(
            r#"{{"msg":"method","id":"{id}","method":"syncNewPackageData","params":[{{"format":"1.1"}},{{}}]}}"#
        )
    }));
    frames
}

/// Attack 1: one publisher sends versions carrying ~900 KB of fields no record has.
async fn junk_publish(server: &ServerProcess, env: &Env) -> anyhow::Result<(String, Honest)> {
    let mut ddp = Ddp::connect(&server.ws_url()).await?;
    ddp.call("login", json!([{"resume": env.token}])).await?;
    ddp.call("createPackage", json!([{"name": "bench:junk"}]))
        .await?;
    let junk = "j".repeat(900_000);
    let mut refused = 0;
    for n in 0..70 {
        let record = json!({"packageName": "bench:junk", "version": format!("1.0.{n}"),
            "description": "junk", "dependencies": {}, "releaseName": null, "junk": junk});
        if ddp.answer("createPackageVersion", json!([record])).await?["error"].is_object() {
            refused += 1;
        }
    }
    let honest = honest_run(server).await;
    let largest = honest.as_ref().map_or_else(
        |_| "unknown".to_owned(),
        |run| format!("{:.2} MB", super::mb(run.largest)),
    );
    Ok((
        format!("{refused} of 70 refused; largest sync page afterwards {largest}"),
        honest.map(|run| run.elapsed),
    ))
}

/// Attack 2: SockJS `xhr` sessions that ask for sync pages through `xhr_send` and never
/// poll for the answers.
async fn sockjs_never_poll(server: &ServerProcess) -> anyhow::Result<(String, Honest)> {
    let body = serde_json::to_string(&sync_requests(20))?;
    let mut sent = 0;
    for n in 0..200 {
        let path = format!("/sockjs/000/{}", session_id(n));
        let (opened, _) = request(&server.address, "POST", &format!("{path}/xhr"), "").await?;
        if opened != 200 {
            continue;
        }
        let (status, _) =
            request(&server.address, "POST", &format!("{path}/xhr_send"), &body).await?;
        if status == 204 {
            sent += 1;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held = outbound_bytes(server).await?;
    let honest = honest_sync(server).await;
    Ok((
        format!(
            "{sent} of 200 sessions took their calls; /healthz outbound_bytes {:.1} MB",
            super::mb(held)
        ),
        honest,
    ))
}

/// Attack 3: WebSockets that ask for sync pages and stop reading.
async fn websockets_not_reading(server: &ServerProcess) -> anyhow::Result<(String, Honest)> {
    let mut sockets = Vec::new();
    let mut refused = 0;
    for _ in 0..200 {
        match tokio_tungstenite::connect_async(server.ws_url()).await {
            Ok((mut socket, _)) => {
                for frame in sync_requests(20) {
                    socket.feed(Message::text(frame)).await?;
                }
                socket.flush().await?;
                sockets.push(socket);
            }
            Err(_) => refused += 1,
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held = outbound_bytes(server).await?;
    let honest = honest_sync(server).await;
    drop(sockets);
    Ok((
        format!(
            "{refused} of 200 refused at connect; /healthz outbound_bytes {:.1} MB",
            super::mb(held)
        ),
        honest,
    ))
}

/// Attack 4: SockJS `xhr` POSTs for new sessions as fast as possible, never sending DDP.
async fn xhr_flood(server: &ServerProcess) -> anyhow::Result<(String, Honest)> {
    let (opened, refused, failed) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let next = Arc::new(AtomicU64::new(1_000));
    let started = Instant::now();
    let workers: Vec<_> = (0..64)
        .map(|_| {
            let (opened, refused, failed, next) = (
                Arc::clone(&opened),
                Arc::clone(&refused),
                Arc::clone(&failed),
                Arc::clone(&next),
            );
            let address = server.address.clone();
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= 21_000 {
                        return;
                    }
                    let path = format!("/sockjs/000/{}/xhr", session_id(n));
                    match request(&address, "POST", &path, "").await {
                        Ok((200, _)) => opened.fetch_add(1, Ordering::Relaxed),
                        Ok(_) => refused.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await?;
    }
    let flood = started.elapsed();
    let honest = honest_sync(server).await;
    Ok((
        format!(
            "in {flood:.1?}: {} opened, {} refused, {} failed",
            opened.load(Ordering::Relaxed),
            refused.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed)
        ),
        honest,
    ))
}

/// Attack 5: TCP connections that send nothing.
async fn idle_connections(server: &ServerProcess, env: &Env) -> anyhow::Result<(String, Honest)> {
    let mut held = Vec::with_capacity(env.idle_connections);
    let mut failed = 0;
    for _ in 0..env.idle_connections {
        match TcpStream::connect(&server.address).await {
            Ok(stream) => held.push(stream),
            Err(_) => failed += 1,
        }
    }
    let honest = honest_sync(server).await;
    // Which ones the server closed meanwhile: a read that ends at once.
    let mut closed = 0;
    for stream in &mut held {
        let mut byte = [0u8; 1];
        if let Ok(Ok(0)) =
            tokio::time::timeout(Duration::from_millis(1), stream.read(&mut byte)).await
        {
            closed += 1;
        }
    }
    Ok((
        format!(
            "{} opened ({failed} failed to connect); {closed} closed by the server by the end",
            held.len()
        ),
        honest,
    ))
}

/// Attack 6: connections reporting made-up package names as fast as they are answered.
async fn usage_flood(server: &ServerProcess, env: &Env) -> anyhow::Result<(String, Honest)> {
    let stop = Arc::new(AtomicBool::new(false));
    let (accepted, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut flooders = Vec::new();
    for connection in 0..4u64 {
        let mut ddp = Ddp::connect(&server.ws_url()).await?;
        let (stop, accepted, refused) = (
            Arc::clone(&stop),
            Arc::clone(&accepted),
            Arc::clone(&refused),
        );
        flooders.push(tokio::spawn(async move {
            let mut call = 0u64;
            while !stop.load(Ordering::Relaxed) {
                call += 1;
                let packages: Vec<Value> = (0..2000)
                    .map(|i| json!({"name": format!("made-up-{connection}-{call}-{i}"), "version": "1.0.0", "local": false, "direct": true}))
                    .collect();
                let app = format!("flood-{connection}-{call}");
                match ddp.answer("recordAppPackages", json!([app, packages, {}])).await {
                    Ok(answer) if answer["error"].is_object() => refused.fetch_add(1, Ordering::Relaxed),
                    Ok(_) => accepted.fetch_add(1, Ordering::Relaxed),
                    Err(_) => return,
                };
            }
        }));
    }
    let before = super::dir_size(&env.data_dir)?;
    let honest = honest_sync(server).await;
    tokio::time::sleep(Duration::from_secs(env.args.flood_seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for flooder in flooders {
        let _ = flooder.await;
    }
    let grown = super::dir_size(&env.data_dir)?.saturating_sub(before);
    Ok((
        format!(
            "{} calls accepted, {} refused; the data directory grew {:.1} MB",
            accepted.load(Ordering::Relaxed),
            refused.load(Ordering::Relaxed),
            super::mb(grown)
        ),
        honest,
    ))
}

/// Attack 7: readers of a large `/stats/v1` day that stop reading after the first kilobyte.
async fn slow_stats_readers(server: &ServerProcess, env: &Env) -> anyhow::Result<(String, Honest)> {
    let path = format!("/stats/v1/{}", env.stats_day);
    let mut stalled = Vec::new();
    for _ in 0..16 {
        let mut stream = TcpStream::connect(&server.address).await?;
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n").as_bytes())
            .await?;
        let mut first = [0u8; 1024];
        stream.read_exact(&mut first).await?;
        stalled.push(stream);
    }
    let started = Instant::now();
    let (status, day) = request(&server.address, "GET", &path, "").await?;
    if status != 200 {
        bail!("the stats day answered {status}");
    }
    let download = started.elapsed();
    let honest = honest_sync(server).await;
    drop(stalled);
    Ok((
        format!(
            "16 stalled; an honest reader got the {:.1} MB day in {download:.2?}",
            super::mb(day.len() as u64)
        ),
        honest,
    ))
}

/// Writes `rows` stats rows for `day` straight into the catalog: a day as large as the one
/// the tester's flood made (87 MB at about a million rows).
fn write_large_day(data_dir: &Path, day: &str, rows: u64) -> anyhow::Result<()> {
    let store = open_sqlite(data_dir)?;
    store.write(&mut |writer| {
        for n in 0..rows {
            let row = StatsRow::new(day, format!("made-up-package-{n:09}"), "1.0.0", 1, 1)
                .map_err(|error| exosphere_catalog::StoreError::Corrupt(error.to_string()))?;
            writer.upsert_stats(&row)?;
        }
        Ok(())
    })?;
    Ok(())
}

/// Prints the Markdown report.
fn report(rows: &[Row], env: &Env) {
    println!("## exosphere bench abuse");
    println!();
    println!(
        "Each attack against a fresh `exosphere serve` with default flags; the honest client \
         syncs the small synthetic catalog from {HONEST}. Idle connections: {}.",
        env.idle_connections
    );
    println!();
    println!(
        "| attack | size | what the server did | peak RSS | peak open files | honest sync during / before |"
    );
    println!("|---|---|---|---|---|---|");
    for row in rows {
        let honest = match &row.honest {
            Ok(time) => format!(
                "{:.2} s / {:.2} s ({:.2}×)",
                time.as_secs_f64(),
                row.limit_sync.as_secs_f64(),
                time.as_secs_f64() / row.limit_sync.as_secs_f64().max(f64::EPSILON)
            ),
            Err(error) => format!(
                "**failed**: {error} / {:.2} s",
                row.limit_sync.as_secs_f64()
            ),
        };
        println!(
            "| {} | {} | {} | {:.1} MB | {} | {honest} |",
            row.name,
            row.size,
            row.outcome,
            row.peak_kib as f64 / 1024.0,
            row.peak_files,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::dechunk;

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(dechunk("2\r\no\n\r\n0\r\n\r\n").unwrap(), "o\n");
        assert_eq!(
            dechunk("3;ext=1\r\nabc\r\nA\r\n0123456789\r\n0\r\n\r\n").unwrap(),
            "abc0123456789"
        );
        assert!(dechunk("5\r\nab").is_err(), "a cut chunk is an error");
        assert!(dechunk("zz\r\n").is_err(), "a size must be hexadecimal");
    }
}
