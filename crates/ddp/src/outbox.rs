//! The session's byte-bounded queue of outbound frames.
//!
//! Everything that talks to the client (the reader answering pings, the worker sending
//! results, publications sending data) pushes finished frames here; the transport's
//! writer drains it. The bound is in bytes, not frames: one `syncNewPackageData` result
//! can be megabytes, so a count of frames would not bound memory. A frame takes its size
//! (plus a fixed overhead) from the session's budget, a semaphore of bytes, when it is
//! queued, and the writer gets it with a [`Charge`] that gives the bytes back once the
//! frame is handed to the socket. So a client that reads slowly slows down its own
//! producers, and nobody else, once `budget` bytes are held. A frame larger than the
//! whole budget takes all of it: it waits for an empty queue and then goes through
//! alone, so it can never deadlock.
//!
//! The charge is not stored in the queue (its slots stay one `String` wide, which an
//! idle session's memory depends on): the writer recomputes it from the frame's length.
//! Every budget also counts into a gauge shared by all sessions of a server, so the
//! bytes held for clients can be watched (`/healthz`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Semaphore, mpsc};

use crate::config::MAX_OUTBOUND_BUFFER_SIZE;
use crate::error::SessionClosed;

/// What one queued frame costs beyond its text: the `String` header, its queue slot and
/// its share of bookkeeping, so that a flood of tiny frames is bounded too.
const FRAME_OVERHEAD: u32 = 64;

/// An item for the transport's writer.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// One DDP message: one text frame, with the budget it holds until it is written.
    Frame(String, Charge),
    /// Close the WebSocket with this code and reason; nothing after it is sent. Free: it
    /// is queued once, at the end, and must get through even when the budget is spent.
    Close { code: u16, reason: &'static str },
}

/// What the queue holds: an [`Outbound`] without its charge.
#[derive(Debug)]
enum Queued {
    Frame(String),
    Close { code: u16, reason: &'static str },
}

/// One session's budget, and the server-wide gauge it counts into.
#[derive(Debug)]
struct Budget {
    bytes: Semaphore,
    /// The budget's size: the most one frame is charged.
    capacity: u32,
    held: Arc<AtomicUsize>,
}

impl Budget {
    /// What `frame` takes from the budget.
    fn cost(&self, frame: &str) -> u32 {
        u32::try_from(frame.len())
            .unwrap_or(u32::MAX)
            .saturating_add(FRAME_OVERHEAD)
            .min(self.capacity)
    }

    fn release(&self, bytes: u32) {
        self.held.fetch_sub(bytes as usize, Ordering::Relaxed);
        self.bytes.add_permits(bytes as usize);
    }
}

/// Bytes of a session's budget held by frames on their way to the client; given back
/// when dropped, which writers do once the frames are handed to the socket.
#[derive(Debug, Default)]
pub(crate) struct Charge(Option<(Arc<Budget>, u32)>);

impl Charge {
    /// Takes over `other`'s bytes, for frames of one session batched into one write.
    pub(crate) fn absorb(&mut self, mut other: Self) {
        match (&mut self.0, other.0.take()) {
            (Some((budget, mine)), Some((theirs_budget, theirs))) => {
                debug_assert!(
                    Arc::ptr_eq(budget, &theirs_budget),
                    "charges of one session's budget only"
                );
                *mine += theirs;
            }
            (mine @ None, theirs) => *mine = theirs,
            (Some(_), None) => {}
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if let Some((budget, bytes)) = self.0.take() {
            budget.release(bytes);
        }
    }
}

/// The producing side of the queue.
#[derive(Debug, Clone)]
pub(crate) struct Outbox {
    queue: mpsc::UnboundedSender<Queued>,
    budget: Arc<Budget>,
}

/// The writer's side of the queue. Dropping or closing it fails every send, including
/// those waiting for budget.
#[derive(Debug)]
pub(crate) struct OutboxReceiver {
    queue: mpsc::UnboundedReceiver<Queued>,
    budget: Arc<Budget>,
}

impl Outbox {
    /// A queue holding frames of up to `budget` bytes in all (at least one byte, at most
    /// [`MAX_OUTBOUND_BUFFER_SIZE`], so the semaphore can hold it), counted into `held`
    /// while they are held.
    pub(crate) fn channel(budget: u32, held: Arc<AtomicUsize>) -> (Self, OutboxReceiver) {
        let capacity = budget.clamp(1, MAX_OUTBOUND_BUFFER_SIZE);
        let (tx, rx) = mpsc::unbounded_channel();
        let budget = Arc::new(Budget {
            bytes: Semaphore::new(capacity as usize),
            capacity,
            held,
        });
        let receiver = OutboxReceiver {
            queue: rx,
            budget: Arc::clone(&budget),
        };
        (Self { queue: tx, budget }, receiver)
    }

