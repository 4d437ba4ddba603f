//! The background jobs a running server keeps going beside its requests: the daily stats
//! rollup (spec §7.2), the sweep of expired uploads (spec §5.2) and, with `--upstream`, the
//! mirror (`exosphere_mirror::run`, the mirror crate's job). [`crate::server::start`]
//! spawns each with one line.
//!
//! Several servers on one catalog run each once between them: a run takes its duty first
//! ([`CatalogStore::try_duty`]) and is skipped while another server holds it; the mirror
//! stands by until the server running it stops, and then one of the others takes over. A
//! duty that cannot be taken (the database away) is not taken for another server's: the
//! rollup tries again after [`ROLLUP_RETRY`], and the mirror shows the error in `/healthz`.

use std::sync::Arc;
use std::time::Duration;

use exosphere_catalog::CatalogStore;
use exosphere_catalog::store::{Duty, Hold};
use exosphere_catalog::usage;
use exosphere_mirror::{MirrorConfig, MirrorPhase, MirrorStatus};
use tokio::sync::watch;

use crate::service::Publishing;
use crate::stats_files::StatsFiles;

/// When the daily stats rollup runs: `delay` after every UTC midnight, and every `every` in
/// between so late reports show up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollupSchedule {
    /// How long after each UTC midnight the previous day is rolled up.
    pub delay: Duration,
    /// How often the rollup also runs between midnights (not zero).
    pub every: Duration,
}

impl Default for RollupSchedule {
    fn default() -> Self {
        RollupSchedule {
            delay: Duration::from_secs(5 * 60),
            every: Duration::from_secs(3600),
        }
    }
}

/// How often expired upload tickets and unfinished publishes are cleaned up.
const SWEEP_INTERVAL: Duration = Duration::from_secs(600);

/// Deletes expired upload tickets and pending publishes, and their staging files, so an
/// abandoned publish leaves nothing behind (at startup, then every [`SWEEP_INTERVAL`]).
pub async fn sweep_expired(publishing: Publishing) {
    let mut ticks = tokio::time::interval(SWEEP_INTERVAL);
    loop {
        ticks.tick().await;
        let Taken::Here(_duty) = take_duty(&publishing.store, Duty::Sweep).await else {
            continue;
        };
        match publishing.sweep().await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "deleted expired staging uploads"),
            Err(error) => tracing::warn!(%error, "cannot sweep expired uploads"),
        }
    }
}

/// How often a server reopens its receiving marks that no upload slot holds.
const RECEIVING_CHECK: Duration = Duration::from_secs(60);

/// Every [`RECEIVING_CHECK`], puts back to open this server's receiving marks whose end
/// the catalog could not record ([`Publishing::reopen_unheld_uploads`]). Each server
/// checks its own marks: no duty.
pub async fn reopen_unheld_uploads(publishing: Publishing) {
    let mut ticks = tokio::time::interval(RECEIVING_CHECK);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        match publishing.reopen_unheld_uploads().await {
            Ok(0) => {}
            Ok(reopened) => tracing::info!(
                reopened,
                "reopened upload URLs whose end this server could not record"
            ),
            Err(error) => tracing::warn!(
                %error,
                "cannot reopen upload URLs whose end this server could not record; trying \
                 again in a minute"
            ),
        }
    }
}

/// How long the rollup job waits before trying again after a failure (e.g. a long import
/// holding the write lock).
const ROLLUP_RETRY: Duration = Duration::from_secs(60);

/// The daily stats job (spec §7.2, "slightly past UTC midnight"): at startup, `delay`
/// after every UTC midnight, and every `every` in between, rolls up each day before today
/// that got recordings since its last rollup, so days missed while the server was down are
/// caught up, and a late report re-opens its day within `every`. The next wake-up is
/// computed from when a run starts, so a long catch-up cannot skip a midnight. Each day it
/// rolls up is dropped from `files`, so its file is rendered again at the next request.
pub async fn roll_up_daily(
    store: Arc<dyn CatalogStore>,
    schedule: RollupSchedule,
    files: StatsFiles,
) {
    loop {
        let started = tokio::time::Instant::now();
        let now = chrono::Utc::now();
        let today = now.date_naive();
        let duty = match take_duty(&store, Duty::Rollup).await {
            Taken::Here(duty) => duty,
            Taken::Elsewhere => {
                tokio::time::sleep_until(started + until_next_rollup(now, schedule)).await;
                continue;
            }
            Taken::Failed(_) => {
                tokio::time::sleep(ROLLUP_RETRY).await;
                continue;
            }
        };
        let job_store = Arc::clone(&store);
        let outcome = exosphere_task::blocking(move || usage::catch_up(&*job_store, today))
            .await
            .map_err(anyhow::Error::from)
            .and_then(|caught_up| caught_up.map_err(anyhow::Error::from));
        drop(duty);
        match outcome {
            Ok(days) => {
                if days.is_empty() {
                    tracing::debug!("no day of package usage to roll up");
                }
                let count = days.len();
                for (day, rows) in days {
                    files.forget(&day.to_string());
                    tracing::info!(%day, rows, "rolled up package usage");
                }
                if count > 0 {
                    tracing::info!(days = count, "the rollup run ended");
                }
            }
            Err(error) => {
                tracing::error!(%error, "rolling up package usage failed; retrying in a minute");
                tokio::time::sleep(ROLLUP_RETRY).await;
                continue;
            }
        }
        tokio::time::sleep_until(started + until_next_rollup(now, schedule)).await;
    }
}

