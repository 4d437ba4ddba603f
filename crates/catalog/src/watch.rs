//! Live view of the catalog state for the `changes` and `stats` publications (spec §4.3,
//! §4.4). A background task polls [`CatalogStore::state`], so writes made by *another
//! process* on the same catalog (e.g. `exosphere import` next to a running `exosphere
//! serve`, or another server on the same PostgreSQL database) are noticed too, within one
//! polling interval; where the backend hints at changes ([`CatalogStore::hint_changes`]),
//! the task reads the state as soon as a hint comes, and polling stays the source of truth
//! for the hints that are lost.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::MissedTickBehavior;

use crate::error::StoreError;
use crate::store::{CatalogState, CatalogStore};

/// The shortest polling interval accepted; shorter ones are raised to it.
const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// Starts a task that polls the store's state every `interval`, and at once when the store
/// hints at a change, and publishes each change to the returned receiver; the task ends
/// (and the store's hints stop) when every receiver is dropped.
///
/// The channel is seeded by one synchronous `state()` read (a single-row lookup: call this
/// at startup, not on a hot async path), so subscribers never see a made-up state while
/// the store works. If that read fails, the error is logged and the channel holds
/// [`CatalogState::default`] until the first successful poll. A failed poll is logged and
/// retried at the next tick, keeping the last good state; so is a store that cannot start
/// its hints (the task then only polls). Must be called inside a Tokio runtime, like
/// `tokio::spawn`.
pub fn watch(store: Arc<dyn CatalogStore>, interval: Duration) -> watch::Receiver<CatalogState> {
    let initial = store.state().unwrap_or_else(|error| {
        tracing::warn!(%error, "reading the catalog state failed; retrying in the background");
        CatalogState::default()
    });
    let (tx, rx) = watch::channel(initial);
    let hinted = Arc::new(Notify::new());
    let wake = Arc::clone(&hinted);
    let hints = store
        .hint_changes(Arc::new(move || wake.notify_one()))
        .unwrap_or_else(|error| {
            tracing::warn!(%error, "cannot listen for catalog changes; polling only");
            None
        });
    exosphere_task::spawn(async move {
        let _hints = hints;
        poll(store, interval.max(MIN_INTERVAL), hinted, tx).await;
    });
    rx
}

/// Reads the state on the blocking pool: the store API is synchronous.
async fn read_state(store: &Arc<dyn CatalogStore>) -> Result<CatalogState, StoreError> {
    let store = Arc::clone(store);
    exosphere_task::blocking(move || store.state())
        .await
        .map_err(|e| StoreError::TaskFailed(e.to_string()))?
}

async fn poll(
    store: Arc<dyn CatalogStore>,
    interval: Duration,
    hinted: Arc<Notify>,
    tx: watch::Sender<CatalogState>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker.tick().await; // The first tick is immediate; the initial state is fresh.
    let mut failing = false;
    loop {
        tokio::select! {
            () = tx.closed() => return,
            _ = ticker.tick() => {}
            () = hinted.notified() => ticker.reset(),
        }
        match read_state(&store).await {
            Ok(state) => {
                if failing {
                    tracing::info!("polling the catalog state works again");
                    failing = false;
                }
                tx.send_if_modified(|current| {
                    let changed = *current != state;
                    if changed {
                        *current = state;
                    }
                    changed
                });
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(%error, "polling the catalog state failed; retrying");
                    failing = true;
                }
            }
        }
    }
}
