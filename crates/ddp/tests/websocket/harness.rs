//! A real axum server with a small test [`Service`], and a tokio-tungstenite DDP client.
//!
//! Timeouts here only keep a broken test from hanging; no test asserts on speed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use axum::routing::any;
use exosphere_ddp::ejson::{Ejson, EjsonMap};
use exosphere_ddp::{
    ConnectionInfo, DdpConfig, DdpError, MethodContext, Reply, Server, Service, SessionClosed,
    SessionContext, Subscription, upgrade,
};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, broadcast};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::Instrument as _;

/// How long to wait for something that should happen before failing the test.
const PATIENCE: Duration = Duration::from_secs(10);

/// The documents of the `docs` publication.
pub const DOC_IDS: [&str; 3] = ["d1", "d2", "d3"];

/// The `User-Agent` the test client sends, like the `meteor` tool's.
pub const USER_AGENT: &str = "Meteor/METEOR@3.0.4 OS/linux (Linux; 6.5.0; x64;)";

/// Counters publications update from their own tasks.
#[derive(Debug, Default)]
pub struct Stats {
    /// `subscribe` calls for `docs`.
    pub docs_started: AtomicUsize,
    /// `docs` publications that saw `stopped()` resolve.
    pub docs_stopped: AtomicUsize,
}

/// Methods and publications covering every path of the DDP layer.
#[derive(Debug)]
pub struct TestService {
    /// Released by the test to let a `gate` method finish.
    pub gate: Semaphore,
    pub stats: Arc<Stats>,
    /// `bump` tells live `docs` publications to change `d1`.
    bumps: broadcast::Sender<i64>,
}

