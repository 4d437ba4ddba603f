//! Publications: what a session publishes to its client, and the handle services publish
//! through.
//!
//! * [`merge_box`]: the client's view of every document, and which subscriptions put it
//!   there;
//! * [`registry`]: the session's live subscriptions, with its merge box (plain data);
//! * [`subscription`]: the [`Subscription`] handle a publication writes through, and the
//!   worker's `sub`/`unsub`, which queue the frames the merge box returns.
//!
//! The session's shared state holds the registry; a subscription holds the session's
//! shared state. The state machine that runs a session is above both.

mod merge_box;
mod registry;
mod subscription;

pub(crate) use registry::Publications;
pub use subscription::Subscription;
pub(crate) use subscription::{Registration, register, unsubscribe};
