//! `exosphere bench client-sync`: how fast `exosphere sync` fills a fresh index from a local
//! server, measured against the physical limit of loading the same records into SQLite.
//!
//! The client is the real `exosphere sync` in a child process (so its peak memory is its own),
//! syncing from an `exosphere serve` child process over loopback. The limit, taken in the same
//! run on the same machine, is the `sqlite3` command-line shell loading the records of the very
//! dump the server imported: every record as a raw JSON row plus the typed columns and lookup
//! indexes a query needs, in one transaction, from an SQL script of literal values prepared
//! before the clock starts. It parses no JSON and has no network, no DDP, no pages and no
//! derived tables (dependency edges, latest versions, full text), so the ratio says what all
//! of those cost together.

use std::io::Read as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use super::{ServerProcess, WorkDir, mb, prepare_catalog, process_memory_kib};
use crate::cli::BenchClientSyncArgs;

/// How often a child's peak memory is sampled while it runs.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);

/// Runs the whole benchmark and prints a Markdown report to standard output.
pub fn run(args: BenchClientSyncArgs) -> anyhow::Result<()> {
    check_sqlite3()?;
    let work_dir = WorkDir::new(args.catalog.work_dir.as_deref())?;
    let catalog = prepare_catalog(work_dir.path(), args.catalog.scale, args.catalog.seed)?;
    let records = catalog.records();
    let server = ServerProcess::start(&catalog.data_dir, &[])?;
    let server_url = format!("http://{}", server.address);

    let exe = std::env::current_exe().context("cannot find the exosphere binary")?;
    let mut syncs = Vec::new();
    for run in 1..=args.catalog.runs {
        let index = work_dir.path().join("index.sqlite3");
        remove_database(&index)?;
        let mut command = Command::new(&exe);
        command
            .args(["sync", "--server", &server_url, "--index"])
            .arg(&index)
            .env("RUST_LOG", "warn");
        if args.compress {
            command.arg("--compress");
        }
        let server_cpu = process_cpu(server.child.id())?;
        let measured = measure(command, None)?;
        let server_cpu = process_cpu(server.child.id())? - server_cpu;
        eprintln!(
            "client sync run {run}: {:.3?}, peak {:.1} MB, client CPU {:.2} s, server CPU {server_cpu:.2} s",
            measured.elapsed,
            measured.peak_kib as f64 / 1024.0,
            measured.cpu,
        );
        syncs.push((measured, server_cpu));
    }
    drop(server);

    let script = work_dir.path().join("baseline.sql");
    write_baseline_script(&catalog.dump_path, &script)?;
    let mut loads = Vec::new();
    for run in 1..=args.catalog.runs {
        let database = work_dir.path().join("baseline.sqlite3");
        remove_database(&database)?;
        let mut command = Command::new("sqlite3");
        command.arg(&database);
        let measured = measure(command, Some(&script))?;
        eprintln!("sqlite3 bulk load run {run}: {:.3?}", measured.elapsed);
        loads.push(measured);
    }

    let Some((sync, server_cpu)) = syncs.iter().min_by_key(|(m, _)| m.elapsed).cloned() else {
        bail!("no sync finished");
    };
    let syncs: Vec<Measured> = syncs.into_iter().map(|(m, _)| m).collect();
    let Some(load) = loads.iter().min_by_key(|m| m.elapsed).cloned() else {
        bail!("no bulk load finished");
    };
    let secs = |m: &Measured| m.elapsed.as_secs_f64();
    let each = |runs: &[Measured]| {
        runs.iter()
            .map(|m| format!("{:.3} s", secs(m)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let ratio = secs(&sync) / secs(&load).max(f64::EPSILON);
    println!(
        "## exosphere bench client-sync ({} scale, seed {})",
        args.catalog.scale, args.catalog.seed
    );
    println!();
    println!(
        "{records} records, {:.1} MB dump; compressed pages: {}.",
        mb(catalog.generated.bytes),
        args.compress
    );
    println!();
    println!("| measure | exosphere sync (serve → index) | sqlite3 bulk load (limit) |");
    println!("|---|---|---|");
    println!("| each run | {} | {} |", each(&syncs), each(&loads));
    println!("| best | {:.3} s | {:.3} s |", secs(&sync), secs(&load));
    println!(
        "| records/s | {:.0} | {:.0} |",
        records as f64 / secs(&sync),
        records as f64 / secs(&load)
    );
    println!(
        "| peak memory (VmHWM) | {:.1} MB | {:.1} MB |",
        sync.peak_kib as f64 / 1024.0,
        load.peak_kib as f64 / 1024.0
    );
    println!(
        "| CPU time | client {:.2} s + server {server_cpu:.2} s | {:.2} s |",
        sync.cpu, load.cpu
    );
    println!("| ratio sync / limit | {ratio:.2} | 1 |");
    println!(
        "| targets | within 2× of the limit: {}; under 10 s: {} | |",
        if ratio <= 2.0 { "met" } else { "missed" },
        if secs(&sync) < 10.0 { "met" } else { "missed" }
    );
    println!();
    println!("Best client run: {}", sync.output.trim());
    Ok(())
}

/// A finished child process: how long it took, its CPU time, its peak resident memory and
/// what it printed.
#[derive(Debug, Clone)]
struct Measured {
    elapsed: Duration,
    /// User + system CPU seconds.
    cpu: f64,
    peak_kib: u64,
    output: String,
}

/// CPU seconds (user + system) of process `pid` so far, from `/proc/<pid>/stat`.
pub(super) fn process_cpu(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .context("CPU figures need /proc (Linux)")?;
    cpu_fields(&stat, 14)
}

/// CPU seconds (user + system) of the calling thread so far, from `/proc/thread-self/stat`:
/// a server running on a thread of this process, measured on its own.
pub(super) fn thread_cpu() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat")
        .context("CPU figures need /proc (Linux)")?;
    cpu_fields(&stat, 14)
}

/// CPU seconds of the children this process has waited for (`cutime` + `cstime`).
fn children_cpu() -> anyhow::Result<f64> {
    let stat =
        std::fs::read_to_string("/proc/self/stat").context("CPU figures need /proc (Linux)")?;
    cpu_fields(&stat, 16)
}

/// Two consecutive clock-tick fields of a `/proc/*/stat` line, from field number `first` as
/// proc(5) counts them (`utime` is 14, `cutime` 16), in seconds. Assumes 100 ticks per
/// second, Linux's `USER_HZ`.
fn cpu_fields(stat: &str, first: usize) -> anyhow::Result<f64> {
    // The command name may contain spaces; fields are counted after its closing parenthesis.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("unexpected /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |n: usize| -> anyhow::Result<f64> {
        let value: u64 = fields
            .get(n - 3)
            .and_then(|field| field.parse().ok())
            .context("unexpected /proc stat")?;
        Ok(value as f64 / 100.0)
    };
    Ok(tick(first)? + tick(first + 1)?)
}

/// Runs `command` to completion (reading the file `stdin`, if any), sampling its peak
/// memory, and fails with its standard error if it fails.
fn measure(mut command: Command, stdin: Option<&Path>) -> anyhow::Result<Measured> {
    let input = match stdin {
        Some(path) => Stdio::from(
            std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?,
        ),
        None => Stdio::null(),
    };
    command
        .stdin(input)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let children_before = children_cpu()?;
    let started = Instant::now();
    let mut child: Child = command
        .spawn()
        .with_context(|| format!("cannot start {command:?}"))?;
    let read_all = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let errors = read_all(Box::new(
        child.stderr.take().context("no stderr from the child")?,
    ));
    let output = read_all(Box::new(
        child.stdout.take().context("no stdout from the child")?,
    ));
    let mut peak_kib = 0;
    let status = loop {
        if let Ok(kib) = process_memory_kib(child.id(), "VmHWM") {
            peak_kib = peak_kib.max(kib);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(SAMPLE_EVERY);
    };
    let elapsed = started.elapsed();
    let cpu = children_cpu()? - children_before;
    let errors = errors.join().unwrap_or_default();
    let output = output.join().unwrap_or_default();
    if !status.success() {
        bail!("{command:?} failed ({status}): {errors}");
    }
    Ok(Measured {
        elapsed,
        cpu,
        peak_kib,
        output,
    })
}

/// Fails with install instructions when the `sqlite3` shell is missing.
fn check_sqlite3() -> anyhow::Result<()> {
    let found = Command::new("sqlite3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        bail!(
            "the baseline of this benchmark needs the `sqlite3` command-line shell; install it \
             (Debian/Ubuntu: `sudo apt-get install sqlite3`, Fedora: `sudo dnf install sqlite`, \
             macOS: `brew install sqlite`) and run the benchmark again"
        );
    }
    Ok(())
}

/// Deletes an SQLite database and its WAL files, if present.
fn remove_database(path: &Path) -> anyhow::Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("cannot remove {file:?}"));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Writes the `sqlite3` script of the limit to `script`: one transaction creating a table per
/// collection (the record's raw JSON text plus its typed columns) with the lookup indexes,
/// and one `INSERT` of literal values per dump record. The typed values are extracted here,
/// before the clock starts, so the shell only parses SQL and writes rows: the least work that
/// puts these rows into SQLite.
fn write_baseline_script(dump: &Path, script: &Path) -> anyhow::Result<()> {
    use std::io::{BufRead as _, BufWriter, Write as _};
    let input = std::io::BufReader::with_capacity(
        1 << 20,
        std::fs::File::open(dump).with_context(|| format!("cannot read {}", dump.display()))?,
    );
    let mut out = BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(script)
            .with_context(|| format!("cannot create {}", script.display()))?,
    );
    out.write_all(BASELINE_SCHEMA.as_bytes())?;
    for (number, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let entry: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("line {} of the dump is not JSON", number + 1))?;
        let doc = &entry["doc"];
        let text = |key: &str| sql_text(doc.get(key).and_then(serde_json::Value::as_str));
        let date = |key: &str| {
            doc.get(key)
                .and_then(|date| date.get("$date"))
                .and_then(serde_json::Value::as_f64)
                .map_or_else(|| "NULL".to_owned(), |ms| format!("{ms}"))
        };
        let raw = sql_text(Some(&doc.to_string()));
        let row = match entry["collection"].as_str() {
            Some("packages") => format!(
                "INSERT INTO packages VALUES({},{},{},{raw});",
                text("_id"),
                text("name"),
                date("lastUpdated")
            ),
            Some("versions") => format!(
                "INSERT INTO versions VALUES({},{},{},{},{},{},{raw});",
                text("_id"),
                text("packageName"),
                text("version"),
                text("description"),
                date("published"),
                date("lastUpdated")
            ),
            Some("builds") => format!(
                "INSERT INTO builds VALUES({},{},{},{},{raw});",
                text("_id"),
                text("versionId"),
                text("buildArchitectures"),
                date("buildPublished")
            ),
            Some("releaseTracks") => format!(
                "INSERT INTO release_tracks VALUES({},{},{raw});",
                text("_id"),
                text("name")
            ),
            Some("releaseVersions") => format!(
                "INSERT INTO release_versions VALUES({},{},{},{},{},{},{raw});",
                text("_id"),
                text("track"),
                text("version"),
                text("orderKey"),
                i32::from(doc["recommended"] == true),
                date("published")
            ),
            _ => continue,
        };
        writeln!(out, "{row}")?;
    }
    out.write_all(BASELINE_INDEXES.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// An SQL string literal, or `NULL`.
fn sql_text(text: Option<&str>) -> String {
    match text {
        Some(text) => format!("'{}'", text.replace('\'', "''")),
        None => "NULL".to_owned(),
    }
}

/// The start of the baseline script: settings like the index's, one transaction, the tables.
const BASELINE_SCHEMA: &str = "PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
BEGIN;
CREATE TABLE packages (id TEXT PRIMARY KEY, name TEXT NOT NULL, last_updated INTEGER,
  doc TEXT NOT NULL);
CREATE TABLE versions (id TEXT PRIMARY KEY, package TEXT NOT NULL, version TEXT NOT NULL,
  description TEXT, published INTEGER, last_updated INTEGER, doc TEXT NOT NULL);
CREATE TABLE builds (id TEXT PRIMARY KEY, version_id TEXT NOT NULL, architectures TEXT,
  published INTEGER, doc TEXT NOT NULL);
CREATE TABLE release_tracks (id TEXT PRIMARY KEY, name TEXT NOT NULL, doc TEXT NOT NULL);
CREATE TABLE release_versions (id TEXT PRIMARY KEY, track TEXT NOT NULL,
  version TEXT NOT NULL, order_key TEXT, recommended INTEGER, published INTEGER,
  doc TEXT NOT NULL);
";

/// The end of the baseline script: the lookup indexes, and the commit.
const BASELINE_INDEXES: &str = "CREATE INDEX packages_by_name ON packages (name);
CREATE INDEX versions_by_package ON versions (package, version);
CREATE INDEX builds_by_version ON builds (version_id);
CREATE INDEX release_tracks_by_name ON release_tracks (name);
CREATE INDEX release_versions_by_track ON release_versions (track, order_key);
COMMIT;
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_literals_are_quoted() {
        assert_eq!(sql_text(Some("it's")), "'it''s'");
        assert_eq!(sql_text(None), "NULL");
    }

    #[test]
    fn cpu_times_are_read_after_the_command_name() {
        let stat = "42 (a (weird) name) S 1 2 3 4 5 6 7 8 9 10 250 50 7 3 20 0";
        assert_eq!(cpu_fields(stat, 14).ok(), Some(3.0));
        assert_eq!(cpu_fields(stat, 16).ok(), Some(0.1));
        assert!(cpu_fields("garbage", 14).is_err());
        assert!(process_cpu(std::process::id()).is_ok());
    }

    #[test]
    fn the_baseline_loads_the_fixture_when_sqlite3_is_installed() {
        if check_sqlite3().is_err() {
            // Without the shell the benchmark explains how to install it; nothing to run.
            return;
        }
        let dir = tempfile::tempdir().expect("temporary directory");
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/fixtures/meteor-2015-catalog.ndjson");
        let script = dir.path().join("baseline.sql");
        write_baseline_script(&fixture, &script).expect("a script");
        let database = dir.path().join("baseline.sqlite3");
        let mut command = Command::new("sqlite3");
        command.arg(&database);
        measure(command, Some(&script)).expect("the baseline loads");
        let output = Command::new("sqlite3")
            .arg(&database)
            .arg(
                "SELECT (SELECT count(*) FROM packages) || ' ' || (SELECT count(*) FROM versions) \
                 || ' ' || (SELECT count(*) FROM builds) || ' ' || \
                 (SELECT version FROM versions WHERE package = 'iron:router' \
                  AND version = '1.0.6')",
            )
            .output()
            .expect("sqlite3 runs");
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            "210 4039 4039 1.0.6"
        );
    }
}
