//! `exosphere bench publish`: how fast package files go in and out, against the physical
//! limits taken in the same run.
//!
//! The benchmark starts `exosphere serve` on a fresh data directory with one user and runs
//! the `meteor` tool's publish sequence (spec §5.1) over a real WebSocket and real HTTP:
//! `createPackageVersion`, a PUT of a large source tarball, `publishPackageVersion` (which
//! verifies the hash and moves the file into place), then a download of the published
//! file. In the same run it measures the two limits an upload cannot beat: pushing the same
//! bytes through a bare loopback TCP connection, and writing them to a file in the same
//! directory with an fsync (uploads are durable before they are acknowledged).

use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use exosphere_catalog::CatalogStore as _;
use exosphere_catalog::accounts::{Token, User, secret_hash};
use exosphere_catalog_sqlite::open_sqlite;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

use super::{ServerProcess, WorkDir, mb};
use crate::cli::BenchPublishArgs;
use crate::service::secrets::new_secret;

/// How much of a body is written or read per system call.
const IO_CHUNK: usize = 256 << 10;

/// Runs the whole benchmark and prints a Markdown report to standard output.
pub fn run(args: BenchPublishArgs) -> anyhow::Result<()> {
    let work_dir = WorkDir::new(args.work_dir.as_deref())?;
    let data_dir = work_dir.path().join("data");
    if data_dir.exists() {
        std::fs::remove_dir_all(&data_dir)?;
    }
    let token = create_user(&data_dir)?;
    let size = usize::try_from(args.size)?;
    let limit = (args.size * 2).to_string();
    let server = ServerProcess::start(&data_dir, &["--max-upload-size", &limit])?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let tarball_hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&body));
    let runs = runtime.block_on(publish_runs(
        &server,
        &token,
        &body,
        &tarball_hash,
        args.runs,
    ))?;
    let peak_rss_kib = server.memory_kib("VmHWM")?;
    drop(server);
    let tcp = best_of(args.runs, || runtime.block_on(bare_tcp(&body)))?;
    let disk = best_of(args.runs, || disk_write(work_dir.path(), &body))?;

    let best = |pick: fn(&PublishRun) -> Duration| runs.iter().map(pick).min().unwrap_or_default();
    let (upload, publish, download) = (
        best(|r| r.upload),
        best(|r| r.publish),
        best(|r| r.download),
    );
    let rate = |time: Duration| mb(args.size) / time.as_secs_f64().max(1e-9);
    let list = |pick: fn(&PublishRun) -> Duration| {
        runs.iter()
            .map(|r| format!("{:.3} s", pick(r).as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "## bench publish: {:.1} MB per file, {} runs\n",
        mb(args.size),
        args.runs
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| upload (PUT, hashed, streamed to disk), each run | {} |",
        list(|r| r.upload)
    );
    println!(
        "| **upload, best** | **{:.3} s, {:.1} MB/s** |",
        upload.as_secs_f64(),
        rate(upload)
    );
    println!(
        "| publishPackageVersion (verify, move into place, commit), best | {:.3} s |",
        publish.as_secs_f64()
    );
    println!("| download (GET), each run | {} |", list(|r| r.download));
    println!(
        "| **download, best** | **{:.3} s, {:.1} MB/s** |",
        download.as_secs_f64(),
        rate(download)
    );
    println!(
        "| bare loopback TCP, same bytes, best | {:.3} s, {:.1} MB/s |",
        tcp.as_secs_f64(),
        rate(tcp)
    );
    println!(
        "| file write + fsync, same bytes, best | {:.3} s, {:.1} MB/s |",
        disk.as_secs_f64(),
        rate(disk)
    );
    let limit = tcp.max(disk);
    println!(
        "| **ratio upload / slower limit** | **{:.2}** |",
        upload.as_secs_f64() / limit.as_secs_f64().max(1e-9)
    );
    println!(
        "| **ratio download / bare TCP** | **{:.2}** |",
        download.as_secs_f64() / tcp.as_secs_f64().max(1e-9)
    );
    println!(
        "| server peak RSS | {:.1} MB |",
        peak_rss_kib as f64 / 1024.0
    );
    Ok(())
}

/// The best (shortest) of `runs` measurements.
fn best_of(
    runs: u32,
    mut measure: impl FnMut() -> anyhow::Result<Duration>,
) -> anyhow::Result<Duration> {
    let mut best = Duration::MAX;
    for _ in 0..runs {
        best = best.min(measure()?);
    }
    Ok(best)
}

/// Timings of one publish of one version.
struct PublishRun {
    upload: Duration,
    publish: Duration,
    download: Duration,
}

/// An administrator `bench` and a login token for it, written straight into the catalog.
pub(super) fn create_user(data_dir: &std::path::Path) -> anyhow::Result<String> {
    let store = open_sqlite(data_dir)?;
    let secret = new_secret();
    let now = chrono::Utc::now().timestamp_millis();
    store.write(&mut |writer| {
        let user = User {
            id: "bench-user".into(),
            username: "bench".into(),
            admin: true,
        };
        writer.accounts().insert_user(&user)?;
        writer.accounts().insert_token(&Token {
            id: "bench-token".into(),
            hash: secret_hash(&secret),
            user_id: user.id,
            created: now,
            expires: now + 86_400_000,
        })
    })?;
    Ok(secret)
}

/// Logs in, creates the package, then publishes `runs` versions, each with `body` as its
/// source tarball, and downloads each.
async fn publish_runs(
    server: &ServerProcess,
    token: &str,
    body: &[u8],
    tarball_hash: &str,
    runs: u32,
) -> anyhow::Result<Vec<PublishRun>> {
    let mut ddp = Ddp::connect(&server.ws_url()).await?;
    ddp.call("login", json!([{"resume": token}])).await?;
    ddp.call("createPackage", json!([{"name": "bench:files"}]))
        .await?;
    let mut out = Vec::new();
    for run in 0..runs {
        let version = format!("1.0.{run}");
        let (upload, publish) = publish_version(
            &mut ddp,
            &server.address,
            "bench:files",
            &version,
            body,
            tarball_hash,
        )
        .await?;
        let source = ddp.source_url(&version).await?;
        let started = Instant::now();
        let received = http(&server.address, "GET", &path_of(&source)?, None).await?;
        let download = started.elapsed();
        if received != body.len() as u64 {
            bail!("downloaded {received} bytes, expected {}", body.len());
        }
        eprintln!(
            "run {}: upload {upload:.3?}, publish {publish:.3?}, download {download:.3?}",
            run + 1
        );
        out.push(PublishRun {
            upload,
            publish,
            download,
        });
    }
    Ok(out)
}

/// Publishes `package@version` with `body` as its source tarball, as the `meteor` tool does
/// (spec §5.1: `createPackageVersion`, the uploads, `publishPackageVersion`), on a session
/// logged in as a maintainer of `package`. Returns how long the upload and the publish took.
pub(super) async fn publish_version(
    ddp: &mut Ddp,
    address: &str,
    package: &str,
    version: &str,
    body: &[u8],
    tarball_hash: &str,
) -> anyhow::Result<(Duration, Duration)> {
    let created = ddp
        .call(
            "createPackageVersion",
            json!([{"packageName": package, "version": version,
                    "description": "bench", "dependencies": {}, "releaseName": null}]),
        )
        .await?;
    let url = |key: &str| -> anyhow::Result<String> {
        Ok(created[key].as_str().context("an upload URL")?.to_owned())
    };
    let started = Instant::now();
    http(address, "PUT", &path_of(&url("uploadUrl")?)?, Some(body)).await?;
    let upload = started.elapsed();
    http(address, "PUT", &path_of(&url("readmeUrl")?)?, Some(b"")).await?;
    let started = Instant::now();
    ddp.call(
        "publishPackageVersion",
        json!([created["uploadToken"], {"tarballHash": tarball_hash,
               "treeHash": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="}]),
    )
    .await?;
    Ok((upload, started.elapsed()))
}

/// The path of an `http://host:port/path` URL handed out by the server.
fn path_of(url: &str) -> anyhow::Result<String> {
    let rest = url.strip_prefix("http://").context("an http:// URL")?;
    let slash = rest.find('/').context("a URL with a path")?;
    Ok(rest[slash..].to_owned())
}

/// One HTTP/1.1 request on a fresh connection; fails unless the status is 2xx. Returns the
/// number of body bytes received (read and dropped, as a downloader that streams to disk).
pub(super) async fn http(
    address: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> anyhow::Result<u64> {
    let mut stream = TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let length = body.map_or(0, <[u8]>::len);
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: {length}\r\n\
         Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await?;
    if let Some(body) = body {
        for chunk in body.chunks(IO_CHUNK) {
            stream.write_all(chunk).await?;
        }
    }
    let mut buffer = vec![0u8; IO_CHUNK];
    let mut head = Vec::new();
    let header_end = loop {
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            bail!("the server closed the connection before answering");
        }
        head.extend_from_slice(&buffer[..read]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let text = String::from_utf8_lossy(&head[..header_end]).into_owned();
    let status = text.split_whitespace().nth(1).unwrap_or_default();
    if !status.starts_with('2') {
        bail!("{method} {path} answered {text}");
    }
    let mut received = (head.len() - header_end) as u64;
    loop {
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        received += read as u64;
    }
    Ok(received)
}

/// The limit of the network path: the same bytes through a bare loopback TCP connection.
async fn bare_tcp(body: &[u8]) -> anyhow::Result<Duration> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let size = body.len() as u64;
    let reader = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await?;
        let mut buffer = vec![0u8; IO_CHUNK];
        let mut received = 0u64;
        while received < size {
            let read = socket.read(&mut buffer).await?;
            if read == 0 {
                break;
            }
            received += read as u64;
        }
        socket.write_all(b"k").await?;
        anyhow::Ok(received)
    });
    let started = Instant::now();
    let mut stream = TcpStream::connect(address).await?;
    for chunk in body.chunks(IO_CHUNK) {
        stream.write_all(chunk).await?;
    }
    let mut ack = [0u8; 1];
    stream.read_exact(&mut ack).await?;
    let elapsed = started.elapsed();
    if reader.await?? != size {
        bail!("the bare TCP reader lost bytes");
    }
    Ok(elapsed)
}

/// The limit of the storage path: the same bytes written to a file and fsynced.
fn disk_write(dir: &std::path::Path, body: &[u8]) -> anyhow::Result<Duration> {
    let path = dir.join("disk-baseline.bin");
    let started = Instant::now();
    let mut file = std::fs::File::create(&path)?;
    for chunk in body.chunks(IO_CHUNK) {
        file.write_all(chunk)?;
    }
    file.sync_all()?;
    let elapsed = started.elapsed();
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(elapsed)
}

/// Just enough of a DDP client for the publish sequence.
pub(super) struct Ddp {
    socket: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Ddp {
    pub(super) async fn connect(url: &str) -> anyhow::Result<Ddp> {
        let (mut socket, _) = tokio_tungstenite::connect_async(url).await?;
        socket
            .send(Message::text(
                r#"{"msg":"connect","version":"1","support":["1"]}"#,
            ))
            .await?;
        Ok(Ddp { socket, next_id: 0 })
    }

    /// Calls `method` and returns its result, or fails with its error.
    pub(super) async fn call(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        let answer = self.answer(method, params).await?;
        if let Some(error) = answer.get("error") {
            bail!("{method} failed: {error}");
        }
        Ok(answer.get("result").cloned().unwrap_or(Value::Null))
    }

    /// Calls `method` and returns its whole `result` message, error or not.
    pub(super) async fn answer(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.next_id += 1;
        let id = self.next_id.to_string();
        let frame = json!({"msg": "method", "id": id, "method": method, "params": params});
        self.socket.send(Message::text(frame.to_string())).await?;
        loop {
            let Some(message) = self.socket.next().await else {
                bail!("the server closed the connection during {method}");
            };
            let Message::Text(text) = message? else {
                continue;
            };
            let message: Value = serde_json::from_str(text.as_str())?;
            if message["msg"] == "ping" {
                self.socket.send(Message::text(r#"{"msg":"pong"}"#)).await?;
            }
            if message["msg"] == "result" && message["id"] == id.as_str() {
                return Ok(message);
            }
        }
    }

    /// The published source URL of `bench:files@version`, from a sync (spec §3).
    async fn source_url(&mut self, version: &str) -> anyhow::Result<String> {
        let mut token = json!({"format": "1.1"});
        for _ in 0..1000 {
            let page = self.call("syncNewPackageData", json!([token, {}])).await?;
            let found = page["collections"]["versions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|v| v["packageName"] == "bench:files" && v["version"] == version)
                .and_then(|v| v["source"]["url"].as_str());
            if let Some(url) = found {
                return Ok(url.to_owned());
            }
            if page["upToDate"] == true {
                break;
            }
            token = page["syncToken"].clone();
        }
        bail!("bench:files@{version} never appeared in a sync")
    }
}
