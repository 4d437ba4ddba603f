//! One open client connection: the state shared with the [`Client`](super::Client) handle,
//! the task that reads server frames and routes them, and the task that writes.
//!
//! The reader answers pings on the spot, hands each `result` frame (whole, without
//! copying) to the call waiting for it, keeps the documents of `added`/`changed`/`removed`
//! in a local store, and resolves subscriptions on `ready`/`nosub`. When the connection
//! ends, every waiting call and subscription fails with the reason.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use exosphere_ejson::{Ejson, EjsonMap};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::error::ClientError;
use super::socket::Socket;
use crate::error::DdpError;
use crate::message::{ClientFrame, ServerFrame};

/// Why a connection ended; turned into a fresh [`ClientError`] for each waiter.
#[derive(Debug, Clone)]
pub(crate) enum Ended {
    /// The server sent something DDP does not allow.
    Protocol(String),
    /// The socket closed or failed, or the client closed it.
    Lost(String),
}

impl Ended {
    pub(crate) fn error(&self) -> ClientError {
        match self {
            Self::Protocol(why) => ClientError::Protocol(why.clone()),
            Self::Lost(why) => ClientError::Disconnected(why.clone()),
        }
    }
}

/// Where a subscription stands.
#[derive(Debug)]
pub(crate) enum SubState {
    /// Sent; `ready`/`nosub` not seen yet.
    Pending {
        name: String,
        answer: oneshot::Sender<Result<(), ClientError>>,
    },
    /// `ready` seen.
    Ready,
    /// `nosub` seen (with the server's error, if any).
    Stopped(Option<DdpError>),
}

/// What the handle and the reader share.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) ended: Option<Ended>,
    /// Calls waiting for their `result` frame, by method id.
    pub(crate) calls: HashMap<String, oneshot::Sender<Result<Utf8Bytes, ClientError>>>,
    pub(crate) subs: HashMap<String, SubState>,
    /// collection → document id → the document, as the server's data messages left it.
    /// A collection is dropped with its last document.
    pub(crate) documents: HashMap<String, BTreeMap<String, Document>>,
    /// What the store costs: the sum of its documents' [`Document::bytes`] and of
    /// [`collection_bytes`] per collection.
    pub(crate) document_bytes: usize,
}

/// What the store's bookkeeping costs besides the data, as counted against
/// [`ClientConfig::max_document_bytes`]: per document (its map entry, its id and its field
/// map), per field (the entry and the name's and value's allocations) and per collection
/// (the map and its name). Round figures above what the structures take on a 64-bit target,
/// so that documents or fields with no data (an empty `added`, say) still cost what they
/// hold and a flood of them reaches the limit.
///
/// [`ClientConfig::max_document_bytes`]: super::config::ClientConfig::max_document_bytes
const DOCUMENT_OVERHEAD: usize = 128;
/// Per field: see [`DOCUMENT_OVERHEAD`].
const FIELD_OVERHEAD: usize = 64;
/// Per collection: see [`DOCUMENT_OVERHEAD`].
const COLLECTION_OVERHEAD: usize = 128;

/// What a collection costs in the store besides its documents.
fn collection_bytes(name: &str) -> usize {
    COLLECTION_OVERHEAD + name.len()
}

/// One document of the local store.
#[derive(Debug)]
pub(crate) struct Document {
    pub(crate) fields: EjsonMap,
    /// What it holds: its id plus, per field, the name and the value's EJSON text, and the
    /// bookkeeping of each ([`DOCUMENT_OVERHEAD`], [`FIELD_OVERHEAD`]), counted against
    /// [`ClientConfig::max_document_bytes`]. Kept up to date field by field, so a long run
    /// of `changed` frames on one document costs what the document holds, not what the
    /// frames added up to.
    ///
    /// [`ClientConfig::max_document_bytes`]: super::config::ClientConfig::max_document_bytes
    bytes: usize,
}

impl Document {
    /// The document `id` with `fields`, measured.
    fn new(id: &str, fields: EjsonMap) -> Self {
        let bytes = DOCUMENT_OVERHEAD + id.len() + fields.iter().map(field_bytes).sum::<usize>();
        Self { fields, bytes }
    }

    /// Applies a `changed` frame (spec §1.3: `fields` set, then `cleared` removed), keeping
    /// [`Document::bytes`] exact: each field replaced or removed gives its size back.
    fn change(&mut self, fields: EjsonMap, cleared: Vec<String>) {
        for (key, value) in fields {
            let name = FIELD_OVERHEAD + key.len();
            self.bytes += name + value_bytes(&value);
            if let Some(old) = self.fields.insert(key, value) {
                self.bytes -= name + value_bytes(&old);
            }
        }
        for key in cleared {
            if let Some(old) = self.fields.shift_remove(&key) {
                self.bytes -= FIELD_OVERHEAD + key.len() + value_bytes(&old);
            }
        }
    }
}

