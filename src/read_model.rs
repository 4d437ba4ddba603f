//! The server's own read model: an `exosphere-index` file in the data directory, fed from
//! this server's catalog through the same page cache that answers `syncNewPackageData`
//! (so its pages are shared with clients), decoded by the sync client's page decoder and
//! applied with `Index::apply_page`, exactly as `exosphere sync` fills a client's index.
//! The JSON API (`exosphere-web`) answers from it.
//!
//! It catches up at startup and after every change the catalog watcher sees (a publish, an
//! import by another process, a mirrored change), one pass per change, on the blocking
//! pool. The files are generations, `index-<n>.sqlite3`: a new data epoch (`resetData`)
//! builds the next generation beside the served one, which goes on answering until the new
//! one is up to date and replaces it; a damaged served file is replaced the same way, never
//! deleted while it answers. Until a first file is complete the API answers `503`;
//! a failing pass is logged, shown on `/healthz` and retried with backoff, and never stops
//! the server or its sync.
//!
//! Each pass also keeps the index's recent adds current (`adds`), so search and the
//! most-added and trending lists follow the usage stats; a pass runs at least every
//! [`adds::RECOUNT_EVERY`] for them. With the server's file store, the page that brings
//! the index up to date gives full-text search the README texts of the latest versions
//! that changed ([`ReadmeFiles`], never from an upstream), in its own transaction, so the
//! sync token that names that page names them too.

mod adds;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use exosphere_catalog::{CatalogState, CatalogStore, Syncer};
use exosphere_index::{Index, IndexError};
use exosphere_sync_client::{FIRST_TOKEN, PageGuard, decode_page};
use exosphere_web::ReadModel;
use serde_json::Value;
use tokio::sync::watch;
use tracing::Instrument as _;

use crate::readme_files::ReadmeFiles;
use crate::service::SyncPage;

/// How long the first failed pass waits before the next try (sooner if the catalog
/// changes); each further failure in a row doubles it, up to [`MAX_RETRY_AFTER`].
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The longest wait between two tries of a failing pass.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// The wait after `failures` failed passes in a row: 1 s, 2 s, 4 s, … up to 5 minutes.
fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    RETRY_AFTER
        .saturating_mul(1 << doublings)
        .min(MAX_RETRY_AFTER)
}

/// Most pages in a row without records and without `upToDate` before a pass calls the
/// catalog's pages stuck (as `exosphere sync --max-empty-pages`).
const MAX_EMPTY_PAGES: u32 = 100;

/// Most pages one pass applies: a full build of atmosphere's catalog is a few thousand pages
/// at the default page size, so more means pages that never end; the pass fails, and the
/// retry resumes after the last committed page.
const MAX_PAGES_PER_PASS: u64 = 100_000;

/// Starts feeding the read model kept in `dir` from `syncer`'s pages, a pass at startup
/// and one after each change `catalog` reports, with README texts from `readmes` when the
/// server has a file store; returns the model the API reads and the feeder, to stop
/// before the data directory is released. Call it inside a tokio runtime.
pub fn start(
    dir: PathBuf,
    store: Arc<dyn CatalogStore>,
    syncer: Arc<Syncer<SyncPage>>,
    catalog: watch::Receiver<CatalogState>,
    readmes: Option<ReadmeFiles>,
) -> (Arc<ReadModel>, Feeding) {
    let model = ReadModel::new();
    let (stop, stopping) = watch::channel(false);
    let span = tracing::info_span!("read_model", dir = %dir.display());
    let feeder = Feeder {
        dir,
        syncer,
        model: Arc::clone(&model),
        catalog,
        stop: stopping,
        files: None,
        usage: adds::Usage::new(store),
        readmes,
    };
    let task = exosphere_task::spawn(feeder.run().instrument(span));
    let feeding = Feeding {
        stop,
        task: Mutex::new(Some(task)),
    };
    (model, feeding)
}

