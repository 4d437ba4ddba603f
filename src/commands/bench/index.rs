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
use exosphere_index::{DepNode, Index, Releases, Search, SearchSort};

use super::{WorkDir, generate_dump, mb};
use crate::cli::BenchIndexArgs;

/// Times each query is run; the report gives the slowest and the fastest.
const QUERY_RUNS: usize = 5;

/// Runs the whole benchmark and prints a Markdown report to standard output.
pub fn run(args: BenchIndexArgs) -> anyhow::Result<()> {
    let work_dir = WorkDir::new(args.catalog.work_dir.as_deref())?;
    let (dump_path, generated, _) =
        generate_dump(work_dir.path(), args.catalog.scale, args.catalog.seed)?;
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
    for run in 1..=args.catalog.runs {
        let children_before = cpu_time()?.children;
        let limit = sqlite3_bulk_load(work_dir.path(), &records_path)?;
        let limit_cpu = cpu_time()?.children.saturating_sub(children_before);
        let own_before = cpu_time()?.own;
        let started = Instant::now();
        let mut index = Index::rebuild(&index_path)?;
        let applied = index.load_dump(&dump, args.page_size as usize)?;
        drop(index);
        let elapsed = started.elapsed();
        let cpu = cpu_time()?.own.saturating_sub(own_before);
        if applied.records != record_count {
            bail!(
                "the index applied {} records, the dump has {record_count}",
                applied.records
            );
        }
        eprintln!(
            "run {run}: index {:.3?} ({:.0} records/s, {cpu:.2?} CPU), sqlite3 shell {:.3?} ({limit_cpu:.2?} CPU)",
            elapsed,
            record_count as f64 / elapsed.as_secs_f64(),
            limit
        );
        loads.push((elapsed, cpu));
        limits.push((limit, limit_cpu));
    }
    let best = loads.iter().map(|l| l.0).min().unwrap_or_default();
    let best_limit = limits.iter().map(|l| l.0).min().unwrap_or_default();
    let best_cpu = loads.iter().map(|l| l.1).min().unwrap_or_default();
    let best_limit_cpu = limits.iter().map(|l| l.1).min().unwrap_or_default();
    let index_bytes = file_size(&index_path);
    let index = Index::open_existing(&index_path)?;
    let queries = time_queries(&index)?;

    let pages = generated
        .versions
        .max(generated.builds)
        .div_ceil(u64::from(args.page_size));
    println!(
        "## exosphere bench index ({} scale, seed {})",
        args.catalog.scale, args.catalog.seed
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
    println!(
        "| index load CPU time (user + system), best | {:.3} s |",
        best_cpu.as_secs_f64()
    );
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
        "| sqlite3 shell CPU time (user + system), best | {:.3} s |",
        best_limit_cpu.as_secs_f64()
    );
    println!(
        "| **ratio index / sqlite3 shell** | **{:.2}** |",
        best.as_secs_f64() / best_limit.as_secs_f64().max(f64::EPSILON)
    );
    println!(
        "| ratio of CPU times (independent of other load on the machine) | {:.2} |",
        best_cpu.as_secs_f64() / best_limit_cpu.as_secs_f64().max(f64::EPSILON)
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
        ("search e", Box::new(|i| Ok(i.search("e", None, 20)?.len()))),
        (
            "search e --limit 1000",
            Box::new(|i| Ok(i.search("e", None, 1000)?.len())),
        ),
        (
            "search '' --maintainer mdg",
            Box::new(|i| Ok(i.search("", Some("mdg"), 20)?.len())),
        ),
        (
            "search '' --sort newest --hide-deprecated",
            Box::new(|i| {
                Ok(i.find(&Search {
                    sort: SearchSort::Newest,
                    limit: 20,
                    ..Search::default()
                })?
                .len())
            }),
        ),
        (
            "search 'reactive data' --hide-deprecated --exclude-core",
            Box::new(|i| {
                Ok(i.find(&Search {
                    text: "reactive data".into(),
                    exclude_core: true,
                    limit: 20,
                    ..Search::default()
                })?
                .len())
            }),
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
        ("releases", Box::new(|i| Ok(listed(&i.releases(None)?)))),
        (
            "releases METEOR",
            Box::new(|i| Ok(listed(&i.releases(Some("METEOR"))?))),
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

/// Tracks or release versions listed.
fn listed(releases: &Releases) -> usize {
    match releases {
        Releases::Tracks(tracks) => tracks.len(),
        Releases::Track { versions, .. } => versions.len(),
    }
}

/// Edges in a dependency tree.
fn count_nodes(nodes: &[DepNode]) -> usize {
    nodes.iter().map(|n| 1 + count_nodes(&n.children)).sum()
}

/// CPU time of this process and of its waited-for children (the `sqlite3` shell).
struct CpuTime {
    own: Duration,
    children: Duration,
}

/// Reads `utime`, `stime`, `cutime` and `cstime` from `/proc/self/stat`, in the kernel's
/// fixed user-visible tick of 1/100 s (Linux only). On a machine shared with other work,
/// CPU time compares the two loads more fairly than wall time.
fn cpu_time() -> anyhow::Result<CpuTime> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("CPU times need /proc")?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<u64> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or("")
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|field| field.parse().unwrap_or(0))
        .collect();
    let [utime, stime, cutime, cstime] = fields[..] else {
        bail!("unexpected /proc/self/stat: {stat}");
    };
    let ticks = |n: u64| Duration::from_millis(n * 10);
    Ok(CpuTime {
        own: ticks(utime + stime),
        children: ticks(cutime + cstime),
    })
}

fn seconds_list(times: &[(Duration, Duration)]) -> String {
    times
        .iter()
        .map(|(t, _)| format!("{:.3} s", t.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |meta| meta.len())
}
