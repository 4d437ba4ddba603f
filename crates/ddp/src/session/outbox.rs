//! The session's byte-bounded queue of outbound frames.
//!
//! Everything that talks to the client (the reader answering pings, the worker sending
//! results, publications sending data) pushes finished frames here; the transport's
//! writer drains it. The bound is in bytes, not frames: one `syncNewPackageData` result
//! can be megabytes, so a count of frames would not bound memory. Each queued frame holds
//! a [`Charge`] on the session's budget (a semaphore of bytes) until the writer has handed
//! it to the socket, so a client that reads slowly slows down its own producers, and
//! nobody else, once `budget` bytes are held. A frame larger than the whole budget takes
//! all of it: it waits for an empty queue and then goes through alone, so it can never
//! deadlock.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::error::SessionClosed;

/// What one queued frame costs beyond its text: the `String` header, its queue slot and
/// its permit, so that a flood of tiny frames is bounded too.
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

/// Bytes of a session's budget held by frames on their way to the client; given back
/// when dropped, which writers do once the frames are handed to the socket.
#[derive(Debug, Default)]
pub(crate) struct Charge(Option<OwnedSemaphorePermit>);

impl Charge {
    /// Takes over `other`'s bytes, for frames batched into one write.
    pub(crate) fn absorb(&mut self, other: Self) {
        match (&mut self.0, other.0) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (mine @ None, theirs) => *mine = theirs,
            (Some(_), None) => {}
        }
    }
}

/// The producing side of the queue.
#[derive(Debug, Clone)]
pub(crate) struct Outbox {
    queue: mpsc::UnboundedSender<Outbound>,
    budget: Arc<Semaphore>,
    /// The budget's size in bytes: the most one frame is charged.
    capacity: u32,
}

/// The writer's side of the queue. Dropping or closing it fails every send, including
/// those waiting for budget.
#[derive(Debug)]
pub(crate) struct OutboxReceiver {
    queue: mpsc::UnboundedReceiver<Outbound>,
    budget: Arc<Semaphore>,
}

impl Outbox {
    /// A queue holding frames of up to `budget` bytes in all (at least one byte).
    pub(crate) fn channel(budget: u32) -> (Self, OutboxReceiver) {
        let capacity = budget.max(1);
        let (tx, rx) = mpsc::unbounded_channel();
        let budget = Arc::new(Semaphore::new(capacity as usize));
        let receiver = OutboxReceiver {
            queue: rx,
            budget: Arc::clone(&budget),
        };
        (
            Self {
                queue: tx,
                budget,
                capacity,
            },
            receiver,
        )
    }

    /// Queues a frame, waiting while the budget is spent.
    pub(crate) async fn send(&self, frame: String) -> Result<(), SessionClosed> {
        let cost = u32::try_from(frame.len())
            .unwrap_or(u32::MAX)
            .saturating_add(FRAME_OVERHEAD)
            .min(self.capacity);
        let permit = Arc::clone(&self.budget)
            .acquire_many_owned(cost)
            .await
            .map_err(|_| SessionClosed)?;
        self.queue
            .send(Outbound::Frame(frame, Charge(Some(permit))))
            .map_err(|_| SessionClosed)
    }

    /// Queues the closing handshake (never waits: it costs no budget).
    pub(crate) fn close(&self, code: u16, reason: &'static str) -> Result<(), SessionClosed> {
        self.queue
            .send(Outbound::Close { code, reason })
            .map_err(|_| SessionClosed)
    }
}

impl OutboxReceiver {
    /// The next item; `None` once every producer is gone (or the queue was closed and
    /// drained).
    pub(crate) async fn recv(&mut self) -> Option<Outbound> {
        self.queue.recv().await
    }

    /// The next item if one is queued right now.
    pub(crate) fn try_recv(&mut self) -> Option<Outbound> {
        self.queue.try_recv().ok()
    }

    /// Fails every further send, and wakes the ones waiting for budget.
    pub(crate) fn close(&mut self) {
        self.budget.close();
        self.queue.close();
    }
}

impl Drop for OutboxReceiver {
    fn drop(&mut self) {
        self.budget.close();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn text(item: Option<Outbound>) -> String {
        match item {
            Some(Outbound::Frame(text, _)) => text,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn frames_arrive_in_order_and_fail_once_closed() {
        let (outbox, mut rx) = Outbox::channel(1 << 20);
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
        let (outbox, mut rx) = Outbox::channel(100);
        let big = "x".repeat(10_000);
        outbox.send(big.clone()).await.expect("queued alone");
        assert_eq!(text(rx.recv().await), big);
    }

    #[tokio::test(start_paused = true)]
    async fn a_sender_waits_while_the_budget_is_spent_and_proceeds_when_drained() {
        let cost = |len: u32| len + FRAME_OVERHEAD;
        let (outbox, mut rx) = Outbox::channel(cost(10) * 2);
        outbox.send("0123456789".to_owned()).await.expect("fits");
        outbox.send("abcdefghij".to_owned()).await.expect("fits");
        let mut third = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.send("third".to_owned()).await }
        });
        // Paused time: the sleep only passes once every task is blocked, so the third
        // send has had every chance to get through if the budget allowed it.
        tokio::select! {
            sent = &mut third => panic!("sent over budget: {sent:?}"),
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let first = rx.recv().await;
        assert_eq!(text(first), "0123456789", "dropped: its bytes are free");
        assert_eq!(third.await.expect("task"), Ok(()));
        assert_eq!(text(rx.recv().await), "abcdefghij");
        assert_eq!(text(rx.recv().await), "third");
    }

    #[tokio::test(start_paused = true)]
    async fn a_charge_holds_its_bytes_until_dropped() {
        let (outbox, mut rx) = Outbox::channel(FRAME_OVERHEAD + 1);
        outbox.send("a".to_owned()).await.expect("fits");
        let Some(Outbound::Frame(_, charge)) = rx.recv().await else {
            panic!("a frame")
        };
        let mut held = Charge::default();
        held.absorb(charge);
        let mut next = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.send("b".to_owned()).await }
        });
        tokio::select! {
            sent = &mut next => panic!("sent while the first frame is unwritten: {sent:?}"),
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        drop(held);
        assert_eq!(next.await.expect("task"), Ok(()));
        assert_eq!(text(rx.recv().await), "b");
    }

    #[tokio::test]
    async fn closing_the_receiver_wakes_senders_waiting_for_budget() {
        let (outbox, mut rx) = Outbox::channel(1);
        outbox.send("held".to_owned()).await.expect("fits");
        let waiting = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.send("waits".to_owned()).await }
        });
        tokio::task::yield_now().await;
        rx.close();
        assert_eq!(waiting.await.expect("task"), Err(SessionClosed));
        assert_eq!(text(rx.recv().await), "held", "what was queued drains");
        assert!(rx.recv().await.is_none());
    }
}
