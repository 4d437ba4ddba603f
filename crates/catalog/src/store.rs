//! The storage interface every catalog backend implements (SQLite and PostgreSQL).
//!
//! The interface is synchronous: the server calls it off the async workers
//! (`exosphere_task::blocking`, or `block_in_place` in the sync client's page loop). It is
//! object-safe (`&dyn CatalogStore`, `Arc<dyn CatalogStore>`) and names no backend type.
//!
//! # The sequence contract (every backend MUST keep it)
//!
//! Every insert, and every update that changes a record's text, gives the record a new
//! sequence number (`seq`) that is greater than every `seq` handed out before on that
//! store, and bumps its collection's change counter. Sync clients page by `seq`, so:
//!
//! * sequence numbers MUST become visible to readers in increasing order: once a reader
//!   can see `seq = n`, every record that will ever be committed with a smaller `seq` is
//!   already visible (or superseded). A backend with a single writer gets this by
//!   allocating `seq` inside the write transaction; a backend with concurrent writers
//!   must serialize allocation and commit (e.g. a table lock), or a client could page past
//!   a `seq` that commits later and miss that record forever;
//! * sequence numbers are never reused within a data epoch, not even after a crash
//!   (committed writes must be durable), or a client holding a cursor would skip records;
//! * deleting a record starts a new data epoch at commit, which makes every client
//!   restart from zero (`resetData`), because the protocol has no other way to delete;
//! * a catalog restored from a backup hands out again sequence numbers that clients may
//!   already hold for other records, so a restore starts a new data epoch too
//!   ([`CatalogWriter::start_epoch`]).

use std::sync::Arc;

use chrono::NaiveDate;
use exosphere_meteor::{Collection, PerCollection};

use crate::accounts::{AccountWriter, UploadTicket};
use crate::audit::{AuditEntry, AuditQuery};
use crate::error::StoreError;
use crate::mirror::{MirrorState, MirrorWriter, UpstreamFile};
use crate::record::{MAX_RECORD_SIZE, Record, StatsRow};
use crate::usage::AppReport;

/// What an upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    /// The record did not exist; it got a new `seq`.
    Inserted,
    /// The record existed with different text; it got a new `seq`.
    Updated,
    /// The record existed with identical text; nothing was touched.
    Unchanged,
}

/// Per-collection positions: the `seq` of the last record a client has received.
pub type Cursors = PerCollection<u64>;

/// One record as read for a sync page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRecord {
    /// The record's sequence number (the client's next cursor if it is the last sent).
    pub seq: u64,
    /// The record's `lastUpdated` in ms, echoed in tokens for the tool's progress hack.
    pub last_updated: Option<i64>,
    /// The record's compact EJSON text, spliced verbatim into the sync result.
    pub json: String,
}

/// One page of changes, read from one consistent snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The data epoch of the snapshot; clients holding another epoch must restart.
    pub epoch: String,
    /// The highest `seq` ever allocated as of the snapshot; no valid cursor exceeds it.
    pub head_seq: u64,
    /// Per collection, records with `seq` above the cursor, in `seq` order, within the
    /// [`PageLimits`] the page was read with.
    pub records: PerCollection<Vec<PageRecord>>,
    /// Whether any collection has records beyond those returned.
    pub has_more: bool,
}

impl Page {
    /// Moves `cursors` past this page's records, as a sync client does to ask for the next
    /// page; returns how many records it held.
    pub fn advance(&self, cursors: &mut Cursors) -> u64 {
        let mut count = 0;
        for (c, records) in self.records.iter() {
            if let Some(last) = records.last() {
                cursors[c] = last.seq;
            }
            count += records.len() as u64;
        }
        count
    }
}

/// How much one sync page may hold: a count per collection (spec §3.6) and a byte budget
/// for the whole page, so that no page outgrows what a client can receive (spec §1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimits {
    /// Most records per collection; 0 is treated as 1.
    pub records: usize,
    /// Most bytes of record text in the whole page, all collections together. The record
    /// that would pass it ends the page, unless the page holds no record yet: every page
    /// makes progress, and exceeds the budget by at most one record
    /// ([`MAX_RECORD_SIZE`]).
    pub bytes: usize,
}

