//! A server's local copy of a shared catalog's records, from which it answers sync pages.
//!
//! With several servers on one database (PostgreSQL), every sync page read from the
//! database costs a round trip carrying a megabyte of records, several times what the same
//! page costs read from a file in the server's own process. A full sync reads every record,
//! so it is where that difference shows. A [`SyncReplica`] keeps the records, with the
//! database's own `seq` numbers, epoch and head, in a store local to the server; the
//! database's store brings it up to the database's head before each page and then reads
//! the page from it. Sync tokens stay the database's: a client may page through any server.
//!
//! # The contract (every [`SyncReplica`] MUST keep it)
//!
//! * **It holds one snapshot of the primary.** [`SyncReplica::held`] is the epoch and head
//!   `seq` of the primary's snapshot the copy was last brought to (an empty epoch and head
//!   0 before the first [`apply`](SyncReplica::apply)); its records are exactly the
//!   primary's records at that snapshot.
//! * **Catching up is one transaction.** [`SyncReplica::apply`] hands `feed` a
//!   [`ReplicaSink`]; every row and reset `feed` gives it is stored in one transaction,
//!   committed with the snapshot `feed` returns as the new held one, or nothing at all if
//!   `feed` or the store fails. A page read meanwhile comes from the snapshot held before.
//!   A row replaces any record of its collection with the same `_id` or the same `seq`;
//!   [`ReplicaSink::reset`] removes every record first (a new epoch, or a primary that
//!   went back).
//! * **Pages as the primary would give them.** [`SyncReplica::read_page`] returns the page
//!   after `cursors` within `limits` from one snapshot of the copy, cut by the same rules
//!   as [`CatalogStore::read_page`](crate::CatalogStore::read_page) (a shared
//!   [`PageFill`](crate::store::PageFill)), with the held epoch and head.
//! * **Never another catalog's.** A copy that survives a restart holds a snapshot it
//!   committed (perhaps not the last: durability is the primary's, and the next catch-up
//!   brings the copy up to date); storage that is not such a copy is never read as one.

use exosphere_meteor::Collection;

use crate::error::StoreError;
use crate::store::{Cursors, Page, PageLimits, Snapshot};

/// One record as the primary stores it, for a replica to keep as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaRow {
    /// The record's collection.
    pub collection: Collection,
    /// The record's `seq` in the primary.
    pub seq: u64,
    /// The record's `_id`.
    pub id: String,
    /// The record's `lastUpdated`, as the primary keeps it for sync pages.
    pub last_updated: Option<i64>,
    /// The record's JSON text, byte for byte.
    pub json: String,
}

/// Where a catch-up's rows go, inside [`SyncReplica::apply`]'s transaction.
pub trait ReplicaSink {
    /// Removes every record: the catch-up that follows is a whole copy.
    fn reset(&mut self) -> Result<(), StoreError>;

    /// Stores `row`, replacing a record of its collection with the same `_id` or `seq`.
    fn put(&mut self, row: &ReplicaRow) -> Result<(), StoreError>;
}

/// A local copy of the primary store's records that answers sync pages (see the module
/// documentation for the contract).
pub trait SyncReplica: Send + Sync + 'static {
    /// The primary's snapshot the copy holds.
    fn held(&self) -> Result<Snapshot, StoreError>;

    /// Catches up in one transaction: `feed` is given the held snapshot and a sink, puts
    /// the rows the copy lacks into it, and returns the snapshot they bring the copy to.
    fn apply(
        &self,
        feed: &mut dyn FnMut(&Snapshot, &mut dyn ReplicaSink) -> Result<Snapshot, StoreError>,
    ) -> Result<Snapshot, StoreError>;

    /// The page after `cursors` within `limits`, at the held snapshot.
    fn read_page(&self, cursors: &Cursors, limits: &PageLimits) -> Result<Page, StoreError>;
}
