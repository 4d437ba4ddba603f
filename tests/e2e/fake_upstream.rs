//! A fault-injecting upstream package server, in process, for the tests of the upstream
//! mirror (`exosphere serve --upstream URL`), which must never reach the internet.
//!
//! [`FakeUpstream`] behaves like packages.meteor.com where that differs from Exosphere: its
//! sync token carries per-collection timestamps and `lastDeletion`, its result puts
//! `collections` first (so clients cannot pipeline on a leading token), compressed pages
//! carry dates as ms numbers, and the package files live on a second listener (another
//! port). On top of that a test can make it misbehave ([`SyncFault`], [`FileFault`]), stop
//! and restart it, and count file requests. The tests at the bottom prove the fake itself
//! and document its behaviour.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::ws::WebSocket;
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::any;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use exosphere_ddp::ejson::Ejson;
use exosphere_ddp::{
    ConnectionInfo, DdpConfig, DdpError, MethodContext, Reply, Server, Service, SessionContext,
    Subscription, serve_websocket,
};
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::common::{
    COLLECTIONS, Catalog, Ddp, PATIENCE, assert_success, decompress, exosphere, fixture_catalog,
    sync_loop,
};

/// How a sync call misbehaves; set with [`FakeUpstream::set_sync_fault`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncFault {
    /// Closes the WebSocket (no close frame) instead of answering the n-th sync call from
    /// now (1 = the next; calls before it are answered normally); fires once.
    DropMidPage(u32),
    /// Accepts every sync call and never answers it, until cleared; a hung call holds up its
    /// connection's later calls (DDP runs them in order) until the client disconnects.
    Hang,
    /// Answers the next sync call with `resetData: true` and the first page of everything,
    /// whatever its token; fires once.
    ResetDataNext,
    /// The next answer carries the records after the token sent, but a token whose
    /// timestamps are one hour older than the sent ones (missing counts as 0) and which has
    /// no `<collection>Id` tie-breakers; fires once.
    TokenBackwards,
    /// Answers every sync call with a DDP error of this code, until cleared.
    SyncError(i64),
}

/// How a file request misbehaves; set per path with [`FakeUpstream::set_file_fault`]. Each
/// lasts until cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFault {
    /// The right status and `Content-Length`, then only the first half of the body, then close.
    Truncate,
    /// The right status and length, every byte inverted.
    WrongBytes,
    /// This status (404, 500, …) with a short text body.
    Status(u16),
    /// The right head, then no body until the client gives up.
    Hang,
    /// The whole response, this many bytes every 100 ms.
    Slow(usize),
}

/// One millisecond timestamp per hour, for [`SyncFault::TokenBackwards`].
const HOUR_MS: i64 = 3_600_000;

/// The default page size per collection, the `meteor` tool's "~100" (spec §3.6).
const DEFAULT_PAGE_SIZE: usize = 100;

/// Collection the `meteor` tool watches for the OAuth configuration (spec §4.1).
const LOGIN_CONFIG_COLLECTION: &str = "meteor_accounts_loginServiceConfiguration";

/// The fake upstream: a cheap handle; clones control the same server.
#[derive(Clone)]
pub struct FakeUpstream(Arc<Inner>);

struct Inner {
    ddp_addr: SocketAddr,
    files_addr: SocketAddr,
    state: Mutex<CatalogState>,
    /// The `changes` counters (spec §4.3), in [`COLLECTIONS`] order.
    changes: watch::Sender<[u64; 5]>,
    /// Open DDP connections by peer address, so a method can drop or outwait its own.
    connections: Mutex<HashMap<SocketAddr, Arc<watch::Sender<Connection>>>>,
    running: Mutex<Option<Listeners>>,
}

/// The two listeners while the fake runs.
struct Listeners {
    stop: watch::Sender<bool>,
    tasks: [JoinHandle<()>; 2],
}

/// Where one DDP connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Connection {
    Open,
    /// A [`SyncFault::DropMidPage`] asked for it to be dropped.
    Dropping,
    /// Its session is gone: nothing more can be sent on it.
    Closed,
}

/// Everything the test controls, behind one lock.
struct CatalogState {
    /// Per collection, in [`COLLECTIONS`] order.
    records: [Records; 5],
    /// When a record was last deleted (ms); 0 if never.
    last_deletion: i64,
    /// The last `lastUpdated` or deletion time handed out, so stamps strictly increase.
    last_stamp: i64,
    page_size: usize,
    sync_fault: Option<SyncFault>,
    files: HashMap<String, ServedFile>,
    /// Requests per path, answered or not.
    requests: HashMap<String, u64>,
}

/// One collection, ordered for paging by (`lastUpdated` ms, `_id`).
#[derive(Default)]
struct Records {
    ordered: BTreeMap<(i64, String), Value>,
    stamps: HashMap<String, i64>,
}

struct ServedFile {
    bytes: Vec<u8>,
    fault: Option<FileFault>,
}

/// What a sync call gets.
enum SyncAction {
    Answer(String),
    Error(i64),
    Drop,
    Hang,
}

