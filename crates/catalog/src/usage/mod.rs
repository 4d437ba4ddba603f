//! Package usage: validating `recordAppPackages` reports (spec §7.1), recording them with
//! group commit, and rolling each UTC day up into the `/stats/v1/<day>` rows (spec §7.2).
//!
//! # Counting rules
//!
//! For every app (identified by the `appId` it reports) the store remembers, per
//! `name@version`, the UTC day it *first* appeared in one of that app's reports, and
//! whether it was a direct dependency in that report. The row of `name@version` for day D
//! then counts:
//!
//! * `totalAdds`: the apps in which `name@version` appeared for the first time on day D;
//! * `directAdds`: those of them that listed it directly (`direct: true`) in that report.
//!
//! Consequences, with app A reporting `[tracker@1.0.0 (direct), ddp@1.0.0]`:
//!
//! * the first report, on 2024-10-01, adds 1 to both `tracker@1.0.0` rows (direct and
//!   total) and 1 to `totalAdds` of `ddp@1.0.0` on 2024-10-01;
//! * reporting the same list again (any day) adds nothing;
//! * reporting `tracker@1.1.0` on 2024-10-03 adds `tracker@1.1.0` on 2024-10-03 (an upgrade
//!   adds the new version); going back to `tracker@1.0.0` later adds nothing, because that
//!   version already appeared in A;
//! * a version first seen as a dependency and listed directly later stays an indirect
//!   add: `directAdds` is always a subset of `totalAdds` of the same day;
//! * packages marked `local: true` are the app's own and are left out;
//! * by default only versions this server's catalog holds count: a `name@version` without
//!   a `versions` record when the report is written is left out (and a report left with
//!   nothing is not recorded at all), so made-up names never reach the store or a
//!   `/stats/v1` file. [`RecorderOptions::count_unknown_packages`] counts them too;
//! * a name@version listed twice in one report counts once (direct if either says so).
//!
//! Nothing else from a report is kept: not the `details`, the session, the user or the
//! caller's address.
//!
//! # Rollup
//!
//! [`roll_up`] rebuilds one day's stats rows from the recordings, replacing whatever rows
//! that day had (also rows imported from a dump): for a day this server recorded, its
//! recordings are the truth. Days without recordings are never touched, so imported
//! history stays as imported. Rolling up a day twice gives the same rows; a day that got
//! recordings after its rollup (a call received just before midnight and committed just
//! after it, or a manual rollup of the current day) is *pending* again, and
//! [`catch_up`] rolls up every pending day before the given one.

use std::sync::Arc;
use std::time::Duration;

use chrono::{Datelike as _, NaiveDate};
use tokio::sync::{mpsc, oneshot};

use crate::error::StoreError;
use crate::store::{CatalogStore, CatalogWriter, Lookup};

pub use report::{AppReport, InvalidReport, MAX_FIELD_BYTES, UsageLimits, UsedPackage};

mod report;

/// Rolls up one day: replaces its stats rows with the counts of its recordings, in one
/// transaction. Returns the number of rows written, or `None` when nothing was ever
/// recorded on that day (its rows, e.g. imported ones, are then left alone).
pub fn roll_up(store: &dyn CatalogStore, day: NaiveDate) -> Result<Option<u64>, StoreError> {
    let mut rows = None;
    store.write(&mut |w| {
        rows = w.roll_up_usage(day)?;
        Ok(())
    })?;
    Ok(rows)
}

/// Rolls up every day before `today` that got recordings since its last rollup, oldest
/// first, each in its own transaction; returns each day with its row count. Idempotent:
/// a second call finds nothing pending.
pub fn catch_up(
    store: &dyn CatalogStore,
    today: NaiveDate,
) -> Result<Vec<(NaiveDate, u64)>, StoreError> {
    let mut done = Vec::new();
    for day in store.pending_usage_days(today)? {
        if let Some(rows) = roll_up(store, day)? {
            done.push((day, rows));
        }
    }
    Ok(done)
}