/// The running feeder, stopped at shutdown so that no pass writes the read model once the
/// server lets go of its data directory (the lock is released when `serve` returns).
#[derive(Debug)]
pub(crate) struct Feeding {
    stop: watch::Sender<bool>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Feeding {
    /// Asks the feeder to stop: a pass ends after the page it is applying, and no new one
    /// starts.
    pub(crate) fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Stops the feeder and waits up to `within` for it to end (one page at most); `false`
    /// (and a warning) if it is still applying one then.
    pub(crate) async fn join(&self, within: Duration) -> bool {
        self.stop();
        let task = self
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let Some(task) = task else { return true };
        let ended = tokio::time::timeout(within, task).await.is_ok();
        if !ended {
            tracing::warn!(
                "the read model's feeder was still applying a page after the shutdown grace \
                 period; stopping anyway (the next start resumes after the last whole page)"
            );
        }
        ended
    }
}

/// The task that keeps the read model current.
struct Feeder {
    dir: PathBuf,
    syncer: Arc<Syncer<SyncPage>>,
    model: Arc<ReadModel>,
    catalog: watch::Receiver<CatalogState>,
    /// Becomes `true` at shutdown: checked between pages and between passes.
    stop: watch::Receiver<bool>,
    /// Open between passes; `None` at startup and after a failure, so they are opened again.
    files: Option<Files>,
    /// The recent adds' source, and when they were counted.
    usage: adds::Usage,
    /// The README files full-text search reads, when the server has a file store.
    readmes: Option<ReadmeFiles>,
}

impl Feeder {
    /// A pass now and after every change, until shutdown (or the catalog watcher is gone).
    /// A failed pass is retried after [`backoff`]; the first retry comes sooner if the
    /// catalog changes, later ones only when their wait is over, so a busy catalog cannot
    /// make a persistent failure spin.
    async fn run(mut self) {
        loop {
            let result = self.pass().await;
            if *self.stop.borrow() {
                return;
            }
            match result {
                Ok(()) => {
                    self.model.recovered();
                    tokio::select! {
                        changed = self.catalog.changed() => {
                            if changed.is_err() { return }
                            self.model.catching_up();
                        }
                        () = tokio::time::sleep(adds::RECOUNT_EVERY) => {}
                        _ = self.stop.changed() => return,
                    }
                }
                Err(error) => {
                    let error = format!("{error:#}");
                    let failures = self.model.failed(error.clone());
                    let wait = backoff(failures);
                    tracing::warn!(
                        error,
                        failures,
                        retry_in = ?wait,
                        "updating the read model failed; the API serves what it has, retrying"
                    );
                    self.files = None;
                    let catalog = &mut self.catalog;
                    let change = async move {
                        if failures == 1 {
                            catalog.changed().await.is_ok()
                        } else {
                            std::future::pending().await
                        }
                    };
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        alive = change => if !alive { return },
                        _ = self.stop.changed() => return,
                    }
                }
            }
        }
    }

    /// One pass up to date with the catalog's current state (or until shutdown), on the
    /// blocking pool.
    async fn pass(&mut self) -> anyhow::Result<()> {
        let state = self.catalog.borrow_and_update().clone();
        let (dir, syncer, model, stop) = (
            self.dir.clone(),
            Arc::clone(&self.syncer),
            Arc::clone(&self.model),
            self.stop.clone(),
        );
        let mut files = self.files.take();
        let mut usage = self.usage.clone();
        let readmes = self.readmes.clone();
        let (files, usage, result) = exosphere_task::blocking(move || {
            let source = Source {
                syncer: &syncer,
                usage: &mut usage,
                readmes: readmes.as_ref(),
            };
            let result = catch_up(&mut files, &dir, source, &model, &state, &stop);
            (files, usage, result)
        })
        .await?;
        self.files = files;
        self.usage = usage;
        result
    }
}

/// What a pass reads: the catalog's pages, its usage for the recent adds, and the README
/// files of the file store, if any.
struct Source<'a> {
    syncer: &'a Syncer<SyncPage>,
    usage: &'a mut adds::Usage,
    readmes: Option<&'a ReadmeFiles>,
}

/// The index files of a read model: the one pages are applied to, and its generation.
struct Files {
    writer: Index,
    generation: u64,
}