impl FakeUpstream {
    /// Serves `catalog` (records as EJSON in JSON form, with `lastUpdated: {"$date": ms}`) on
    /// two fresh loopback ports: DDP and files. The `changes` counters start at the record
    /// counts.
    pub async fn start(catalog: Catalog) -> FakeUpstream {
        let ddp = TcpListener::bind("127.0.0.1:0").await.expect("bind DDP");
        let files = TcpListener::bind("127.0.0.1:0").await.expect("bind files");
        let mut records: [Records; 5] = Default::default();
        for (collection, docs) in catalog {
            for record in docs.into_values() {
                records[position(&collection)].put(record);
            }
        }
        let counters = records.each_ref().map(|r| r.ordered.len() as u64);
        let last_stamp = records
            .iter()
            .filter_map(|r| r.ordered.keys().map(|(ms, _)| *ms).max())
            .max()
            .unwrap_or(0);
        let fake = FakeUpstream(Arc::new(Inner {
            ddp_addr: ddp.local_addr().expect("DDP address"),
            files_addr: files.local_addr().expect("files address"),
            state: Mutex::new(CatalogState {
                records,
                last_deletion: 0,
                last_stamp,
                page_size: DEFAULT_PAGE_SIZE,
                sync_fault: None,
                files: HashMap::new(),
                requests: HashMap::new(),
            }),
            changes: watch::Sender::new(counters),
            connections: Mutex::new(HashMap::new()),
            running: Mutex::new(None),
        }));
        fake.listen(ddp, files);
        fake
    }

    /// Serves the records of the 2015 fixture.
    pub async fn from_fixture() -> FakeUpstream {
        FakeUpstream::start(fixture_catalog()).await
    }

    /// `http://127.0.0.1:<port>`, the package server URL a client is given.
    pub fn url(&self) -> String {
        format!("http://{}", self.0.ddp_addr)
    }

