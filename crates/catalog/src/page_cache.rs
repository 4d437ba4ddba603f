//! Encoded sync pages kept ready ahead of the client.
//!
//! A client syncing the catalog (spec §3.3) asks for one page, parses it, then asks for the
//! next with the token it was just given. Between the two calls the server would sit idle,
//! and after the second call the client would sit idle while the server reads and encodes.
//! [`Syncer`] overlaps the two: after answering a page it can compute the next ones
//! ([`Syncer::prefetch`], run on a background thread by the caller, two pages ahead) so
//! that the next call is answered from memory. Clients that sync at the same time (a CI
//! fleet starting from an empty catalog asks for identical pages) share the cached pages.
//!
//! A cached page is only served while the store is unchanged (same epoch and head
//! sequence), so a client always sees every write that finished before its call
//! (read-your-writes, spec §3.6). The cache is bounded in bytes.
//!
//! The caller chooses how a page's text is kept (the type parameter `P`, built once from
//! the computed text and cloned for every client it is served to): the server keeps its
//! DDP layer's shared reply text, which carries the page's WebSocket-compressed form, so a
//! page is compressed once for all its clients while the catalog knows only its text
//! ([`PageText`]).
//!
//! Memory holds a fraction of a full sync of a large catalog, so pages it evicts can go to
//! a second tier of files (`page_disk.rs`, [`Syncer::with_files`]), with the encoded forms
//! computed for them: a page read back from a file is served, not recomputed or
//! recompressed. Both tiers serve a page only while the store is at the snapshot it was
//! read from. A page missing from memory is computed (or read from its file) by one caller
//! while the others answering it wait (a prefetch never does), so clients syncing at once
//! share every page.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::page_disk::{PageFiles, PageToStore, StoredText};
use crate::store::{CatalogStore, Snapshot};
use crate::sync::{Answer, NextCall, Paging, SyncError, answer};

/// How long a call waits for a page another thread is computing before computing it itself.
const PENDING_WAIT: Duration = Duration::from_secs(5);

/// How many pages after the one just answered [`Syncer::prefetch`] keeps computed: the next
/// page is read from the store while the client still receives this one, and the page after
/// it while the client receives the next.
const PREFETCH_AHEAD: usize = 2;

/// How a cached page's text is kept: built once from the computed text and cloned for every
/// client it is served to. Beside its text, a page may carry encoded forms computed for it
/// later (the server's carries its WebSocket-compressed bodies, one per level); the disk tier
/// keeps them with the text, so a page read back from a file needs no recompression.
pub trait PageText: From<String> + AsRef<str> + Clone {
    /// The encoded forms computed so far, each named by a tag of the type's own choosing.
    fn forms(&self) -> Vec<(u8, Arc<[u8]>)> {
        Vec::new()
    }

    /// The page rebuilt from its text as read back from its file and the forms
    /// [`forms`](Self::forms) gave for it. The text is the file mapped into memory: a type
    /// that can keep it as it is (the server's can) serves the page without copying it; by
    /// default it is copied into a `String`.
    fn with_forms(text: StoredText, forms: Vec<(u8, Arc<[u8]>)>) -> Self {
        drop(forms);
        Self::from(text.as_ref().to_owned())
    }
}

impl PageText for String {}

impl PageText for Arc<str> {}

/// Answers `syncNewPackageData` calls, with a bounded cache of encoded pages held as `P`,
/// and optionally a second, larger tier of page files ([`Syncer::with_files`]).
pub struct Syncer<P> {
    store: Arc<dyn CatalogStore>,
    paging: Paging,
    max_bytes: usize,
    cache: Mutex<Cache<P>>,
    ready: Condvar,
    files: Option<PageFiles>,
}

/// What identifies a page: the token exactly as the server wrote it and the two options
/// that change a page's content.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    token: String,
    short: bool,
    compress: bool,
}

impl Key {
    /// The key as one string, which names the page's file in the disk tier.
    fn file_key(&self) -> String {
        format!(
            "{}{}{}",
            u8::from(self.short),
            u8::from(self.compress),
            self.token
        )
    }
}

