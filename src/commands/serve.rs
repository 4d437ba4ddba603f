//! `exosphere serve`: opens the catalog, starts the watcher, the usage recorder, the daily
//! stats rollup and the DDP server, and serves HTTP until SIGINT or SIGTERM. Publishing
//! (spec §5) uses the blob store the flags choose and sweeps expired uploads.

use std::io::Cursor;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::serve::ListenerExt as _;
use exosphere_catalog::sync::Paging;
use exosphere_catalog::usage::{self, Recorder, RecorderOptions, UsageLimits};
use exosphere_catalog::{CatalogStore, Syncer, dump, watch};
use exosphere_catalog_sqlite::open_sqlite;
use exosphere_ddp::{DdpConfig, Server, SockJsConfig};
use exosphere_synth::{self as synth, Scale};

use crate::cli::ServeArgs;
use crate::fd_limit;
use crate::http::{AppState, router};
use crate::serve_lock;
use crate::service::upload_slots::UploadSlots;
use crate::service::{PackageService, Publishing, UsageRecording};
use exosphere_blobs::{BlobStore, S3Config};

/// Seed of the demo catalog: fixed, so every demo shows the same packages.
const DEMO_SEED: u64 = 2015;

/// On shutdown, time past `--shutdown-grace` for sessions to deliver their close frames.
const CLOSE_FLUSH: Duration = Duration::from_secs(2);

/// On shutdown, time past `--shutdown-grace` and [`CLOSE_FLUSH`] after which HTTP requests
/// still open are abandoned and the process exits.
const HTTP_STOP_EXTRA: Duration = Duration::from_secs(3);

/// Runs the server on a multi-threaded tokio runtime.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(serve(args))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    check_public_url(&args)?;
    // Each session is a socket: let --max-sessions be reachable as far as the system allows.
    match fd_limit::raise() {
        Ok(limit) if usize::try_from(limit.soft).unwrap_or(usize::MAX) < args.max_sessions => {
            tracing::warn!(
                open_files = limit.soft,
                max_sessions = args.max_sessions,
                "the open-file limit is below --max-sessions; raise the hard limit (ulimit -Hn, LimitNOFILE=)"
            )
        }
        Ok(limit) => tracing::debug!(open_files = limit.soft, "open-file limit"),
        Err(error) => tracing::warn!(%error, "cannot raise the open-file limit"),
    }
    let data_dir = &args.data_dir.data_dir;
    // Held until this function returns, so for as long as the server runs.
    let _lock = serve_lock::acquire(data_dir)?;
    let store: Arc<dyn CatalogStore> = Arc::new(
        open_sqlite(data_dir)
            .with_context(|| format!("cannot open the catalog in {}", data_dir.display()))?,
    );
    if args.demo {
        load_demo_catalog(&store)?;
    }
    let catalog = watch(Arc::clone(&store), args.watch_interval);
    let paging = Paging {
        page_size: args.page_size as usize,
        ..Paging::default()
    };
    let syncer = Arc::new(Syncer::new(
        Arc::clone(&store),
        paging,
        args.sync_cache_size,
    ));
    let recorder = Recorder::start(
        Arc::clone(&store),
        &RecorderOptions {
            queue: usize::try_from(args.stats_queue)?,
            batch_size: usize::try_from(args.stats_batch_size)?,
            batch_delay: args.stats_batch_delay,
        },
    );
    let usage_recording = UsageRecording {
        recorder,
        limits: UsageLimits {
            max_packages: usize::try_from(args.stats_max_packages)?,
        },
    };
    tokio::spawn(roll_up_daily(
        Arc::clone(&store),
        args.stats_rollup_delay,
        args.stats_rollup_every,
    ));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr().context("no local address")?;
    let publishing = publishing(&args, &store, address)?;
    publishing
        .reopen_interrupted_uploads()
        .await
        .map_err(|error| anyhow::anyhow!("cannot reopen interrupted uploads: {error}"))?;
    tokio::spawn(sweep_expired(publishing.clone()));
    let service = Arc::new(
        PackageService::new(syncer, catalog, args.oauth_client_id.clone())
            .with_usage_recording(usage_recording)
            .with_publishing(publishing.clone()),
    );
    let ddp = Server::new(
        service,
        DdpConfig {
            connect_timeout: args.connect_timeout,
            ping_interval: args.ping_interval,
            ping_timeout: args.ping_timeout,
            write_timeout: args.write_timeout,
            max_message_size: args.max_message_size,
            outbound_buffer_size: args.outbound_buffer_size,
            inbound_queue: args.inbound_queue,
            max_subscriptions: args.max_subscriptions,
            max_sessions: args.max_sessions,
            method_rate_limit: args.method_rate_limit,
            method_rate_interval: args.method_rate_interval,
            shutdown_grace: args.shutdown_grace,
        },
    );
    let sockjs = SockJsConfig {
        heartbeat: args.sockjs_heartbeat,
        disconnect_delay: args.sockjs_disconnect_delay,
        response_limit: args.sockjs_response_limit,
        max_message_size: args.max_message_size,
        write_timeout: args.write_timeout,
        handshake_timeout: args.connect_timeout,
        queue: args.inbound_queue,
        client_url: args.sockjs_client_url.clone(),
    };
    // DDP is request/response over small frames: Nagle's algorithm would hold back the tail
    // of each result frame until the client acknowledges the previous segments.
    // Data the kernel holds for a client that stopped reading, beyond what the server's own
    // write timeouts see (a SockJS streaming chunk hyper already took), is given up after
    // --write-timeout too: TCP_USER_TIMEOUT closes a connection whose sent data stays
    // unacknowledged, or unsent behind a zero window, that long. It holds for every
    // connection, so downloads, uploads and /stats answers get the same bound.
    #[cfg(target_os = "linux")]
    let write_timeout = args.write_timeout;
    let listener = listener.tap_io(move |tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        #[cfg(target_os = "linux")]
        if let Err(error) = socket2::SockRef::from(&*tcp).set_tcp_user_timeout(Some(write_timeout))
        {
            tracing::debug!(%error, "cannot set TCP_USER_TIMEOUT");
        }
    });
    tracing::info!(%address, data_dir = %data_dir.display(), "serving");
    // Scripts and tests read this line to learn the port chosen for `--listen …:0`.
    println!("Exosphere listening on http://{address}");
    let state = AppState {
        store,
        ddp: Arc::clone(&ddp),
        sockjs,
        sockjs_test_services: args.sockjs_test_services,
        stats_max_range_days: args.stats_max_range_days,
        publishing: Some(publishing),
    };
    // On a signal, HTTP stops accepting and DDP sessions wind down side by side; WebSocket
    // sessions are not HTTP requests, so they are waited for here.
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let draining = tokio::spawn({
        let ddp = Arc::clone(&ddp);
        async move {
            shutdown_signal().await;
            stop.send_replace(true);
            ddp.shut_down(CLOSE_FLUSH).await
        }
    });
    let signalled = |mut stopping: tokio::sync::watch::Receiver<bool>| async move {
        // An error means the signal task is gone, which only happens after it signalled.
        let _ = stopping.wait_for(|stop| *stop).await;
    };
    let serving = axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(signalled(stopping.clone()))
    .into_future();
    // Requests still open after the sessions' grace (a send a client never lets finish)
    // do not keep the process alive.
    let hard_stop = async {
        signalled(stopping).await;
        tokio::time::sleep(args.shutdown_grace + CLOSE_FLUSH + HTTP_STOP_EXTRA).await;
    };
    tokio::select! {
        served = serving => served.context("server failed")?,
        () = hard_stop => tracing::warn!("HTTP requests still open after the shutdown grace period; stopping anyway"),
    }
    if !matches!(draining.await, Ok(true)) {
        tracing::warn!("some sessions were still open after the shutdown grace period");
    }
    tracing::info!("stopped");
    Ok(())
}

