//! `exosphere bench web`: the web catalog and its JSON API under load, on a synthetic
//! catalog, against the physical limit measured in the same run.
//!
//! An `exosphere serve` child process builds its read model of the catalog; then, for each
//! target (the package API, the search API, the package page, the search page), a load
//! generator in this process asks for a fixed list of URLs over keep-alive HTTP/1.1
//! connections: first one connection alone (each request's latency, the server's time plus
//! a loopback round trip), then `--connections` at once for `--seconds` (requests per
//! second and the server's CPU per request). The limit is the same load against a server
//! in this process that answers each URL with the bytes the real server gave for it, held
//! in memory: what HTTP on this machine costs with no work behind it.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader as StdBufReader};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::client_sync::process_cpu;
use super::{ServerProcess, WorkDir, prepare_catalog};
use crate::cli::BenchWebArgs;

/// How long the read model may take to build before the benchmark gives up.
const BUILD_PATIENCE: Duration = Duration::from_secs(600);

/// Requests each target's single-connection latency is measured over.
const LATENCY_REQUESTS: usize = 400;

/// The longest response head the load generator reads.
const MAX_HEAD: usize = 16 * 1024;

/// What one target asks for: a name and its URLs (paths), asked in turn.
struct Target {
    name: &'static str,
    paths: Vec<String>,
}

