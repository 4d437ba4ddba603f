//! Sync pages from the server's local copy of the records ([`SyncReplica`]), brought up to
//! the database's head before each page.
//!
//! A page read from PostgreSQL is a round trip carrying a megabyte of records, and on a
//! busy machine it costs the database's backend and this process several times what the
//! same page costs read from a SQLite file in the process (docs/BENCHMARKS.md, "Sync pages
//! from a local replica"). A store given a replica
//! ([`PgStore::with_sync_replica`]) answers [`read_page`](exosphere_catalog::CatalogStore::read_page)
//! from it:
//!
//! 1. it reads the database's snapshot (the meta row, as every page already did);
//! 2. if the replica holds another snapshot, it catches up: in one `REPEATABLE READ`
//!    transaction it reads the meta row and every record with a `seq` above the replica's
//!    head (all of them, after a reset, when the epoch changed), and the replica stores them
//!    in one transaction of its own, with the snapshot they bring it to;
//! 3. it reads the page from the replica, which reports the replica's snapshot.
//!
//! In practice the page is read first: it reports the snapshot the replica held, and only a
//! page read at another snapshot than step 1's is read again after the catch-up, so a page
//! costs one read of the replica when nothing changed.
//!
//! Read-your-writes holds (spec §3.6): a write committed before the call, through any
//! server, is in the snapshot of step 1, so in the replica by step 3. The sequence contract
//! holds because the replica only ever holds a snapshot of the database, whose numbers are
//! committed in order. Sync tokens are the database's `seq` numbers, so a client may page
//! through several servers. A catch-up is one transaction on each side, so a page never
//! mixes two snapshots, and within one epoch records are only added or moved to a higher
//! `seq` (a removal starts an epoch), so the records above the replica's head are all that
//! changed.
//!
//! A database that went back (a restore, a failover) is noticed as before: the replica's
//! snapshot is noted as seen ([`Seen`](crate::seen::Seen)), so a database head below it
//! starts a new epoch, which the replica then copies whole.

use std::sync::atomic::Ordering;

use exosphere_catalog::columns::{snake, to_u64};
use exosphere_catalog::error::StoreError;
use exosphere_catalog::replica::{ReplicaRow, ReplicaSink, SyncReplica};
use exosphere_catalog::store::{CatalogStore as _, Cursors, Page, PageLimits, Snapshot};
use exosphere_meteor::Collection;

use crate::PgStore;
use crate::session::col;
use crate::writer::meta_of;

/// How many records a catch-up fetches from the database at a time: what it holds in
/// memory at once (about 1.6 MB of the largest records).
const CATCH_UP_BATCH: i32 = 1000;

impl PgStore {
    /// This store, answering sync pages from `replica` (see the module doc), which is
    /// brought up to the database's head now: a server calls this before it listens, so its
    /// first sync is served from the replica. What the replica held is noted as seen, so a
    /// database that went back below it starts a new epoch.
    pub fn with_sync_replica(mut self, replica: Box<dyn SyncReplica>) -> Result<Self, StoreError> {
        let held = replica.held()?;
        if !held.epoch.is_empty() {
            self.seen.read_went_back(None, &held.epoch, held.head_seq);
        }
        self.replica = Some(replica);
        let started = std::time::Instant::now();
        let primary = self.snapshot()?;
        let records = self.replica_page_ready(&primary)?;
        tracing::info!(
            database = %self.database,
            records,
            epoch = %primary.epoch,
            head_seq = primary.head_seq,
            elapsed = ?started.elapsed(),
            "the sync replica is up to date"
        );
        Ok(self)
    }

