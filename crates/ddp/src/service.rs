//! The boundary between DDP and the application.
//!
//! An application (the package server) implements [`Service`]; the DDP layer calls it
//! with a [`MethodContext`] per method call and a [`SessionContext`] per subscription and
//! knows nothing else about it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use exosphere_ejson::Ejson;

use crate::error::DdpError;
use crate::publication::Subscription;

/// What an application plugs into DDP.
pub trait Service: Send + Sync + 'static {
    /// Handles one method call. Unknown methods return `Err(DdpError::method_not_found(name))`.
    ///
    /// Calls of one session run one at a time, in arrival order. The future runs in its
    /// own task inside the session's tracing span; if it panics the client gets
    /// `500 Internal server error` and the session lives on.
    fn call(
        &self,
        ctx: &MethodContext,
        method: &str,
        params: Vec<Ejson>,
    ) -> impl Future<Output = Result<Reply, DdpError>> + Send;

    /// Starts a publication. Returning `Err` sends `nosub` with that error; unknown names
    /// should return `Err(DdpError::sub_not_found(name))`.
    ///
    /// The service typically spawns a task that sends `added`…, then `ready`, then live
    /// changes until [`Subscription::stopped`] resolves. This is called inside the
    /// session's tracing span: spawn with `tracing::Instrument::in_current_span` to keep
    /// the session id on the task's log lines.
    fn subscribe(
        &self,
        ctx: &SessionContext,
        name: &str,
        params: Vec<Ejson>,
        sub: Subscription,
    ) -> Result<(), DdpError>;
}

/// A method's successful outcome.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// The method returned nothing: the `result` key is omitted (JavaScript `undefined`).
    None,
    /// An EJSON value, encoded by the DDP layer (`Ejson::Null` is sent as `"result":null`).
    Value(Ejson),
    /// Already-encoded EJSON text, embedded in the frame verbatim without re-parsing.
    ///
    /// This is the sync hot path. The text must be exactly one valid JSON value in EJSON
    /// encoding; it is not checked.
    Raw(String),
}

impl From<Ejson> for Reply {
    fn from(value: Ejson) -> Self {
        Self::Value(value)
    }
}

/// Per-connection facts a service may consult.
#[derive(Debug)]
pub struct SessionContext {
    /// The DDP session id sent in `connected`; also on every log line of the session.
    pub session_id: String,
    /// The peer's address, when the transport knows it.
    pub remote_addr: Option<SocketAddr>,
    /// The `User-Agent` of the WebSocket upgrade request (`Meteor/<release> OS/…` from the tool).
    pub user_agent: Option<String>,
    user_id: Mutex<Option<String>>,
}

impl SessionContext {
    /// A context for a connection; the user id starts unset.
    pub fn new(
        session_id: String,
        remote_addr: Option<SocketAddr>,
        user_agent: Option<String>,
    ) -> Self {
        Self {
            session_id,
            remote_addr,
            user_agent,
            user_id: Mutex::new(None),
        }
    }

    /// The logged-in user of this connection, if a login method set one.
    pub fn user_id(&self) -> Option<String> {
        self.user_id
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records (or clears) the logged-in user, for a login/logout method.
    pub fn set_user_id(&self, user_id: Option<String>) {
        *self.user_id.lock().unwrap_or_else(PoisonError::into_inner) = user_id;
    }
}

/// What a method call knows about where it comes from.
#[derive(Debug, Clone)]
pub struct MethodContext {
    /// The calling connection.
    pub session: Arc<SessionContext>,
    /// The client's id for this call (decimal strings from the `meteor` tool).
    pub method_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_id_slot() {
        let ctx = SessionContext::new("s".to_owned(), None, None);
        assert_eq!(ctx.user_id(), None);
        ctx.set_user_id(Some("u1".to_owned()));
        assert_eq!(ctx.user_id().as_deref(), Some("u1"));
        ctx.set_user_id(None);
        assert_eq!(ctx.user_id(), None);
    }

    #[test]
    fn reply_from_value() {
        assert_eq!(Reply::from(Ejson::Null), Reply::Value(Ejson::Null));
    }
}
