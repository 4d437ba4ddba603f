//! The newest catalog head a server has seen, kept in its data directory
//! ([`SEEN_HEAD_FILE`]) so that it survives restarts: a server started on a database that
//! was restored from a backup, or failed over to a standby that lacked the last commits,
//! finds the catalog's head below the recorded one in the same epoch and starts a new data
//! epoch ([`HeadFile::check_at_startup`]) instead of handing out again sequence numbers
//! clients already hold (the store's "sequence contract").
//!
//! What is compared is the epoch and the head, not the catalog's name: an epoch is random
//! and only ever continued by copies of its catalog, so a lower head in the same epoch is a
//! step back whatever the database is called now (a standby promoted on another host, a
//! copy that lags its source). The file also names the catalog (as logs name it: the
//! PostgreSQL database and its host, or SQLite's directory), for the warning. A file of
//! another epoch is only replaced; a missing or unreadable file is replaced too, with a
//! warning. With several servers on one
//! database, each keeps its own file: the first to restart after a restore starts the new
//! epoch, and the others then find another epoch and only update theirs.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use exosphere_catalog::{CatalogState, CatalogStore};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// The file's name in the data directory.
pub const SEEN_HEAD_FILE: &str = "seen-head.json";

/// What the file records: a catalog, and the newest epoch and head `seq` seen of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenHead {
    /// The catalog, as logs name it (never a password): for the warning, not compared.
    pub catalog: String,
    /// Its data epoch.
    pub epoch: String,
    /// The highest head `seq` seen in that epoch.
    pub head_seq: u64,
}

/// How the catalog's state compares with what the file recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing comparable was recorded (no file, another epoch), or the head is not below
    /// the recorded one: the catalog is used as it is.
    Fine,
    /// Same epoch, and the head is below the recorded one: the database went back in
    /// time.
    WentBack {
        /// The head `seq` recorded before.
        seen: u64,
    },
}

impl SeenHead {
    /// What was seen of `catalog` at `state`.
    pub fn of(catalog: &str, state: &CatalogState) -> Self {
        SeenHead {
            catalog: catalog.to_owned(),
            epoch: state.epoch.clone(),
            head_seq: state.head_seq,
        }
    }

    /// How `state` compares with this record (by epoch and head only; see the module doc).
    pub fn judge(&self, state: &CatalogState) -> Verdict {
        if self.epoch == state.epoch && state.head_seq < self.head_seq {
            Verdict::WentBack {
                seen: self.head_seq,
            }
        } else {
            Verdict::Fine
        }
    }

    /// This record advanced by `state`: the same epoch keeps the higher head, another epoch
    /// replaces it.
    fn advanced(&self, state: &CatalogState) -> Self {
        if self.epoch == state.epoch && state.head_seq < self.head_seq {
            self.clone()
        } else {
            SeenHead::of(&self.catalog, state)
        }
    }
}

/// One data directory's [`SEEN_HEAD_FILE`], for one catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadFile {
    path: PathBuf,
    catalog: String,
}

impl HeadFile {
    /// The file in `data_dir`, for the catalog named `catalog` (as
    /// `commands::catalog_location` names it).
    pub fn new(data_dir: &Path, catalog: String) -> Self {
        HeadFile {
            path: data_dir.join(SEEN_HEAD_FILE),
            catalog,
        }
    }

    /// The record in the file; `None`, with a warning, when it cannot be read or parsed,
    /// and without one when there is no file.
    pub fn read(&self) -> Option<SeenHead> {
        let text = match std::fs::read(&self.path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
            Err(error) => {
                tracing::warn!(path = %self.path.display(), %error,
                    "cannot read the seen-head file; it is replaced");
                return None;
            }
        };
        serde_json::from_slice(&text)
            .inspect_err(|error| {
                tracing::warn!(path = %self.path.display(), %error,
                    "the seen-head file does not parse; it is replaced");
            })
            .ok()
    }

