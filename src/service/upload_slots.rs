//! Who may receive an upload body right now: at most `--max-concurrent-uploads` bodies
//! server-wide and `--max-uploads-per-user` for any one user.
//!
//! Both limits are needed. The server-wide one protects disk or S3 bandwidth and the
//! per-upload buffers; the per-user one stops a single account, which may hold
//! `--max-open-publishes` upload URLs, from taking every server-wide slot and so blocking
//! every other publisher. Slots are taken only for a ticket already found valid, so
//! requests with unknown secrets never hold one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The upload slots of one server, shared by every upload request.
pub struct UploadSlots {
    server: Arc<Semaphore>,
    per_user: usize,
    users: Mutex<HashMap<String, usize>>,
}

/// Why [`UploadSlots::try_take`] gave no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// This user already has `--max-uploads-per-user` uploads in progress.
    User(usize),
    /// Every server-wide slot is taken.
    Server,
}

/// One upload's hold on a server-wide slot and on its user's allowance; both are given
/// back when it is dropped, however the upload ends.
pub struct UploadSlot {
    slots: Arc<UploadSlots>,
    user_id: String,
    _server: OwnedSemaphorePermit,
}

impl UploadSlots {
    /// `server` bodies at once in all, `per_user` for any one user.
    pub fn new(server: usize, per_user: usize) -> Arc<UploadSlots> {
        Arc::new(UploadSlots {
            server: Arc::new(Semaphore::new(server)),
            per_user,
            users: Mutex::new(HashMap::new()),
        })
    }

    /// Takes a slot for an upload of `user_id`'s, or says which limit refused it; never
    /// waits.
    pub fn try_take(self: &Arc<Self>, user_id: &str) -> Result<UploadSlot, Busy> {
        let mut users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        let running = users.get(user_id).copied().unwrap_or(0);
        if running >= self.per_user {
            return Err(Busy::User(running));
        }
        let permit = Arc::clone(&self.server)
            .try_acquire_owned()
            .map_err(|_| Busy::Server)?;
        users.insert(user_id.to_owned(), running + 1);
        Ok(UploadSlot {
            slots: Arc::clone(self),
            user_id: user_id.to_owned(),
            _server: permit,
        })
    }
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        let mut users = self
            .slots
            .users
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(running) = users.get_mut(&self.user_id) {
            *running -= 1;
            if *running == 0 {
                users.remove(&self.user_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Busy, UploadSlots};

    #[test]
    fn each_user_gets_a_share_of_the_server_slots() {
        let slots = UploadSlots::new(3, 2);
        let first = slots.try_take("alice").unwrap();
        let second = slots.try_take("alice").unwrap();
        assert_eq!(slots.try_take("alice").err(), Some(Busy::User(2)));
        let bob = slots.try_take("bob").unwrap();
        assert_eq!(slots.try_take("carol").err(), Some(Busy::Server));
        drop(first);
        let again = slots.try_take("bob").unwrap();
        drop((second, bob, again));
        assert!(
            slots.users.lock().unwrap().is_empty(),
            "nothing is left held"
        );
    }
}
