//! The `exosphere` binary's library: wires the DDP protocol crate and the catalog crate
//! together behind HTTP routes and a command line.
//!
//! - `cli` describes the command line;
//! - `commands` holds one module per subcommand;
//! - [`server`] is a running package server as pieces: its configuration, [`server::start`]
//!   (the DDP service and the background jobs) and [`server::run`] (HTTP on a listener until
//!   shutdown), which `serve` and in-process tests share;
//! - `jobs` holds the background jobs a server runs (stats rollups, the upload sweep);
//! - [`service`] is the package server as a DDP service (methods and publications);
//! - [`accept`] is the HTTP accept loop (connection caps, the header-read timeout, graceful
//!   shutdown) that [`server::run`] serves the router with;
//! - [`http`] is the axum router (WebSocket upgrade, `/healthz`, `/stats/v1`, the home page);
//! - [`stats_files`] renders the `/stats/v1` files into temporary files and keeps them;
//! - [`readme_files`] reads versions' README files from the file store, checked against
//!   their hashes, for the web catalog and the read model's full-text search;
//! - `fd_limit` raises the open-file limit for servers and load generators with many sockets;
//! - `serve_lock` keeps a data directory to one `serve` process;
//! - [`seen_head`] keeps, in a data directory, the newest catalog head a server has seen, and
//!   starts a new data epoch at startup when the catalog went back below it (a restore).

pub mod accept;
mod cli;
mod commands;
mod fd_limit;
pub mod http;
mod jobs;
mod read_model;
pub mod readme_files;
pub mod seen_head;
mod serve_lock;
pub mod server;
pub mod service;
pub mod stats_files;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command, LogFormat};

/// Runs the command line: parses the arguments, sets up logging, runs one subcommand and
/// reports its error on standard error.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let outcome = match cli.command {
        Command::Serve(args) => commands::serve::run(args),
        Command::Import(args) => commands::import::run(args),
        Command::Export(args) => commands::export::run(args),
        Command::Backup(args) => commands::backup::run(args),
        Command::Restore(args) => commands::restore::run(args),
        Command::Verify(args) => commands::verify::run(args),
        Command::GenCatalog(args) => commands::gen_catalog::run(args),
        Command::Bench(command) => commands::bench::run(command),
        Command::Stats(command) => commands::stats::run(command),
        Command::Sync(args) => commands::sync::run(args),
        Command::Search(args) => commands::search::run(args),
        Command::Show(args) => commands::show::run(args),
        Command::Deps(args) => commands::deps::run(args),
        Command::Releases(args) => commands::releases::run(args),
        Command::User(command) => commands::accounts::run_user(command),
        Command::Org(command) => commands::accounts::run_org(command),
        Command::Token(command) => commands::accounts::run_token(command),
        Command::Mirror(command) => commands::mirror::run(command),
        Command::Audit(args) => commands::audit::run(args),
        Command::Migrate(args) => commands::migrate::run(args),
        Command::Epoch(command) => commands::epoch::run(command),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to standard error so that `export` and `gen-catalog` can write data to standard
/// output; `RUST_LOG` refines the default `info` level.
fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
