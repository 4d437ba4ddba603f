//! `exosphere sync`: copies a package server's catalog into the local index, once or (with
//! `--watch`) for as long as it runs.
//!
//! The page loop itself is the sync client's (`exosphere_sync_client::sync_pass`, shared with
//! the mirror); [`sink`] puts its pages into the index. This module opens the index, connects
//! the DDP client, shows progress, follows the `changes` publication in watch mode
//! (reconnecting with backoff), prints the summary, and words errors for the user.

mod sink;

use std::io::IsTerminal as _;
use std::time::Duration;

use anyhow::Context as _;
use exosphere_ddp::client::{Client, ClientConfig, ClientError, certificates_from_pem};
use exosphere_index::Index;
use exosphere_sync_client::{Changes, PassOptions, SyncError, change_counters, sync_pass};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::SyncArgs;
use crate::commands::runtime;
use sink::{IndexSink, Summary};

/// The first wait before reconnecting in watch mode; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Runs the sync on a multi-threaded runtime (the connection reader keeps receiving while
/// a page is applied).
pub fn run(args: SyncArgs) -> anyhow::Result<()> {
    runtime()?.block_on(sync(args))
}

async fn sync(args: SyncArgs) -> anyhow::Result<()> {
    let path = args.index.index_path()?;
    let endpoint = args.index.endpoint()?;
    let mut index = if args.rebuild {
        Index::rebuild(&path)?
    } else {
        Index::open(&path)?
    };
    index.claim(&endpoint.identity())?;
    let config = client_config(&args)?;
    let settings = PassOptions {
        compress: args.compress,
        max_page_size: args.max_page_size,
        max_empty_pages: args.max_empty_pages,
    };
    let server = args.index.server.as_str();
    if args.watch {
        return watch(server, &config, &mut index, settings).await;
    }
    let client = connect(server, &config).await?;
    let pass = pass_with_progress(&client, &mut index, settings, None).await;
    client.close().await;
    let pass = pass.with_context(|| format!("the sync from {server} stopped"))?;
    println!("Synced {pass} from {server}.");
    print_counts(&index)?;
    Ok(())
}

/// The DDP client settings from the flags.
fn client_config(args: &SyncArgs) -> anyhow::Result<ClientConfig> {
    let mut config = ClientConfig {
        connect_timeout: args.connect_timeout,
        call_timeout: args.call_timeout,
        max_message_size: args.max_message_size,
        ..ClientConfig::default()
    };
    if let Some(path) = &args.ca_cert {
        let pem = std::fs::read(path)
            .with_context(|| format!("cannot read the CA certificate {}", path.display()))?;
        config.extra_roots = certificates_from_pem(&pem)
            .with_context(|| format!("cannot use the CA certificate {}", path.display()))?;
    }
    if args.watch {
        // A watching client may be idle for hours: find out when the server is gone.
        config.heartbeat = Some(Duration::from_secs(30));
    }
    Ok(config)
}

async fn connect(server: &str, config: &ClientConfig) -> anyhow::Result<Client> {
    Client::connect(server, config.clone())
        .await
        .with_context(|| format!("cannot sync from {server}"))
}

/// One pass with a progress bar on standard error (drawn only on a terminal). The estimate
/// of what is left comes from the `changes` counters when given.
async fn pass_with_progress(
    client: &Client,
    index: &mut Index,
    settings: PassOptions,
    changes: Option<u64>,
) -> anyhow::Result<Summary> {
    let bar = if std::io::stderr().is_terminal() {
        let estimate = match changes {
            Some(total) => Some(total),
            None => change_counters(client, true)
                .await
                .map(|c| c.values().sum()),
        };
        let held: u64 = index.counts()?.iter().map(|(_, n)| n).sum();
        progress_bar(estimate, held)
    } else {
        ProgressBar::hidden()
    };
    let mut raw_only = 0;
    let pass = sync_pass(client, &mut IndexSink(index), settings, |_, applied| {
        bar.inc(applied.records);
        raw_only += applied.raw_only;
    })
    .await;
    bar.finish_and_clear();
    Ok(Summary {
        pass: pass?,
        raw_only,
    })
}

/// A bar counting records; with an estimate of the total (the server's change counters,
/// which count every write, so it errs high), a bar with the time left.
fn progress_bar(estimate: Option<u64>, held: u64) -> ProgressBar {
    let (bar, template) = match estimate {
        Some(total) if total > held => (
            ProgressBar::new(total),
            "{spinner} syncing [{bar:30}] {human_pos}/~{human_len} records, {per_sec}, ~{eta} left",
        ),
        _ => (
            ProgressBar::new_spinner(),
            "{spinner} syncing {human_pos} records, {per_sec}",
        ),
    };
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("static progress template is valid")
            .progress_chars("=> "),
    );
    bar.set_position(held);
    bar.reset_eta();
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Prints how many records of each collection the index holds.
fn print_counts(index: &Index) -> anyhow::Result<()> {
    let counts = index
        .counts()?
        .into_iter()
        .map(|(collection, n)| format!("{n} {collection}"))
        .collect::<Vec<_>>()
        .join(", ");
    println!("Index {}: {counts}.", index.path().display());
    Ok(())
}

/// `--watch`: sync, then sync again whenever the `changes` counters move; reconnect with
/// backoff when the connection is lost, until Ctrl-C.
async fn watch(
    server: &str,
    config: &ClientConfig,
    index: &mut Index,
    settings: PassOptions,
) -> anyhow::Result<()> {
    let mut backoff = FIRST_BACKOFF;
    // The first connection must work: a wrong URL should not retry forever.
    let mut client = Some(connect(server, config).await?);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let session = async {
            let client = match client.take() {
                Some(client) => client,
                None => connect(server, config).await?,
            };
            backoff = FIRST_BACKOFF;
            follow(server, &client, index, settings).await
        };
        let error = tokio::select! {
            _ = &mut ctrl_c => {
                println!("Stopped watching {server}.");
                return Ok(());
            }
            outcome = session => outcome.err(),
        };
        let Some(error) = error else { continue };
        if !is_transient(&error) {
            return Err(error);
        }
        eprintln!("{error:#}; reconnecting in {backoff:?}");
        tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One watch session: subscribe to `changes`, sync, and sync again on every move, until
/// the connection ends (an error, so the caller reconnects).
async fn follow(
    server: &str,
    client: &Client,
    index: &mut Index,
    settings: PassOptions,
) -> anyhow::Result<()> {
    let Some(mut changes) = Changes::subscribe(client).await else {
        anyhow::bail!(
            "{server} does not offer the `changes` publication (spec §4.3), which --watch needs"
        );
    };
    loop {
        let pass = pass_with_progress(client, index, settings, Some(changes.total())).await?;
        println!("Synced {pass} from {server}; watching for changes (Ctrl-C stops).");
        changes
            .moved()
            .await
            .map_err(SyncError::from)
            .context("the connection to the server ended")?;
    }
}

/// Whether watch mode should reconnect after `error` (the server went away or is
/// unreachable for now), rather than stop (a broken protocol, the index, TLS).
fn is_transient(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<SyncError>()
            .is_some_and(SyncError::is_transient)
            || cause
                .downcast_ref::<ClientError>()
                .is_some_and(ClientError::is_transient)
    })
}
