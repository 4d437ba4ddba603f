//! [`Seen`]: the newest epoch and head `seq` a store has read, by which it notices a
//! database that went back in time (restored from a backup, failed over to a standby that
//! lacked the last commits) and would hand out again numbers clients already hold.
//!
//! Only a write's locked read of the meta row proves that the head went back: it sees every
//! commit. A read's snapshot is only compared with what had been seen before that snapshot
//! started (a copy taken first), since a concurrent read may have seen a newer snapshot
//! meanwhile; a read that is below its copy asks a write to check. And only writes record
//! another epoch: a read's differing epoch may be the older one.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// The epoch and the highest head `seq` seen in it, shared by a store's threads.
#[derive(Default)]
pub(crate) struct Seen(Mutex<Option<(String, u64)>>);

impl Seen {
    /// What has been seen so far, copied: taken before a read's snapshot starts.
    pub(crate) fn before_read(&self) -> Option<(String, u64)> {
        self.lock().clone()
    }

    /// Whether a read's snapshot at `epoch` and `head_seq` is below `before` (its
    /// [`Seen::before_read`]) in the same epoch, so that a write must check whether the
    /// database went back. A snapshot that is not below it is noted as seen.
    pub(crate) fn read_went_back(
        &self,
        before: Option<&(String, u64)>,
        epoch: &str,
        head_seq: u64,
    ) -> bool {
        if let Some((seen_epoch, seen_head)) = before
            && seen_epoch == epoch
            && head_seq < *seen_head
        {
            return true;
        }
        self.note(epoch, head_seq, false);
        false
    }

    /// Whether a write's locked read of the meta row, at `epoch` and `head_seq`, is below a
    /// head seen in the same epoch: the database went back.
    pub(crate) fn write_went_back(&self, epoch: &str, head_seq: u64) -> bool {
        matches!(&*self.lock(), Some((seen_epoch, seen_head))
            if seen_epoch == epoch && head_seq < *seen_head)
    }

    /// Notes the epoch and head a write committed (this process's writes run one at a
    /// time, so the last committed is the newest epoch).
    pub(crate) fn committed(&self, epoch: &str, head_seq: u64) {
        self.note(epoch, head_seq, true);
    }

    /// Notes `epoch` at `head_seq`: in the same epoch the head only rises (another call may
    /// have seen a later one); another epoch replaces it only when `committed`.
    fn note(&self, epoch: &str, head_seq: u64, committed: bool) {
        let mut seen = self.lock();
        match &mut *seen {
            Some((seen_epoch, seen_head)) if seen_epoch == epoch => {
                *seen_head = (*seen_head).max(head_seq);
            }
            Some(_) if !committed => {}
            _ => *seen = Some((epoch.to_owned(), head_seq)),
        }
    }

    /// The state; each change under the lock is one assignment, so a panic cannot leave it
    /// half-changed and poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, Option<(String, u64)>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_snapshot_than_a_concurrent_read_saw_is_not_suspected() {
        let seen = Seen::default();
        seen.committed("e", 5);
        // Reader A copies before its snapshot; reader B's newer snapshot ends first.
        let a = seen.before_read();
        let b = seen.before_read();
        assert!(!seen.read_went_back(b.as_ref(), "e", 7));
        assert!(!seen.read_went_back(a.as_ref(), "e", 5));
        assert_eq!(
            seen.before_read(),
            Some(("e".to_owned(), 7)),
            "never moves back"
        );
        // A snapshot below what was seen before it started is.
        let c = seen.before_read();
        assert!(seen.read_went_back(c.as_ref(), "e", 6));
    }

    #[test]
    fn only_writes_record_another_epoch() {
        let seen = Seen::default();
        seen.committed("new", 3);
        let before = seen.before_read();
        // An older snapshot of the previous epoch.
        assert!(!seen.read_went_back(before.as_ref(), "old", 10));
        assert_eq!(seen.before_read(), Some(("new".to_owned(), 3)));
        seen.committed("newer", 1);
        assert_eq!(seen.before_read(), Some(("newer".to_owned(), 1)));
    }

    #[test]
    fn a_write_below_the_head_seen_in_its_epoch_went_back() {
        let seen = Seen::default();
        assert!(!seen.write_went_back("e", 0), "nothing seen yet");
        seen.committed("e", 5);
        assert!(seen.write_went_back("e", 4));
        assert!(!seen.write_went_back("e", 5));
        assert!(!seen.write_went_back("other", 1));
    }
}
