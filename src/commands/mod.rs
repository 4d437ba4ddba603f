//! One module per subcommand; each exposes `run(args) -> anyhow::Result<()>`.

pub mod accounts;
pub mod audit;
pub mod backup;
pub mod bench;
pub mod deps;
pub mod epoch;
pub mod export;
pub mod gen_catalog;
pub mod import;
pub mod migrate;
pub mod mirror;
mod query;
pub mod releases;
pub mod restore;
pub mod search;
pub mod serve;
pub mod show;
pub mod stats;
pub mod sync;
pub mod verify;

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal as _, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use exosphere_blobs::{BlobStore, S3Config};
use exosphere_catalog::CatalogStore;
use exosphere_catalog::StoreError;
use exosphere_catalog::bulk::BulkStore;
use exosphere_catalog_postgres::{PgStore, describe_url, open_postgres, open_postgres_existing};
use exosphere_catalog_sqlite::replica::SqliteReplica;
use exosphere_catalog_sqlite::{DATABASE_FILE, SqliteStore, open_sqlite};

use crate::cli::{DataDirArg, FileStoreArgs};

/// The catalog the flags choose: the PostgreSQL database of `--database-url`, or SQLite in
/// `--data-dir` (the default); the one place that picks a backend, so every command runs on
/// both. The error names where the catalog was looked for.
pub(crate) fn open_catalog(args: &DataDirArg) -> anyhow::Result<Arc<dyn CatalogStore>> {
    let store: Arc<dyn CatalogStore> = open_bulk(args)?;
    Ok(store)
}

/// The catalog `exosphere serve` serves: [`open_catalog`]'s, checked by `check` (the
/// server's startup check that the catalog did not go back), after which a PostgreSQL
/// catalog is given a local replica in `DATA_DIR` ([`SYNC_REPLICA_FILE`]) to read sync pages
/// from if `sync_replica`, brought up to date before this returns.
pub(crate) fn open_served_catalog(
    args: &DataDirArg,
    sync_replica: bool,
    check: impl FnOnce(&dyn CatalogStore) -> anyhow::Result<()>,
) -> anyhow::Result<Arc<dyn CatalogStore>> {
    let Some(url) = args.database_url.as_deref().filter(|_| sync_replica) else {
        let store = open_catalog(args)?;
        check(&*store)?;
        return Ok(store);
    };
    let location = || format!("cannot open the catalog in {}", catalog_location(args));
    let store = open_postgres(url).with_context(location)?;
    check(&store)?;
    let path = args.data_dir.join(SYNC_REPLICA_FILE);
    let replica = SqliteReplica::open(&path)
        .with_context(|| format!("cannot open the sync replica {}", path.display()))?;
    let store = store
        .with_sync_replica(Box::new(replica))
        .with_context(|| {
            format!(
                "cannot bring the sync replica {} up to date (--sync-replica false serves without it)",
                path.display()
            )
        })?;
    Ok(Arc::new(store))
}

/// The file in the data directory of the local replica a server on PostgreSQL reads sync
/// pages from (`serve --sync-replica`).
pub(crate) const SYNC_REPLICA_FILE: &str = "sync-replica.sqlite3";

/// [`open_catalog`], as the [`BulkStore`] every backend also is (`migrate`, bulk imports).
pub(crate) fn open_bulk(args: &DataDirArg) -> anyhow::Result<Arc<dyn BulkStore>> {
    open_bulk_with(args, open_postgres)
}

/// The catalog the flags choose as a source to be read only (`migrate --from`): a
/// PostgreSQL database is opened without creating or upgrading its schema
/// ([`open_postgres_existing`]), so that a mistyped or empty database is refused instead of
/// becoming an empty catalog.
pub(crate) fn open_bulk_source(args: &DataDirArg) -> anyhow::Result<Arc<dyn BulkStore>> {
    open_bulk_with(args, open_postgres_existing)
}

/// The catalog the flags choose, a PostgreSQL one opened with `open_postgres`.
fn open_bulk_with(
    args: &DataDirArg,
    open_postgres: fn(&str) -> Result<PgStore, StoreError>,
) -> anyhow::Result<Arc<dyn BulkStore>> {
    match &args.database_url {
        Some(url) => {
            let store = open_postgres(url).with_context(|| {
                format!("cannot open the catalog in {}", catalog_location(args))
            })?;
            Ok(Arc::new(store))
        }
        None => Ok(Arc::new(open_sqlite_catalog(&args.data_dir)?)),
    }
}

