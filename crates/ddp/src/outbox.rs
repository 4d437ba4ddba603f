//! The session's byte-bounded queue of outbound frames, and the server-wide budget every
//! session's queue also draws from.
//!
//! Everything that talks to the client (the reader answering pings, the worker sending
//! results, publications sending data) pushes finished frames here; the transport's
//! writer drains it. The bound is in bytes, not frames: one `syncNewPackageData` result
//! can be megabytes, so a count of frames would not bound memory. A frame takes its size
//! (plus a fixed overhead) from two budgets when it is queued: its session's, a semaphore
//! of bytes, and the server's ([`SharedBudget`]), and the writer gets it with a [`Charge`]
//! that gives both back once the frame is handed to the socket. So a client that reads
//! slowly slows down its own producers, and nobody else, once its session's budget is
//! held. A frame larger than the session's whole budget takes all of it: it waits for an
//! empty session queue and then goes through alone, so it can never deadlock; in the
//! server's budget it counts in full (only a frame larger than the server's whole budget
//! is clamped to it, and then waits for everyone else's frames to drain).
//!
//! A session's budget starts small and grows with trust ([`Outbox::raise`]): the session
//! raises it once the client sent DDP `connect`, and again once it logged in.
//!
//! When the server's budget is spent, a producer evicts the session that has been stalled
//! longest: the one holding bytes whose writer has made no progress (handed no frame to its
//! socket, and not been empty) for the longest time, at least [`EVICTION_MIN_STALL`]. The
//! evicted session's queue is closed (its frames dropped, its producers failed) and its
//! transport ends the connection. A producer waits for room at most the write timeout it
//! is given, then fails (the session ends). So clients that stop reading can hold the
//! server's budget only until someone else needs it, and clients that read keep going.
//!
//! The charge is not stored with the frame (a queue slot stays one [`FrameText`] and a
//! number wide, which an idle session's memory depends on): the writer recomputes the
//! server's share from the frame's length.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::{Semaphore, TryAcquireError, mpsc, watch};
use tokio::time::Instant;

use crate::config::MAX_OUTBOUND_BUFFER_SIZE;
use crate::error::SessionClosed;
use crate::reply::RawText;

/// What one queued frame costs beyond its text: the `String` header, its queue slot and
/// its share of bookkeeping, so that a flood of tiny frames is bounded too.
const FRAME_OVERHEAD: usize = 64;

/// How long a session must have held bytes without its writer making progress before a
/// producer of another session may evict it to make room in the server's budget: long
/// enough that a client busy reading is never taken for a stalled one.
pub(crate) const EVICTION_MIN_STALL: Duration = Duration::from_secs(1);

/// How often a producer waiting for room in the server's budget looks for a session to
/// evict again (one that has since been stalled long enough).
const EVICTION_RETRY: Duration = Duration::from_millis(200);

/// The least time between two scans for a session to evict, server-wide: every waiting
/// producer asks, and a scan visits every session, so with many of both the scans alone
/// would use the CPU the attack is meant not to get.
const EVICTION_SCAN_EVERY: Duration = Duration::from_millis(50);

/// One DDP message's text, as its producer encoded it: whole, or a head and a tail around
/// a body shared with other frames (a `result` carrying a [`RawText`]), so that a
/// `permessage-deflate` writer can compress the head and tail only and splice in the body's
/// shared compressed form. Any other writer joins the parts ([`FrameText::into_string`]).
#[derive(Debug)]
pub(crate) enum FrameText {
    /// The whole text.
    Whole(String),
    /// The text is `head`, `body`, `tail` joined. Boxed, so a queue slot stays narrow.
    Spliced(Box<Spliced>),
}

/// A frame's text around a shared body (see [`FrameText::Spliced`]).
#[derive(Debug)]
pub(crate) struct Spliced {
    pub(crate) head: String,
    pub(crate) body: RawText,
    pub(crate) tail: &'static str,
}

