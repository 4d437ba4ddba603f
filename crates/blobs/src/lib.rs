//! Blob storage for published package files (source tarballs, build tarballs, READMEs).
//!
//! [`BlobStore`] puts, copies, deletes and reads opaque files by [`BlobKey`]. It sits on the
//! `object_store` crate's `ObjectStore` interface, so the backend is a choice made at
//! startup: a local directory (the default, under the data directory) or any S3-compatible
//! store, which lets several servers share one set of files. This crate knows nothing about
//! packages, DDP or HTTP routes.
//!
//! Uploads are streamed: the body is hashed (SHA-256, what the `meteor` tool sends as
//! `tarballHash`) and written in bounded chunks while it arrives, and stops with
//! [`BlobError::TooLarge`] as soon as it passes the caller's limit, so neither a large nor
//! a hostile upload can grow memory.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use futures_util::stream::{BoxStream, Stream, StreamExt as _};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{
    GetOptions, GetRange, GetResultPayload, ObjectStore, ObjectStoreExt as _, WriteMultipart,
};
use sha2::{Digest as _, Sha256};

/// Why a blob operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The key is not one this store accepts (see [`BlobKey::new`]).
    #[error("invalid blob key {0:?}")]
    InvalidKey(String),
    /// The upload passed the size limit; nothing was kept.
    #[error("the file is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The upload body could not be read from the client.
    #[error("reading the upload failed: {0}")]
    Body(String),
    /// The upload body sent fewer than the caller's minimum bytes within one idle window
    /// (nothing at all, when that minimum is one byte); nothing was kept.
    #[error("the upload sent {} within {} seconds", if *min_bytes > 1 { format!("fewer than {min_bytes} bytes") } else { "no data".to_owned() }, idle.as_secs())]
    Idle {
        /// The window that passed.
        idle: std::time::Duration,
        /// The bytes each window had to bring.
        min_bytes: u64,
    },
    /// The upload was still arriving at the caller's deadline (its upload URL's expiry);
    /// nothing was kept.
    #[error("the upload did not finish before its deadline")]
    Deadline,
    /// The requested bytes are not in the blob (a start at or past its end, or an
    /// empty suffix).
    #[error("no bytes of a {size}-byte file are in the requested range")]
    RangeNotSatisfiable {
        /// The blob's size.
        size: u64,
    },
    /// The backend failed (disk, network, permissions).
    #[error("blob storage: {0}")]
    Store(#[from] object_store::Error),
    /// A stored file could not be read.
    #[error("reading a stored file: {0}")]
    Read(#[source] std::io::Error),
    /// The backend could not be set up.
    #[error("blob storage setup: {0}")]
    Setup(String),
}

impl BlobError {
    /// Whether the local disk could not take the write, full or read-only (the kind of
    /// the first I/O error in the chain that says so): the operator's to fix, not the
    /// client's, so callers answer it apart from other storage failures.
    pub fn disk_trouble(&self) -> Option<std::io::ErrorKind> {
        use std::io::ErrorKind::{QuotaExceeded, ReadOnlyFilesystem, StorageFull};
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(error) = cause {
            if let Some(io) = error.downcast_ref::<std::io::Error>()
                && matches!(io.kind(), StorageFull | QuotaExceeded | ReadOnlyFilesystem)
            {
                return Some(io.kind());
            }
            cause = error.source();
        }
        None
    }
}

/// A validated blob name: `/`-separated segments of ASCII letters, digits and `._@+-`,
/// none empty or starting with `.`, so no key can climb out of its directory or name a
/// hidden file, whatever a URL asked for. A segment has at most [`MAX_SEGMENT`] bytes and
/// a key at most [`MAX_KEY`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlobKey(String);

/// Longest key segment: a file name on common file systems may have 255 bytes, and the
/// local store writes through a temporary file named `<segment>#<n>`, so some room is
/// left for that suffix.
pub const MAX_SEGMENT: usize = 240;

/// Longest key: S3's limit on object keys.
pub const MAX_KEY: usize = 1024;

impl BlobKey {
    /// Checks `key` against the rules above.
    pub fn new(key: &str) -> Result<BlobKey, BlobError> {
        let valid_segment = |segment: &str| {
            !segment.is_empty()
                && segment.len() <= MAX_SEGMENT
                && !segment.starts_with('.')
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._@+-".contains(&b))
        };
        if key.len() <= MAX_KEY && key.split('/').all(valid_segment) {
            Ok(BlobKey(key.to_owned()))
        } else {
            Err(BlobError::InvalidKey(key.to_owned()))
        }
    }

    /// The key text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn path(&self) -> StorePath {
        StorePath::from(self.0.as_str())
    }
}