/// The rows a backend keeps for the counting rules, read and written with the backend's own
/// SQL inside one write transaction; [`record`] applies the rules to them, so every backend
/// counts alike.
pub trait UsageRows {
    /// Marks `day` pending for rollup, adding its row if it has none.
    fn mark_pending(&mut self, day: NaiveDate) -> Result<(), StoreError>;
    /// The row id and list hash of the app `app_id`, if it reported before.
    fn app(&mut self, app_id: &str) -> Result<Option<(i64, i64)>, StoreError>;
    /// Stores the list hash of the app whose row id is `app`.
    fn set_list_hash(&mut self, app: i64, list_hash: i64) -> Result<(), StoreError>;
    /// Adds the app `app_id`; returns its row id.
    fn add_app(&mut self, app_id: &str, list_hash: i64) -> Result<i64, StoreError>;
    /// The row id of `name@version`, if any app used it before.
    fn package(&mut self, name: &str, version: &str) -> Result<Option<i64>, StoreError>;
    /// Adds `name@version`; returns its row id.
    fn add_package(&mut self, name: &str, version: &str) -> Result<i64, StoreError>;
    /// Records that the app `app` used the package `package` first on `day` (days since
    /// the common era), `direct`ly or not; nothing if it used it before.
    fn add_use(&mut self, app: i64, package: i64, day: i32, direct: bool)
    -> Result<(), StoreError>;
}

/// Records `report` as received on `day` into `rows` by the counting rules (the
/// implementation of [`CatalogWriter::record_usage`] for every backend). `marked_day` is the
/// last day this transaction marked pending, so a batch of one day's reports marks it once.
/// An app whose list is the one it reported last is not read package by package again.
pub fn record(
    rows: &mut dyn UsageRows,
    marked_day: &mut Option<NaiveDate>,
    day: NaiveDate,
    report: &AppReport,
) -> Result<(), StoreError> {
    if *marked_day != Some(day) {
        rows.mark_pending(day)?;
        *marked_day = Some(day);
    }
    let app = match rows.app(report.app_id())? {
        Some((_, hash)) if hash == report.list_hash() => return Ok(()),
        Some((app, _)) => {
            rows.set_list_hash(app, report.list_hash())?;
            app
        }
        None => rows.add_app(report.app_id(), report.list_hash())?,
    };
    let day_number = day.num_days_from_ce();
    for package in report.packages() {
        let id = match rows.package(&package.name, &package.version)? {
            Some(id) => id,
            None => rows.add_package(&package.name, &package.version)?,
        };
        rows.add_use(app, id, day_number, package.direct)?;
    }
    Ok(())
}

/// Tunables of the [`Recorder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecorderOptions {
    /// Reports waiting for a transaction at most; callers beyond it wait for room.
    pub queue: usize,
    /// The most reports written in one transaction.
    pub batch_size: usize,
    /// How long a batch waits for more reports after its first one; zero writes at once
    /// (reports that arrive during a commit still share the next one).
    pub batch_delay: Duration,
    /// Whether packages the catalog holds no version of count too. Off by default:
    /// anyone may report, so counting every name lets any caller fill the store and the
    /// published files with invented names.
    pub count_unknown_packages: bool,
}

impl Default for RecorderOptions {
    fn default() -> Self {
        RecorderOptions {
            queue: 10_000,
            batch_size: 1000,
            batch_delay: Duration::ZERO,
            count_unknown_packages: false,
        }
    }
}

/// Why a report was not recorded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RecordError {
    /// The recorder has stopped (the server is shutting down).
    #[error("the usage recorder has stopped")]
    Stopped,
    /// The transaction holding this report failed; the report is not stored.
    #[error("recording package usage failed: {0}")]
    Store(Arc<StoreError>),
}