    /// Queues a frame, waiting while the budget is spent.
    pub(crate) async fn send(&self, frame: String) -> Result<(), SessionClosed> {
        let cost = self.budget.cost(&frame);
        self.budget
            .bytes
            .acquire_many(cost)
            .await
            .map_err(|_| SessionClosed)?
            .forget();
        self.budget.held.fetch_add(cost as usize, Ordering::Relaxed);
        self.queue.send(Queued::Frame(frame)).map_err(|_| {
            self.budget.release(cost);
            SessionClosed
        })
    }

    /// Queues the closing handshake (never waits: it costs no budget).
    pub(crate) fn close(&self, code: u16, reason: &'static str) -> Result<(), SessionClosed> {
        self.queue
            .send(Queued::Close { code, reason })
            .map_err(|_| SessionClosed)
    }
}

impl OutboxReceiver {
    /// The next item; `None` once every producer is gone (or the queue was closed and
    /// drained).
    pub(crate) async fn recv(&mut self) -> Option<Outbound> {
        let item = self.queue.recv().await?;
        Some(self.charged(item))
    }

    /// The next item if one is queued right now.
    pub(crate) fn try_recv(&mut self) -> Option<Outbound> {
        let item = self.queue.try_recv().ok()?;
        Some(self.charged(item))
    }

    /// Fails every further send, wakes the ones waiting for budget, and drops what is
    /// queued (nobody will write it), giving its bytes back.
    pub(crate) fn close(&mut self) {
        self.budget.bytes.close();
        self.queue.close();
        while let Ok(item) = self.queue.try_recv() {
            drop(self.charged(item));
        }
    }

    fn charged(&self, item: Queued) -> Outbound {
        match item {
            Queued::Frame(text) => {
                let cost = self.budget.cost(&text);
                Outbound::Frame(text, Charge(Some((Arc::clone(&self.budget), cost))))
            }
            Queued::Close { code, reason } => Outbound::Close { code, reason },
        }
    }
}

impl Drop for OutboxReceiver {
    /// Gives back the bytes of frames that will never be written, so the gauge stays true.
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::task::JoinHandle;

    use super::*;

