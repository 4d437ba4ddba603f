//! The client side of the catalog sync (spec §3.3): getting `syncNewPackageData` pages from a
//! package server, trusting it as little as possible.
//!
//! One job: [`sync_pass`] pages from a stored token to `upToDate` over a DDP client and hands
//! each page to a [`PageSink`]; [`Changes`] follows the server's `changes` publication, so a
//! caller syncs again when the catalog moves. Where the pages go is the sink's business:
//! `exosphere sync` applies them to its local index, the mirror to the catalog it serves.
//!
//! * `page`: one result, decoded once, every record borrowed from the received frame;
//! * `pass`: the loop itself, its options and what one pass did;
//! * `changes`: the `changes` counters, and waiting for them to move;
//! * `error`: why a pass stopped.

mod changes;
mod error;
mod page;
mod pass;

pub use changes::{Changes, change_counters};
pub use error::SyncError;
pub use page::{FIRST_TOKEN, Page, decode_page, leading_token};
pub use pass::{PageGuard, PageSink, Pass, PassOptions, sync_pass};
