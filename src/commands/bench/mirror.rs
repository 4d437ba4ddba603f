//! `exosphere bench mirror`: the upstream mirror against the local limits, in one run.
//!
//! 1. **Initial mirror.** A synthetic catalog is imported into an upstream data directory
//!    (that import is the local limit: the same records into SQLite, without the network;
//!    it is timed again before each later run, as the machine's load varies) and served by an
//!    `exosphere serve` child process; a second one starts with `--upstream` on a fresh
//!    directory, and the time until its `/healthz` says `up to date` is measured.
//! 2. **Lag.** A client subscribed to `changes` on the upstream and one on the mirror; one
//!    record is imported into the upstream's directory, and the time until each client's
//!    `changed` arrives is measured: the mirror's lag is its tick minus the upstream's own.
//! 3. **Files.** Per run, a file of `--file-size` bytes in the upstream's file store, named by
//!    a build record of the upstream: downloaded directly from the upstream (its `/packages`
//!    route, from its file store, after one untimed download so that the file is in the page
//!    cache: the limit), through the mirror cold (first request, fetched while streamed) and
//!    warm (cached); direct and warm are the best of three downloads. A plain HTTP file host in this process (the upstream's file
//!    host, as S3 is packages.meteor.com's) serves the same bytes from memory, as an extra
//!    row, and a second file that 50 clients ask the mirror for at once, cold, counting the
//!    host's requests.
//! 4. **Files across a link** (`--file-link-rate`). On loopback the upstream sends a file
//!    faster than the mirror can hash it, which no real upstream does: packages.meteor.com's
//!    files come from another host over a network. A second `exosphere serve` holding copies
//!    of the file runs behind a [`ShapedLink`]; per run, a copy is downloaded from it directly
//!    and through the mirror, cold and warm, as in 3.

use std::collections::HashMap;
use std::io::Cursor;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use exosphere_catalog::dump;
use exosphere_catalog_sqlite::open_sqlite;
use exosphere_ddp::client::{Client, ClientConfig};
use exosphere_sync_client::Changes;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use super::link::ShapedLink;
use super::publish::http;
use super::{ServerProcess, WorkDir, import_dump, mb, prepare_catalog};
use crate::cli::BenchMirrorArgs;

/// Downloads of a file whose best time is kept, where a file can be downloaded again (all
/// but cold ones).
const REPEATS: usize = 3;

/// Clients asking for one uncached file at once.
const CONCURRENT_CLIENTS: usize = 50;

/// How long the catalog watchers get to publish earlier writes before a measured one.
const SETTLE: Duration = Duration::from_secs(1);

/// The longest a mirror may take to catch up before the benchmark gives up.
const PATIENCE: Duration = Duration::from_secs(1800);