/// One queued report and the caller waiting for its commit.
struct Job {
    day: NaiveDate,
    report: AppReport,
    done: oneshot::Sender<Result<(), RecordError>>,
}

/// Records reports with group commit: callers queue reports (bounded), one task writes
/// many per transaction, and each caller is answered once its transaction is durable, so
/// an acknowledged report is never lost. Cloning shares the same queue.
#[derive(Clone)]
pub struct Recorder {
    queue: mpsc::Sender<Job>,
}

impl Recorder {
    /// Starts the writing task on the current Tokio runtime; it ends when every clone of
    /// the recorder is dropped, after writing what was queued. Zero sizes are raised to 1.
    pub fn start(store: Arc<dyn CatalogStore>, options: &RecorderOptions) -> Recorder {
        let (queue, jobs) = mpsc::channel(options.queue.max(1));
        exosphere_task::spawn(write_batches(store, jobs, options.clone()));
        Recorder { queue }
    }

    /// Records `report` as received on `day` (UTC) and returns once it is committed.
    /// Waits for room while the queue is full.
    pub async fn record(&self, day: NaiveDate, report: AppReport) -> Result<(), RecordError> {
        let (done, committed) = oneshot::channel();
        self.queue
            .send(Job { day, report, done })
            .await
            .map_err(|_| RecordError::Stopped)?;
        committed.await.map_err(|_| RecordError::Stopped)?
    }
}

/// `report` without the packages the catalog holds no version record of (checked in the
/// transaction that records it).
fn catalog_packages_only(
    w: &mut dyn CatalogWriter,
    report: &AppReport,
) -> Result<AppReport, StoreError> {
    let mut known = Vec::with_capacity(report.packages().len());
    for package in report.packages() {
        let version = Lookup::Version {
            package: &package.name,
            version: &package.version,
        };
        if !w.find(&version)?.is_empty() {
            known.push(package.clone());
        }
    }
    Ok(report.with_packages(known))
}

/// The recorder's task: takes whatever is queued (up to `batch_size`, waiting up to
/// `batch_delay` for more), writes it in one transaction on the blocking pool, answers
/// every caller, and repeats. Reports queued during a commit form the next batch.
async fn write_batches(
    store: Arc<dyn CatalogStore>,
    mut jobs: mpsc::Receiver<Job>,
    options: RecorderOptions,
) {
    let (batch_size, delay) = (options.batch_size.max(1), options.batch_delay);
    let count_unknown = options.count_unknown_packages;
    let mut batch = Vec::with_capacity(batch_size);
    loop {
        if jobs.recv_many(&mut batch, batch_size).await == 0 {
            return;
        }
        if !delay.is_zero() {
            let deadline = tokio::time::Instant::now() + delay;
            while batch.len() < batch_size {
                let more = batch_size - batch.len();
                match tokio::time::timeout_at(deadline, jobs.recv_many(&mut batch, more)).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        }
        let (reports, waiters): (Vec<_>, Vec<_>) = batch
            .drain(..)
            .map(|job| ((job.day, job.report), job.done))
            .unzip();
        let store = Arc::clone(&store);
        let written = exosphere_task::blocking(move || {
            store.write(&mut |w| {
                reports.iter().try_for_each(|(day, report)| {
                    if count_unknown {
                        return w.record_usage(*day, report);
                    }
                    let known = catalog_packages_only(w, report)?;
                    if known.packages().is_empty() {
                        return Ok(());
                    }
                    w.record_usage(*day, &known)
                })
            })
        })
        .await
        .unwrap_or_else(|error| Err(StoreError::TaskFailed(error.to_string())));
        let outcome = written.map_err(|error| {
            tracing::error!(%error, calls = waiters.len(), "recording package usage failed");
            RecordError::Store(Arc::new(error))
        });
        for waiter in waiters {
            // A caller that went away (its session closed) needs no answer.
            let _ = waiter.send(outcome.clone());
        }
    }
}
