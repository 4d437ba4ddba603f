//! The read model as the API sees it: reader connections to the newest complete index
//! file, and how current that file is. Whoever fills the index (the server's feeder) says
//! so with [`ReadModel::publish`] and [`ReadModel::catching_up`]; the API only reads.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use exosphere_index::{Index, IndexError};

/// How many idle reader connections a served index file keeps for the next queries, until
/// [`ReadModel::keep_idle_readers`] says how many queries run at once.
const IDLE_READERS: usize = 4;

/// The index files the API answers from, swapped whole when a rebuilt one is complete.
#[derive(Debug, Default)]
pub struct ReadModel {
    served: Mutex<Option<Arc<Served>>>,
    failing: Mutex<Option<Failing>>,
    /// Idle reader connections kept; 0 stands for [`IDLE_READERS`].
    idle_readers: AtomicUsize,
    /// The stamp of the recent adds last stored in the index (see [`Freshness::usage`]).
    usage: AtomicU64,
    /// Times the feeder rewrote derived rows (see [`Freshness::rewrites`]).
    rewrites: AtomicU64,
    /// The server keeps no read model (`--read-model off`): nothing is ever published.
    off: bool,
}

/// Passes of the feeder failing in a row, for `/healthz`: a read model that stopped
/// following the catalog is visible there, not only in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failing {
    /// Passes that failed since the last one that succeeded.
    pub failures: u32,
    /// The last failure's message.
    pub last_error: String,
    /// When the first of them failed.
    pub since: std::time::SystemTime,
}

/// How current the served index is: its sync token (which names the catalog's data epoch
/// and the last record of each collection it holds, so it changes with every change the
/// index applies), the catalog head it was last brought up to date with, and whether the
/// catalog has moved on since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Freshness {
    /// The served index's sync token, as stored with its last page.
    pub token: String,
    /// The catalog's head sequence the index was last up to date with; `None` when served
    /// from a file of an earlier run before the first catch-up.
    pub head: Option<u64>,
    /// The catalog has changed since, and the feeder is applying the change.
    pub catching_up: bool,
    /// The stamp of the recent adds the index holds (search ranks and lists by them, and
    /// they change without the sync token): what [`ReadModel::usage_counted`] was last told.
    pub usage: u64,
    /// How many times the feeder rewrote what the index derives from its records
    /// ([`ReadModel::rewritten`]): that may change what answers show without a new sync
    /// token (the README texts searched after an upgrade of the index, the dates boosts
    /// count from), so each rewrite starts answers afresh.
    pub rewrites: u64,
}

/// One complete index file being served, with its idle reader connections.
#[derive(Debug)]
struct Served {
    path: PathBuf,
    idle: Mutex<Vec<Index>>,
    freshness: Mutex<Freshness>,
}

impl Served {
    /// Runs `work` on an idle reader connection (or a new one), kept for the next caller
    /// while fewer than `keep` are idle.
    fn with_reader<T>(&self, keep: usize, work: impl FnOnce(&Index) -> T) -> Result<T, IndexError> {
        let reader = lock(&self.idle).pop();
        let reader = match reader {
            Some(reader) => reader,
            None => Index::open_read_only(&self.path)?,
        };
        let answer = work(&reader);
        let mut idle = lock(&self.idle);
        if idle.len() < keep {
            idle.push(reader);
        }
        Ok(answer)
    }
}

/// Why the read model cannot answer a query.
#[derive(Debug)]
pub enum QueryError {
    /// No index file is complete yet: the first build is running.
    Building,
    /// A reader connection to the served file could not be opened.
    Index(IndexError),
}

impl From<IndexError> for QueryError {
    fn from(error: IndexError) -> Self {
        QueryError::Index(error)
    }
}

impl ReadModel {
    /// A read model with nothing to serve yet: queries answer [`QueryError::Building`]
    /// until the first [`publish`](Self::publish).
    pub fn new() -> Arc<ReadModel> {
        Arc::new(ReadModel::default())
    }

    /// Serves the complete index at `path`, up to date with the catalog at `head` (`None`:
    /// a file of an earlier run, served while it catches up). Publishing the file already
    /// served only updates its freshness; another file replaces it (queries already running
    /// finish on the old one), and that file must answer [`Index::is_ready`], or it is
    /// refused and the old one stays. Blocking.
    pub fn publish(&self, path: &Path, head: Option<u64>) -> Result<(), IndexError> {
        let fresh = |token: Option<String>| Freshness {
            token: token.unwrap_or_default(),
            head,
            catching_up: head.is_none(),
            usage: 0,
            rewrites: 0,
        };
        if let Some(served) = self.current().filter(|served| served.path == path) {
            let token = served.with_reader(self.idle_readers(), Index::sync_token)??;
            *lock(&served.freshness) = fresh(token);
            return Ok(());
        }
        let first = Index::open_read_only(path)?;
        if !first.is_ready()? {
            return Err(IndexError::Unfinished {
                path: path.to_owned(),
            });
        }
        let freshness = fresh(first.sync_token()?);
        let served = Arc::new(Served {
            path: path.to_owned(),
            idle: Mutex::new(vec![first]),
            freshness: Mutex::new(freshness),
        });
        *lock(&self.served) = Some(served);
        Ok(())
    }

    /// Notes that the file at `path` committed a page with `token`: if it is the served
    /// file, its readers see that page from now on, so the answers' tags must change with
    /// it (a tag taken before a query is never newer than the body it goes with, so a
    /// client's copy is never confirmed once the file has moved on). Another file changes
    /// nothing.
    pub fn page_applied(&self, path: &Path, token: String) {
        if let Some(served) = self.current().filter(|served| served.path == path) {
            lock(&served.freshness).token = token;
        }
    }