    /// `ws://127.0.0.1:<port>/websocket`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/websocket", self.0.ddp_addr)
    }

    /// `http://127.0.0.1:<other port>`, where the files are.
    pub fn files_url(&self) -> String {
        format!("http://{}", self.0.files_addr)
    }

    /// A DDP session with the fake.
    pub async fn ddp(&self) -> Ddp {
        Ddp::connect(&self.ws_url()).await
    }

    /// The records as a client that synced everything holds them.
    pub fn catalog(&self) -> Catalog {
        let state = self.state();
        COLLECTIONS
            .iter()
            .zip(&state.records)
            .filter(|(_, records)| !records.ordered.is_empty())
            .map(|(name, records)| {
                let docs = records
                    .ordered
                    .iter()
                    .map(|((_, id), record)| (id.clone(), record.clone()))
                    .collect();
                ((*name).to_owned(), docs)
            })
            .collect()
    }

    /// Inserts or replaces a record, stamping `lastUpdated` with now (strictly after every
    /// earlier stamp), so the next sync from any token delivers it; moves `changes`.
    pub fn upsert(&self, collection: &str, mut record: Value) {
        let index = position(collection);
        {
            let mut state = self.state();
            record["lastUpdated"] = json!({"$date": state.stamp()});
            state.records[index].put(record);
        }
        self.0.changes.send_modify(|counters| counters[index] += 1);
    }

    /// Deletes a record and records the deletion time, so a sync from any older
    /// (non-default) token starts over with `resetData`; moves `changes`.
    pub fn delete(&self, collection: &str, id: &str) {
        let index = position(collection);
        {
            let mut state = self.state();
            assert!(
                state.records[index].remove(id),
                "{collection} has no record {id}"
            );
            state.last_deletion = state.stamp();
        }
        self.0.changes.send_modify(|counters| counters[index] += 1);
    }

    /// Records per collection and page, from the next call on.
    pub fn set_page_size(&self, records: usize) {
        self.state().page_size = records.max(1);
    }

    /// Sets (or with `None` clears) how sync calls misbehave, from the next call on.
    pub fn set_sync_fault(&self, fault: Option<SyncFault>) {
        self.state().sync_fault = fault;
    }

    /// Serves `bytes` at `path` (starting with `/`) on the file listener; returns its URL.
    pub fn put_file(&self, path: &str, bytes: Vec<u8>) -> String {
        self.state()
            .files
            .insert(path.to_owned(), ServedFile { bytes, fault: None });
        format!("{}{path}", self.files_url())
    }

    /// Makes a file for every build (`/build/<_id>.tgz`) and version (`/source/<_id>.tgz`)
    /// and points the records' `build` / `source` `url` and `tarballHash` (spec §8.2) at it,
    /// so a mirror can fetch and verify them. Records keep their `lastUpdated`: call this
    /// before clients sync.
    pub fn serve_catalog_files(&self) {
        let files_url = self.files_url();
        let mut state = self.state();
        let state = &mut *state;
        for (collection, field) in [("builds", "build"), ("versions", "source")] {
            for record in state.records[position(collection)].ordered.values_mut() {
                let id = record["_id"].as_str().expect("string _id");
                let path = format!("/{field}/{id}.tgz");
                let bytes = format!("the {field} tarball of {id}\n")
                    .repeat(64)
                    .into_bytes();
                record[field]["url"] = format!("{files_url}{path}").into();
                record[field]["tarballHash"] = tarball_hash(&bytes).into();
                state.files.insert(path, ServedFile { bytes, fault: None });
            }
        }
    }

    /// Sets (or with `None` clears) how requests for `path` misbehave.
    pub fn set_file_fault(&self, path: &str, fault: Option<FileFault>) {
        self.state()
            .files
            .get_mut(path)
            .unwrap_or_else(|| panic!("no file at {path}"))
            .fault = fault;
    }

    /// How many requests for `path` the file listener has read, whatever it answered.
    pub fn requests(&self, path: &str) -> u64 {
        self.state().requests.get(path).copied().unwrap_or(0)
    }

    /// "Kills" the upstream: both listeners close and every open connection is dropped
    /// (pending calls and downloads included); returns once they are gone.
    pub async fn stop(&self) {
        let listeners = lock(&self.0.running).take().expect("the fake is running");
        listeners.stop.send_replace(true);
        for task in listeners.tasks {
            task.await.expect("a listener task ends cleanly");
        }
        let deadline = Instant::now() + PATIENCE;
        while !lock(&self.0.connections).is_empty() {
            assert!(Instant::now() < deadline, "DDP connections outlived stop");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Brings a stopped upstream back on the same ports with the same catalog and settings.
    pub async fn restart(&self) {
        let ddp = TcpListener::bind(self.0.ddp_addr)
            .await
            .expect("rebind DDP");
        let files = TcpListener::bind(self.0.files_addr)
            .await
            .expect("rebind files");
        self.listen(ddp, files);
    }

    fn state(&self) -> MutexGuard<'_, CatalogState> {
        lock(&self.0.state)
    }

    fn listen(&self, ddp: TcpListener, files: TcpListener) {
        let (stop, stopped) = watch::channel(false);
        let route = DdpRoute {
            server: Server::new(Arc::new(FakeService(self.clone())), DdpConfig::default()),
            fake: self.clone(),
            stopped: stopped.clone(),
        };
        let router = Router::new()
            .route("/websocket", any(websocket))
            .with_state(route);
        let mut signal = stopped.clone();
        let ddp_task = tokio::spawn(async move {
            axum::serve(
                ddp,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = signal.wait_for(|stop| *stop).await;
            })
            .await
            .expect("the DDP listener serves");
        });
        let files_task = tokio::spawn(self.clone().serve_files(files, stopped));
        let previous = lock(&self.0.running).replace(Listeners {
            stop,
            tasks: [ddp_task, files_task],
        });
        assert!(previous.is_none(), "the fake was already running");
    }

    /// Serves one WebSocket as a DDP session until the client leaves, a
    /// [`SyncFault::DropMidPage`] drops it, or the fake stops.
    async fn serve_connection(
        self,
        server: Arc<Server<FakeService>>,
        socket: WebSocket,
        info: ConnectionInfo,
        mut stopped: watch::Receiver<bool>,
    ) {
        let peer = info.remote_addr.expect("axum gives the peer address");
        let connection = Arc::new(watch::Sender::new(Connection::Open));
        lock(&self.0.connections).insert(peer, Arc::clone(&connection));
        let mut dropping = connection.subscribe();
        tokio::select! {
            () = serve_websocket(server, socket, info) => {}
            _ = dropping.wait_for(|c| *c == Connection::Dropping) => {}
            _ = stopped.wait_for(|stop| *stop) => {}
        }
        lock(&self.0.connections).remove(&peer);
        connection.send_replace(Connection::Closed);
    }

    /// Waits until the connection of the calling session is gone, after asking for it to be
    /// dropped when `drop_it`.
    async fn outwait_connection(&self, ctx: &MethodContext, drop_it: bool) {
        let peer = ctx.session.remote_addr.expect("the peer address is known");
        let Some(connection) = lock(&self.0.connections).get(&peer).cloned() else {
            return;
        };
        if drop_it {
            connection.send_if_modified(|c| {
                let open = *c == Connection::Open;
                if open {
                    *c = Connection::Dropping;
                }
                open
            });
        }
        let _ = connection
            .subscribe()
            .wait_for(|c| *c == Connection::Closed)
            .await;
    }

    /// Accepts file requests until the fake stops, then drops every open one.
    async fn serve_files(self, listener: TcpListener, mut stopped: watch::Receiver<bool>) {
        let mut requests = JoinSet::new();
        loop {
            tokio::select! {
                _ = stopped.wait_for(|stop| *stop) => break,
                accepted = listener.accept() => {
                    if let Ok((stream, _)) = accepted {
                        requests.spawn(self.clone().answer_file_request(stream));
                    }
                }
            }
            while requests.try_join_next().is_some() {}
        }
        requests.shutdown().await;
    }

    /// Answers one request (HTTP/1.1, one per connection, any method served as `GET <path>`)
    /// as spec §8.1 says, unless a [`FileFault`] is set for the path.
    async fn answer_file_request(self, stream: TcpStream) {
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read);
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).await.is_err() {
            return;
        }
        let mut range_start = None;
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line).await {
                Ok(0) | Err(_) => break,
                Ok(_) if line.trim().is_empty() => break,
                Ok(_) => {}
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("range")
            {
                range_start = value
                    .trim()
                    .strip_prefix("bytes=")
                    .and_then(|range| range.strip_suffix('-'))
                    .and_then(|start| start.parse::<usize>().ok());
            }
        }
        let target = request_line.split_whitespace().nth(1).unwrap_or("/");
        let path = target.split('?').next().unwrap_or(target);
        let file = {
            let mut state = self.state();
            *state.requests.entry(path.to_owned()).or_default() += 1;
            state
                .files
                .get(path)
                .map(|file| (file.bytes.clone(), file.fault))
        };
        let (bytes, fault) = match file {
            None => return respond_status(&mut write, 404).await,
            Some((_, Some(FileFault::Status(status)))) => {
                return respond_status(&mut write, status).await;
            }
            Some(file) => file,
        };
        let len = bytes.len();
        let (head, body) = match range_start {
            Some(start) if start >= len => {
                let head = format!(
                    "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\n\
                     Content-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = write.write_all(head.as_bytes()).await;
                return;
            }
            Some(start) => (
                format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{len}\r\n",
                    len - 1
                ),
                &bytes[start..],
            ),
            None => ("HTTP/1.1 200 OK\r\n".to_owned(), &bytes[..]),
        };
        let head = format!(
            "{head}Content-Type: application/octet-stream\r\nAccept-Ranges: bytes\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        if write.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let _ = match fault {
            None => write.write_all(body).await,
            Some(FileFault::Truncate) => write.write_all(&body[..body.len() / 2]).await,
            Some(FileFault::WrongBytes) => {
                let wrong: Vec<u8> = body.iter().map(|byte| !byte).collect();
                write.write_all(&wrong).await
            }
            Some(FileFault::Hang) => {
                // Nothing more; the connection ends when the client closes or the fake stops.
                let mut ignored = [0; 64];
                while reader.read(&mut ignored).await.is_ok_and(|read| read > 0) {}
                return;
            }
            Some(FileFault::Slow(rate)) => {
                for chunk in body.chunks(rate.max(1)) {
                    if write.write_all(chunk).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(())
            }
            Some(FileFault::Status(_)) => unreachable!("answered above"),
        };
        let _ = write.shutdown().await;
    }
}

