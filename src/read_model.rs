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
//! a failing pass is logged and retried, and never stops the server or its sync.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use exosphere_catalog::{CatalogState, Syncer};
use exosphere_index::{Index, IndexError};
use exosphere_sync_client::{FIRST_TOKEN, decode_page};
use exosphere_web::ReadModel;
use serde_json::Value;
use tokio::sync::watch;
use tracing::Instrument as _;

use crate::service::SyncPage;

/// How long a failed pass waits before the next try (sooner if the catalog changes).
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Starts feeding the read model kept in `dir` from `syncer`'s pages, a pass at startup
/// and one after each change `catalog` reports; returns the model the API reads. Call it
/// inside a tokio runtime.
pub fn start(
    dir: PathBuf,
    syncer: Arc<Syncer<SyncPage>>,
    catalog: watch::Receiver<CatalogState>,
) -> Arc<ReadModel> {
    let model = ReadModel::new();
    let span = tracing::info_span!("read_model", dir = %dir.display());
    let feeder = Feeder {
        dir,
        syncer,
        model: Arc::clone(&model),
        catalog,
        files: None,
    };
    exosphere_task::spawn(feeder.run().instrument(span));
    model
}

/// The task that keeps the read model current.
struct Feeder {
    dir: PathBuf,
    syncer: Arc<Syncer<SyncPage>>,
    model: Arc<ReadModel>,
    catalog: watch::Receiver<CatalogState>,
    /// Open between passes; `None` at startup and after a failure, so they are opened again.
    files: Option<Files>,
}

impl Feeder {
    /// A pass now and after every change, until the catalog watcher is gone (shutdown).
    async fn run(mut self) {
        loop {
            if let Err(error) = self.pass().await {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "updating the read model failed; the API serves what it has, retrying"
                );
                self.files = None;
                tokio::select! {
                    () = tokio::time::sleep(RETRY_AFTER) => {}
                    changed = self.catalog.changed() => if changed.is_err() { return },
                }
                continue;
            }
            if self.catalog.changed().await.is_err() {
                return;
            }
            self.model.catching_up();
        }
    }

    /// One pass up to date with the catalog's current state, on the blocking pool.
    async fn pass(&mut self) -> anyhow::Result<()> {
        let state = self.catalog.borrow_and_update().clone();
        let (dir, syncer, model) = (
            self.dir.clone(),
            Arc::clone(&self.syncer),
            Arc::clone(&self.model),
        );
        let mut files = self.files.take();
        let (files, result) = exosphere_task::blocking(move || {
            let result = catch_up(&mut files, &dir, &syncer, &model, &state);
            (files, result)
        })
        .await?;
        self.files = files;
        result
    }
}

/// The index files of a read model: the one pages are applied to, and its generation.
struct Files {
    writer: Index,
    generation: u64,
}

/// Applies pages until the index is up to date with the catalog, then serves it. Opens the
/// files first when `files` is `None` (at startup, after a failure), serving the newest
/// complete one at once.
fn catch_up(
    files: &mut Option<Files>,
    dir: &Path,
    syncer: &Syncer<SyncPage>,
    model: &ReadModel,
    state: &CatalogState,
) -> anyhow::Result<()> {
    let files = match files {
        Some(files) => files,
        None => files.insert(open(dir, model)?),
    };
    let options = Value::Object(serde_json::Map::new());
    loop {
        let token = files.writer.sync_token()?;
        let token: Value = serde_json::from_str(token.as_deref().unwrap_or(FIRST_TOKEN))
            .context("the read model's stored sync token is not JSON")?;
        let answer = syncer.answer(&token, &options)?;
        let mut inflated = String::new();
        let page = decode_page(answer.text.as_ref(), &mut inflated, usize::MAX)?;
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
        files.writer.apply_page(&exosphere_index::SyncPage {
            reset_data: page.reset_data,
            up_to_date: page.up_to_date,
            sync_token: page.sync_token,
            collections: page.collections,
        })?;
        if page.up_to_date {
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
    }
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
