//! `exosphere serve`: the process around a server. It checks the flags, locks the data
//! directory, opens the catalog, starts a new data epoch if its head went back since this
//! server last ran ([`crate::seen_head`]), joins the servers that share it
//! ([`exosphere_catalog::CatalogStore::join_servers`]), opens the file store, binds the
//! listener, then hands over to [`crate::server`] (which builds the service and runs its
//! jobs) until SIGINT or SIGTERM.

use std::io::Cursor;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use exosphere_catalog::sync::Paging;
use exosphere_catalog::usage::{RecorderOptions, UsageLimits};
use exosphere_catalog::{CatalogStore, dump};
use exosphere_ddp::client::{ClientConfig, certificates_from_pem};
use exosphere_ddp::{DdpConfig, ScriptIntegrity, SockJsConfig, WebSocketCompression};
use exosphere_mirror::{FilesConfig, MirrorConfig};
use exosphere_sync_client::PassOptions;
use exosphere_synth::{self as synth, Scale};
use exosphere_web::{ApiConfig, SiteConfig};

use crate::accept::HttpLimits;
use crate::cli::{ReadModelMode, ServeArgs};
use crate::commands::{blob_store, catalog_location, open_served_catalog, runtime};
use crate::fd_limit;
use crate::jobs::RollupSchedule;
use crate::seen_head::HeadFile;
use crate::serve_lock;
use crate::server::{self, Config, SyncFiles};
use crate::service::upload_slots::UploadSlots;
use crate::service::{LoginLimits, LoginThrottle, Publishing, UsageRates};
use crate::stats_files::StatsFilesConfig;

/// Seed of the demo catalog: fixed, so every demo shows the same packages.
const DEMO_SEED: u64 = 2015;

/// Runs the server on a multi-threaded tokio runtime.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    runtime()?.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    check_public_url(&args)?;
    let config = config(&args)?;
    raise_open_file_limit(&config);
    let data_dir = &args.data_dir.data_dir;
    // Held until this function returns, so for as long as the server runs.
    let _lock = serve_lock::acquire(data_dir)?;
    let seen_head = HeadFile::new(data_dir, catalog_location(&args.data_dir));
    let store = open_served_catalog(&args.data_dir, args.sync_replica, |store| {
        seen_head.check_at_startup(store).map(drop)
    })?;
    // Held until this function returns, like the data-dir lock: this server's seat among
    // those sharing the catalog (a PostgreSQL database serves several), taken before the
    // uploads that servers no longer running left receiving are reopened below.
    let seat = store
        .join_servers()
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    if args.demo {
        load_demo_catalog(&store)?;
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr().context("no local address")?;
    let public_url = public_url(&args, address)?;
    let publishing = publishing(&args, &store, &public_url, seat.id())?;
    let mut config = config;
    let ca_pem = upstream_ca(&args)?;
    config.mirror = mirror_config(&args, &public_url, ca_pem.as_deref())?;
    config.seen_head = Some(seen_head.clone());
    config.sync_files = Some(SyncFiles {
        dir: data_dir.join("sync-pages"),
        max_bytes: args.sync_file_cache_size,
    });
    config.read_model = (args.read_model == ReadModelMode::On).then(|| data_dir.join("read-model"));
    config.site.public_url.clone_from(&public_url);
    config.mirror_files = Some(FilesConfig {
        download_dir: args.data_dir.data_dir.join("mirror-downloads"),
        max_size: args.mirror.upstream_max_file_size,
        idle_timeout: args.mirror.upstream_file_idle_timeout,
        ca_pem,
        max_downloads: args.mirror.upstream_max_downloads as usize,
    });
    publishing
        .reopen_interrupted_uploads()
        .await
        .map_err(|error| anyhow::anyhow!("cannot reopen interrupted uploads: {error}"))?;
    let state = server::start(Arc::clone(&store), Some(publishing), &config)?;
    tracing::info!(
        %address,
        data_dir = %data_dir.display(),
        catalog = %catalog_location(&args.data_dir),
        "serving"
    );
    let stop = shutdown_signal();
    // Scripts and tests read this line to learn the port chosen for `--listen …:0`.
    println!("Exosphere listening on http://{address}");
    server::run(listener, state, stop).await?;
    exosphere_task::blocking(move || seen_head.record_at_shutdown(&*store)).await?;
    Ok(())
}

