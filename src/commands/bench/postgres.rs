//! `exosphere bench postgres`: the PostgreSQL backend against the physical limits measured in
//! the same run, with SQLite's figures beside them.
//!
//! Import: the synthetic catalog's dump is bulk loaded (`COPY`) into a fresh database of the
//! benchmark's own, against a raw `COPY` of the same bytes into a table of one text column
//! without an index (what moving those bytes into PostgreSQL durably costs at least). Sync:
//! the `meteor` tool's full sync served by `exosphere serve --database-url` against the same
//! sync served from SQLite and against the bare WebSocket transfer of the same frames. The
//! server caches pages once computed, so only a server's first sync reads its store: every run
//! starts one server of each kind, one after the other, and syncs twice (the first sync, then
//! one from the cache). The PostgreSQL server reads pages from its sync replica (the default);
//! its start, which brings the replica up to date (the first run's copies every record), is
//! reported, and a server with `--sync-replica false` gives the figures of pages read from
//! PostgreSQL itself. The target compares first syncs, as the median of the runs' ratios,
//! since a single sync of a second or two on a shared machine varies by a third from run to
//! run.

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
    let replica_dir = work_dir.path().join("postgres-data");
    let direct_dir = work_dir.path().join("postgres-direct-data");
    let url = served.url();
    let mut measured = Served::default();
    for run in 1..=args.catalog.runs {
        let run = Run {
            number: run,
            keep_frames: run == 1,
        };
        let sqlite = syncs(&runtime, &catalog.data_dir, &[], &run, "SQLite")?;
        let run = Run {
            keep_frames: false,
            ..run
        };
        let replica = ["--database-url", url];
        let replica = syncs(&runtime, &replica_dir, &replica, &run, "PostgreSQL")?;
        let direct = ["--database-url", url, "--sync-replica", "false"];
        let direct = syncs(
            &runtime,
            &direct_dir,
            &direct,
            &run,
            "PostgreSQL, no replica",
        )?;
        for (backend, syncs) in [
            ("PostgreSQL", &replica),
            ("PostgreSQL, no replica", &direct),
        ] {
            if syncs.first.records != sqlite.first.records {
                anyhow::bail!(
                    "the {backend} server synced {} records and the SQLite one {}",
                    syncs.first.records,
                    sqlite.first.records
                );
            }
        }
        measured.sqlite.push(sqlite);
        measured.replica.push(replica);
        measured.direct.push(direct);
    }
    let mut bare = Vec::new();
    for _ in 0..args.catalog.runs {
        bare.push(bare_push(&measured.sqlite[0].first.frames)?.0);
    }

    let loads = Loads {
        raw,
        imports,
        copies,
    };
    print_report(&args, &server_name, &catalog, &loads, &measured, &bare);
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

/// The syncs of every run, by server.
#[derive(Default)]
struct Served {
    /// `exosphere serve` on the SQLite catalog.
    sqlite: Vec<ServerSyncs>,
    /// `exosphere serve --database-url`, reading sync pages from its replica (the default).
    replica: Vec<ServerSyncs>,
    /// `exosphere serve --database-url --sync-replica false`, reading every page from
    /// PostgreSQL.
    direct: Vec<ServerSyncs>,
}

/// One server's start and its two full syncs, each from scratch: the first after the server
/// started (every page read from its store) and a second one (every page from its cache).
struct ServerSyncs {
    /// From the start of the process until it listens: with a sync replica, catching it up.
    start: Duration,
    first: SyncRun,
    cached: SyncRun,
}

/// Which run [`syncs`] is part of.
struct Run {
    /// The run's number, from 1.
    number: u32,
    /// Whether the first sync keeps its frames (the bare-WebSocket baseline replays the
    /// first run's SQLite frames).
    keep_frames: bool,
}

