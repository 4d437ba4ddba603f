//! Deterministic synthetic Meteor catalogs, for `exosphere gen-catalog`, benchmarks and
//! demos. This crate's one job: write a catalog shaped like the real package server's, as
//! dump lines, from `(scale, seed)` alone.
//!
//! Benchmarks and demos need a catalog shaped like the real package server
//! (packages.meteor.com) without shipping or scraping real data. [`generate`] writes one
//! in the NDJSON dump format (`shared/spec/catalog-dump.md`): every record carries the
//! fields of spec §3.8 and the awkward corners of real data are there on purpose —
//! core names without a `user:` prefix, dotted package names and therefore dotted
//! dependency keys, pre-release and `_N` wrap versions, per-OS binary builds,
//! `isobuild:` pseudo-dependencies, null constraints, empty dependency maps, and many
//! records sharing one `lastUpdated` millisecond (which sync paging must page through).
//!
//! The output is a pure function of `(scale, seed)`: every random choice comes from a
//! ChaCha8 stream keyed by the seed, nothing iterates a hash map and nothing reads the
//! clock, so the bytes are identical across runs and platforms. Generation streams: only
//! a plan is kept in memory (users, package names and creation dates, a few versions of
//! each package that dependencies and stats point at, the release list, and the core
//! packages' versions, which releases drive). Each community package's versions are
//! re-derived from their own stream by the pass that writes versions and again by the
//! pass that writes builds, so memory stays far below the size of the output.
//!
//! * `params`: shape parameters per [`Scale`] and the fixed vocabulary;
//! * `model` and `plan`: the plan kept in memory, and its lookups;
//! * `passes`: one pass per collection, writing records in dump order;
//! * `helpers`: random streams, ids, names, version and release strings;
//! * `output`: the records as serde types and the buffered line writer.

use std::io::{self, Write};

use output::Sink;
use plan::Plan;

pub use output::SynthSummary;
pub use params::Scale;

mod helpers;
mod model;
mod output;
mod params;
mod passes;
mod plan;
#[cfg(test)]
mod tests;

/// Writes the synthetic catalog for `(scale, seed)` to `out` as NDJSON dump lines, in the
/// order packages, versions, builds, release tracks, release versions, stats rows.
///
/// The same `(scale, seed)` always gives the same bytes. Output is buffered internally in
/// small chunks and `out` is flushed at the end; the catalog is never held in memory.
pub fn generate(scale: Scale, seed: u64, out: &mut dyn Write) -> io::Result<SynthSummary> {
    let plan = Plan::new(scale, seed);
    let mut sink = Sink::new(out);
    plan.write_packages(&mut sink)?;
    plan.write_versions(&mut sink)?;
    plan.write_builds(&mut sink)?;
    plan.write_tracks(&mut sink)?;
    plan.write_releases(&mut sink)?;
    plan.write_stats(&mut sink)?;
    sink.finish()
}