/// `--websocket-compression` and its level, for both WebSocket endpoints.
fn websocket_compression(args: &ServeArgs) -> WebSocketCompression {
    WebSocketCompression {
        enabled: args.websocket_compression,
        level: args.websocket_compression_level,
    }
}

/// The flags as the server's library configuration.
fn config(args: &ServeArgs) -> anyhow::Result<Config> {
    Ok(Config {
        ddp: DdpConfig {
            connect_timeout: args.connect_timeout,
            ping_interval: args.ping_interval,
            ping_timeout: args.ping_timeout,
            write_timeout: args.write_timeout,
            max_message_size: args.max_message_size,
            outbound_buffer_size: args.outbound_buffer_size,
            anonymous_outbound_buffer_size: args.anonymous_outbound_buffer_size,
            handshake_outbound_buffer_size: args.handshake_outbound_buffer_size,
            max_outbound_bytes: args.max_outbound_bytes,
            inbound_queue: args.inbound_queue,
            max_subscriptions: args.max_subscriptions,
            max_sessions: args.max_sessions,
            max_sessions_per_address: args.max_sessions_per_address,
            method_rate_limit: args.method_rate_limit,
            method_rate_interval: args.method_rate_interval,
            shutdown_grace: args.shutdown_grace,
            compression: websocket_compression(args),
        },
        sockjs: SockJsConfig {
            heartbeat: args.sockjs_heartbeat,
            disconnect_delay: args.sockjs_disconnect_delay,
            response_limit: args.sockjs_response_limit,
            max_message_size: args.max_message_size,
            write_timeout: args.write_timeout,
            connect_timeout: args.sockjs_connect_timeout,
            handshake_timeout: args.connect_timeout,
            queue: args.inbound_queue,
            client_url: args.sockjs_client_url.clone(),
            client_integrity: args
                .sockjs_client_integrity
                .clone()
                .map_or(ScriptIntegrity::Known, ScriptIntegrity::Given),
            compression: websocket_compression(args),
        },
        http: HttpLimits {
            header_read_timeout: args.header_read_timeout,
            max_connections: args.max_connections,
            max_connections_per_address: args.max_connections_per_address,
        },
        sockjs_test_services: args.sockjs_test_services,
        paging: Paging {
            page_size: args.page_size as usize,
            page_bytes: args.sync_page_bytes,
            ..Paging::default()
        },
        sync_cache_size: args.sync_cache_size,
        // In the data directory, set where the directory is known (`run`).
        sync_files: None,
        watch_interval: args.watch_interval,
        oauth_client_id: args.oauth_client_id.clone(),
        recorder: RecorderOptions {
            queue: usize::try_from(args.stats_queue)?,
            batch_size: usize::try_from(args.stats_batch_size)?,
            batch_delay: args.stats_batch_delay,
            count_unknown_packages: args.stats_count_unknown_packages,
        },
        usage_rates: UsageRates {
            per_address: args.stats_rate_per_address,
            global: args.stats_rate_global,
            interval: args.stats_rate_interval,
            max_addresses: usize::try_from(args.stats_rate_addresses)?,
        },
        usage_limits: UsageLimits {
            max_packages: usize::try_from(args.stats_max_packages)?,
        },
        rollup: RollupSchedule {
            delay: args.stats_rollup_delay,
            every: args.stats_rollup_every,
        },
        stats_max_range_days: args.stats_max_range_days,
        stats_files: StatsFilesConfig {
            max_renders: usize::try_from(args.stats_max_renders)?,
            cache_size: args.stats_cache_size,
            cache_ttl: args.stats_cache_ttl,
        },
        mirror: None,
        mirror_files: None,
        // In the data directory, set where the directory is known (`run`).
        read_model: None,
        api: ApiConfig {
            max_limit: args.api_max_limit,
            max_page_depth: args.web_max_page_depth,
            max_query_chars: args.web_max_query_chars,
            max_queries: args.api_max_queries,
            cache_bytes: args.web_cache_bytes,
        },
        // The public URL is set where the listener is bound (`serve`).
        site: SiteConfig {
            page_size: args.web_page_size,
            readme: exosphere_readme::RenderOptions {
                remote_images: args.readme_remote_images,
                max_bytes: args.readme_max_bytes,
                link_base: None,
            },
            ..SiteConfig::default()
        },
        seen_head: None,
    })
}