/// Where a backend goes on after offering a record to a [`PageFill`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Offer the next record of this collection.
    Continue,
    /// This collection is full: go on with the next collection.
    NextCollection,
    /// The page is full: read nothing more.
    Stop,
}

/// Builds a [`Page`] by the rules of [`CatalogStore::read_page`], so that every backend
/// cuts pages the same way: the backend reads each collection's records after its cursor
/// in `seq` order, in [`Collection::ALL`] order, and offers them one by one until told to
/// stop.
#[derive(Debug)]
pub struct PageFill {
    limits: PageLimits,
    records: PerCollection<Vec<PageRecord>>,
    count: usize,
    bytes: usize,
    has_more: bool,
}

impl PageFill {
    /// An empty page to be filled within `limits`.
    pub fn new(limits: PageLimits) -> PageFill {
        PageFill {
            limits: PageLimits {
                records: limits.records.max(1),
                bytes: limits.bytes,
            },
            records: PerCollection::default(),
            count: 0,
            bytes: 0,
            has_more: false,
        }
    }

    /// Offers the next record of `collection`. A record longer than [`MAX_RECORD_SIZE`]
    /// (possible only in data written before that bound) is left out as if it did not
    /// exist, so it can never make a page unreadable; a record beyond the collection's
    /// count or the page's byte budget is left for a later page and marks the page as
    /// having more.
    pub fn offer(&mut self, collection: Collection, record: PageRecord) -> Next {
        if record.json.len() > MAX_RECORD_SIZE {
            return Next::Continue;
        }
        if self.records[collection].len() >= self.limits.records {
            self.has_more = true;
            return Next::NextCollection;
        }
        if self.count > 0 && self.bytes.saturating_add(record.json.len()) > self.limits.bytes {
            self.has_more = true;
            return Next::Stop;
        }
        self.count += 1;
        self.bytes += record.json.len();
        self.records[collection].push(record);
        Next::Continue
    }

    /// How many more bytes of record text the page takes before its byte budget is spent:
    /// a backend may leave out the records after the first that would not fit.
    pub fn bytes_left(&self) -> usize {
        self.limits.bytes.saturating_sub(self.bytes)
    }

    /// The page, read from the snapshot with this epoch and head `seq`.
    pub fn finish(self, epoch: String, head_seq: u64) -> Page {
        Page {
            epoch,
            head_seq,
            records: self.records,
            has_more: self.has_more,
        }
    }
}

/// The cheap summary the server polls to drive the `changes` and `stats` publications.
/// The default (empty epoch, zero counters, no stats days) stands in while the state
/// cannot be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogState {
    /// The current data epoch (changes when a record is deleted, or by [`CatalogWriter::start_epoch`]).
    pub epoch: String,
    /// The highest `seq` allocated so far.
    pub head_seq: u64,
    /// Per collection, the number of inserts, changing updates and deletions ever made
    /// (the `changes` publication, spec §4.3); see [`CatalogState::changes`].
    pub change_counters: PerCollection<u64>,
    /// The first finished day with a `/stats/v1` file: stats rows, or a rolled-up day (the
    /// `stats` publication, spec §4.4). Days from the current UTC day on are unfinished and
    /// never advertised, even when rolled up by hand.
    pub stats_earliest: Option<String>,
    /// The last finished day with a `/stats/v1` file (before the current UTC day).
    pub stats_latest: Option<String>,
}

/// Which records a store holds: its data epoch and head sequence (see [`CatalogState`]).
/// Two reads that give the same snapshot saw the same records, which is what a sync page
/// cached from one may be served at ([`CatalogStore::snapshot`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The data epoch.
    pub epoch: String,
    /// The highest `seq` allocated so far.
    pub head_seq: u64,
}

impl CatalogState {
    /// The change counter of one collection, as the `changes` publication sends it.
    pub fn changes(&self, collection: Collection) -> u64 {
        self.change_counters[collection]
    }
}

/// One item of a full export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportItem<'a> {
    /// A catalog record's stored text.
    Record {
        /// Its collection.
        collection: Collection,
        /// Its compact EJSON text.
        json: &'a str,
    },
    /// A stats row.
    Stats(&'a StatsRow),
}

