//! The `/stats/v1/<day>` files (spec §7.2), rendered and kept.
//!
//! A day can be large (one row per `name@version` added that day), so a file is never held
//! in memory: it is rendered from one consistent read of the store into an unnamed
//! temporary file (in `TMPDIR`), then read from there in small chunks. At most
//! [`StatsFilesConfig::max_renders`] days render at once (further requests wait for a
//! turn), and finished days stay rendered for [`StatsFilesConfig::cache_ttl`] within
//! [`StatsFilesConfig::cache_size`] bytes, so many readers of the same day cost one render.
//! The server's own rollup job forgets the days it rolls up again ([`StatsFiles::forget`]);
//! a rollup or import by another process shows once the kept rendering expires.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::os::unix::fs::FileExt as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Bytes;
use exosphere_catalog::stats::push_stats_line;
use exosphere_catalog::{CatalogStore, StoreError};
use futures_util::Stream;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// How `/stats/v1` files are rendered and kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsFilesConfig {
    /// Days rendered at once; further requests wait for a turn. Each render holds one
    /// store reader and a file being written, never the day in memory.
    pub max_renders: usize,
    /// Bytes of rendered finished days kept (as temporary files); a day larger than this
    /// is rendered for each request. 0 keeps none.
    pub cache_size: u64,
    /// How long a finished day's rendering is served before the store is read again, for
    /// changes the server did not make itself (a rollup or import by another process).
    pub cache_ttl: Duration,
}

impl Default for StatsFilesConfig {
    fn default() -> Self {
        StatsFilesConfig {
            max_renders: 2,
            cache_size: 256 << 20,
            cache_ttl: Duration::from_secs(300),
        }
    }
}

/// Rendered days kept at most, whatever their size: each holds an open file descriptor.
const MAX_CACHED_DAYS: usize = 64;

/// How many days may wait for renders before the map of turns drops unused entries.
const PRUNE_TURNS_AT: usize = 64;

/// Bytes read from a rendered file per chunk of the response.
const CHUNK: u64 = 64 << 10;

/// Renders, caches and serves the daily files; cloning shares the cache.
#[derive(Clone)]
pub struct StatsFiles {
    inner: Arc<Inner>,
}

/// What every clone shares.
struct Inner {
    store: Arc<dyn CatalogStore>,
    config: StatsFilesConfig,
    renders: Arc<Semaphore>,
    cache: Mutex<Cache>,
    /// One lock per finished day being rendered, so readers of the same day wait for
    /// one render instead of making their own ([`Inner::turn`]).
    rendering: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Rendered finished days, their total size, and how many times a day was forgotten.
#[derive(Default)]
struct Cache {
    days: HashMap<String, Rendered>,
    bytes: u64,
    forgets: u64,
}

/// A day's body, written out in full to an unnamed temporary file that goes away with the
/// last clone.
#[derive(Clone)]
pub struct Rendered {
    file: Arc<File>,
    len: u64,
    at: Instant,
}

impl Rendered {
    /// The body's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the body is empty (a day rolled up with nothing added).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The body in chunks, each read on the blocking pool when the previous one was taken.
    pub fn chunks(self) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
        futures_util::stream::try_unfold(0u64, move |offset| {
            let (file, len) = (Arc::clone(&self.file), self.len);
            async move {
                if offset >= len {
                    return Ok(None);
                }
                let size = CHUNK.min(len - offset);
                let chunk = exosphere_task::blocking(move || {
                    let mut buffer = vec![0; size as usize];
                    file.read_exact_at(&mut buffer, offset).map(|()| buffer)
                })
                .await
                .map_err(|error| std::io::Error::other(error.to_string()))
                .and_then(|read| read)
                .inspect_err(|error| {
                    tracing::error!(%error, "reading a rendered stats file failed");
                })?;
                Ok(Some((Bytes::from(chunk), offset + size)))
            }
        })
    }
}

impl StatsFiles {
    /// An empty cache over `store`.
    pub fn new(store: Arc<dyn CatalogStore>, config: StatsFilesConfig) -> StatsFiles {
        StatsFiles {
            inner: Arc::new(Inner {
                store,
                renders: Arc::new(Semaphore::new(config.max_renders.max(1))),
                config,
                cache: Mutex::default(),
                rendering: Mutex::default(),
            }),
        }
    }

    /// What `/healthz` shows: the days rendering now, and the rendered days kept with
    /// their bytes.
    pub fn health(&self) -> serde_json::Value {
        let rendering =
            self.inner.config.max_renders.max(1) - self.inner.renders.available_permits();
        let cache = self.inner.lock_cache();
        serde_json::json!({
            "rendering": rendering,
            "cached": cache.days.len(),
            "cached_bytes": cache.bytes,
        })
    }

