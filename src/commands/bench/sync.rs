//! `exosphere bench sync`: how fast a full catalog sync is, measured against the physical limit.
//!
//! The benchmark generates a synthetic catalog, imports it, starts `exosphere serve` as a child
//! process (so its peak memory can be read on its own) and runs the `meteor` tool's sync loop
//! (spec §3.3) against it over a real WebSocket. In the same run it pushes the very same result
//! frames, with the same request/response rhythm, through a bare WebSocket server on loopback:
//! the ratio between the two says how much the catalog, the DDP layer and SQLite cost on top of
//! moving the bytes.

use std::io::{Read as _, Write as _};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use base64::Engine as _;
use futures_util::{Sink, SinkExt as _, Stream, StreamExt as _};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::client_sync::{process_cpu, thread_cpu};
use super::deflate_client::{self, Counting};
use super::{ServerProcess, WorkDir, mb, prepare_catalog};
use crate::cli::BenchSyncArgs;
use exosphere_sync_client::leading_token;

/// Runs the whole benchmark and prints a Markdown report to standard output.
pub fn run(args: BenchSyncArgs) -> anyhow::Result<()> {
    let work_dir = WorkDir::new(args.catalog.work_dir.as_deref())?;
    let catalog = prepare_catalog(work_dir.path(), args.catalog.scale, args.catalog.seed)?;

    let server = ServerProcess::start(&catalog.data_dir, &[])?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut syncs = Vec::new();
    let mut server_cpu = Vec::new();
    for run in 1..=args.catalog.runs {
        // Only the first run keeps its frames (for the bare baseline), so later runs measure a
        // client that, like the tool, drops each page once applied.
        let cpu_before = process_cpu(server.pid())?;
        let sync = runtime.block_on(full_sync(
            &server.ws_url(),
            args.compress,
            args.deflate,
            run == 1,
            None,
        ))?;
        server_cpu.push(process_cpu(server.pid())? - cpu_before);
        eprintln!(
            "sync run {run}: {} records, {} pages, {:.2} MB ({:.2} MB on the wire) in {:.3?}",
            sync.records,
            sync.pages,
            mb(sync.bytes),
            mb(sync.wire_bytes),
            sync.elapsed
        );
        syncs.push(sync);
    }
    let together = if args.clients > 1 {
        Some(runtime.block_on(syncs_at_once(&server, &args))?)
    } else {
        None
    };
    let peak_rss_kib = server.memory_kib("VmHWM")?;
    let anon_rss_kib = server.memory_kib("RssAnon")?;
    drop(server);

    let Some(best) = syncs.iter().min_by_key(|sync| sync.elapsed) else {
        bail!("no sync ran");
    };
    let mut bare = Vec::new();
    for _ in 0..args.catalog.runs {
        bare.push(bare_push(&syncs[0].frames)?);
    }
    let bare_best = bare.iter().map(|(time, _)| *time).min().unwrap_or_default();
    let bare_cpu = bare
        .iter()
        .map(|(_, cpu)| *cpu)
        .fold(f64::INFINITY, f64::min);
    let best_cpu = server_cpu.iter().copied().fold(f64::INFINITY, f64::min);
    let zlib_default = zlib_default_bytes(&syncs[0].frames)?;

    let secs = best.elapsed.as_secs_f64();
    print_head(
        "exosphere bench sync",
        &args,
        best.records,
        catalog.generated.bytes,
    );
    println!("| permessage-deflate | {} |", args.deflate);
    println!(
        "| generate | {:.2} s |",
        catalog.generate_time.as_secs_f64()
    );
    println!(
        "| import (bulk SQLite load) | {:.2} s |",
        catalog.import_time.as_secs_f64()
    );
    println!(
        "| full sync, each run | {} |",
        syncs
            .iter()
            .map(|sync| format!("{:.3} s", sync.elapsed.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("| full sync, best | {secs:.3} s |");
    println!("| pages (calls) | {} |", best.pages);
    println!("| records/s | {:.0} |", best.records as f64 / secs);
    println!("| MB/s (result frames) | {:.1} |", mb(best.bytes) / secs);
    println!("| result frames (DDP text) | {} B |", best.bytes);
    println!(
        "| bytes on the wire (client's TCP reads) | {} B |",
        best.wire_bytes
    );
    if args.deflate {
        println!(
            "| result frames' payloads, permessage-deflate | {} B |",
            best.deflated_bytes
        );
    }
    println!("| zlib level 6, each result frame on its own | {zlib_default} B |");
    println!(
        "| server CPU per full sync, each run | {} |",
        server_cpu
            .iter()
            .map(|cpu| format!("{cpu:.2} s"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("| bare WebSocket server CPU, same frames, best | {bare_cpu:.2} s |");
    println!(
        "| ratio server CPU / bare server CPU | {:.2} |",
        best_cpu / bare_cpu.max(0.01)
    );
    println!(
        "| bare WebSocket, same frames, best | {:.3} s |",
        bare_best.as_secs_f64()
    );
    println!(
        "| ratio sync / bare WebSocket | {:.2} |",
        secs / bare_best.as_secs_f64().max(f64::EPSILON)
    );
    println!(
        "| server peak RSS (incl. mapped database) | {:.1} MB |",
        peak_rss_kib as f64 / 1024.0
    );
    println!(
        "| server anonymous RSS after the runs | {:.1} MB |",
        anon_rss_kib as f64 / 1024.0
    );
    if let Some(together) = together {
        let bare = bare_push_many(&syncs[0].frames, together.clients)?;
        together.print(&bare);
    }
    Ok(())
}

/// Many clients syncing from scratch at once: the wall time until the last one finished,
/// and the server's CPU over that time.
struct AtOnce {
    clients: usize,
    elapsed: Duration,
    /// Result frames' bytes, all clients together.
    bytes: u64,
    server_cpu: f64,
}

impl AtOnce {
    /// The report's rows for syncs at once, beside `bare` (as many bare transfers at once).
    fn print(&self, bare: &BareAtOnce) {
        let clients = self.clients as f64;
        let secs = self.elapsed.as_secs_f64();
        let bare_secs = bare.elapsed.as_secs_f64();
        println!(
            "| clients syncing from scratch at once | {} |",
            self.clients
        );
        println!("| all of them, wall time | {secs:.3} s |");
        println!(
            "| aggregate MB/s (result frames) | {:.1} |",
            mb(self.bytes) / secs
        );
        println!(
            "| server CPU per sync, {} at once | {:.3} s |",
            self.clients,
            self.server_cpu / clients
        );
        println!(
            "| bare WebSocket, {} transfers at once, wall time | {bare_secs:.3} s ({:.1} MB/s) |",
            self.clients,
            mb(self.bytes) / bare_secs.max(f64::EPSILON)
        );
        println!(
            "| bare server CPU per transfer, {} at once | {:.3} s |",
            self.clients,
            bare.cpu / clients
        );
        println!(
            "| ratio server CPU per sync / bare per transfer, at once | {:.2} |",
            self.server_cpu / bare.cpu.max(0.01)
        );
    }
}

/// Runs `args.clients` full syncs from scratch at once against the server.
async fn syncs_at_once(server: &ServerProcess, args: &BenchSyncArgs) -> anyhow::Result<AtOnce> {
    let url = server.ws_url();
    let cpu_before = process_cpu(server.pid())?;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.clients {
        let url = url.clone();
        let (compress, deflate) = (args.compress, args.deflate);
        tasks.spawn(async move { full_sync(&url, compress, deflate, false, None).await });
    }
    let mut bytes = 0;
    while let Some(sync) = tasks.join_next().await {
        bytes += sync??.bytes;
    }
    let elapsed = started.elapsed();
    let server_cpu = process_cpu(server.pid())? - cpu_before;
    eprintln!(
        "{} syncs at once: {:.2} MB in {elapsed:.3?}, server CPU {server_cpu:.2} s",
        args.clients,
        mb(bytes)
    );
    Ok(AtOnce {
        clients: args.clients as usize,
        elapsed,
        bytes,
        server_cpu,
    })
}

/// Bare transfers at once: the wall time until the last one finished, and the bare
/// server's CPU.
struct BareAtOnce {
    elapsed: Duration,
    cpu: f64,
}

/// The physical limit for many clients: the bare WebSocket server (one thread) serves
/// `clients` connections at once, each the recorded frames as in [`bare_push`].
fn bare_push_many(frames: &[Utf8Bytes], clients: usize) -> anyhow::Result<BareAtOnce> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let address = listener.local_addr()?;
    let frames: Arc<[Message]> = frames.iter().cloned().map(Message::Text).collect();
    let count = frames.len();
    let server = std::thread::spawn(move || -> anyhow::Result<f64> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let before = thread_cpu()?;
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let mut connections = tokio::task::JoinSet::new();
            for _ in 0..clients {
                let (stream, _) = listener.accept().await?;
                let frames = Arc::clone(&frames);
                connections.spawn(async move {
                    let mut socket = tokio_tungstenite::accept_async(stream).await?;
                    for frame in frames.iter() {
                        if socket.next().await.is_none() {
                            break;
                        }
                        socket.send(frame.clone()).await?;
                    }
                    anyhow::Ok(())
                });
            }
            while let Some(served) = connections.join_next().await {
                served??;
            }
            anyhow::Ok(())
        })?;
        Ok(thread_cpu()? - before)
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let elapsed = runtime.block_on(async move {
        let started = Instant::now();
        let mut transfers = tokio::task::JoinSet::new();
        for _ in 0..clients {
            transfers.spawn(bare_client(address, count));
        }
        while let Some(transfer) = transfers.join_next().await {
            transfer??;
        }
        anyhow::Ok(started.elapsed())
    })?;
    let cpu = server
        .join()
        .map_err(|_| anyhow::anyhow!("the bare WebSocket server panicked"))??;
    Ok(BareAtOnce { elapsed, cpu })
}

/// The head of a `bench sync` report, plain or over a shaped link: its title, the catalog
/// (`records` of a `dump_bytes` dump) and whether pages were compressed.
pub(super) fn print_head(title: &str, args: &BenchSyncArgs, records: u64, dump_bytes: u64) {
    println!(
        "## {title} ({} scale, seed {})",
        args.catalog.scale, args.catalog.seed
    );
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| catalog | {records} records, {:.1} MB dump |",
        mb(dump_bytes)
    );
    println!("| compressed pages | {} |", args.compress);
}

/// What one full sync transferred.
pub(super) struct SyncRun {
    pub(super) elapsed: Duration,
    pub(super) records: u64,
    bytes: u64,
    /// What the client's TCP socket read, handshake and frame heads included.
    pub(super) wire_bytes: u64,
    /// The payloads of result frames as sent, with `permessage-deflate` (else 0).
    deflated_bytes: u64,
    pages: u64,
    /// The largest `result` frame, in bytes.
    pub(super) largest: u64,
    /// Every `result` frame as received, replayed by the bare-WebSocket baseline.
    pub(super) frames: Vec<Utf8Bytes>,
}

#[derive(Deserialize)]
struct ResultFrame<'a> {
    msg: &'a str,
    #[serde(borrow)]
    result: Option<SyncResult<'a>>,
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SyncResult<'a> {
    collections: Option<std::collections::BTreeMap<String, Vec<IgnoredAny>>>,
    collections_compressed: Option<String>,
    #[serde(borrow)]
    sync_token: &'a RawValue,
    up_to_date: bool,
}

/// The sending half of the benchmark client's WebSocket.
type ClientSink = Pin<Box<dyn Sink<Message, Error = anyhow::Error> + Send>>;

/// The receiving half of the benchmark client's WebSocket.
type ClientStream = Pin<Box<dyn Stream<Item = anyhow::Result<Message>> + Send>>;

/// A WebSocket to `url` whose received bytes are counted into `read`: tokio-tungstenite's,
/// or with `deflate` the benchmark's own client, which negotiates `permessage-deflate` and
/// counts the compressed payloads of result frames into `results`.
async fn client(
    url: &str,
    source: Option<std::net::IpAddr>,
    deflate: bool,
    read: Arc<AtomicU64>,
    results: Arc<AtomicU64>,
) -> anyhow::Result<(ClientSink, ClientStream)> {
    let tcp = Counting::new(super::connect_tcp(url, source).await?, read);
    if deflate {
        let (sink, stream) = deflate_client::connect(url, tcp, results).await?;
        return Ok((Box::pin(sink), Box::pin(stream)));
    }
    let (socket, _) = tokio_tungstenite::client_async(url, tcp).await?;
    let (sink, stream) = socket.split();
    Ok((
        Box::pin(sink.sink_map_err(anyhow::Error::from)),
        Box::pin(stream.map(|item| item.map_err(anyhow::Error::from))),
    ))
}

/// The tool's loop (spec §3.3): call `syncNewPackageData` with the last token until `upToDate`,
/// parsing every page as a client must to find the next token. `source` picks the client's
/// local address (a loopback address other than the server's own clients', say); `deflate`
/// negotiates `permessage-deflate`, as the `meteor` tool does.
pub(super) async fn full_sync(
    url: &str,
    compress: bool,
    deflate: bool,
    keep_frames: bool,
    source: Option<std::net::IpAddr>,
) -> anyhow::Result<SyncRun> {
    let started = Instant::now();
    let read = Arc::new(AtomicU64::new(0));
    let results = Arc::new(AtomicU64::new(0));
    let (mut sink, mut socket) = client(
        url,
        source,
        deflate,
        Arc::clone(&read),
        Arc::clone(&results),
    )
    .await?;
    sink.send(Message::text(
        r#"{"msg":"connect","version":"1","support":["1","pre2","pre1"]}"#,
    ))
    .await?;
    let mut token = r#"{"format":"1.1"}"#.to_owned();
    let options = if compress {
        r#"{"compressCollections":true}"#
    } else {
        "{}"
    };
    let mut run = SyncRun {
        elapsed: Duration::ZERO,
        records: 0,
        bytes: 0,
        wire_bytes: 0,
        deflated_bytes: 0,
        pages: 0,
        largest: 0,
        frames: Vec::new(),
    };
    let mut call_id = 0u64;
    request_page(&mut sink, &mut call_id, &token, options).await?;
    loop {
        let text = loop {
            let Some(message) = socket.next().await else {
                bail!("the server closed the connection during the sync");
            };
            let Message::Text(text) = message? else {
                continue;
            };
            if text.as_str().starts_with(r#"{"msg":"result""#) {
                break text;
            }
        };
        // Pipelining: Exosphere puts the token before the records, so the next page can be
        // requested before this one is parsed; the server works while the client parses.
        let head = leading_token(text.as_str());
        if let Some((next, false)) = head {
            request_page(&mut sink, &mut call_id, next, options).await?;
        }
        let frame: ResultFrame = serde_json::from_str(text.as_str())?;
        if let Some(error) = frame.error {
            bail!("syncNewPackageData failed: {error}");
        }
        let Some(result) = frame.result.filter(|_| frame.msg == "result") else {
            bail!("a result frame without a result");
        };
        run.records += match (&result.collections_compressed, &result.collections) {
            (Some(packed), _) => count_compressed(packed)?,
            (None, Some(collections)) => collections.values().map(|c| c.len() as u64).sum(),
            (None, None) => bail!("a page without collections"),
        };
        run.bytes += text.len() as u64;
        run.largest = run.largest.max(text.len() as u64);
        run.pages += 1;
        let done = result.up_to_date;
        if head.is_none() && !done {
            token = result.sync_token.get().to_owned();
            request_page(&mut sink, &mut call_id, &token, options).await?;
        }
        if keep_frames {
            run.frames.push(text);
        }
        if done {
            break;
        }
    }
    run.elapsed = started.elapsed();
    run.wire_bytes = read.load(Ordering::Relaxed);
    run.deflated_bytes = results.load(Ordering::Relaxed);
    let _ = sink.close().await;
    Ok(run)
}

/// Sends the next `syncNewPackageData` call.
async fn request_page<S>(
    socket: &mut S,
    call_id: &mut u64,
    token: &str,
    options: &str,
) -> anyhow::Result<()>
where
    S: Sink<Message, Error = anyhow::Error> + Unpin,
{
    *call_id += 1;
    socket
        .send(Message::text(format!(
            r#"{{"msg":"method","id":"{call_id}","method":"syncNewPackageData","params":[{token},{options}]}}"#
        )))
        .await?;
    Ok(())
}

/// Decodes a `collectionsCompressed` page as the tool does (base64, gunzip, JSON) and counts it.
fn count_compressed(packed: &str) -> anyhow::Result<u64> {
    let gzipped = base64::engine::general_purpose::STANDARD.decode(packed)?;
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(gzipped.as_slice()).read_to_end(&mut json)?;
    let collections: std::collections::BTreeMap<String, Vec<IgnoredAny>> =
        serde_json::from_slice(&json)?;
    Ok(collections.values().map(|c| c.len() as u64).sum())
}

/// Bytes of each result frame compressed on its own with zlib's default level (raw DEFLATE,
/// finished): what `permessage-deflate` is compared with.
fn zlib_default_bytes(frames: &[Utf8Bytes]) -> anyhow::Result<u64> {
    let mut total = 0;
    for frame in frames {
        let mut encoder =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(frame.as_bytes())?;
        total += encoder.finish()?.len() as u64;
    }
    Ok(total)
}

/// The physical limit: a bare WebSocket server on loopback answers each small request with the
/// next recorded frame, and the client only receives. Same bytes, same round trips. Returns
/// the transfer's time and the CPU seconds of the server (a thread of its own).
pub(super) fn bare_push(frames: &[Utf8Bytes]) -> anyhow::Result<(Duration, f64)> {
    let bare = bare_push_many(frames, 1)?;
    Ok((bare.elapsed, bare.cpu))
}

/// The bare baseline's client: asks for and receives `count` frames.
async fn bare_client(address: std::net::SocketAddr, count: usize) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{address}/")).await?;
    for _ in 0..count {
        socket.send(Message::text("next")).await?;
        match socket.next().await {
            Some(Ok(Message::Text(_))) => {}
            other => bail!("bare WebSocket baseline broke: {other:?}"),
        }
    }
    let elapsed = started.elapsed();
    let _ = socket.close(None).await;
    Ok(elapsed)
}
