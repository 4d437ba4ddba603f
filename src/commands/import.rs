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
use exosphere_catalog::error::StoreError;

use super::{byte_progress, open_bulk};
use crate::cli::ImportArgs;

/// Streams the file through the importer with a progress bar and prints what changed.
pub fn run(args: ImportArgs) -> anyhow::Result<()> {
    let store = open_bulk(&args.data_dir)?;
    let from_stdin = args.file == Path::new("-");
    let summary = if !from_stdin && is_empty(&*store)? {
        match import_file(&args.file, |input| {
            bulk::import_dump(&*store, input, &ImportOptions::default())
        }) {
            Err(DumpError::Store(refusal)) if takes_upserts(&refusal) => {
                tracing::info!(
                    %refusal,
                    "the dump cannot be bulk loaded; importing it record by record"
                );
                import_file(&args.file, |input| dump::import(&*store, input))
            }
            done => done,
        }
    } else if from_stdin {
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

/// Whether a bulk load's failure is a refusal that record-by-record upserts decide (the
/// catalog is not empty after all, or the dump repeats a key): only those are imported
/// again that way. Anything else (a busy or full database, a lost connection) would fail
/// the upserts too, after a second pass over the whole file, so it is the import's error.
fn takes_upserts(error: &StoreError) -> bool {
    matches!(error, StoreError::NotEmpty(_) | StoreError::BulkRefused(_))
}

/// Whether the catalog holds nothing yet, so that a dump may be bulk loaded into it.
fn is_empty(store: &dyn BulkStore) -> anyhow::Result<bool> {
    let counts = store
        .row_counts()
        .context("nothing was imported: cannot read the catalog")?;
    Ok(check_empty(&counts, 0).is_ok())
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

#[cfg(test)]
mod tests {
    use super::*;
    use exosphere_catalog::error::Storage;

    #[test]
    fn only_refusals_of_the_bulk_load_fall_back_to_upserts() {
        assert!(takes_upserts(&StoreError::NotEmpty("users 1".into())));
        assert!(takes_upserts(&StoreError::BulkRefused(
            "a key twice".into()
        )));
        for error in [
            StoreError::Busy,
            StoreError::DiskFull(Storage::Directory("/data".into())),
            StoreError::ReadOnly(Storage::Server("db".into())),
            StoreError::Database("connection closed".into()),
            StoreError::Corrupt("the meta row is missing".into()),
        ] {
            assert!(!takes_upserts(&error), "{error:?}");
        }
    }
}