    /// The page after `cursors` within `limits` from the replica, caught up first to the
    /// database's snapshot if it holds another; `None` without a replica, or when it failed
    /// (its disk full, say), and the page must be read from the database, which gives the
    /// same page: a failing replica must not stop sync.
    pub(crate) fn read_replica_page(&self, cursors: &Cursors, limits: &PageLimits) -> Option<Page> {
        let replica = self.replica.as_ref()?;
        // A database that cannot be read is not the replica failing: the read from the
        // database that follows reports it.
        let primary = self.snapshot().ok()?;
        // A page reports the snapshot the replica held when it was read, so the usual page,
        // read at the database's snapshot, needs no other read of the replica; one read
        // behind it is read again once the replica has caught up.
        let read = replica.read_page(cursors, limits).and_then(|page| {
            if page.epoch == primary.epoch && page.head_seq == primary.head_seq {
                return Ok(page);
            }
            self.replica_page_ready(&primary)?;
            replica.read_page(cursors, limits)
        });
        match read {
            Ok(page) => {
                if self.replica_failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(
                        database = %self.database,
                        "the sync replica answers again"
                    );
                }
                Some(page)
            }
            Err(error) => {
                if !self.replica_failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        database = %self.database,
                        %error,
                        "the sync replica failed; reading sync pages from the database until it \
                         answers again"
                    );
                }
                None
            }
        }
    }

    /// Catches the replica up unless it holds `primary`, the database's snapshot; returns
    /// how many records it copied.
    fn replica_page_ready(&self, primary: &Snapshot) -> Result<u64, StoreError> {
        let Some(replica) = &self.replica else {
            return Ok(0);
        };
        if replica.held()? == *primary {
            return Ok(0);
        }
        let started = std::time::Instant::now();
        let mut rows = 0u64;
        let to = replica.apply(&mut |held, sink| {
            // Another call caught up while this one waited for the replica's writer.
            if held == primary {
                return Ok(held.clone());
            }
            self.feed(held, sink, &mut rows)
        })?;
        tracing::debug!(
            database = %self.database,
            records = rows,
            epoch = %to.epoch,
            head_seq = to.head_seq,
            elapsed = ?started.elapsed(),
            "caught the sync replica up"
        );
        Ok(rows)
    }

    /// Puts into `sink` what the replica, holding `held`, lacks of the database's current
    /// snapshot, read in one transaction; returns that snapshot and counts the records into
    /// `rows`. A head below `held` in the same epoch is refused (the database went back
    /// since this call's snapshot was read: the next read's check starts a new epoch).
    fn feed(
        &self,
        held: &Snapshot,
        sink: &mut dyn ReplicaSink,
        rows: &mut u64,
    ) -> Result<Snapshot, StoreError> {
        let before = self.seen.before_read();
        self.read(|s| {
            let meta = meta_of(s.query_opt(&self.sql.read_meta, &[])?)?;
            let same_epoch = held.epoch == meta.epoch;
            if same_epoch && held.head_seq > meta.head_seq
                || self
                    .seen
                    .read_went_back(before.as_ref(), &meta.epoch, meta.head_seq)
            {
                return Err(StoreError::Corrupt(format!(
                    "the head seq of {} went back to {} in its epoch; the next read starts a \
                     new epoch",
                    self.database, meta.head_seq
                )));
            }
            let after: i64 = if same_epoch {
                i64::try_from(held.head_seq).unwrap_or(i64::MAX)
            } else {
                sink.reset()?;
                0
            };
            for collection in Collection::ALL {
                let sql = format!(
                    "SELECT seq, id, last_updated, json FROM rec_{} WHERE seq > $1 ORDER BY seq",
                    snake(collection)
                );
                *rows += s.rows_in_batches(&sql, &[&after], CATCH_UP_BATCH, |row| {
                    sink.put(&ReplicaRow {
                        collection,
                        seq: to_u64(col(row, 0)?, "seq")?,
                        id: col(row, 1)?,
                        last_updated: col(row, 2)?,
                        json: col(row, 3)?,
                    })?;
                    Ok(true)
                })?;
            }
            Ok(Snapshot {
                epoch: meta.epoch,
                head_seq: meta.head_seq,
            })
        })
    }
}
