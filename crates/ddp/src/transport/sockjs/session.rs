//! SockJS sessions of the HTTP transports: a registry keyed by session id, one receiver at
//! a time, and the disconnect delay.
//!
//! A session outlives the HTTP requests that carry it: each polling request, or each
//! streaming response until it reaches the response limit, is one *receiver*. The
//! application's output waits in the session's bounded queue between receivers, so a
//! client that stops polling only ever costs that queue; once no receiver has been
//! attached for the disconnect delay, the session is removed and the application sees
//! its input end and its output fail. A receiver that goes away in the middle of a
//! request (the client aborted it) closes the session with `c[1002,"Connection
//! interrupted"]`, as the protocol suggests.
//!
//! The queue is the application's byte-bounded outbox: messages a receiver batches into a
//! response keep their [`Charge`] on it until the response body hands them to the HTTP
//! layer, so batching does not hold bytes beyond `--outbound-buffer-size`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedMutexGuard, mpsc, watch};
use tokio::time::{Instant, sleep_until, timeout};

use super::framing;
use crate::outbox::{Charge, Eviction, Outbound, OutboxReceiver};
use crate::server::Admission;

/// The longest a send request waits for the application to take its messages.
const TAKE_WAIT: Duration = Duration::from_secs(1);

/// How long a receiver waits for more messages once it has some, so that messages sent
/// together (a method's `updated` and `result`) travel in one response.
const LINGER: Duration = Duration::from_millis(1);

/// The fewest characters of a session id a new HTTP-transport session is opened for:
/// `sockjs-client` makes 8 random ones (the conformance suite uses longer ones), so short
/// ids are not a client's, and would let clients guess and collide with each other's.
const MIN_SESSION_ID: usize = 8;

/// The most characters of a session id: each open session keeps its id.
const MAX_SESSION_ID: usize = 128;

/// Whether `id` may name a new HTTP-transport session: [`MIN_SESSION_ID`] to
/// [`MAX_SESSION_ID`] visible ASCII characters (the URL's raw text, percent escapes
/// included), without the dots and slashes the URL scheme already excludes.
pub(crate) fn is_session_id(id: &str) -> bool {
    (MIN_SESSION_ID..=MAX_SESSION_ID).contains(&id.len())
        && id
            .bytes()
            .all(|byte| byte.is_ascii_graphic() && byte != b'.' && byte != b'/')
}

/// The open sessions of one SockJS endpoint.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<String, Arc<Session>>>,
}

impl Sessions {
    /// The session `id`, if it exists.
    pub(crate) fn get(&self, id: &str) -> Option<Arc<Session>> {
        self.lock().get(id).cloned()
    }

    /// The session `id`, or a new one made by `create` (which may refuse with `None`).
    /// Returns the session and whether it is new.
    pub(crate) fn get_or_create(
        &self,
        id: &str,
        create: impl FnOnce() -> Option<Session>,
    ) -> Option<(Arc<Session>, bool)> {
        let mut map = self.lock();
        if let Some(session) = map.get(id) {
            return Some((Arc::clone(session), false));
        }
        let session = Arc::new(create()?);
        map.insert(id.to_owned(), Arc::clone(&session));
        Some((session, true))
    }

    /// Removes `session` as `id`, unless another session has taken its place.
    pub(crate) fn remove(&self, id: &str, session: &Arc<Session>) {
        let mut map = self.lock();
        if map
            .get(id)
            .is_some_and(|current| Arc::ptr_eq(current, session))
        {
            map.remove(id);
        }
    }

