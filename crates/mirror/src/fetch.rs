//! Mirrored files through Exosphere: fetched from the upstream URL on first request, once
//! however many clients ask at once, streamed to every one of them as it arrives, verified
//! against the hash the record promises (a record that names none gets its file as the
//! upstream sent it), and only then kept in the blob store.
//!
//! The `meteor` tool never checks a hash and never downloads a package it has again, so a
//! wrong file must never reach it whole: while a download is under way, clients get every
//! byte but the last; the last follows once the whole file matched its `tarballHash`. A
//! mismatch, a short body or a stalled upstream ends every client's response before its
//! `Content-Length` is reached (the tool sees a broken download, not a bad package), and
//! nothing is cached. Cached files are served from the blob store with ranges, upstream or
//! not; an uncached file while the upstream is down fails at once with
//! [`FileError::Unavailable`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use exosphere_blobs::{BlobError, BlobKey, BlobStore, Download, Patience, Span};
use exosphere_catalog::CatalogStore;
use exosphere_catalog::mirror::UpstreamFile;
use futures_util::StreamExt as _;
use sha2::{Digest as _, Sha256};
use tokio::sync::watch;

/// How mirrored files are fetched and kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesConfig {
    /// Where downloads in progress are written (inside the data directory).
    pub download_dir: PathBuf,
    /// The largest file fetched from the upstream, in bytes.
    pub max_size: u64,
    /// How long the upstream may send nothing (to connect, or in the middle of a body)
    /// before the download is given up.
    pub idle_timeout: Duration,
    /// Extra CA certificates (PEM) the upstream's file host may be signed by.
    pub ca_pem: Option<Vec<u8>>,
    /// The most upstream downloads under way at once; a request for one more uncached file
    /// is answered `503` (anonymous clients must not make the server download the whole
    /// upstream at once).
    pub max_downloads: usize,
}

/// Why a mirrored file cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// No mirrored record names this key.
    #[error("no mirrored record names this file")]
    NotMirrored,
    /// The file is not cached and the upstream cannot deliver it now.
    #[error("{0}")]
    Unavailable(String),
    /// Too many uncached files are being fetched at once; try again shortly.
    #[error("too many mirrored files are being fetched from the upstream at once; try again")]
    Busy,
    /// The range asks for no byte of the file.
    #[error("range not satisfiable")]
    RangeNotSatisfiable {
        /// The file's size.
        size: u64,
    },
    /// The catalog or the blob store failed.
    #[error("{0}")]
    Storage(String),
}

/// What the file service did since the server started, for `/healthz`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileStats {
    /// Files fetched from the upstream, verified and cached.
    pub fetched: u64,
    /// Their bytes.
    pub fetched_bytes: u64,
    /// Downloads that failed (unreachable, an error status, a short or wrong file).
    pub failures: u64,
    /// Downloads under way now.
    pub in_flight: u64,
}

/// The mirrored files of one server. Cheap to clone.
#[derive(Clone)]
pub struct MirrorFiles {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn CatalogStore>,
    blobs: BlobStore,
    http: reqwest::Client,
    config: FilesConfig,
    downloads: Mutex<HashMap<String, Arc<Fetch>>>,
    /// Downloads still receiving from the upstream (the others of `downloads` are verified
    /// and being cached): what `--upstream-max-downloads` bounds.
    fetching: AtomicUsize,
    /// Keys whose last download failed, and when: a client resuming one with a `Range` (old
    /// tools append what they get) is refused, since its first part may be of a bad file.
    failed: Mutex<HashMap<String, Instant>>,
    /// Keys whose download was cached lately, and when: a client that found a file not yet
    /// cached and then no download of it (the download finished in between) looks in the
    /// cache again instead of fetching the file from the upstream a second time.
    kept: Mutex<HashMap<String, Instant>>,
    /// Numbers download files, so a retry never shares a file with the attempt before it.
    attempts: AtomicU64,
    fetched: AtomicU64,
    fetched_bytes: AtomicU64,
    failures: AtomicU64,
}

/// One download from the upstream, shared by every client that asked for the file while it
/// runs.
struct Fetch {
    /// The file being written.
    path: PathBuf,
    progress: watch::Sender<Progress>,
}