/// Applies pages until the index is up to date with the catalog, then serves it. Opens the
/// files first when `files` is `None` (at startup, after a failure), serving the newest
/// complete one at once. Returns early, between pages, once `stop` is set (shutdown); a
/// page loop the catalog's pages would not end (a token that does not move, endless empty
/// pages, more than [`MAX_PAGES_PER_PASS`]) fails instead.
fn catch_up(
    files: &mut Option<Files>,
    dir: &Path,
    source: Source<'_>,
    model: &ReadModel,
    state: &CatalogState,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let files = match files {
        Some(files) => files,
        None => files.insert(open(dir, model)?),
    };
    let options = Value::Object(serde_json::Map::new());
    let first = files.writer.sync_token()?;
    let mut guard = PageGuard::new(
        first.unwrap_or_else(|| FIRST_TOKEN.to_owned()),
        MAX_EMPTY_PAGES,
    );
    for _ in 0..MAX_PAGES_PER_PASS {
        if *stop.borrow() {
            return Ok(());
        }
        let token = files.writer.sync_token()?;
        let token: Value = serde_json::from_str(token.as_deref().unwrap_or(FIRST_TOKEN))
            .context("the read model's stored sync token is not JSON")?;
        let answer = source.syncer.answer(&token, &options)?;
        let mut inflated = String::new();
        let page = decode_page(answer.text.as_ref(), &mut inflated, usize::MAX)?;
        guard.before_apply(&page)?;
        let served = model.served_path();
        if page.reset_data && served.as_deref() == Some(files.writer.path()) {
            let generation = files.generation + 1;
            tracing::info!(
                generation,
                "a new data epoch: building the next read model file"
            );
            files.writer = Index::rebuild(&generation_path(dir, generation))?;
            files.generation = generation;
        }
        let applied = exosphere_index::SyncPage {
            reset_data: page.reset_data,
            up_to_date: page.up_to_date,
            sync_token: page.sync_token,
            collections: page.collections.clone(),
        };
        let outcome = match source.readmes {
            Some(readmes) => files.writer.apply_page_with_readmes(&applied, readmes)?,
            None => files.writer.apply_page(&applied)?,
        };
        if outcome.refreshed > 0 {
            model.rewritten();
        }
        model.page_applied(files.writer.path(), page.sync_token.get().to_owned());
        if page.up_to_date {
            if let Err(error) = source.usage.refresh(&mut files.writer, model) {
                // The catalog is current without them: serve it, keep the adds counted
                // before, and count again at the next pass.
                tracing::warn!(
                    error = format!("{error:#}"),
                    "counting the recent adds failed"
                );
            }
            files.writer.checkpoint()?;
            model.publish(files.writer.path(), Some(state.head_seq))?;
            if served.as_deref() != Some(files.writer.path()) {
                tracing::info!(
                    generation = files.generation,
                    "serving a new read model file"
                );
                remove_older(dir, files.generation);
            }
            return Ok(());
        }
        guard.after_apply(&page)?;
    }
    anyhow::bail!(
        "the catalog's pages did not end within {MAX_PAGES_PER_PASS} pages; the next try \
         resumes after the last one applied (if this repeats, report it with the server's log)"
    )
}

/// Opens the newest generation in `dir` for writing, and serves the newest complete one
/// (queries need not wait for the first catch-up); older files are removed.
///
/// Only a file that is damaged or of a newer schema is built again, and never the one being
/// served: that one goes on answering while the next generation is built beside it. Any
/// other error (a busy or unreadable file, a full disk) is returned for the pass to retry,
/// with the files left as they are.
fn open(dir: &Path, model: &ReadModel) -> anyhow::Result<Files> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the read model's directory {}", dir.display()))?;
    let mut generations = generations(dir)?;
    generations.sort_unstable();
    let newest = generations.last().copied().unwrap_or(1);
    let (writer, generation) = match Index::open(&generation_path(dir, newest)) {
        Ok(writer) => (writer, newest),
        Err(error @ (IndexError::Corrupt { .. } | IndexError::NewerSchema { .. })) => {
            let served = model.served_path();
            let generation = if served.as_deref() == Some(&*generation_path(dir, newest)) {
                newest + 1
            } else {
                newest
            };
            tracing::warn!(
                %error,
                generation,
                "the read model's file cannot be used; building it again"
            );
            (
                Index::rebuild(&generation_path(dir, generation))?,
                generation,
            )
        }
        Err(error) => return Err(error.into()),
    };
    if model.served_path().is_none() {
        for &candidate in generations.iter().rev() {
            if model
                .publish(&generation_path(dir, candidate), None)
                .is_ok()
            {
                remove_older(dir, candidate);
                break;
            }
        }
    }
    Ok(Files { writer, generation })
}

/// `dir/index-<generation>.sqlite3`.
fn generation_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("index-{generation}.sqlite3"))
}

/// The generations of the index files in `dir`.
fn generations(dir: &Path) -> anyhow::Result<Vec<u64>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list the read model's directory {}", dir.display()))?;
    Ok(entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter_map(|name| {
            name.strip_prefix("index-")?
                .strip_suffix(".sqlite3")?
                .parse()
                .ok()
        })
        .collect())
}