/// Runs the whole benchmark and prints a Markdown report to standard output.
pub fn run(args: BenchMirrorArgs) -> anyhow::Result<()> {
    let work = WorkDir::new(args.catalog.work_dir.as_deref())?;
    let catalog = prepare_catalog(work.path(), args.catalog.scale, args.catalog.seed)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let size = usize::try_from(args.file_size)?;
    let files = runtime.block_on(FileHost::start(size))?;
    let upstream = ServerProcess::start(&catalog.data_dir, &[])?;
    let upstream_url = format!("http://{}", upstream.address);
    let stored = store_files(&catalog.data_dir, &files, "single", args.catalog.runs)?;
    let linked = args
        .file_link_rate
        .map(|rate| LinkedHost::start(work.path(), rate, &files, args.catalog.runs))
        .transpose()?;
    let mut urls: Vec<(String, &str)> = stored
        .iter()
        .map(|path| (format!("{upstream_url}{path}"), FILES[0]))
        .collect();
    if let Some(linked) = &linked {
        let far = format!("http://{}", linked.server.address);
        urls.extend(
            linked
                .paths
                .iter()
                .map(|path| (format!("{far}{path}"), FILES[0])),
        );
    }
    urls.push((files.url(FILES[1]), FILES[1]));
    add_file_builds(&catalog.data_dir, &files, &urls)?;

    let mut initial = Vec::new();
    let mut imports = vec![catalog.import_time];
    let mut last = None;
    for run in 0..args.catalog.runs {
        if run > 0 {
            // The limit again, beside this run: the machine's load varies between runs.
            let dir = work.path().join("import");
            imports.push(import_dump(&catalog.dump_path, &dir)?.1);
            std::fs::remove_dir_all(&dir)?;
        }
        let dir = work.path().join(format!("mirror-{run}"));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        let started = Instant::now();
        let mirror = ServerProcess::start(&dir, &["--upstream", &upstream_url])?;
        runtime.block_on(until_up_to_date(&mirror.address))?;
        initial.push(started.elapsed());
        eprintln!("initial mirror {}: {:.2?}", run + 1, started.elapsed());
        last = Some(mirror);
    }
    let mirror = last.context("at least one run")?;
    let lags = runtime.block_on(lag(
        &catalog.data_dir,
        &upstream,
        &mirror,
        args.catalog.runs,
    ))?;
    let downloads = runtime.block_on(downloads(&files, &stored, &upstream, &mirror))?;
    let linked_runs = match &linked {
        Some(linked) => {
            let measured = linked.link.measure()?;
            let runs = runtime.block_on(file_runs(
                &linked.paths,
                &linked.server,
                &mirror,
                size as u64,
                None,
            ))?;
            Some((linked.link.rate_bits(), measured, runs))
        }
        None => None,
    };

    let ratios: Vec<f64> = initial
        .iter()
        .zip(&imports)
        .map(|(mirror, import)| mirror.as_secs_f64() / import.as_secs_f64().max(1e-9))
        .collect();
    let best = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "## bench mirror: {} records ({:.1} MB), files of {:.1} MB\n",
        catalog.records(),
        mb(catalog.generated.bytes),
        mb(args.file_size)
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| initial mirror from an Exosphere upstream on loopback, each run | {} |",
        seconds(&initial)
    );
    println!(
        "| `exosphere import` of the same dump (the local limit), before each run | {} |",
        seconds(&imports)
    );
    let each: Vec<String> = ratios.iter().map(|ratio| format!("{ratio:.2}")).collect();
    println!(
        "| **ratio initial mirror / import, each run (best)** | **{} ({best:.2})** |",
        each.join(", ")
    );
    for (upstream_tick, mirror_tick) in &lags {
        println!(
            "| write → `changed` on the upstream / on the mirror | {:.0} ms / {:.0} ms |",
            ms(*upstream_tick),
            ms(*mirror_tick)
        );
    }
    let lag = lags
        .iter()
        .map(|(up, down)| down.saturating_sub(*up))
        .max()
        .unwrap_or_default();
    println!(
        "| **mirror lag past the upstream's own tick, worst** | **{:.0} ms** |",
        ms(lag)
    );
    let rate = |time: Duration| mb(args.file_size) / time.as_secs_f64().max(1e-9);
    let timed = |time: Duration| format!("{:.3} s, {:.0} MB/s", time.as_secs_f64(), rate(time));
    for (run, files) in downloads.runs.iter().enumerate() {
        let run = run + 1;
        println!(
            "| file, run {run}: direct from the upstream (its `/packages` route, its file store), \
             best of {REPEATS} | {} |",
            timed(files.direct)
        );
        if let Some(memory) = files.memory {
            println!(
                "| file, run {run}: direct from the in-memory file host, best of {REPEATS} | {} |",
                timed(memory)
            );
        }
        println!(
            "| file, run {run}: through the mirror, cold (fetched while streamed) | {} |",
            timed(files.cold)
        );
        println!(
            "| file, run {run}: through the mirror, warm (cached), best of {REPEATS} | {} |",
            timed(files.warm)
        );
        let direct = files.direct.as_secs_f64().max(1e-9);
        println!(
            "| **file, run {run}: ratio cold / direct, warm / direct** | **{:.2}, {:.2}** |",
            files.cold.as_secs_f64() / direct,
            files.warm.as_secs_f64() / direct
        );
    }
    if let Some((rate_bits, measured, runs)) = &linked_runs {
        println!(
            "| file host behind a link shaped to {:.0} Mbit/s (no added delay), measured TCP \
             rate | {:.1} MB/s |",
            *rate_bits as f64 / 1e6,
            measured / 1e6
        );
        for (run, files) in runs.iter().enumerate() {
            let run = run + 1;
            println!(
                "| linked file, run {run}: direct across the link, best of {REPEATS} | {} |",
                timed(files.direct)
            );
            println!(
                "| linked file, run {run}: through the mirror, cold (fetched across the link \
                 while streamed) | {} |",
                timed(files.cold)
            );
            println!(
                "| linked file, run {run}: through the mirror, warm (cached), best of {REPEATS} \
                 | {} |",
                timed(files.warm)
            );
            let direct = files.direct.as_secs_f64().max(1e-9);
            println!(
                "| **linked file, run {run}: ratio cold / direct, warm / direct** | **{:.2}, \
                 {:.2}** |",
                files.cold.as_secs_f64() / direct,
                files.warm.as_secs_f64() / direct
            );
        }
    }
    println!(
        "| {CONCURRENT_CLIENTS} concurrent cold requests for one file: slowest client, upstream \
         requests | {:.3} s, {} |",
        downloads.concurrent.as_secs_f64(),
        downloads.concurrent_fetches
    );
    println!(
        "| mirror peak RSS | {:.1} MB |",
        mirror.memory_kib("VmHWM")? as f64 / 1024.0
    );
    Ok(())
}