impl fmt::Display for BlobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a finished upload stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Size in bytes.
    pub size: u64,
    /// Base64 (standard, padded) SHA-256 of the bytes (spec §8.2).
    pub sha256: String,
}

/// Which bytes of a blob [`BlobStore::get`] reads: the forms of an HTTP byte range, kept
/// here as plain numbers so the store can resolve them against the blob's size (which
/// only it knows) in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    /// The whole blob.
    Whole,
    /// From this byte to the end.
    From(u64),
    /// From the first to the last byte, both included; a last byte past the end means
    /// the end.
    Between(u64, u64),
    /// The last this many bytes (all of them if the blob is shorter).
    Last(u64),
}

impl Span {
    /// The bytes a `Range` header asks for (RFC 9110 §14.1.2), one range only: `bytes=N-`
    /// (what old tools send to resume), `bytes=N-M` and the suffix `bytes=-N`. `bytes=0-`
    /// is the whole file, answered `200` as before (also for an empty README). Everything
    /// else (another unit, bad syntax, several ranges) is ignored and gets the whole file,
    /// which HTTP allows; a server that answered several ranges would have to send a
    /// multipart body no Meteor tool reads.
    pub fn from_range_header(value: &str) -> Span {
        let Some(spec) = value.trim().strip_prefix("bytes=") else {
            return Span::Whole;
        };
        let Some((first, last)) = spec.trim().split_once('-') else {
            return Span::Whole;
        };
        let number = |text: &str| {
            (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
                .then(|| text.parse::<u64>().ok())
                .flatten()
        };
        match (number(first), last.is_empty(), number(last)) {
            (Some(0), true, _) => Span::Whole,
            (Some(first), true, _) => Span::From(first),
            (Some(first), false, Some(last)) if first <= last => Span::Between(first, last),
            (None, false, Some(count)) if first.is_empty() => Span::Last(count),
            _ => Span::Whole,
        }
    }

    /// The bytes `start..end` this span picks from a blob of `size` bytes, or `None` when
    /// it picks none (then the request is unsatisfiable). `Whole` always picks all,
    /// even of an empty blob.
    pub fn resolve(self, size: u64) -> Option<std::ops::Range<u64>> {
        match self {
            Span::Whole => Some(0..size),
            Span::From(start) | Span::Between(start, _) if start >= size => None,
            Span::From(start) => Some(start..size),
            Span::Between(start, last) if last < start => None,
            Span::Between(start, last) => Some(start..last.saturating_add(1).min(size)),
            Span::Last(0) => None,
            Span::Last(_) if size == 0 => None,
            Span::Last(count) => Some(size.saturating_sub(count)..size),
        }
    }
}

/// An open blob: its total size and the requested bytes as a stream.
pub struct Download {
    /// Size of the whole blob.
    pub size: u64,
    /// The bytes the stream carries, `start..end` of the blob.
    pub range: std::ops::Range<u64>,
    /// The bytes of `range`.
    pub body: BoxStream<'static, Result<Bytes, BlobError>>,
}

/// Settings of an S3-compatible backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    /// The bucket holding the files.
    pub bucket: String,
    /// The service endpoint, e.g. `http://127.0.0.1:9000`; AWS when `None`.
    pub endpoint: Option<String>,
    /// The region (`us-east-1` for most S3-compatible servers).
    pub region: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
}