/// A catalog storage backend.
pub trait CatalogStore: Send + Sync + 'static {
    /// Runs `f` in one write transaction: everything `f` writes commits atomically, or
    /// nothing does (`f` returning `Err` rolls back; use [`StoreError::Aborted`] to roll
    /// back for a reason of your own). `f` is called exactly once. Writers are serialized,
    /// also across processes sharing the data directory.
    fn write(
        &self,
        f: &mut dyn FnMut(&mut dyn CatalogWriter) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;

    /// Reads one sync page from one consistent snapshot: per collection, the records with
    /// `seq > cursors[c]` in `seq` order, within `limits`, plus whether more remain.
    /// Collections are filled in [`Collection::ALL`] order and the byte budget is shared,
    /// so a page cut by bytes leaves the later collections for the next page; records
    /// longer than [`MAX_RECORD_SIZE`] are never in a page. Backends build the page with
    /// a [`PageFill`], which holds these rules.
    fn read_page(&self, cursors: &Cursors, limits: &PageLimits) -> Result<Page, StoreError>;

    /// Returns the epoch, head `seq`, change counters and stats day range. Cheap: the
    /// server polls it several times a second.
    fn state(&self) -> Result<CatalogState, StoreError>;

    /// Returns the epoch and head `seq` alone: the part of [`state`](Self::state) that says
    /// whether the records changed. The sync page cache asks it before every page it answers
    /// (and a prefetch when nothing is cached yet or a page's epoch is not the cached pages'),
    /// so a backend may answer it cheaper than the whole state (which also reads the
    /// stats day range); by default it is taken from the whole state.
    fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let state = self.state()?;
        Ok(Snapshot {
            epoch: state.epoch,
            head_seq: state.head_seq,
        })
    }

    /// Calls `f` with each of a day's stats rows, ordered by name and version, from one
    /// consistent snapshot and without holding the day in memory (a day can be large), and
    /// returns whether the day has data: `false` for a day without rows that was never
    /// rolled up (including strings that are not valid dates). A day that was rolled up
    /// from recordings has data even when nothing was added on it. An `Err` from `f` stops
    /// the read and is returned.
    fn stats_day(
        &self,
        date: &str,
        f: &mut dyn FnMut(&StatsRow) -> Result<(), StoreError>,
    ) -> Result<bool, StoreError>;

    /// Returns one package's stats rows from `from` to `to` (both included), ordered by
    /// day and version.
    fn package_stats_rows(
        &self,
        name: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<StatsRow>, StoreError>;

    /// Returns the days before `before` that got usage recordings since their last rollup
    /// (or were never rolled up), oldest first.
    fn pending_usage_days(&self, before: NaiveDate) -> Result<Vec<NaiveDate>, StoreError>;

    /// The upload ticket whose URL secret hashes to `hash`, with the user of the pending
    /// publish it belongs to, read without a write transaction: a PUT with an unknown or
    /// used secret is answered from this alone. `None` when there is no such ticket or no
    /// pending publish lists it (it can then never be published).
    fn upload_ticket(&self, hash: &str) -> Result<Option<UploadTicket>, StoreError>;

    /// Calls `f` for every record (collection by collection in [`Collection::ALL`] order,
    /// each in `seq` order) and then every stats row (by day, name, version), all from one
    /// consistent snapshot. An `Err` from `f` stops the export and is returned.
    fn export(
        &self,
        f: &mut dyn FnMut(ExportItem<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;

    /// The upstream mirror's state as last committed, read without a write transaction
    /// (`/healthz`, `exosphere mirror status`); `None` when no mirror ever ran here.
    fn mirror_state(&self) -> Result<Option<MirrorState>, StoreError>;

    /// The upstream file a mirrored file key stands for, read without a write transaction
    /// (every download of a mirrored file asks); `None` for a key no mirrored record named.
    fn mirror_file(&self, key: &str) -> Result<Option<UpstreamFile>, StoreError>;

    /// Up to `limit` mirrored file keys that sort after `after` (all of them from `""`), in
    /// key order, with their upstream files: for carrying a mirror's files elsewhere.
    fn mirror_files(
        &self,
        after: &str,
        limit: usize,
    ) -> Result<Vec<(String, UpstreamFile)>, StoreError>;

    /// How many mirrored files are cached, and their bytes (`/healthz`).
    fn mirror_cached(&self) -> Result<(u64, u64), StoreError>;

    /// The audit entries that match `query` ([`AuditQuery::matches`]), newest first (entries
    /// of the same millisecond in the reverse order they were written), at most
    /// `query.limit` of them; read without a write transaction, beside a running server.
    fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError>;

    /// Joins the servers of this catalog: `exosphere serve` calls it once before it touches
    /// state that is marked with the server that owns it ("receiving" upload tickets), and
    /// holds the returned [`ServerSeat`] for as long as it serves.
    ///
    /// Contract: the seat's [`ServerSeat::id`] is unique among the seats held at the same
    /// time on the catalog, and the catalog can tell from it whether the server holding it
    /// still runs ([`crate::accounts::AccountWriter::receiving_elsewhere`],
    /// [`crate::accounts::AccountWriter::reopen_abandoned_uploads`]): the seat is released
    /// when it is dropped or its process ends, however it ends (so a crashed server's
    /// marks are seen as abandoned). The seat is not a fence: it can lapse while its server
    /// runs (while the backend reconnects it after its connection dropped: meanwhile the
    /// other servers see its marks as abandoned and may take its uploads over, which
    /// [`crate::accounts::AccountWriter::end_receiving`] then refuses to end for it), and it
    /// can outlive a dead server until the backend notices that the server is gone (for
    /// PostgreSQL, about a minute of TCP keepalives). A backend on which only one server
    /// can run at a time (SQLite: the data directory's serve lock, which `serve` takes
    /// first) returns [`ServerSeat::sole`].
    fn join_servers(&self) -> Result<ServerSeat, StoreError>;

    /// Takes `duty` for this process if no other process holds it, without waiting:
    /// `Ok(None)` when another one does. Several servers on one catalog run each duty once
    /// between them: the one holding it does the work, the others skip it (or stand by,
    /// trying again later). Released when the returned [`Hold`] is dropped or its process
    /// ends, however it ends, so a crashed holder's duty passes to another server. A
    /// backend on which only one server can run at a time always gives it
    /// ([`Hold::sole`]). `Err` means the backend could not say (the database away): not
    /// that another server holds the duty.
    ///
    /// A duty is not a strict fence: it can be lost while its [`Hold`] lives (its
    /// connection dropped), and [`Hold::lost`] notices that late (for PostgreSQL, within a
    /// few seconds, before the database would let another server take it when only the
    /// network failed; at once when the database ended the session). Duty work must
    /// therefore tolerate a brief overlap with another server's: the rollup and the sweep
    /// are idempotent (each run recomputes or deletes what is there) and do not check
    /// [`Hold::lost`]; the mirror, which must not apply pages twice over, checks it every
    /// second and stops.
    fn try_duty(&self, duty: Duty) -> Result<Option<Hold>, StoreError>;

    /// Starts telling `wake` soon after commits that may have changed [`Self::state`], by
    /// any process on the catalog, for as long as the returned [`Hold`] lives: the fast
    /// path of [`crate::watch()`], which otherwise notices them at its next poll. Hints are
    /// best effort: one may be lost (while the backend reconnects), come twice, or come for
    /// a commit that changed nothing, so callers keep polling as the source of truth and
    /// read the state when woken. `Ok(None)` when the backend has no way to hint (SQLite);
    /// the caller then only polls. `wake` must return at once (it is called from the
    /// backend's own threads).
    fn hint_changes(&self, wake: Arc<dyn Fn() + Send + Sync>) -> Result<Option<Hold>, StoreError>;
}

/// A job that several servers on one catalog run once between them
/// ([`CatalogStore::try_duty`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Duty {
    /// Following the upstream (`serve --upstream`): two mirrors would apply the same
    /// upstream pages twice over.
    Mirror,
    /// A run of the daily usage rollup (spec §7.2).
    Rollup,
    /// A run of the sweep of expired uploads and pending publishes (spec §5.2).
    Sweep,
}

impl Duty {
    /// The duty's name, for logs and errors.
    pub fn name(self) -> &'static str {
        match self {
            Duty::Mirror => "mirror",
            Duty::Rollup => "rollup",
            Duty::Sweep => "sweep",
        }
    }
}