/// Durations as a list of seconds.
fn seconds(times: &[Duration]) -> String {
    times
        .iter()
        .map(|time| format!("{:.2} s", time.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Milliseconds of a duration.
fn ms(time: Duration) -> f64 {
    time.as_secs_f64() * 1000.0
}

/// Waits until the server's `/healthz` says its mirror is up to date.
async fn until_up_to_date(address: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let health = get_json(address, "/healthz").await?;
        match health["mirror"]["state"].as_str() {
            Some("up to date") => return Ok(()),
            Some("failing") => bail!("the mirror fails: {}", health["mirror"]),
            _ if Instant::now() > deadline => bail!("the mirror never caught up: {health}"),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// A GET whose body is JSON.
async fn get_json(address: &str, path: &str) -> anyhow::Result<Value> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let head = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    serde_json::from_str(body).with_context(|| format!("{path} is not JSON: {body:.200}"))
}

/// `runs` times: one record imported into the upstream's directory, and the time until a
/// subscriber of `changes` on the upstream and one on the mirror see it, as
/// `(upstream, mirror)`.
async fn lag(
    upstream_dir: &Path,
    upstream: &ServerProcess,
    mirror: &ServerProcess,
    runs: u32,
) -> anyhow::Result<Vec<(Duration, Duration)>> {
    let connect = |address: &str| {
        let url = format!("http://{address}");
        async move { Client::connect(&url, ClientConfig::default()).await }
    };
    let (up_client, mirror_client) = (
        connect(&upstream.address).await?,
        connect(&mirror.address).await?,
    );
    // Both watchers publish writes every --watch-interval (250 ms): let the counters of the
    // mirror's last writes arrive before the subscriptions take them.
    tokio::time::sleep(SETTLE).await;
    let mut up = Changes::subscribe(&up_client)
        .await
        .context("the upstream offers no changes publication")?;
    let mut down = Changes::subscribe(&mirror_client)
        .await
        .context("the mirror offers no changes publication")?;
    let mut out = Vec::new();
    for run in 0..runs {
        let record = json!({"collection": "packages", "doc": {
            "_id": format!("benchLag{run}"), "name": format!("bench-lag-{run}"),
            "maintainers": [], "lastUpdated": {"$date": 1}
        }});
        let started = Instant::now();
        let store = open_sqlite(upstream_dir)?;
        dump::import(&store, Cursor::new(format!("{record}\n")))?;
        drop(store);
        let (up_moved, down_moved) = tokio::join!(
            async {
                up.moved().await?;
                Ok::<_, anyhow::Error>(started.elapsed())
            },
            async {
                down.moved().await?;
                Ok::<_, anyhow::Error>(started.elapsed())
            }
        );
        out.push((up_moved?, down_moved?));
        tokio::time::sleep(SETTLE).await;
    }
    Ok(out)
}

/// A plain HTTP/1.1 file host: `GET /<name>` answers the file's bytes with its length.
struct FileHost {
    address: String,
    files: Arc<HashMap<String, Vec<u8>>>,
    requests: Arc<Mutex<HashMap<String, u64>>>,
}

/// The two files the host serves: one for single downloads, one for the concurrent ones.
const FILES: [&str; 2] = ["single.tgz", "concurrent.tgz"];

impl FileHost {
    async fn start(size: usize) -> anyhow::Result<FileHost> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        let files: HashMap<String, Vec<u8>> = FILES
            .iter()
            .enumerate()
            .map(|(seed, name)| {
                let bytes = (0..size).map(|i| ((i * 31 + seed) % 251) as u8).collect();
                (format!("/{name}"), bytes)
            })
            .collect();
        let host = FileHost {
            address,
            files: Arc::new(files),
            requests: Arc::new(Mutex::new(HashMap::new())),
        };
        let (files, requests) = (Arc::clone(&host.files), Arc::clone(&host.requests));
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (files, requests) = (Arc::clone(&files), Arc::clone(&requests));
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let text = String::from_utf8_lossy(&head);
                    let path = text
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or_default()
                        .to_owned();
                    *requests
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .entry(path.clone())
                        .or_default() += 1;
                    let Some(bytes) = files.get(&path) else {
                        let _ = stream
                            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                            .await;
                        return;
                    };
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        bytes.len()
                    );
                    if stream.write_all(head.as_bytes()).await.is_ok() {
                        let _ = stream.write_all(bytes).await;
                    }
                });
            }
        });
        Ok(host)
    }

    fn url(&self, name: &str) -> String {
        format!("http://{}/{name}", self.address)
    }

    fn requests(&self, name: &str) -> u64 {
        self.requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&format!("/{name}"))
            .copied()
            .unwrap_or(0)
    }
}

