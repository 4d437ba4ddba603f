//! Encoded sync pages kept ready ahead of the client.
//!
//! A client syncing the catalog (spec §3.3) asks for one page, parses it, then asks for the
//! next with the token it was just given. Between the two calls the server would sit idle,
//! and after the second call the client would sit idle while the server reads and encodes.
//! [`Syncer`] overlaps the two: after answering a page it can compute the next one
//! ([`Syncer::prefetch`], run on a background thread by the caller) so that the next call
//! is answered from memory. Clients that sync at the same time (a CI fleet starting from an
//! empty catalog asks for identical pages) share the cached pages.
//!
//! A cached page is only served while the store is unchanged (same epoch and head
//! sequence), so a client always sees every write that finished before its call
//! (read-your-writes, spec §3.6). The cache is bounded in bytes.
//!
//! The caller chooses how a page's text is kept (the type parameter `P`, built once from
//! the computed text and cloned for every client it is served to): the server keeps its
//! DDP layer's shared reply text, which carries the page's WebSocket-compressed form, so a
//! page is compressed once for all its clients while the catalog knows only its text.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;

use crate::store::CatalogStore;
use crate::sync::{Answer, NextCall, Paging, SyncError, answer};

/// How long a call waits for a page another thread is computing before computing it itself.
const PENDING_WAIT: Duration = Duration::from_secs(5);

/// Answers `syncNewPackageData` calls, with a bounded cache of encoded pages held as `P`.
pub struct Syncer<P> {
    store: Arc<dyn CatalogStore>,
    paging: Paging,
    max_bytes: usize,
    cache: Mutex<Cache<P>>,
    ready: Condvar,
}

/// What identifies a page: the token exactly as the server wrote it and the two options
/// that change a page's content.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    token: String,
    short: bool,
    compress: bool,
}

enum Slot<P> {
    /// Another thread is computing this page.
    Pending,
    Ready(Entry<P>),
}

struct Entry<P> {
    epoch: String,
    head_seq: u64,
    text: P,
    next: Option<NextCall>,
}

struct Cache<P> {
    slots: HashMap<Key, Slot<P>>,
    /// Insertion order of ready entries, oldest first, for eviction.
    order: VecDeque<Key>,
    bytes: usize,
}

impl<P> Default for Cache<P> {
    fn default() -> Self {
        Self {
            slots: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
        }
    }
}

impl<P: From<String> + AsRef<str> + Clone> Syncer<P> {
    /// `max_bytes` bounds the encoded pages kept in memory; 0 disables caching and
    /// prefetching.
    pub fn new(store: Arc<dyn CatalogStore>, paging: Paging, max_bytes: usize) -> Self {
        Syncer {
            store,
            paging,
            max_bytes,
            cache: Mutex::new(Cache::default()),
            ready: Condvar::new(),
        }
    }

    /// Answers one `syncNewPackageData(token, options)` call, from the cache when a
    /// prefetched page is still current. Blocking: call it from a blocking thread.
    pub fn answer(&self, token: &Value, options: &Value) -> Result<Answer<P>, SyncError> {
        if let Some(key) = self.key(token, options) {
            let current = self.store.state()?;
            let mut cache = self.lock();
            let deadline = std::time::Instant::now() + PENDING_WAIT;
            loop {
                match cache.slots.get(&key) {
                    Some(Slot::Ready(entry))
                        if entry.epoch == current.epoch && entry.head_seq == current.head_seq =>
                    {
                        return Ok(Answer {
                            text: entry.text.clone(),
                            next: entry.next.clone(),
                            epoch: entry.epoch.clone(),
                            head_seq: entry.head_seq,
                        });
                    }
                    Some(Slot::Pending) if std::time::Instant::now() < deadline => {
                        let timeout = deadline.saturating_duration_since(std::time::Instant::now());
                        cache = self
                            .ready
                            .wait_timeout(cache, timeout)
                            .unwrap_or_else(|poisoned| poisoned.into_inner())
                            .0;
                    }
                    _ => break,
                }
            }
        }
        answer(&*self.store, token, options, &self.paging).map(|answer| Answer {
            text: P::from(answer.text),
            next: answer.next,
            epoch: answer.epoch,
            head_seq: answer.head_seq,
        })
    }

    /// Computes the page a client will ask for next and caches it. Blocking: run it on a
    /// background thread right after sending the page that produced `next`.
    pub fn prefetch(&self, next: &NextCall) {
        let Some(key) = self.key(&next.token, &next.options) else {
            return;
        };
        {
            let mut cache = self.lock();
            if cache.slots.contains_key(&key) {
                return;
            }
            cache.slots.insert(key.clone(), Slot::Pending);
        }
        let computed = answer(&*self.store, &next.token, &next.options, &self.paging);
        let mut cache = self.lock();
        cache.slots.remove(&key);
        match computed {
            Ok(answer) if answer.text.len() <= self.max_bytes => {
                cache.insert(
                    key,
                    Entry {
                        epoch: answer.epoch,
                        head_seq: answer.head_seq,
                        text: P::from(answer.text),
                        next: answer.next,
                    },
                    self.max_bytes,
                );
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "prefetching a sync page failed"),
        }
        drop(cache);
        self.ready.notify_all();
    }

    /// The cache key of a call, or `None` when caching is off or the token is not one this
    /// server wrote (those are rare: first calls and resets).
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

    fn lock(&self) -> MutexGuard<'_, Cache<P>> {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<P: AsRef<str>> Cache<P> {
    /// Adds a ready entry, evicting the oldest ones to stay within `max_bytes`.
    fn insert(&mut self, key: Key, entry: Entry<P>, max_bytes: usize) {
        let size = entry.text.as_ref().len();
        while self.bytes + size > max_bytes {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(Slot::Ready(evicted)) = self.slots.remove(&oldest) {
                self.bytes -= evicted.text.as_ref().len();
            }
        }
        self.bytes += size;
        self.order.push_back(key.clone());
        self.slots.insert(key, Slot::Ready(entry));
    }
}