enum Slot<P> {
    /// Another thread is computing this page.
    Pending,
    Ready(Entry<P>),
}

#[derive(Clone)]
struct Entry<P> {
    epoch: String,
    head_seq: u64,
    text: P,
    next: Option<NextCall>,
}

impl<P> Entry<P> {
    fn is_current(&self, snapshot: &Snapshot) -> bool {
        self.epoch == snapshot.epoch && self.head_seq == snapshot.head_seq
    }

    fn into_answer(self) -> Answer<P> {
        Answer {
            text: self.text,
            next: self.next,
            epoch: self.epoch,
            head_seq: self.head_seq,
        }
    }
}

/// What a caller found when it looked a page up in memory.
enum Claim<'a, P: PageText> {
    /// The page, current.
    Ready(Entry<P>),
    /// The page is missing or stale, and this caller now computes it (its slot is pending
    /// until the [`Claimed`] is filled or dropped).
    Mine(Claimed<'a, P>),
    /// Another thread is computing it.
    Busy,
}

/// Whether a caller looking a page up waits for another thread computing it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Up to [`PENDING_WAIT`]: an answer, whose client is waiting for the page anyway.
    Pending,
    /// Not at all: a prefetch, which must not park a thread per client.
    Never,
}

/// A page slot this caller marked pending. [`Syncer::fill`] disarms it once it has settled
/// the slot; if it is dropped still armed (the caller failed before computing the page, or
/// panicked while reading or computing it), the slot is removed and the waiters woken, so
/// that the page is not left pending for the life of the process with every answer for it
/// waiting [`PENDING_WAIT`].
struct Claimed<'a, P: PageText> {
    syncer: &'a Syncer<P>,
    key: Option<Key>,
}

impl<P: PageText> Drop for Claimed<'_, P> {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else {
            return;
        };
        {
            let mut cache = self.syncer.lock();
            if matches!(cache.slots.get(&key), Some(Slot::Pending)) {
                cache.slots.remove(&key);
            }
        }
        self.syncer.ready.notify_all();
    }
}

struct Cache<P> {
    slots: HashMap<Key, Slot<P>>,
    /// Insertion order of ready entries, oldest first, for eviction.
    order: VecDeque<Key>,
    bytes: usize,
    /// The store state (epoch, head sequence) of the newest entry cached: entries of any
    /// other state can never be served again, so none is kept.
    snapshot: Option<(String, u64)>,
}

impl<P> Default for Cache<P> {
    fn default() -> Self {
        Self {
            slots: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            snapshot: None,
        }
    }
}

impl<P: PageText> Syncer<P> {
    /// `max_bytes` bounds the encoded pages kept in memory; 0 disables caching and
    /// prefetching.
    pub fn new(store: Arc<dyn CatalogStore>, paging: Paging, max_bytes: usize) -> Self {
        Syncer {
            store,
            paging,
            max_bytes,
            cache: Mutex::new(Cache::default()),
            ready: Condvar::new(),
            files: None,
        }
    }

    /// Adds the disk tier: pages evicted from memory are kept as files in `dir` (emptied
    /// now: files of an earlier process are not trusted), at most `max_bytes` of them, and
    /// served from there while the store is unchanged. Needs the memory tier (a
    /// `max_bytes` above 0 in [`new`](Self::new)); `max_bytes` 0 here keeps no files.
    pub fn with_files(mut self, dir: &Path, max_bytes: u64) -> std::io::Result<Self> {
        self.files = Some(PageFiles::open(dir, max_bytes)?).filter(|_| max_bytes > 0);
        Ok(self)
    }

    /// Answers one `syncNewPackageData(token, options)` call, from the cache when a page
    /// computed earlier is still current; a page computed here is cached for the clients
    /// that ask next. Blocking: call it from a blocking thread.
    pub fn answer(&self, token: &Value, options: &Value) -> Result<Answer<P>, SyncError> {
        let Some(key) = self.key(token, options) else {
            return self.compute(token, options).map(Entry::into_answer);
        };
        let current = self.store.snapshot()?;
        match self.claim(&key, Some(&current), Wait::Pending) {
            Claim::Ready(entry) => Ok(entry.into_answer()),
            Claim::Mine(claimed) => self
                .fill(claimed, token, options, &current.epoch, current.head_seq)
                .map(|(entry, _)| entry.into_answer()),
            Claim::Busy => self.compute(token, options).map(Entry::into_answer),
        }
    }

