//! The boundary between DDP and the application.
//!
//! An application (the package server) implements [`Service`]; the DDP layer calls it
//! with a [`MethodContext`] per method call and a [`SessionContext`] per subscription and
//! knows nothing else about it.

use std::future::Future;

use exosphere_ejson::Ejson;

use crate::context::{MethodContext, SessionContext};
use crate::error::DdpError;
use crate::publication::Subscription;
use crate::reply::Reply;

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
    /// session's tracing span: spawn with `exosphere_task::spawn` to keep the session id
    /// on the task's log lines.
    fn subscribe(
        &self,
        ctx: &SessionContext,
        name: &str,
        params: Vec<Ejson>,
        sub: Subscription,
    ) -> Result<(), DdpError>;
}
