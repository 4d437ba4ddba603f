//! [`WriteQueue`]: this process's writes wait their turn here, before they take a pooled
//! connection.
//!
//! Why: every write locks the one `meta` row first, so writes run one at a time across the
//! whole database anyway. Were they to queue on that row lock instead, each waiting writer
//! would hold a pooled connection while it waits, and a burst of writes would take every
//! connection and starve the reads. Queued here, one process's writes hold at most one
//! connection between them.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use exosphere_catalog::error::StoreError;

/// A turnstile letting one write of this process through at a time.
pub(crate) struct WriteQueue {
    /// Whether a write holds the turn.
    taken: Mutex<bool>,
    freed: Condvar,
    /// How long a write waits for its turn (the store's `lock_timeout`).
    wait: Duration,
}

/// The turn of one write, given back when dropped (however the write ends).
pub(crate) struct Turn<'a>(&'a WriteQueue);

impl WriteQueue {
    /// A queue whose writes wait up to `wait` for their turn.
    pub(crate) fn new(wait: Duration) -> WriteQueue {
        WriteQueue {
            taken: Mutex::new(false),
            freed: Condvar::new(),
            wait,
        }
    }

    /// Waits for this write's turn; [`StoreError::Busy`] if the writes before it took
    /// longer than the wait, as if it had waited that long for the database's row lock.
    pub(crate) fn turn(&self) -> Result<Turn<'_>, StoreError> {
        let deadline = Instant::now() + self.wait;
        let mut taken = self.lock();
        while *taken {
            let now = Instant::now();
            if now >= deadline {
                return Err(StoreError::Busy);
            }
            taken = self
                .freed
                .wait_timeout(taken, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        *taken = true;
        Ok(Turn(self))
    }

    /// The flag; it is only set and cleared under the lock, so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, bool> {
        self.taken.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        *self.0.lock() = false;
        self.0.freed.notify_one();
    }
}
