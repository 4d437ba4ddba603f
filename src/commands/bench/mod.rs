//! `exosphere bench <workload>`: benchmarks that measure Exosphere against a physical limit
//! taken in the same run, never against a fixed number of seconds.
//!
//! Each workload is a module of its own; this module holds what they share: a scratch
//! directory, a synthetic catalog imported into a fresh data directory, and an
//! `exosphere serve` child process whose memory can be read on its own from `/proc`.

pub mod abuse;
pub mod client_sync;
mod deflate_client;
pub mod index;
pub mod link;
pub mod link_sync;
pub mod mirror;
pub mod postgres;
pub mod publish;
pub mod sessions;
pub mod soak;
pub mod stats;
pub mod sync;
pub mod web;

use std::fs::File;
use std::io::{BufRead as _, BufReader, BufWriter, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use exosphere_catalog::dump;
use exosphere_catalog_sqlite::open_sqlite;
use exosphere_synth::{self as synth, Scale, SynthSummary};

use crate::cli::BenchCommand;

/// Runs the chosen benchmark; each prints a Markdown report to standard output.
pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Sync(args) => match args.link_rate {
            Some(rate) => link_sync::run(&args, rate),
            None => sync::run(args),
        },
        BenchCommand::Sessions(args) => sessions::run(args),
        BenchCommand::Stats(args) => stats::run(args),
        BenchCommand::ClientSync(args) => client_sync::run(args),
        BenchCommand::Index(args) => index::run(args),
        BenchCommand::Publish(args) => publish::run(args),
        BenchCommand::Mirror(args) => mirror::run(args),
        BenchCommand::Abuse(args) => abuse::run(args),
        BenchCommand::Soak(args) => soak::run(args),
        BenchCommand::Postgres(args) => postgres::run(args),
        BenchCommand::Web(args) => web::run(args),
    }
}