/// The publishing side: the blob store the flags choose (an S3 bucket, or a local
/// directory) and the public URL every handed-out URL starts with.
fn publishing(
    args: &ServeArgs,
    store: &Arc<dyn CatalogStore>,
    address: SocketAddr,
) -> anyhow::Result<Publishing> {
    let options = &args.publishing;
    let blobs = match &options.s3_bucket {
        Some(bucket) => BlobStore::s3(&S3Config {
            bucket: bucket.clone(),
            endpoint: options.s3_endpoint.clone(),
            region: options.s3_region.clone(),
            access_key_id: options.s3_access_key_id.clone(),
            secret_access_key: options.s3_secret_access_key.clone(),
        }),
        None => BlobStore::local(
            &options
                .files_dir
                .clone()
                .unwrap_or_else(|| args.data_dir.data_dir.join("files")),
        ),
    }
    .context("cannot open the package file store")?;
    let public_url = options
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{address}"));
    if !public_url.starts_with("http://") && !public_url.starts_with("https://") {
        anyhow::bail!("--public-url must start with http:// or https://, got {public_url:?}");
    }
    tracing::info!(files = %blobs, public_url, "publishing enabled");
    Ok(Publishing {
        store: Arc::clone(store),
        blobs,
        public_url: public_url.trim_end_matches('/').to_owned(),
        max_upload_size: options.max_upload_size,
        upload_ttl: options.upload_ttl,
        max_open_publishes: options.max_open_publishes,
        upload_slots: UploadSlots::new(
            usize::try_from(options.max_concurrent_uploads).unwrap_or(usize::MAX),
            usize::try_from(options.max_uploads_per_user).unwrap_or(usize::MAX),
        ),
        upload_idle_timeout: options.upload_idle_timeout,
    })
}

/// Refuses to start without `--public-url` when the listen address is unspecified
/// (`0.0.0.0`, `[::]`): the default URL would send clients to `http://0.0.0.0:…`.
fn check_public_url(args: &ServeArgs) -> anyhow::Result<()> {
    let listen = args.listen;
    if args.publishing.public_url.is_none() && listen.ip().is_unspecified() {
        anyhow::bail!(
            "--listen {listen} accepts connections on every interface, so the URL clients \
             reach this server at cannot be derived from it: set --public-url (or \
             EXOSPHERE_PUBLIC_URL), e.g. --public-url http://packages.example.com:{}",
            listen.port()
        );
    }
    Ok(())
}

