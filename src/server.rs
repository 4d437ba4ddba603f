//! A package server in process, as the pieces `exosphere serve` puts together: its
//! configuration ([`Config`]), [`start`], which builds the DDP service and spawns the
//! background jobs over an opened store, and [`run`], which serves HTTP on a listener until a
//! shutdown future resolves. A test starts a whole server with the same three calls.
//!
//! What stays in `commands/serve.rs` is what only a process does: flags, the data directory's
//! lock, the open-file limit, signals. A new capability adds one line to [`start`] (its
//! service or background job) and one field to [`Config`].

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use exosphere_catalog::sync::Paging;
use exosphere_catalog::usage::{Recorder, RecorderOptions, UsageLimits};
use exosphere_catalog::{CatalogStore, Syncer, watch};
use exosphere_ddp::{DdpConfig, Server, SockJsConfig};
use exosphere_mirror::{FilesConfig, MirrorConfig, MirrorFiles, MirrorPhase, MirrorStatus};
use exosphere_web::{ApiConfig, ReadModel, SiteConfig};
use tokio::net::TcpListener;

use crate::accept::{self, HttpLimits, OpenConnections};
use crate::http::{AppState, router};
use crate::jobs::{self, RollupSchedule};
use crate::read_model;
use crate::readme_files::ReadmeFiles;
use crate::seen_head::HeadFile;
use crate::service::{PackageService, Publishing, UsageRates, UsageRecording, UsageThrottle};
use crate::stats_files::{StatsFiles, StatsFilesConfig};

/// Everything a server is configured with, as library types. `Default` is what
/// `exosphere serve` runs with when no flag is given (a test in `commands::serve` keeps the
/// two equal).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// DDP sessions: timeouts, limits, buffers.
    pub ddp: DdpConfig,
    /// DDP over SockJS at `/sockjs`.
    pub sockjs: SockJsConfig,
    /// Bounds on HTTP connections: open at once, per address, and idle.
    pub http: HttpLimits,
    /// Whether the SockJS conformance suite's services are mounted too.
    pub sockjs_test_services: bool,
    /// `syncNewPackageData` page sizes.
    pub paging: Paging,
    /// Bytes of sync pages kept computed ahead of clients (0 turns prefetching off).
    pub sync_cache_size: usize,
    /// The sync page cache's tier of files, if any (`exosphere serve` keeps one in the data
    /// directory).
    pub sync_files: Option<SyncFiles>,
    /// How often the catalog is polled for writes by other processes.
    pub watch_interval: Duration,
    /// The OAuth client id `meteor.loginServiceConfiguration` publishes.
    pub oauth_client_id: String,
    /// How `recordAppPackages` calls are batched into transactions.
    pub recorder: RecorderOptions,
    /// Bounds on one `recordAppPackages` report.
    pub usage_limits: UsageLimits,
    /// How many package entries `recordAppPackages` callers may report, per address and
    /// in all.
    pub usage_rates: UsageRates,
    /// When the daily stats rollup runs.
    pub rollup: RollupSchedule,
    /// Longest date range one `/api/v1/stats` request may ask for, in days.
    pub stats_max_range_days: u64,
    /// How `/stats/v1` files are rendered and kept.
    pub stats_files: StatsFilesConfig,
    /// The upstream to mirror, if any.
    pub mirror: Option<MirrorConfig>,
    /// How mirrored files are fetched and cached, when they are served (`/mirror/files`):
    /// with a mirror, and on a site loaded from a mirror's bundle.
    pub mirror_files: Option<FilesConfig>,
    /// The directory of the read model the JSON API answers from (`exosphere serve` keeps
    /// it in the data directory, `read-model/`, unless `--read-model off`); without one no
    /// feeder runs and the API answers `503` `api_disabled`.
    pub read_model: Option<PathBuf>,
    /// How the JSON API and the web catalog's pages bound one request.
    pub api: ApiConfig,
    /// The web catalog's pages: the public URL their absolute URLs start with, and the
    /// size of their lists' pages.
    pub site: SiteConfig,
    /// The file in which the newest catalog head seen is kept, if any (`exosphere serve`
    /// keeps one in the data directory, checked at startup by
    /// [`HeadFile::check_at_startup`]).
    pub seen_head: Option<HeadFile>,
}

