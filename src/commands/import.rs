//! `exosphere import`: loads a catalog dump into the catalog (SQLite in the data directory, or
//! PostgreSQL with `--database-url`) in one transaction.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use anyhow::Context as _;
use exosphere_catalog::dump;

use super::{byte_progress, open_catalog};
use crate::cli::ImportArgs;

/// Streams the file through the importer with a progress bar and prints what changed.
pub fn run(args: ImportArgs) -> anyhow::Result<()> {
    let store = open_catalog(&args.data_dir)?;
    let (source, size): (Box<dyn Read>, Option<u64>) = if args.file == Path::new("-") {
        (Box::new(io::stdin().lock()), None)
    } else {
        let file = File::open(&args.file)
            .with_context(|| format!("cannot open {}", args.file.display()))?;
        let size = file.metadata().ok().map(|meta| meta.len());
        (Box::new(file), size)
    };
    let bar = byte_progress(size, "importing");
    let input: Box<dyn BufRead> =
        Box::new(BufReader::with_capacity(1 << 20, bar.wrap_read(source)));
    let summary = dump::import(&*store, input);
    bar.finish_and_clear();
    let summary =
        summary.with_context(|| format!("nothing was imported from {}", args.file.display()))?;
    eprintln!("imported {}: {summary}", args.file.display());
    Ok(())
}
