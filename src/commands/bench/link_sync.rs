//! `exosphere bench sync --link-rate RATE`: a full first sync over a shaped link, with and
//! without `permessage-deflate`, against the link's ideal measured in the same run.
//!
//! The server runs behind a [`ShapedLink`] (its own network namespace, a veth pair shaped to
//! `RATE` by `tc tbf`), the client in the benchmark, as a fresh machine pulls the catalog from
//! a package server across a network. The link's real rate is measured first by pushing bytes
//! through it over TCP; a sync's ideal is the bytes its client's socket read divided by that
//! rate, and the ideal for a first sync is the compressed one: the bytes of the sync
//! with `permessage-deflate`. The link has no added round-trip delay (`netem` is not in every
//! kernel; see [`super::link`]).

use super::link::ShapedLink;
use super::sync::{SyncRun, full_sync, print_head};
use super::{ServerProcess, WorkDir, mb, prepare_catalog};
use crate::cli::BenchSyncArgs;

/// Runs the shaped-link benchmark and prints a Markdown report to standard output.
pub fn run(args: &BenchSyncArgs, rate_bits: u64) -> anyhow::Result<()> {
    let work_dir = WorkDir::new(args.catalog.work_dir.as_deref())?;
    let catalog = prepare_catalog(work_dir.path(), args.catalog.scale, args.catalog.seed)?;
    let link = ShapedLink::new(rate_bits)?;
    let before = link.measure()?;
    eprintln!("link measured at {:.2} MB/s", before / 1e6);
    let server = ServerProcess::start_behind(&link, &catalog.data_dir, &[])?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut kinds = Vec::new();
    for deflate in [false, true] {
        let mut runs = Vec::new();
        for run in 1..=args.catalog.runs {
            let sync = runtime.block_on(full_sync(
                &server.ws_url(),
                args.compress,
                deflate,
                false,
                None,
            ))?;
            eprintln!(
                "sync over the link (permessage-deflate {deflate}), run {run}: {:.2} MB on the \
                 wire in {:.2?}",
                mb(sync.wire_bytes),
                sync.elapsed
            );
            runs.push(sync);
        }
        kinds.push((deflate, runs));
    }
    drop(server);
    let after = link.measure()?;
    // The link's rate is the mean of the two measurements around the syncs.
    let rate = (before + after) / 2.0;
    let compressed_ideal = kinds
        .iter()
        .find(|(deflate, _)| *deflate)
        .and_then(|(_, runs)| runs.iter().map(|sync| sync.wire_bytes).min())
        .map(|bytes| bytes as f64 / rate)
        .unwrap_or_default();

    print_head(
        "exosphere bench sync over a shaped link",
        args,
        catalog.records(),
        catalog.generated.bytes,
    );
    println!(
        "| link shaped to (tbf, each direction; no added delay) | {:.1} Mbit/s |",
        link.rate_bits() as f64 / 1e6
    );
    println!(
        "| link measured, TCP, before / after the syncs | {:.2} / {:.2} MB/s |",
        before / 1e6,
        after / 1e6
    );
    println!(
        "| ideal first sync: compressed bytes ÷ measured rate | {:.2} s |",
        compressed_ideal
    );
    for (deflate, runs) in &kinds {
        let name = if *deflate {
            "with `permessage-deflate`"
        } else {
            "without compression"
        };
        let best = runs.iter().min_by_key(|sync| sync.elapsed);
        let Some(best) = best else { continue };
        println!("| sync {name}, each run | {} |", each(runs));
        println!(
            "| sync {name}: bytes on the wire, records | {} B, {} |",
            best.wire_bytes, best.records
        );
        let own_ideal = best.wire_bytes as f64 / rate;
        println!(
            "| **sync {name}, best: ratio to its own bytes ÷ rate ({own_ideal:.2} s), to the \
             compressed ideal** | **{:.2}, {:.2}** |",
            best.elapsed.as_secs_f64() / own_ideal.max(1e-9),
            best.elapsed.as_secs_f64() / compressed_ideal.max(1e-9)
        );
    }
    Ok(())
}

/// Each run's time.
fn each(runs: &[SyncRun]) -> String {
    runs.iter()
        .map(|sync| format!("{:.2} s", sync.elapsed.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(", ")
}