/// Something a backend keeps alive for as long as a claim lasts (a seat, a duty, a
/// listener): dropping it releases the claim. Backend-neutral, so that the server holds it
/// without knowing what the backend keeps (a PostgreSQL connection holding an advisory lock,
/// a task, or nothing).
#[must_use = "the claim is released when this is dropped"]
pub struct Hold {
    /// What keeps the claim; asked whether it was lost.
    kept: Option<Box<dyn Kept>>,
}

/// What a [`Hold`] keeps alive, and whether the claim it stands for was lost on the way
/// (its connection closed by the database or the network).
pub trait Kept: Send + Sync {
    /// Whether the claim is gone although the hold still lives.
    fn lost(&self) -> bool;
}

impl Hold {
    /// The hold of a backend on which only one process can hold the claim anyway: never
    /// lost.
    pub fn sole() -> Hold {
        Hold { kept: None }
    }

    /// A hold that lasts as long as `kept` does (`kept` releases the claim when dropped).
    pub fn keeping(kept: impl Kept + 'static) -> Hold {
        Hold {
            kept: Some(Box::new(kept)),
        }
    }

    /// Whether the claim was lost while this hold lived (a duty's holder then stops the
    /// work and tries to take the duty again).
    pub fn lost(&self) -> bool {
        self.kept.as_ref().is_some_and(|kept| kept.lost())
    }
}

