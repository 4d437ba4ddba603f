//! Who may receive an upload body right now: at most `--max-concurrent-uploads` bodies
//! in this server process, `--max-uploads-per-user` for any one user across every server of
//! the catalog, and one per upload URL.
//!
//! Both limits are needed. The server-wide one protects disk or S3 bandwidth and the
//! per-upload buffers; the per-user one stops a single account, which may hold
//! `--max-open-publishes` upload URLs, from taking every server-wide slot and so blocking
//! every other publisher. Slots are taken only for a ticket already found valid, so
//! requests with unknown secrets never hold one.
//!
//! A slot is also the only mark that an upload URL is receiving a body: the ticket's
//! `receiving` state in the catalog may outlive its upload when the catalog cannot record
//! how the upload ended (its disk full at that moment), while a slot is given back however
//! the upload ends. So a URL whose ticket says `receiving` but holds no slot takes a new
//! body at once on this server, not only after a restart, and the server reopens such
//! marks every minute (`jobs::reopen_unheld_uploads`), so the other servers stop refusing
//! the URL and counting it against its user.
//!
//! Several servers on one catalog: the slots here are this process's. When a ticket is
//! claimed (in the write transaction that marks it receiving by this server's seat), the
//! catalog adds what the other running servers receive
//! (`AccountWriter::receiving_elsewhere`): a URL receiving through another server is
//! refused as busy, and a user's uploads are counted across all servers. The server-wide
//! limit stays per process: it protects this process's bandwidth and buffers.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The upload slots of one server, shared by every upload request.
pub struct UploadSlots {
    server: Arc<Semaphore>,
    per_user: usize,
    held: Mutex<Held>,
}

/// What the slots taken now hold: uploads running per user, and the tickets receiving.
#[derive(Default)]
struct Held {
    users: HashMap<String, usize>,
    tickets: HashSet<String>,
}

/// Why [`UploadSlots::try_take`] gave no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// This upload URL is receiving a body already.
    Ticket,
    /// This user already has `--max-uploads-per-user` uploads in progress.
    User(usize),
    /// Every server-wide slot is taken.
    Server,
}

/// One upload's hold on a server-wide slot, on its user's allowance and on its ticket;
/// all are given back when it is dropped, however the upload ends.
pub struct UploadSlot {
    slots: Arc<UploadSlots>,
    user_id: String,
    ticket: String,
    _server: OwnedSemaphorePermit,
}

impl UploadSlots {
    /// The most uploads one user may run at once, across servers.
    pub fn per_user(&self) -> usize {
        self.per_user
    }

    /// `server` bodies at once in all, `per_user` for any one user.
    pub fn new(server: usize, per_user: usize) -> Arc<UploadSlots> {
        Arc::new(UploadSlots {
            server: Arc::new(Semaphore::new(server)),
            per_user,
            held: Mutex::new(Held::default()),
        })
    }

    /// The tickets whose bodies this server receives now.
    pub fn held_tickets(&self) -> Vec<String> {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.tickets.iter().cloned().collect()
    }

    /// Takes a slot for an upload of `user_id`'s to the ticket named `ticket` (its
    /// secret's hash), or says which limit refused it; never waits.
    pub fn try_take(self: &Arc<Self>, user_id: &str, ticket: &str) -> Result<UploadSlot, Busy> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if held.tickets.contains(ticket) {
            return Err(Busy::Ticket);
        }
        let running = held.users.get(user_id).copied().unwrap_or(0);
        if running >= self.per_user {
            return Err(Busy::User(running));
        }
        let permit = Arc::clone(&self.server)
            .try_acquire_owned()
            .map_err(|_| Busy::Server)?;
        held.users.insert(user_id.to_owned(), running + 1);
        held.tickets.insert(ticket.to_owned());
        Ok(UploadSlot {
            slots: Arc::clone(self),
            user_id: user_id.to_owned(),
            ticket: ticket.to_owned(),
            _server: permit,
        })
    }
}

impl UploadSlot {
    /// How many other uploads of this slot's user this process receives now, to add to
    /// those of the other servers when the ticket is claimed.
    pub fn others_of_user(&self) -> usize {
        let held = self
            .slots
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        held.users
            .get(&self.user_id)
            .map_or(0, |running| running.saturating_sub(1))
    }
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        let mut held = self
            .slots
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        held.tickets.remove(&self.ticket);
        if let Some(running) = held.users.get_mut(&self.user_id) {
            *running -= 1;
            if *running == 0 {
                held.users.remove(&self.user_id);
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
        let first = slots.try_take("alice", "a1").unwrap();
        let second = slots.try_take("alice", "a2").unwrap();
        assert_eq!(slots.try_take("alice", "a3").err(), Some(Busy::User(2)));
        let bob = slots.try_take("bob", "b1").unwrap();
        assert_eq!(slots.try_take("carol", "c1").err(), Some(Busy::Server));
        assert_eq!((second.others_of_user(), bob.others_of_user()), (1, 0));
        drop(first);
        let again = slots.try_take("bob", "b2").unwrap();
        drop((second, bob, again));
        let held = slots.held.lock().unwrap();
        assert!(
            held.users.is_empty() && held.tickets.is_empty(),
            "nothing is left held"
        );
    }

    #[test]
    fn an_upload_url_receives_one_body_at_a_time_and_is_free_once_it_ends() {
        let slots = UploadSlots::new(3, 3);
        let first = slots.try_take("alice", "a1").unwrap();
        assert_eq!(slots.try_take("alice", "a1").err(), Some(Busy::Ticket));
        drop(first);
        assert!(slots.try_take("alice", "a1").is_ok());
    }
}