/// Where package files are kept; cheap to clone and share between requests.
#[derive(Clone)]
pub struct BlobStore {
    inner: Arc<dyn ObjectStore>,
    /// The directory of a local store, where cut-off writes leave temporary files.
    local_dir: Option<PathBuf>,
    /// A local store itself, which knows where a key's file is: [`BlobStore::put_file`]
    /// renames a file there instead of copying it.
    local: Option<Arc<LocalFileSystem>>,
    description: String,
}

/// How long [`BlobStore::put_stream`] waits for a body: at least `min_rate` bytes per
/// second (at least one byte) within every `idle` window, and all of it before `deadline`.
/// All three are needed: the idle limit alone lets a client that trickles a byte now and
/// then hold an upload until the deadline, and the deadline alone lets it for hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Patience {
    /// The window in which each part of the body must arrive.
    pub idle: std::time::Duration,
    /// Bytes per second the body must average over each window (0: any progress).
    pub min_rate: u64,
    /// When the whole body must have arrived.
    pub deadline: tokio::time::Instant,
}

impl Patience {
    /// The bytes each `idle` window must bring: `min_rate` over the window, at least one.
    pub fn min_bytes(&self) -> u64 {
        let window = u128::from(self.min_rate) * self.idle.as_millis() / 1000;
        u64::try_from(window).unwrap_or(u64::MAX).max(1)
    }
}

/// Chunk size of streamed writes: S3's smallest multipart part, so memory per upload
/// stays at a few chunks.
const CHUNK: usize = 5 << 20;

/// Parts of one upload sent to the backend at once.
const PARTS_IN_FLIGHT: usize = 2;

