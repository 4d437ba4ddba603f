//! `exosphere bench sessions`: many concurrent DDP sessions, each subscribed to `changes`
//! (spec §4.3), against an `exosphere serve` child process.
//!
//! The load generator opens `--sessions` WebSockets on loopback (at most
//! `--connect-concurrency` handshakes at a time), establishes DDP and subscribes each to
//! `changes`. It reports the connect rate and the server's anonymous memory per idle
//! session. Then, `--rounds` times, it imports one new version into the server's data
//! directory, as `exosphere import` would, and times the `changed` message on every
//! client: the catalog watcher sees the write within `--watch-interval`, and the fan-out
//! follows. The physical limit, measured in the same run, is the same fan-out of a
//! pre-encoded frame of the same size over bare loopback TCP sockets. Everything is
//! bounded: each phase gives up after a deadline instead of hanging.

use std::io::Cursor;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use exosphere_catalog::dump;
use exosphere_catalog_sqlite::open_sqlite;
use exosphere_synth::Scale;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::{ServerProcess, WorkDir, prepare_catalog};
use crate::cli::BenchSessionsArgs;
use crate::fd_limit;

/// Descriptors kept free for everything that is not a session socket.
const SPARE_FDS: u64 = 128;
/// How long one phase (connecting everyone, one fan-out) may take before the run gives up.
const PHASE_LIMIT: Duration = Duration::from_secs(300);
/// Time for the server to settle after the last subscription before memory is read.
const SETTLE: Duration = Duration::from_secs(2);

/// Runs the benchmark and prints its Markdown report.
pub fn run(args: BenchSessionsArgs) -> anyhow::Result<()> {
    let limit = fd_limit::raise().context("cannot read the open-file limit")?;
    let needed = u64::from(args.sessions) + SPARE_FDS;
    if limit.soft < needed {
        bail!(
            "{} sessions need {needed} open files in this load generator, but the hard limit is {}: \
             raise it (ulimit -Hn, /etc/security/limits.conf) or use fewer --sessions",
            args.sessions,
            limit.hard
        );
    }
    let work_dir = WorkDir::new(args.work_dir.as_deref())?;
    let catalog = prepare_catalog(work_dir.path(), Scale::Small, args.seed)?;
    let template = version_template(&work_dir.path().join("catalog.ndjson"))?;
    let watch_interval = format!("{}ms", args.watch_interval.as_millis());
    let max_sessions = (args.sessions + 100).to_string();
    // Every session comes from this one address: the per-address caps are off.
    let server = ServerProcess::start(
        &catalog.data_dir,
        &[
            "--watch-interval",
            &watch_interval,
            "--max-sessions",
            &max_sessions,
            "--max-sessions-per-address",
            "0",
            "--max-connections-per-address",
            "0",
        ],
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(measure(
        &args,
        &server,
        &catalog.data_dir,
        &template,
        limit.soft,
    ))
}

/// A `versions` record from the benchmark's catalog, to import again under new ids.
fn version_template(dump_path: &std::path::Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(dump_path)?;
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|entry| entry["collection"] == "versions")
        .context("the benchmark catalog has no versions")
}

