//! `exosphere gen-catalog`: writes a deterministic synthetic catalog dump.

use std::io::Write as _;

use anyhow::Context as _;
use exosphere_synth as synth;

use super::{byte_progress, create_output};
use crate::cli::GenCatalogArgs;

/// Generates the catalog straight into the output, never holding it in memory.
pub fn run(args: GenCatalogArgs) -> anyhow::Result<()> {
    let bar = byte_progress(None, "generating");
    let mut output = bar.wrap_write(create_output(&args.output)?);
    let summary = synth::generate(args.scale, args.seed, &mut output)
        .and_then(|summary| output.flush().map(|()| summary))
        .context("cannot write the catalog")?;
    bar.finish_and_clear();
    eprintln!(
        "generated {} packages, {} versions, {} builds, {} release tracks, {} release versions, \
         {} stats rows ({} bytes)",
        summary.packages,
        summary.versions,
        summary.builds,
        summary.release_tracks,
        summary.release_versions,
        summary.stats_rows,
        summary.bytes
    );
    Ok(())
}
