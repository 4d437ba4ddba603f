//! The background jobs a running server keeps going beside its requests: the daily stats
//! rollup (spec §7.2) and the sweep of expired uploads (spec §5.2). [`crate::server::start`]
//! spawns each with one line; a capability with a crate of its own spawns that crate's job
//! there instead (the mirror's `exosphere_mirror::run`).

use std::sync::Arc;
use std::time::Duration;

use exosphere_catalog::CatalogStore;
use exosphere_catalog::usage;

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
        match publishing.sweep().await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "deleted expired staging uploads"),
            Err(error) => tracing::warn!(%error, "cannot sweep expired uploads"),
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
        let job_store = Arc::clone(&store);
        let outcome = exosphere_task::blocking(move || usage::catch_up(&*job_store, today))
            .await
            .map_err(anyhow::Error::from)
            .and_then(|caught_up| caught_up.map_err(anyhow::Error::from));
        match outcome {
            Ok(days) => {
                for (day, rows) in days {
                    files.forget(&day.to_string());
                    tracing::info!(%day, rows, "rolled up package usage");
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
