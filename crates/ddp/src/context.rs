//! What the DDP layer tells a service about a connection and a method call.
//!
//! A leaf: the contexts are built by sessions and read by services and publications, and
//! depend on neither.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

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
    /// Becomes `true` once the client's DDP `connect` is accepted.
    established: watch::Sender<bool>,
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
            established: watch::Sender::new(false),
        }
    }

    /// Records that the client's DDP `connect` was accepted.
    pub(crate) fn mark_established(&self) {
        self.established.send_replace(true);
    }

    /// What turns `true` once the client's DDP `connect` is accepted: a transport that
    /// keeps sessions between requests ends those that never get there.
    pub(crate) fn established(&self) -> watch::Receiver<bool> {
        self.established.subscribe()
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
}