/// One running server's seat among the servers of a catalog ([`CatalogStore::join_servers`]).
#[must_use = "the seat is given up when this is dropped"]
pub struct ServerSeat {
    id: String,
    _hold: Hold,
}

impl ServerSeat {
    /// The seat of the one server a backend lets run at a time.
    pub fn sole() -> ServerSeat {
        ServerSeat::new(SOLE_SERVER.to_owned(), Hold::sole())
    }

    /// The seat `id`, held for as long as `hold` lives.
    pub fn new(id: String, hold: Hold) -> ServerSeat {
        ServerSeat { id, _hold: hold }
    }

    /// This server's id among those holding a seat now, as upload marks record it.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// The id of [`ServerSeat::sole`].
const SOLE_SERVER: &str = "sole";

/// The operations available inside [`CatalogStore::write`].
pub trait CatalogWriter {
    /// Reads a record's current text inside the transaction, for read-modify-write
    /// updates (e.g. publishing a build).
    fn get(&mut self, collection: Collection, id: &str) -> Result<Option<String>, StoreError>;

    /// Inserts or replaces the record with the same collection and `_id`. Identical text
    /// is [`Upsert::Unchanged`] and touches nothing; otherwise the record gets a new `seq`.
    /// Replacing a published version or build with text that changes its content is
    /// refused with [`StoreError::Immutable`], and so is a new version record of a
    /// `name@version` already published under another `_id`
    /// ([`StoreError::PublishedVersionTaken`]), both by [`crate::immutable::check_upsert`]; a
    /// refused upsert writes nothing.
    fn upsert(&mut self, record: &Record) -> Result<Upsert, StoreError>;

    /// Deletes a record; returns whether it existed. A deletion starts a new data epoch
    /// when the transaction commits. Deleting a published version or build is refused with
    /// [`StoreError::PublishedDeletion`] ([`crate::immutable::check_deletion`]).
    fn delete(&mut self, collection: Collection, id: &str) -> Result<bool, StoreError>;

    /// Starts a new data epoch when the transaction commits, as a deletion does, without
    /// touching any record, sequence number or change counter: every client holding a token
    /// of the old epoch gets `resetData` once and then the catalog in full. For a catalog
    /// whose head sequence may be below what clients already saw (a restored backup), where
    /// the sequence numbers they hold will be handed out again for other records.
    fn start_epoch(&mut self) -> Result<(), StoreError>;

    /// Inserts or replaces the stats row with the same date, name and version.
    fn upsert_stats(&mut self, row: &StatsRow) -> Result<(), StoreError>;

    /// Records one app's report as received on `day` (UTC), following the counting rules
    /// of [`crate::usage`]: every `name@version` the app never reported before is added
    /// on `day`, and `day` becomes pending for rollup.
    fn record_usage(&mut self, day: NaiveDate, report: &AppReport) -> Result<(), StoreError>;