impl BlobStore {
    /// Files under `dir` (created if missing), each written to a temporary file and
    /// renamed into place, and fsynced before a write returns.
    pub fn local(dir: &Path) -> Result<BlobStore, BlobError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| BlobError::Setup(format!("cannot create {}: {e}", dir.display())))?;
        let store = Arc::new(LocalFileSystem::new_with_prefix(dir)?.with_fsync(true));
        Ok(BlobStore {
            inner: Arc::clone(&store) as Arc<dyn ObjectStore>,
            local_dir: Some(dir.to_owned()),
            local: Some(store),
            description: format!("directory {}", dir.display()),
        })
    }

    /// Files in an S3 bucket, on AWS or any S3-compatible server.
    pub fn s3(config: &S3Config) -> Result<BlobStore, BlobError> {
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&config.access_key_id)
            .with_secret_access_key(&config.secret_access_key);
        if let Some(endpoint) = &config.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        Ok(BlobStore {
            inner: Arc::new(builder.build()?),
            local_dir: None,
            local: None,
            description: format!(
                "S3 bucket {} at {}",
                config.bucket,
                config.endpoint.as_deref().unwrap_or("AWS")
            ),
        })
    }

    /// Streams `body` into `key`, hashing as it goes; stops with [`BlobError::TooLarge`]
    /// once more than `limit` bytes arrived, with [`BlobError::Idle`] when the body sent
    /// less than [`Patience::min_bytes`] in a window of `patience.idle`, with [`BlobError::Deadline`] when it has not ended by
    /// `patience.deadline`, and with [`BlobError::Body`] when it fails (a client that
    /// went away). On every failure the partial write is aborted (an S3 multipart upload
    /// included), so nothing is kept.
    pub async fn put_stream<S, E>(
        &self,
        key: &BlobKey,
        body: S,
        limit: u64,
        patience: Patience,
    ) -> Result<Stored, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: fmt::Display,
    {
        let upload = self.inner.put_multipart(&key.path()).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, CHUNK);
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let mut body = std::pin::pin!(body);
        let min_bytes = patience.min_bytes();
        let (mut window_start, mut window_bytes) = (tokio::time::Instant::now(), 0u64);
        let failure = loop {
            let until = (window_start + patience.idle).min(patience.deadline);
            let chunk = match tokio::time::timeout_at(until, body.next()).await {
                Err(_) if until == patience.deadline => break Some(BlobError::Deadline),
                Err(_) => {
                    break Some(BlobError::Idle {
                        idle: patience.idle,
                        min_bytes,
                    });
                }
                Ok(None) => break None,
                Ok(Some(Ok(chunk))) => chunk,
                Ok(Some(Err(error))) => break Some(BlobError::Body(error.to_string())),
            };
            window_bytes = window_bytes.saturating_add(chunk.len() as u64);
            if window_bytes >= min_bytes {
                (window_start, window_bytes) = (tokio::time::Instant::now(), 0);
            }
            size = size.saturating_add(chunk.len() as u64);
            if size > limit {
                break Some(BlobError::TooLarge { limit });
            }
            hasher.update(&chunk);
            if let Err(error) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                break Some(error.into());
            }
            writer.put(chunk);
        };
        if let Some(error) = failure {
            if let Err(abort) = writer.abort().await {
                tracing::warn!(key = %key, error = %abort, "cannot abort a failed upload");
            }
            return Err(error);
        }
        writer.finish().await?;
        Ok(Stored {
            size,
            sha256: base64::engine::general_purpose::STANDARD.encode(hasher.finalize()),
        })
    }

    /// Moves the complete file at `path`, of `size` bytes, into `key`, replacing it: a local
    /// store on the same file system renames it into place after one fsync (no copy; as
    /// durable as [`BlobStore::put_stream`]); otherwise its bytes are streamed in with
    /// `patience` and the file is deleted. The caller must not write to `path` any more;
    /// readers holding it open keep reading the same bytes.
    pub async fn put_file(
        &self,
        key: &BlobKey,
        path: &Path,
        size: u64,
        patience: Patience,
    ) -> Result<(), BlobError> {
        if let Some(local) = &self.local {
            let dest = local.path_to_filesystem(&key.path())?;
            let from = path.to_owned();
            let renamed = exosphere_task::blocking(move || rename_durably(&from, &dest))
                .await
                .map_err(|error| BlobError::Read(std::io::Error::other(error)))?;
            match renamed {
                Ok(()) => return Ok(()),
                Err(error) if error.kind() == std::io::ErrorKind::CrossesDevices => {}
                Err(error) => return Err(BlobError::Read(error)),
            }
        }
        let file = tokio::fs::File::open(path)
            .await
            .map_err(BlobError::Read)?
            .into_std()
            .await;
        let stored = self
            .put_stream(key, file_stream(file, 0..size), size, patience)
            .await?;
        if stored.size != size {
            return Err(BlobError::Body(format!(
                "{} holds {} bytes, not {size}",
                path.display(),
                stored.size
            )));
        }
        if let Err(error) = tokio::fs::remove_file(path).await {
            tracing::warn!(path = %path.display(), %error, "cannot delete a file stored by copy");
        }
        Ok(())
    }

    /// Copies `from` to `to`, replacing `to` (server-side on S3).
    pub async fn copy(&self, from: &BlobKey, to: &BlobKey) -> Result<(), BlobError> {
        Ok(self.inner.copy(&from.path(), &to.path()).await?)
    }

    /// Deletes `key`; a missing blob is not an error.
    pub async fn delete(&self, key: &BlobKey) -> Result<(), BlobError> {
        match self.inner.delete(&key.path()).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Deletes the temporary files (`<key>#<n>`) that writes under `prefix` left when
    /// their process was killed mid-write, and returns how many. A local write goes to
    /// such a file and is renamed into place only when complete, so a killed process
    /// leaves one behind for good, up to an upload's size. Only for a moment when no
    /// write under `prefix` can be in progress (startup of the one process that writes
    /// there). A no-op on S3, whose abandoned multipart parts are the bucket lifecycle
    /// rule's job.
    pub async fn delete_abandoned_writes(&self, prefix: &BlobKey) -> Result<u64, BlobError> {
        let Some(dir) = &self.local_dir else {
            return Ok(0);
        };
        let under = dir.join(prefix.as_str());
        exosphere_task::blocking(move || delete_temporary_files(&under))
            .await
            .map_err(|error| BlobError::Read(std::io::Error::other(error)))?
            .map_err(BlobError::Read)
    }

    /// Reads `key` whole and returns its size and SHA-256, the checks a backup or a cache
    /// needs on a file at rest; `None` if there is no such blob.
    pub async fn digest(&self, key: &BlobKey) -> Result<Option<Stored>, BlobError> {
        let Some(download) = self.get(key, Span::Whole).await? else {
            return Ok(None);
        };
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut body = download.body;
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            size += chunk.len() as u64;
            hasher.update(&chunk);
        }
        Ok(Some(Stored {
            size,
            sha256: base64::engine::general_purpose::STANDARD.encode(hasher.finalize()),
        }))
    }

    /// Opens the bytes of `key` that `span` picks; `None` if there is no such blob,
    /// [`BlobError::RangeNotSatisfiable`] if the span picks no byte of it.
    pub async fn get(&self, key: &BlobKey, span: Span) -> Result<Option<Download>, BlobError> {
        let size = match self.inner.head(&key.path()).await {
            Ok(meta) => meta.size,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        let range = span
            .resolve(size)
            .ok_or(BlobError::RangeNotSatisfiable { size })?;
        let options = GetOptions {
            range: (range != (0..size)).then(|| GetRange::Bounded(range.clone())),
            ..GetOptions::default()
        };
        let result = match self.inner.get_opts(&key.path(), options).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        let body = match result.payload {
            GetResultPayload::File(file, _) => file_stream(file, result.range),
            GetResultPayload::Stream(stream) => stream.map(|r| r.map_err(BlobError::from)).boxed(),
        };
        Ok(Some(Download { size, range, body }))
    }
}

