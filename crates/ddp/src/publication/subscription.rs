//! The handle a publication writes through, and the session worker's `sub` and `unsub`.
//!
//! Every data message goes through the session's [`MergeBox`] under one async lock that
//! is held until the frame is queued, so the order of frames matches the order of
//! merge-box updates even when a publication task races an `unsub` handled by the session
//! worker. A subscription is identified internally by a [`SubKey`] that is never reused,
//! so a stale handle cannot act on a newer subscription that reuses the client's id.

use std::fmt;
use std::sync::Arc;

use exosphere_ejson::{Ejson, EjsonMap};
use serde_json::Value;
use tokio::sync::watch;

use super::merge_box::{Change, MergeBox, NotPublished, SubKey};
use super::registry::Refusal;
use crate::error::{DdpError, SessionClosed};
use crate::message::ServerMessage;
use crate::session::SessionShared;

/// The result of registering a `sub` request.
pub(crate) enum Registration {
    /// A new subscription, to hand to the service.
    Started(Subscription),
    /// The id is already active: Meteor ignores the repeated `sub`.
    AlreadyActive,
    /// The session has `max_subscriptions` active subscriptions.
    TooMany,
}

/// Registers subscription `id` before the service starts it, so that data it publishes
/// right away is accepted.
pub(crate) async fn register(session: &Arc<SessionShared>, id: &str) -> Registration {
    let mut state = session.publications.lock().await;
    let (key, stop) = match state.add(id, session.max_subscriptions) {
        Ok(added) => added,
        Err(Refusal::AlreadyActive) => return Registration::AlreadyActive,
        Err(Refusal::TooMany) => return Registration::TooMany,
    };
    Registration::Started(Subscription {
        inner: Arc::new(Inner {
            id: id.to_owned(),
            key,
            session: Arc::clone(session),
            stop,
        }),
    })
}

/// Handles `unsub`: retracts the subscription's documents (if it is active) and answers
/// `nosub`, echoing the id as sent, as Meteor does even for unknown ids.
pub(crate) async fn unsubscribe(
    session: &SessionShared,
    id: Option<&Value>,
) -> Result<(), SessionClosed> {
    let mut state = session.publications.lock().await;
    let retracted = id.and_then(Value::as_str).and_then(|id| state.retire(id));
    for change in retracted.unwrap_or_default() {
        session.outbox.send(change.encode()).await?;
    }
    let nosub = ServerMessage::Nosub { id, error: None };
    session.outbox.send(nosub.encode()).await
}

/// A publication's handle on one client subscription.
///
/// Cloneable; every clone refers to the same subscription. Once the client unsubscribes,
/// the publication stops itself, or the session ends, the data methods return
/// [`SessionClosed`] and [`stopped`](Self::stopped) resolves.
#[derive(Clone)]
pub struct Subscription {
    inner: Arc<Inner>,
}