/// Puts one copy of the host's single file per run into the file store of a server's data
/// directory (its `files/`, where `exosphere serve` keeps published files), named `prefix`
/// and the run, and returns their paths under that server's `/packages` route. A file per
/// run, so each run's first request through the mirror is cold.
fn store_files(
    data_dir: &Path,
    host: &FileHost,
    prefix: &str,
    runs: u32,
) -> anyhow::Result<Vec<String>> {
    let dir = data_dir.join("files").join("packages").join("bench");
    std::fs::create_dir_all(&dir)?;
    let bytes = &host.files[&format!("/{}", FILES[0])];
    (0..runs)
        .map(|run| {
            let name = format!("{prefix}-{run}.tgz");
            std::fs::write(dir.join(&name), bytes)
                .with_context(|| format!("cannot write {}", dir.join(&name).display()))?;
            Ok(format!("/packages/bench/{name}"))
        })
        .collect()
}

/// Adds to the upstream's catalog one build record per file, with its URL and hash, as a
/// published build names its tarball: `urls` pairs each URL with the name of the host's file
/// it serves the bytes of.
fn add_file_builds(
    data_dir: &Path,
    host: &FileHost,
    urls: &[(String, &str)],
) -> anyhow::Result<()> {
    let mut lines = String::new();
    for (n, (url, name)) in urls.iter().enumerate() {
        let hash = base64::engine::general_purpose::STANDARD
            .encode(Sha256::digest(&host.files[&format!("/{name}")]));
        let record = json!({"collection": "builds", "doc": {
            "_id": format!("benchBuild-{n}"), "versionId": "benchVersion",
            "buildArchitectures": "os",
            "build": {"url": url, "tarballHash": hash, "treeHash": hash},
            "lastUpdated": {"$date": 1}
        }});
        lines.push_str(&format!("{record}\n"));
    }
    let store = open_sqlite(data_dir)?;
    dump::import(&store, Cursor::new(lines))?;
    Ok(())
}

/// A second `exosphere serve` that holds copies of the single file in its file store, behind
/// a shaped link: a file host on another machine, as packages.meteor.com's files are on
/// another host than its DDP endpoint.
struct LinkedHost {
    // Dropped before the link whose namespace it runs in.
    server: ServerProcess,
    link: ShapedLink,
    /// The copies' paths under the host's `/packages` route, one per run.
    paths: Vec<String>,
}