    /// How many sessions are open.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One SockJS session of an HTTP transport.
#[derive(Debug)]
pub(crate) struct Session {
    /// Client messages for the application; taken when the session expires, so the
    /// application sees its input end even while a send request still holds the session.
    inbound: Mutex<Option<mpsc::Sender<String>>>,
    /// The application's output; whoever holds the lock is the session's receiver.
    output: Arc<tokio::sync::Mutex<Output>>,
    /// Since when no response of the session has been in delivery.
    idle: Mutex<Idle>,
    /// Resolves when the server evicts the session to make room in its outbound budget:
    /// it then ends at once, as if expired.
    eviction: Eviction,
    /// Whether the application considers the session started (see
    /// [`Channels::established`](super::app::Channels)).
    established: Option<watch::Receiver<bool>>,
}

/// The session's idle clock: it runs only while no response is being delivered.
#[derive(Debug)]
struct Idle {
    /// Responses (receivers, and bodies still being written) holding the clock.
    delivering: usize,
    /// When the last of them ended.
    since: Instant,
    /// Set, under the same lock as the check, when the session expires: a receiver that
    /// attached to it in the meantime sees it and leaves for a new session.
    expired: bool,
}

/// Keeps the session from expiring while a response is delivered: held by a receiver,
/// and by a response body until it is written out (or dropped), so the disconnect delay
/// counts from when the client got its data, not from when the handler returned.
#[derive(Debug)]
pub(crate) struct Delivery(Arc<Session>);

impl Delivery {
    fn new(session: &Arc<Session>) -> Self {
        session.idle().delivering += 1;
        Self(Arc::clone(session))
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        let mut idle = self.0.idle();
        idle.delivering -= 1;
        if idle.delivering == 0 {
            idle.since = Instant::now();
        }
    }
}

/// What the receiver side of a session knows.
#[derive(Debug)]
struct Output {
    queue: OutboxReceiver,
    opened: bool,
    closed: Option<(u16, String)>,
    /// The session's place under `--max-sessions`: freed when the close frame goes to a
    /// receiver, or when the session is dropped (expired), not when its application ends.
    slot: Option<Admission>,
}

/// What a receiver sends next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// A frame; more may follow on a streaming response.
    Frame(String),
    /// The close frame: the response ends after it.
    Close(String),
}

impl Session {
    /// A session fed by `inbound` and read from `queue` (the application's outbox),
    /// holding `slot` until its close frame goes to a receiver or it is dropped.
    pub(crate) fn new(
        inbound: mpsc::Sender<String>,
        queue: OutboxReceiver,
        slot: Option<Admission>,
        established: Option<watch::Receiver<bool>>,
    ) -> Self {
        Self {
            established,
            eviction: queue.eviction(),
            inbound: Mutex::new(Some(inbound)),
            output: Arc::new(tokio::sync::Mutex::new(Output {
                queue,
                opened: false,
                closed: None,
                slot,
            })),
            idle: Mutex::new(Idle {
                delivering: 0,
                since: Instant::now(),
                expired: false,
            }),
        }
    }

    /// Becomes the session's receiver, or `None` if another receiver is attached.
    pub(crate) fn attach(self: &Arc<Self>) -> Option<Receiver> {
        let output = Arc::clone(&self.output).try_lock_owned().ok()?;
        Some(Receiver {
            delivery: Delivery::new(self),
            output,
            finished: false,
        })
    }