impl Service for TestService {
    async fn call(
        &self,
        ctx: &MethodContext,
        method: &str,
        params: Vec<Ejson>,
    ) -> Result<Reply, DdpError> {
        let first_int = params.first().and_then(Ejson::as_i64).unwrap_or(0);
        match method {
            "echo" => Ok(Reply::Value(Ejson::Array(params))),
            "nothing" => Ok(Reply::None),
            "null" => Ok(Reply::Value(Ejson::Null)),
            "raw" => Ok(Reply::Raw(r#"{"n": 1, "at": {"$date": 5}}"#.into())),
            "sleep" => {
                tokio::time::sleep(Duration::from_millis(first_int.unsigned_abs())).await;
                Ok(Reply::Value(Ejson::from(first_int)))
            }
            "gate" => {
                let permit = self
                    .gate
                    .acquire()
                    .await
                    .map_err(|_| DdpError::internal())?;
                permit.forget();
                Ok(Reply::Value(Ejson::from("opened")))
            }
            "fail" => Err(DdpError::new(401, "Not authorized")),
            "panic" => panic!("the test service panics on purpose"),
            "bump" => {
                // No receiver just means no live publication.
                let _ = self.bumps.send(first_int);
                Ok(Reply::None)
            }
            "whoami" => Ok(Reply::Value(whoami(ctx))),
            _ => Err(DdpError::method_not_found(method)),
        }
    }

    fn subscribe(
        &self,
        _ctx: &SessionContext,
        name: &str,
        params: Vec<Ejson>,
        sub: Subscription,
    ) -> Result<(), DdpError> {
        match name {
            "docs" => {
                self.stats.docs_started.fetch_add(1, Ordering::SeqCst);
                let task = publish_docs(sub, self.bumps.subscribe(), Arc::clone(&self.stats));
                tokio::spawn(task.in_current_span());
                Ok(())
            }
            "shared" => {
                let label = params
                    .first()
                    .and_then(Ejson::as_str)
                    .unwrap_or("?")
                    .to_owned();
                tokio::spawn(publish_shared(sub, label).in_current_span());
                Ok(())
            }
            "flood" => {
                // The size of each document's one field; 0 for documents without fields.
                let size = params
                    .first()
                    .and_then(Ejson::as_i64)
                    .and_then(|size| usize::try_from(size).ok())
                    .unwrap_or(64 * 1024);
                tokio::spawn(publish_flood(sub, size).in_current_span());
                Ok(())
            }
            // Accepted, then silent: never `ready`, no documents.
            "idle" => Ok(()),
            "refuse" => Err(DdpError::new("not-allowed", "Refused on purpose")),
            "explode" => panic!("the test publication panics on purpose"),
            _ => Err(DdpError::sub_not_found(name)),
        }
    }
}

/// Facts about the caller; also logs the user in, to show the slot persists per session.
fn whoami(ctx: &MethodContext) -> Ejson {
    let session = &ctx.session;
    let before = session.user_id();
    session.set_user_id(Some("u1".to_owned()));
    [
        ("session", Ejson::from(session.session_id.as_str())),
        ("method_id", Ejson::from(ctx.method_id.as_str())),
        (
            "user_agent",
            session
                .user_agent
                .as_deref()
                .map_or(Ejson::Null, Ejson::from),
        ),
        ("has_addr", Ejson::from(session.remote_addr.is_some())),
        ("user_before", before.map_or(Ejson::Null, Ejson::from)),
    ]
    .into_iter()
    .collect()
}

/// Adds three documents, announces `ready`, then changes `d1` on every `bump` until stopped.
async fn publish_docs(sub: Subscription, mut bumps: broadcast::Receiver<i64>, stats: Arc<Stats>) {
    let live = async {
        for (n, id) in (0_i64..).zip(DOC_IDS) {
            sub.added("docs", id, [("n", Ejson::from(n))].into_iter().collect())
                .await?;
        }
        sub.ready().await?;
        while let Ok(value) = bumps.recv().await {
            let fields = [("n", Ejson::from(value))].into_iter().collect();
            sub.changed("docs", "d1", fields, vec![]).await?;
        }
        Ok::<(), SessionClosed>(())
    };
    tokio::select! {
        _ = live => sub.stopped().await,
        () = sub.stopped() => {}
    }
    stats.docs_stopped.fetch_add(1, Ordering::SeqCst);
}

/// Publishes documents for as long as the client takes them: each with one field `blob`
/// of `size` bytes, or with no field at all when `size` is 0.
async fn publish_flood(sub: Subscription, size: usize) {
    let blob = Ejson::from("x".repeat(size));
    for n in 0_u64.. {
        let fields: Ejson = if size == 0 {
            Ejson::Object(EjsonMap::new())
        } else {
            [("blob", blob.clone())].into_iter().collect()
        };
        if sub.added("flood", &n.to_string(), fields).await.is_err() {
            return;
        }
    }
}

/// Publishes the one document `things/shared` with a field named after `label`.
async fn publish_shared(sub: Subscription, label: String) {
    let fields = [
        ("common", Ejson::from(label.as_str())),
        (label.as_str(), Ejson::from(true)),
    ]
    .into_iter()
    .collect();
    if sub.added("things", "shared", fields).await.is_ok() && sub.ready().await.is_ok() {
        sub.stopped().await;
    }
}

/// A running test server.
pub struct TestServer {
    pub addr: SocketAddr,
    pub server: Arc<Server<TestService>>,
}

impl TestServer {
    /// Serves `/websocket` on 127.0.0.1 with an OS-chosen port. Server logs are shown with
    /// `RUST_LOG=exosphere_ddp=debug cargo test -- --nocapture`.
    pub async fn start(config: DdpConfig) -> Self {
        // Several tests initialise it; the first one wins.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let service = Arc::new(TestService {
            gate: Semaphore::new(0),
            stats: Arc::default(),
            bumps: broadcast::channel(16).0,
        });
        let server = Server::new(service, config);
        let app = Router::new()
            .route("/websocket", any(websocket))
            .with_state(Arc::clone(&server));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("listener address");
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
        });
        Self { addr, server }
    }

    /// Opens a WebSocket without speaking DDP yet.
    pub async fn open(&self) -> Client {
        let mut request = format!("ws://{}/websocket", self.addr)
            .into_client_request()
            .expect("valid URL");
        request
            .headers_mut()
            .insert("user-agent", HeaderValue::from_static(USER_AGENT));
        let (ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("WebSocket upgrade");
        Client { ws }
    }

    /// Tries to open a WebSocket; a refused upgrade gives its HTTP status.
    pub async fn try_open(&self) -> Result<Client, u16> {
        match tokio_tungstenite::connect_async(format!("ws://{}/websocket", self.addr)).await {
            Ok((ws, _)) => Ok(Client { ws }),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                Err(response.status().as_u16())
            }
            Err(error) => panic!("unexpected WebSocket failure: {error}"),
        }
    }

    /// Opens a WebSocket and establishes a DDP session the way the `meteor` tool does.
    pub async fn connect(&self) -> (Client, String) {
        let mut client = self.open().await;
        client
            .send(json!({"msg": "connect", "version": "1", "support": ["1", "pre2", "pre1"]}))
            .await;
        let connected = client.recv().await;
        assert_eq!(connected["msg"], "connected", "{connected}");
        let session = connected["session"]
            .as_str()
            .expect("session id")
            .to_owned();
        (client, session)
    }

    /// Waits until `condition` holds, polling.
    pub async fn eventually(&self, what: &str, condition: impl Fn(&Server<TestService>) -> bool) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !condition(&self.server) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "never happened: {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn websocket(
    State(server): State<Arc<Server<TestService>>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (parts, _) = request.into_parts();
    let info = ConnectionInfo::from_request(Some(addr), &parts.headers);
    upgrade(server, parts, info).await
}