/// How often the server running the mirror checks that it still holds the mirror's duty.
const DUTY_CHECK: Duration = Duration::from_secs(1);

/// The mirror (`exosphere_mirror::run`) while this server holds its duty: standing by
/// (`MirrorPhase::Standby` in `/healthz`) and trying again every `poll_interval`
/// (`--upstream-poll-interval`) while another server runs it, and stopping it when the duty
/// was lost (its database connection dropped), since another server may have taken over.
pub async fn mirror_on_duty(
    store: Arc<dyn CatalogStore>,
    config: MirrorConfig,
    status: watch::Sender<MirrorStatus>,
) {
    loop {
        match take_duty(&store, Duty::Mirror).await {
            Taken::Here(duty) => {
                tracing::info!(upstream = %config.upstream, "this server runs the mirror");
                let mirror =
                    exosphere_mirror::run(Arc::clone(&store), config.clone(), status.clone());
                tokio::pin!(mirror);
                loop {
                    tokio::select! {
                        () = &mut mirror => break,
                        () = tokio::time::sleep(DUTY_CHECK) => if duty.lost() {
                            tracing::warn!(
                                "lost the mirror's duty (the database connection holding it \
                                 dropped); stopping the mirror and trying to take it again"
                            );
                            break;
                        },
                    }
                }
            }
            Taken::Elsewhere => {
                status.send_if_modified(|status| {
                    let standing_by = status.phase == MirrorPhase::Standby;
                    status.phase = MirrorPhase::Standby;
                    !standing_by
                });
            }
            Taken::Failed(error) => status.send_modify(|status| {
                let since_ms = match status.phase {
                    MirrorPhase::Failing { since_ms, .. } => since_ms,
                    _ => chrono::Utc::now().timestamp_millis(),
                };
                status.phase = MirrorPhase::Failing {
                    since_ms,
                    error: format!(
                        "cannot take the mirror's duty ({error}); trying again every \
                         --upstream-poll-interval"
                    ),
                };
            }),
        }
        tokio::time::sleep(config.poll_interval).await;
    }
}

/// What asking for a duty gave ([`take_duty`]).
enum Taken {
    /// This server holds the duty while the hold lives.
    Here(Hold),
    /// Another server holds it.
    Elsewhere,
    /// Whether anyone holds it cannot be told now (the database away or busy): logged, the
    /// job tries again soon.
    Failed(String),
}

/// Takes `duty` for this process on the blocking pool.
async fn take_duty(store: &Arc<dyn CatalogStore>, duty: Duty) -> Taken {
    let job_store = Arc::clone(store);
    let taken = exosphere_task::blocking(move || job_store.try_duty(duty)).await;
    let error = match taken {
        Ok(Ok(Some(hold))) => return Taken::Here(hold),
        Ok(Ok(None)) => {
            tracing::debug!(duty = duty.name(), "another server runs this duty now");
            return Taken::Elsewhere;
        }
        Ok(Err(error)) => error.to_string(),
        Err(error) => error.to_string(),
    };
    tracing::warn!(
        duty = duty.name(),
        %error,
        "cannot take a duty (nor tell whether another server holds it); trying again soon"
    );
    Taken::Failed(error)
}

/// The time from `now` until the job's next run: `delay` past the next UTC midnight (today's
/// while that is still ahead), or `every`, whichever comes first.
fn until_next_rollup(now: chrono::DateTime<chrono::Utc>, schedule: RollupSchedule) -> Duration {
    let after_midnight = |day: chrono::NaiveDate| {
        day.and_hms_opt(0, 0, 0)
            .map(|midnight| midnight.and_utc())
            .and_then(|midnight| {
                chrono::TimeDelta::from_std(schedule.delay)
                    .ok()
                    .map(|d| midnight + d)
            })
            .and_then(|at| (at - now).to_std().ok())
    };
    let today = now.date_naive();
    after_midnight(today)
        .filter(|wait| !wait.is_zero())
        .or_else(|| today.succ_opt().and_then(after_midnight))
        .unwrap_or(schedule.every)
        .min(schedule.every)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rollup_wakes_after_the_next_utc_midnight_or_every_period() {
        let at = |text: &str| {
            chrono::DateTime::parse_from_rfc3339(text)
                .unwrap()
                .with_timezone(&chrono::Utc)
        };
        let five = Duration::from_secs(300);
        let daily = RollupSchedule {
            delay: five,
            every: Duration::from_secs(48 * 3600),
        };
        assert_eq!(
            until_next_rollup(at("2024-10-01T23:00:00Z"), daily),
            Duration::from_secs(3600 + 300)
        );
        // A run started just before midnight wakes after that midnight, however long it
        // takes: the wait counts from its start.
        assert_eq!(
            until_next_rollup(at("2024-10-01T23:58:00Z"), daily),
            Duration::from_secs(7 * 60)
        );
        // Between midnight and the delay, today's run is still ahead.
        assert_eq!(until_next_rollup(at("2024-10-02T00:00:00Z"), daily), five);
        assert_eq!(
            until_next_rollup(at("2024-10-02T00:05:00Z"), daily),
            Duration::from_secs(24 * 3600)
        );
        // Late reports: the job also runs every period in between.
        let hour = Duration::from_secs(3600);
        let hourly = RollupSchedule {
            delay: five,
            every: hour,
        };
        assert_eq!(until_next_rollup(at("2024-10-02T12:00:00Z"), hourly), hour);
        assert_eq!(
            until_next_rollup(at("2024-10-02T23:30:00Z"), hourly),
            Duration::from_secs(35 * 60)
        );
    }
}
