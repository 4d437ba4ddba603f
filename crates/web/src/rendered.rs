//! The answers already encoded: a page, feed, badge or API body that lasts is keyed by
//! everything its entity tag hashes (the answer's format and the runner's bounds, the UTC
//! day, the read model's freshness and the request's URL), so a request that would get the
//! same tag gets the same bytes without a query of the read model or a render. When the
//! read model moves on, or the day, every tag changes and the old entries are never asked
//! for again; they leave as the least recently used.

use std::sync::Mutex;

use axum::body::Bytes;
use hashlink::LruCache;

/// The default of [`crate::ApiConfig::cache_bytes`] (`--web-cache-bytes`): a few thousand
/// package pages of about 10 KB, small beside the read model's own page cache.
pub const DEFAULT_CACHE_BYTES: usize = 32 * 1024 * 1024;

/// What an entry costs besides its key and body: the map's slot and the `Bytes` handle.
const ENTRY_OVERHEAD: usize = 64;

/// The share of the budget one answer may take: a single huge answer (a long list at the
/// largest page size) does not push out hundreds of pages.
const MAX_ENTRY_SHARE: usize = 16;

/// Encoded answers by key, least recently used first out, within a byte budget (keys,
/// bodies and a fixed overhead per entry). A budget of zero caches nothing.
#[derive(Debug)]
pub(crate) struct Rendered {
    max_bytes: usize,
    entries: Mutex<Entries>,
}

#[derive(Debug)]
struct Entries {
    map: LruCache<String, Bytes>,
    bytes: usize,
}

impl Rendered {
    /// An empty cache holding at most `max_bytes`.
    pub fn new(max_bytes: usize) -> Rendered {
        Rendered {
            max_bytes,
            entries: Mutex::new(Entries {
                map: LruCache::new_unbounded(),
                bytes: 0,
            }),
        }
    }

    /// The answer cached under `key`, now the most recently used.
    pub fn get(&self, key: &str) -> Option<Bytes> {
        if self.max_bytes == 0 {
            return None;
        }
        self.lock().map.get(key).cloned()
    }

    /// Caches `body` under `key`, letting the least recently used answers go until the
    /// budget holds it; an answer bigger than a [`MAX_ENTRY_SHARE`]th of the budget is not
    /// cached.
    pub fn put(&self, key: String, body: Bytes) {
        let size = cost(&key, &body);
        if size > self.max_bytes / MAX_ENTRY_SHARE {
            return;
        }
        let mut entries = self.lock();
        if let Some(old) = entries.map.insert(key.clone(), body) {
            entries.bytes -= cost(&key, &old);
        }
        entries.bytes += size;
        while entries.bytes > self.max_bytes {
            let Some((key, body)) = entries.map.remove_lru() else {
                break;
            };
            entries.bytes -= cost(&key, &body);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // The entries stay consistent between statements: a panic elsewhere leaves them usable.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What an entry counts against the budget.
fn cost(key: &str, body: &Bytes) -> usize {
    key.len() + body.len() + ENTRY_OVERHEAD
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(len: usize) -> Bytes {
        Bytes::from(vec![b'x'; len])
    }

    #[test]
    fn the_least_recently_used_answers_leave_first_and_the_budget_holds() {
        let per_entry = cost("k00", &body(100));
        let cache = Rendered::new(per_entry * MAX_ENTRY_SHARE);
        let keys: Vec<String> = (0..MAX_ENTRY_SHARE).map(|n| format!("k{n:02}")).collect();
        for key in &keys {
            cache.put(key.clone(), body(100));
        }
        assert!(
            cache.get("k00").is_some(),
            "k00 is now the most recently used"
        );
        cache.put("new".into(), body(99));
        assert!(cache.get("k01").is_none(), "the least recently used went");
        assert!(cache.get("k00").is_some() && cache.get("new").is_some());
        for key in &keys[2..] {
            assert_eq!(cache.get(key).map(|body| body.len()), Some(100), "{key}");
        }
        assert!(cache.lock().bytes <= per_entry * MAX_ENTRY_SHARE);
    }

    #[test]
    fn a_replaced_answer_is_counted_once_and_an_oversized_one_not_at_all() {
        let cache = Rendered::new(16 * 1024);
        cache.put("page".into(), body(100));
        cache.put("page".into(), body(200));
        assert_eq!(cache.lock().bytes, cost("page", &body(200)));
        cache.put("huge".into(), body(2_000));
        assert!(
            cache.get("huge").is_none(),
            "more than a 16th of the budget"
        );
        assert_eq!(cache.get("page").map(|body| body.len()), Some(200));
    }

    #[test]
    fn a_budget_of_zero_caches_nothing() {
        let cache = Rendered::new(0);
        cache.put("page".into(), body(1));
        assert!(cache.get("page").is_none());
    }
}