/// Bytes of every file directly in `dir` (the database, its WAL and shared memory).
fn dir_size(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

/// A TCP connection to the literal address of a `ws://` URL, from the local address
/// `source` if given (a loopback address other than the server's own clients', say).
async fn connect_tcp(
    url: &str,
    source: Option<std::net::IpAddr>,
) -> anyhow::Result<tokio::net::TcpStream> {
    let authority = url
        .strip_prefix("ws://")
        .and_then(|rest| rest.split('/').next())
        .context("a ws:// URL")?;
    let server: std::net::SocketAddr = authority.parse().context("a literal address")?;
    let Some(source) = source else {
        return Ok(tokio::net::TcpStream::connect(server).await?);
    };
    let socket = match server {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket
        .bind(std::net::SocketAddr::new(source, 0))
        .with_context(|| format!("cannot bind the local address {source}"))?;
    Ok(socket.connect(server).await?)
}

/// Megabytes (10^6 bytes), as the reports print them.
fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1_000_000.0
}

/// The directory a benchmark works in: the one the user named, or a temporary directory that
/// is removed when the benchmark ends.
struct WorkDir {
    path: PathBuf,
    _scratch: Option<tempfile::TempDir>,
}

impl WorkDir {
    fn new(chosen: Option<&Path>) -> anyhow::Result<Self> {
        let (path, scratch) = match chosen {
            Some(path) => (path.to_path_buf(), None),
            None => {
                let scratch = tempfile::tempdir().context("cannot create a temporary directory")?;
                (scratch.path().to_path_buf(), Some(scratch))
            }
        };
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self {
            path,
            _scratch: scratch,
        })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

/// A synthetic catalog, written as a dump and imported into a fresh data directory.
struct PreparedCatalog {
    /// The data directory holding the imported catalog.
    data_dir: PathBuf,
    /// The dump the catalog was imported from.
    dump_path: PathBuf,
    generated: SynthSummary,
    generate_time: Duration,
    /// The bulk SQLite load of the whole dump.
    import_time: Duration,
}

impl PreparedCatalog {
    /// Records in the catalog, all five collections together.
    fn records(&self) -> u64 {
        let g = &self.generated;
        g.packages + g.versions + g.builds + g.release_tracks + g.release_versions
    }
}

/// Generates the catalog of `scale` and `seed` under `work_dir` and imports it into
/// `work_dir/data` (replacing any earlier one), reporting progress on standard error.
fn prepare_catalog(work_dir: &Path, scale: Scale, seed: u64) -> anyhow::Result<PreparedCatalog> {
    let (dump_path, generated, generate_time) = generate_dump(work_dir, scale, seed)?;

    let data_dir = work_dir.join("data");
    let (imported, import_time) = import_dump(&dump_path, &data_dir)?;
    let catalog = PreparedCatalog {
        data_dir,
        dump_path,
        generated,
        generate_time,
        import_time,
    };
    eprintln!(
        "generated {} records ({:.1} MB) in {generate_time:.2?}, imported in {import_time:.2?}: {imported}",
        catalog.records(),
        mb(catalog.generated.bytes),
    );
    Ok(catalog)
}

/// Imports the dump into a fresh `data_dir` (emptied first, if it exists); returns what was
/// imported and how long it took.
fn import_dump(dump: &Path, data_dir: &Path) -> anyhow::Result<(dump::ImportSummary, Duration)> {
    if data_dir.exists() {
        std::fs::remove_dir_all(data_dir)?;
    }
    let started = Instant::now();
    let store = open_sqlite(data_dir)?;
    let imported = dump::import(&store, BufReader::with_capacity(1 << 20, File::open(dump)?))?;
    drop(store);
    Ok((imported, started.elapsed()))
}

/// Writes the synthetic catalog of `scale` and `seed` to `work_dir/catalog.ndjson`; returns
/// its path, what it holds and how long generating it took.
fn generate_dump(
    work_dir: &Path,
    scale: Scale,
    seed: u64,
) -> anyhow::Result<(PathBuf, SynthSummary, Duration)> {
    let dump_path = work_dir.join("catalog.ndjson");
    let started = Instant::now();
    let mut out = BufWriter::new(
        File::create(&dump_path)
            .with_context(|| format!("cannot create {}", dump_path.display()))?,
    );
    let generated = synth::generate(scale, seed, &mut out)?;
    out.flush()?;
    drop(out);
    Ok((dump_path, generated, started.elapsed()))
}

/// An `exosphere serve` child process on a free loopback port, killed when dropped.
struct ServerProcess {
    child: Child,
    /// `host:port` the server printed.
    address: String,
}

impl ServerProcess {
    /// Starts `exosphere serve` on `data_dir` with `extra_args` added to its command line,
    /// and with the read model off unless `extra_args` say `--read-model`: a benchmark
    /// measures what it names, not the read model's first build of the catalog beside it.
    fn start(data_dir: &Path, extra_args: &[&str]) -> anyhow::Result<Self> {
        Self::spawn(Command::new(exe()?), "127.0.0.1:0", data_dir, extra_args)
    }

    /// Starts `exosphere serve` as [`start`](Self::start) does, but inside `link`'s network
    /// namespace, listening on the link's far end.
    fn start_behind(
        link: &link::ShapedLink,
        data_dir: &Path,
        extra_args: &[&str],
    ) -> anyhow::Result<Self> {
        let listen = format!("{}:0", link.far());
        Self::spawn(link.command(&exe()?), &listen, data_dir, extra_args)
    }

    fn spawn(
        mut command: Command,
        listen: &str,
        data_dir: &Path,
        extra_args: &[&str],
    ) -> anyhow::Result<Self> {
        let mut child = command
            .args(["serve", "--listen", listen, "--data-dir"])
            .arg(data_dir)
            .args(if extra_args.contains(&"--read-model") {
                &[][..]
            } else {
                &["--read-model", "off"][..]
            })
            .args(extra_args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .context("cannot start exosphere serve")?;
        let stdout = child.stdout.take().context("no stdout from the server")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let Some(address) = line.trim().strip_prefix("Exosphere listening on http://") else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("unexpected first line from the server: {line:?}");
        };
        Ok(Self {
            address: address.to_owned(),
            child,
        })
    }

    /// The server's process id, for `/proc` figures.
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The raw-WebSocket DDP endpoint.
    fn ws_url(&self) -> String {
        format!("ws://{}/websocket", self.address)
    }

    /// A memory figure of the server process from `/proc/<pid>/status`, in KiB: `VmHWM` is
    /// the peak resident size (including the mapped database file), `RssAnon` the process's
    /// own heap and stacks now.
    fn memory_kib(&self, field: &str) -> anyhow::Result<u64> {
        process_memory_kib(self.child.id(), field)
    }
}

/// This program's own binary, which benchmarks start as their servers.
fn exe() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("cannot find the exosphere binary")
}

/// A memory figure (`VmHWM`, `RssAnon`, …) of process `pid` from `/proc/<pid>/status`, in KiB.
fn process_memory_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let mut status = String::new();
    File::open(format!("/proc/{pid}/status"))
        .context("memory figures need /proc (Linux)")?
        .read_to_string(&mut status)?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc status"))
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