    /// Computes the pages a client will ask for next and caches them: the page of `next`
    /// and the ones after it, [`PREFETCH_AHEAD`] in all, one after the other, so that the
    /// store is read for each page while the client still receives the one before. A page
    /// already cached is passed. It never waits: at a page another thread is computing it
    /// stops (that thread's own prefetch continues the chain), so callers that spawn one
    /// prefetch per answer never park threads on each other; and it stops at a page it
    /// could not cache (bigger than the cache, or read while the store moved on), since
    /// the pages after it would be computed for nothing the client could be served from.
    /// Blocking: run it on a background thread right after sending the page that produced
    /// `next`.
    ///
    /// It reads the store's snapshot only when nothing is cached yet, or to cache a page of
    /// another epoch than the cached pages': pages are computed from the store as it is, and
    /// looked up in the disk tier at the snapshot of the pages cached last (the page just
    /// answered), since every answer checks the store's snapshot before it serves a cached
    /// page. A page
    /// read from an older snapshot is then recomputed when asked.
    pub fn prefetch(&self, next: &NextCall) {
        let mut next = next.clone();
        for _ in 0..PREFETCH_AHEAD {
            let Some(key) = self.key(&next.token, &next.options) else {
                return;
            };
            let entry = match self.claim(&key, None, Wait::Never) {
                Claim::Ready(entry) => entry,
                Claim::Busy => return,
                Claim::Mine(claimed) => {
                    let snapshot = self.lock().snapshot.clone();
                    let snapshot = match snapshot {
                        Some(snapshot) => Ok(snapshot),
                        None => self
                            .store
                            .snapshot()
                            .map(|snapshot| (snapshot.epoch, snapshot.head_seq)),
                    };
                    let filled = snapshot.map_err(SyncError::from).and_then(|(epoch, seq)| {
                        self.fill(claimed, &next.token, &next.options, &epoch, seq)
                    });
                    match filled {
                        Ok((entry, true)) => entry,
                        Ok((_, false)) => return,
                        Err(error) => {
                            tracing::warn!(%error, "prefetching a sync page failed");
                            return;
                        }
                    }
                }
            };
            match entry.next {
                Some(after) => next = after,
                None => return,
            }
        }
    }