/// Renames `from` to `to` so that it survives a crash: `from`'s bytes are fsynced first, then
/// `to`'s directory (created if needed, its own parent fsynced too, since it may be new).
fn rename_durably(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::File::open(from)?.sync_all()?;
    let parent = to
        .parent()
        .ok_or_else(|| std::io::Error::other(format!("{} has no directory", to.display())))?;
    std::fs::create_dir_all(parent)?;
    std::fs::rename(from, to)?;
    std::fs::File::open(parent)?.sync_all()?;
    if let Some(grandparent) = parent.parent() {
        std::fs::File::open(grandparent)?.sync_all()?;
    }
    Ok(())
}

/// Deletes every file whose name holds a `#` (a local write's temporary file; no
/// [`BlobKey`] has one) under `dir`, a missing `dir` included; returns how many.
fn delete_temporary_files(dir: &Path) -> std::io::Result<u64> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(error) => return Err(error),
    };
    let mut deleted = 0;
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            deleted += delete_temporary_files(&path)?;
        } else if entry.file_name().as_encoded_bytes().contains(&b'#') {
            match std::fs::remove_file(&path) {
                Ok(()) => deleted += 1,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
    }
    Ok(deleted)
}

/// How much of a local file one read hands to the response: large enough that the
/// blocking-pool hop per read costs little next to the copy (`object_store`'s own local
/// stream reads 8 KiB at a time), small enough that many clients at once hold little.
pub const READ_CHUNK: usize = 1 << 20;

