//! The state watcher's polling task on the store.

use std::sync::Arc;
use std::time::Duration;

use super::NewStore;
use crate::watch::watch;

/// Checks that zero interval is accepted and task stops with receivers.
pub fn zero_interval_is_accepted_and_task_stops_with_receivers(new_store: NewStore<'_>) {
    super::current_thread_runtime().block_on(async {
        let store = new_store();
        let rx = watch(Arc::clone(&store), Duration::ZERO);
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(rx);
        tokio::time::timeout(Duration::from_secs(5), async {
            while Arc::strong_count(&store) > 1 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("polling task ended");
    });
}