    /// Looks `key` up in memory: a page current for the store's `current` state is returned
    /// (any ready page when `current` is `None`); a missing or stale one is marked pending
    /// for this caller to compute, and released by the returned [`Claimed`] however the
    /// caller ends. A page another thread is computing is waited for, up to
    /// [`PENDING_WAIT`], if `wait` says so.
    fn claim(&self, key: &Key, current: Option<&Snapshot>, wait: Wait) -> Claim<'_, P> {
        let mut cache = self.lock();
        let deadline = Instant::now() + PENDING_WAIT;
        loop {
            match cache.slots.get(key) {
                Some(Slot::Ready(entry)) if current.is_none_or(|state| entry.is_current(state)) => {
                    return Claim::Ready(entry.clone());
                }
                Some(Slot::Pending) if wait == Wait::Never || Instant::now() >= deadline => {
                    return Claim::Busy;
                }
                Some(Slot::Pending) => {
                    let timeout = deadline.saturating_duration_since(Instant::now());
                    cache = self
                        .ready
                        .wait_timeout(cache, timeout)
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .0;
                }
                Some(Slot::Ready(_)) | None => {
                    cache.remove(key);
                    cache.slots.insert(key.clone(), Slot::Pending);
                    return Claim::Mine(Claimed {
                        syncer: self,
                        key: Some(key.clone()),
                    });
                }
            }
        }
    }

    /// Gets the page this caller claimed, from its file of the store snapshot `epoch` and
    /// `head_seq` or by computing it, caches it in memory (writing the pages that evicts to
    /// the disk tier) and wakes the waiters. Returns the page and whether it was cached.
    fn fill(
        &self,
        mut claimed: Claimed<'_, P>,
        token: &Value,
        options: &Value,
        epoch: &str,
        head_seq: u64,
    ) -> Result<(Entry<P>, bool), SyncError> {
        // The claim stays armed until the slot is settled below: a panic on the way (reading
        // the page file, computing the page) releases the slot through its drop.
        let key = claimed.key.clone().expect("a claim is filled once");
        let file_key = key.file_key();
        let stored = self
            .files
            .as_ref()
            .and_then(|files| files.load(&file_key, epoch, head_seq));
        let result = match stored {
            Some(stored) => Ok(Entry {
                epoch: epoch.to_owned(),
                head_seq,
                text: P::with_forms(stored.text, stored.forms),
                next: stored.next,
            }),
            None => self.compute(token, options),
        };
        // Epochs have no order, so a page of another epoch than the cached pages' is cached
        // only if the store is still at it: one computed in an epoch the store has left would
        // otherwise drop the pages of the new one. Within an epoch the cache keeps the
        // newest head's pages, so a page of the cached pages' epoch needs no store read.
        let still_current = match &result {
            Ok(entry) => {
                let cached_epoch = self.lock().snapshot.as_ref().map(|(e, _)| e.clone());
                cached_epoch.is_none_or(|epoch| epoch == entry.epoch)
                    || self
                        .store
                        .snapshot()
                        .is_ok_and(|latest| entry.is_current(&latest))
            }
            Err(_) => false,
        };
        let mut evicted = Vec::new();
        let mut cached = false;
        {
            let mut cache = self.lock();
            cache.slots.remove(&key);
            claimed.key = None;
            if let Ok(entry) = &result
                && still_current
                && entry.text.as_ref().len() <= self.max_bytes
            {
                evicted = cache.insert(key.clone(), entry.clone(), self.max_bytes);
                cached = matches!(cache.slots.get(&key), Some(Slot::Ready(_)));
            }
        }
        self.ready.notify_all();
        if let Some(files) = &self.files {
            for (key, entry) in evicted {
                let forms = entry.text.forms();
                files.store(
                    &key.file_key(),
                    &PageToStore {
                        epoch: &entry.epoch,
                        head_seq: entry.head_seq,
                        text: entry.text.as_ref(),
                        forms: &forms,
                        next: entry.next.as_ref(),
                    },
                );
            }
        }
        result.map(|entry| (entry, cached))
    }

    /// Computes a page from the store.
    fn compute(&self, token: &Value, options: &Value) -> Result<Entry<P>, SyncError> {
        answer(&*self.store, token, options, &self.paging).map(|answer| Entry {
            epoch: answer.epoch,
            head_seq: answer.head_seq,
            text: P::from(answer.text),
            next: answer.next,
        })
    }

    /// The cache key of a call, or `None` when caching is off or the token is not an
    /// object (the call is then refused).
    fn key(&self, token: &Value, options: &Value) -> Option<Key> {
        if self.max_bytes == 0 {
            return None;
        }
        let Value::Object(map) = token else {
            return None;
        };
        // The tool stores the token with an `_id` of its own and sends it back (spec §3.4).
        let mut map = map.clone();
        map.remove("_id");
        Some(Key {
            token: Value::Object(map).to_string(),
            short: crate::sync::flag(options, "shortPagesForTest"),
            compress: crate::sync::flag(options, "compressCollections"),
        })
    }

    /// How many pages the cache holds (ready or being computed) and their encoded bytes,
    /// for the conformance tests that check its bound.
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn cache_usage(&self) -> (usize, usize) {
        let cache = self.lock();
        (cache.slots.len(), cache.bytes)
    }

    /// How many page files the disk tier lists and their bytes, for the conformance tests
    /// that check its bound.
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn file_usage(&self) -> (usize, u64) {
        self.files.as_ref().map_or((0, 0), PageFiles::usage)
    }

    fn lock(&self) -> MutexGuard<'_, Cache<P>> {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<P: AsRef<str>> Cache<P> {
    /// Adds a ready entry, evicting the oldest ones to stay within `max_bytes`. Returns
    /// the evicted entries, all read from the same snapshot as the new one.
    ///
    /// A store only moves forward, so an entry of a newer snapshot than the cache's first
    /// drops every entry of the older one (they can never be served again, and would hold
    /// memory until evicted), and an entry of an older snapshot than the cache's is not
    /// kept at all (it was computed while the store moved on). Epochs have no order: an
    /// entry of another epoch counts as newer, so callers insert only entries that were
    /// current when they checked.
    fn insert(&mut self, key: Key, entry: Entry<P>, max_bytes: usize) -> Vec<(Key, Entry<P>)> {
        match &self.snapshot {
            Some((epoch, head_seq)) if *epoch == entry.epoch && *head_seq > entry.head_seq => {
                return Vec::new();
            }
            Some((epoch, head_seq)) if *epoch == entry.epoch && *head_seq == entry.head_seq => {}
            _ => self.keep_only(&entry.epoch, entry.head_seq),
        }
        let size = entry.text.as_ref().len();
        let mut evicted = Vec::new();
        while self.bytes + size > max_bytes {
            let Some(oldest) = self.order.front().cloned() else {
                break;
            };
            if let Some(old) = self.remove(&oldest) {
                evicted.push((oldest, old));
            }
        }
        self.bytes += size;
        self.order.push_back(key.clone());
        self.slots.insert(key, Slot::Ready(entry));
        evicted
    }

    /// Drops every ready entry not read at `epoch` and `head_seq`, and makes that state the
    /// cache's snapshot. Pending slots stay: their callers are computing them.
    fn keep_only(&mut self, epoch: &str, head_seq: u64) {
        self.slots.retain(|_, slot| match slot {
            Slot::Ready(entry) => entry.epoch == epoch && entry.head_seq == head_seq,
            Slot::Pending => true,
        });
        let slots = &self.slots;
        self.order
            .retain(|key| matches!(slots.get(key), Some(Slot::Ready(_))));
        self.bytes = slots
            .values()
            .map(|slot| match slot {
                Slot::Ready(entry) => entry.text.as_ref().len(),
                Slot::Pending => 0,
            })
            .sum();
        self.snapshot = Some((epoch.to_owned(), head_seq));
    }

    /// Removes a key's slot; returns its entry if it was ready.
    fn remove(&mut self, key: &Key) -> Option<Entry<P>> {
        match self.slots.remove(key)? {
            Slot::Ready(entry) => {
                self.bytes -= entry.text.as_ref().len();
                if let Some(at) = self.order.iter().position(|listed| listed == key) {
                    self.order.remove(at);
                }
                Some(entry)
            }
            Slot::Pending => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(token: &str) -> Key {
        Key {
            token: token.to_owned(),
            short: false,
            compress: false,
        }
    }

    fn entry(head_seq: u64, text: &str) -> Entry<String> {
        Entry {
            epoch: "e".to_owned(),
            head_seq,
            text: text.to_owned(),
            next: None,
        }
    }

    #[test]
    fn a_newer_snapshot_drops_older_pages_and_an_older_one_is_not_kept() {
        let mut cache = Cache::default();
        cache.insert(key("a"), entry(2, "aa"), 100);
        cache.insert(key("b"), entry(2, "bbb"), 100);
        assert_eq!((cache.slots.len(), cache.bytes), (2, 5));

        cache.insert(
            key("late"),
            entry(1, "computed before the store moved on"),
            100,
        );
        assert_eq!((cache.slots.len(), cache.bytes), (2, 5));

        cache.slots.insert(key("pending"), Slot::Pending);
        cache.insert(key("c"), entry(3, "c"), 100);
        assert!(matches!(cache.slots.get(&key("c")), Some(Slot::Ready(_))));
        assert!(matches!(
            cache.slots.get(&key("pending")),
            Some(Slot::Pending)
        ));
        assert_eq!((cache.slots.len(), cache.bytes), (2, 1));
        assert!(cache.order == [key("c")]);
    }
}
