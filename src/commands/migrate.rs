//! `exosphere migrate`: copies a whole catalog from one store into another, empty one
//! (SQLite in a data directory, or PostgreSQL), through `exosphere_catalog::bulk`, then
//! verifies the copy by row counts, row by row and by a full sync read, and prints what
//! moved. It refuses while servers run on either side.

use std::time::Instant;

use anyhow::Context as _;
use exosphere_catalog::bulk::{self, BulkStore, RowCounts, check_empty};
use exosphere_catalog_sqlite::DATABASE_FILE;

use super::{catalog_location, open_bulk, open_bulk_source, total_progress};
use crate::cli::{DataDirArg, MigrateArgs};
use crate::serve_lock::{self, ServeLock};

/// Copies `--from` into `--to`, verifies the copy and prints a summary.
pub fn run(args: MigrateArgs) -> anyhow::Result<()> {
    let (from_name, to_name) = (catalog_location(&args.from), catalog_location(&args.to));
    if from_name == to_name {
        anyhow::bail!("--from and --to both name {from_name}: give the target another place");
    }
    if args.from.database_url.is_none() && !args.from.data_dir.join(DATABASE_FILE).is_file() {
        anyhow::bail!(
            "there is no catalog in {}: check --from (a data directory holding {DATABASE_FILE}, \
             or a postgres:// URL)",
            args.from.data_dir.display()
        );
    }
    let _locks = (lock(&args.from)?, lock(&args.to)?);
    let from = open_bulk_source(&args.from)?;
    let to = open_bulk(&args.to)?;
    for (store, name) in [(&from, &from_name), (&to, &to_name)] {
        refuse_running_servers(&**store, name)?;
    }
    let source = from
        .row_counts()
        .with_context(|| format!("cannot read {from_name}"))?;
    let source_head = from
        .state()
        .with_context(|| format!("cannot read {from_name}"))?
        .head_seq;
    if check_empty(&source, source_head).is_ok() {
        anyhow::bail!(
            "{from_name} holds an empty catalog (no records, accounts or anything else), so \
             there is nothing to migrate and nothing was copied; check --from: it names the \
             data directory or database the servers serve from"
        );
    }
    let target = to
        .row_counts()
        .with_context(|| format!("cannot read {to_name}"))?;
    let contents = target.describe_contents();
    if !contents.is_empty() {
        let instead = match &args.to.database_url {
            Some(_) => "create a new database (createdb NAME) and give its URL as --to, or \
                        empty this one (dropdb NAME, then createdb NAME)"
                .to_owned(),
            None => format!(
                "give a new data directory as --to, or move {} away",
                args.to.data_dir.join(DATABASE_FILE).display()
            ),
        };
        anyhow::bail!(
            "{to_name} is not empty (it holds {contents}); nothing was copied. exosphere \
             migrate only copies into an empty catalog: {instead}"
        );
    }
    tracing::info!(from = %from_name, to = %to_name, rows = source.total(), "migrating the catalog");
    let started = Instant::now();
    copy(&*from, &*to, &source).with_context(|| format!("nothing was copied into {to_name}"))?;
    let copied = started.elapsed();
    let verified = bulk::verify(&*from, &*to)
        .with_context(|| format!("cannot verify the copy in {to_name}"))?
        .map_err(|mismatch| {
            anyhow::anyhow!(
                "the copy in {to_name} differs from {from_name}: {mismatch}. Was a server \
                 writing to the source? Stop it, empty the target (dropdb and createdb, or \
                 delete the new data directory) and run exosphere migrate again"
            )
        })?;
    tracing::info!(
        rows = verified.counts.total(),
        records = verified.synced_records,
        seconds = copied.as_secs_f64(),
        "migrated and verified the catalog"
    );
    print_summary(&from_name, &to_name, &verified, copied.as_secs_f64());
    Ok(())
}

/// Refuses a store that servers run on (PostgreSQL's seats; a data directory's server is
/// refused by its serve lock): the copy keeps the source's epoch and head sequence number,
/// which is only right when nothing writes to either side meanwhile.
fn refuse_running_servers(store: &dyn BulkStore, name: &str) -> anyhow::Result<()> {
    let running = store
        .servers_running()
        .with_context(|| format!("cannot tell whether servers run on {name}"))?;
    if running > 0 {
        anyhow::bail!(
            "{running} exosphere server(s) run on {name}; nothing was copied. Stop every \
             server on the catalog (\"Who is running\" in docs/OPERATIONS.md lists them), \
             then run exosphere migrate again: a write during the copy would be missing from \
             it, while the copy keeps the source's data epoch"
        );
    }
    Ok(())
}

/// The serve lock of a data directory taking part in the copy (SQLite's catalog, or a
/// target directory): no server starts on it meanwhile, and a running one makes this fail.
fn lock(location: &DataDirArg) -> anyhow::Result<Option<ServeLock>> {
    if location.database_url.is_some() {
        return Ok(None);
    }
    serve_lock::acquire(&location.data_dir)
        .map(Some)
        .context("stop that server before migrating its catalog, then run exosphere migrate again")
}

/// [`bulk::copy`] with a progress bar of rows on a terminal.
fn copy(
    from: &dyn BulkStore,
    to: &dyn BulkStore,
    source: &RowCounts,
) -> Result<(), exosphere_catalog::StoreError> {
    let bar = total_progress(
        source.total(),
        "copying [{bar:40}] {human_pos}/{human_len} rows {per_sec} eta {eta}",
    );
    let result = bulk::copy(from, to, &mut |_| bar.inc(1));
    bar.finish_and_clear();
    result
}

/// Prints what moved: the rows per table and what the verification compared.
fn print_summary(from: &str, to: &str, verified: &bulk::Verified, seconds: f64) {
    let total = verified.counts.total();
    eprintln!("migrated {from} to {to}: {total} rows in {seconds:.1} s");
    for (table, count) in verified.counts.by_table().filter(|(_, n)| *n > 0) {
        eprintln!("  {:<22} {count}", table.name);
    }
    eprintln!(
        "verified: the row counts of every table, all {} rows value for value, and a full \
         sync read of {} records, identical in both",
        verified.rows, verified.synced_records
    );
}