/// How far a download got.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Progress {
    /// Waiting for the upstream's answer.
    Connecting,
    /// `written` of `total` bytes are in the file.
    Receiving { total: u64, written: u64 },
    /// The whole file is there and matched its hash.
    Verified { total: u64 },
    /// The download failed; nothing is cached.
    Failed(String),
}

/// How much of a download's file one read hands to a response: as much as a cached file's.
const READ_CHUNK: usize = exosphere_blobs::READ_CHUNK;

/// The most bytes of a download gathered before they are written to its file and announced.
const WRITE_BATCH: usize = 1 << 20;

/// The longest bytes of a download wait to be written and announced.
const WRITE_EVERY: Duration = Duration::from_secs(1);

/// How long a failed download makes resumed (ranged) requests for its file refused.
const FAILED_MEMORY: Duration = Duration::from_secs(3600);

/// How long a cached download is remembered: far longer than a client takes between its
/// look in the cache and its look for a download under way.
const KEPT_MEMORY: Duration = Duration::from_secs(60);

impl MirrorFiles {
    /// The file service over the catalog (which maps keys to upstream files) and the blob
    /// store (which caches them).
    pub fn new(
        store: Arc<dyn CatalogStore>,
        blobs: BlobStore,
        config: FilesConfig,
    ) -> Result<MirrorFiles, FileError> {
        let mut http = reqwest::Client::builder()
            .connect_timeout(config.idle_timeout)
            .read_timeout(config.idle_timeout)
            .redirect(reqwest::redirect::Policy::limited(5));
        if let Some(pem) = &config.ca_pem {
            for certificate in reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|error| FileError::Storage(format!("the CA certificate: {error}")))?
            {
                http = http.add_root_certificate(certificate);
            }
        }
        let http = http
            .build()
            .map_err(|error| FileError::Storage(format!("the HTTP client: {error}")))?;
        Ok(MirrorFiles {
            inner: Arc::new(Inner {
                store,
                blobs,
                http,
                config,
                downloads: Mutex::new(HashMap::new()),
                fetching: AtomicUsize::new(0),
                failed: Mutex::new(HashMap::new()),
                kept: Mutex::new(HashMap::new()),
                attempts: AtomicU64::new(0),
                fetched: AtomicU64::new(0),
                fetched_bytes: AtomicU64::new(0),
                failures: AtomicU64::new(0),
            }),
        })
    }

    /// What the service did so far.
    pub fn stats(&self) -> FileStats {
        let inner = &self.inner;
        FileStats {
            fetched: inner.fetched.load(Ordering::Relaxed),
            fetched_bytes: inner.fetched_bytes.load(Ordering::Relaxed),
            failures: inner.failures.load(Ordering::Relaxed),
            in_flight: inner.lock().len() as u64,
        }
    }

    /// The bytes of the mirrored file `key` that `span` picks: from the cache, or streamed
    /// from a download of the upstream's file (started now, or joined).
    pub async fn open(&self, key: &str, span: Span) -> Result<Download, FileError> {
        let blob_key = BlobKey::new(key).map_err(|_| FileError::NotMirrored)?;
        let upstream = {
            let (store, key) = (Arc::clone(&self.inner.store), key.to_owned());
            exosphere_task::blocking(move || store.mirror_file(&key))
                .await
                .map_err(storage)?
                .map_err(storage)?
                .ok_or(FileError::NotMirrored)?
        };
        if let Some(cached) = self.cached(&blob_key, span).await? {
            return Ok(cached);
        }
        if span != Span::Whole && self.inner.failed_lately(key) {
            return Err(FileError::Unavailable(
                "an earlier download of this file failed, so a resumed download could mix two \
                 files; download it again from the start"
                    .to_owned(),
            ));
        }
        let Some(fetch) = self.fetch(&blob_key, upstream)? else {
            return self
                .cached(&blob_key, span)
                .await?
                .ok_or_else(|| FileError::Unavailable("the download vanished".to_owned()));
        };
        let mut progress = fetch.progress.subscribe();
        let total = loop {
            match &*progress.borrow_and_update() {
                Progress::Connecting => {}
                Progress::Receiving { total, .. } | Progress::Verified { total } => break *total,
                Progress::Failed(error) => return Err(FileError::Unavailable(error.clone())),
            }
            if progress.changed().await.is_err() {
                return Err(FileError::Unavailable("the download stopped".to_owned()));
            }
        };
        let range = span
            .resolve(total)
            .ok_or(FileError::RangeNotSatisfiable { size: total })?;
        let file = match tokio::fs::File::open(&fetch.path).await {
            Ok(file) => Arc::new(file.into_std().await),
            // Finished and cached between the two looks: serve the cache.
            Err(_) => {
                return self
                    .cached(&blob_key, span)
                    .await?
                    .ok_or_else(|| FileError::Unavailable("the download vanished".to_owned()));
            }
        };
        Ok(Download {
            size: total,
            range: range.clone(),
            body: follow(file, range, progress).boxed(),
        })
    }

    /// The cached file, if it is cached.
    async fn cached(&self, key: &BlobKey, span: Span) -> Result<Option<Download>, FileError> {
        match self.inner.blobs.get(key, span).await {
            Ok(found) => Ok(found),
            Err(BlobError::RangeNotSatisfiable { size }) => {
                Err(FileError::RangeNotSatisfiable { size })
            }
            Err(error) => Err(storage(error)),
        }
    }

    /// The download of `key` under way, or a new one if fewer than the most allowed run;
    /// `None` when a download of it was cached since the caller looked in the cache.
    fn fetch(
        &self,
        key: &BlobKey,
        upstream: UpstreamFile,
    ) -> Result<Option<Arc<Fetch>>, FileError> {
        let mut downloads = self.inner.lock();
        if let Some(fetch) = downloads.get(key.as_str()) {
            return Ok(Some(Arc::clone(fetch)));
        }
        if self.inner.kept_lately(key.as_str()) {
            return Ok(None);
        }
        if self.inner.fetching.load(Ordering::Relaxed) >= self.inner.config.max_downloads {
            return Err(FileError::Busy);
        }
        self.inner.fetching.fetch_add(1, Ordering::Relaxed);
        let name: String = key.as_str().replace('/', "_");
        let attempt = self.inner.attempts.fetch_add(1, Ordering::Relaxed);
        let fetch = Arc::new(Fetch {
            path: self
                .inner
                .config
                .download_dir
                .join(format!("{name}.{attempt}.part")),
            progress: watch::Sender::new(Progress::Connecting),
        });
        downloads.insert(key.as_str().to_owned(), Arc::clone(&fetch));
        let (inner, key, job) = (Arc::clone(&self.inner), key.clone(), Arc::clone(&fetch));
        exosphere_task::spawn(async move { inner.download(key, upstream, job).await });
        Ok(Some(fetch))
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Fetch>>> {
        self.downloads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the last download of `key` failed within [`FAILED_MEMORY`] (forgetting older
    /// failures on the way, so the map stays small).
    fn failed_lately(&self, key: &str) -> bool {
        let mut failed = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
        failed.retain(|_, at| at.elapsed() < FAILED_MEMORY);
        failed.contains_key(key)
    }

    /// Whether a download of `key` was cached within [`KEPT_MEMORY`] (forgetting older ones
    /// on the way, so the map stays small).
    fn kept_lately(&self, key: &str) -> bool {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        kept.retain(|_, at| at.elapsed() < KEPT_MEMORY);
        kept.contains_key(key)
    }

    /// Runs one download to its end, whoever is still listening: the cache wants it too.
    /// A cached download is remembered before it leaves the list of downloads under way, so
    /// a client never finds it in neither.
    async fn download(&self, key: BlobKey, upstream: UpstreamFile, fetch: Arc<Fetch>) {
        let outcome = self.receive(&upstream, &fetch).await;
        self.fetching.fetch_sub(1, Ordering::Relaxed);
        match outcome {
            Ok(total) => {
                fetch.progress.send_replace(Progress::Verified { total });
                if self.keep(&key, &fetch, total).await {
                    self.kept
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(key.as_str().to_owned(), Instant::now());
                    self.fetched.fetch_add(1, Ordering::Relaxed);
                    self.fetched_bytes.fetch_add(total, Ordering::Relaxed);
                    tracing::info!(%key, url = %upstream.url, bytes = total, "cached a mirrored file");
                }
            }
            Err(error) => {
                tracing::warn!(%key, url = %upstream.url, %error, "fetching a mirrored file failed");
                fetch.progress.send_replace(Progress::Failed(error));
                self.failures.fetch_add(1, Ordering::Relaxed);
                self.failed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(key.as_str().to_owned(), Instant::now());
            }
        }
        self.lock().remove(key.as_str());
        if let Err(error) = tokio::fs::remove_file(&fetch.path).await
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(%key, %error, "cannot delete a finished download");
        }
    }

    /// Fetches the upstream file into the download's file, hashing as it goes; returns its
    /// size once it is whole and matched its hash.
    async fn receive(&self, upstream: &UpstreamFile, fetch: &Fetch) -> Result<u64, String> {
        let url = &upstream.url;
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(format!(
                "{url} is not an http(s) URL; the mirror fetches only those"
            ));
        }
        let Some(expected) = &upstream.sha256 else {
            return Err(format!(
                "the record of {url} names no hash to check the file against, so the mirror \
                 does not serve it"
            ));
        };
        let response = self.http.get(url).send().await.map_err(|error| {
            format!("the upstream's file host cannot be reached ({url}): {error}")
        })?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            return Err(format!("the upstream answered {status} for {url}"));
        }
        let total = response
            .content_length()
            .ok_or_else(|| format!("the upstream sent {url} without a Content-Length"))?;
        if total > self.config.max_size {
            return Err(format!(
                "{url} is {total} bytes, more than this mirror fetches \
                 (--upstream-max-file-size {})",
                self.config.max_size
            ));
        }
        tokio::fs::create_dir_all(&self.config.download_dir)
            .await
            .map_err(|error| format!("cannot create the download directory: {error}"))?;
        let file = tokio::fs::File::create(&fetch.path)
            .await
            .map_err(|error| format!("cannot write a download: {error}"))?
            .into_std()
            .await;
        fetch
            .progress
            .send_replace(Progress::Receiving { total, written: 0 });
        let mut received = 0u64;
        let mut body = response.bytes_stream();
        // Chunks (a few KiB each) are gathered into batches of up to WRITE_BATCH bytes, each
        // hashed and written by one hop to the blocking pool while the next batch arrives; a
        // batch's bytes are announced to clients once written. A slow upstream's bytes still
        // reach clients within about twice WRITE_EVERY (the tool gives up after 60 s without
        // bytes).
        let sink = Sink {
            file,
            hasher: Sha256::new(),
            written: 0,
        };
        let mut writing = write_batch(sink, Vec::new());
        let mut batch = Vec::new();
        let mut batched = 0;
        let mut last_write = Instant::now();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|error| {
                format!("the upstream broke off {url} after {received} of {total} bytes: {error}")
            })?;
            received += chunk.len() as u64;
            if received > total {
                return Err(format!(
                    "the upstream sent more than the {total} bytes of {url}"
                ));
            }
            batched += chunk.len();
            batch.push(chunk);
            if batched >= WRITE_BATCH || received == total || last_write.elapsed() >= WRITE_EVERY {
                let sink = announced(writing, fetch, total).await?;
                writing = write_batch(sink, std::mem::take(&mut batch));
                batched = 0;
                last_write = Instant::now();
            }
        }
        let last = write_batch(announced(writing, fetch, total).await?, batch);
        let sink = announced(last, fetch, total).await?;
        if received != total {
            return Err(format!(
                "the upstream sent {received} of the {total} bytes of {url}"
            ));
        }
        let sha256 = base64::engine::general_purpose::STANDARD.encode(sink.hasher.finalize());
        if *expected != sha256 {
            return Err(format!(
                "{url} does not match the hash its record promises ({expected}; the bytes \
                 hash to {sha256}); it was not cached, and no client got it whole"
            ));
        }
        Ok(total)
    }

    /// Puts a verified download into the blob store and counts it in the catalog; returns
    /// whether both happened (what [`FileStats::fetched`] counts). A failure is only logged:
    /// the clients of this download still get the file, and the next request fetches it
    /// again.
    async fn keep(&self, key: &BlobKey, fetch: &Fetch, total: u64) -> bool {
        let patience = Patience {
            idle: self.config.idle_timeout,
            min_rate: 0,
            deadline: tokio::time::Instant::now() + Duration::from_secs(24 * 3600),
        };
        let kept = self.blobs.put_file(key, &fetch.path, total, patience);
        if let Err(error) = kept.await {
            tracing::warn!(%key, %error, "cannot cache a mirrored file; it is fetched again next time");
            return false;
        }
        let (store, name) = (Arc::clone(&self.store), key.as_str().to_owned());
        let counted = exosphere_task::blocking(move || {
            store.write(&mut |writer| writer.mirror().mark_cached(&name, Some(total)))
        })
        .await;
        let counted = matches!(counted, Ok(Ok(())));
        if !counted {
            tracing::warn!(%key, "cannot count a cached mirrored file in the catalog");
        }
        counted
    }
}

