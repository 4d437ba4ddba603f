//! `exosphere export`: writes the whole catalog as a dump that `import` accepts.

use std::io::Write as _;

use anyhow::Context as _;
use exosphere_catalog::dump;

use super::{byte_progress, create_output, open_catalog};
use crate::cli::ExportArgs;

/// Writes one consistent snapshot of the catalog, even while a server writes to it.
pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    let store = open_catalog(&args.data_dir)?;
    let bar = byte_progress(None, "exporting");
    let mut output = bar.wrap_write(create_output(&args.output)?);
    let summary = dump::export(&*store, &mut output).context("export failed")?;
    output.flush().context("cannot write the dump")?;
    bar.finish_and_clear();
    eprintln!("exported {summary}");
    Ok(())
}