struct Inner {
    id: String,
    key: SubKey,
    session: Arc<SessionShared>,
    stop: Arc<watch::Sender<bool>>,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.inner.id)
            .field("session", &self.inner.session.ctx.session_id)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// The client's id for this subscription.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// Publishes document `id` of `collection` with `fields` (an object; `Null` means none).
    ///
    /// If another subscription of the session already published the document, the client
    /// only sees the fields this one adds.
    pub async fn added(
        &self,
        collection: &str,
        id: &str,
        fields: Ejson,
    ) -> Result<(), SessionClosed> {
        let fields = self.fields(fields, collection, id);
        self.publish(collection, id, |merge_box, key| {
            Ok(merge_box.added(key, collection, id, fields))
        })
        .await
    }

    /// Changes fields of a document this subscription published; `cleared` removes fields.
    pub async fn changed(
        &self,
        collection: &str,
        id: &str,
        fields: Ejson,
        cleared: Vec<String>,
    ) -> Result<(), SessionClosed> {
        let fields = self.fields(fields, collection, id);
        self.publish(collection, id, |merge_box, key| {
            merge_box.changed(key, collection, id, fields, cleared)
        })
        .await
    }

    /// Stops publishing a document; the client sees `removed` once no subscription has it.
    pub async fn removed(&self, collection: &str, id: &str) -> Result<(), SessionClosed> {
        self.publish(collection, id, |merge_box, key| {
            merge_box.removed(key, collection, id)
        })
        .await
    }

    /// Announces that the initial documents have been sent (`ready`); later calls are no-ops.
    pub async fn ready(&self) -> Result<(), SessionClosed> {
        let session = &self.inner.session;
        let mut state = session.publications.lock().await;
        if session.is_closed() {
            return Err(SessionClosed);
        }
        let first = state
            .mark_ready(&self.inner.id, self.inner.key)
            .ok_or(SessionClosed)?;
        if !first {
            return Ok(());
        }
        let ready = ServerMessage::Ready {
            sub_id: &self.inner.id,
        };
        session.outbox.send(ready.encode()).await
    }

    /// Resolves when the client unsubscribes, the subscription is stopped, or the session ends.
    pub async fn stopped(&self) {
        let mut stop = self.inner.stop.subscribe();
        let mut closed = self.inner.session.closed.subscribe();
        // An error means the sender is gone, which also means "stopped".
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => {}
            _ = closed.wait_for(|closed| *closed) => {}
        }
    }

    /// Ends the subscription with an error: its documents are retracted and the client gets
    /// `nosub` carrying `err`.
    pub async fn error(self, err: DdpError) {
        self.end(Some(&err)).await;
    }

    /// Ends the subscription from the server side: documents retracted, `nosub` without error.
    pub async fn stop(self) {
        self.end(None).await;
    }

    async fn end(&self, error: Option<&DdpError>) {
        let session = &self.inner.session;
        let mut state = session.publications.lock().await;
        if !state.is_current(&self.inner.id, self.inner.key) {
            return;
        }
        let retracted = state.retire(&self.inner.id).unwrap_or_default();
        let id = Value::from(self.inner.id.as_str());
        let nosub = ServerMessage::Nosub {
            id: Some(&id),
            error,
        };
        let frames = retracted
            .iter()
            .map(Change::encode)
            .chain(std::iter::once(nosub.encode()));
        for frame in frames {
            if session.outbox.send(frame).await.is_err() {
                return;
            }
        }
    }

    /// Applies one merge-box operation and queues the resulting frame, atomically.
    async fn publish(
        &self,
        collection: &str,
        id: &str,
        operation: impl FnOnce(&mut MergeBox, SubKey) -> Result<Option<Change>, NotPublished>,
    ) -> Result<(), SessionClosed> {
        let session = &self.inner.session;
        let mut state = session.publications.lock().await;
        if session.is_closed() || !state.is_current(&self.inner.id, self.inner.key) {
            return Err(SessionClosed);
        }
        match operation(&mut state.merge_box, self.inner.key) {
            Ok(Some(change)) => session.outbox.send(change.encode()).await,
            Ok(None) => Ok(()),
            Err(NotPublished) => {
                tracing::warn!(
                    sub = %self.inner.id,
                    collection,
                    id,
                    "publication changed or removed a document it never added; ignored"
                );
                Ok(())
            }
        }
    }

    fn fields(&self, fields: Ejson, collection: &str, id: &str) -> EjsonMap {
        match fields {
            Ejson::Object(map) => map,
            Ejson::Null => EjsonMap::new(),
            _ => {
                tracing::warn!(
                    sub = %self.inner.id,
                    collection,
                    id,
                    "publication sent fields that are not an object; treated as empty"
                );
                EjsonMap::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::SessionContext;
    use crate::outbox::{Outbound, Outbox, OutboxReceiver, SharedBudget};
    use std::time::Duration;

    fn session(max_subscriptions: usize) -> (Arc<SessionShared>, OutboxReceiver) {
        let (outbox, frames) = Outbox::channel(
            1 << 20,
            &SharedBudget::new(1 << 30),
            Duration::from_secs(60),
        );
        let ctx = Arc::new(SessionContext::new("S".to_owned(), None, None));
        let shared = SessionShared::new(ctx, outbox, max_subscriptions);
        (Arc::new(shared), frames)
    }

    fn drain(frames: &mut OutboxReceiver) -> Vec<String> {
        std::iter::from_fn(|| match frames.try_recv() {
            Some(Outbound::Frame(frame, _)) => Some(frame.into_string()),
            _ => None,
        })
        .collect()
    }

    async fn start(session: &Arc<SessionShared>, id: &str) -> Subscription {
        match register(session, id).await {
            Registration::Started(sub) => sub,
            _ => panic!("subscription {id} did not start"),
        }
    }

    fn doc(value: i64) -> Ejson {
        [("v", Ejson::from(value))].into_iter().collect()
    }

    #[tokio::test]
    async fn publish_ready_and_unsub() {
        let (session, mut frames) = session(10);
        let sub = start(&session, "s1").await;
        assert_eq!(sub.id(), "s1");
        assert_eq!(sub.added("c", "d", doc(1)).await, Ok(()));
        assert_eq!(sub.ready().await, Ok(()));
        assert_eq!(sub.ready().await, Ok(()));
        assert!(matches!(
            register(&session, "s1").await,
            Registration::AlreadyActive
        ));
        assert_eq!(
            unsubscribe(&session, Some(&Value::from("s1"))).await,
            Ok(())
        );
        assert_eq!(
            drain(&mut frames),
            [
                r#"{"msg":"added","collection":"c","id":"d","fields":{"v":1}}"#,
                r#"{"msg":"ready","subs":["s1"]}"#,
                r#"{"msg":"removed","collection":"c","id":"d"}"#,
                r#"{"msg":"nosub","id":"s1"}"#,
            ]
        );
        sub.stopped().await;
        assert_eq!(sub.added("c", "e", Ejson::Null).await, Err(SessionClosed));
        assert_eq!(sub.ready().await, Err(SessionClosed));
    }

    #[tokio::test]
    async fn unsub_of_unknown_ids_still_answers_nosub() {
        let (session, mut frames) = session(10);
        assert_eq!(unsubscribe(&session, Some(&Value::from(7))).await, Ok(()));
        assert_eq!(unsubscribe(&session, None).await, Ok(()));
        assert_eq!(
            drain(&mut frames),
            [r#"{"msg":"nosub","id":7}"#, r#"{"msg":"nosub"}"#]
        );
    }

    #[tokio::test]
    async fn stale_handle_cannot_touch_a_reused_id() {
        let (session, mut frames) = session(10);
        let old = start(&session, "s").await;
        assert_eq!(unsubscribe(&session, Some(&Value::from("s"))).await, Ok(()));
        let new = start(&session, "s").await;
        assert_eq!(old.added("c", "d", doc(1)).await, Err(SessionClosed));
        old.stop().await;
        assert_eq!(new.added("c", "d", doc(2)).await, Ok(()));
        assert_eq!(
            drain(&mut frames),
            [
                r#"{"msg":"nosub","id":"s"}"#,
                r#"{"msg":"added","collection":"c","id":"d","fields":{"v":2}}"#,
            ]
        );
    }

    #[tokio::test]
    async fn error_retracts_documents_and_reports() {
        let (session, mut frames) = session(10);
        let sub = start(&session, "s").await;
        assert_eq!(
            sub.added("c", "d", Ejson::from("not an object")).await,
            Ok(())
        );
        sub.clone().error(DdpError::bad_request("no")).await;
        sub.stopped().await;
        let frames = drain(&mut frames);
        assert_eq!(frames[0], r#"{"msg":"added","collection":"c","id":"d"}"#);
        assert_eq!(frames[1], r#"{"msg":"removed","collection":"c","id":"d"}"#);
        assert!(
            frames[2]
                .starts_with(r#"{"msg":"nosub","id":"s","error":{"isClientSafe":true,"error":400"#)
        );
        assert_eq!(frames.len(), 3);
    }

    #[tokio::test]
    async fn limits_and_session_end() {
        let (session, _frames) = session(1);
        let sub = start(&session, "a").await;
        assert!(matches!(
            register(&session, "b").await,
            Registration::TooMany
        ));
        session.closed.send_replace(true);
        sub.stopped().await;
        assert_eq!(sub.removed("c", "d").await, Err(SessionClosed));
    }

    #[tokio::test]
    async fn misuse_is_ignored() {
        let (session, mut frames) = session(1);
        let sub = start(&session, "a").await;
        assert_eq!(sub.changed("c", "d", doc(1), vec![]).await, Ok(()));
        assert_eq!(sub.removed("c", "d").await, Ok(()));
        assert!(drain(&mut frames).is_empty());
    }
}