    /// Replaces `day`'s stats rows with the counts of its recordings and marks the day
    /// rolled up; returns the number of rows, or `None` (touching nothing) when nothing
    /// was ever recorded on `day`.
    fn roll_up_usage(&mut self, day: NaiveDate) -> Result<Option<u64>, StoreError>;

    /// Finds records by their natural key (names and versions rather than `_id`), for
    /// the publishing methods; usually zero or one record, several for builds.
    fn find(&mut self, key: &Lookup<'_>) -> Result<Vec<String>, StoreError>;

    /// Appends an entry to the audit log, committed with the rest of this transaction.
    fn audit(&mut self, entry: &AuditEntry) -> Result<(), StoreError>;

    /// The account and publishing rows of this same transaction.
    fn accounts(&mut self) -> &mut dyn AccountWriter;

    /// The upstream mirror's rows of this same transaction.
    fn mirror(&mut self) -> &mut dyn MirrorWriter;
}

/// A natural key of catalog records: how the `meteor` tool names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// The `packages` record with this `name`.
    Package(&'a str),
    /// The `versions` record with this `packageName` and `version`.
    Version {
        /// The package name.
        package: &'a str,
        /// The version string.
        version: &'a str,
    },
    /// Every `versions` record of the package with this name.
    VersionsOf(&'a str),
    /// The `builds` records of the version with this `_id`.
    BuildsOf(&'a str),
    /// The `releaseTracks` record with this `name`.
    ReleaseTrack(&'a str),
    /// The `releaseVersions` record with this `track` and `version`.
    ReleaseVersion {
        /// The track name.
        track: &'a str,
        /// The version string.
        version: &'a str,
    },
    /// Every `releaseVersions` record of the track with this name.
    ReleaseVersionsOf(&'a str),
}

/// The fields of a record of `collection` that [`Lookup`] finds it by, in the order its
/// two-field lookups name them: `(packageName, version)` of a version, `(track, version)` of
/// a release version, the one field of the other collections.
pub fn key_fields(collection: Collection) -> &'static [&'static str] {
    match collection {
        Collection::Packages | Collection::ReleaseTracks => &["name"],
        Collection::Versions => &["packageName", "version"],
        Collection::Builds => &["versionId"],
        Collection::ReleaseVersions => &["track", "version"],
    }
}

/// The natural key of a record of `collection` whose text is `json`, as [`Lookup`] finds it:
/// the value of each of its [`key_fields`] that is a string (`None` for an absent field, or
/// one holding anything else, which no lookup names); the first of two same-named fields
/// counts, so the text is read only up to the last key field (bulk loads read every record
/// through here). Text that is not a JSON object has no key.
pub fn natural_key(collection: Collection, json: &str) -> [Option<String>; 2] {
    let mut visitor = KeyVisitor {
        fields: key_fields(collection),
        key: [None, None],
    };
    let mut de = serde_json::Deserializer::from_str(json);
    // Stopping once every field is read leaves the object unfinished, which the parser
    // reports as an error; the fields read are the key either way.
    let _unfinished = serde::Deserializer::deserialize_map(&mut de, &mut visitor);
    visitor.key
}

/// Reads the top-level fields of a record named by `fields` into `key`, skipping all others,
/// and stops when it has them all.
struct KeyVisitor {
    fields: &'static [&'static str],
    key: [Option<String>; 2],
}

impl<'de> serde::de::Visitor<'de> for &mut KeyVisitor {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a record object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = [false; 2];
        let mut left = self.fields.len();
        while let Some(name) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match self.fields.iter().position(|field| *field == name) {
                Some(i) if !seen[i] => {
                    seen[i] = true;
                    self.key[i] = map.next_value::<KeyValue>()?.0;
                    left -= 1;
                    if left == 0 {
                        return Ok(());
                    }
                }
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A field's value as a key: the string it holds, or `None` for any other value.
struct KeyValue(Option<String>);

impl<'de> serde::Deserialize<'de> for KeyValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match <serde_json::Value as serde::Deserialize>::deserialize(deserializer)? {
            serde_json::Value::String(text) => Ok(KeyValue(Some(text))),
            _ => Ok(KeyValue(None)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_natural_key_is_the_string_fields_lookups_name() {
        let version =
            r#"{"_id":"v","version":"1.0.0","x":{"packageName":"no"},"packageName":"a:b"}"#;
        assert_eq!(
            natural_key(Collection::Versions, version),
            [Some("a:b".to_owned()), Some("1.0.0".to_owned())]
        );
        let escaped = r#"{"name":"a\u0000b\n","name":"second"}"#;
        assert_eq!(
            natural_key(Collection::Packages, escaped),
            [Some("a\0b\n".to_owned()), None]
        );
        assert_eq!(
            natural_key(Collection::Builds, r#"{"versionId":5}"#),
            [None, None]
        );
        assert_eq!(natural_key(Collection::ReleaseTracks, "[1]"), [None, None]);
    }

    fn rec(seq: u64, len: usize) -> PageRecord {
        PageRecord {
            seq,
            last_updated: None,
            json: "x".repeat(len),
        }
    }

    fn seqs(page: &Page, c: Collection) -> Vec<u64> {
        page.records[c].iter().map(|r| r.seq).collect()
    }

    #[test]
    fn a_page_is_cut_by_count_per_collection() {
        let mut fill = PageFill::new(PageLimits {
            records: 2,
            bytes: usize::MAX,
        });
        assert_eq!(fill.offer(Collection::Packages, rec(1, 10)), Next::Continue);
        assert_eq!(fill.offer(Collection::Packages, rec(2, 10)), Next::Continue);
        assert_eq!(
            fill.offer(Collection::Packages, rec(3, 10)),
            Next::NextCollection
        );
        assert_eq!(fill.offer(Collection::Versions, rec(4, 10)), Next::Continue);
        let page = fill.finish("e".into(), 4);
        assert_eq!(seqs(&page, Collection::Packages), [1, 2]);
        assert_eq!(seqs(&page, Collection::Versions), [4]);
        assert!(page.has_more);
    }

    #[test]
    fn a_page_is_cut_by_bytes_across_collections_but_holds_one_record() {
        let mut fill = PageFill::new(PageLimits {
            records: 500,
            bytes: 25,
        });
        assert_eq!(fill.offer(Collection::Packages, rec(1, 10)), Next::Continue);
        assert_eq!(fill.offer(Collection::Versions, rec(2, 15)), Next::Continue);
        assert_eq!(fill.offer(Collection::Versions, rec(3, 1)), Next::Stop);
        let page = fill.finish("e".into(), 3);
        assert_eq!(seqs(&page, Collection::Packages), [1]);
        assert_eq!(seqs(&page, Collection::Versions), [2]);
        assert!(page.has_more);

        let mut fill = PageFill::new(PageLimits {
            records: 0,
            bytes: 0,
        });
        assert_eq!(fill.offer(Collection::Builds, rec(7, 1000)), Next::Continue);
        assert_eq!(
            fill.offer(Collection::Builds, rec(8, 1)),
            Next::NextCollection
        );
        assert_eq!(fill.offer(Collection::ReleaseTracks, rec(9, 1)), Next::Stop);
        let page = fill.finish("e".into(), 9);
        assert_eq!(seqs(&page, Collection::Builds), [7]);
        assert!(page.has_more);
    }

    #[test]
    fn oversized_records_are_left_out_without_ending_the_page() {
        let mut fill = PageFill::new(PageLimits {
            records: 1,
            bytes: 10,
        });
        let huge = rec(1, MAX_RECORD_SIZE + 1);
        assert_eq!(fill.offer(Collection::Versions, huge), Next::Continue);
        assert_eq!(fill.offer(Collection::Versions, rec(2, 5)), Next::Continue);
        let page = fill.finish("e".into(), 2);
        assert_eq!(seqs(&page, Collection::Versions), [2]);
        assert!(!page.has_more);

        let mut fill = PageFill::new(PageLimits {
            records: 5,
            bytes: 10,
        });
        let huge = rec(1, MAX_RECORD_SIZE + 1);
        assert_eq!(fill.offer(Collection::Versions, huge), Next::Continue);
        let page = fill.finish("e".into(), 1);
        assert!(page.records.iter().all(|(_, r)| r.is_empty()));
        assert!(!page.has_more, "a left-out record is not more to send");
    }
}