async fn measure(
    args: &BenchSessionsArgs,
    server: &ServerProcess,
    data_dir: &std::path::Path,
    template: &Value,
    fd_soft_limit: u64,
) -> anyhow::Result<()> {
    let sessions = args.sessions as usize;
    let anon_before = server.memory_kib("RssAnon")?;

    // Connect everyone, at most `connect_concurrency` handshakes at a time.
    let (changed_tx, mut changed_rx) = mpsc::unbounded_channel::<(Instant, usize)>();
    let gate = Arc::new(Semaphore::new(args.connect_concurrency.max(1) as usize));
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<anyhow::Result<()>>();
    let (stop_tx, stop_rx) = watch::channel(false);
    let started = Instant::now();
    let mut clients = Vec::with_capacity(sessions);
    for _ in 0..sessions {
        let url = server.ws_url();
        let gate = Arc::clone(&gate);
        let (ready_tx, changed_tx) = (ready_tx.clone(), changed_tx.clone());
        let stop = stop_rx.clone();
        clients.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await;
            let socket = match subscribe(&url).await {
                Ok(socket) => socket,
                Err(error) => {
                    let _ = ready_tx.send(Err(error));
                    return;
                }
            };
            drop(permit);
            let _ = ready_tx.send(Ok(()));
            watch_changes(socket, changed_tx, stop).await;
        }));
    }
    drop(changed_tx);
    for done in 0..sessions {
        match tokio::time::timeout_at((started + PHASE_LIMIT).into(), ready_rx.recv()).await {
            Ok(Some(Ok(()))) => {}
            Ok(Some(Err(error))) => bail!("session {done} failed to subscribe: {error:#}"),
            Ok(None) | Err(_) => bail!("only {done} of {sessions} sessions subscribed in time"),
        }
    }
    let connect_time = started.elapsed();
    tokio::time::sleep(SETTLE).await;
    let anon_idle = server.memory_kib("RssAnon")?;
    let per_session = (anon_idle.saturating_sub(anon_before) * 1024) as f64 / sessions as f64;

    // Fan-out rounds: one catalog write each, timed to the last client's `changed`.
    let store = open_sqlite(data_dir)?;
    let mut rounds = Vec::new();
    let mut frame_len = 0;
    for round in 0..args.rounds {
        let mut entry = template.clone();
        entry["doc"]["_id"] = json!(format!("benchSessions{round}"));
        entry["doc"]["version"] = json!(format!("99.0.{round}"));
        let line = format!("{entry}\n");
        let write_started = Instant::now();
        dump::import(&store, Cursor::new(line)).context("cannot write to the catalog")?;
        let written = Instant::now();
        let mut arrivals = Vec::with_capacity(sessions);
        while arrivals.len() < sessions {
            match tokio::time::timeout_at((written + PHASE_LIMIT).into(), changed_rx.recv()).await {
                Ok(Some((at, len))) => {
                    frame_len = len;
                    arrivals.push(at.saturating_duration_since(written));
                }
                Ok(None) | Err(_) => bail!(
                    "round {round}: only {} of {sessions} clients saw the change in time",
                    arrivals.len()
                ),
            }
        }
        arrivals.sort();
        rounds.push(Round {
            write: written - write_started,
            first: arrivals[0],
            median: arrivals[arrivals.len() / 2],
            last: arrivals[arrivals.len() - 1],
        });
    }
    let peak_kib = server.memory_kib("VmHWM")?;
    stop_tx.send_replace(true);
    for client in clients {
        let _ = client.await;
    }

    // The physical limit: the same frame, written to as many bare sockets as fit.
    let bare_sockets =
        sessions.min(usize::try_from((fd_soft_limit - SPARE_FDS) / 2).unwrap_or(usize::MAX));
    let bare = bare_fan_out(bare_sockets, frame_len.max(1)).await?;

    report(
        args,
        connect_time,
        anon_before,
        anon_idle,
        per_session,
        peak_kib,
        &rounds,
        frame_len,
        bare_sockets,
        bare,
    );
    Ok(())
}

/// One fan-out: import time, and when the first, median and last client saw `changed`
/// (from the end of the write).
struct Round {
    write: Duration,
    first: Duration,
    median: Duration,
    last: Duration,
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// Connects, establishes DDP and subscribes to `changes`, returning once `ready` arrived.
async fn subscribe(url: &str) -> anyhow::Result<Socket> {
    // Small buffers: the load generator holds as many sockets as the server.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (mut socket, _) =
        tokio_tungstenite::connect_async_with_config(url, Some(config), true).await?;
    socket
        .send(Message::text(
            r#"{"msg":"connect","version":"1","support":["1"]}"#,
        ))
        .await?;
    socket
        .send(Message::text(
            r#"{"msg":"sub","id":"c","name":"changes","params":[]}"#,
        ))
        .await?;
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) if text.contains(r#""msg":"ready""#) => {
                return Ok(socket);
            }
            Some(Ok(Message::Text(text)))
                if text.contains(r#""msg":"nosub""#) || text.contains(r#""msg":"failed""#) =>
            {
                bail!("refused: {text}")
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(error.into()),
            None => bail!("the server closed the connection"),
        }
    }
}