/// Where the flags put the catalog, as logs name it: "SQLite in DIR" or "the PostgreSQL
/// database NAME on HOST:PORT" (never the URL's password).
pub(crate) fn catalog_location(args: &DataDirArg) -> String {
    match &args.database_url {
        Some(url) => describe_url(url)
            .unwrap_or_else(|| "a PostgreSQL database (the URL does not parse)".to_owned()),
        None => format!("SQLite in {}", args.data_dir.display()),
    }
}

/// The data directory of a command that works on SQLite's catalog file itself (`backup`,
/// `restore`, `verify`), which has no meaning for a catalog in PostgreSQL: there the error
/// names PostgreSQL's own tool for the job (`instead`), as docs/OPERATIONS.md does.
pub(crate) fn sqlite_data_dir<'a>(
    args: &'a DataDirArg,
    command: &str,
    instead: &str,
) -> anyhow::Result<&'a Path> {
    if args.database_url.is_some() {
        anyhow::bail!(
            "`exosphere {command}` works on the SQLite catalog file in --data-dir, and \
             --database-url (or EXOSPHERE_DATABASE_URL) puts the catalog in {}: {instead} \
             (docs/OPERATIONS.md, \"PostgreSQL deployments\"). Run `exosphere {command}` \
             without --database-url for a SQLite data directory",
            catalog_location(args)
        );
    }
    Ok(&args.data_dir)
}

/// The SQLite catalog in `data_dir`, with an error that names the directory.
fn open_sqlite_catalog(data_dir: &Path) -> anyhow::Result<SqliteStore> {
    open_sqlite(data_dir)
        .with_context(|| format!("cannot open the catalog in {}", data_dir.display()))
}

/// The time `ms` (since the Unix epoch) in RFC 3339, UTC, for reports.
pub(crate) fn at(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

/// A multi-threaded tokio runtime for a command's async work (the sync client's page loop
/// needs one: it applies pages with `block_in_place`).
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The file store the flags choose: an S3 bucket, or a local directory (`DATA_DIR/files` by
/// default).
pub(crate) fn blob_store(args: &FileStoreArgs, data_dir: &Path) -> anyhow::Result<BlobStore> {
    match &args.s3_bucket {
        Some(bucket) => BlobStore::s3(&S3Config {
            bucket: bucket.clone(),
            endpoint: args.s3_endpoint.clone(),
            region: args.s3_region.clone(),
            access_key_id: args.s3_access_key_id.clone(),
            secret_access_key: args.s3_secret_access_key.clone(),
        }),
        None => BlobStore::local(
            &args
                .files_dir
                .clone()
                .unwrap_or_else(|| data_dir.join("files")),
        ),
    }
    .context("cannot open the package file store")
}

/// Opens `path` for writing, where `-` means standard output, buffered for bulk output.
fn create_output(path: &Path) -> anyhow::Result<Box<dyn Write>> {
    if path == Path::new("-") {
        return Ok(Box::new(BufWriter::with_capacity(
            1 << 20,
            io::stdout().lock(),
        )));
    }
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(Box::new(BufWriter::with_capacity(1 << 20, file)))
}

/// A spinner on standard error that counts things done (`{pos}` files, …), drawn only on a
/// terminal, for long work whose total is not known up front.
fn count_progress(template: &'static str) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressStyle};
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    ProgressBar::new_spinner().with_style(
        ProgressStyle::with_template(template).expect("static progress template is valid"),
    )
}

/// A progress bar on standard error towards `total` things (`{pos}/{len}` in `template`),
/// drawn only on a terminal, for long work whose size is known up front.
fn total_progress(total: u64, template: &'static str) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressStyle};
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    ProgressBar::new(total).with_style(
        ProgressStyle::with_template(template)
            .expect("static progress template is valid")
            .progress_chars("=> "),
    )
}

/// The SQLite catalog in `data_dir` for a command that must not create one: an error naming the
/// directory when it holds none.
fn existing_catalog(data_dir: &Path) -> anyhow::Result<SqliteStore> {
    if !data_dir.join(DATABASE_FILE).is_file() {
        anyhow::bail!(
            "there is no catalog in {}: check --data-dir (or EXOSPHERE_DATA_DIR)",
            data_dir.display()
        );
    }
    open_sqlite_catalog(data_dir)
}

/// A progress bar on standard error that counts bytes; indicatif draws nothing when standard
/// error is not a terminal, so scripts and CI logs stay clean.
fn byte_progress(total: Option<u64>, message: &'static str) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressStyle};
    let bar = match total {
        Some(total) => ProgressBar::new(total).with_style(
            ProgressStyle::with_template(
                "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("static progress template is valid")
            .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {msg} {bytes} {bytes_per_sec}")
                .expect("static progress template is valid"),
        ),
    };
    bar.with_message(message)
}
