//! What the upstream mirror keeps in the catalog store: its state (the upstream's sync token
//! and how the last pass went), a staged catalog that is being synced beside the served one,
//! and the upstream file behind every file URL the mirror serves.
//!
//! It lives in the store, not beside it, so that it commits in the same transaction as the
//! records it describes: a page of upstream records and the upstream token that resumes after
//! it are written together, and so are a file URL and the record that names it.
//!
//! # The contract (every backend MUST keep it)
//!
//! * [`MirrorWriter::put_state`] and the record writes of the same transaction commit
//!   together or not at all;
//! * the staged catalog is invisible to sync clients: staging a record changes no sequence
//!   number, no change counter and no page; only the mirror's own writes move staged
//!   records into the served catalog, through [`crate::CatalogWriter::upsert`] or, into a
//!   served catalog without records, all at once through [`MirrorWriter::serve_stage`],
//!   which stores exactly what upserting them one by one in the order they were staged would;
//! * [`MirrorWriter::staged`] pages through one collection's staged records in `_id` order,
//!   so a caller can move any number of them in one transaction with bounded memory;
//! * file entries of staged records ([`MirrorWriter::stage_file`]) name no served file until
//!   [`MirrorWriter::serve_staged_files`] makes them what [`MirrorWriter::put_file`] of each,
//!   in the order staged, would have made them; [`MirrorWriter::clear_stage`] drops them;
//! * [`CatalogStore::mirror_state`](crate::CatalogStore::mirror_state) reads the state without
//!   a write transaction, from the last commit, and so does
//!   [`CatalogStore::mirror_cached`](crate::CatalogStore::mirror_cached) the cached files'
//!   count and bytes.

use exosphere_meteor::{Collection, PerCollection};

use crate::error::StoreError;
use crate::record::Record;

/// The mirror's state, one per store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MirrorState {
    /// The upstream URL this state belongs to; a mirror pointed at another upstream starts
    /// over beside the served catalog.
    pub upstream: String,
    /// The upstream's sync token after the last page applied to the served catalog, as the
    /// upstream sent it (opaque JSON text); `None` before the first full mirror was applied.
    pub token: Option<String>,
    /// The upstream's sync token after the last page of a full sync staged beside the served
    /// catalog (the first mirror, or a resync after the upstream reset); `None` when no such
    /// sync is under way.
    pub staging_token: Option<String>,
    /// Why a staged catalog waits for an operator instead of being applied (it lost records
    /// or a `METEOR` release); `None` when nothing is held.
    pub held: Option<String>,
    /// When a pass last reached the upstream's `upToDate` (ms since the Unix epoch).
    pub last_success_ms: Option<i64>,
    /// The last error, and when it happened (ms); cleared by the next success.
    pub last_error: Option<(i64, String)>,
    /// When an operator last asked for a sync now (`exosphere mirror sync-now`, ms).
    pub sync_requested_ms: Option<i64>,
}

/// The mirror's operations inside a write transaction
/// ([`crate::CatalogWriter::mirror`]).
pub trait MirrorWriter {
    /// The mirror's state, if a mirror ever ran on this store.
    fn state(&mut self) -> Result<Option<MirrorState>, StoreError>;

    /// Replaces the mirror's state.
    fn put_state(&mut self, state: &MirrorState) -> Result<(), StoreError>;

    /// Adds a record to the staged catalog, replacing a staged record with the same
    /// collection and `_id`.
    fn stage(&mut self, record: &Record) -> Result<(), StoreError>;

    /// Up to `limit` staged records of `collection` whose `_id` sorts after `after` (all of
    /// them from `""`), in `_id` order, as `(_id, text)`.
    fn staged(
        &mut self,
        collection: Collection,
        after: &str,
        limit: usize,
    ) -> Result<Vec<(String, String)>, StoreError>;

    /// How many records the staged catalog holds, per collection.
    fn staged_counts(&mut self) -> Result<PerCollection<u64>, StoreError>;

    /// How many records the served catalog holds, per collection (to compare a staged
    /// catalog with before it replaces the served one).
    fn served_counts(&mut self) -> Result<PerCollection<u64>, StoreError>;