/// How a connection ended, from the client's side.
#[derive(Debug, PartialEq)]
pub enum Closed {
    /// A close frame with this code.
    Code(u16),
    /// The connection ended without a close frame.
    Dropped,
}

/// The test's DDP client.
#[derive(Debug)]
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    pub async fn send(&mut self, message: Value) {
        self.send_text(&message.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("send frame");
    }

    pub async fn send_binary(&mut self, bytes: &[u8]) {
        self.ws
            .send(Message::binary(bytes.to_vec()))
            .await
            .expect("send binary frame");
    }

    /// The next DDP message, or how the connection ended.
    pub async fn next(&mut self) -> Result<Value, Closed> {
        loop {
            let next = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("a frame or the end of the connection in time");
            match next {
                Some(Ok(Message::Text(text))) => {
                    return Ok(serde_json::from_str(&text).expect("frames are JSON"));
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(frame.map_or(Closed::Dropped, |f| Closed::Code(f.code.into())));
                }
                None | Some(Err(_)) => return Err(Closed::Dropped),
                Some(Ok(_)) => {}
            }
        }
    }

    /// The next DDP message, which must come.
    pub async fn recv(&mut self) -> Value {
        match self.next().await {
            Ok(message) => message,
            Err(closed) => panic!("expected a DDP message, the connection ended: {closed:?}"),
        }
    }

    /// The next `n` DDP messages.
    pub async fn recv_n(&mut self, n: usize) -> Vec<Value> {
        let mut messages = Vec::with_capacity(n);
        for _ in 0..n {
            messages.push(self.recv().await);
        }
        messages
    }

    /// Waits for the server to end the connection, with no DDP message before.
    pub async fn closed(&mut self) -> Closed {
        match self.next().await {
            Ok(message) => panic!("unexpected message before the end: {message}"),
            Err(closed) => closed,
        }
    }

    /// Calls a method and returns its `result` message, checking `updated` came too.
    pub async fn call(&mut self, id: &str, method: &str, params: Value) -> Value {
        self.send(json!({"msg": "method", "id": id, "method": method, "params": params}))
            .await;
        self.answer(id).await
    }

    /// Reads the `updated` + `result` pair of method `id` (in either order).
    pub async fn answer(&mut self, id: &str) -> Value {
        let pair = self.recv_n(2).await;
        let updated = json!({"msg": "updated", "methods": [id]});
        let result = pair.iter().find(|m| m["msg"] == "result").cloned();
        assert!(pair.contains(&updated), "no `updated` for {id}: {pair:?}");
        let result = result.unwrap_or_else(|| panic!("no `result` for {id}: {pair:?}"));
        assert_eq!(result["id"], id);
        result
    }
}