impl LinkedHost {
    fn start(work: &Path, rate_bits: u64, files: &FileHost, runs: u32) -> anyhow::Result<Self> {
        let link = ShapedLink::new(rate_bits)?;
        let dir = work.join("linked-files");
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        let paths = store_files(&dir, files, "linked", runs)?;
        let server = ServerProcess::start_behind(&link, &dir, &[])?;
        Ok(Self {
            server,
            link,
            paths,
        })
    }
}

/// What one run's downloads of one file took.
struct FileRun {
    /// From the server that holds the file (the limit), the best of [`REPEATS`].
    direct: Duration,
    /// From the in-memory file host, the best of [`REPEATS`], where measured.
    memory: Option<Duration>,
    /// Through the mirror, uncached.
    cold: Duration,
    /// Through the mirror, cached, the best of [`REPEATS`].
    warm: Duration,
}

/// What the file downloads took.
struct Downloads {
    runs: Vec<FileRun>,
    concurrent: Duration,
    concurrent_fetches: u64,
}

/// The file downloads, direct and through the mirror: per stored file one run, then the
/// concurrent cold requests.
async fn downloads(
    host: &FileHost,
    stored: &[String],
    upstream: &ServerProcess,
    mirror: &ServerProcess,
) -> anyhow::Result<Downloads> {
    let size = host.files[&format!("/{}", FILES[0])].len() as u64;
    let runs = file_runs(stored, upstream, mirror, size, Some(host)).await?;
    let concurrent = through(&host.url(FILES[1]));
    let started = Instant::now();
    let clients: Vec<_> = (0..CONCURRENT_CLIENTS)
        .map(|_| tokio::spawn(timed(mirror.address.clone(), concurrent.clone(), size)))
        .collect();
    for client in clients {
        client.await??;
    }
    Ok(Downloads {
        runs,
        concurrent: started.elapsed(),
        concurrent_fetches: host.requests(FILES[1]),
    })
}

/// One run per path of `origin`'s `/packages` route: direct from `origin` (after one untimed
/// download, so that it reads the file from the page cache as the mirror reads its cached
/// copy when warm), then through the mirror cold and warm; with `memory`, also from the
/// in-memory host.
async fn file_runs(
    paths: &[String],
    origin: &ServerProcess,
    mirror: &ServerProcess,
    size: u64,
    memory: Option<&FileHost>,
) -> anyhow::Result<Vec<FileRun>> {
    let mut runs = Vec::new();
    for path in paths {
        timed(origin.address.clone(), path.clone(), size).await?;
        let direct = best(origin.address.clone(), path.clone(), size).await?;
        let memory = match memory {
            Some(host) => Some(best(host.address.clone(), format!("/{}", FILES[0]), size).await?),
            None => None,
        };
        let mirrored = through(&format!("http://{}{path}", origin.address));
        let cold = timed(mirror.address.clone(), mirrored.clone(), size).await?;
        let warm = best(mirror.address.clone(), mirrored, size).await?;
        runs.push(FileRun {
            direct,
            memory,
            cold,
            warm,
        });
    }
    Ok(runs)
}

/// The mirror's path for the file at `url`.
fn through(url: &str) -> String {
    let key = exosphere_mirror::file_key(url);
    format!("{}/{key}", exosphere_mirror::FILES_PATH)
}

/// How long one download of `path` from `address` took; it must be `size` bytes.
async fn timed(address: String, path: String, size: u64) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let bytes = http(&address, "GET", &path, None).await?;
    if bytes != size {
        bail!("a download of {path} was short: {bytes} of {size} bytes");
    }
    Ok(started.elapsed())
}

/// The best of [`REPEATS`] downloads: this machine's noise is of the order of one download.
async fn best(address: String, path: String, size: u64) -> anyhow::Result<Duration> {
    let mut best = Duration::MAX;
    for _ in 0..REPEATS {
        best = best.min(timed(address.clone(), path.clone(), size).await?);
    }
    Ok(best)
}