/// Removes the files of generations before `keep` (a failure is logged: they only take
/// space).
fn remove_older(dir: &Path, keep: u64) {
    let Ok(older) = generations(dir) else {
        return;
    };
    for generation in older.into_iter().filter(|&g| g < keep) {
        for suffix in ["", "-wal", "-shm"] {
            let mut file = generation_path(dir, generation).into_os_string();
            file.push(suffix);
            match std::fs::remove_file(&file) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => {
                    tracing::warn!(%error, file = ?file, "cannot remove an old read model file");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_are_read_from_file_names() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "index-1.sqlite3",
            "index-3.sqlite3",
            "index-3.sqlite3-wal",
            "other",
        ] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        let mut found = generations(dir.path()).unwrap();
        found.sort_unstable();
        assert_eq!(found, [1, 3]);
        remove_older(dir.path(), 3);
        assert_eq!(generations(dir.path()).unwrap(), [3]);
        assert!(dir.path().join("index-3.sqlite3-wal").exists());
    }

    #[test]
    fn retries_back_off_to_five_minutes() {
        let waits: Vec<u64> = [1, 2, 3, 9, 10, 1000]
            .into_iter()
            .map(|failures| backoff(failures).as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 256, 300, 300]);
    }

    /// A SQLite catalog in `dir` holding the small synthetic catalog, a syncer over it in
    /// pages of 5 records per collection, and the catalog's state.
    fn small_catalog(dir: &Path) -> (Arc<dyn CatalogStore>, Arc<Syncer<SyncPage>>, CatalogState) {
        use exosphere_catalog::CatalogStore as _;
        let store = Arc::new(exosphere_catalog_sqlite::open_sqlite(dir).unwrap());
        let mut dump = Vec::new();
        exosphere_synth::generate(exosphere_synth::Scale::Small, 1, &mut dump).unwrap();
        exosphere_catalog::dump::import(&*store, std::io::Cursor::new(dump)).unwrap();
        let state = store.state().unwrap();
        let paging = exosphere_catalog::sync::Paging {
            page_size: 5,
            ..Default::default()
        };
        let syncer = Syncer::new(Arc::clone(&store) as Arc<dyn CatalogStore>, paging, 1 << 20);
        (store, Arc::new(syncer), state)
    }

    #[test]
    fn a_pass_stops_between_pages_at_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let (store, syncer, state) = small_catalog(&dir.path().join("data"));
        let mut usage = adds::Usage::new(store);
        let model_dir = dir.path().join("read-model");
        let model = ReadModel::new();
        let (stop, stopping) = watch::channel(true);
        let mut files = None;
        let source = Source {
            syncer: &syncer,
            usage: &mut usage,
            readmes: None,
        };
        catch_up(&mut files, &model_dir, source, &model, &state, &stopping).unwrap();
        let writer = &files.as_ref().unwrap().writer;
        assert_eq!(writer.sync_token().unwrap(), None, "a page was applied");
        assert_eq!(model.served_path(), None);

        stop.send_replace(false);
        let source = Source {
            syncer: &syncer,
            usage: &mut usage,
            readmes: None,
        };
        catch_up(&mut files, &model_dir, source, &model, &state, &stopping).unwrap();
        let freshness = model.freshness().expect("served once up to date");
        assert_eq!(freshness.head, Some(state.head_seq));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_feeder_ends_when_stopped_while_the_catalog_watcher_lives() {
        let dir = tempfile::tempdir().unwrap();
        let (store, syncer, state) = small_catalog(&dir.path().join("data"));
        let (_catalog, watched) = watch::channel(state);
        let (_model, feeding) = start(dir.path().join("read-model"), store, syncer, watched, None);
        assert!(feeding.join(Duration::from_secs(120)).await);
    }

    /// Writes a complete `index-1.sqlite3` in `dir`, returning its path.
    fn first_generation(dir: &Path) -> PathBuf {
        let dump =
            r#"{"collection":"packages","doc":{"_id":"p1","name":"a","lastUpdated":{"$date":1}}}"#;
        let path = generation_path(dir, 1);
        Index::open(&path).unwrap().load_dump(dump, 10).unwrap();
        path
    }

    #[test]
    fn an_error_that_is_not_damage_keeps_the_file_for_the_retry() {
        let dir = tempfile::tempdir().unwrap();
        let path = first_generation(dir.path());
        let model = ReadModel::new();
        let holder = rusqlite::Connection::open(&path).unwrap();
        holder
            .execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE;")
            .unwrap();

        let error = open(dir.path(), &model).err().expect("the file is locked");
        assert!(format!("{error:#}").contains("locked"), "{error:#}");
        assert!(path.exists(), "a locked file was deleted");
        assert_eq!(generations(dir.path()).unwrap(), [1]);

        drop(holder);
        let files = open(dir.path(), &model).unwrap();
        assert_eq!(files.generation, 1);
        assert!(files.writer.is_ready().unwrap(), "the file was built again");
        assert_eq!(model.served_path(), Some(path));
    }

    #[test]
    fn a_damaged_served_file_answers_while_the_next_generation_is_built() {
        let dir = tempfile::tempdir().unwrap();
        let path = first_generation(dir.path());
        let model = ReadModel::new();
        model.publish(&path, Some(1)).unwrap();
        rusqlite::Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();

        let files = open(dir.path(), &model).unwrap();
        assert_eq!(files.generation, 2);
        assert!(!files.writer.is_ready().unwrap());
        assert!(path.exists(), "the served file was deleted");
        assert_eq!(model.served_path(), Some(path));
        let (ready, _) = model.query(Index::is_ready).unwrap();
        assert!(ready.unwrap());
    }
}