    /// Notes that the catalog moved past what the served index holds, until the next
    /// [`publish`](Self::publish).
    pub fn catching_up(&self) {
        if let Some(served) = self.current() {
            lock(&served.freshness).catching_up = true;
        }
    }

    /// The read model of a server that keeps none: the API answers that it is turned off
    /// rather than that it is building.
    pub fn off() -> Arc<ReadModel> {
        Arc::new(ReadModel {
            off: true,
            ..ReadModel::default()
        })
    }

    /// Whether the server keeps no read model ([`ReadModel::off`]).
    pub fn is_off(&self) -> bool {
        self.off
    }

    /// Keeps up to `readers` idle reader connections: as many as queries may run at once,
    /// so a busy API reuses them instead of opening one per request.
    pub fn keep_idle_readers(&self, readers: usize) {
        self.idle_readers.store(readers, Ordering::Relaxed);
    }

    /// How many idle reader connections are kept.
    fn idle_readers(&self) -> usize {
        match self.idle_readers.load(Ordering::Relaxed) {
            0 => IDLE_READERS,
            readers => readers,
        }
    }

    /// Records a failed pass with its error; returns how many failed in a row.
    pub fn failed(&self, error: String) -> u32 {
        let mut failing = lock(&self.failing);
        let failing = failing.get_or_insert_with(|| Failing {
            failures: 0,
            last_error: String::new(),
            since: std::time::SystemTime::now(),
        });
        failing.failures += 1;
        failing.last_error = error;
        failing.failures
    }

    /// Records a pass that succeeded, ending a run of failures.
    pub fn recovered(&self) {
        *lock(&self.failing) = None;
    }

    /// The failures in a row of the feeder's passes, if the last one failed.
    pub fn failing(&self) -> Option<Failing> {
        lock(&self.failing).clone()
    }

    /// The index file being served, if any.
    pub fn served_path(&self) -> Option<PathBuf> {
        self.current().map(|served| served.path.clone())
    }

    /// How current the served index is; `None` while none is complete.
    pub fn freshness(&self) -> Option<Freshness> {
        self.current().map(|served| self.freshness_of(&served))
    }

    /// Notes that the feeder rewrote rows the index derives from its records (a page's
    /// `refreshed` packages), so that every answer gets a new entity tag.
    pub fn rewritten(&self) {
        self.rewrites.fetch_add(1, Ordering::Relaxed);
    }

    /// Notes that the index now holds recent adds stamped `stamp` (the same counts, the
    /// same stamp), so that answers ranked or listed by them get new entity tags.
    pub fn usage_counted(&self, stamp: u64) {
        self.usage.store(stamp, Ordering::Relaxed);
    }

    fn freshness_of(&self, served: &Served) -> Freshness {
        Freshness {
            usage: self.usage.load(Ordering::Relaxed),
            rewrites: self.rewrites.load(Ordering::Relaxed),
            ..lock(&served.freshness).clone()
        }
    }

    /// Runs `query` on a reader connection of the served index, returning its answer and
    /// the freshness it was taken at: read before the query, so a page committed meanwhile
    /// makes the tag older than the body (the next request gets a new one), never newer.
    /// Blocking: run it on the blocking pool.
    pub fn query<T>(&self, query: impl FnOnce(&Index) -> T) -> Result<(T, Freshness), QueryError> {
        let served = self.current().ok_or(QueryError::Building)?;
        let freshness = self.freshness_of(&served);
        Ok((served.with_reader(self.idle_readers(), query)?, freshness))
    }

    fn current(&self) -> Option<Arc<Served>> {
        lock(&self.served).clone()
    }
}

/// Locks `mutex`; a panic while it was held left nothing half-written (each guarded value is
/// replaced whole), so a poisoned lock is used as it is.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_complete_files_are_served() {
        let dir = tempfile::tempdir().unwrap();
        let model = ReadModel::new();
        assert!(matches!(
            model.query(|index| index.is_ready()),
            Err(QueryError::Building)
        ));
        let path = dir.path().join("index.sqlite3");
        Index::open(&path).unwrap();
        assert!(model.publish(&path, Some(7)).is_err());
        assert_eq!(model.freshness(), None);

        let dump =
            r#"{"collection":"packages","doc":{"_id":"p1","name":"a","lastUpdated":{"$date":1}}}"#;
        Index::open(&path).unwrap().load_dump(dump, 10).unwrap();
        model.publish(&path, None).unwrap();
        assert!(model.freshness().unwrap().catching_up);
        model.publish(&path, Some(7)).unwrap();
        model.catching_up();
        assert!(model.freshness().unwrap().catching_up);
        model.publish(&path, Some(8)).unwrap();
        let (ready, freshness) = model.query(|index| index.is_ready()).unwrap();
        assert!(ready.unwrap());
        assert_eq!(freshness.head, Some(8));
        assert!(!freshness.catching_up);
        assert!(freshness.token.contains("exosphere-dump"), "{freshness:?}");

        model.page_applied(&dir.path().join("other.sqlite3"), "{\"other\":1}".into());
        assert!(model.freshness().unwrap().token.contains("exosphere-dump"));
        model.page_applied(&path, "{\"next\":1}".into());
        assert_eq!(model.freshness().unwrap().token, "{\"next\":1}");
    }

    #[test]
    fn failures_in_a_row_are_counted_until_a_pass_succeeds() {
        let model = ReadModel::new();
        assert_eq!(model.failing(), None);
        assert_eq!(model.failed("first".into()), 1);
        let since = model.failing().unwrap().since;
        assert_eq!(model.failed("second".into()), 2);
        let failing = model.failing().unwrap();
        assert_eq!(
            (failing.failures, failing.last_error.as_str(), failing.since),
            (2, "second", since)
        );
        model.recovered();
        assert_eq!(model.failing(), None);
    }
}
