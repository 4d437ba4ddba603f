//! A shaped network link of the benchmark's own: a network namespace joined to the host's by a
//! veth pair whose two ends are each limited to one rate by `tc tbf`, for measurements that
//! loopback cannot give (a first sync over a 50 Mbit/s link, files from an upstream on another
//! host).
//!
//! A server runs behind the link as a child process started in the namespace
//! ([`ShapedLink::command`], `ip netns exec`); the benchmark stays in the host's namespace and
//! reaches it at [`ShapedLink::far`]. The link's real rate is measured in the same run
//! ([`ShapedLink::measure`]): a thread of the benchmark enters the namespace (`setns` moves
//! only the calling thread) and pushes bytes through it over TCP, which is the physical limit
//! every transfer across the link is compared with.
//!
//! It needs root (or `CAP_NET_ADMIN`) and iproute2's `ip` and `tc`. `netem` (which would add
//! a round-trip delay) is not in every kernel, so the link has none: a benchmark that needs
//! one must say so in its report. Dropping the link deletes the namespace, and with it both
//! ends of the veth pair.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// How long a packet may wait in a shaped queue before `tbf` drops it.
const QUEUE_LATENCY: &str = "100ms";

/// Bytes pushed through the link to measure its rate: at least this many, and at least what
/// the link carries in [`MEASURE_TIME`].
const MEASURE_BYTES: u64 = 8 << 20;

/// The least time a rate measurement lasts, so that the token bucket's burst is a small part
/// of it.
const MEASURE_TIME: Duration = Duration::from_secs(3);

/// A network namespace behind a rate-limited veth pair, removed when dropped.
pub(super) struct ShapedLink {
    namespace: String,
    far: Ipv4Addr,
    rate_bits: u64,
}

impl ShapedLink {
    /// Creates the namespace and the veth pair, shaped to `rate_bits` bits per second in each
    /// direction.
    pub(super) fn new(rate_bits: u64) -> anyhow::Result<Self> {
        if rate_bits < 1_000_000 {
            bail!("a shaped link needs a rate of at least 1 Mbit/s (got {rate_bits} bit/s)");
        }
        let pid = std::process::id();
        let namespace = format!("exosphere-bench-{pid}");
        // One /30 of 10.231.0.0/16 per benchmark process, so that two benchmarks can run at
        // once.
        let slot = pid % 16_384;
        let base = [10, 231, (slot / 64) as u8, (slot % 64 * 4) as u8];
        let host = Ipv4Addr::new(base[0], base[1], base[2], base[3] + 1);
        let far = Ipv4Addr::new(base[0], base[1], base[2], base[3] + 2);
        let (host_end, far_end) = (format!("exb{pid}h"), format!("exb{pid}f"));

        ip(&["netns", "add", &namespace]).context(
            "a shaped link needs root (or CAP_NET_ADMIN) and iproute2; run the benchmark \
             without its link option, or as root",
        )?;
        // From here on, dropping the link removes what was made.
        let link = ShapedLink {
            namespace,
            far,
            rate_bits,
        };
        let ns = link.namespace.as_str();
        let rate = rate_bits.to_string();
        // A bucket of a hundredth of a second of traffic, and never less than one largest
        // segment veth hands over (64 KiB), so that shaping neither bursts far above the rate
        // nor stalls on a single packet.
        let burst = (rate_bits / 8 / 100).max(64 << 10).to_string();
        let shape = ["root", "tbf", "rate", &rate, "burst", &burst, "latency"];
        ip(&[
            "link", "add", &host_end, "type", "veth", "peer", "name", &far_end, "netns", ns,
        ])?;
        ip(&["addr", "add", &format!("{host}/30"), "dev", &host_end])?;
        ip(&["link", "set", &host_end, "up"])?;
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{far}/30"),
            "dev",
            &far_end,
        ])?;
        ip(&["-n", ns, "link", "set", &far_end, "up"])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        let mut host_qdisc = vec!["qdisc", "add", "dev", &host_end];
        host_qdisc.extend(shape);
        host_qdisc.push(QUEUE_LATENCY);
        tc(&host_qdisc)?;
        let mut far_qdisc = vec!["-n", ns, "qdisc", "add", "dev", &far_end];
        far_qdisc.extend(shape);
        far_qdisc.push(QUEUE_LATENCY);
        tc(&far_qdisc)?;
        Ok(link)
    }

    /// The address of the namespace's end of the link, where servers behind it listen.
    pub(super) fn far(&self) -> Ipv4Addr {
        self.far
    }

    /// The rate the link is shaped to, in bits per second.
    pub(super) fn rate_bits(&self) -> u64 {
        self.rate_bits
    }

    /// A command that runs `program` inside the namespace.
    pub(super) fn command(&self, program: &Path) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.namespace])
            .arg(program);
        command
    }

    /// The link's real rate from the namespace to the host, in bytes per second: a thread in
    /// the namespace pushes bytes over TCP to a reader in the host's, for at least
    /// [`MEASURE_TIME`].
    pub(super) fn measure(&self) -> anyhow::Result<f64> {
        let total = MEASURE_BYTES.max(self.rate_bits / 8 * MEASURE_TIME.as_secs());
        let namespace = format!("/var/run/netns/{}", self.namespace);
        let far = self.far;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let sender = std::thread::spawn(move || -> anyhow::Result<()> {
            enter(&namespace)?;
            let listener = TcpListener::bind((far, 0))?;
            ready_tx.send(listener.local_addr()?)?;
            let (mut stream, _) = listener.accept()?;
            let chunk = vec![0u8; 1 << 20];
            let mut sent = 0;
            while sent < total {
                let size = chunk.len().min(usize::try_from(total - sent)?);
                stream.write_all(&chunk[..size])?;
                sent += size as u64;
            }
            Ok(())
        });
        let address: SocketAddr = ready_rx
            .recv_timeout(Duration::from_secs(10))
            .context("the link's measuring thread never listened")?;
        let mut stream = TcpStream::connect(address)?;
        let started = Instant::now();
        let mut buffer = vec![0u8; 1 << 20];
        let mut received = 0u64;
        while received < total {
            let read = stream.read(&mut buffer)?;
            if read == 0 {
                bail!("the link's measuring thread stopped after {received} of {total} bytes");
            }
            received += read as u64;
        }
        let elapsed = started.elapsed();
        sender
            .join()
            .map_err(|_| anyhow::anyhow!("the link's measuring thread panicked"))??;
        Ok(total as f64 / elapsed.as_secs_f64().max(1e-9))
    }
}