/// Streams `range` of a local file in [`READ_CHUNK`] reads on the blocking pool.
fn file_stream(
    file: std::fs::File,
    range: std::ops::Range<u64>,
) -> BoxStream<'static, Result<Bytes, BlobError>> {
    futures_util::stream::try_unfold((file, range), |(file, range)| async move {
        if range.start >= range.end {
            return Ok(None);
        }
        let want = usize::try_from(range.end - range.start)
            .map_or(READ_CHUNK, |left| left.min(READ_CHUNK));
        let read = exosphere_task::blocking(move || {
            let mut chunk = vec![0u8; want];
            std::os::unix::fs::FileExt::read_exact_at(&file, &mut chunk, range.start)?;
            Ok::<_, std::io::Error>((file, chunk))
        })
        .await
        .map_err(|error| BlobError::Read(std::io::Error::other(error)))?;
        let (file, chunk) = read.map_err(BlobError::Read)?;
        let next = range.start + chunk.len() as u64..range.end;
        Ok(Some((Bytes::from(chunk), (file, next))))
    })
    .boxed()
}

impl fmt::Display for BlobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn single_byte_ranges_are_honoured_and_the_rest_ignored() {
        for (header, expected) in [
            ("bytes=100-", Span::From(100)),
            ("bytes=0-", Span::Whole),
            ("bytes=0-10", Span::Between(0, 10)),
            ("bytes=5-5", Span::Between(5, 5)),
            ("bytes=-10", Span::Last(10)),
            ("bytes=-0", Span::Last(0)),
            (" bytes=7-9 ", Span::Between(7, 9)),
            ("bytes=10-5", Span::Whole),
            ("bytes=0-1,5-6", Span::Whole),
            ("bytes=-", Span::Whole),
            ("bytes=", Span::Whole),
            ("bytes=a-", Span::Whole),
            ("bytes=+1-2", Span::Whole),
            ("bytes=1--2", Span::Whole),
            ("bytes=99999999999999999999-", Span::Whole),
            ("items=1-", Span::Whole),
            ("", Span::Whole),
        ] {
            assert_eq!(Span::from_range_header(header), expected, "{header:?}");
        }
    }

    /// Limits no test reaches.
    fn patient() -> Patience {
        Patience {
            idle: Duration::from_secs(600),
            min_rate: 0,
            deadline: tokio::time::Instant::now() + Duration::from_secs(600),
        }
    }

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, String>> + Send {
        futures_util::stream::iter(
            parts
                .iter()
                .map(|part| Ok(Bytes::from_static(part)))
                .collect::<Vec<_>>(),
        )
    }

    async fn read_all(download: Download) -> Vec<u8> {
        let mut body = download.body;
        let mut out = Vec::new();
        while let Some(chunk) = body.next().await {
            out.extend_from_slice(&chunk.unwrap());
        }
        out
    }

    #[test]
    fn keys_cannot_escape_or_hide() {
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            "../a",
            "a/../b",
            "a/.hidden",
            "a\\b",
            "a b",
            "a%2e",
        ] {
            assert!(BlobKey::new(bad).is_err(), "{bad:?} accepted");
        }
        for good in [
            "packages/acme_widget/1.0.0/source.tgz",
            "uploads/AbC-1_2.x+y@z",
        ] {
            assert_eq!(BlobKey::new(good).unwrap().as_str(), good);
        }
    }

    #[tokio::test]
    async fn local_store_streams_hashes_copies_and_serves_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::local(dir.path()).unwrap();
        let staging = BlobKey::new("uploads/t1").unwrap();
        let stored = store
            .put_stream(&staging, chunks(&[b"hello ", b"world"]), 100, patient())
            .await
            .unwrap();
        assert_eq!(stored.size, 11);
        // echo -n 'hello world' | sha256sum | xxd -r -p | base64
        assert_eq!(
            stored.sha256,
            "uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek="
        );
        let final_key = BlobKey::new("packages/a/1.0.0/source.tgz").unwrap();
        store.copy(&staging, &final_key).await.unwrap();
        store.delete(&staging).await.unwrap();
        assert!(store.get(&staging, Span::Whole).await.unwrap().is_none());
        assert_eq!(store.digest(&final_key).await.unwrap(), Some(stored));
        assert_eq!(store.digest(&staging).await.unwrap(), None);
        let whole = store.get(&final_key, Span::Whole).await.unwrap().unwrap();
        assert_eq!(whole.size, 11);
        assert_eq!(read_all(whole).await, b"hello world");
        for (span, range, bytes) in [
            (Span::From(6), 6..11, &b"world"[..]),
            (Span::Between(2, 4), 2..5, b"llo"),
            (Span::Between(6, 100), 6..11, b"world"),
            (Span::Last(3), 8..11, b"rld"),
            (Span::Last(50), 0..11, b"hello world"),
        ] {
            let part = store.get(&final_key, span).await.unwrap().unwrap();
            assert_eq!(part.range, range, "{span:?}");
            assert_eq!(read_all(part).await, bytes, "{span:?}");
        }
        for span in [Span::From(11), Span::Between(11, 20), Span::Last(0)] {
            assert!(
                matches!(
                    store.get(&final_key, span).await,
                    Err(BlobError::RangeNotSatisfiable { size: 11 })
                ),
                "{span:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_finished_file_moves_into_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::local(&dir.path().join("files")).unwrap();
        let download = dir.path().join("download.part");
        std::fs::write(&download, b"whole file").unwrap();
        let key = BlobKey::new("mirror/abc/file.tgz").unwrap();
        store
            .put_file(&key, &download, 10, patient())
            .await
            .unwrap();
        assert!(!download.exists());
        let stored = store.get(&key, Span::Whole).await.unwrap().unwrap();
        assert_eq!(read_all(stored).await, b"whole file");
        // A file of another size than promised is refused when it has to be copied.
        let elsewhere = BlobStore {
            local: None,
            ..store.clone()
        };
        std::fs::write(&download, b"short").unwrap();
        let other = BlobKey::new("mirror/abc/other.tgz").unwrap();
        assert!(
            elsewhere
                .put_file(&other, &download, 10, patient())
                .await
                .is_err()
        );
        std::fs::write(&download, b"copied").unwrap();
        elsewhere
            .put_file(&other, &download, 6, patient())
            .await
            .unwrap();
        assert!(!download.exists());
        let stored = store.get(&other, Span::Whole).await.unwrap().unwrap();
        assert_eq!(read_all(stored).await, b"copied");
    }

    #[tokio::test]
    async fn oversized_uploads_keep_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::local(dir.path()).unwrap();
        let key = BlobKey::new("uploads/big").unwrap();
        let error = store
            .put_stream(&key, chunks(&[b"12345", b"67890"]), 8, patient())
            .await
            .unwrap_err();
        assert!(matches!(error, BlobError::TooLarge { limit: 8 }));
        assert!(store.get(&key, Span::Whole).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn failed_and_stalled_uploads_keep_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::local(dir.path()).unwrap();
        let key = BlobKey::new("uploads/cut").unwrap();
        let broken = futures_util::stream::iter(vec![
            Ok(Bytes::from_static(b"partial")),
            Err("connection reset".to_owned()),
        ]);
        let error = store
            .put_stream(&key, broken, 100, patient())
            .await
            .unwrap_err();
        assert!(matches!(error, BlobError::Body(ref reason) if reason.contains("reset")));
        let stalled =
            futures_util::stream::iter(vec![Ok::<_, String>(Bytes::from_static(b"partial"))])
                .chain(futures_util::stream::pending());
        let idle = Patience {
            idle: Duration::from_millis(10),
            min_rate: 0,
            ..patient()
        };
        let error = store
            .put_stream(&key, stalled, 100, idle)
            .await
            .unwrap_err();
        assert!(matches!(error, BlobError::Idle { .. }));
        // A body that never stalls for its idle limit still ends at the deadline.
        let trickle = futures_util::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Some((Ok::<_, String>(Bytes::from_static(b"x")), ()))
        });
        let deadline = Patience {
            idle: Duration::from_secs(600),
            min_rate: 0,
            deadline: tokio::time::Instant::now() + Duration::from_millis(50),
        };
        let error = store
            .put_stream(&key, trickle, 1 << 20, deadline)
            .await
            .unwrap_err();
        assert!(matches!(error, BlobError::Deadline), "{error}");
        // A body that sends something in every window but too little is cut off at the
        // end of its first window: 1 byte per 5 ms is far below 10,000 bytes per second.
        let slow = Patience {
            idle: Duration::from_millis(100),
            min_rate: 10_000,
            deadline: tokio::time::Instant::now() + Duration::from_secs(600),
        };
        assert_eq!(slow.min_bytes(), 1000);
        let trickle = futures_util::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Some((Ok::<_, String>(Bytes::from_static(b"x")), ()))
        });
        let error = store
            .put_stream(&key, trickle, 1 << 20, slow)
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                BlobError::Idle {
                    min_bytes: 1000,
                    ..
                }
            ),
            "{error}"
        );
        assert!(
            error.to_string().contains("fewer than 1000 bytes"),
            "{error}"
        );
        // The same rate passes when the body keeps up.
        let brisk = futures_util::stream::iter(
            (0..50).map(|_| Ok::<_, String>(Bytes::from_static(&[7; 100]))),
        );
        assert_eq!(
            store
                .put_stream(&key, brisk, 1 << 20, slow)
                .await
                .unwrap()
                .size,
            5000
        );
        store.delete(&key).await.unwrap();
        assert!(store.get(&key, Span::Whole).await.unwrap().is_none());
        let mut left = Vec::new();
        for entry in walk(dir.path()) {
            left.push(entry);
        }
        assert_eq!(
            left,
            Vec::<std::path::PathBuf>::new(),
            "files were left behind"
        );
    }

    #[tokio::test]
    async fn temporary_files_of_killed_writes_are_deleted_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::local(dir.path()).unwrap();
        let kept = BlobKey::new("uploads/done").unwrap();
        store
            .put_stream(&kept, chunks(&[b"kept"]), 100, patient())
            .await
            .unwrap();
        let uploads = dir.path().join("uploads");
        std::fs::write(uploads.join("cut#1"), b"partial").unwrap();
        std::fs::create_dir(uploads.join("nested")).unwrap();
        std::fs::write(uploads.join("nested").join("cut#2"), b"partial").unwrap();
        std::fs::write(dir.path().join("outside#3"), b"not under the prefix").unwrap();
        let prefix = BlobKey::new("uploads").unwrap();
        assert_eq!(store.delete_abandoned_writes(&prefix).await.unwrap(), 2);
        let mut left = walk(dir.path());
        left.sort();
        assert_eq!(left, [dir.path().join("outside#3"), uploads.join("done")]);
        let missing = BlobKey::new("nothing").unwrap();
        assert_eq!(store.delete_abandoned_writes(&missing).await.unwrap(), 0);
    }

    /// Every file under `dir`.
    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files.extend(walk(&path));
            } else {
                files.push(path);
            }
        }
        files
    }

    #[test]
    fn spans_resolve_as_http_byte_ranges() {
        assert_eq!(Span::Whole.resolve(0), Some(0..0));
        assert_eq!(Span::From(0).resolve(0), None);
        assert_eq!(Span::Last(5).resolve(0), None);
        assert_eq!(Span::Between(0, 0).resolve(1), Some(0..1));
        assert_eq!(Span::Between(3, 2).resolve(10), None);
        assert_eq!(Span::Between(0, u64::MAX).resolve(10), Some(0..10));
        assert_eq!(Span::Last(u64::MAX).resolve(10), Some(0..10));
    }
}