/// Reports every `changed` of the `versions` counter (time, frame length) and answers
/// pings, until `stop`, when it closes the WebSocket properly.
async fn watch_changes(
    mut socket: Socket,
    changed: mpsc::UnboundedSender<(Instant, usize)>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let message = tokio::select! {
            message = socket.next() => message,
            _ = stop.changed() => {
                let _ = tokio::time::timeout(Duration::from_secs(5), socket.close(None)).await;
                return;
            }
        };
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return,
        };
        if text.contains(r#""msg":"changed""#) && text.contains(r#""id":"versions""#) {
            if changed.send((Instant::now(), text.len())).is_err() {
                return;
            }
        } else if text.contains(r#""msg":"ping""#)
            && socket
                .send(Message::text(r#"{"msg":"pong"}"#))
                .await
                .is_err()
        {
            return;
        }
    }
}

/// Writes one pre-encoded frame of `frame_len` bytes to `count` accepted loopback sockets
/// (from as many tasks as there are cores) and returns the time until the last client
/// has read it.
async fn bare_fan_out(count: usize, frame_len: usize) -> anyhow::Result<Duration> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let (arrived_tx, mut arrived_rx) = mpsc::unbounded_channel::<Instant>();
    let mut readers = Vec::with_capacity(count);
    let mut writers = Vec::with_capacity(count);
    for _ in 0..count {
        let mut client = TcpStream::connect(address).await?;
        let (server_side, _) = listener.accept().await?;
        server_side.set_nodelay(true)?;
        writers.push(server_side);
        let arrived = arrived_tx.clone();
        readers.push(tokio::spawn(async move {
            let mut buffer = vec![0; frame_len];
            if client.read_exact(&mut buffer).await.is_ok() {
                let _ = arrived.send(Instant::now());
            }
        }));
    }
    drop(arrived_tx);
    let frame: Arc<[u8]> = vec![b'x'; frame_len].into();
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let chunk = count.div_ceil(cores).max(1);
    let started = Instant::now();
    let mut tasks = Vec::new();
    while !writers.is_empty() {
        let mut part = writers.split_off(writers.len().saturating_sub(chunk));
        let frame = Arc::clone(&frame);
        tasks.push(tokio::spawn(async move {
            for socket in &mut part {
                socket.write_all(&frame).await?;
            }
            anyhow::Ok(part)
        }));
    }
    let mut last = started;
    for _ in 0..count {
        match tokio::time::timeout_at((started + PHASE_LIMIT).into(), arrived_rx.recv()).await {
            Ok(Some(at)) => last = last.max(at),
            Ok(None) | Err(_) => bail!("the bare fan-out did not complete"),
        }
    }
    for task in tasks {
        task.await??;
    }
    for reader in readers {
        let _ = reader.await;
    }
    Ok(last - started)
}

#[allow(clippy::too_many_arguments)]
fn report(
    args: &BenchSessionsArgs,
    connect_time: Duration,
    anon_before: u64,
    anon_idle: u64,
    per_session: f64,
    peak_kib: u64,
    rounds: &[Round],
    frame_len: usize,
    bare_sockets: usize,
    bare: Duration,
) {
    let sessions = args.sessions;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("## exosphere bench sessions\n");
    println!("| measure | value |");
    println!("|---|---|");
    println!("| sessions (each subscribed to `changes`) | {sessions} |");
    println!(
        "| connect + DDP + subscribe, all | {:.2} s ({:.0} sessions/s, {} handshakes at a time) |",
        connect_time.as_secs_f64(),
        f64::from(sessions) / connect_time.as_secs_f64().max(f64::EPSILON),
        args.connect_concurrency
    );
    println!(
        "| server anonymous RSS before / with all sessions idle | {:.1} MB / {:.1} MB |",
        anon_before as f64 / 1024.0,
        anon_idle as f64 / 1024.0
    );
    println!(
        "| **server memory per idle session** | **{:.1} KB** (target: under 20 KB) |",
        per_session / 1000.0
    );
    println!("| server peak RSS | {:.1} MB |", peak_kib as f64 / 1024.0);
    println!(
        "| watch interval (`--watch-interval`) | {} ms |",
        args.watch_interval.as_millis()
    );
    println!("| `changed` frame | {frame_len} bytes |");
    for (index, round) in rounds.iter().enumerate() {
        println!(
            "| round {}: import / first / median / **last client** after the write | {:.1} / {:.1} / {:.1} / **{:.1} ms** |",
            index + 1,
            ms(round.write),
            ms(round.first),
            ms(round.median),
            ms(round.last)
        );
    }
    let best = rounds.iter().min_by_key(|r| r.last);
    if let Some(best) = best {
        println!(
            "| **fan-out, write to last client, best** | **{:.1} ms** (target: under 1 s) |",
            ms(best.last)
        );
        println!(
            "| fan-out spread (first to last client), best | {:.1} ms |",
            ms(best.last - best.first)
        );
    }
    println!(
        "| bare loopback fan-out, same frame, {bare_sockets} sockets | {:.1} ms |",
        ms(bare)
    );
    if let Some(best) = best {
        let scaled = bare.as_secs_f64() * f64::from(sessions) / bare_sockets.max(1) as f64;
        println!(
            "| ratio spread / bare fan-out (bare scaled to {sessions} sockets) | {:.2} |",
            (best.last - best.first).as_secs_f64() / scaled.max(f64::EPSILON)
        );
    }
}
