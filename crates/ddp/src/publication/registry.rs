//! The session's table of live subscriptions, and the merge box they publish into.
//!
//! Plain data, kept under the session's publications lock: no channel to the client and
//! no knowledge of the session around it. [`Subscription`](super::Subscription) handles
//! and the session worker change it and queue the frames its merge box returns.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::watch;

use super::merge_box::{Change, MergeBox, SubKey};

/// The session's live subscriptions and the client's view of their data.
#[derive(Debug, Default)]
pub(crate) struct Publications {
    /// What the client sees, and which subscription put it there.
    pub(super) merge_box: MergeBox,
    active: HashMap<String, ActiveSub>,
    next_key: SubKey,
}

#[derive(Debug)]
struct ActiveSub {
    key: SubKey,
    ready: bool,
    stop: Arc<watch::Sender<bool>>,
}

/// Why a `sub` was not added to the table.
pub(super) enum Refusal {
    /// The id is already active: Meteor ignores the repeated `sub`.
    AlreadyActive,
    /// `limit` subscriptions are active.
    TooMany,
}

impl Publications {
    /// Adds subscription `id` under a key never used before, unless it is already active or
    /// `limit` subscriptions are; returns the key and the signal that stops it.
    pub(super) fn add(
        &mut self,
        id: &str,
        limit: usize,
    ) -> Result<(SubKey, Arc<watch::Sender<bool>>), Refusal> {
        if self.active.contains_key(id) {
            return Err(Refusal::AlreadyActive);
        }
        if self.active.len() >= limit {
            return Err(Refusal::TooMany);
        }
        let key = self.next_key;
        self.next_key += 1;
        let stop = Arc::new(watch::Sender::new(false));
        self.active.insert(
            id.to_owned(),
            ActiveSub {
                key,
                ready: false,
                stop: Arc::clone(&stop),
            },
        );
        Ok((key, stop))
    }

    /// Whether `key` is still the active subscription of the client's `id`.
    pub(super) fn is_current(&self, id: &str, key: SubKey) -> bool {
        self.active.get(id).is_some_and(|sub| sub.key == key)
    }

    /// Marks subscription `id` (under `key`) ready: `Some(true)` the first time,
    /// `Some(false)` when it already was, `None` when `key` is no longer current.
    pub(super) fn mark_ready(&mut self, id: &str, key: SubKey) -> Option<bool> {
        let sub = self.active.get_mut(id).filter(|sub| sub.key == key)?;
        Some(!std::mem::replace(&mut sub.ready, true))
    }

    /// Removes subscription `id` and retracts its documents; `None` if it was not active.
    pub(super) fn retire(&mut self, id: &str) -> Option<Vec<Change>> {
        let sub = self.active.remove(id)?;
        sub.stop.send_replace(true);
        Some(self.merge_box.remove_subscription(sub.key))
    }
}