/// Runs the whole benchmark and prints a Markdown report to standard output.
pub fn run(args: BenchWebArgs) -> anyhow::Result<()> {
    let work_dir = WorkDir::new(args.catalog.work_dir.as_deref())?;
    let catalog = prepare_catalog(work_dir.path(), args.catalog.scale, args.catalog.seed)?;
    let targets = targets(&catalog.dump_path, args.urls as usize)?;
    let cache_bytes = args.web_cache_bytes.to_string();
    let server = ServerProcess::start(
        &catalog.data_dir,
        &[
            "--read-model",
            "on",
            "--api-max-limit",
            "100",
            "--web-cache-bytes",
            &cache_bytes,
        ],
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let address = server.address.clone();
    let started = Instant::now();
    runtime.block_on(wait_for_read_model(&address))?;
    let build = started.elapsed();
    eprintln!("the read model answered {build:.1?} after the server started");

    let mut rows = Vec::new();
    for target in &targets {
        let paths = Arc::new(target.paths.clone());
        let bodies = runtime.block_on(capture(&address, &paths))?;
        let (latency, bytes) = runtime.block_on(single(&address, &paths))?;
        let mut best: Option<(Throughput, Throughput)> = None;
        for run in 1..=args.catalog.runs {
            let cpu_before = process_cpu(server.pid())?;
            let served =
                runtime.block_on(load(&address, &paths, args.connections, args.seconds))?;
            let cpu = process_cpu(server.pid())? - cpu_before;
            let limit = runtime.block_on(async {
                let (address, serving) = serve_static(&bodies).await?;
                let measured = load(&address, &paths, args.connections, args.seconds).await;
                serving.abort();
                measured
            })?;
            let served = Throughput {
                cpu_per_request: cpu / served.requests.max(1) as f64,
                ..served
            };
            eprintln!(
                "{} run {run}: {:.0} requests/s ({} errors), limit {:.0}/s",
                target.name,
                served.per_second(),
                served.errors,
                limit.per_second()
            );
            if best
                .as_ref()
                .is_none_or(|(b, _)| served.per_second() > b.per_second())
            {
                best = Some((served, limit));
            }
        }
        let (served, limit) = best.context("at least one run")?;
        rows.push(Row {
            name: target.name,
            urls: paths.len(),
            bytes,
            latency,
            served,
            limit,
        });
    }
    drop(server);
    report(&args, &catalog.generated, build, &rows);
    Ok(())
}

/// The targets: a package's API answer and page, a search's API answer and page, for
/// `urls` packages sampled evenly from the dump and search words taken from their names and
/// summaries.
fn targets(dump: &std::path::Path, urls: usize) -> anyhow::Result<Vec<Target>> {
    let file =
        std::fs::File::open(dump).with_context(|| format!("cannot read {}", dump.display()))?;
    let mut names = Vec::new();
    let mut summaries: HashMap<String, String> = HashMap::new();
    for line in StdBufReader::new(file).lines() {
        let line = line?;
        // Only packages and versions are needed; the rest is not parsed.
        if !line.starts_with(r#"{"collection":"packages""#)
            && !line.starts_with(r#"{"collection":"versions""#)
        {
            continue;
        }
        let line: serde_json::Value = serde_json::from_str(&line)?;
        let doc = &line["doc"];
        match line["collection"].as_str() {
            Some("packages") => names.extend(doc["name"].as_str().map(str::to_owned)),
            Some("versions") => {
                if let (Some(name), Some(summary)) =
                    (doc["packageName"].as_str(), doc["description"].as_str())
                {
                    summaries.insert(name.to_owned(), summary.to_owned());
                }
            }
            _ => {}
        }
    }
    if names.is_empty() {
        bail!("the catalog has no packages");
    }
    let step = (names.len() / urls.max(1)).max(1);
    let sampled: Vec<&String> = names.iter().step_by(step).take(urls).collect();
    let mut words = Vec::new();
    for (n, name) in sampled.iter().enumerate() {
        let base = name.rsplit(':').next().unwrap_or(name);
        let word = match n % 4 {
            0 => (*name).clone(),
            1 => base.to_owned(),
            2 => base.split('-').next().unwrap_or(base).to_owned(),
            _ => summaries
                .get(*name)
                .and_then(|summary| summary.split_whitespace().find(|w| w.len() > 4))
                .unwrap_or(base)
                .to_owned(),
        };
        words.push(url::form_urlencoded::byte_serialize(word.as_bytes()).collect::<String>());
    }
    let encoded: Vec<String> = sampled
        .iter()
        .map(|name| url::form_urlencoded::byte_serialize(name.as_bytes()).collect())
        .collect();
    Ok(vec![
        Target {
            name: "package API",
            paths: encoded
                .iter()
                .map(|n| format!("/api/v1/packages/{n}"))
                .collect(),
        },
        Target {
            name: "search API",
            paths: words
                .iter()
                .map(|w| format!("/api/v1/search?q={w}"))
                .collect(),
        },
        Target {
            name: "package page",
            paths: encoded.iter().map(|n| format!("/package/{n}")).collect(),
        },
        Target {
            name: "search page",
            paths: words.iter().map(|w| format!("/search?q={w}")).collect(),
        },
    ])
}

/// Waits until the server's read model answers (its first build of the catalog).
async fn wait_for_read_model(address: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + BUILD_PATIENCE;
    loop {
        if let Ok(mut connection) = Connection::open(address).await
            && let Ok((200, _)) = connection.get("/api/v1/search?q=a&limit=1").await
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the read model did not answer within {BUILD_PATIENCE:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Each path's answer, as the static server will give it back: status 200 and the body.
/// A path the server does not answer with 200 fails the benchmark (a wrong URL would
/// measure error pages).
async fn capture(address: &str, paths: &[String]) -> anyhow::Result<HashMap<String, Vec<u8>>> {
    let mut connection = Connection::open(address).await?;
    let mut bodies = HashMap::new();
    for path in paths {
        let (status, body) = connection.get(path).await?;
        if status != 200 {
            bail!(
                "{path} answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        bodies.insert(path.clone(), body);
    }
    Ok(bodies)
}

/// Latencies of one connection asking for each path in turn, [`LATENCY_REQUESTS`] in all,
/// and the mean answer size in bytes.
async fn single(address: &str, paths: &[String]) -> anyhow::Result<(Latency, u64)> {
    let mut connection = Connection::open(address).await?;
    let mut times = Vec::with_capacity(LATENCY_REQUESTS);
    let mut bytes = 0;
    for n in 0..LATENCY_REQUESTS {
        let started = Instant::now();
        let (_, body) = connection.get(&paths[n % paths.len()]).await?;
        times.push(started.elapsed());
        bytes += body.len() as u64;
    }
    times.sort_unstable();
    let at = |fraction: f64| times[((times.len() - 1) as f64 * fraction) as usize];
    Ok((
        Latency {
            median: at(0.5),
            p99: at(0.99),
        },
        bytes / LATENCY_REQUESTS as u64,
    ))
}

/// `connections` connections asking for the paths in turn (each starting at its own
/// offset) for `seconds`.
async fn load(
    address: &str,
    paths: &Arc<Vec<String>>,
    connections: u32,
    seconds: u64,
) -> anyhow::Result<Throughput> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for offset in 0..connections as usize {
        let (address, paths) = (address.to_owned(), Arc::clone(paths));
        tasks.push(tokio::spawn(async move {
            let mut connection = Connection::open(&address).await?;
            let (mut requests, mut errors) = (0u64, 0u64);
            let mut n = offset;
            while Instant::now() < deadline {
                let (status, _) = connection.get(&paths[n % paths.len()]).await?;
                requests += 1;
                errors += u64::from(status != 200);
                n += 1;
            }
            anyhow::Ok((requests, errors))
        }));
    }
    let (mut requests, mut errors) = (0, 0);
    for task in tasks {
        let (r, e) = task.await??;
        requests += r;
        errors += e;
    }
    Ok(Throughput {
        requests,
        errors,
        elapsed: started.elapsed(),
        cpu_per_request: 0.0,
    })
}

/// Serves `bodies` by path on a loopback port until the returned task is aborted: the same
/// bytes with no work behind them.
async fn serve_static(
    bodies: &HashMap<String, Vec<u8>>,
) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    let responses: Arc<HashMap<String, Vec<u8>>> = Arc::new(
        bodies
            .iter()
            .map(|(path, body)| {
                let mut response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n\
                     content-length: {}\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                response.extend_from_slice(body);
                (path.clone(), response)
            })
            .collect(),
    );
    let serving = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(answer_static(socket, Arc::clone(&responses)));
        }
    });
    Ok((address, serving))
}

/// Answers one connection's requests from `responses` until it closes.
async fn answer_static(socket: TcpStream, responses: Arc<HashMap<String, Vec<u8>>>) {
    let _ = socket.set_nodelay(true);
    let (read, mut write) = socket.into_split();
    let mut read = BufReader::new(read);
    let mut line = String::new();
    loop {
        line.clear();
        if read.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
        loop {
            line.clear();
            if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
        }
        let Some(response) = responses.get(&path) else {
            return;
        };
        if write.write_all(response).await.is_err() {
            return;
        }
    }
}

/// A keep-alive HTTP/1.1 client connection, as lean as the load needs: a request is one
/// write, an answer a head read line by line and a body of its `Content-Length`.
struct Connection {
    stream: BufReader<TcpStream>,
    head: String,
}

impl Connection {
    async fn open(address: &str) -> anyhow::Result<Connection> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream: BufReader::new(stream),
            head: String::new(),
        })
    }

    /// `GET path`: the status and the body.
    async fn get(&mut self, path: &str) -> anyhow::Result<(u16, Vec<u8>)> {
        let request = format!("GET {path} HTTP/1.1\r\nhost: bench\r\n\r\n");
        self.stream.get_mut().write_all(request.as_bytes()).await?;
        self.head.clear();
        let mut status = None;
        let mut length = None;
        loop {
            let start = self.head.len();
            if self.stream.read_line(&mut self.head).await? == 0 {
                bail!("the server closed the connection");
            }
            if self.head.len() > MAX_HEAD {
                bail!("an answer's head is longer than {MAX_HEAD} bytes");
            }
            let line = self.head[start..].trim_end();
            if line.is_empty() {
                break;
            }
            if status.is_none() {
                status = line.split_whitespace().nth(1).and_then(|s| s.parse().ok());
            } else if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse::<usize>().ok();
            }
        }
        let status = status.context("an answer without a status line")?;
        let length = length.context("an answer without content-length")?;
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await?;
        Ok((status, body))
    }
}

