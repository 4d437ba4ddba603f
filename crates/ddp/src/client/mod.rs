//! A DDP client (spec §1), over `ws://` and `wss://`, speaking with the same message and
//! EJSON code as the server.
//!
//! [`Client::connect`] opens the socket ([`socket`]: TCP, rustls, WebSocket upgrade),
//! negotiates the version (re-dialling once per version the server suggests with `failed`)
//! and starts the [`connection`] tasks. Then, from any number of tasks at once:
//!
//! * [`Client::call`] runs a method; [`Client::start_call`] sends it and returns a
//!   [`PendingCall`], so a caller can pipeline several calls;
//! * a [`MethodResult`] keeps the `result` frame as received and lets the caller decode the
//!   result once, borrowing from the frame (sync pages are megabytes of records);
//! * [`Client::subscribe`] waits for `ready`; documents land in a local store read with
//!   [`Client::documents`], and [`Client::watch`] says when anything moved.
//!
//! Pings are answered at once; every wait has a timeout; every failure is a [`ClientError`]
//! a user can act on.

mod config;
mod connection;
mod error;
mod socket;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use exosphere_ejson::{Ejson, EjsonMap};
use futures_util::StreamExt as _;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

pub use config::ClientConfig;
pub use error::ClientError;
pub use socket::{Endpoint, certificates_from_pem};

use crate::error::DdpError;
use crate::message::{ClientFrame, ServerFrame};
use crate::version::DdpVersion;
use connection::{Ended, Shared, SubState};
use socket::Socket;

/// Frames waiting for the writer; the reader's pongs queue here too.
const OUTBOUND_QUEUE: usize = 64;

/// A connected DDP session. Methods take `&self`: share it (e.g. in an `Arc`) to call and
/// watch from several tasks. Dropping it drops the connection.
#[derive(Debug)]
pub struct Client {
    endpoint: Endpoint,
    session: String,
    version: DdpVersion,
    config: ClientConfig,
    shared: Arc<Shared>,
    out: mpsc::Sender<Message>,
    next_id: AtomicU64,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Client {
    /// Connects to `server` (a package server URL such as `https://packages.meteor.com`,
    /// or a `ws://`/`wss://` endpoint; see [`Endpoint::from_server_url`]) and completes the
    /// DDP handshake.
    pub async fn connect(server: &str, config: ClientConfig) -> Result<Client, ClientError> {
        let endpoint = Endpoint::from_server_url(server)?;
        let limit = config.connect_timeout;
        let (socket, session, version) = tokio::time::timeout(limit, handshake(&endpoint, &config))
            .await
            .map_err(|_| ClientError::Timeout {
                what: format!("connecting to {}", endpoint.address()),
                after: limit,
            })??;
        let span =
            tracing::info_span!("ddp_client", session = %session, server = %endpoint.address());
        let shared = Shared::new();
        let (sink, stream) = socket.split();
        let (out, queue) = mpsc::channel(OUTBOUND_QUEUE);
        let heartbeat = config.heartbeat.filter(|_| version.has_heartbeats());
        // Both tasks start inside the connection's span: what they log names the session.
        let (reader, writer) = span.in_scope(|| {
            let reader = exosphere_task::spawn(connection::read_frames(
                stream,
                out.clone(),
                Arc::clone(&shared),
                heartbeat,
                config.max_document_bytes,
            ));
            let writer =
                exosphere_task::spawn(connection::write_frames(sink, queue, Arc::clone(&shared)));
            (reader, writer)
        });
        tracing::debug!(server = %endpoint.url, session, %version, "DDP client connected");
        Ok(Client {
            endpoint,
            session,
            version,
            config,
            shared,
            out,
            next_id: AtomicU64::new(0),
            reader,
            writer,
        })
    }

    /// The session id the server gave.
    pub fn session(&self) -> &str {
        &self.session
    }

    /// The negotiated DDP version (`"1"`, `"pre2"` or `"pre1"`).
    pub fn version(&self) -> &'static str {
        self.version.as_str()
    }

    /// The endpoint connected to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Calls `method` and waits for its answer.
    pub async fn call(&self, method: &str, params: &[Ejson]) -> Result<MethodResult, ClientError> {
        self.start_call(method, params).await?.result().await
    }