/// Where and how much of the sync page cache is kept in files, beyond what memory holds:
/// a full sync of a large catalog is several times the memory tier, and a page read back
/// from its file is neither recomputed nor recompressed.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncFiles {
    /// The directory, emptied at start (files of an earlier process are not trusted).
    pub dir: PathBuf,
    /// The most bytes of page files kept (0 keeps none).
    pub max_bytes: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ddp: DdpConfig::default(),
            sockjs: SockJsConfig::default(),
            http: HttpLimits::default(),
            sockjs_test_services: false,
            paging: Paging::default(),
            sync_cache_size: 64 << 20,
            sync_files: None,
            watch_interval: Duration::from_millis(250),
            oauth_client_id: "exosphere".to_owned(),
            recorder: RecorderOptions::default(),
            usage_limits: UsageLimits::default(),
            usage_rates: UsageRates::default(),
            rollup: RollupSchedule::default(),
            stats_max_range_days: 3660,
            stats_files: StatsFilesConfig::default(),
            mirror: None,
            mirror_files: None,
            read_model: None,
            api: ApiConfig::default(),
            site: SiteConfig::default(),
            seen_head: None,
        }
    }
}

/// Builds a server over an opened store and starts its background work: the catalog
/// watcher (and, with [`Config::seen_head`], the file of the newest head it saw), (with
/// [`Config::read_model`]) the read model's feeder, the usage recorder, the daily rollup, (with `publishing`) the upload sweep,
/// (with [`Config::mirror`]) the upstream mirror and (with [`Config::mirror_files`] and
/// `publishing`'s file store) the mirrored files' service. With `publishing`, the web
/// catalog and the read model's search read README files from its file store.
/// The returned state is what [`run`] serves; call it inside a tokio runtime.
pub fn start(
    store: Arc<dyn CatalogStore>,
    publishing: Option<Publishing>,
    config: &Config,
) -> anyhow::Result<AppState> {
    let catalog = watch(Arc::clone(&store), config.watch_interval);
    if let Some(file) = &config.seen_head {
        exosphere_task::spawn(file.clone().keep(catalog.clone(), SEEN_HEAD_EVERY));
    }
    let mut syncer = Syncer::new(
        Arc::clone(&store),
        config.paging.clone(),
        config.sync_cache_size,
    );
    if let Some(files) = &config.sync_files {
        syncer = syncer
            .with_files(&files.dir, files.max_bytes)
            .with_context(|| format!("cannot keep sync pages in {}", files.dir.display()))?;
    }
    let syncer = Arc::new(syncer);
    let mirror_files = match (&config.mirror_files, &publishing) {
        (Some(files), Some(publishing)) => Some(
            MirrorFiles::new(Arc::clone(&store), publishing.blobs.clone(), files.clone())
                .context("cannot start the mirrored files' service")?,
        ),
        _ => None,
    };
    let readmes = publishing.as_ref().map(|publishing| {
        ReadmeFiles::new(
            publishing.blobs.clone(),
            mirror_files.clone(),
            config.site.readme.max_bytes,
        )
    });
    let (read_model, feeding) = match &config.read_model {
        Some(dir) => {
            let (model, feeding) = read_model::start(
                dir.clone(),
                Arc::clone(&store),
                Arc::clone(&syncer),
                catalog.clone(),
                readmes.clone(),
            );
            (model, Some(Arc::new(feeding)))
        }
        None => (ReadModel::off(), None),
    };
    let usage = UsageRecording {
        recorder: Recorder::start(Arc::clone(&store), &config.recorder),
        limits: config.usage_limits.clone(),
        throttle: UsageThrottle::new(config.usage_rates.clone()),
    };
    let stats_files = StatsFiles::new(Arc::clone(&store), config.stats_files.clone());
    exosphere_task::spawn(jobs::roll_up_daily(
        Arc::clone(&store),
        config.rollup,
        stats_files.clone(),
    ));
    let mut service = PackageService::new(syncer, catalog, config.oauth_client_id.clone())
        .with_usage_recording(usage);
    if let Some(publishing) = &publishing {
        exosphere_task::spawn(jobs::sweep_expired(publishing.clone()));
        exosphere_task::spawn(jobs::reopen_unheld_uploads(publishing.clone()));
        service = service.with_publishing(publishing.clone());
    }
    let mirror = config.mirror.as_ref().map(|mirror| {
        let (status, watched) = tokio::sync::watch::channel(MirrorStatus::new(&mirror.upstream));
        let job = exosphere_task::spawn(jobs::mirror_on_duty(
            Arc::clone(&store),
            mirror.clone(),
            status.clone(),
        ));
        // The job never returns; if it panics, `/healthz` must not go on showing its last state.
        exosphere_task::spawn(async move {
            if let Err(error) = job.await {
                tracing::error!(%error, "the mirror stopped");
                status.send_modify(|status| {
                    status.phase = MirrorPhase::Failing {
                        since_ms: chrono::Utc::now().timestamp_millis(),
                        error: format!("the mirror stopped: {error}; restart the server"),
                    };
                });
            }
        });
        watched
    });
    Ok(AppState {
        stats_files,
        store,
        mirror,
        mirror_files,
        readmes,
        ddp: Server::new(Arc::new(service), config.ddp.clone()),
        sockjs: config.sockjs.clone(),
        http: config.http.clone(),
        connections: OpenConnections::new(&config.http),
        sockjs_test_services: config.sockjs_test_services,
        stats_max_range_days: config.stats_max_range_days,
        read_model,
        feeding,
        api: config.api.clone(),
        site: config.site.clone(),
        publishing,
    })
}