    /// The sender of client messages for the application, or `None` once the session
    /// has been torn down.
    pub(crate) fn inbound(&self) -> Option<mpsc::Sender<String>> {
        self.inbound
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether the session has expired (it is no longer in its registry).
    pub(crate) fn expired(&self) -> bool {
        self.idle().expired
    }

    /// Waits (up to [`TAKE_WAIT`]) until the application has taken every message sent to
    /// it, so that a send request answers after its messages were handled, as in the
    /// reference servers, where the application runs inside the request. Woken by the
    /// channel itself: every slot free again means every message taken.
    pub(crate) async fn taken(inbound: &mpsc::Sender<String>) {
        // An error means the application is gone: nothing more will be taken.
        let _ = timeout(TAKE_WAIT, inbound.reserve_many(inbound.max_capacity())).await;
        tokio::task::yield_now().await;
    }

    /// Ends the session for good: the application's input ends and its output fails, so
    /// its task finishes even if a request still holds this session. A receiver that is
    /// attached right now closes the output itself when it leaves.
    pub(crate) fn tear_down(&self) {
        self.inbound
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Ok(mut output) = self.output.try_lock() {
            output.queue.close();
            if output.closed.is_none() {
                let (code, reason) = framing::INTERRUPTED;
                output.closed = Some((code, reason.to_owned()));
            }
        }
    }

    /// Ends the session before its idle time is up.
    fn end(self: &Arc<Self>, sessions: &Sessions, id: &str) {
        self.idle().expired = true;
        sessions.remove(id, self);
        self.tear_down();
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Idle> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What a streaming receiver watches to stop handing out a chunk the client does not
    /// take once the session is evicted.
    pub(crate) fn eviction(&self) -> Eviction {
        self.eviction.clone()
    }

    /// Resolves if the application does not consider the session started within
    /// `timeout` of now; never otherwise.
    async fn unestablished(&self, timeout_after: Duration) {
        if let Some(mut established) = self.established.clone() {
            let started = timeout(timeout_after, established.wait_for(|started| *started)).await;
            if started.is_err() {
                return;
            }
        }
        std::future::pending::<()>().await;
    }

    /// Removes the session from `sessions` once it has had no receiver for `delay`, once
    /// the server evicted it, or when the application does not consider it started within
    /// `connect_timeout`: a client that opens sessions and never speaks holds each one
    /// only that long.
    pub(crate) async fn expire(
        self: Arc<Self>,
        sessions: Arc<Sessions>,
        id: String,
        delay: Duration,
        connect_timeout: Duration,
    ) {
        let unestablished = self.unestablished(connect_timeout);
        let mut unestablished = std::pin::pin!(unestablished);
        loop {
            let wake = {
                let idle = self.idle();
                if idle.delivering > 0 {
                    Instant::now() + delay
                } else {
                    idle.since + delay
                }
            };
            tokio::select! {
                () = sleep_until(wake) => {}
                () = self.eviction.clone().wait() => {
                    self.end(&sessions, &id);
                    return;
                }
                () = &mut unestablished => {
                    tracing::info!(?connect_timeout, "SockJS session never started; closed");
                    self.end(&sessions, &id);
                    return;
                }
            }
            let expired = {
                let mut idle = self.idle();
                idle.expired = idle.delivering == 0 && idle.since + delay <= Instant::now();
                idle.expired
            };
            if expired {
                self.end(&sessions, &id);
                return;
            }
        }
    }
}

/// The one attached receiver of a session. Dropped without [`finish`](Self::finish), it
/// means the client went away mid-request: the session is closed as interrupted.
#[derive(Debug)]
pub(crate) struct Receiver {
    delivery: Delivery,
    output: OwnedMutexGuard<Output>,
    finished: bool,
}

impl Receiver {
    /// Waits for the next thing to send: the open frame on a new session, the messages
    /// queued (joined into one frame of at most about `budget` bytes), the close frame,
    /// or a heartbeat after `heartbeat` without output. The [`Charge`] of the messages
    /// goes with the frame: drop it once the frame is handed on.
    pub(crate) async fn next(&mut self, heartbeat: Duration, budget: usize) -> (Next, Charge) {
        let output = &mut *self.output;
        if let Some((code, reason)) = &output.closed {
            output.slot = None;
            return (
                Next::Close(framing::close(*code, reason)),
                Charge::default(),
            );
        }
        if !output.opened {
            output.opened = true;
            return (Next::Frame(framing::OPEN.to_owned()), Charge::default());
        }
        let first = match timeout(heartbeat, output.queue.recv()).await {
            Err(_) => {
                return (
                    Next::Frame(framing::HEARTBEAT.to_owned()),
                    Charge::default(),
                );
            }
            Ok(first) => first,
        };
        let (mut batch, mut charge) = match first {
            Some(Outbound::Frame(message, charge)) => (vec![message.into_string()], charge),
            Some(Outbound::Close { code, reason }) => {
                return (output.close(code, reason), Charge::default());
            }
            None => return (output.close(1000, "Normal closure"), Charge::default()),
        };
        let mut size = batch[0].len();
        while size < budget {
            let more = match output.queue.try_recv() {
                Some(item) => Some(item),
                None => timeout(LINGER, output.queue.recv()).await.ok().flatten(),
            };
            match more {
                Some(Outbound::Frame(message, more_charge)) => {
                    size += message.len();
                    batch.push(message.into_string());
                    charge.absorb(more_charge);
                }
                // Sent with the next request, after these messages.
                Some(Outbound::Close { code, reason }) => {
                    output.closed = Some((code, reason.to_owned()));
                    break;
                }
                None => break,
            }
        }
        (
            Next::Frame(framing::messages(batch.iter().map(String::as_str))),
            charge,
        )
    }

    /// Keeps the session's idle clock stopped until the returned guard is dropped: a
    /// response body holds it until it is written out.
    pub(crate) fn hold(&self) -> Delivery {
        Delivery::new(&self.delivery.0)
    }

    /// The request ended normally; the session waits for the next receiver.
    pub(crate) fn finish(mut self) {
        self.finished = true;
    }
}

impl Output {
    fn close(&mut self, code: u16, reason: &str) -> Next {
        self.closed = Some((code, reason.to_owned()));
        self.slot = None;
        Next::Close(framing::close(code, reason))
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if !self.finished && self.output.closed.is_none() {
            let (code, reason) = framing::INTERRUPTED;
            self.output.closed = Some((code, reason.to_owned()));
            // The application's next send fails: it learns the client is gone.
            self.output.queue.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::{Outbox, SharedBudget};

    const HEARTBEAT: Duration = Duration::from_secs(25);

    fn session() -> (Arc<Session>, Outbox, mpsc::Receiver<String>) {
        let (in_tx, in_rx) = mpsc::channel(4);
        let (out_tx, out_rx) = Outbox::channel(
            1 << 20,
            &SharedBudget::new(1 << 30),
            Duration::from_secs(60),
        );
        (
            Arc::new(Session::new(in_tx, out_rx, None, None)),
            out_tx,
            in_rx,
        )
    }

    #[test]
    fn session_ids_are_what_clients_make() {
        for good in [
            "abcdefgh",
            "abcdefg_i-j%20XYZ",
            "_0123456",
            &"x".repeat(128),
        ] {
            assert!(is_session_id(good), "{good}");
        }
        for bad in [
            "",
            "a",
            "abcdefg",
            "abc.defgh",
            "abcdefgh\n",
            "abcd efgh",
            &"x".repeat(129),
        ] {
            assert!(!is_session_id(bad), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn opens_then_batches_messages_then_closes_for_good() {
        let (session, app, _inbound) = session();
        let mut receiver = session.attach().expect("first receiver");
        assert!(session.attach().is_none(), "one receiver at a time");
        assert_eq!(
            receiver.next(HEARTBEAT, 1 << 20).await.0,
            Next::Frame("o".into())
        );
        for text in ["a", "b"] {
            app.send(text.to_owned()).await.expect("queued");
        }
        app.close(3000, "Go away!").expect("queued");
        assert_eq!(
            receiver.next(HEARTBEAT, 1 << 20).await.0,
            Next::Frame(r#"a["a","b"]"#.into())
        );
        receiver.finish();
        let mut again = session.attach().expect("receiver after the first finished");
        let close = Next::Close(r#"c[3000,"Go away!"]"#.into());
        assert_eq!(again.next(HEARTBEAT, 1 << 20).await.0, close);
        assert_eq!(again.next(HEARTBEAT, 1 << 20).await.0, close);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_receivers_get_heartbeats() {
        let (session, _app, _inbound) = session();
        let mut receiver = session.attach().expect("receiver");
        assert_eq!(receiver.next(HEARTBEAT, 1).await.0, Next::Frame("o".into()));
        assert_eq!(receiver.next(HEARTBEAT, 1).await.0, Next::Frame("h".into()));
    }

    #[tokio::test]
    async fn an_aborted_receiver_interrupts_the_session() {
        let (session, app, _inbound) = session();
        drop(session.attach().expect("receiver"));
        assert!(app.send("lost".to_owned()).await.is_err());
        let mut next = session.attach().expect("receiver");
        assert_eq!(
            next.next(HEARTBEAT, 1).await.0,
            Next::Close(r#"c[1002,"Connection interrupted"]"#.into())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_without_receivers_expire() {
        let sessions = Arc::new(Sessions::default());
        let (session, _app, mut inbound) = session();
        let (found, created) = sessions
            .get_or_create("s", || Some(Arc::try_unwrap(session).expect("sole owner")))
            .expect("created");
        assert!(created);
        let expiry = tokio::spawn(Arc::clone(&found).expire(
            Arc::clone(&sessions),
            "s".into(),
            HEARTBEAT,
            HEARTBEAT,
        ));
        drop(found);
        expiry.await.expect("expiry task");
        assert_eq!(sessions.len(), 0);
        assert!(
            inbound.recv().await.is_none(),
            "the application sees its input end"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_the_application_never_considers_started_ends_after_the_connect_timeout() {
        let sessions = Arc::new(Sessions::default());
        let connect_timeout = Duration::from_secs(10);
        for started in [false, true] {
            let (in_tx, _in_rx) = mpsc::channel(4);
            let (_app, out_rx) = Outbox::channel(
                1 << 20,
                &SharedBudget::new(1 << 30),
                Duration::from_secs(60),
            );
            let established = watch::Sender::new(started);
            let session = Session::new(in_tx, out_rx, None, Some(established.subscribe()));
            let (found, _) = sessions
                .get_or_create("s", || Some(session))
                .expect("created");
            // A receiver is attached all along: only the connect timeout can end it.
            let _receiver = found.attach().expect("receiver");
            let expiry = tokio::spawn(Arc::clone(&found).expire(
                Arc::clone(&sessions),
                "s".into(),
                HEARTBEAT * 100,
                connect_timeout,
            ));
            tokio::time::sleep(connect_timeout * 2).await;
            assert_eq!(sessions.len(), usize::from(started), "started: {started}");
            assert_eq!(found.expired(), !started);
            expiry.abort();
            sessions.remove("s", &found);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn taken_wakes_when_the_application_took_every_message() {
        let (inbound, mut application) = mpsc::channel::<String>(4);
        for text in ["a", "b"] {
            inbound.send(text.into()).await.expect("queued");
        }
        let start = Instant::now();
        let taking = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            while application.try_recv().is_ok() {}
            application
        });
        Session::taken(&inbound).await;
        assert!(Instant::now() - start < TAKE_WAIT, "woken, not timed out");
        assert_eq!(inbound.capacity(), inbound.max_capacity());
        drop(taking.await.expect("application"));
        let closed = Instant::now();
        Session::taken(&inbound).await;
        assert_eq!(
            Instant::now(),
            closed,
            "a gone application is not waited for"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_idle_clock_starts_when_the_last_response_is_delivered() {
        let sessions = Arc::new(Sessions::default());
        let (session, _app, _inbound) = session();
        let (found, _) = sessions
            .get_or_create("s", || Some(Arc::try_unwrap(session).expect("sole owner")))
            .expect("created");
        let receiver = found.attach().expect("receiver");
        // The handler returns; its body is still being written to a slow client.
        let body = receiver.hold();
        receiver.finish();
        let expiry = tokio::spawn(Arc::clone(&found).expire(
            Arc::clone(&sessions),
            "s".into(),
            HEARTBEAT,
            HEARTBEAT,
        ));
        tokio::time::sleep(HEARTBEAT * 3).await;
        assert_eq!(sessions.len(), 1, "no expiry while the body is delivered");
        drop(body);
        let delivered = Instant::now();
        expiry.await.expect("expiry task");
        assert_eq!(sessions.len(), 0);
        assert!(
            Instant::now() >= delivered + HEARTBEAT,
            "a full delay after delivery"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn expiry_ends_the_application_even_while_a_request_holds_the_session() {
        let sessions = Arc::new(Sessions::default());
        let (session, app, mut inbound) = session();
        let (found, _) = sessions
            .get_or_create("s", || Some(Arc::try_unwrap(session).expect("sole owner")))
            .expect("created");
        // A send request in progress keeps its own handle on the session.
        let held = Arc::clone(&found);
        found
            .expire(Arc::clone(&sessions), "s".into(), HEARTBEAT, HEARTBEAT)
            .await;
        assert_eq!(sessions.len(), 0);
        assert!(held.inbound().is_none(), "no more input is accepted");
        assert!(held.expired(), "a receiver attaching now learns it expired");
        assert!(inbound.recv().await.is_none(), "the input ends");
        assert!(
            app.send("lost".to_owned()).await.is_err(),
            "the output fails"
        );
    }
}
