//! The session's work queue: `method`, `sub` and `unsub`, strictly one at a time, in order.
//!
//! Meteor processes a session's messages sequentially (`Session.processMessage`), and
//! clients rely on it (a `login` completes before the next call runs). The reader pushes
//! work into a bounded [`WorkQueue`] and stops reading while it is full; it drives the
//! running item from its own task, alongside reading, so heartbeats bypass the queue and
//! pings are answered even while a long method runs. An idle session holds no worker task
//! and no channel: only an empty queue.
//!
//! Each method runs in its own task: a panic in service code becomes a
//! `500 Internal server error` answer instead of killing the session.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use tracing::Instrument as _;

use super::shared::SessionShared;
use crate::context::MethodContext;
use crate::error::{DdpError, SessionClosed};
use crate::message::{MethodCall, ServerMessage, SubRequest};
use crate::publication::{self, Registration};
use crate::reply::Reply;
use crate::service::Service;

/// A message for the worker.
#[derive(Debug)]
pub(crate) enum Work {
    Method(MethodCall),
    /// A call answered with an error without running it (the rate limit). Boxed: every
    /// slot of the session's work queue is as large as the largest variant.
    Refuse {
        id: String,
        error: Box<DdpError>,
    },
    Sub(SubRequest),
    Unsub(Option<Value>),
}

/// The item being processed.
type Running = Pin<Box<dyn Future<Output = Result<(), SessionClosed>> + Send>>;

/// One session's `method`/`sub`/`unsub` messages: the one running and up to `capacity`
/// waiting behind it.
pub(crate) struct WorkQueue<S> {
    service: Arc<S>,
    session: Arc<SessionShared>,
    running: Option<Running>,
    waiting: VecDeque<Work>,
    capacity: usize,
}

impl<S: Service> WorkQueue<S> {
    /// An empty queue holding up to `capacity` (at least one) waiting items.
    pub(crate) fn new(service: Arc<S>, session: Arc<SessionShared>, capacity: usize) -> Self {
        Self {
            service,
            session,
            running: None,
            waiting: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Whether the reader must stop reading until an item finishes.
    pub(crate) fn is_full(&self) -> bool {
        self.waiting.len() >= self.capacity
    }

    /// Whether an item is running.
    pub(crate) fn is_busy(&self) -> bool {
        self.running.is_some()
    }

    /// Queues `work`, starting it at once if nothing is running.
    pub(crate) fn push(&mut self, work: Work) {
        if self.running.is_none() {
            self.running = Some(self.start(work));
        } else {
            self.waiting.push_back(work);
        }
    }

    /// Waits for the running item to finish (forever, if none runs), then starts the next.
    /// `Err` means the session is closed: nothing more can be answered. Cancel-safe: the
    /// running item is kept until it finishes.
    pub(crate) async fn finish_one(&mut self) -> Result<(), SessionClosed> {
        let outcome = match &mut self.running {
            Some(running) => running.await,
            None => std::future::pending().await,
        };
        self.running = self.waiting.pop_front().map(|work| self.start(work));
        if self.waiting.is_empty() {
            // A pipelining client's burst is over: give the buffer back.
            self.waiting = VecDeque::new();
        }
        outcome
    }

    /// Finishes everything already queued (at shutdown).
    pub(crate) async fn drain(&mut self) -> Result<(), SessionClosed> {
        while self.is_busy() {
            self.finish_one().await?;
        }
        Ok(())
    }

    fn start(&self, work: Work) -> Running {
        let service = Arc::clone(&self.service);
        let session = Arc::clone(&self.session);
        Box::pin(
            async move {
                match work {
                    Work::Method(call) => call_method(&service, &session, call).await,
                    Work::Refuse { id, error } => answer(&session, &id, &Err(*error)).await,
                    Work::Sub(request) => subscribe(service.as_ref(), &session, request).await,
                    Work::Unsub(id) => publication::unsubscribe(&session, id.as_ref()).await,
                }
            }
            .in_current_span(),
        )
    }
}

/// Runs one method and answers it with `updated` and `result` (spec §1.2: both, always).
async fn call_method<S: Service>(
    service: &Arc<S>,
    session: &Arc<SessionShared>,
    call: MethodCall,
) -> Result<(), SessionClosed> {
    let MethodCall { id, method, params } = call;
    let span = tracing::debug_span!("method", %method, id = %id);
    let ctx = MethodContext {
        session: Arc::clone(&session.ctx),
        method_id: id.clone(),
    };
    // The session span is kept even where the (debug-level) method span is disabled.
    let task = exosphere_task::spawn({
        let service = Arc::clone(service);
        let method = method.clone();
        async move { service.call(&ctx, &method, params).await }.instrument(span.clone())
    });
    let started = Instant::now();
    let mut closed = session.closed.subscribe();
    let joined = tokio::select! {
        // The method keeps running detached; its answer has nowhere to go.
        _ = closed.wait_for(|closed| *closed) => return Err(SessionClosed),
        joined = task => joined,
    };
    let outcome = joined.unwrap_or_else(|panic| {
        tracing::error!(%method, id = %id, error = %panic, "method panicked; answering 500");
        Err(DdpError::internal())
    });
    span.in_scope(|| match &outcome {
        Ok(_) => tracing::debug!(
            elapsed_ms = started.elapsed().as_millis(),
            "method succeeded"
        ),
        Err(error) => tracing::debug!(
            elapsed_ms = started.elapsed().as_millis(),
            %error,
            "method failed"
        ),
    });
    answer(session, &id, &outcome).await
}

/// Sends a method's `updated` and `result` (spec §1.2: both, always).
async fn answer(
    session: &SessionShared,
    id: &str,
    outcome: &Result<Reply, DdpError>,
) -> Result<(), SessionClosed> {
    let updated = ServerMessage::Updated { method_id: id };
    session.outbox.send(updated.encode()).await?;
    let result = ServerMessage::Result { id, outcome };
    session.outbox.send(result.frame()).await
}

/// Starts a subscription; a refusal (or a panic) ends it with `nosub` and the error.
async fn subscribe<S: Service>(
    service: &S,
    session: &Arc<SessionShared>,
    request: SubRequest,
) -> Result<(), SessionClosed> {
    let SubRequest { id, name, params } = request;
    let sub = match publication::register(session, &id).await {
        Registration::Started(sub) => sub,
        Registration::AlreadyActive => {
            tracing::debug!(sub = %id, %name, "repeated sub for an active id ignored");
            return Ok(());
        }
        Registration::TooMany => {
            tracing::warn!(sub = %id, %name, limit = session.max_subscriptions, "subscription limit reached; refused");
            let error = DdpError::new(429, "Too many subscriptions on this connection");
            let id = Value::from(id);
            let nosub = ServerMessage::Nosub {
                id: Some(&id),
                error: Some(&error),
            };
            return session.outbox.send(nosub.encode()).await;
        }
    };
    let started = std::panic::catch_unwind(AssertUnwindSafe(|| {
        service.subscribe(&session.ctx, &name, params, sub.clone())
    }));
    let error = match started {
        Ok(Ok(())) => {
            tracing::debug!(sub = %id, %name, "subscription started");
            return Ok(());
        }
        Ok(Err(error)) => error,
        Err(_) => {
            tracing::error!(sub = %id, %name, "publication panicked while starting; answering 500");
            DdpError::internal()
        }
    };
    tracing::debug!(sub = %id, %name, %error, "subscription refused");
    sub.error(error).await;
    Ok(())
}
