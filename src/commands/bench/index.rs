//! `exosphere bench index`: how fast the local index applies sync pages, measured against a
//! bulk load of the same records with the `sqlite3` shell, and how fast it answers queries.
//!
//! The synthetic catalog's records go through [`Index::load_dump`], which groups them into
//! pages of `--page-size` records per collection, as the server pages them, and applies each
//! with [`Index::apply_page`], the code `exosphere sync` runs. No network is involved: this is
//! the index's share of a sync. The limit is the `sqlite3` command-line shell importing the
//! same record lines into one table with the same journal settings, in the same run.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use exosphere_index::Index;

use super::{WorkDir, generate_dump, mb};
use crate::cli::BenchIndexArgs;

/// Times each query is run; the report gives the slowest and the fastest.
const QUERY_RUNS: usize = 5;

/// Runs the whole benchmark and prints a Markdown report to standard output.
pub fn run(args: BenchIndexArgs) -> anyhow::Result<()> {
    let work_dir = WorkDir::new(args.work_dir.as_deref())?;
    let (dump_path, generated, _) = generate_dump(work_dir.path(), args.scale, args.seed)?;
    let dump = std::fs::read_to_string(&dump_path)
        .with_context(|| format!("cannot read {}", dump_path.display()))?;
    // The limit loads catalog records only, as the index does (stats rows are not synced).
    let records_path = work_dir.path().join("records.ndjson");
    let records: String = dump
        .lines()
        .filter(|line| !line.starts_with(r#"{"collection":"stats""#))
        .flat_map(|line| [line, "\n"])
        .collect();
    std::fs::write(&records_path, &records)?;
    let record_count = records.lines().count() as u64;
    drop(records);

    let index_path = work_dir.path().join("index.sqlite3");
    let mut loads = Vec::new();
    let mut limits = Vec::new();
    for run in 1..=args.runs {
        let limit = sqlite3_bulk_load(work_dir.path(), &records_path)?;
        let started = Instant::now();
        let mut index = Index::rebuild(&index_path)?;
        let applied = index.load_dump(&dump, args.page_size as usize)?;
        let elapsed = started.elapsed();
        drop(index);
        if applied.records != record_count {
            bail!(
                "the index applied {} records, the dump has {record_count}",
                applied.records
            );
        }
        eprintln!(
            "run {run}: index {:.3?} ({:.0} records/s), sqlite3 shell {:.3?}",
            elapsed,
            record_count as f64 / elapsed.as_secs_f64(),
            limit
        );
        loads.push(elapsed);
        limits.push(limit);
    }
    let best = loads.iter().min().copied().unwrap_or_default();
    let best_limit = limits.iter().min().copied().unwrap_or_default();
    let index_bytes = file_size(&index_path);
    let index = Index::open_existing(&index_path)?;
    let queries = time_queries(&index)?;

    let pages = generated
        .versions
        .max(generated.builds)
        .div_ceil(u64::from(args.page_size));
    println!(
        "## exosphere bench index ({} scale, seed {})",
        args.scale, args.seed
    );
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| catalog | {record_count} records, {:.1} MB of record lines |",
        mb(file_size(&records_path))
    );
    println!(
        "| pages | {pages} of up to {} records per collection |",
        args.page_size
    );
    println!("| index load, each run | {} |", seconds_list(&loads));
    println!("| **index load, best** | **{:.3} s** |", best.as_secs_f64());
    println!(
        "| records/s | {:.0} |",
        record_count as f64 / best.as_secs_f64()
    );
    println!(
        "| sqlite3 shell bulk load, each run | {} |",
        seconds_list(&limits)
    );
    println!(
        "| sqlite3 shell bulk load, best | {:.3} s |",
        best_limit.as_secs_f64()
    );
    println!(
        "| **ratio index / sqlite3 shell** | **{:.2}** |",
        best.as_secs_f64() / best_limit.as_secs_f64().max(f64::EPSILON)
    );
    println!("| index file | {:.1} MB |", mb(index_bytes));
    println!();
    println!("| query | fastest | slowest | results |");
    println!("|---|---|---|---|");
    for query in queries {
        println!(
            "| `{}` | {:.2} ms | {:.2} ms | {} |",
            query.command,
            query.fastest.as_secs_f64() * 1000.0,
            query.slowest.as_secs_f64() * 1000.0,
            query.results
        );
    }
    Ok(())
}

/// The physical limit: the `sqlite3` shell imports every record line into a one-column
/// table of a fresh database, WAL with `synchronous=NORMAL` as the index uses.
fn sqlite3_bulk_load(work_dir: &Path, records: &Path) -> anyhow::Result<Duration> {
    let database = work_dir.join("limit.sqlite3");
    for suffix in ["", "-wal", "-shm"] {
        let mut file = database.as_os_str().to_owned();
        file.push(suffix);
        match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    }
    // The column separator (0x1F) never occurs in JSON text, so each line is one value.
    let script = format!(
        "PRAGMA journal_mode = WAL;\nPRAGMA synchronous = NORMAL;\n\
         CREATE TABLE records (line TEXT NOT NULL);\n\
         .mode ascii\n.separator \"\\037\" \"\\n\"\n.import '{}' records\n",
        records.display().to_string().replace('\'', "''")
    );
    let started = Instant::now();
    let mut child = Command::new("sqlite3")
        .arg(&database)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run the sqlite3 shell (install it, e.g. `apt-get install sqlite3`)")?;
    child
        .stdin
        .take()
        .context("no stdin for sqlite3")?
        .write_all(script.as_bytes())?;
    let output = child.wait_with_output()?;
    let elapsed = started.elapsed();
    if !output.status.success() || !output.stderr.is_empty() {
        bail!(
            "the sqlite3 shell failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(elapsed)
}

/// One query's timings.
struct QueryTiming {
    command: &'static str,
    fastest: Duration,
    slowest: Duration,
    results: usize,
}

/// Runs each query command's library call [`QUERY_RUNS`] times on the loaded index.
fn time_queries(index: &Index) -> anyhow::Result<Vec<QueryTiming>> {
    type Query = Box<dyn Fn(&Index) -> anyhow::Result<usize>>;
    let queries: Vec<(&'static str, Query)> = vec![
        (
            "search router",
            Box::new(|i| Ok(i.search("router", None, 20)?.len())),
        ),
        (
            "search e --limit 1000",
            Box::new(|i| Ok(i.search("e", None, 1000)?.len())),
        ),
        (
            "search '' --maintainer mdg",
            Box::new(|i| Ok(i.search("", Some("mdg"), 20)?.len())),
        ),
        (
            "show meteor",
            Box::new(|i| Ok(i.show("meteor", None)?.versions.len())),
        ),
        (
            "show ecmascript",
            Box::new(|i| Ok(i.show("ecmascript", None)?.versions.len())),
        ),
        (
            "deps ecmascript",
            Box::new(|i| Ok(i.deps("ecmascript", None, false, 1)?.nodes.len())),
        ),
        (
            "deps ecmascript --tree",
            Box::new(|i| {
                Ok(count_nodes(
                    &i.deps("ecmascript", None, false, u32::MAX)?.nodes,
                ))
            }),
        ),
        (
            "deps meteor --reverse",
            Box::new(|i| Ok(i.deps("meteor", None, true, 1)?.nodes.len())),
        ),
        (
            "deps ecmascript --reverse --tree --depth 2",
            Box::new(|i| Ok(count_nodes(&i.deps("ecmascript", None, true, 2)?.nodes))),
        ),
        (
            "releases",
            Box::new(|i| {
                Ok(match i.releases(None)? {
                    exosphere_index::Releases::Tracks(tracks) => tracks.len(),
                    exosphere_index::Releases::Track { versions, .. } => versions.len(),
                })
            }),
        ),
        (
            "releases METEOR",
            Box::new(|i| {
                Ok(match i.releases(Some("METEOR"))? {
                    exosphere_index::Releases::Tracks(tracks) => tracks.len(),
                    exosphere_index::Releases::Track { versions, .. } => versions.len(),
                })
            }),
        ),
    ];
    queries
        .into_iter()
        .map(|(command, query)| {
            let mut times = Vec::with_capacity(QUERY_RUNS);
            let mut results = 0;
            for _ in 0..QUERY_RUNS {
                let started = Instant::now();
                results = query(index).with_context(|| format!("`{command}` failed"))?;
                times.push(started.elapsed());
            }
            Ok(QueryTiming {
                command,
                fastest: times.iter().min().copied().unwrap_or_default(),
                slowest: times.iter().max().copied().unwrap_or_default(),
                results,
            })
        })
        .collect()
}

/// Edges in a dependency tree.
fn count_nodes(nodes: &[exosphere_index::DepNode]) -> usize {
    nodes.iter().map(|n| 1 + count_nodes(&n.children)).sum()
}

fn seconds_list(times: &[Duration]) -> String {
    times
        .iter()
        .map(|t| format!("{:.3} s", t.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |meta| meta.len())
}