/// Each connection is a socket: raises the open-file limit as far as the system allows,
/// before the connection cap is derived from it, and warns when `--max-sessions` or
/// `--max-connections` cannot be reached within it (the server then refuses connections at
/// the cap instead of running out of descriptors).
fn raise_open_file_limit(config: &Config) {
    match fd_limit::raise() {
        Ok(limit) => {
            let fits = fd_limit::connection_cap(limit.soft);
            let wanted = config
                .ddp
                .max_sessions
                .max(config.http.max_connections.unwrap_or(0));
            if fits < wanted {
                tracing::warn!(
                    open_files = limit.soft,
                    connections = fits,
                    max_sessions = config.ddp.max_sessions,
                    "the open-file limit allows fewer connections than --max-sessions or --max-connections; raise the hard limit (ulimit -Hn, LimitNOFILE=)"
                );
            } else {
                tracing::debug!(open_files = limit.soft, "open-file limit");
            }
        }
        Err(error) => tracing::warn!(%error, "cannot raise the open-file limit"),
    }
}

/// The publishing side: the blob store the flags choose (an S3 bucket, or a local
/// directory), the public URL every handed-out URL starts with, and the seat (`server`)
/// this server's upload marks name.
fn publishing(
    args: &ServeArgs,
    store: &Arc<dyn CatalogStore>,
    public_url: &str,
    server: &str,
) -> anyhow::Result<Publishing> {
    let options = &args.publishing;
    let blobs = blob_store(&options.files, &args.data_dir.data_dir)?;
    tracing::info!(files = %blobs, public_url, "publishing enabled");
    Ok(Publishing {
        store: Arc::clone(store),
        blobs,
        public_url: public_url.to_owned(),
        max_upload_size: options.max_upload_size,
        upload_ttl: options.upload_ttl,
        max_open_publishes: options.max_open_publishes,
        upload_slots: UploadSlots::new(
            usize::try_from(options.max_concurrent_uploads).unwrap_or(usize::MAX),
            usize::try_from(options.max_uploads_per_user).unwrap_or(usize::MAX),
        ),
        upload_idle_timeout: options.upload_idle_timeout,
        upload_min_rate: options.upload_min_rate,
        login_throttle: Arc::new(LoginThrottle::new(login_limits(args))),
        server: server.to_owned(),
    })
}

/// The failed-login limits of the flags.
fn login_limits(args: &ServeArgs) -> LoginLimits {
    let options = &args.publishing;
    LoginLimits {
        per_address: options.login_failures_per_address,
        per_account: options.login_failures_per_account,
        interval: options.login_failure_interval,
        ..LoginLimits::default()
    }
}

/// The base URL clients reach this server at, without a trailing slash: `--public-url`, or
/// `http://<the listen address>`.
fn public_url(args: &ServeArgs, address: SocketAddr) -> anyhow::Result<String> {
    let public_url = args
        .publishing
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{address}"));
    if !public_url.starts_with("http://") && !public_url.starts_with("https://") {
        anyhow::bail!("--public-url must start with http:// or https://, got {public_url:?}");
    }
    Ok(public_url.trim_end_matches('/').to_owned())
}

/// The PEM of `--upstream-ca-cert`, if given.
fn upstream_ca(args: &ServeArgs) -> anyhow::Result<Option<Vec<u8>>> {
    let Some(path) = &args.mirror.upstream_ca_cert else {
        return Ok(None);
    };
    let pem = std::fs::read(path)
        .with_context(|| format!("cannot read the CA certificate {}", path.display()))?;
    Ok(Some(pem))
}

