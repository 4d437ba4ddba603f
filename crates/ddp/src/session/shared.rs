//! The state one session shares between its reader, its worker and its subscriptions.
//!
//! A leaf of the session layer: it names the connection's context, its outbound queue and
//! its publications, and nothing that runs the session, so a
//! [`Subscription`](crate::Subscription) can hold it without depending on the state machine.

use std::sync::Arc;

use tokio::sync::{Mutex, watch};

use crate::context::SessionContext;
use crate::outbox::Outbox;
use crate::publication::Publications;

/// State shared by the reader, the worker and the session's subscriptions.
#[derive(Debug)]
pub(crate) struct SessionShared {
    pub(crate) ctx: Arc<SessionContext>,
    pub(crate) outbox: Outbox,
    /// Becomes `true` once the session has ended.
    pub(crate) closed: watch::Sender<bool>,
    pub(crate) publications: Mutex<Publications>,
    pub(crate) max_subscriptions: usize,
}

impl SessionShared {
    pub(crate) fn new(ctx: Arc<SessionContext>, outbox: Outbox, max_subscriptions: usize) -> Self {
        Self {
            ctx,
            outbox,
            closed: watch::Sender::new(false),
            publications: Mutex::new(Publications::default()),
            max_subscriptions,
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }
}
