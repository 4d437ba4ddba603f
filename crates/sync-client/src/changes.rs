//! The `changes` publication (spec §4.3) as a follower sees it: one counter per collection
//! that moves with every write, so a client syncs again only when the catalog moved.

use std::collections::BTreeMap;

use exosphere_ddp::client::{Client, ClientError};
use exosphere_ddp::ejson::Ejson;
use tokio::sync::watch;

/// The `changes` publication's counters (spec §4.3), collection → count; subscribes first
/// when `subscribe`. `None` when the server does not offer them.
pub async fn change_counters(client: &Client, subscribe: bool) -> Option<BTreeMap<String, u64>> {
    if subscribe && client.subscribe("changes", &[]).await.is_err() {
        return None;
    }
    let counters: BTreeMap<String, u64> = client
        .documents("changes")
        .into_iter()
        .filter_map(|(id, fields)| {
            let count = fields.get("changes").and_then(Ejson::as_f64)?;
            Some((id, count.max(0.0) as u64))
        })
        .collect();
    Some(counters)
}

/// A subscription to a server's `changes` publication that says when the catalog moved
/// since the counters were last taken. Moves that arrive while a caller is syncing are
/// coalesced: the next wait returns once, however many came.
pub struct Changes<'c> {
    client: &'c Client,
    moved: watch::Receiver<u64>,
    seen: BTreeMap<String, u64>,
}

impl<'c> Changes<'c> {
    /// Subscribes to `changes`; `None` when the server does not offer it.
    pub async fn subscribe(client: &'c Client) -> Option<Changes<'c>> {
        let moved = client.watch();
        let seen = change_counters(client, true).await?;
        Some(Changes {
            client,
            moved,
            seen,
        })
    }

    /// The sum of the counters last taken: an estimate (on the high side) of how many
    /// records the server holds.
    pub fn total(&self) -> u64 {
        self.seen.values().sum()
    }

    /// Waits until the counters differ from those last taken, and takes them. Fails when
    /// the connection ends.
    pub async fn moved(&mut self) -> Result<(), ClientError> {
        loop {
            if self.moved.changed().await.is_err() || self.client.is_closed() {
                return Err(self.client.ended());
            }
            let now = change_counters(self.client, false)
                .await
                .unwrap_or_default();
            if now != self.seen {
                self.seen = now;
                return Ok(());
            }
        }
    }
}
