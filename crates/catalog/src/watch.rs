//! Live view of the catalog state for the `changes` and `stats` publications (spec §4.3,
//! §4.4). A background task polls [`CatalogStore::state`], so writes made by *another
//! process* on the same data directory (e.g. `exosphere import` next to a running
//! `exosphere serve`) are noticed too, within one polling interval.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::error::StoreError;
use crate::store::{CatalogState, CatalogStore};

/// The shortest polling interval accepted; shorter ones are raised to it.
const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// Starts a task that polls the store's state every `interval` and publishes each change
/// to the returned receiver; the task ends when every receiver is dropped.
///
/// The channel is seeded by one synchronous `state()` read (a single-row lookup: call this
/// at startup, not on a hot async path), so subscribers never see a made-up state while
/// the store works. If that read fails, the error is logged and the channel holds
/// [`CatalogState::default`] until the first successful poll. A failed poll is logged and
/// retried at the next tick, keeping the last good state. Must be called inside a Tokio
/// runtime, like `tokio::spawn`.
pub fn watch(store: Arc<dyn CatalogStore>, interval: Duration) -> watch::Receiver<CatalogState> {
    let initial = store.state().unwrap_or_else(|error| {
        tracing::warn!(%error, "reading the catalog state failed; retrying in the background");
        CatalogState::default()
    });
    let (tx, rx) = watch::channel(initial);
    exosphere_task::spawn(poll(store, interval.max(MIN_INTERVAL), tx));
    rx
}

/// Reads the state on the blocking pool: the store API is synchronous.
async fn read_state(store: &Arc<dyn CatalogStore>) -> Result<CatalogState, StoreError> {
    let store = Arc::clone(store);
    exosphere_task::blocking(move || store.state())
        .await
        .map_err(|e| StoreError::TaskFailed(e.to_string()))?
}

async fn poll(store: Arc<dyn CatalogStore>, interval: Duration, tx: watch::Sender<CatalogState>) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker.tick().await; // The first tick is immediate; the initial state is fresh.
    let mut failing = false;
    loop {
        tokio::select! {
            () = tx.closed() => return,
            _ = ticker.tick() => {}
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