/// How often expired upload tickets and unfinished publishes are cleaned up.
const SWEEP_INTERVAL: Duration = Duration::from_secs(600);

/// Deletes expired upload tickets and pending publishes, and their staging files, so an
/// abandoned publish leaves nothing behind (at startup, then every [`SWEEP_INTERVAL`]).
async fn sweep_expired(publishing: Publishing) {
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

/// Fills an empty catalog with the small synthetic catalog, so a first `serve --demo` has
/// something to show; a catalog that has data is left alone.
fn load_demo_catalog(store: &Arc<dyn CatalogStore>) -> anyhow::Result<()> {
    if store.state()?.head_seq > 0 {
        tracing::info!("catalog is not empty; --demo leaves it as it is");
        return Ok(());
    }
    let mut dump_text = Vec::new();
    synth::generate(Scale::Small, DEMO_SEED, &mut dump_text)
        .context("cannot generate the demo catalog")?;
    let summary =
        dump::import(&**store, Cursor::new(dump_text)).context("cannot import the demo catalog")?;
    tracing::info!(%summary, "loaded the demo catalog");
    Ok(())
}

/// How long the rollup job waits before trying again after a failure (e.g. a long import
/// holding the write lock).
const ROLLUP_RETRY: Duration = Duration::from_secs(60);

/// The daily stats job (spec §7.2, "slightly past UTC midnight"): at startup, `delay`
/// after every UTC midnight, and every `every` in between, rolls up each day before today
/// that got recordings since its last rollup, so days missed while the server was down are
/// caught up, and a late report re-opens its day within `every`. The next wake-up is
/// computed from when a run starts, so a long catch-up cannot skip a midnight.
async fn roll_up_daily(store: Arc<dyn CatalogStore>, delay: Duration, every: Duration) {
    loop {
        let started = tokio::time::Instant::now();
        let now = chrono::Utc::now();
        let today = now.date_naive();
        let job_store = Arc::clone(&store);
        let outcome =
            tokio::task::spawn_blocking(move || usage::catch_up(&*job_store, today)).await;
        match outcome {
            Ok(Ok(days)) => {
                for (day, rows) in days {
                    tracing::info!(%day, rows, "rolled up package usage");
                }
            }
            Ok(Err(error)) => {
                tracing::error!(%error, "rolling up package usage failed; retrying in a minute");
                tokio::time::sleep(ROLLUP_RETRY).await;
                continue;
            }
            Err(error) => {
                tracing::error!(%error, "the rollup task failed; retrying in a minute");
                tokio::time::sleep(ROLLUP_RETRY).await;
                continue;
            }
        }
        tokio::time::sleep_until(started + until_next_rollup(now, delay, every)).await;
    }
}

/// The time from `now` until the job's next run: `delay` past the next UTC midnight (today's
/// while that is still ahead), or `every`, whichever comes first.
fn until_next_rollup(
    now: chrono::DateTime<chrono::Utc>,
    delay: Duration,
    every: Duration,
) -> Duration {
    let after_midnight = |day: chrono::NaiveDate| {
        day.and_hms_opt(0, 0, 0)
            .map(|midnight| midnight.and_utc())
            .and_then(|midnight| {
                chrono::TimeDelta::from_std(delay)
                    .ok()
                    .map(|d| midnight + d)
            })
            .and_then(|at| (at - now).to_std().ok())
    };
    let today = now.date_naive();
    after_midnight(today)
        .filter(|wait| !wait.is_zero())
        .or_else(|| today.succ_opt().and_then(after_midnight))
        .unwrap_or(every)
        .min(every)
}

/// Resolves on Ctrl-C or SIGTERM (what `docker stop` and systemd send).
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
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
        let day = Duration::from_secs(48 * 3600);
        assert_eq!(
            until_next_rollup(at("2024-10-01T23:00:00Z"), five, day),
            Duration::from_secs(3600 + 300)
        );
        // A run started just before midnight wakes after that midnight, however long it
        // takes: the wait counts from its start.
        assert_eq!(
            until_next_rollup(at("2024-10-01T23:58:00Z"), five, day),
            Duration::from_secs(7 * 60)
        );
        // Between midnight and the delay, today's run is still ahead.
        assert_eq!(
            until_next_rollup(at("2024-10-02T00:00:00Z"), five, day),
            five
        );
        assert_eq!(
            until_next_rollup(at("2024-10-02T00:05:00Z"), five, day),
            Duration::from_secs(24 * 3600)
        );
        // Late reports: the job also runs every period in between.
        let hour = Duration::from_secs(3600);
        assert_eq!(
            until_next_rollup(at("2024-10-02T12:00:00Z"), five, hour),
            hour
        );
        assert_eq!(
            until_next_rollup(at("2024-10-02T23:30:00Z"), five, hour),
            Duration::from_secs(35 * 60)
        );
    }
}
