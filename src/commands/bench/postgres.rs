//! `exosphere bench postgres`: the PostgreSQL backend against the physical limits measured in
//! the same run, with SQLite's figures beside them.
//!
//! Import: the synthetic catalog's dump is bulk loaded (`COPY`) into a fresh database of the
//! benchmark's own, against a raw `COPY` of the same bytes into a table of one text column
//! without an index (what moving those bytes into PostgreSQL durably costs at least). Sync:
//! the `meteor` tool's full sync served by `exosphere serve --database-url` against the same
//! sync served from SQLite and against the bare WebSocket transfer of the same frames. The
//! server caches pages once computed, so the first sync of each server (pages read from its
//! store) is reported apart from the best.

use std::fs::File;
use std::io::BufReader;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use exosphere_catalog::bulk;
use exosphere_catalog::dump::ImportOptions;
use exosphere_catalog_postgres::bench::{ScratchDatabase, raw_copy};
use exosphere_catalog_postgres::{describe_url, open_postgres};

use super::sync::{SyncRun, bare_push, full_sync};
use super::{PreparedCatalog, ServerProcess, WorkDir, mb, prepare_catalog};
use crate::cli::BenchPostgresArgs;

/// Runs the whole benchmark and prints a Markdown report to standard output.
pub fn run(args: BenchPostgresArgs) -> anyhow::Result<()> {
    let server_name =
        describe_url(&args.database_url).context("--database-url is not a PostgreSQL URL")?;
    let work_dir = WorkDir::new(args.catalog.work_dir.as_deref())?;
    let catalog = prepare_catalog(work_dir.path(), args.catalog.scale, args.catalog.seed)?;

    let mut raw = Vec::new();
    let mut imports = Vec::new();
    let mut served = None;
    for run in 1..=args.catalog.runs {
        let database = ScratchDatabase::create(&args.database_url)
            .context("the benchmark creates databases of its own: its user needs CREATEDB")?;
        raw.push(raw_copy(database.url(), File::open(&catalog.dump_path)?)?);
        imports.push(import(&catalog, &database)?);
        eprintln!(
            "import run {run}: raw COPY {:.3?}, import {:.3?}",
            raw[raw.len() - 1],
            imports[imports.len() - 1]
        );
        served = Some(database);
    }
    let served = served.context("no import ran")?;
    let mut copies = Vec::new();
    for run in 1..=args.catalog.runs {
        copies.push(copy(&args.database_url, &served)?);
        eprintln!("copy run {run}: {:.3?}", copies[copies.len() - 1]);
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let sqlite = {
        let server = ServerProcess::start(&catalog.data_dir, &[])?;
        syncs(&runtime, &server, args.catalog.runs, "SQLite")?
    };
    let postgres = {
        let data_dir = work_dir.path().join("postgres-data");
        let server = ServerProcess::start(&data_dir, &["--database-url", served.url()])?;
        syncs(&runtime, &server, args.catalog.runs, "PostgreSQL")?
    };
    if postgres[0].records != sqlite[0].records {
        anyhow::bail!(
            "the PostgreSQL server synced {} records and the SQLite one {}",
            postgres[0].records,
            sqlite[0].records
        );
    }
    let mut bare = Vec::new();
    for _ in 0..args.catalog.runs {
        bare.push(bare_push(&sqlite[0].frames)?.0);
    }

    let loads = Loads {
        raw,
        imports,
        copies,
    };
    print_report(
        &args,
        &server_name,
        &catalog,
        &loads,
        &sqlite,
        &postgres,
        &bare,
    );
    Ok(())
}

/// The load figures of each run: the raw `COPY`, the import and the copy of the imported
/// catalog.
struct Loads {
    raw: Vec<Duration>,
    imports: Vec<Duration>,
    copies: Vec<Duration>,
}

/// Copies the catalog of `from` into a fresh database on the server of `url` through
/// `BulkStore` (what `exosphere migrate` does between two PostgreSQL databases): the rows'
/// `COPY` with the catalog's keys and indexes, without parsing any record, which tells how
/// much of an import is PostgreSQL storing and indexing the rows.
fn copy(url: &str, from: &ScratchDatabase) -> anyhow::Result<Duration> {
    let target = ScratchDatabase::create(url)?;
    let (from, to) = (open_postgres(from.url())?, open_postgres(target.url())?);
    let started = Instant::now();
    bulk::copy(&from, &to, &mut |_| {})?;
    Ok(started.elapsed())
}

/// Bulk loads the dump into `database`'s fresh catalog; the time of the load alone (the
/// schema is created before).
fn import(catalog: &PreparedCatalog, database: &ScratchDatabase) -> anyhow::Result<Duration> {
    let store = open_postgres(database.url())?;
    let input = BufReader::with_capacity(1 << 20, File::open(&catalog.dump_path)?);
    let started = Instant::now();
    let summary = bulk::import_dump(&store, input, &ImportOptions::default())
        .context("the dump did not bulk load into PostgreSQL")?;
    let elapsed = started.elapsed();
    tracing::debug!(%summary, "imported into PostgreSQL");
    Ok(elapsed)
}

/// `runs` full syncs from scratch against `server`; the first keeps its frames.
fn syncs(
    runtime: &tokio::runtime::Runtime,
    server: &ServerProcess,
    runs: u32,
    backend: &str,
) -> anyhow::Result<Vec<SyncRun>> {
    let mut out = Vec::new();
    for run in 1..=runs {
        let sync = runtime.block_on(full_sync(&server.ws_url(), false, false, run == 1, None))?;
        eprintln!(
            "{backend} sync run {run}: {} records in {:.3?}",
            sync.records, sync.elapsed
        );
        out.push(sync);
    }
    Ok(out)
}

/// Seconds, each run, as the report lists them.
fn each(times: impl Iterator<Item = Duration>) -> String {
    times
        .map(|time| format!("{:.3} s", time.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The shortest of `times`, in seconds.
fn best(times: impl Iterator<Item = Duration>) -> f64 {
    times.min().unwrap_or_default().as_secs_f64()
}

/// Prints the Markdown report.
fn print_report(
    args: &BenchPostgresArgs,
    server: &str,
    catalog: &PreparedCatalog,
    loads: &Loads,
    sqlite: &[SyncRun],
    postgres: &[SyncRun],
    bare: &[Duration],
) {
    let (raw, imports, copies) = (&loads.raw, &loads.imports, &loads.copies);
    let (raw_best, import_best) = (best(raw.iter().copied()), best(imports.iter().copied()));
    let copy_best = best(copies.iter().copied());
    let sqlite_best = best(sqlite.iter().map(|sync| sync.elapsed));
    let postgres_best = best(postgres.iter().map(|sync| sync.elapsed));
    let (sqlite_first, postgres_first) = (
        sqlite[0].elapsed.as_secs_f64(),
        postgres[0].elapsed.as_secs_f64(),
    );
    let bare_best = best(bare.iter().copied());
    let ratio = |a: f64, b: f64| a / b.max(f64::EPSILON);
    println!(
        "## exosphere bench postgres ({} scale, seed {})",
        args.catalog.scale, args.catalog.seed
    );
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!("| database server | {server} |");
    println!(
        "| catalog | {} records, {:.1} MB dump |",
        catalog.records(),
        mb(catalog.generated.bytes)
    );
    println!(
        "| import into SQLite (upserts, one transaction) | {:.2} s |",
        catalog.import_time.as_secs_f64()
    );
    println!(
        "| raw COPY of the dump's bytes (one text column, no index), each run | {} |",
        each(raw.iter().copied())
    );
    println!(
        "| import into PostgreSQL (bulk COPY path), each run | {} |",
        each(imports.iter().copied())
    );
    println!(
        "| ratio import / raw COPY, best | {:.2} (target ≤ 2) |",
        ratio(import_best, raw_best)
    );
    println!(
        "| copy of the imported catalog into a fresh database (migrate: COPY, no record parsed), each run | {} |",
        each(copies.iter().copied())
    );
    println!(
        "| ratio copy / raw COPY, best | {:.2} |",
        ratio(copy_best, raw_best)
    );
    println!(
        "| full sync from SQLite, each run | {} |",
        each(sqlite.iter().map(|sync| sync.elapsed))
    );
    println!(
        "| full sync from PostgreSQL, each run | {} |",
        each(postgres.iter().map(|sync| sync.elapsed))
    );
    println!(
        "| ratio PostgreSQL / SQLite, first sync (pages read from the store) | {:.2} (target ≤ 1.5) |",
        ratio(postgres_first, sqlite_first)
    );
    println!(
        "| ratio PostgreSQL / SQLite, best | {:.2} (target ≤ 1.5) |",
        ratio(postgres_best, sqlite_best)
    );
    println!(
        "| bare WebSocket, same frames, each run | {} |",
        each(bare.iter().copied())
    );
    println!(
        "| ratio PostgreSQL sync / bare WebSocket, best | {:.2} |",
        ratio(postgres_best, bare_best)
    );
    println!(
        "| ratio SQLite sync / bare WebSocket, best | {:.2} |",
        ratio(sqlite_best, bare_best)
    );
}