    /// Whether the staged catalog holds a record with this collection and `_id`.
    fn is_staged(&mut self, collection: Collection, id: &str) -> Result<bool, StoreError>;

    /// Empties the staged catalog, its records and its file entries.
    fn clear_stage(&mut self) -> Result<(), StoreError>;

    /// Remembers a file entry of a staged record, as [`put_file`](Self::put_file) would, but
    /// without effect until [`serve_staged_files`](Self::serve_staged_files): a staged record
    /// is not served, so neither are its files, and a first mirror names half a million
    /// files that a backend can then store in one sorted pass instead of one at a time.
    fn stage_file(&mut self, key: &str, file: &UpstreamFile) -> Result<(), StoreError>;

    /// Gives every staged file entry the effect [`put_file`](Self::put_file) of each, in the
    /// order staged, would have had, and forgets them; for the caller that serves the staged
    /// records in the same transaction.
    fn serve_staged_files(&mut self) -> Result<(), StoreError>;

    /// Moves the whole staged catalog into a served catalog that holds no record, and
    /// empties the stage; returns how many records it moved. The result is what
    /// [`crate::CatalogWriter::upsert`] of every staged record would give (collection by
    /// collection in [`Collection::ALL`] order, each in the order the records were staged (a
    /// record staged again where it was staged last), each record with a new
    /// sequence number and a counted change), without looking each one up: a first mirror
    /// is hundreds of thousands of records. Returns `None` and changes nothing when the
    /// served catalog holds a record, or when two staged records share a natural key
    /// (package name, package and version, track name, track and version): those need the
    /// record-by-record rules of the caller.
    fn serve_stage(&mut self) -> Result<Option<u64>, StoreError>;

    /// Remembers which upstream file a served file key stands for, and the SHA-256 (standard
    /// base64, as records carry `tarballHash`) its bytes must have. An entry without a hash
    /// is replaced (and, when it gets one, no longer counted as cached: its cached bytes
    /// were never checked); an entry with a hash never changes, as the published file it
    /// stands for never does: an upstream that sends another hash for the same URL does not
    /// make the mirror serve other bytes under a record it already holds.
    fn put_file(&mut self, key: &str, file: &UpstreamFile) -> Result<(), StoreError>;

    /// Records that the file of `key` is cached in the blob store with `size` bytes, or with
    /// `None` that it is not (deleted as damaged).
    fn mark_cached(&mut self, key: &str, size: Option<u64>) -> Result<(), StoreError>;

    /// Marks a name as claimed for local publishing: from then on the mirror serves no
    /// upstream record of it. Claiming a claimed name again changes nothing.
    fn claim(&mut self, claim: &Claim) -> Result<(), StoreError>;

    /// Whether a name is claimed.
    fn is_claimed(&mut self, claim: &Claim) -> Result<bool, StoreError>;

    /// Every claimed name, by kind and name.
    fn claims(&mut self) -> Result<Vec<Claim>, StoreError>;
}

/// A name taken over from the upstream for local publishing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Claim {
    /// A package name: its `packages`, `versions` and their builds.
    Package(String),
    /// A release track name: its `releaseTracks` and `releaseVersions`.
    Track(String),
}

impl Claim {
    /// The kind's name, as stored: `package` or `track`.
    pub fn kind(&self) -> &'static str {
        match self {
            Claim::Package(_) => "package",
            Claim::Track(_) => "track",
        }
    }

    /// The claimed name.
    pub fn name(&self) -> &str {
        match self {
            Claim::Package(name) | Claim::Track(name) => name,
        }
    }

    /// The claim of a stored kind and name; `None` for an unknown kind.
    pub fn from_parts(kind: &str, name: String) -> Option<Claim> {
        match kind {
            "package" => Some(Claim::Package(name)),
            "track" => Some(Claim::Track(name)),
            _ => None,
        }
    }
}

/// An upstream file a mirrored record points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamFile {
    /// Where the upstream serves it.
    pub url: String,
    /// The SHA-256 of its bytes (standard base64), when the record names one.
    pub sha256: Option<String>,
}