/// A status-only answer with a short text body.
async fn respond_status(write: &mut tokio::net::tcp::OwnedWriteHalf, status: u16) {
    let body = format!("status {status} from the fake upstream\n");
    let head = format!(
        "HTTP/1.1 {status} Fault\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = write.write_all(head.as_bytes()).await;
    let _ = write.shutdown().await;
}

/// A lock that survives a panicking test thread.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The index of a collection in [`COLLECTIONS`].
fn position(collection: &str) -> usize {
    COLLECTIONS
        .iter()
        .position(|name| *name == collection)
        .unwrap_or_else(|| panic!("unknown collection {collection}"))
}

/// `tarballHash` of spec §8.2: standard padded base64 of SHA-256.
fn tarball_hash(bytes: &[u8]) -> String {
    STANDARD.encode(Sha256::digest(bytes))
}

fn now_ms() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    i64::try_from(since_epoch.as_millis()).expect("ms fit in i64")
}

/// A record's `lastUpdated` in ms (`{"$date": ms}`), 0 if it has none.
fn last_updated(record: &Value) -> i64 {
    record["lastUpdated"]["$date"].as_f64().unwrap_or(0.0) as i64
}

/// The same JSON with every `{"$date": ms}` replaced by `ms`: what a plain `JSON.parse`
/// client can read (spec §3.7).
fn lower_dates(value: &Value) -> Value {
    match value {
        Value::Object(map) if map.len() == 1 && map.contains_key("$date") => map["$date"].clone(),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| (key.clone(), lower_dates(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(lower_dates).collect()),
        other => other.clone(),
    }
}

/// `collectionsCompressed`: gzip, then standard base64, of the plain-JSON collections.
fn compress(collections: &Value) -> String {
    use std::io::Write as _;
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(lower_dates(collections).to_string().as_bytes())
        .expect("gzip in memory");
    STANDARD.encode(gzip.finish().expect("gzip in memory"))
}

impl Records {
    fn put(&mut self, record: Value) {
        let id = record["_id"]
            .as_str()
            .expect("every record has a string _id")
            .to_owned();
        let stamp = last_updated(&record);
        if let Some(old) = self.stamps.insert(id.clone(), stamp) {
            self.ordered.remove(&(old, id.clone()));
        }
        self.ordered.insert((stamp, id), record);
    }

    fn remove(&mut self, id: &str) -> bool {
        let Some(stamp) = self.stamps.remove(id) else {
            return false;
        };
        self.ordered.remove(&(stamp, id.to_owned()));
        true
    }
}

impl CatalogState {
    /// Now in ms, strictly after every stamp handed out before.
    fn stamp(&mut self) -> i64 {
        self.last_stamp = now_ms().max(self.last_stamp + 1);
        self.last_stamp
    }

    /// Decides what a `syncNewPackageData(token, options)` call gets, consuming one-shot
    /// faults.
    fn sync(&mut self, token: &Value, options: &Value) -> SyncAction {
        let (mut reset, mut backwards) = (false, false);
        match self.sync_fault.take() {
            None => {}
            Some(SyncFault::DropMidPage(n)) if n > 1 => {
                self.sync_fault = Some(SyncFault::DropMidPage(n - 1));
            }
            Some(SyncFault::DropMidPage(_)) => return SyncAction::Drop,
            Some(SyncFault::Hang) => {
                self.sync_fault = Some(SyncFault::Hang);
                return SyncAction::Hang;
            }
            Some(SyncFault::SyncError(code)) => {
                self.sync_fault = Some(SyncFault::SyncError(code));
                return SyncAction::Error(code);
            }
            Some(SyncFault::ResetDataNext) => reset = true,
            Some(SyncFault::TokenBackwards) => backwards = true,
        }
        // The default token `{"format":"1.1"}` comes from an empty client: never a reset.
        let first = COLLECTIONS.iter().all(|name| token.get(name).is_none())
            && token.get("lastDeletion").is_none();
        let seen_deletion = token["lastDeletion"].as_i64().unwrap_or(0);
        reset |= !first && seen_deletion < self.last_deletion;

        let mut collections = Map::new();
        let mut next = Map::new();
        if let Some(format) = token.get("format") {
            next.insert("format".to_owned(), format.clone());
        }
        let mut up_to_date = true;
        for (name, records) in COLLECTIONS.iter().zip(&self.records) {
            let sent_ms = token[*name].as_f64().unwrap_or(0.0) as i64;
            let sent_id = token[format!("{name}Id")].as_str().map(str::to_owned);
            let (ms, id) = if reset { (0, None) } else { (sent_ms, sent_id) };
            // Without a tie-breaker, records of that very millisecond are sent again (spec §3.5).
            let lower = match &id {
                Some(id) => Bound::Excluded((ms, id.clone())),
                None => Bound::Included((ms, String::new())),
            };
            let mut after = records.ordered.range((lower, Bound::Unbounded));
            let page: Vec<_> = after.by_ref().take(self.page_size).collect();
            up_to_date &= after.next().is_none();
            let (ms, id) = page
                .last()
                .map_or((ms, id), |((ms, id), _)| (*ms, Some(id.clone())));
            if backwards {
                next.insert((*name).to_owned(), (sent_ms - HOUR_MS).into());
            } else {
                next.insert((*name).to_owned(), ms.into());
                if let Some(id) = id {
                    next.insert(format!("{name}Id"), id.into());
                }
            }
            let page = page.into_iter().map(|(_, record)| record.clone()).collect();
            collections.insert((*name).to_owned(), Value::Array(page));
        }
        next.insert("lastDeletion".to_owned(), self.last_deletion.into());

        // `collections` first, as Meteor's server builds the object: no leading token.
        let collections = Value::Object(collections);
        let mut result = Map::new();
        if options["compressCollections"] == true {
            result.insert(
                "collectionsCompressed".to_owned(),
                compress(&collections).into(),
            );
        } else {
            result.insert("collections".to_owned(), collections);
        }
        result.insert("syncToken".to_owned(), Value::Object(next));
        result.insert("upToDate".to_owned(), up_to_date.into());
        result.insert("resetData".to_owned(), reset.into());
        SyncAction::Answer(Value::Object(result).to_string())
    }
}

/// What the `/websocket` route needs.
#[derive(Clone)]
struct DdpRoute {
    server: Arc<Server<FakeService>>,
    fake: FakeUpstream,
    stopped: watch::Receiver<bool>,
}

/// Upgrades to a raw-WebSocket DDP session (spec §1.1), tracked by the fake.
async fn websocket(
    State(route): State<DdpRoute>,
    ConnectInfo(remote_addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let info = ConnectionInfo::from_request(Some(remote_addr), &headers);
    let DdpRoute {
        server,
        fake,
        stopped,
    } = route;
    upgrade.on_upgrade(move |socket| fake.serve_connection(server, socket, info, stopped))
}

/// The fake's DDP methods and publications.
struct FakeService(FakeUpstream);

impl Service for FakeService {
    async fn call(
        &self,
        ctx: &MethodContext,
        method: &str,
        params: Vec<Ejson>,
    ) -> Result<Reply, DdpError> {
        if method != "syncNewPackageData" {
            return Err(DdpError::method_not_found(method));
        }
        let mut params = params.into_iter();
        let token = params.next().map_or_else(|| json!({}), |t| t.to_json());
        let options = params.next().map_or(Value::Null, |o| o.to_json());
        let action = self.0.state().sync(&token, &options);
        match action {
            SyncAction::Answer(text) => Ok(Reply::Raw(text.into())),
            SyncAction::Error(code) => Err(DdpError::new(
                code,
                "syncNewPackageData failed (fault injected by the fake upstream)",
            )),
            SyncAction::Drop | SyncAction::Hang => {
                self.0
                    .outwait_connection(ctx, matches!(action, SyncAction::Drop))
                    .await;
                // Never delivered: the connection is gone.
                Err(DdpError::internal())
            }
        }
    }

    fn subscribe(
        &self,
        _ctx: &SessionContext,
        name: &str,
        _params: Vec<Ejson>,
        sub: Subscription,
    ) -> Result<(), DdpError> {
        match name {
            "changes" => {
                tokio::spawn(publish_changes(sub, self.0.0.changes.subscribe()));
            }
            "meteor.loginServiceConfiguration" => {
                let fields =
                    ejson(json!({"service": "meteor-developer", "clientId": "fakeUpstreamClient"}));
                tokio::spawn(async move {
                    if sub
                        .added(LOGIN_CONFIG_COLLECTION, "meteor-developer", fields)
                        .await
                        .is_ok()
                    {
                        let _ = sub.ready().await;
                    }
                });
            }
            _ => return Err(DdpError::sub_not_found(name)),
        }
        Ok(())
    }
}

/// The `changes` publication (spec §4.3): one document per collection, `changed` whenever
/// its counter moves.
async fn publish_changes(sub: Subscription, mut counters: watch::Receiver<[u64; 5]>) {
    let mut sent = *counters.borrow_and_update();
    for (name, count) in COLLECTIONS.iter().zip(sent) {
        let fields = ejson(json!({"collection": name, "changes": count}));
        if sub.added("changes", name, fields).await.is_err() {
            return;
        }
    }
    if sub.ready().await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            () = sub.stopped() => return,
            moved = counters.changed() => {
                if moved.is_err() {
                    return;
                }
                let now = *counters.borrow_and_update();
                for ((name, old), new) in COLLECTIONS.iter().zip(sent).zip(now) {
                    if old != new {
                        let fields = ejson(json!({"changes": new}));
                        if sub.changed("changes", name, fields, Vec::new()).await.is_err() {
                            return;
                        }
                    }
                }
                sent = now;
            }
        }
    }
}