/// A download's file and what was written to it, hashed as it was written.
struct Sink {
    file: std::fs::File,
    hasher: Sha256,
    written: u64,
}

/// A write of a batch of a download's chunks under way on the blocking pool.
type Writing =
    tokio::task::JoinHandle<Result<std::io::Result<Sink>, exosphere_task::BlockingError>>;

/// Starts hashing `batch` and writing it to the sink's file, on the blocking pool at once, so
/// the next batch is received meanwhile.
fn write_batch(mut sink: Sink, batch: Vec<bytes::Bytes>) -> Writing {
    exosphere_task::spawn(exosphere_task::blocking(move || {
        use std::io::Write as _;
        let mut slices: Vec<std::io::IoSlice<'_>> = batch
            .iter()
            .map(|chunk| std::io::IoSlice::new(chunk))
            .collect();
        let mut left = &mut slices[..];
        while !left.is_empty() {
            let wrote = sink.file.write_vectored(left)?;
            if wrote == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            std::io::IoSlice::advance_slices(&mut left, wrote);
        }
        for chunk in &batch {
            sink.hasher.update(chunk);
            sink.written += chunk.len() as u64;
        }
        Ok(sink)
    }))
}

/// Waits for a batch's write and announces its bytes to the download's clients.
async fn announced(writing: Writing, fetch: &Fetch, total: u64) -> Result<Sink, String> {
    let sink = writing
        .await
        .map_err(|error| format!("cannot write a download: {error}"))?
        .map_err(|error| format!("cannot write a download: {error}"))?
        .map_err(|error| format!("cannot write a download: {error}"))?;
    fetch.progress.send_replace(Progress::Receiving {
        total,
        written: sink.written,
    });
    Ok(sink)
}