    /// Sends a method call without waiting for the answer, so several calls can be in
    /// flight; the server answers them in order (spec §1.2).
    pub async fn start_call(
        &self,
        method: &str,
        params: &[Ejson],
    ) -> Result<PendingCall, ClientError> {
        let id = (self.next_id.fetch_add(1, Ordering::Relaxed) + 1).to_string();
        let (answer, receiver) = oneshot::channel();
        {
            let mut state = self.shared.lock();
            if let Some(ended) = &state.ended {
                return Err(ended.error());
            }
            state.calls.insert(id.clone(), answer);
        }
        let frame = ClientFrame::Method {
            id: &id,
            method,
            params,
        }
        .encode();
        self.send(frame).await?;
        Ok(PendingCall {
            id,
            method: method.to_owned(),
            receiver,
            shared: Arc::clone(&self.shared),
            timeout: self.config.call_timeout,
        })
    }

    /// Subscribes to publication `name` and waits for `ready`; returns the subscription id.
    /// Its documents are then in [`Client::documents`].
    pub async fn subscribe(&self, name: &str, params: &[Ejson]) -> Result<String, ClientError> {
        let id = crate::id::random_id();
        let (answer, receiver) = oneshot::channel();
        {
            let mut state = self.shared.lock();
            if let Some(ended) = &state.ended {
                return Err(ended.error());
            }
            state.subs.insert(
                id.clone(),
                SubState::Pending {
                    name: name.to_owned(),
                    answer,
                },
            );
        }
        self.send(
            ClientFrame::Sub {
                id: &id,
                name,
                params,
            }
            .encode(),
        )
        .await?;
        let limit = self.config.call_timeout;
        match tokio::time::timeout(limit, receiver).await {
            Ok(Ok(Ok(()))) => Ok(id),
            Ok(Ok(Err(error))) => Err(error),
            Ok(Err(_)) => Err(self.ended()),
            Err(_) => {
                self.shared.lock().subs.remove(&id);
                Err(ClientError::Timeout {
                    what: format!("subscription `{name}`"),
                    after: limit,
                })
            }
        }
    }

    /// Stops subscription `id`; the server removes the documents only it covered.
    pub async fn unsubscribe(&self, id: &str) -> Result<(), ClientError> {
        self.shared.lock().subs.remove(id);
        self.send(ClientFrame::Unsub { id }.encode()).await
    }

    /// Whether subscription `id` was stopped by the server, and with which error.
    pub fn subscription_stopped(&self, id: &str) -> Option<Option<DdpError>> {
        match self.shared.lock().subs.get(id) {
            Some(SubState::Stopped(error)) => Some(error.clone()),
            _ => None,
        }
    }

