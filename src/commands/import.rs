//! `exosphere import`: loads a catalog dump into the catalog (SQLite in the data directory, or
//! PostgreSQL with `--database-url`) in one transaction. A file imported into an empty
//! catalog is bulk loaded (`COPY` on PostgreSQL); a dump that bulk loading cannot take, a
//! catalog holding anything and standard input take record-by-record upserts.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use anyhow::Context as _;
use exosphere_catalog::bulk::{self, BulkStore, check_empty};
use exosphere_catalog::dump::{self, DumpError, ImportOptions, ImportSummary};

use super::{byte_progress, open_bulk};
use crate::cli::ImportArgs;

/// Streams the file through the importer with a progress bar and prints what changed.
pub fn run(args: ImportArgs) -> anyhow::Result<()> {
    let store = open_bulk(&args.data_dir)?;
    let summary = if args.file != Path::new("-") && is_empty(&*store) {
        match import_file(&args.file, |input| {
            bulk::import_dump(&*store, input, &ImportOptions::default())
        }) {
            Err(DumpError::Store(error)) => {
                tracing::info!(
                    %error,
                    "the dump cannot be bulk loaded; importing it record by record"
                );
                import_file(&args.file, |input| dump::import(&*store, input))
            }
            done => done,
        }
    } else if args.file == Path::new("-") {
        import_from(Box::new(io::stdin().lock()), None, |input| {
            dump::import(&*store, input)
        })
    } else {
        import_file(&args.file, |input| dump::import(&*store, input))
    };
    let summary =
        summary.with_context(|| format!("nothing was imported from {}", args.file.display()))?;
    eprintln!("imported {}: {summary}", args.file.display());
    Ok(())
}

/// Whether the catalog holds nothing yet, so that a dump may be bulk loaded into it.
fn is_empty(store: &dyn BulkStore) -> bool {
    store
        .row_counts()
        .is_ok_and(|counts| check_empty(&counts, 0).is_ok())
}

/// Runs `import` on the file at `path`, with a progress bar of its bytes.
fn import_file(
    path: &Path,
    import: impl FnOnce(Box<dyn BufRead>) -> Result<ImportSummary, DumpError>,
) -> Result<ImportSummary, DumpError> {
    let file = File::open(path).map_err(DumpError::Read)?;
    let size = file.metadata().ok().map(|meta| meta.len());
    import_from(Box::new(file), size, import)
}

/// Runs `import` on `source` (of `size` bytes, when known), with a progress bar.
fn import_from(
    source: Box<dyn Read>,
    size: Option<u64>,
    import: impl FnOnce(Box<dyn BufRead>) -> Result<ImportSummary, DumpError>,
) -> Result<ImportSummary, DumpError> {
    let bar = byte_progress(size, "importing");
    let input = Box::new(BufReader::with_capacity(1 << 20, bar.wrap_read(source)));
    let summary = import(input);
    bar.finish_and_clear();
    summary
}
