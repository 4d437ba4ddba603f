//! Rate budgets kept per key (a client address, an account), with a bound on how many keys
//! are remembered at once, so callers with many addresses or names cannot grow the
//! server's memory: shared by the usage reports' and the failed logins' limits.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use exosphere_ddp::RateLimit;
use tokio::time::Instant;

/// The least time between two sweeps of a full table of budgets.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

/// One [`RateLimit`] per key, `limit` units per `interval` each, for at most `max_keys`
/// keys at once.
pub struct KeyedBudgets<K> {
    limit: u32,
    interval: Duration,
    max_keys: usize,
    budgets: HashMap<K, RateLimit>,
    /// When the full table was last swept of budgets whose window is over: at most once
    /// per [`PRUNE_EVERY`], so calls with new keys cannot make every call scan it.
    pruned: Option<Instant>,
}

impl<K: Hash + Eq> KeyedBudgets<K> {
    /// An empty table.
    pub fn new(limit: u32, interval: Duration, max_keys: usize) -> Self {
        KeyedBudgets {
            limit,
            interval,
            max_keys,
            budgets: HashMap::new(),
            pruned: None,
        }
    }

    /// The budget of `key` at `now` (a fresh one for a new key), or `None` when `key` is
    /// new and the table is full of budgets still in use: the caller refuses then.
    pub fn budget(&mut self, key: K, now: Instant) -> Option<&mut RateLimit> {
        if !self.budgets.contains_key(&key) && self.budgets.len() >= self.max_keys {
            if self
                .pruned
                .is_none_or(|at| now.duration_since(at) >= PRUNE_EVERY)
            {
                self.budgets.retain(|_, budget| !budget.is_idle(now));
                self.pruned = Some(now);
            }
            if self.budgets.len() >= self.max_keys {
                return None;
            }
        }
        let (limit, interval) = (self.limit, self.interval);
        Some(
            self.budgets
                .entry(key)
                .or_insert_with(|| RateLimit::new(limit, interval, now)),
        )
    }

    /// The budget of `key`, if it is remembered; looking does not remember it.
    pub fn get(&self, key: &K) -> Option<&RateLimit> {
        self.budgets.get(key)
    }

    /// How many keys are remembered.
    pub fn len(&self) -> usize {
        self.budgets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_bounded_until_their_windows_are_over() {
        let t0 = Instant::now();
        let mut budgets = KeyedBudgets::new(1, Duration::from_secs(10), 2);
        assert!(budgets.budget("a", t0).unwrap().check(t0).is_ok());
        assert!(
            budgets.budget("a", t0).unwrap().check(t0).is_err(),
            "a's one unit is used"
        );
        assert!(budgets.budget("b", t0).unwrap().check(t0).is_ok());
        assert!(budgets.budget("c", t0).is_none(), "both slots are in use");
        let later = t0 + Duration::from_secs(10);
        assert!(
            budgets.budget("c", later).is_some(),
            "over windows are forgotten"
        );
        assert_eq!(budgets.len(), 1);
    }
}