    /// The documents of `collection` the subscriptions brought, by id.
    pub fn documents(&self, collection: &str) -> Vec<(String, EjsonMap)> {
        self.shared
            .lock()
            .documents
            .get(collection)
            .map(|docs| {
                docs.iter()
                    .map(|(id, document)| (id.clone(), document.fields.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A receiver that sees a change whenever documents or subscriptions move, and when
    /// the connection ends.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.shared.moved.subscribe()
    }

    /// Why the connection ended, if it has.
    pub fn ended(&self) -> ClientError {
        self.shared.lock().ended.as_ref().map_or_else(
            || ClientError::Disconnected("the connection is closing".to_owned()),
            Ended::error,
        )
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().ended.is_some()
    }

    /// Waits until the connection ends and says why.
    pub async fn closed(&self) -> ClientError {
        let mut moved = self.watch();
        loop {
            if self.is_closed() {
                return self.ended();
            }
            if moved.changed().await.is_err() {
                return self.ended();
            }
        }
    }

    /// Closes the connection politely (a WebSocket close frame) and waits briefly for it
    /// to go out.
    pub async fn close(mut self) {
        let _ = self.out.send(Message::Close(None)).await;
        self.shared
            .end(Ended::Lost("the client closed the connection".to_owned()));
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut self.writer).await;
    }

    async fn send(&self, frame: String) -> Result<(), ClientError> {
        self.out
            .send(Message::text(frame))
            .await
            .map_err(|_| self.ended())
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

/// A method call that was sent; [`PendingCall::result`] waits for its answer.
#[derive(Debug)]
pub struct PendingCall {
    id: String,
    method: String,
    receiver: oneshot::Receiver<Result<Utf8Bytes, ClientError>>,
    shared: Arc<Shared>,
    timeout: Duration,
}

impl PendingCall {
    /// The method id on the wire.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Waits (at most the call timeout) for the `result` frame.
    pub async fn result(self) -> Result<MethodResult, ClientError> {
        match tokio::time::timeout(self.timeout, self.receiver).await {
            Ok(Ok(Ok(frame))) => Ok(MethodResult { frame }),
            Ok(Ok(Err(error))) => Err(error),
            Ok(Err(_)) => Err(ClientError::Disconnected(
                "the connection ended before the answer".to_owned(),
            )),
            Err(_) => {
                self.shared.lock().calls.remove(&self.id);
                Err(ClientError::Timeout {
                    what: format!("method `{}`", self.method),
                    after: self.timeout,
                })
            }
        }
    }
}

/// The `result` frame of a method call, as received: decode it with
/// [`MethodResult::decode`] (borrowing) or [`MethodResult::ejson`] (owned EJSON).
#[derive(Debug, Clone)]
pub struct MethodResult {
    frame: Utf8Bytes,
}

/// The parts of a `result` frame a caller needs; everything else is skipped.
#[derive(Deserialize)]
struct Envelope<T> {
    result: Option<T>,
    error: Option<serde_json::Value>,
}

impl MethodResult {
    /// The whole frame text.
    pub fn frame(&self) -> &str {
        self.frame.as_str()
    }

    /// Parses the frame once and deserializes the result as `T`, which may borrow from
    /// the frame (`&RawValue`, `&str`): the EJSON text is not copied. `Ok(None)` when the
    /// method returned nothing (or `null`); [`ClientError::Method`] when it failed.
    pub fn decode<'a, T: Deserialize<'a>>(&'a self) -> Result<Option<T>, ClientError> {
        let envelope: Envelope<T> = serde_json::from_str(self.frame.as_str())
            .map_err(|e| ClientError::Protocol(format!("an invalid `result` frame ({e})")))?;
        if let Some(error) = envelope.error {
            let error = DdpError::from_wire(&error).ok_or_else(|| {
                ClientError::Protocol(format!("a method error without a code: {error}"))
            })?;
            return Err(ClientError::Method(Box::new(error)));
        }
        Ok(envelope.result)
    }

    /// The result's EJSON text, borrowed from the frame.
    pub fn raw(&self) -> Result<Option<&RawValue>, ClientError> {
        self.decode()
    }

    /// The result as an EJSON value (`Ejson::Null` when the method returned nothing),
    /// for small results.
    pub fn ejson(&self) -> Result<Ejson, ClientError> {
        match self.raw()? {
            None => Ok(Ejson::Null),
            Some(raw) => exosphere_ejson::parse(raw.get())
                .map_err(|e| ClientError::Protocol(format!("a result that is not EJSON: {e}"))),
        }
    }
}

/// Dials and negotiates a version (spec §1.2): propose `1`; on `failed` with a version this
/// client speaks and has not tried, re-dial proposing it.
async fn handshake(
    endpoint: &Endpoint,
    config: &ClientConfig,
) -> Result<(Socket, String, DdpVersion), ClientError> {
    let support: Vec<&str> = DdpVersion::SUPPORTED.iter().map(|v| v.as_str()).collect();
    let mut tried = Vec::new();
    let mut proposal = DdpVersion::SUPPORTED[0];
    loop {
        tried.push(proposal);
        let mut socket = socket::open(endpoint, config).await?;
        let connect = ClientFrame::Connect {
            version: proposal.as_str(),
            support: &support,
        }
        .encode();
        futures_util::SinkExt::send(&mut socket, Message::text(connect))
            .await
            .map_err(|e| ClientError::Disconnected(e.to_string()))?;
        match first_answer(&mut socket).await? {
            Answer::Connected(session) => return Ok((socket, session, proposal)),
            Answer::Failed(offered) => match DdpVersion::from_wire(&offered) {
                Some(version) if !tried.contains(&version) => proposal = version,
                _ => return Err(ClientError::Version { offered }),
            },
        }
    }
}

/// The server's answer to `connect`.
enum Answer {
    Connected(String),
    Failed(String),
}

async fn first_answer(socket: &mut Socket) -> Result<Answer, ClientError> {
    while let Some(message) = socket.next().await {
        let text = match message {
            Ok(Message::Text(text)) => text,
            Ok(Message::Close(_)) => break,
            Ok(_) => continue,
            Err(error) => return Err(ClientError::Disconnected(error.to_string())),
        };
        match ServerFrame::parse(text.as_str()).map_err(ClientError::Protocol)? {
            ServerFrame::Connected { session } => return Ok(Answer::Connected(session)),
            ServerFrame::Failed { version } => {
                return Ok(Answer::Failed(version.unwrap_or_default()));
            }
            ServerFrame::Error { reason, .. } => return Err(ClientError::Rejected(reason)),
            ServerFrame::Ignored => {}
            other => {
                return Err(ClientError::Protocol(format!(
                    "expected `connected`, got {other:?}"
                )));
            }
        }
    }
    Err(ClientError::Disconnected(
        "the server closed the connection during the DDP handshake".to_owned(),
    ))
}