/// Starts a server on `data_dir` with `extra_args` and runs its two syncs ([`ServerSyncs`]),
/// the first keeping its frames if `run` says so. Every run
/// starts a server of its own, because only a server's first sync reads its store, and one
/// first sync alone is at the mercy of whatever else the machine did in those seconds.
fn syncs(
    runtime: &tokio::runtime::Runtime,
    data_dir: &std::path::Path,
    extra_args: &[&str],
    run: &Run,
    backend: &str,
) -> anyhow::Result<ServerSyncs> {
    let started = Instant::now();
    let server = ServerProcess::start(data_dir, extra_args)?;
    let start = started.elapsed();
    let url = server.ws_url();
    let first = runtime.block_on(full_sync(&url, false, false, run.keep_frames, None))?;
    let cached = runtime.block_on(full_sync(&url, false, false, false, None))?;
    eprintln!(
        "{backend} run {}: started in {start:.3?}, {} records, first sync {:.3?}, cached {:.3?}",
        run.number, first.records, first.elapsed, cached.elapsed
    );
    Ok(ServerSyncs {
        start,
        first,
        cached,
    })
}

/// The first syncs of `syncs`' runs.
fn firsts(syncs: &[ServerSyncs]) -> impl Iterator<Item = Duration> + '_ {
    syncs.iter().map(|run| run.first.elapsed)
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[middle],
        _ => (values[middle - 1] + values[middle]) / 2.0,
    }
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
    served: &Served,
    bare: &[Duration],
) {
    let (raw, imports, copies) = (&loads.raw, &loads.imports, &loads.copies);
    let (raw_best, import_best) = (best(raw.iter().copied()), best(imports.iter().copied()));
    let copy_best = best(copies.iter().copied());
    let (sqlite, replica, direct) = (&served.sqlite, &served.replica, &served.direct);
    let sqlite_best = best(sqlite.iter().map(|syncs| syncs.cached.elapsed));
    let postgres_best = best(replica.iter().map(|syncs| syncs.cached.elapsed));
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
    let ratios = |syncs: &[ServerSyncs]| -> Vec<f64> {
        firsts(sqlite)
            .zip(firsts(syncs))
            .map(|(sqlite, postgres)| ratio(postgres.as_secs_f64(), sqlite.as_secs_f64()))
            .collect()
    };
    let listed = |ratios: &[f64]| {
        ratios
            .iter()
            .map(|ratio| format!("{ratio:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (replica_ratios, direct_ratios) = (ratios(replica), ratios(direct));
    println!(
        "| PostgreSQL server start until it listens, each run (the first copies every record into its empty sync replica) | {} |",
        each(replica.iter().map(|syncs| syncs.start))
    );
    println!(
        "| full sync from SQLite, first after the server started (pages read from the store), each run | {} |",
        each(firsts(sqlite))
    );
    println!(
        "| full sync from PostgreSQL (pages from the sync replica), first, each run | {} |",
        each(firsts(replica))
    );
    println!(
        "| ratio PostgreSQL / SQLite, first sync, each run | {} |",
        listed(&replica_ratios)
    );
    println!(
        "| **ratio PostgreSQL / SQLite, first sync, median of the runs** | **{:.2}** (target ≤ 1.5) |",
        median(replica_ratios)
    );
    println!(
        "| full sync from PostgreSQL with `--sync-replica false` (pages read from PostgreSQL), first, each run | {} |",
        each(firsts(direct))
    );
    println!(
        "| ratio PostgreSQL without replica / SQLite, first sync, each run (median) | {} ({:.2}) |",
        listed(&direct_ratios),
        median(direct_ratios.clone())
    );
    println!(
        "| full sync from SQLite, second (pages from the cache), each run | {} |",
        each(sqlite.iter().map(|syncs| syncs.cached.elapsed))
    );
    println!(
        "| full sync from PostgreSQL, second, each run | {} |",
        each(replica.iter().map(|syncs| syncs.cached.elapsed))
    );
    println!(
        "| ratio PostgreSQL / SQLite, second sync, best | {:.2} (target ≤ 1.5) |",
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