impl Drop for ShapedLink {
    fn drop(&mut self) {
        if let Err(error) = ip(&["netns", "del", &self.namespace]) {
            eprintln!(
                "could not remove the network namespace {}: {error:#}; remove it with \
                 `ip netns del {}`",
                self.namespace, self.namespace
            );
        }
    }
}

/// Moves the calling thread (only it) into the network namespace bound at `path`.
fn enter(path: &str) -> anyhow::Result<()> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {path}"))?;
    // SAFETY: `setns` takes a file descriptor that `file` keeps open for the call, and
    // CLONE_NEWNET changes only the calling thread's network namespace.
    let result = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if result != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot enter the network namespace {path}"));
    }
    Ok(())
}

/// Runs `ip` with `args`, failing with what it printed.
fn ip(args: &[&str]) -> anyhow::Result<()> {
    run("ip", args)
}

/// Runs `tc` with `args`, failing with what it printed.
fn tc(args: &[&str]) -> anyhow::Result<()> {
    run("tc", args)
}

fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run `{program}` (iproute2)"))?;
    if !output.status.success() {
        bail!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Parses a link rate such as `50mbit`, `1gbit`, `800kbit` or a bare number of bits per
/// second, as `tc` writes rates.
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let digits = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(digits);
    let value: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a rate such as 50mbit or 1gbit"))?;
    let scale = match unit {
        "" | "bit" => 1,
        "kbit" => 1_000,
        "mbit" => 1_000_000,
        "gbit" => 1_000_000_000,
        _ => {
            return Err(format!(
                "`{text}`: use bit, kbit, mbit or gbit (per second)"
            ));
        }
    };
    value
        .checked_mul(scale)
        .ok_or_else(|| format!("`{text}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::parse_rate;

    #[test]
    fn rates_are_read_as_tc_writes_them() {
        assert_eq!(parse_rate("50mbit"), Ok(50_000_000));
        assert_eq!(parse_rate("1Gbit"), Ok(1_000_000_000));
        assert_eq!(parse_rate("800kbit"), Ok(800_000));
        assert_eq!(parse_rate("12345"), Ok(12_345));
        assert!(parse_rate("50mb").is_err());
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("99999999999gbit").is_err());
    }
}
