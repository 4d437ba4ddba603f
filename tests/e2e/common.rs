//! Shared harness for the end-to-end tests: a real `exosphere` process on a loopback port, the
//! CLI run as a user runs it, a minimal DDP client over a real WebSocket, and plain HTTP.

use std::io::{BufRead, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::pg_database::TestDatabase;
use exosphere_catalog::CatalogStore;
use exosphere_catalog_postgres::open_postgres;
use exosphere_catalog_sqlite::open_sqlite;

/// The real 2015 catalog shipped beside the project (`shared/fixtures`).
pub fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/meteor-2015-catalog.ndjson")
}

/// A catalog as the tests hold it: collection → `_id` → record (EJSON in its JSON form).
pub type Catalog = std::collections::BTreeMap<String, std::collections::BTreeMap<String, Value>>;

/// The records of the 2015 fixture, read by [`read_dump`].
pub fn fixture_catalog() -> Catalog {
    read_dump(&std::fs::read_to_string(fixture()).expect("the fixture is readable")).0
}

/// The `exosphere` binary cargo built for these tests.
pub fn exosphere() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_exosphere"));
    command.env("RUST_LOG", "warn").stdin(Stdio::null());
    command
}

/// Runs `exosphere <args>` to completion and returns its output.
pub fn run(args: &[&str]) -> Output {
    exosphere().args(args).output().expect("exosphere runs")
}

/// Where a test's catalog lives: SQLite in its data directory (the default), or a fresh
/// PostgreSQL database of its own (dropped with the value), so one test body runs on every
/// backend.
pub enum Backend {
    /// `catalog.sqlite3` in the data directory.
    Sqlite,
    /// A database on the test server (`EXOSPHERE_TEST_DATABASE_URL`).
    Postgres(TestDatabase),
}

impl Backend {
    /// A PostgreSQL backend on a new, empty database.
    pub fn postgres() -> Backend {
        Backend::Postgres(TestDatabase::new())
    }

    /// The flags that choose this backend, for `serve` and every command that takes
    /// `--data-dir`.
    pub fn flags(&self) -> Vec<&str> {
        match self {
            Backend::Sqlite => Vec::new(),
            Backend::Postgres(database) => vec!["--database-url", database.url()],
        }
    }

    /// The catalog on this backend, opened in the test process as a command opens it, for
    /// tests that read or write the store directly.
    pub fn open(&self, data_dir: &Path) -> Box<dyn CatalogStore> {
        match self {
            Backend::Sqlite => Box::new(open_sqlite(data_dir).expect("the SQLite catalog opens")),
            Backend::Postgres(database) => {
                Box::new(open_postgres(database.url()).expect("the PostgreSQL catalog opens"))
            }
        }
    }
}

/// Runs `exosphere import --data-dir DIR FILE` and asserts it succeeded.
pub fn import(data_dir: &Path, file: &Path) {
    import_on(&Backend::Sqlite, data_dir, file);
}

/// Runs `exosphere import --data-dir DIR FILE` with the catalog on `backend` and asserts it
/// succeeded.
pub fn import_on(backend: &Backend, data_dir: &Path, file: &Path) {
    let output = exosphere()
        .arg("import")
        .arg("--data-dir")
        .arg(data_dir)
        .args(backend.flags())
        .arg(file)
        .output()
        .expect("exosphere import runs");
    assert_success(&output);
}