/// Plain JSON built here (no `$` keys) as EJSON.
fn ejson(value: Value) -> Ejson {
    Ejson::from_json(value).expect("plain JSON is EJSON")
}

// ---------------------------------------------------------------------------------------
// The fake's own tests.

/// `syncNewPackageData(token, {})` sent without waiting, for calls that get no answer.
async fn send_sync(ddp: &mut Ddp, token: &Value) {
    ddp.send(json!({"msg": "method", "id": "unanswered", "method": "syncNewPackageData", "params": [token, {}]}))
        .await;
}

/// One sync call's `result`, which must not be an error.
async fn sync_page(ddp: &mut Ddp, token: &Value) -> Value {
    let message = ddp.call("syncNewPackageData", json!([token, {}])).await;
    assert!(message.get("error").is_none(), "{message}");
    message["result"].clone()
}

/// A raw HTTP response: what a download sees, including a body cut short.
struct Fetched {
    status: u16,
    /// Header names in lower case.
    headers: HashMap<String, String>,
    body: Vec<u8>,
    /// Whether the server closed the connection (rather than `patience` running out).
    closed: bool,
}

/// `GET url` (with `Range: bytes=<start>-`), reading until the server closes or `patience`
/// runs out.
async fn fetch(url: &str, range_start: Option<usize>, patience: Duration) -> Fetched {
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (host, path) = rest.split_at(rest.find('/').expect("a path"));
    let mut stream = TcpStream::connect(host).await.expect("the file listener");
    let range = range_start.map_or_else(String::new, |start| format!("Range: bytes={start}-\r\n"));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{range}\r\n");
    stream.write_all(request.as_bytes()).await.expect("request");
    let deadline = tokio::time::Instant::now() + patience;
    let (mut received, mut closed) = (Vec::new(), false);
    loop {
        let mut chunk = [0; 8192];
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => break,
            Ok(Ok(0) | Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(read)) => received.extend_from_slice(&chunk[..read]),
        }
    }
    let end = received
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a whole response head");
    let head = String::from_utf8(received[..end].to_vec()).expect("ASCII head");
    let mut lines = head.lines();
    let status = lines.next().expect("status line").split(' ').nth(1);
    let status = status.and_then(|s| s.parse().ok()).expect("a status code");
    let headers = lines
        .filter_map(|line| line.split_once(": "))
        .map(|(name, value)| (name.to_ascii_lowercase(), value.to_owned()))
        .collect();
    Fetched {
        status,
        headers,
        body: received[end + 4..].to_vec(),
        closed,
    }
}