impl FrameText {
    /// The text's length in bytes.
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Whole(text) => text.len(),
            Self::Spliced(spliced) => spliced.len(),
        }
    }

    /// The whole text, for writers that send it as it is.
    pub(crate) fn into_string(self) -> String {
        match self {
            Self::Whole(text) => text,
            Self::Spliced(spliced) => {
                let Spliced { head, body, tail } = *spliced;
                let mut text = head;
                text.reserve_exact(body.as_str().len() + tail.len());
                text.push_str(body.as_str());
                text.push_str(tail);
                text
            }
        }
    }
}

impl Spliced {
    /// The length of the parts joined.
    pub(crate) fn len(&self) -> usize {
        self.head.len() + self.body.as_str().len() + self.tail.len()
    }
}

impl From<String> for FrameText {
    fn from(text: String) -> Self {
        Self::Whole(text)
    }
}

/// An item for the transport's writer.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// One DDP message: one text frame, with the budget it holds until it is written.
    Frame(FrameText, Charge),
    /// Close the WebSocket with this code and reason; nothing after it is sent. Free: it
    /// is queued once, at the end, and must get through even when the budget is spent.
    Close { code: u16, reason: &'static str },
}

/// What the queue holds: an [`Outbound`] with what the frame took from its session's
/// budget (which may have grown since), not the charge itself.
#[derive(Debug)]
enum Queued {
    Frame(FrameText, u32),
    Close { code: u16, reason: &'static str },
}

/// The bytes of outbound frames all sessions of a server may hold together, the gauge of
/// what they hold, and the sessions that hold it (to evict one when it is spent).
#[derive(Debug)]
pub(crate) struct SharedBudget {
    bytes: Semaphore,
    capacity: usize,
    /// Bytes of frames held right now, counted in full (a frame clamped to `capacity`
    /// in the semaphore is not clamped here).
    held: AtomicUsize,
    /// Bytes of frames already encoded by their producers and waiting for room in a
    /// session's budget or this one: memory too, though not yet queued.
    waiting: AtomicUsize,
    /// Every live session budget, by a number of its own.
    sessions: Mutex<HashMap<u64, Weak<Budget>>>,
    next_id: AtomicU64,
    /// The clock sessions' progress is measured on.
    epoch: Instant,
    /// When (on that clock, in ms, plus one so that zero means never) the last scan for a
    /// session to evict started.
    last_scan: AtomicU64,
}

impl SharedBudget {
    /// A budget of `capacity` bytes (at least one, at most what a semaphore can count and
    /// one acquisition can take, so that what a frame takes is always what it gives back).
    pub(crate) fn new(capacity: usize) -> Arc<Self> {
        let most = Semaphore::MAX_PERMITS.min(u32::MAX as usize);
        let capacity = capacity.clamp(1, most);
        Arc::new(Self {
            bytes: Semaphore::new(capacity),
            capacity,
            held: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            sessions: Mutex::default(),
            next_id: AtomicU64::new(0),
            epoch: Instant::now(),
            last_scan: AtomicU64::new(0),
        })
    }