/// Fails the test with the command's standard error unless it succeeded.
pub fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "exosphere failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Imports NDJSON text given inline.
pub fn import_text(data_dir: &Path, ndjson: &str) {
    let file = data_dir.with_extension(format!("import-{}.ndjson", rand_suffix()));
    std::fs::write(&file, ndjson).expect("write dump");
    import(data_dir, &file);
    std::fs::remove_file(&file).ok();
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

/// Fails unless SQLite's `PRAGMA integrity_check` finds the catalog of the data directory
/// `data` whole, read straight from its file (read-only) as the last process left it.
pub fn assert_catalog_intact(data: &Path) {
    let catalog = rusqlite::Connection::open_with_flags(
        data.join("catalog.sqlite3"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("the catalog opens read-only");
    let report: Vec<String> = catalog
        .prepare("PRAGMA integrity_check")
        .and_then(|mut check| check.query_map([], |row| row.get(0))?.collect())
        .expect("the integrity check runs");
    assert_eq!(report, ["ok"], "integrity_check of {}", data.display());
}

/// An `exosphere serve` child process, killed when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:<port>`
    pub http: String,
    /// `ws://127.0.0.1:<port>/websocket`
    pub ws: String,
}

impl Server {
    /// Starts a server on a free loopback port with extra flags.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Server {
        Server::start_on("127.0.0.1:0", data_dir, extra)
    }

    /// Starts a server listening on `listen` (e.g. the address of a server that stopped).
    pub fn start_on(listen: &str, data_dir: &Path, extra: &[&str]) -> Server {
        Server::spawn(&mut Server::command(listen, data_dir, extra))
    }

    /// Starts a server on a free loopback port whose open-file limit (soft and hard) is
    /// `open_files`, so it cannot raise it.
    pub fn start_with_open_files(data_dir: &Path, extra: &[&str], open_files: u64) -> Server {
        use std::os::unix::process::CommandExt as _;
        let mut command = Server::command("127.0.0.1:0", data_dir, extra);
        // SAFETY: only `setrlimit`, which is async-signal-safe, runs in the forked child.
        unsafe {
            command.pre_exec(move || {
                let limit = libc::rlimit {
                    rlim_cur: open_files,
                    rlim_max: open_files,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Server::spawn(&mut command)
    }

    /// Starts a server on a free loopback port that logs at `info` level into `log`.
    pub fn start_logging_to(data_dir: &Path, extra: &[&str], log: std::fs::File) -> Server {
        Server::start_logging_at(data_dir, extra, log, "info")
    }

    /// Starts a server on a free loopback port that logs into `log` what `filter` (a
    /// `RUST_LOG` value) lets through.
    pub fn start_logging_at(
        data_dir: &Path,
        extra: &[&str],
        log: std::fs::File,
        filter: &str,
    ) -> Server {
        let mut command = Server::command("127.0.0.1:0", data_dir, extra);
        command.env("RUST_LOG", filter).stderr(log);
        Server::spawn(&mut command)
    }

    fn command(listen: &str, data_dir: &Path, extra: &[&str]) -> Command {
        let mut command = exosphere();
        command
            .args(["serve", "--listen", listen, "--data-dir"])
            .arg(data_dir);
        // Quick to notice other processes' writes, unless the test chooses its own interval.
        if !extra.contains(&"--watch-interval") {
            command.args(["--watch-interval", "100ms"]);
        }
        command.args(extra).stdout(Stdio::piped());
        command
    }

    fn spawn(command: &mut Command) -> Server {
        let mut child = command.spawn().expect("exosphere serve starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the server prints its address");
        let address = line
            .trim()
            .strip_prefix("Exosphere listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Server {
            child,
            http: format!("http://{address}"),
            ws: format!("ws://{address}/websocket"),
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `host:port` the server listens on, to start its successor where clients reach it.
    pub fn address(&self) -> &str {
        self.http.trim_start_matches("http://")
    }

    /// Sends SIGTERM, as `docker stop` and systemd do.
    pub fn signal_terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits for the process to exit by itself, within `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("child status") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the server did not exit"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Opens a DDP session (version "1", as the tool proposes it).
    pub async fn ddp(&self) -> Ddp {
        Ddp::connect(&self.ws).await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server over a fresh data directory that holds the 2015 fixture: the temporary
/// directory (keep it alive), the data directory, and the server.
pub fn serve_fixture() -> (tempfile::TempDir, PathBuf, Server) {
    serve_fixture_on(&Backend::Sqlite)
}

/// [`serve_fixture`] with the catalog on `backend`.
pub fn serve_fixture_on(backend: &Backend) -> (tempfile::TempDir, PathBuf, Server) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    import_on(backend, &data, &fixture());
    let server = Server::start(&data, &backend.flags());
    (dir, data, server)
}

/// How long a test waits for any one message before it fails instead of hanging.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A minimal DDP client written for the tests, independent of the server's own code.
pub struct Ddp {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    /// Messages received while waiting for something else (`added`, `changed`, …).
    pub backlog: Vec<Value>,
    /// The session id from `connected`.
    pub session: String,
}

impl Ddp {
    /// Connects and completes the DDP handshake.
    pub async fn connect(url: &str) -> Ddp {
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("WebSocket connects");
        Ddp::handshake(socket).await
    }

    /// Completes the DDP handshake on an open WebSocket.
    async fn handshake(socket: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Ddp {
        let mut ddp = Ddp {
            socket,
            next_id: 0,
            backlog: Vec::new(),
            session: String::new(),
        };
        ddp.send(json!({"msg": "connect", "version": "1", "support": ["1", "pre2", "pre1"]}))
            .await;
        let connected = ddp.recv().await;
        assert_eq!(connected["msg"], "connected", "{connected}");
        ddp.session = connected["session"]
            .as_str()
            .expect("session id")
            .to_owned();
        ddp
    }

    /// Connects from the loopback address `source` (e.g. `127.0.0.2`), for tests of
    /// limits kept per client address, and completes the DDP handshake.
    pub async fn connect_from(url: &str, source: std::net::IpAddr) -> Ddp {
        let authority = url
            .strip_prefix("ws://")
            .and_then(|rest| rest.split('/').next())
            .expect("a ws:// URL");
        let server: std::net::SocketAddr = authority.parse().expect("a literal address");
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket
            .bind(std::net::SocketAddr::new(source, 0))
            .expect("binds the source address");
        let stream = socket.connect(server).await.expect("TCP connects");
        let (socket, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream))
            .await
            .expect("WebSocket connects");
        Ddp::handshake(socket).await
    }

    /// Sends one message as one text frame.
    pub async fn send(&mut self, message: Value) {
        self.send_text(&message.to_string()).await;
    }

    /// Sends raw text, for malformed-input tests.
    pub async fn send_text(&mut self, text: &str) {
        self.socket
            .send(Message::text(text))
            .await
            .expect("send frame");
    }

    /// The next DDP message, answering server pings on the way like the tool does.
    pub async fn recv(&mut self) -> Value {
        loop {
            let frame = tokio::time::timeout(PATIENCE, self.socket.next())
                .await
                .expect("a message arrives in time")
                .expect("the connection stays open")
                .expect("a valid frame");
            match frame {
                Message::Text(text) => {
                    let message: Value = serde_json::from_str(text.as_str()).expect("JSON frame");
                    if message["msg"] == "ping" {
                        let mut pong = json!({"msg": "pong"});
                        if let Some(id) = message.get("id") {
                            pong["id"] = id.clone();
                        }
                        self.send(pong).await;
                        continue;
                    }
                    return message;
                }
                Message::Close(frame) => panic!("server closed the connection: {frame:?}"),
                _ => continue,
            }
        }
    }

    /// The next message, or `None` if the server closes the connection.
    pub async fn recv_or_close(&mut self) -> Option<Value> {
        loop {
            let frame = tokio::time::timeout(PATIENCE, self.socket.next())
                .await
                .expect("a message or a close arrives in time");
            match frame {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return None,
                Some(Ok(Message::Text(text))) => {
                    return Some(serde_json::from_str(text.as_str()).expect("JSON frame"));
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Calls a method and waits for both its `result` and its `updated` (spec §1.2), returning
    /// the whole `result` message.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id.to_string();
        self.send(json!({"msg": "method", "id": id, "method": method, "params": params}))
            .await;
        let mut result = None;
        let mut updated = false;
        while result.is_none() || !updated {
            let message = self.recv().await;
            match message["msg"].as_str() {
                Some("result") if message["id"] == id.as_str() => result = Some(message),
                Some("updated") => {
                    let methods = message["methods"].as_array().expect("methods array");
                    assert!(
                        methods.iter().all(|m| m == id.as_str()),
                        "updated for an unknown method id: {message}"
                    );
                    updated = true;
                }
                _ => self.backlog.push(message),
            }
        }
        result.expect("loop ends with a result")
    }

    /// Subscribes and collects messages until `ready` (or `nosub`) for this subscription.
    pub async fn subscribe(&mut self, id: &str, name: &str) -> (Vec<Value>, Value) {
        self.send(json!({"msg": "sub", "id": id, "name": name, "params": []}))
            .await;
        let mut data = Vec::new();
        loop {
            let message = self.recv().await;
            let is_ready = message["msg"] == "ready"
                && message["subs"]
                    .as_array()
                    .is_some_and(|subs| subs.iter().any(|s| s == id));
            let is_nosub = message["msg"] == "nosub" && message["id"] == id;
            if is_ready || is_nosub {
                return (data, message);
            }
            data.push(message);
        }
    }

    /// Waits for the next message matching `pred`, keeping the others in the backlog.
    pub async fn wait_for(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(index) = self.backlog.iter().position(&pred) {
            return self.backlog.remove(index);
        }
        loop {
            let message = self.recv().await;
            if pred(&message) {
                return message;
            }
            self.backlog.push(message);
        }
    }
}

/// Everything one full sync (spec §3.3) delivered.
pub struct SyncOutcome {
    /// Every result page as received.
    pub pages: Vec<Value>,
    /// Final state of a tool-like local catalog: collection → _id → record.
    pub catalog: Catalog,
    /// The last token returned.
    pub token: Value,
}

/// The five collection names, in the order of spec §3.2.
pub const COLLECTIONS: [&str; 5] = [
    "packages",
    "versions",
    "builds",
    "releaseTracks",
    "releaseVersions",
];

/// Runs the tool's loop (spec §3.3) from `token` with `options`, applying pages like the tool:
/// wipe on `resetData`, upsert by `_id`, stop on `upToDate`.
pub async fn sync_loop(ddp: &mut Ddp, mut token: Value, options: Value) -> SyncOutcome {
    let mut outcome = SyncOutcome {
        pages: Vec::new(),
        catalog: Default::default(),
        token: Value::Null,
    };
    for _ in 0..100_000 {
        let message = ddp
            .call("syncNewPackageData", json!([token, options]))
            .await;
        assert!(message.get("error").is_none(), "sync failed: {message}");
        let result = message["result"].clone();
        if result["resetData"] == true {
            outcome.catalog.clear();
        }
        let collections = match result.get("collectionsCompressed") {
            Some(packed) => decompress(packed.as_str().expect("base64 text")),
            None => result["collections"].clone(),
        };
        for name in COLLECTIONS {
            let records = collections[name]
                .as_array()
                .unwrap_or_else(|| panic!("collection {name} missing from {result}"));
            for record in records {
                let id = record["_id"].as_str().expect("string _id").to_owned();
                outcome
                    .catalog
                    .entry(name.to_owned())
                    .or_default()
                    .insert(id, record.clone());
            }
        }
        token = result["syncToken"].clone();
        outcome.pages.push(result.clone());
        if result["upToDate"] == true {
            outcome.token = token;
            return outcome;
        }
    }
    panic!("the sync never reached upToDate");
}

/// Decodes `collectionsCompressed` exactly as the tool does (spec §3.7).
pub fn decompress(packed: &str) -> Value {
    use base64::Engine as _;
    use std::io::Read as _;
    let gzipped = base64::engine::general_purpose::STANDARD
        .decode(packed)
        .expect("standard base64");
    let mut text = String::new();
    flate2::read::GzDecoder::new(gzipped.as_slice())
        .read_to_string(&mut text)
        .expect("gzip");
    serde_json::from_str(&text).expect("plain JSON")
}

/// Reads an NDJSON dump into collection → _id → record, plus its stats rows.
pub fn read_dump(text: &str) -> (Catalog, Vec<Value>) {
    let mut catalog = Catalog::new();
    let mut stats = Vec::new();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let entry: Value = serde_json::from_str(line).expect("dump line is JSON");
        let collection = entry["collection"].as_str().expect("collection").to_owned();
        if collection == "stats" {
            stats.push(entry);
            continue;
        }
        let id = entry["doc"]["_id"].as_str().expect("_id").to_owned();
        catalog
            .entry(collection)
            .or_default()
            .insert(id, entry["doc"].clone());
    }
    (catalog, stats)
}

/// A plain HTTP GET: status and body.
pub fn http_get(url: &str) -> (u16, String, Option<String>) {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut response = agent.get(url).call().expect("HTTP request");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.body_mut().read_to_string().expect("UTF-8 body");
    (status, body, content_type)
}

/// `Sec-WebSocket-Key1` of draft-76's example handshake (§1.3), which the SockJS suite's
/// `test_haproxy` sends too.
pub const HIXIE76_KEY1: &str = "4 @1  46546xW%0l 1 5";
/// `Sec-WebSocket-Key2` of the same handshake.
pub const HIXIE76_KEY2: &str = "12998 5 Y3 1  .P00";
/// The nonce (`key3`) the SockJS suite sends after those keys.
pub const HIXIE76_NONCE: &[u8; 8] = b"aaaaaaaa";
/// The server's answer to those keys and nonce, as the SockJS suite expects it.
pub const HIXIE76_ANSWER: &[u8; 16] = b"\xca4\x00\xd8\xa5\x08G\x97,\xd5qZ\xba\xbfC{";

/// A blocking hixie-76 (draft-76) WebSocket client, as browsers of 2010 spoke it: the
/// handshake with the nonce sent right after the headers, and `0x00 text 0xFF` frames.
/// Written for the tests, independent of the server's code.
pub struct Hixie76 {
    reader: BufReader<std::net::TcpStream>,
    writer: std::net::TcpStream,
}

impl Hixie76 {
    /// The handshake on `path` of `addr` (`127.0.0.1:<port>`), the nonce sent with the
    /// headers; panics unless the server answers `101` and the expected challenge response.
    pub fn connect(addr: &str, path: &str) -> Hixie76 {
        Self::handshake(addr, path, true)
    }

    /// The handshake's headers alone: the server's `101`, and a client that never sends
    /// its nonce.
    pub fn connect_without_nonce(addr: &str, path: &str) -> Hixie76 {
        Self::handshake(addr, path, false)
    }

    fn handshake(addr: &str, path: &str, nonce: bool) -> Hixie76 {
        let writer = std::net::TcpStream::connect(addr).expect("connects");
        writer.set_read_timeout(Some(PATIENCE)).expect("timeout");
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n\
             Origin: http://{addr}\r\nSec-WebSocket-Key1: {HIXIE76_KEY1}\r\n\
             Sec-WebSocket-Key2: {HIXIE76_KEY2}\r\n\r\n"
        )
        .into_bytes();
        if nonce {
            request.extend_from_slice(HIXIE76_NONCE);
        }
        let mut client = Hixie76 {
            reader: BufReader::new(writer.try_clone().expect("clone")),
            writer,
        };
        client.writer.write_all(&request).expect("handshake sent");
        let mut status = String::new();
        client.reader.read_line(&mut status).expect("status line");
        assert!(status.starts_with("HTTP/1.1 101 "), "{status:?}");
        loop {
            let mut line = String::new();
            client.reader.read_line(&mut line).expect("header line");
            if line.trim_end().is_empty() {
                break;
            }
        }
        if nonce {
            let mut answer = [0; 16];
            client
                .reader
                .read_exact(&mut answer)
                .expect("challenge response");
            assert_eq!(&answer, HIXIE76_ANSWER);
        }
        client
    }

    /// Sends one text frame.
    pub fn send(&mut self, text: &str) {
        let frame = [b"\x00", text.as_bytes(), b"\xff"].concat();
        self.writer.write_all(&frame).expect("frame sent");
    }

    /// Sends raw bytes (malformed or oversized frames); `false` once the server is gone.
    pub fn send_raw(&mut self, bytes: &[u8]) -> bool {
        self.writer.write_all(bytes).is_ok()
    }

    /// The next text frame; `None` once the server closed (closing handshake, end of the
    /// connection or a reset). Panics if nothing comes within [`PATIENCE`].
    pub fn recv(&mut self) -> Option<String> {
        let mut kind = [0; 1];
        match self.reader.read(&mut kind) {
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => None,
            Err(error) => panic!("no frame within {PATIENCE:?}: {error}"),
            Ok(0) => None,
            Ok(_) if kind[0] == 0x00 => {
                let mut text = Vec::new();
                self.reader.read_until(0xff, &mut text).expect("frame");
                assert_eq!(text.pop(), Some(0xff), "the frame ends");
                Some(String::from_utf8(text).expect("UTF-8"))
            }
            Ok(_) if kind[0] == 0xff => {
                self.reader
                    .read_exact(&mut kind)
                    .expect("closing handshake");
                assert_eq!(kind[0], 0x00, "the closing handshake is 0xFF 0x00");
                None
            }
            Ok(_) => panic!("unexpected frame type {:#04x}", kind[0]),
        }
    }

    /// The closing handshake, as `ws.close()` sends it.
    pub fn close(mut self) {
        self.writer
            .write_all(b"\xff\x00")
            .expect("closing handshake");
    }
}

/// A Node.js script run as a child process that reports JSON lines on stdout and reads
/// commands on stdin: the third-party clients of the interop and browser tests. Its stderr is
/// kept for failure messages; it is killed when dropped.
pub struct NodeScript {
    /// What the script is, for failure messages ("the node client").
    what: &'static str,
    /// How long to wait for any one line: longer than the script's own time limit, so a
    /// stuck script normally explains itself first.
    patience: Duration,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Value>,
    stderr: Option<JoinHandle<String>>,
}

impl NodeScript {
    /// Starts `command` (a `node` invocation) with piped standard streams.
    pub fn spawn(mut command: Command, what: &'static str, patience: Duration) -> NodeScript {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("`node` (version 20 or later) must be on PATH: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // Anything that is not JSON shows up as an unexpected line.
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| json!({"event": "not JSON", "line": line}));
                if sender.send(value).is_err() {
                    break;
                }
            }
        });
        let mut stderr = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            stderr.read_to_string(&mut text).ok();
            text
        });
        NodeScript {
            what,
            patience,
            stdin: child.stdin.take(),
            child,
            lines,
            stderr: Some(stderr),
        }
    }

    /// The next JSON line; if the script exits or stalls, fails with what it said on stderr.
    pub fn next(&mut self) -> Value {
        match self.lines.recv_timeout(self.patience) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => self.fail("printed nothing for too long"),
            Err(RecvTimeoutError::Disconnected) => self.fail("stopped early"),
        }
    }

    /// The next line, which must be the event `name`.
    pub fn expect(&mut self, name: &str) -> Value {
        let line = self.next();
        assert_eq!(
            line["event"], name,
            "unexpected line from {}: {line}",
            self.what
        );
        line
    }

    /// Sends one command line.
    pub fn send(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open until finish");
        writeln!(stdin, "{command}").unwrap_or_else(|e| panic!("{} reads stdin: {e}", self.what));
    }

    fn fail(&mut self, what: &str) -> ! {
        let _ = self.child.kill();
        let status = self.child.wait().expect("wait for the node script");
        let stderr = self.stderr.take().map(|h| h.join().unwrap_or_default());
        panic!(
            "{} {what} ({status}); its stderr:\n{}",
            self.what,
            stderr.unwrap_or_default()
        );
    }

    /// Closes stdin, waits for the script to exit on its own and checks it succeeded.
    pub fn finish(mut self) {
        drop(self.stdin.take());
        let status = self.child.wait().expect("wait for the node script");
        let stderr = self.stderr.take().map(|h| h.join().unwrap_or_default());
        assert!(
            status.success(),
            "{} failed ({status}):\n{}",
            self.what,
            stderr.unwrap_or_default()
        );
    }
}

impl Drop for NodeScript {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