/// Records per collection, as `exosphere_index::Index::counts` lists them.
fn counts(catalog: &Catalog) -> Vec<(String, u64)> {
    COLLECTIONS
        .iter()
        .map(|name| {
            let held = catalog.get(*name).map_or(0, BTreeMap::len);
            ((*name).to_owned(), held as u64)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_syncs_the_whole_fixture_plain_and_compressed() {
    let upstream = FakeUpstream::from_fixture().await;
    let expected = counts(&fixture_catalog());
    let total: u64 = expected.iter().map(|(_, n)| n).sum();
    let dir = tempfile::tempdir().expect("temporary directory");
    for extra in [None, Some("--compress")] {
        let index = dir
            .path()
            .join(format!("{}.sqlite3", extra.unwrap_or("plain")));
        let mut command = exosphere();
        command
            .args(["sync", "--server", &upstream.url(), "--index"])
            .arg(&index)
            .args(extra);
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .expect("the CLI thread")
            .expect("exosphere sync runs");
        assert_success(&output);
        let summary = String::from_utf8_lossy(&output.stdout);
        assert!(
            summary.starts_with(&format!("Synced {total} records")),
            "{summary}"
        );
        let index = exosphere_index::Index::open(&index).expect("the synced index");
        let mut held = index.counts().expect("counts");
        held.sort_by_key(|(name, _)| position(name));
        assert_eq!(held, expected, "{extra:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_pages_the_fixture_exactly_and_follows_upserts_and_deletes() {
    let upstream = FakeUpstream::from_fixture().await;
    upstream.set_page_size(250);
    let fixture = fixture_catalog();
    let mut ddp = upstream.ddp().await;
    let (login, _) = ddp
        .subscribe("login", "meteor.loginServiceConfiguration")
        .await;
    assert_eq!(login.len(), 1, "{login:?}");
    assert_eq!(login[0]["collection"], LOGIN_CONFIG_COLLECTION);
    assert_eq!(login[0]["fields"]["service"], "meteor-developer");
    assert!(
        login[0]["fields"]["clientId"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    let (changes, _) = ddp.subscribe("changes", "changes").await;
    let counters: Vec<(String, u64)> = changes
        .iter()
        .map(|added| {
            assert_eq!(added["id"], added["fields"]["collection"]);
            let name = added["id"].as_str().expect("a collection").to_owned();
            (
                name,
                added["fields"]["changes"].as_u64().expect("a counter"),
            )
        })
        .collect();
    assert_eq!(counters, counts(&fixture));

    let full = sync_loop(&mut ddp, json!({"format": "1.1"}), json!({})).await;
    assert_eq!(full.catalog, fixture);
    // 4,039 versions and builds at 250 a page.
    assert_eq!(full.pages.len(), 17);
    assert!(full.pages.iter().all(|page| page["resetData"] == false));
    let versions = &full.pages[16]["collections"]["versions"];
    assert_eq!(versions.as_array().map(Vec::len), Some(4039 - 16 * 250));
    assert_eq!(full.token["format"], "1.1");
    assert_eq!(full.token["lastDeletion"], 0);
    for name in COLLECTIONS {
        assert!(full.token[name].is_i64(), "{}", full.token);
        assert!(
            full.token[format!("{name}Id")].is_string(),
            "{}",
            full.token
        );
    }

    // Nothing new: one empty page, the same token.
    let idle = sync_loop(&mut ddp, full.token.clone(), json!({})).await;
    assert_eq!((idle.pages.len(), idle.catalog.len()), (1, 0));
    assert_eq!(idle.token, full.token);

    // An upsert comes with the next sync, and moves its counter live.
    let mut package = fixture["packages"]
        .values()
        .next()
        .expect("a package")
        .clone();
    package["homepage"] = "https://example.invalid/moved".into();
    let id = package["_id"].as_str().expect("_id").to_owned();
    upstream.upsert("packages", package);
    let moved = ddp
        .wait_for(|m| m["msg"] == "changed" && m["id"] == "packages")
        .await;
    assert_eq!(moved["fields"]["changes"], 211);
    let next = sync_loop(&mut ddp, full.token.clone(), json!({})).await;
    assert_eq!(next.pages.len(), 1);
    assert_eq!(next.catalog.keys().collect::<Vec<_>>(), ["packages"]);
    let delivered = &next.catalog["packages"][&id];
    assert_eq!(delivered["homepage"], "https://example.invalid/moved");
    assert!(last_updated(delivered) > last_updated(&fixture["packages"][&id]));
    assert_eq!(delivered, &upstream.catalog()["packages"][&id]);

    // A delete: the old token starts over with `resetData`, on the first page only.
    let gone = fixture["versions"]
        .keys()
        .next()
        .expect("a version")
        .clone();
    upstream.delete("versions", &gone);
    let moved = ddp
        .wait_for(|m| m["msg"] == "changed" && m["id"] == "versions")
        .await;
    assert_eq!(moved["fields"]["changes"], 4040);
    let after = sync_loop(&mut ddp, next.token.clone(), json!({})).await;
    let resets: Vec<bool> = after.pages.iter().map(|p| p["resetData"] == true).collect();
    assert_eq!(resets.iter().filter(|r| **r).count(), 1);
    assert!(resets[0], "{resets:?}");
    assert_eq!(after.catalog, upstream.catalog());
    assert!(!after.catalog["versions"].contains_key(&gone));
    assert!(after.token["lastDeletion"].as_i64() > Some(0));
    // The default token never gets `resetData`.
    let fresh = sync_loop(&mut ddp, json!({"format": "1.1"}), json!({})).await;
    assert!(fresh.pages.iter().all(|page| page["resetData"] == false));
    assert_eq!(fresh.catalog, after.catalog);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_pages_are_plain_json_with_dates_as_ms() {
    let upstream = FakeUpstream::from_fixture().await;
    upstream.set_page_size(1000);
    let fixture = fixture_catalog();
    let mut ddp = upstream.ddp().await;
    let options = json!({"compressCollections": true});
    let synced = sync_loop(&mut ddp, json!({"format": "1.1"}), options).await;
    for page in &synced.pages {
        assert!(page.get("collections").is_none());
        let packed = page["collectionsCompressed"].as_str().expect("base64");
        assert!(!decompress(packed).to_string().contains("$date"));
    }
    assert_eq!(counts(&synced.catalog), counts(&fixture));
    for (name, records) in &fixture {
        for (id, record) in records {
            let plain = &synced.catalog[name][id];
            assert_eq!(plain["lastUpdated"], record["lastUpdated"]["$date"]);
            assert_eq!(plain["_id"], record["_id"]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_faults_behave_as_described() {
    let upstream = FakeUpstream::from_fixture().await;
    let first = json!({"format": "1.1"});

    // DropMidPage(2): the first call is answered, the second closes the connection, once.
    upstream.set_sync_fault(Some(SyncFault::DropMidPage(2)));
    let mut dropped = upstream.ddp().await;
    let page = sync_page(&mut dropped, &first).await;
    assert_eq!(page["upToDate"], false);
    send_sync(&mut dropped, &page["syncToken"]).await;
    assert_eq!(dropped.recv_or_close().await, None);
    let mut ddp = upstream.ddp().await;
    let done = sync_loop(&mut ddp, first.clone(), json!({})).await;
    assert_eq!(done.catalog, fixture_catalog());

    // Hang: no answer while it is set; another connection is served once it is cleared.
    upstream.set_sync_fault(Some(SyncFault::Hang));
    let mut hung = upstream.ddp().await;
    send_sync(&mut hung, &first).await;
    let waited = tokio::time::timeout(Duration::from_millis(500), hung.recv()).await;
    assert!(waited.is_err(), "a hung call was answered: {waited:?}");
    upstream.set_sync_fault(None);
    assert_eq!(sync_page(&mut ddp, &done.token).await["upToDate"], true);
    drop(hung);

    // ResetDataNext: an up-to-date token gets `resetData` and the first page of everything.
    upstream.set_sync_fault(Some(SyncFault::ResetDataNext));
    let reset = sync_page(&mut ddp, &done.token).await;
    assert_eq!(reset["resetData"], true);
    assert_eq!(reset["upToDate"], false);
    assert_eq!(reset["collections"], done.pages[0]["collections"]);
    assert_eq!(reset["syncToken"], done.pages[0]["syncToken"]);
    let after = sync_page(&mut ddp, &reset["syncToken"]).await;
    assert_eq!(after["resetData"], false);
    assert_eq!(after["collections"], done.pages[1]["collections"]);

    // TokenBackwards: the next token is older than the one sent, then all is normal again.
    upstream.set_sync_fault(Some(SyncFault::TokenBackwards));
    let backwards = sync_page(&mut ddp, &done.token).await;
    for name in COLLECTIONS {
        let (sent, got) = (&done.token[name], &backwards["syncToken"][name]);
        assert!(got.as_i64() < sent.as_i64(), "{name}: {sent} → {got}");
    }
    let normal = sync_page(&mut ddp, &done.token).await;
    assert_eq!(normal["syncToken"], done.token);

    // SyncError: every call fails with that code until cleared.
    upstream.set_sync_fault(Some(SyncFault::SyncError(503)));
    for _ in 0..2 {
        let failed = ddp
            .call("syncNewPackageData", json!([done.token, {}]))
            .await;
        assert_eq!(failed["error"]["error"], 503, "{failed}");
    }
    upstream.set_sync_fault(None);
    assert_eq!(sync_page(&mut ddp, &done.token).await["upToDate"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_files_are_served_with_exact_lengths_ranges_and_hashes() {
    let upstream = FakeUpstream::from_fixture().await;
    upstream.serve_catalog_files();
    assert_ne!(upstream.files_url(), upstream.url());
    let catalog = upstream.catalog();
    for (collection, field) in [("builds", "build"), ("versions", "source")] {
        for record in catalog[collection].values() {
            let url = record[field]["url"].as_str().expect("a URL");
            assert!(url.starts_with(&upstream.files_url()), "{url}");
        }
    }
    // The synced records point at the files too.
    let mut ddp = upstream.ddp().await;
    let synced = sync_loop(&mut ddp, json!({"format": "1.1"}), json!({})).await;
    assert_eq!(synced.catalog, catalog);

    let build = catalog["builds"].values().next().expect("a build");
    let url = build["build"]["url"].as_str().expect("a URL");
    let path = &url[upstream.files_url().len()..];
    let whole = fetch(url, None, PATIENCE).await;
    assert_eq!(whole.status, 200);
    assert_eq!(
        whole.headers["content-length"],
        whole.body.len().to_string()
    );
    assert_eq!(tarball_hash(&whole.body), build["build"]["tarballHash"]);
    let len = whole.body.len();
    let part = fetch(url, Some(100), PATIENCE).await;
    assert_eq!(part.status, 206);
    assert_eq!(part.body, whole.body[100..]);
    assert_eq!(part.headers["content-length"], (len - 100).to_string());
    assert_eq!(
        part.headers["content-range"],
        format!("bytes 100-{}/{len}", len - 1)
    );
    assert_eq!(fetch(url, Some(len), PATIENCE).await.status, 416);
    assert_eq!(upstream.requests(path), 3);

    let version = catalog["versions"].values().next().expect("a version");
    let source = fetch(
        version["source"]["url"].as_str().expect("a URL"),
        None,
        PATIENCE,
    )
    .await;
    assert_eq!(tarball_hash(&source.body), version["source"]["tarballHash"]);
    let missing = format!("{}/build/none.tgz", upstream.files_url());
    assert_eq!(fetch(&missing, None, PATIENCE).await.status, 404);
    assert_eq!(upstream.requests("/build/none.tgz"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_faults_behave_as_described() {
    let upstream = FakeUpstream::start(Catalog::new()).await;
    let bytes: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    let url = upstream.put_file("/blob.tgz", bytes.clone());

    upstream.set_file_fault("/blob.tgz", Some(FileFault::Truncate));
    let truncated = fetch(&url, None, PATIENCE).await;
    assert_eq!((truncated.status, truncated.closed), (200, true));
    assert_eq!(truncated.headers["content-length"], "1000");
    assert_eq!(truncated.body, bytes[..500]);

    upstream.set_file_fault("/blob.tgz", Some(FileFault::WrongBytes));
    let wrong = fetch(&url, None, PATIENCE).await;
    assert_eq!((wrong.status, wrong.body.len()), (200, 1000));
    assert_ne!(tarball_hash(&wrong.body), tarball_hash(&bytes));

    for status in [404, 500] {
        upstream.set_file_fault("/blob.tgz", Some(FileFault::Status(status)));
        assert_eq!(fetch(&url, None, PATIENCE).await.status, status);
    }

    upstream.set_file_fault("/blob.tgz", Some(FileFault::Hang));
    let hung = fetch(&url, None, Duration::from_millis(300)).await;
    assert_eq!((hung.status, hung.closed), (200, false));
    assert_eq!(hung.headers["content-length"], "1000");
    assert!(hung.body.is_empty());

    upstream.set_file_fault("/blob.tgz", Some(FileFault::Slow(250)));
    let started = Instant::now();
    let slow = fetch(&url, Some(250), PATIENCE).await;
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    assert_eq!((slow.status, slow.closed), (206, true));
    assert_eq!(slow.body, bytes[250..]);

    upstream.set_file_fault("/blob.tgz", None);
    let healed = fetch(&url, None, PATIENCE).await;
    assert_eq!((healed.status, healed.body), (200, bytes));
    assert_eq!(upstream.requests("/blob.tgz"), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_drops_everything_and_restart_serves_the_same_catalog_on_the_same_ports() {
    let upstream = FakeUpstream::from_fixture().await;
    upstream.serve_catalog_files();
    let url = upstream.put_file("/blob.tgz", vec![7; 1000]);
    upstream.set_file_fault("/blob.tgz", Some(FileFault::Hang));
    let files_addr = upstream.files_url()["http://".len()..].to_owned();
    let mut download = TcpStream::connect(&files_addr)
        .await
        .expect("the file listener");
    download
        .write_all(b"GET /blob.tgz HTTP/1.1\r\n\r\n")
        .await
        .expect("request");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(download.read_u8().await.expect("the response head"));
    }
    upstream.set_sync_fault(Some(SyncFault::Hang));
    let mut hung = upstream.ddp().await;
    send_sync(&mut hung, &json!({"format": "1.1"})).await;
    let mut idle = upstream.ddp().await;

    upstream.stop().await;
    assert_eq!(hung.recv_or_close().await, None);
    assert_eq!(idle.recv_or_close().await, None);
    let rest = download.read(&mut [0; 16]).await;
    assert!(!matches!(rest, Ok(read) if read > 0), "{rest:?}");
    assert!(
        tokio_tungstenite::connect_async(upstream.ws_url())
            .await
            .is_err()
    );
    assert!(TcpStream::connect(&files_addr).await.is_err());

    upstream.restart().await;
    upstream.set_sync_fault(None);
    upstream.set_file_fault("/blob.tgz", None);
    let mut ddp = upstream.ddp().await;
    let synced = sync_loop(&mut ddp, json!({"format": "1.1"}), json!({})).await;
    assert_eq!(synced.catalog, upstream.catalog());
    assert_eq!(fetch(&url, None, PATIENCE).await.body, vec![7; 1000]);
}