/// The mirror's configuration from the `--upstream*` flags; `None` without `--upstream`.
fn mirror_config(
    serve: &ServeArgs,
    public_url: &str,
    ca_pem: Option<&[u8]>,
) -> anyhow::Result<Option<MirrorConfig>> {
    let args = &serve.mirror;
    let Some(upstream) = &args.upstream else {
        return Ok(None);
    };
    let mut client = ClientConfig {
        connect_timeout: args.upstream_connect_timeout,
        call_timeout: args.upstream_call_timeout,
        max_message_size: args.upstream_max_message_size,
        // The mirror follows the upstream for hours: notice when it vanished.
        heartbeat: Some(Duration::from_secs(30)),
        ..ClientConfig::default()
    };
    if let Some(pem) = ca_pem {
        client.extra_roots =
            certificates_from_pem(pem).context("cannot use the --upstream-ca-cert certificate")?;
    }
    Ok(Some(MirrorConfig {
        upstream: upstream.clone(),
        public_url: public_url.to_owned(),
        client,
        pass: PassOptions {
            compress: args.upstream_compress,
            max_page_size: args.upstream_max_page_size,
            max_empty_pages: MAX_EMPTY_UPSTREAM_PAGES,
        },
        poll_interval: args.upstream_poll_interval,
        first_backoff: Duration::from_secs(1),
        max_backoff: args.upstream_max_backoff,
        max_shrink: args.upstream_max_shrink,
    }))
}

/// Most pages in a row an upstream may send without records and without `upToDate` before
/// the mirror calls it stuck (as `exosphere sync --max-empty-pages`).
const MAX_EMPTY_UPSTREAM_PAGES: u32 = 100;

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

/// Resolves when the process is asked to stop: Ctrl-C (SIGINT) or SIGTERM (what `docker
/// stop`, systemd and Kubernetes send). The handlers are installed when this is called, not
/// when the future is first polled, so a signal that arrives between the "listening" line
/// and the server's first poll still stops it gracefully instead of killing it.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let stop = {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind: SignalKind, name: &'static str| {
            let installed = signal(kind);
            async move {
                match installed {
                    Ok(mut signal) => {
                        signal.recv().await;
                    }
                    Err(error) => {
                        tracing::error!(%error, "cannot listen for {name}");
                        std::future::pending::<()>().await;
                    }
                }
            }
        };
        let interrupt = listen(SignalKind::interrupt(), "Ctrl-C (SIGINT)");
        let terminate = listen(SignalKind::terminate(), "SIGTERM");
        async move {
            tokio::select! {
                () = interrupt => {}
                () = terminate => {}
            }
        }
    };
    #[cfg(not(unix))]
    let stop = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    async move {
        stop.await;
        tracing::info!("shutting down");
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::cli::{Cli, Command};

    /// The clap defaults and the library's defaults are written in two places: this keeps
    /// them equal, so a server started in process runs as `exosphere serve` does.
    #[test]
    fn serve_without_flags_runs_the_library_defaults() {
        let cli = Cli::try_parse_from(["exosphere", "serve"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve");
        };
        assert_eq!(config(&args).unwrap(), Config::default());
        assert_eq!(login_limits(&args), LoginLimits::default());
    }

    fn serve_args(flags: &[&str]) -> ServeArgs {
        let cli = Cli::try_parse_from(["exosphere", "serve"].iter().chain(flags)).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve");
        };
        args
    }

    #[test]
    fn the_iframe_script_is_pinned_only_where_its_hash_is_known() {
        let sockjs = |args: &[&str]| config(&serve_args(args)).unwrap().sockjs;
        assert_eq!(
            sockjs(&[]).script_integrity(),
            Some(exosphere_ddp::SOCKJS_CLIENT_INTEGRITY)
        );
        let own = ["--sockjs-client-url", "/static/sockjs.min.js"];
        assert_eq!(sockjs(&own).script_integrity(), None);
        let hashed = [own[0], own[1], "--sockjs-client-integrity", "sha384-abc="];
        assert_eq!(sockjs(&hashed).script_integrity(), Some("sha384-abc="));
        let bad = ["serve", "--sockjs-client-integrity", "md5-abc"];
        assert!(Cli::try_parse_from(["exosphere"].iter().chain(&bad)).is_err());
    }
}