/// One connection's latencies.
struct Latency {
    median: Duration,
    p99: Duration,
}

/// What a load achieved.
struct Throughput {
    requests: u64,
    errors: u64,
    elapsed: Duration,
    /// The server's CPU seconds per request (0 for the limit, whose server is this process).
    cpu_per_request: f64,
}

impl Throughput {
    fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
}

/// One target's results.
struct Row {
    name: &'static str,
    urls: usize,
    bytes: u64,
    latency: Latency,
    served: Throughput,
    limit: Throughput,
}

fn report(
    args: &BenchWebArgs,
    generated: &exosphere_synth::SynthSummary,
    build: Duration,
    rows: &[Row],
) {
    println!("# exosphere bench web\n");
    println!(
        "Catalog: {:?} scale, seed {} ({} packages, {} versions); read model answered {:.1?} \
         after the server started. Load: {} connections for {} s, best of {} runs; latency: \
         one connection, {LATENCY_REQUESTS} requests. The server keeps {} bytes of encoded \
         answers (`--web-cache-bytes`): each URL asked again while the catalog is unchanged \
         is answered from them. Limit: the same answers served from memory by a bare \
         HTTP/1.1 server in the benchmark's process.\n",
        args.catalog.scale,
        args.catalog.seed,
        generated.packages,
        generated.versions,
        build,
        args.connections,
        args.seconds,
        args.catalog.runs,
        args.web_cache_bytes,
    );
    println!(
        "| target | URLs | mean bytes | median | p99 | requests/s | errors | server CPU/request | limit requests/s | ratio |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        println!(
            "| {} | {} | {} | {:.2} ms | {:.2} ms | {:.0} | {} | {:.3} ms | {:.0} | {:.2}× |",
            row.name,
            row.urls,
            row.bytes,
            row.latency.median.as_secs_f64() * 1000.0,
            row.latency.p99.as_secs_f64() * 1000.0,
            row.served.per_second(),
            row.served.errors,
            row.served.cpu_per_request * 1000.0,
            row.limit.per_second(),
            row.limit.per_second() / row.served.per_second().max(f64::MIN_POSITIVE),
        );
    }
}
