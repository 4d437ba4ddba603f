//! Leaving the async runtime, and starting background tasks, without losing the span.
//!
//! One job: every place in Exosphere that runs blocking work (SQLite, file reads) or starts a
//! background task goes through this crate, so every log line those produce still carries
//! the session or request id of the span it was started from. `tokio::task::spawn_blocking`
//! and `tokio::spawn` run their closure or future with no span at all; a log line from the
//! blocking pool then names no session.
//!
//! * [`blocking`]: run a closure on tokio's blocking pool inside the caller's span, and turn
//!   a panic in it into an error value instead of a `JoinError` every caller matches by hand.
//! * [`spawn`]: start a future as a task that carries the caller's span and subscriber.
//! * [`carry`]: take the caller's span and subscriber to a thread of the caller's own (a
//!   bulk load's), for work that is neither a task nor on the blocking pool.

use std::future::Future;

use tracing::Instrument as _;
use tracing::instrument::WithSubscriber as _;

/// A closure sent to the blocking pool did not return: it panicked, or the runtime shut down
/// before it ran. Callers turn it into their own error type (a storage or I/O failure).
#[derive(Debug, thiserror::Error)]
#[error("a blocking task failed: {0}")]
pub struct BlockingError(String);

/// Runs `work` on tokio's blocking pool inside the current tracing span and waits for it.
///
/// The closure's log lines keep the caller's session or request id, and go to the caller's
/// subscriber even where that one is only the thread's default (as in tests). A panic in `work` is
/// caught by tokio and returned as [`BlockingError`] (and logged here), so no caller matches
/// on `JoinError`.
pub async fn blocking<T, F>(work: F) -> Result<T, BlockingError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let carried = carry();
    tokio::task::spawn_blocking(move || carried.run(work))
        .await
        .map_err(|error| {
            tracing::error!(%error, "a blocking task failed");
            BlockingError(error.to_string())
        })
}

/// The caller's tracing span and subscriber, taken ([`carry`]) to run work on another
/// thread inside them ([`Carried::run`]), so what that thread logs names the session or
/// command that started it, and reaches the caller's subscriber.
pub struct Carried {
    span: tracing::Span,
    dispatch: tracing::Dispatch,
}

/// Takes the current span and subscriber, to be moved to another thread and used there
/// with [`Carried::run`]. A thread started with `std::thread` has neither.
pub fn carry() -> Carried {
    Carried {
        span: tracing::Span::current(),
        dispatch: tracing::dispatcher::get_default(Clone::clone),
    }
}

impl Carried {
    /// Runs `work` inside the carried span, with the carried subscriber as the default.
    pub fn run<T>(self, work: impl FnOnce() -> T) -> T {
        tracing::dispatcher::with_default(&self.dispatch, || self.span.in_scope(work))
    }
}

/// Starts `future` as a tokio task that runs inside the current tracing span (and with the
/// caller's subscriber), so what it logs names the session or request that started it.
pub fn spawn<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(future.in_current_span().with_current_subscriber())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id};
    use tracing::{Event, Subscriber};
    use tracing_subscriber::layer::{Context, SubscriberExt as _};
    use tracing_subscriber::registry::LookupSpan;
    use tracing_subscriber::{Layer, Registry};

    use super::*;

    /// Records, for every event, the names of the spans it was logged in.
    #[derive(Clone, Default)]
    struct SpansOfEvents(Arc<Mutex<Vec<Vec<String>>>>);

    impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for SpansOfEvents {
        fn on_new_span(&self, _: &Attributes<'_>, _: &Id, _: Context<'_, S>) {}

        fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
            struct Ignore;
            impl Visit for Ignore {
                fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
            }
            event.record(&mut Ignore);
            let names = ctx
                .event_scope(event)
                .map(|scope| scope.map(|span| span.name().to_owned()).collect())
                .unwrap_or_default();
            self.0.lock().unwrap().push(names);
        }
    }

    fn recorded() -> (SpansOfEvents, tracing::subscriber::DefaultGuard) {
        let layer = SpansOfEvents::default();
        let guard = tracing::subscriber::set_default(Registry::default().with(layer.clone()));
        (layer, guard)
    }

    /// One test for the three helpers: tracing caches which callsites a subscriber wants across
    /// the whole process, so two tests with thread-local subscribers running at once can
    /// hide each other's events.
    #[tokio::test(flavor = "current_thread")]
    async fn blocking_work_and_spawned_tasks_log_inside_the_callers_span() {
        let (events, _guard) = recorded();
        let answer = blocking(|| {
            tracing::info!("from the blocking pool");
            7
        })
        .instrument(tracing::info_span!("session"))
        .await
        .unwrap();
        assert_eq!(answer, 7);
        let span = tracing::info_span!("request");
        let task = span.in_scope(|| spawn(async { tracing::info!("from a task") }));
        task.await.unwrap();
        let carried = tracing::info_span!("import").in_scope(carry);
        std::thread::spawn(move || carried.run(|| tracing::info!("from a thread")))
            .join()
            .unwrap();
        assert_eq!(
            *events.0.lock().unwrap(),
            vec![
                vec!["session".to_owned()],
                vec!["request".to_owned()],
                vec!["import".to_owned()]
            ]
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_panic_in_blocking_work_is_an_error_value() {
        let error = blocking(|| panic!("boom")).await.unwrap_err();
        assert!(
            error.to_string().contains("a blocking task failed"),
            "{error}"
        );
    }
}