    /// The body of `day`, or `None` when the day has no data. A `finished` day is served
    /// from the cache when it is there and fresh, and rendered once for all its readers
    /// when it is not. A reader that goes away while its render runs changes nothing: the
    /// render keeps its slot until it ends and keeps a finished day for the next reader.
    pub async fn day(&self, day: &str, finished: bool) -> anyhow::Result<Option<Rendered>> {
        if !finished {
            return self.render(day, false).await;
        }
        if let Some(hit) = self.inner.fresh(day) {
            return Ok(Some(hit));
        }
        let turn = self.inner.turn(day).await;
        match self.inner.fresh(day) {
            Some(hit) => Ok(Some(hit)),
            None => {
                let rendered = self.render(day, true).await;
                drop(turn);
                rendered
            }
        }
    }

    /// Drops the kept rendering of `day`, whose rows were just replaced (by a rollup); a
    /// render that read the store before this call is not kept either.
    pub fn forget(&self, day: &str) {
        let mut cache = self.inner.lock_cache();
        cache.forgets += 1;
        if let Some(dropped) = cache.days.remove(day) {
            cache.bytes -= dropped.len;
        }
    }

    /// Renders `day` on the blocking pool once a render slot is free, and keeps it when
    /// `keep` says so. The slot moves into the blocking task, so it is held until the
    /// render ends, even if the caller stopped waiting.
    async fn render(&self, day: &str, keep: bool) -> anyhow::Result<Option<Rendered>> {
        let slot = Arc::clone(&self.inner.renders)
            .acquire_owned()
            .await
            .map_err(|_| anyhow::anyhow!("the server is stopping"))?;
        let (inner, day) = (Arc::clone(&self.inner), day.to_owned());
        exosphere_task::blocking(move || {
            let forgets = inner.lock_cache().forgets;
            let rendered = render(&*inner.store, &day)?;
            if let (true, Some(rendered)) = (keep, &rendered) {
                inner.keep(&day, rendered, forgets);
            }
            drop(slot);
            Ok(rendered)
        })
        .await?
    }
}

impl Inner {
    /// Waits for this reader's turn at rendering finished `day`: readers of the same day
    /// wait for the one rendering it. Entries of days nobody waits for any more (also
    /// readers that stopped waiting) are dropped as new ones come, so the map holds about
    /// the days in demand.
    async fn turn(&self, day: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut rendering = self
                .rendering
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if rendering.len() >= PRUNE_TURNS_AT {
                rendering.retain(|_, lock| Arc::strong_count(lock) > 1);
            }
            Arc::clone(rendering.entry(day.to_owned()).or_default())
        };
        lock.lock_owned().await
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached rendering of `day` if it is younger than the time to live; an expired
    /// one is dropped.
    fn fresh(&self, day: &str) -> Option<Rendered> {
        let mut cache = self.lock_cache();
        let rendered = cache.days.get(day)?.clone();
        if rendered.at.elapsed() < self.config.cache_ttl {
            return Some(rendered);
        }
        cache.days.remove(day);
        cache.bytes -= rendered.len;
        None
    }

    /// Keeps `rendered` as `day`'s, dropping the oldest renderings to make room (in bytes,
    /// and under [`MAX_CACHED_DAYS`]); a
    /// rendering larger than the whole cache is not kept, nor one read before a
    /// [`StatsFiles::forget`] since `forgets` was read (it may predate a rollup).
    fn keep(&self, day: &str, rendered: &Rendered, forgets: u64) {
        if rendered.len > self.config.cache_size {
            return;
        }
        let mut cache = self.lock_cache();
        if cache.forgets != forgets {
            return;
        }
        while cache.bytes + rendered.len > self.config.cache_size
            || cache.days.len() >= MAX_CACHED_DAYS
        {
            let Some(oldest) = cache
                .days
                .iter()
                .min_by_key(|(_, kept)| kept.at)
                .map(|(day, _)| day.clone())
            else {
                break;
            };
            if let Some(evicted) = cache.days.remove(&oldest) {
                cache.bytes -= evicted.len;
            }
        }
        if let Some(replaced) = cache.days.insert(day.to_owned(), rendered.clone()) {
            cache.bytes -= replaced.len;
        }
        cache.bytes += rendered.len;
    }
}

/// Writes `day`'s body into an unnamed temporary file from one read of the store.
fn render(store: &dyn CatalogStore, day: &str) -> anyhow::Result<Option<Rendered>> {
    let mut out = BufWriter::with_capacity(CHUNK as usize, tempfile::tempfile()?);
    let mut line = String::new();
    let mut failure = None;
    let found = store.stats_day(day, &mut |row| {
        line.clear();
        push_stats_line(&mut line, row);
        out.write_all(line.as_bytes()).map_err(|error| {
            failure = Some(error);
            StoreError::Aborted
        })
    });
    if let Some(error) = failure {
        return Err(error.into());
    }
    if !found? {
        return Ok(None);
    }
    let file = out
        .into_inner()
        .map_err(std::io::IntoInnerError::into_error)?;
    let len = file.metadata()?.len();
    Ok(Some(Rendered {
        file: Arc::new(file),
        len,
        at: Instant::now(),
    }))
}
