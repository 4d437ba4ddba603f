//! A DDP session: one connection's protocol state, from `connect` to close (spec §1.1–§1.3).
//!
//! * [`machine`]: the state machine a transport runs ([`run`]): handshake, then reading
//!   and answering until the connection ends;
//! * [`worker`]: the session's `method`/`sub`/`unsub` queue, one at a time, in order;
//! * [`heartbeat`] and [`rate_limit`]: the clocks the reader consults;
//! * [`shared`]: the state the reader, the worker and the subscriptions share;
//! * [`close`]: why the session ended, for the transport to act on.
//!
//! Sessions depend on the [`Server`](crate::Server) (limits, admission gauges, shutdown)
//! and the [`Service`](crate::Service); transports depend on sessions, never the reverse:
//! a session sees its connection only as a stream of frames and an
//! [`Outbox`](crate::outbox::Outbox).

mod close;
mod heartbeat;
mod machine;
mod shared;
mod worker;

pub(crate) use close::CloseReason;
pub(crate) use machine::run;
pub(crate) use shared::SessionShared;