    /// Replaces the file with `seen`, atomically (a temporary file renamed over it).
    pub fn write(&self, seen: &SeenHead) -> anyhow::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let mut temp = tempfile::Builder::new()
            .prefix(".seen-head-")
            .tempfile_in(dir)
            .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
        temp.write_all(&serde_json::to_vec(seen)?)?;
        temp.as_file().sync_all()?;
        temp.persist(&self.path)
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        Ok(())
    }

    /// At startup, before serving: when the catalog's head went back below the one this
    /// file recorded in the same epoch, starts a new data epoch, so that every client gets
    /// `resetData` once instead of skipping the records that reuse its numbers. Then
    /// records the catalog's state (a failure to is logged, not returned). Returns the state
    /// the server starts with.
    pub fn check_at_startup(&self, store: &dyn CatalogStore) -> anyhow::Result<CatalogState> {
        let mut state = store
            .state()
            .context("cannot read the catalog's epoch and head")?;
        if let Some(seen) = self.read()
            && let Verdict::WentBack { seen: seen_head } = seen.judge(&state)
        {
            store.write(&mut |writer| writer.start_epoch()).context(
                "the catalog's head went back since this server last ran, and a new data \
                     epoch cannot be started; once the database accepts writes, start the \
                     server again or run `exosphere epoch new`",
            )?;
            let old_epoch = std::mem::take(&mut state.epoch);
            state = store.state().context("cannot read the new data epoch")?;
            tracing::warn!(
                catalog = %self.catalog,
                seen_in = %seen.catalog,
                seen_head,
                head_seq = state.head_seq,
                old_epoch,
                new_epoch = %state.epoch,
                "the catalog's head sequence went back since this server last ran (a database \
                 restored from a backup or failed over to a standby that lacked the last \
                 commits); started a new data epoch, so every client resyncs once"
            );
        }
        self.record(&state);
        Ok(state)
    }

    /// At shutdown, after the last request: records the catalog's state as it is now, which
    /// the running server's copy may trail by up to a second and a watch interval (a
    /// failure to read or write it is logged).
    pub fn record_at_shutdown(&self, store: &dyn CatalogStore) {
        match store.state() {
            Ok(state) => self.record_seen(&self.after(self.read().as_ref(), &state)),
            Err(error) => tracing::warn!(%error,
                "cannot read the catalog's head at shutdown; the file keeps the last one recorded"),
        }
    }

    /// What the file records after `recorded` once the catalog is at `state`: `recorded`
    /// advanced by it, or `state` itself when nothing was recorded.
    fn after(&self, recorded: Option<&SeenHead>, state: &CatalogState) -> SeenHead {
        recorded.map_or_else(
            || SeenHead::of(&self.catalog, state),
            |seen| seen.advanced(state),
        )
    }

    /// Replaces the file with `state`, logging a failure rather than returning it.
    fn record(&self, state: &CatalogState) {
        self.record_seen(&SeenHead::of(&self.catalog, state));
    }

    /// Replaces the file with `seen`, logging a failure rather than returning it.
    fn record_seen(&self, seen: &SeenHead) {
        if let Err(error) = self.write(seen) {
            tracing::warn!(error = %format!("{error:#}"),
                "cannot record the catalog's head; a restore will not be noticed at the next start");
        }
    }

    /// Keeps the file up to date with the catalog's state as the watcher publishes it,
    /// writing at most once per `every`; ends when the watcher does. A failed write is
    /// logged and retried with the next change.
    pub async fn keep(self, mut states: watch::Receiver<CatalogState>, every: Duration) {
        let file = Arc::new(self);
        let mut written = file.read();
        while states.changed().await.is_ok() {
            let state = states.borrow_and_update().clone();
            if state.epoch.is_empty() {
                continue; // The watcher's stand-in while the state cannot be read.
            }
            let seen = file.after(written.as_ref(), &state);
            if written.as_ref() != Some(&seen) {
                let job_file = Arc::clone(&file);
                let record = seen.clone();
                match exosphere_task::blocking(move || job_file.write(&record)).await {
                    Ok(Ok(())) => written = Some(seen),
                    Ok(Err(error)) => {
                        tracing::warn!(error = %format!("{error:#}"), "cannot record the catalog's head");
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot record the catalog's head");
                    }
                }
            }
            tokio::time::sleep(every).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(epoch: &str, head_seq: u64) -> CatalogState {
        CatalogState {
            epoch: epoch.to_owned(),
            head_seq,
            ..CatalogState::default()
        }
    }

    #[test]
    fn only_a_lower_head_of_the_same_epoch_went_back() {
        let seen = SeenHead::of("db A", &state("e1", 10));
        assert_eq!(seen.judge(&state("e1", 7)), Verdict::WentBack { seen: 10 });
        assert_eq!(seen.judge(&state("e1", 10)), Verdict::Fine);
        assert_eq!(seen.judge(&state("e1", 12)), Verdict::Fine);
        assert_eq!(seen.judge(&state("e2", 3)), Verdict::Fine);
    }

    #[test]
    fn advancing_keeps_the_highest_head_of_an_epoch() {
        let seen = SeenHead::of("db", &state("e1", 10));
        assert_eq!(seen.advanced(&state("e1", 4)), seen);
        assert_eq!(seen.advanced(&state("e1", 11)).head_seq, 11);
        assert_eq!(
            seen.advanced(&state("e2", 2)),
            SeenHead::of("db", &state("e2", 2))
        );
    }

    #[test]
    fn the_file_round_trips_and_a_bad_one_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let file = HeadFile::new(dir.path(), "db".to_owned());
        assert_eq!(file.read(), None);
        let seen = SeenHead::of("db", &state("e1", 5));
        file.write(&seen).unwrap();
        assert_eq!(file.read(), Some(seen));
        std::fs::write(dir.path().join(SEEN_HEAD_FILE), b"{not json").unwrap();
        assert_eq!(file.read(), None);
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file is left behind");
    }
}