/// Streams `range` of a download's file as it grows: every byte the download wrote, except
/// the file's last one until the whole file is verified, and the end only once it is; an
/// error (ending the response short of its length) when the download fails.
fn follow(
    file: Arc<std::fs::File>,
    range: std::ops::Range<u64>,
    progress: watch::Receiver<Progress>,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, BlobError>> + Send + 'static {
    futures_util::stream::try_unfold(
        (file, range.start, range.end, progress),
        |(file, offset, end, mut progress)| async move {
            if offset >= end {
                // Even an empty file ends only once it is verified.
                loop {
                    match &*progress.borrow_and_update() {
                        Progress::Verified { .. } => return Ok(None),
                        Progress::Failed(error) => return Err(BlobError::Body(error.clone())),
                        Progress::Connecting | Progress::Receiving { .. } => {}
                    }
                    if progress.changed().await.is_err() {
                        return Err(BlobError::Body("the download stopped".to_owned()));
                    }
                }
            }
            let readable = loop {
                let readable = match &*progress.borrow_and_update() {
                    Progress::Connecting => 0,
                    Progress::Receiving { total, written } => {
                        (*written).min(total.saturating_sub(1))
                    }
                    Progress::Verified { total } => *total,
                    Progress::Failed(error) => {
                        return Err(BlobError::Body(error.clone()));
                    }
                };
                if readable > offset {
                    break readable.min(end);
                }
                if progress.changed().await.is_err() {
                    return Err(BlobError::Body("the download stopped".to_owned()));
                }
            };
            let want = usize::try_from(readable - offset).map_or(READ_CHUNK, |n| n.min(READ_CHUNK));
            // One hop to the blocking pool per chunk, a positioned read of this stream's own
            // file handle.
            let reader = Arc::clone(&file);
            let chunk = exosphere_task::blocking(move || {
                let mut chunk = vec![0u8; want];
                std::os::unix::fs::FileExt::read_exact_at(&*reader, &mut chunk, offset)
                    .map(|()| chunk)
            })
            .await
            .map_err(|error| BlobError::Read(std::io::Error::other(error)))?
            .map_err(BlobError::Read)?;
            let next = offset + want as u64;
            Ok(Some((
                bytes::Bytes::from(chunk),
                (file, next, end, progress),
            )))
        },
    )
}

/// A storage failure as a [`FileError`].
fn storage(error: impl std::fmt::Display) -> FileError {
    FileError::Storage(error.to_string())
}
