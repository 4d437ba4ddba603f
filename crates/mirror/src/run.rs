//! The mirror's background job: connect to the upstream, sync it into the store, and sync
//! again whenever its `changes` publication moves (coalesced), every poll interval, and after
//! every reconnection; back off while it fails. Nothing here is on a client's path: a client
//! syncing from Exosphere is answered from what the store has committed.

use std::sync::Arc;
use std::time::Duration;

use exosphere_catalog::CatalogStore;
use exosphere_ddp::client::Client;
use exosphere_sync_client::{Changes, Pass, SyncError, sync_pass};
use tokio::sync::watch;
use tracing::Instrument as _;

use crate::apply::ApplyOutcome;
use crate::config::MirrorConfig;
use crate::sink::{StoreSink, now_ms};
use crate::status::{MirrorPhase, MirrorStatus};

/// Runs the mirror for as long as the task lives, reporting into `status`. It never returns:
/// every failure is logged, shown in `status` and stored with the mirror's state, then tried
/// again after a pause that doubles up to [`MirrorConfig::max_backoff`].
pub async fn run(
    store: Arc<dyn CatalogStore>,
    config: MirrorConfig,
    status: watch::Sender<MirrorStatus>,
) {
    let span = tracing::info_span!("mirror", upstream = %config.upstream);
    async move {
        let mut backoff = config.first_backoff;
        loop {
            let error = follow(&store, &config, &status, &mut backoff).await;
            tracing::warn!(%error, retry_in = ?backoff, "mirroring the upstream failed");
            status.send_modify(|status| {
                let since_ms = match &status.phase {
                    MirrorPhase::Failing { since_ms, .. } => *since_ms,
                    _ => now_ms(),
                };
                status.phase = MirrorPhase::Failing {
                    since_ms,
                    error: error.to_string(),
                };
            });
            remember_error(&store, &config.upstream, error.to_string()).await;
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(config.max_backoff);
        }
    }
    .instrument(span)
    .await
}

/// One connection's life: sync, then sync again on every move of `changes` or poll tick,
/// until something fails.
async fn follow(
    store: &Arc<dyn CatalogStore>,
    config: &MirrorConfig,
    status: &watch::Sender<MirrorStatus>,
    backoff: &mut Duration,
) -> SyncError {
    let client = match Client::connect(&config.upstream, config.client.clone()).await {
        Ok(client) => client,
        Err(error) => return error.into(),
    };
    let error = follow_connected(store, config, status, backoff, &client).await;
    client.close().await;
    error
}

async fn follow_connected(
    store: &Arc<dyn CatalogStore>,
    config: &MirrorConfig,
    status: &watch::Sender<MirrorStatus>,
    backoff: &mut Duration,
    client: &Client,
) -> SyncError {
    let mut changes = Changes::subscribe(client).await;
    if changes.is_none() {
        tracing::info!(
            poll = ?config.poll_interval,
            "the upstream offers no `changes` publication; polling it"
        );
    }
    let mut restarts = 0;
    loop {
        let started_ms = now_ms();
        match pass(store, config, status, client).await {
            Ok(pass) => {
                *backoff = config.first_backoff;
                restarts = 0;
                tracing::debug!(%pass, "the mirror is up to date");
            }
            Err(SyncError::Restart(reason)) if restarts < MAX_RESTARTS => {
                tracing::warn!(%reason, "resyncing the upstream");
                status.send_modify(|status| status.resyncs += 1);
                restarts += 1;
                continue;
            }
            Err(error) => return error,
        }
        let moved = async {
            match &mut changes {
                Some(changes) => changes.moved().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            moved = moved => if let Err(error) = moved {
                return error.into();
            },
            () = tokio::time::sleep(config.poll_interval) => {}
            () = requested_since(store, started_ms) => {
                tracing::info!("an operator asked for a sync now");
            }
        }
    }
}

/// One pass from the stored token to the upstream's `upToDate`, with the status kept current.
async fn pass(
    store: &Arc<dyn CatalogStore>,
    config: &MirrorConfig,
    status: &watch::Sender<MirrorStatus>,
    client: &Client,
) -> Result<Pass, SyncError> {
    let staging = {
        let store = Arc::clone(store);
        let upstream = config.upstream.clone();
        exosphere_task::blocking(move || store.mirror_state())
            .await
            .map_err(|error| SyncError::Sink(Box::new(error)))?
            .map_err(|error| SyncError::Sink(Box::new(error)))?
            .filter(|state| state.upstream == upstream)
            .is_none_or(|state| state.staging_token.is_some())
    };
    status.send_modify(|status| status.phase = MirrorPhase::Syncing { staging });
    let mut sink = StoreSink::new(Arc::clone(store), config);
    let mut held = None;
    let pass = sync_pass(client, &mut sink, config.pass, |page, done| {
        status.send_modify(|status| {
            status.pages += done.pages;
            status.records += page.records();
            status.rejected += done.rejected;
            status.shadowed += done.shadowed;
            status.resyncs += u64::from(done.resync);
        });
        match &done.finished {
            Some(ApplyOutcome::Applied { records, shadowed }) => {
                tracing::info!(
                    records,
                    shadowed,
                    "the upstream's full catalog is now served"
                );
            }
            Some(ApplyOutcome::Held(reason)) => {
                tracing::warn!(%reason, "the upstream's new catalog is held for an operator");
                held = Some(reason.clone());
            }
            None => {}
        }
    })
    .await?;
    if pass.records > 0 {
        tracing::info!(%pass, "mirrored the upstream's changes");
    }
    status.send_modify(|status| {
        status.last_success_ms = Some(now_ms());
        status.phase = match held {
            Some(reason) => MirrorPhase::Held { reason },
            None => MirrorPhase::UpToDate,
        };
    });
    Ok(pass)
}

/// Restarts in a row (the upstream's token going backwards again and again) after which the
/// mirror backs off as after a failure.
const MAX_RESTARTS: u32 = 3;

/// How often the mirror looks for an operator's `exosphere mirror sync-now`.
const REQUEST_CHECK: Duration = Duration::from_secs(1);

/// Resolves once an operator asked for a sync after `since_ms` (`exosphere mirror sync-now`
/// writes the time into the mirror's state; the state row is read every second).
async fn requested_since(store: &Arc<dyn CatalogStore>, since_ms: i64) {
    loop {
        tokio::time::sleep(REQUEST_CHECK).await;
        let store = Arc::clone(store);
        let state = exosphere_task::blocking(move || store.mirror_state()).await;
        if let Ok(Ok(Some(state))) = state
            && state.sync_requested_ms.is_some_and(|at| at >= since_ms)
        {
            return;
        }
    }
}

/// Stores the last error with the mirror's state, for `exosphere mirror status`; a store
/// that cannot be written is only logged (the error is in the logs and `/healthz` anyway).
async fn remember_error(store: &Arc<dyn CatalogStore>, upstream: &str, error: String) {
    let store = Arc::clone(store);
    let upstream = upstream.to_owned();
    let written = exosphere_task::blocking(move || {
        store.write(&mut |writer| {
            let Some(mut state) = writer.mirror().state()? else {
                return Ok(());
            };
            if state.upstream != upstream {
                return Ok(());
            }
            state.last_error = Some((now_ms(), error.clone()));
            writer.mirror().put_state(&state)
        })
    })
    .await;
    if let Ok(Err(error)) = written {
        tracing::warn!(%error, "cannot store the mirror's last error");
    }
}
