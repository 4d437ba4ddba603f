//! Change hints across servers ([`CatalogStore::hint_changes`]): every write transaction
//! that changes what [`CatalogStore::state`] reads sends `NOTIFY` on [`CHANNEL`] (delivered
//! at its commit, and not at all if it rolls back), and each server's listener, a
//! connection of its own that `LISTEN`s there, wakes its catalog watcher at once instead of
//! at its next poll.
//!
//! The listener reconnects with a growing pause (up to [`PgOptions::reconnect_max_backoff`])
//! when its connection drops; notifications sent while it was away are lost, so it wakes
//! the watcher once it listens again, and the watcher's polling stays the source of truth.
//!
//! [`CatalogStore::hint_changes`]: exosphere_catalog::CatalogStore::hint_changes
//! [`CatalogStore::state`]: exosphere_catalog::CatalogStore::state
//! [`PgOptions::reconnect_max_backoff`]: crate::PgOptions::reconnect_max_backoff

use std::sync::Arc;
use std::time::Duration;

use exosphere_catalog::store::Hold;
use futures_util::StreamExt as _;
use tokio_postgres::AsyncMessage;

use crate::bridge::{Keeper, Redial, listening_setup, open, runtime};

/// The channel the catalog's writes notify and its servers listen on.
pub(crate) const CHANNEL: &str = "exosphere_changes";

/// Starts the listener on the background runtime; it calls `wake` on every notification
/// and after every (re)connection, until the returned hold is dropped.
pub(crate) fn listen(listening: Redial, wake: Arc<dyn Fn() + Send + Sync>) -> Hold {
    let task = runtime().spawn(async move {
        let mut backoff = Redial::FIRST_BACKOFF;
        loop {
            match listen_once(&listening, &*wake, &mut backoff).await {
                Ok(()) => tracing::warn!(
                    database = %listening.database,
                    retry_in = ?backoff,
                    "the change listener's connection closed; reconnecting"
                ),
                Err(error) => tracing::warn!(
                    database = %listening.database,
                    %error,
                    retry_in = ?backoff,
                    "the change listener's connection failed; reconnecting (changes are \
                     noticed by polling meanwhile)"
                ),
            }
            tokio::time::sleep(backoff).await;
            backoff = listening.next(backoff);
        }
    });
    Hold::keeping(Keeper(task.abort_handle()))
}

/// One connection's life: connects, listens, wakes the watcher (changes may have been
/// missed while no listener was connected), then wakes it on every notification until the
/// connection ends. The backoff is reset once listening works.
async fn listen_once(
    listening: &Redial,
    wake: &(dyn Fn() + Send + Sync),
    backoff: &mut Duration,
) -> Result<(), String> {
    let (client, mut connection) = open(&listening.config, listening.connect_timeout).await?;
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    let statement = listening_setup(CHANNEL);
    let listen = client.batch_execute(&statement);
    tokio::pin!(listen);
    // The connection must be driven while the LISTEN runs; notifications cannot come yet.
    loop {
        tokio::select! {
            done = &mut listen => {
                done.map_err(|e| e.to_string())?;
                break;
            }
            message = messages.next() => match message {
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error.to_string()),
                None => return Ok(()),
            },
        }
    }
    // The client stays alive until the connection ends: dropping it would close it.
    tracing::debug!(database = %listening.database, "listening for catalog changes");
    *backoff = Redial::FIRST_BACKOFF;
    wake();
    while let Some(message) = messages.next().await {
        match message {
            Ok(AsyncMessage::Notification(_)) => wake(),
            Ok(_) => {}
            Err(error) => return Err(error.to_string()),
        }
    }
    Ok(())
}