    /// Bytes of outbound frames all sessions hold right now.
    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Bytes of encoded frames waiting for room right now.
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// The budget's size in bytes.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// What a frame of `len` bytes of text takes from this budget.
    fn cost(&self, len: usize) -> usize {
        len.saturating_add(FRAME_OVERHEAD).min(self.capacity)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Evicts the session, other than `asking`, that has held bytes without progress the
    /// longest, if one has for at least [`EVICTION_MIN_STALL`]. Returns whether one was.
    /// At most one scan runs per [`EVICTION_SCAN_EVERY`], server-wide; a producer that
    /// finds one ran lately waits for its result like the others.
    fn evict_stalled(&self, asking: &Budget) -> bool {
        let now = self.now_ms();
        let last = self.last_scan.load(Ordering::Relaxed);
        let every = u64::try_from(EVICTION_SCAN_EVERY.as_millis()).unwrap_or(u64::MAX);
        if last != 0 && now.saturating_add(1).saturating_sub(last) < every {
            return false;
        }
        if self
            .last_scan
            .compare_exchange(
                last,
                now.saturating_add(1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return false;
        }
        let min_stall = u64::try_from(EVICTION_MIN_STALL.as_millis()).unwrap_or(u64::MAX);
        // Collected first: a budget must not be dropped (which locks the map) under the lock.
        let sessions: Vec<Arc<Budget>> = self
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        let victim = {
            sessions
                .iter()
                .filter(|budget| {
                    !std::ptr::eq(budget.as_ref(), asking)
                        && !budget.is_evicted()
                        && budget.held.load(Ordering::Relaxed) > 0
                })
                .map(|budget| (budget.stalled_since.load(Ordering::Relaxed), budget))
                .filter(|(since, _)| now.saturating_sub(*since) >= min_stall)
                .min_by_key(|(since, _)| *since)
                .map(|(_, budget)| Arc::clone(budget))
        };
        let Some(victim) = victim else {
            return false;
        };
        tracing::warn!(
            held = victim.held.load(Ordering::Relaxed),
            server_budget = self.capacity,
            "server-wide outbound budget spent: closing the session stalled longest"
        );
        victim.evict();
        true
    }
}

/// One session's budget, and the server's it draws from too.
#[derive(Debug)]
struct Budget {
    bytes: Semaphore,
    /// The budget's size: the most one frame is charged. Only grows.
    capacity: AtomicU32,
    shared: Arc<SharedBudget>,
    /// This budget's key in `shared.sessions`.
    id: u64,
    /// Bytes this session holds, counted in full.
    held: AtomicUsize,
    /// When (on `shared`'s clock, in ms) the session last had nothing held or last had a
    /// frame handed to its socket: how long it has been stalled, if it holds bytes.
    stalled_since: AtomicU64,
    /// Becomes `true` when the server evicts the session to make room.
    evicted: watch::Sender<bool>,
}

impl Budget {
    /// What `len` bytes of text take from the session's budget.
    fn cost(&self, len: usize) -> u32 {
        u32::try_from(len.saturating_add(FRAME_OVERHEAD))
            .unwrap_or(u32::MAX)
            .min(self.capacity.load(Ordering::Relaxed))
    }

    /// What a frame of `len` bytes of text took from both budgets, `session` of this one.
    fn taken(&self, len: usize, session: u32) -> Taken {
        Taken {
            real: len.saturating_add(FRAME_OVERHEAD),
            shared: self.shared.cost(len),
            session: session as usize,
        }
    }

    /// Gives back what frames took. Writing a frame is progress.
    fn release(&self, taken: Taken) {
        self.held.fetch_sub(taken.real, Ordering::Relaxed);
        self.stalled_since
            .store(self.shared.now_ms(), Ordering::Relaxed);
        self.shared.held.fetch_sub(taken.real, Ordering::Relaxed);
        self.shared.bytes.add_permits(taken.shared);
        self.bytes.add_permits(taken.session);
    }

    fn is_evicted(&self) -> bool {
        *self.evicted.borrow()
    }

    /// Whether the session holds bytes its client has taken nothing of for at least
    /// [`EVICTION_MIN_STALL`]: a candidate for eviction, and no candidate for more room.
    fn is_stalled(&self) -> bool {
        let min_stall = u64::try_from(EVICTION_MIN_STALL.as_millis()).unwrap_or(u64::MAX);
        self.held.load(Ordering::Relaxed) > 0
            && self
                .shared
                .now_ms()
                .saturating_sub(self.stalled_since.load(Ordering::Relaxed))
                >= min_stall
    }

    /// Fails the session's producers and tells its writer to stop (see
    /// [`OutboxReceiver::evicted`]).
    fn evict(&self) {
        self.evicted.send_replace(true);
        self.bytes.close();
    }

    /// Takes room for a frame of `len` bytes from the server's budget, evicting stalled
    /// sessions to make it, for at most `patience`. While the budget is spent, a session
    /// that is stalled itself does not queue for room (it only takes room that is free
    /// when it looks), so the room evictions free goes to sessions whose clients read, not
    /// to the next frames of clients that do not.
    async fn acquire_shared(&self, len: usize, patience: Duration) -> Result<(), SessionClosed> {
        // At most the capacity, which fits in a `u32`.
        let cost = u32::try_from(self.shared.cost(len)).unwrap_or(u32::MAX);
        let deadline = Instant::now() + patience;
        loop {
            match self.shared.bytes.try_acquire_many(cost) {
                Ok(permit) => {
                    permit.forget();
                    return Ok(());
                }
                Err(TryAcquireError::Closed) => return Err(SessionClosed),
                Err(TryAcquireError::NoPermits) => {}
            }
            let stalled = self.is_stalled();
            if !stalled {
                self.shared.evict_stalled(self);
            }
            let retry = deadline.min(Instant::now() + EVICTION_RETRY);
            if Instant::now() >= deadline {
                tracing::warn!(
                    ?patience,
                    "no room in the server-wide outbound budget within the write timeout; closing"
                );
                return Err(SessionClosed);
            }
            let mut evicted = self.evicted.subscribe();
            if stalled {
                tokio::select! {
                    () = tokio::time::sleep_until(retry) => continue,
                    _ = evicted.wait_for(|evicted| *evicted) => return Err(SessionClosed),
                }
            }
            tokio::select! {
                acquired = self.shared.bytes.acquire_many(cost) => {
                    acquired.map_err(|_| SessionClosed)?.forget();
                    return Ok(());
                }
                () = tokio::time::sleep_until(retry) => {}
                _ = evicted.wait_for(|evicted| *evicted) => return Err(SessionClosed),
            }
        }
    }
}

impl Drop for Budget {
    fn drop(&mut self) {
        self.shared
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

/// What frames took: their bytes counted in full, from the server's budget and from their
/// session's.
#[derive(Debug, Clone, Copy, Default)]
struct Taken {
    real: usize,
    shared: usize,
    session: usize,
}

/// Bytes of a session's budget (and the server's) held by frames on their way to the
/// client; given back when dropped, which writers do once the frames are handed to the
/// socket.
#[derive(Debug, Default)]
pub(crate) struct Charge(Option<(Arc<Budget>, Taken)>);

impl Charge {
    /// Takes over `other`'s bytes, for frames of one session batched into one write.
    pub(crate) fn absorb(&mut self, mut other: Self) {
        match (&mut self.0, other.0.take()) {
            (Some((budget, mine)), Some((theirs_budget, theirs))) => {
                debug_assert!(
                    Arc::ptr_eq(budget, &theirs_budget),
                    "charges of one session's budget only"
                );
                mine.real += theirs.real;
                mine.shared += theirs.shared;
                mine.session += theirs.session;
            }
            (mine @ None, theirs) => *mine = theirs,
            (Some(_), None) => {}
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if let Some((budget, taken)) = self.0.take() {
            budget.release(taken);
        }
    }
}

/// The producing side of the queue.
#[derive(Debug, Clone)]
pub(crate) struct Outbox {
    queue: mpsc::UnboundedSender<Queued>,
    budget: Arc<Budget>,
    /// The longest a send waits for room in the server's budget.
    patience: Duration,
}

/// The writer's side of the queue. Dropping or closing it fails every send, including
/// those waiting for budget.
#[derive(Debug)]
pub(crate) struct OutboxReceiver {
    queue: mpsc::UnboundedReceiver<Queued>,
    budget: Arc<Budget>,
    evicted: watch::Receiver<bool>,
}

/// Counts a frame's bytes as waiting for room while it is alive.
struct Waiting<'a> {
    gauge: &'a AtomicUsize,
    bytes: usize,
}

impl<'a> Waiting<'a> {
    fn new(gauge: &'a AtomicUsize, bytes: usize) -> Self {
        gauge.fetch_add(bytes, Ordering::Relaxed);
        Self { gauge, bytes }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.gauge.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

impl Outbox {
    /// A queue holding frames of up to `budget` bytes in all (at least one byte, at most
    /// [`MAX_OUTBOUND_BUFFER_SIZE`], so the semaphore can hold it), drawing from `shared`
    /// too, where a send waits for room at most `patience`.
    pub(crate) fn channel(
        budget: u32,
        shared: &Arc<SharedBudget>,
        patience: Duration,
    ) -> (Self, OutboxReceiver) {
        let capacity = budget.clamp(1, MAX_OUTBOUND_BUFFER_SIZE);
        let (tx, rx) = mpsc::unbounded_channel();
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let budget = Arc::new(Budget {
            bytes: Semaphore::new(capacity as usize),
            capacity: AtomicU32::new(capacity),
            shared: Arc::clone(shared),
            id,
            held: AtomicUsize::new(0),
            stalled_since: AtomicU64::new(shared.now_ms()),
            evicted: watch::Sender::new(false),
        });
        shared
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, Arc::downgrade(&budget));
        let receiver = OutboxReceiver {
            queue: rx,
            evicted: budget.evicted.subscribe(),
            budget: Arc::clone(&budget),
        };
        let outbox = Self {
            queue: tx,
            budget,
            patience,
        };
        (outbox, receiver)
    }

    /// Grows the session's budget to `budget` bytes (at most
    /// [`MAX_OUTBOUND_BUFFER_SIZE`]); a smaller value changes nothing.
    pub(crate) fn raise(&self, budget: u32) {
        let budget = budget.min(MAX_OUTBOUND_BUFFER_SIZE);
        let before = self.budget.capacity.fetch_max(budget, Ordering::Relaxed);
        if budget > before {
            self.budget.bytes.add_permits((budget - before) as usize);
        }
    }

    /// Queues a frame, waiting while the session's budget or the server's is spent.
    pub(crate) async fn send(&self, frame: impl Into<FrameText>) -> Result<(), SessionClosed> {
        let frame = frame.into();
        let budget = &self.budget;
        let cost = budget.cost(frame.len());
        // Cancel-safe: the gauge and the session's bytes are given back if this is dropped.
        let waiting = Waiting::new(&budget.shared.waiting, frame.len());
        let session_bytes = budget
            .bytes
            .acquire_many(cost)
            .await
            .map_err(|_| SessionClosed)?;
        budget.acquire_shared(frame.len(), self.patience).await?;
        session_bytes.forget();
        drop(waiting);
        let real = frame.len().saturating_add(FRAME_OVERHEAD);
        if budget.held.fetch_add(real, Ordering::Relaxed) == 0 {
            // The stall clock starts when the session starts holding bytes.
            budget
                .stalled_since
                .store(budget.shared.now_ms(), Ordering::Relaxed);
        }
        budget.shared.held.fetch_add(real, Ordering::Relaxed);
        let taken = budget.taken(frame.len(), cost);
        self.queue.send(Queued::Frame(frame, cost)).map_err(|_| {
            budget.release(taken);
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
    /// drained), or once the session was evicted (then the queue is closed).
    pub(crate) async fn recv(&mut self) -> Option<Outbound> {
        let item = tokio::select! {
            item = self.queue.recv() => item,
            _ = self.evicted.wait_for(|evicted| *evicted) => None,
        };
        match item {
            Some(item) => Some(self.charged(item)),
            None => {
                self.close();
                None
            }
        }
    }

    /// The next item if one is queued right now.
    pub(crate) fn try_recv(&mut self) -> Option<Outbound> {
        let item = self.queue.try_recv().ok()?;
        Some(self.charged(item))
    }

    /// What tells the session's writer that the server evicted it to make room in its
    /// budget: the writer must stop, even in the middle of a frame.
    pub(crate) fn eviction(&self) -> Eviction {
        Eviction(self.evicted.clone())
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
            Queued::Frame(text, cost) => {
                let taken = self.budget.taken(text.len(), cost);
                let charge = Charge(Some((Arc::clone(&self.budget), taken)));
                Outbound::Frame(text, charge)
            }
            Queued::Close { code, reason } => Outbound::Close { code, reason },
        }
    }
}

/// Resolves [`wait`](Self::wait) once a session is evicted (see
/// [`OutboxReceiver::eviction`]).
#[derive(Debug, Clone)]
pub(crate) struct Eviction(watch::Receiver<bool>);

impl Eviction {
    /// Resolves once the session is evicted; never, if it is not.
    pub(crate) async fn wait(mut self) {
        if self.0.wait_for(|evicted| *evicted).await.is_err() {
            std::future::pending::<()>().await;
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

    #[test]
    fn a_spliced_frame_is_its_parts_joined_and_stays_narrow() {
        let frame = FrameText::Spliced(Box::new(Spliced {
            head: "{\"id\":".to_owned(),
            body: RawText::from("[1]"),
            tail: "}",
        }));
        assert_eq!(frame.len(), 10);
        assert_eq!(frame.into_string(), "{\"id\":[1]}");
        assert_eq!(size_of::<FrameText>(), size_of::<String>());
    }

    /// A queue of `budget` bytes under a server budget too large to matter.
    fn channel(budget: u32) -> (Outbox, OutboxReceiver) {
        Outbox::channel(budget, &SharedBudget::new(1 << 30), Duration::from_secs(60))
    }

    fn text(item: Option<Outbound>) -> String {
        match item {
            Some(Outbound::Frame(text, _)) => text.into_string(),
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn frames_arrive_in_order_and_fail_once_closed() {
        let (outbox, mut rx) = channel(1 << 20);
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
        let (outbox, mut rx) = channel(100);
        let big = "x".repeat(10_000);
        outbox.send(big.clone()).await.expect("queued alone");
        assert_eq!(text(rx.recv().await), big);
    }

    #[tokio::test(start_paused = true)]
    async fn a_sender_waits_while_the_budget_is_spent_and_proceeds_when_drained() {
        let cost = |len: u32| len + FRAME_OVERHEAD as u32;
        let (outbox, mut rx) = channel(cost(10) * 2);
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
        let (outbox, mut rx) = channel(FRAME_OVERHEAD as u32 + 1);
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
        let shared = SharedBudget::new(1 << 30);
        let patience = Duration::from_secs(60);
        let (outbox, mut rx) = Outbox::channel(1 << 20, &shared, patience);
        let (other, other_rx) = Outbox::channel(1 << 20, &shared, patience);
        let held = || shared.held();
        outbox.send("abc".to_owned()).await.expect("queued");
        other.send("de".to_owned()).await.expect("queued");
        let both = 3 + FRAME_OVERHEAD + 2 + FRAME_OVERHEAD;
        assert_eq!(held(), both, "one gauge for all sessions");
        let Some(Outbound::Frame(_, charge)) = rx.recv().await else {
            panic!("a frame")
        };
        assert_eq!(held(), both, "taken but not yet written");
        drop(charge);
        assert_eq!(held(), 2 + FRAME_OVERHEAD);
        drop(other_rx);
        assert_eq!(held(), 0, "unwritten frames of a gone writer");
        assert_eq!(other.send("f".to_owned()).await, Err(SessionClosed));
        assert_eq!(held(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_frame_larger_than_the_budget_waits_for_the_queue_to_drain_then_goes_alone() {
        let budget = 100;
        let (outbox, mut rx) = channel(budget);
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
        let shared = SharedBudget::new(1 << 30);
        let (outbox, mut rx) = Outbox::channel(1, &shared, Duration::from_secs(60));
        let held = || shared.held();
        outbox.send("held".to_owned()).await.expect("fits");
        let mut waiting = send_later(&outbox, "waits");
        assert_waits(&mut waiting, "sent over budget").await;
        rx.close();
        assert_eq!(waiting.await.expect("task"), Err(SessionClosed));
        assert!(rx.recv().await.is_none(), "what was queued is dropped");
        assert_eq!(held(), 0, "and its bytes given back");
    }

    #[tokio::test]
    async fn a_frame_larger_than_its_session_budget_counts_in_full_on_the_server() {
        let shared = SharedBudget::new(1 << 20);
        let (outbox, mut rx) = Outbox::channel(100, &shared, Duration::from_secs(60));
        outbox.send("x".repeat(10_000)).await.expect("queued alone");
        assert_eq!(shared.held(), 10_000 + FRAME_OVERHEAD, "not clamped to 100");
        assert_eq!(
            shared.bytes.available_permits(),
            (1 << 20) - 10_000 - FRAME_OVERHEAD
        );
        drop(rx.recv().await);
        assert_eq!(shared.held(), 0);
        assert_eq!(shared.bytes.available_permits(), 1 << 20);
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_budget_grows_when_raised_and_never_shrinks() {
        let cost = 10 + FRAME_OVERHEAD as u32;
        let (outbox, mut rx) = channel(cost);
        outbox.send("0123456789".to_owned()).await.expect("fits");
        let mut second = send_later(&outbox, "abcdefghij");
        assert_waits(&mut second, "sent over the small budget").await;
        outbox.raise(cost * 2);
        assert_eq!(second.await.expect("task"), Ok(()));
        outbox.raise(1);
        assert_eq!(outbox.budget.capacity.load(Ordering::Relaxed), cost * 2);
        assert_eq!(text(rx.recv().await), "0123456789");
        assert_eq!(text(rx.recv().await), "abcdefghij");
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_server_budget_evicts_the_session_stalled_longest() {
        let frame = 1000;
        let shared = SharedBudget::new(2 * (frame + FRAME_OVERHEAD));
        let patience = Duration::from_secs(60);
        let (oldest, oldest_rx) = Outbox::channel(1 << 20, &shared, patience);
        let (newer, _newer_rx) = Outbox::channel(1 << 20, &shared, patience);
        let (honest, mut honest_rx) = Outbox::channel(1 << 20, &shared, patience);
        oldest.send("a".repeat(frame)).await.expect("fits");
        tokio::time::sleep(EVICTION_MIN_STALL).await;
        newer.send("b".repeat(frame)).await.expect("fits");
        tokio::time::sleep(EVICTION_MIN_STALL).await;
        // A stalled writer stops once evicted, which drops what it held.
        let writer = tokio::spawn(async move {
            oldest_rx.eviction().wait().await;
            drop(oldest_rx);
        });
        honest.send("c".repeat(frame)).await.expect("room made");
        writer.await.expect("evicted");
        assert_eq!(oldest.send("lost".to_owned()).await, Err(SessionClosed));
        assert_eq!(
            shared.held(),
            2 * (frame + FRAME_OVERHEAD),
            "newer + honest"
        );
        assert_eq!(text(honest_rx.recv().await), "c".repeat(frame));
    }

    #[tokio::test(start_paused = true)]
    async fn a_producer_that_finds_no_stalled_session_gives_up_after_its_patience() {
        let shared = SharedBudget::new(100);
        let (outbox, _rx) = Outbox::channel(1 << 20, &shared, Duration::from_secs(5));
        outbox.send("x".repeat(30)).await.expect("fits");
        // Its own frames are not another session's to evict.
        assert_eq!(outbox.send("y".repeat(30)).await, Err(SessionClosed));
        assert_eq!(shared.held(), 30 + FRAME_OVERHEAD);
        assert_eq!(shared.bytes.available_permits(), 100 - 30 - FRAME_OVERHEAD);
    }

    #[tokio::test(start_paused = true)]
    async fn frames_waiting_for_room_are_counted_until_queued_or_given_up() {
        let shared = SharedBudget::new(1 << 20);
        let (outbox, mut rx) = Outbox::channel(1, &shared, Duration::from_secs(60));
        outbox.send("a".to_owned()).await.expect("fits");
        let mut waiting = send_later(&outbox, "bcd");
        assert_waits(&mut waiting, "sent over the session budget").await;
        assert_eq!(shared.waiting(), 3);
        drop(rx.recv().await);
        assert_eq!(waiting.await.expect("task"), Ok(()));
        assert_eq!(shared.waiting(), 0, "queued");
        let mut cancelled = send_later(&outbox, "efgh");
        assert_waits(&mut cancelled, "sent over the session budget").await;
        assert_eq!(shared.waiting(), 4);
        cancelled.abort();
        assert!(cancelled.await.is_err(), "cancelled");
        assert_eq!(shared.waiting(), 0, "given up");
        drop(rx.recv().await);
        outbox
            .send("i".to_owned())
            .await
            .expect("the session's bytes came back");
    }
}