/// What one field costs in [`Document::bytes`]: its bookkeeping, its name and its value's
/// EJSON text.
fn field_bytes((key, value): (&String, &Ejson)) -> usize {
    FIELD_OVERHEAD + key.len() + value_bytes(value)
}

/// The length of `value`'s compact EJSON text: a measure of what it holds that does not
/// depend on how the server happened to format its frames.
fn value_bytes(value: &Ejson) -> usize {
    value.to_json_string().len()
}

/// The shared state and the signal that it moved.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Bumped on every change of documents or subscriptions, and when the connection ends.
    pub(crate) moved: watch::Sender<u64>,
}

impl Shared {
    pub(crate) fn new() -> Arc<Shared> {
        Arc::new(Shared {
            state: Mutex::new(State::default()),
            moved: watch::Sender::new(0),
        })
    }

    /// The state; a panic elsewhere while holding the lock leaves it usable (every
    /// update is a single insert or removal).
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn bump(&self) {
        self.moved.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Marks the connection ended (the first reason wins) and fails every waiter.
    pub(crate) fn end(&self, ended: Ended) {
        let mut state = self.lock();
        if state.ended.is_some() {
            return;
        }
        tracing::debug!(reason = ?ended, "DDP client connection ended");
        for (_, waiter) in state.calls.drain() {
            let _ = waiter.send(Err(ended.error()));
        }
        let subs = std::mem::take(&mut state.subs);
        for (id, sub) in subs {
            if let SubState::Pending { answer, .. } = sub {
                let _ = answer.send(Err(ended.error()));
            } else {
                state.subs.insert(id, SubState::Stopped(None));
            }
        }
        state.ended = Some(ended);
        drop(state);
        self.bump();
    }
}

/// Writes queued frames until the queue closes or the socket fails.
pub(crate) async fn write_frames(
    mut sink: SplitSink<Socket, Message>,
    mut queue: mpsc::Receiver<Message>,
    shared: Arc<Shared>,
) {
    while let Some(message) = queue.recv().await {
        let last = matches!(message, Message::Close(_));
        if let Err(error) = sink.send(message).await {
            shared.end(Ended::Lost(format!("cannot send to the server: {error}")));
            return;
        }
        if last {
            return;
        }
    }
    let _ = sink.close().await;
}

/// Reads and routes server frames until the connection ends. With `heartbeat`, pings a
/// server that stayed silent that long, and gives up on it after as long again.
pub(crate) async fn read_frames(
    mut stream: SplitStream<Socket>,
    out: mpsc::Sender<Message>,
    shared: Arc<Shared>,
    heartbeat: Option<Duration>,
    max_document_bytes: usize,
) {
    let mut ping_sent = false;
    let ended = loop {
        let next = match heartbeat {
            None => stream.next().await,
            Some(interval) => match tokio::time::timeout(interval, stream.next()).await {
                Ok(next) => next,
                Err(_) if ping_sent => {
                    break Ended::Lost(format!(
                        "the server did not answer a ping within {interval:?}"
                    ));
                }
                Err(_) => {
                    ping_sent = true;
                    let ping = ClientFrame::Ping { id: "heartbeat" }.encode();
                    if out.send(Message::text(ping)).await.is_err() {
                        break Ended::Lost("the connection was closed".to_owned());
                    }
                    continue;
                }
            },
        };
        ping_sent = false;
        match next {
            Some(Ok(Message::Text(text))) => {
                if let Err(ended) = route(text, &out, &shared, max_document_bytes).await {
                    break ended;
                }
            }
            Some(Ok(Message::Close(frame))) => {
                break Ended::Lost(match frame {
                    Some(frame) if !frame.reason.is_empty() => {
                        format!("the server closed the connection ({})", frame.reason)
                    }
                    _ => "the server closed the connection".to_owned(),
                });
            }
            // Binary frames are ignored, as the `meteor` tool does (spec §1.1);
            // WebSocket pings are answered by tungstenite.
            Some(Ok(_)) => {}
            Some(Err(error)) => break Ended::Lost(error.to_string()),
            None => break Ended::Lost("the server closed the connection".to_owned()),
        }
    };
    shared.end(ended);
}

/// Acts on one server frame. Data messages that would take the local store past
/// `max_document_bytes` end the connection instead.
async fn route(
    text: Utf8Bytes,
    out: &mpsc::Sender<Message>,
    shared: &Shared,
    max_document_bytes: usize,
) -> Result<(), Ended> {
    let frame = ServerFrame::parse(text.as_str()).map_err(Ended::Protocol)?;
    match frame {
        ServerFrame::Result { id } => {
            let waiter = shared.lock().calls.remove(&id);
            match waiter {
                // The caller may have given up (timeout); nothing to do then.
                Some(waiter) => {
                    let _ = waiter.send(Ok(text));
                }
                None => tracing::debug!(id, "result for a call nobody waits for"),
            }
        }
        ServerFrame::Ping { id } => {
            let pong = ClientFrame::Pong { id: id.as_ref() }.encode();
            out.send(Message::text(pong))
                .await
                .map_err(|_| Ended::Lost("the connection was closed".to_owned()))?;
        }
        ServerFrame::Error { reason, offending } => rejected(shared, &reason, offending.as_ref()),
        ServerFrame::Added {
            collection,
            id,
            fields,
        } => {
            let document = Document::new(&id, fields);
            let mut guard = shared.lock();
            let state = &mut *guard;
            let (freed, opened) = match state.documents.get(&collection) {
                Some(documents) => (documents.get(&id).map_or(0, |document| document.bytes), 0),
                None => (0, collection_bytes(&collection)),
            };
            let held = state.document_bytes - freed + opened + document.bytes;
            // Checked before storing: a document that would pass the limit is not kept.
            within_budget(held, max_document_bytes)?;
            state
                .documents
                .entry(collection)
                .or_default()
                .insert(id, document);
            state.document_bytes = held;
            drop(guard);
            shared.bump();
        }
        ServerFrame::Changed {
            collection,
            id,
            fields,
            cleared,
        } => {
            let mut guard = shared.lock();
            let state = &mut *guard;
            if !state.documents.contains_key(&collection) {
                state.document_bytes += collection_bytes(&collection);
            }
            let documents = state.documents.entry(collection).or_default();
            let (document, before) = match documents.entry(id) {
                Entry::Occupied(entry) => {
                    let document = entry.into_mut();
                    let before = document.bytes;
                    (document, before)
                }
                Entry::Vacant(entry) => {
                    let document = Document::new(entry.key(), EjsonMap::new());
                    (entry.insert(document), 0)
                }
            };
            document.change(fields, cleared);
            state.document_bytes = state.document_bytes - before + document.bytes;
            // Checked once applied (the store may end one frame past the limit): the
            // connection ends, so undoing the change is moot.
            within_budget(state.document_bytes, max_document_bytes)?;
            drop(guard);
            shared.bump();
        }
        ServerFrame::Removed { collection, id } => {
            let mut guard = shared.lock();
            let state = &mut *guard;
            if let Some(documents) = state.documents.get_mut(&collection) {
                if let Some(document) = documents.remove(&id) {
                    state.document_bytes -= document.bytes;
                }
                if documents.is_empty() {
                    state.documents.remove(&collection);
                    state.document_bytes -= collection_bytes(&collection);
                }
            }
            drop(guard);
            shared.bump();
        }
        ServerFrame::Ready { subs } => {
            let mut state = shared.lock();
            for id in subs {
                if let Some(SubState::Pending { answer, .. }) =
                    state.subs.insert(id, SubState::Ready)
                {
                    let _ = answer.send(Ok(()));
                }
            }
            drop(state);
            shared.bump();
        }
        ServerFrame::Nosub { id, error } => {
            let mut state = shared.lock();
            if let Some(SubState::Pending { name, answer }) =
                state.subs.insert(id, SubState::Stopped(error.clone()))
            {
                let error = error.unwrap_or_else(|| {
                    DdpError::new(
                        "stopped",
                        "the server stopped the subscription before it was ready",
                    )
                });
                let _ = answer.send(Err(ClientError::Subscription {
                    name,
                    error: Box::new(error),
                }));
            }
            drop(state);
            shared.bump();
        }
        ServerFrame::Pong
        | ServerFrame::Updated
        | ServerFrame::Ignored
        | ServerFrame::Connected { .. }
        | ServerFrame::Failed { .. } => {}
    }
    Ok(())
}

/// A top-level `error`: fails the call or subscription it quotes, if any, else logs it
/// (as Meteor's client does).
fn rejected(shared: &Shared, reason: &str, offending: Option<&Value>) {
    let id = offending
        .and_then(|message| message.get("id"))
        .and_then(Value::as_str);
    let mut state = shared.lock();
    if let Some(id) = id {
        if let Some(waiter) = state.calls.remove(id) {
            let _ = waiter.send(Err(ClientError::Rejected(reason.to_owned())));
            return;
        }
        if let Some(SubState::Pending { answer, .. }) = state.subs.remove(id) {
            let _ = answer.send(Err(ClientError::Rejected(reason.to_owned())));
            return;
        }
    }
    tracing::warn!(reason, offending = ?offending, "the server rejected a message");
}

/// Fails when the local store would hold `held` bytes of documents, more than `max`: a
/// server that floods a subscription must not grow the client without bound.
fn within_budget(held: usize, max: usize) -> Result<(), Ended> {
    if held > max {
        return Err(Ended::Protocol(format!(
            "the server's subscription data passed the client's limit of {max} bytes"
        )));
    }
    Ok(())
}