    /// Proves `sending` is waiting for budget. Run with paused time: the sleep only passes
    /// once every task is blocked, so a send the budget allowed would have finished.
    async fn assert_waits(sending: &mut JoinHandle<Result<(), SessionClosed>>, why: &str) {
        tokio::select! {
            sent = sending => panic!("{why}: {sent:?}"),
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }

    /// Sends `frame` from a task of its own, so the test can watch it wait.
    fn send_later(outbox: &Outbox, frame: &str) -> JoinHandle<Result<(), SessionClosed>> {
        let outbox = outbox.clone();
        let frame = frame.to_owned();
        tokio::spawn(async move { outbox.send(frame).await })
    }

    fn text(item: Option<Outbound>) -> String {
        match item {
            Some(Outbound::Frame(text, _)) => text,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn frames_arrive_in_order_and_fail_once_closed() {
        let (outbox, mut rx) = Outbox::channel(1 << 20, Arc::default());
        let sending = tokio::spawn({
            let outbox = outbox.clone();
            async move {
                outbox.send("a".to_owned()).await?;
                outbox.send("b".to_owned()).await?;
                outbox.close(1000, "bye")
            }
        });
        assert_eq!(text(rx.recv().await), "a");
        assert_eq!(text(rx.recv().await), "b");
        assert!(matches!(
            rx.recv().await,
            Some(Outbound::Close {
                code: 1000,
                reason: "bye"
            })
        ));
        assert!(matches!(sending.await, Ok(Ok(()))));
        drop(rx);
        assert_eq!(outbox.send("c".to_owned()).await, Err(SessionClosed));
        assert_eq!(outbox.close(1000, ""), Err(SessionClosed));
    }

    #[tokio::test]
    async fn a_frame_larger_than_the_budget_passes_an_empty_queue() {
        let (outbox, mut rx) = Outbox::channel(100, Arc::default());
        let big = "x".repeat(10_000);
        outbox.send(big.clone()).await.expect("queued alone");
        assert_eq!(text(rx.recv().await), big);
    }

    #[tokio::test(start_paused = true)]
    async fn a_sender_waits_while_the_budget_is_spent_and_proceeds_when_drained() {
        let cost = |len: u32| len + FRAME_OVERHEAD;
        let (outbox, mut rx) = Outbox::channel(cost(10) * 2, Arc::default());
        outbox.send("0123456789".to_owned()).await.expect("fits");
        outbox.send("abcdefghij".to_owned()).await.expect("fits");
        let mut third = send_later(&outbox, "third");
        assert_waits(&mut third, "sent over budget").await;
        let first = rx.recv().await;
        assert_eq!(text(first), "0123456789", "dropped: its bytes are free");
        assert_eq!(third.await.expect("task"), Ok(()));
        assert_eq!(text(rx.recv().await), "abcdefghij");
        assert_eq!(text(rx.recv().await), "third");
    }

    #[tokio::test(start_paused = true)]
    async fn a_charge_holds_its_bytes_until_dropped() {
        let (outbox, mut rx) = Outbox::channel(FRAME_OVERHEAD + 1, Arc::default());
        outbox.send("a".to_owned()).await.expect("fits");
        let Some(Outbound::Frame(_, charge)) = rx.recv().await else {
            panic!("a frame")
        };
        let mut held = Charge::default();
        held.absorb(charge);
        let mut next = send_later(&outbox, "b");
        assert_waits(&mut next, "sent while the first frame is unwritten").await;
        drop(held);
        assert_eq!(next.await.expect("task"), Ok(()));
        assert_eq!(text(rx.recv().await), "b");
    }

    #[tokio::test]
    async fn the_gauge_counts_what_is_held_until_written_or_dropped() {
        let held = Arc::new(AtomicUsize::new(0));
        let (outbox, mut rx) = Outbox::channel(1 << 20, Arc::clone(&held));
        let (other, other_rx) = Outbox::channel(1 << 20, Arc::clone(&held));
        outbox.send("abc".to_owned()).await.expect("queued");
        other.send("de".to_owned()).await.expect("queued");
        let both = (3 + FRAME_OVERHEAD + 2 + FRAME_OVERHEAD) as usize;
        assert_eq!(
            held.load(Ordering::Relaxed),
            both,
            "one gauge for all sessions"
        );
        let Some(Outbound::Frame(_, charge)) = rx.recv().await else {
            panic!("a frame")
        };
        assert_eq!(
            held.load(Ordering::Relaxed),
            both,
            "taken but not yet written"
        );
        drop(charge);
        assert_eq!(held.load(Ordering::Relaxed), (2 + FRAME_OVERHEAD) as usize);
        drop(other_rx);
        assert_eq!(
            held.load(Ordering::Relaxed),
            0,
            "unwritten frames of a gone writer"
        );
        assert_eq!(other.send("f".to_owned()).await, Err(SessionClosed));
        assert_eq!(held.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_frame_larger_than_the_budget_waits_for_the_queue_to_drain_then_goes_alone() {
        let budget = 100;
        let (outbox, mut rx) = Outbox::channel(budget, Arc::default());
        outbox.send("small".to_owned()).await.expect("fits");
        let big = "x".repeat(10 * budget as usize);
        let mut sending = send_later(&outbox, &big);
        assert_waits(&mut sending, "sent past a non-empty queue").await;
        // Writing the small frame frees the whole budget: the big one takes all of it.
        assert_eq!(text(rx.recv().await), "small");
        assert_eq!(sending.await.expect("task"), Ok(()));
        let mut after = send_later(&outbox, "after");
        assert_waits(&mut after, "sent beside a frame holding the whole budget").await;
        assert_eq!(text(rx.recv().await), big);
        assert_eq!(after.await.expect("task"), Ok(()));
        assert_eq!(text(rx.recv().await), "after");
    }

    #[tokio::test(start_paused = true)]
    async fn closing_the_receiver_wakes_senders_waiting_for_budget() {
        let held = Arc::new(AtomicUsize::new(0));
        let (outbox, mut rx) = Outbox::channel(1, Arc::clone(&held));
        outbox.send("held".to_owned()).await.expect("fits");
        let mut waiting = send_later(&outbox, "waits");
        assert_waits(&mut waiting, "sent over budget").await;
        rx.close();
        assert_eq!(waiting.await.expect("task"), Err(SessionClosed));
        assert!(rx.recv().await.is_none(), "what was queued is dropped");
        assert_eq!(held.load(Ordering::Relaxed), 0, "and its bytes given back");
    }
}