/// How often, at most, the seen-head file is rewritten as the catalog's head advances.
const SEEN_HEAD_EVERY: Duration = Duration::from_secs(1);

/// On shutdown, time past the DDP shutdown grace for sessions to deliver their close frames.
const CLOSE_FLUSH: Duration = Duration::from_secs(2);

/// On shutdown, time past the grace and [`CLOSE_FLUSH`] after which HTTP requests still open
/// are abandoned and [`run`] returns.
const HTTP_STOP_EXTRA: Duration = Duration::from_secs(3);

/// Serves `state` on `listener` until `shutdown` resolves, then lets DDP sessions wind down
/// within the configured grace and returns once every connection is gone (or the grace and a
/// few seconds more have passed) and the read model's feeder has stopped (within the grace
/// again: it stops after the page it is applying).
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let ddp = Arc::clone(&state.ddp);
    let (grace, write_timeout) = (ddp.config().shutdown_grace, ddp.config().write_timeout);
    let (limits, connections) = (state.http.clone(), Arc::clone(&state.connections));
    // On shutdown, HTTP stops accepting and DDP sessions wind down side by side; WebSocket
    // sessions are not HTTP requests, so they are waited for here.
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let feeding = state.feeding.clone();
    let stop_feeding = feeding.clone();
    let draining = exosphere_task::spawn(async move {
        shutdown.await;
        stop.send_replace(true);
        if let Some(feeding) = stop_feeding {
            feeding.stop();
        }
        ddp.shut_down(CLOSE_FLUSH).await
    });
    let signalled = |mut stopping: tokio::sync::watch::Receiver<bool>| async move {
        // An error means the shutdown task is gone, which only happens after it signalled.
        let _ = stopping.wait_for(|stop| *stop).await;
    };
    let serving = accept::serve(
        listener,
        router(state),
        &limits,
        connections,
        move |tcp| tune_socket(tcp, write_timeout),
        stopping.clone(),
    );
    // Requests still open after the sessions' grace (a send a client never lets finish)
    // do not keep the server alive.
    let hard_stop = async {
        signalled(stopping).await;
        tokio::time::sleep(grace + CLOSE_FLUSH + HTTP_STOP_EXTRA).await;
    };
    tokio::select! {
        () = serving => {}
        () = hard_stop => tracing::warn!("HTTP requests still open after the shutdown grace period; stopping anyway"),
    }
    if !matches!(draining.await, Ok(true)) {
        tracing::warn!("some sessions were still open after the shutdown grace period");
    }
    // Before the caller releases the data directory: no pass may write the read model after.
    if let Some(feeding) = feeding {
        feeding.join(grace).await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Socket options of every accepted connection.
///
/// DDP is request/response over small frames: Nagle's algorithm would hold back the tail of
/// each result frame until the client acknowledges the previous segments. Data the kernel
/// holds for a client that stopped reading, beyond what the server's own write timeouts see
/// (a SockJS streaming chunk hyper already took), is given up after the write timeout too:
/// `TCP_USER_TIMEOUT` closes a connection whose sent data stays unacknowledged, or unsent
/// behind a zero window, that long. It holds for every connection, so downloads, uploads and
/// `/stats` answers get the same bound.
fn tune_socket(tcp: &tokio::net::TcpStream, write_timeout: Duration) {
    if let Err(error) = tcp.set_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY");
    }
    #[cfg(target_os = "linux")]
    if let Err(error) = socket2::SockRef::from(tcp).set_tcp_user_timeout(Some(write_timeout)) {
        tracing::debug!(%error, "cannot set TCP_USER_TIMEOUT");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = write_timeout;
}
