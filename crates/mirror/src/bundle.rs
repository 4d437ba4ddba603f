//! The mirrored files as a whole: [`verify`] re-checks every cached one against its hash, and
//! bundles carry a mirror to a machine that can never reach the upstream. A *bundle* is a
//! directory with the served catalog as a dump (`catalog.ndjson`, the format of
//! `exosphere export`), the mirrored files that are cached (`files/<key>`), and what each file
//! key stands for (`files.ndjson`: key, upstream URL, SHA-256, size).
//!
//! Loading one checks every file against its hash while copying it into the file store, then
//! stores the file keys, then imports the records in one transaction with their mirrored file
//! URLs pointing at the new site's public URL. With `only_with_files`, builds whose file is not
//! in the bundle are left out, and versions left without a build, so that site offers its
//! clients only what it can deliver.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead as _, BufReader, BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::str::FromStr as _;

use bytes::Bytes;
use exosphere_blobs::{BlobKey, BlobStore, Patience, Span};
use exosphere_catalog::dump::{self, DumpError};
use exosphere_catalog::mirror::UpstreamFile;
use exosphere_catalog::{CatalogStore, Collection, StoreError};
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::AsyncWriteExt as _;

use crate::files::{key_of, map_urls, served_url};

/// The dump of the served catalog in a bundle.
const CATALOG: &str = "catalog.ndjson";
/// The file list of a bundle.
const FILES: &str = "files.ndjson";
/// The directory of the files of a bundle.
const FILES_DIR: &str = "files";
/// File keys read from the store per query.
const PAGE: usize = 1000;

/// Why a bundle could not be written or loaded.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A file or directory of the bundle.
    #[error("{path}: {source}")]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The catalog.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The catalog dump.
    #[error(transparent)]
    Dump(#[from] DumpError),
    /// The file store.
    #[error("the file store: {0}")]
    Blobs(String),
    /// The bundle is not one `mirror export-bundle` wrote, or was changed since.
    #[error("not a valid bundle: {0}")]
    Invalid(String),
}

/// One line of `files.ndjson`.
#[derive(Debug, Serialize, Deserialize)]
struct FileLine {
    key: String,
    url: String,
    sha256: Option<String>,
    size: u64,
}

/// Pages through the mirrored file keys in key order, [`PAGE`] at a time.
#[derive(Default)]
struct FileKeys {
    after: String,
}

impl FileKeys {
    /// The next page; `None` once every key was seen.
    fn next(
        &mut self,
        store: &dyn CatalogStore,
    ) -> Result<Option<Vec<(String, UpstreamFile)>>, StoreError> {
        let page = store.mirror_files(&self.after, PAGE)?;
        match page.last() {
            Some((last, _)) => {
                self.after = last.clone();
                Ok(Some(page))
            }
            None => Ok(None),
        }
    }
}

/// What a bundle holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BundleSummary {
    /// Records of the catalog.
    pub records: u64,
    /// Files (cached mirrored files) carried.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Records left out because their files are not carried (`only_with_files`).
    pub left_out: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BundleError + '_ {
    move |source| BundleError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes the served catalog and every cached mirrored file into `dir` (new, or empty).
pub async fn export(
    store: &dyn CatalogStore,
    blobs: &BlobStore,
    dir: &Path,
) -> Result<BundleSummary, BundleError> {
    if dir.exists() && std::fs::read_dir(dir).map_err(io(dir))?.next().is_some() {
        return Err(BundleError::Invalid(format!(
            "{} is not empty; name a new directory",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir.join(FILES_DIR)).map_err(io(dir))?;
    let catalog = dir.join(CATALOG);
    let exported = dump::export(store, File::create(&catalog).map_err(io(&catalog))?)?;
    let mut summary = BundleSummary {
        records: exported.records.iter().map(|(_, count)| *count).sum(),
        ..BundleSummary::default()
    };
    let list = dir.join(FILES);
    let mut lines = BufWriter::new(File::create(&list).map_err(io(&list))?);
    let mut keys = FileKeys::default();
    while let Some(page) = keys.next(store)? {
        for (key, file) in page {
            let Some(size) = copy_out(blobs, &key, &dir.join(FILES_DIR).join(&key)).await? else {
                continue;
            };
            let line = FileLine {
                key,
                url: file.url,
                sha256: file.sha256,
                size,
            };
            serde_json::to_writer(&mut lines, &line)
                .map_err(|error| BundleError::Invalid(error.to_string()))?;
            lines.write_all(b"\n").map_err(io(&list))?;
            summary.files += 1;
            summary.bytes += size;
        }
    }
    lines.flush().map_err(io(&list))?;
    Ok(summary)
}

/// Copies a cached blob to `path`; `None` when it is not cached.
async fn copy_out(blobs: &BlobStore, key: &str, path: &Path) -> Result<Option<u64>, BundleError> {
    let key = BlobKey::new(key).map_err(|error| BundleError::Invalid(error.to_string()))?;
    let Some(download) = blobs
        .get(&key, Span::Whole)
        .await
        .map_err(|error| BundleError::Blobs(error.to_string()))?
    else {
        return Ok(None);
    };
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(io(parent))?;
    }
    let mut file = tokio::fs::File::create(path).await.map_err(io(path))?;
    let mut body = download.body;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|error| BundleError::Blobs(error.to_string()))?;
        file.write_all(&chunk).await.map_err(io(path))?;
    }
    file.flush().await.map_err(io(path))?;
    Ok(Some(download.size))
}

/// Loads a bundle: its files into `blobs` (each checked against its hash), their keys into
/// the catalog, then its records, their mirrored file URLs pointing at `public_url`.
pub async fn import(
    store: &dyn CatalogStore,
    blobs: &BlobStore,
    dir: &Path,
    public_url: &str,
    only_with_files: bool,
) -> Result<BundleSummary, BundleError> {
    let list = dir.join(FILES);
    let mut summary = BundleSummary::default();
    let mut carried = HashSet::new();
    let mut entries = Vec::new();
    for line in BufReader::new(File::open(&list).map_err(io(&list))?).lines() {
        let line = line.map_err(io(&list))?;
        let entry: FileLine = serde_json::from_str(&line)
            .map_err(|error| BundleError::Invalid(format!("{FILES}: {error}")))?;
        copy_in(blobs, dir, &entry).await?;
        summary.files += 1;
        summary.bytes += entry.size;
        carried.insert(entry.key.clone());
        entries.push(entry);
    }
    store.write(&mut |writer| {
        for entry in &entries {
            let file = UpstreamFile {
                url: entry.url.clone(),
                sha256: entry.sha256.clone(),
            };
            writer.mirror().put_file(&entry.key, &file)?;
            writer.mirror().mark_cached(&entry.key, Some(entry.size))?;
        }
        Ok(())
    })?;
    let catalog = dir.join(CATALOG);
    let kept_versions = if only_with_files {
        Some(versions_with_files(&catalog, &carried)?)
    } else {
        None
    };
    let rewritten = tempfile::NamedTempFile::new().map_err(io(dir))?;
    {
        let mut out = BufWriter::new(rewritten.as_file());
        for line in BufReader::new(File::open(&catalog).map_err(io(&catalog))?).lines() {
            let line = line.map_err(io(&catalog))?;
            match rewrite_line(&line, public_url, &carried, kept_versions.as_ref())? {
                Some(line) => {
                    out.write_all(line.as_bytes()).map_err(io(&catalog))?;
                    out.write_all(b"\n").map_err(io(&catalog))?;
                }
                None => summary.left_out += 1,
            }
        }
        out.flush().map_err(io(&catalog))?;
    }
    let imported = dump::import(
        store,
        BufReader::new(File::open(rewritten.path()).map_err(io(rewritten.path()))?),
    )?;
    summary.records = imported
        .records
        .iter()
        .map(|(_, counts)| counts.inserted + counts.updated + counts.unchanged)
        .sum();
    Ok(summary)
}

/// Copies one carried file into the file store, refusing one that does not match its hash.
async fn copy_in(blobs: &BlobStore, dir: &Path, entry: &FileLine) -> Result<(), BundleError> {
    let key = BlobKey::new(&entry.key)
        .ok()
        .filter(|key| key.as_str().starts_with("mirror/"))
        .ok_or_else(|| {
            BundleError::Invalid(format!("{:?} is not a mirrored file key", entry.key))
        })?;
    let path = dir.join(FILES_DIR).join(key.as_str());
    let file = tokio::fs::File::open(&path).await.map_err(io(&path))?;
    let body = futures_util::stream::try_unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt as _;
        let mut chunk = vec![0u8; 256 << 10];
        let read = file.read(&mut chunk).await?;
        if read == 0 {
            return Ok::<_, std::io::Error>(None);
        }
        chunk.truncate(read);
        Ok(Some((Bytes::from(chunk), file)))
    });
    let patience = Patience {
        idle: std::time::Duration::from_secs(60),
        min_rate: 0,
        deadline: tokio::time::Instant::now() + std::time::Duration::from_secs(24 * 3600),
    };
    let stored = blobs
        .put_stream(&key, body, entry.size, patience)
        .await
        .map_err(|error| BundleError::Blobs(error.to_string()))?;
    let matches = stored.size == entry.size
        && entry
            .sha256
            .as_ref()
            .is_none_or(|want| *want == stored.sha256);
    if !matches {
        let _ = blobs.delete(&key).await;
        return Err(BundleError::Invalid(format!(
            "{} does not match its hash or size: the bundle was damaged in transit",
            path.display()
        )));
    }
    Ok(())
}

/// The versions that keep at least one build whose file is carried.
fn versions_with_files(
    catalog: &Path,
    carried: &HashSet<String>,
) -> Result<HashSet<String>, BundleError> {
    let mut kept = HashSet::new();
    for line in BufReader::new(File::open(catalog).map_err(io(catalog))?).lines() {
        let line = line.map_err(io(catalog))?;
        let Ok(entry) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let doc = &entry["doc"];
        if entry["collection"] == "builds"
            && build_is_carried(doc, carried)
            && let Some(version) = doc["versionId"].as_str()
        {
            kept.insert(version.to_owned());
        }
    }
    Ok(kept)
}

/// Whether a build's file is carried (a build naming no mirrored file counts as carried).
fn build_is_carried(doc: &Value, carried: &HashSet<String>) -> bool {
    doc["build"]["url"]
        .as_str()
        .and_then(key_of)
        .is_none_or(|key| carried.contains(key))
}

/// One dump line for the new site: mirrored file URLs pointing at `public_url`; `None` for a
/// record left out (`kept_versions` given: builds without their file, versions without a
/// kept build).
fn rewrite_line(
    line: &str,
    public_url: &str,
    carried: &HashSet<String>,
    kept_versions: Option<&HashSet<String>>,
) -> Result<Option<String>, BundleError> {
    let entry: Value = serde_json::from_str(line)
        .map_err(|error| BundleError::Invalid(format!("{CATALOG}: {error}")))?;
    let Some(collection) = entry["collection"]
        .as_str()
        .and_then(|name| Collection::from_str(name).ok())
    else {
        return Ok(Some(line.to_owned()));
    };
    let doc = &entry["doc"];
    if let Some(kept) = kept_versions {
        let left_out = match collection {
            Collection::Builds => !build_is_carried(doc, carried),
            Collection::Versions => doc["_id"].as_str().is_none_or(|id| !kept.contains(id)),
            _ => false,
        };
        if left_out {
            return Ok(None);
        }
    }
    let text =
        serde_json::to_string(doc).map_err(|error| BundleError::Invalid(error.to_string()))?;
    let text = map_urls(collection, &text, |url, _| {
        key_of(url).map(|key| served_url(public_url, key))
    })
    .map_err(|error| BundleError::Invalid(error.to_string()))?;
    Ok(Some(format!(
        r#"{{"collection":"{}","doc":{text}}}"#,
        collection.as_str()
    )))
}

/// What [`verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verification {
    /// Cached files that matched their hash.
    pub good: u64,
    /// Cached files that did not, by key; each was deleted, so the next request fetches it
    /// again.
    pub bad: Vec<String>,
}

/// Reads every cached mirrored file back and checks it against its hash; deletes the ones
/// that do not match (damaged on disk or in the bucket), so they are fetched again.
pub async fn verify(
    store: &dyn CatalogStore,
    blobs: &BlobStore,
    mut progress: impl FnMut(&str),
) -> Result<Verification, BundleError> {
    let mut found = Verification::default();
    let mut keys = FileKeys::default();
    while let Some(page) = keys.next(store)? {
        for (key, file) in page {
            let (Ok(blob), Some(expected)) = (BlobKey::new(&key), &file.sha256) else {
                continue;
            };
            let Some(stored) = blobs
                .digest(&blob)
                .await
                .map_err(|error| BundleError::Blobs(error.to_string()))?
            else {
                continue;
            };
            if stored.sha256 == *expected {
                found.good += 1;
            } else {
                blobs
                    .delete(&blob)
                    .await
                    .map_err(|error| BundleError::Blobs(error.to_string()))?;
                store.write(&mut |writer| writer.mirror().mark_cached(&key, None))?;
                found.bad.push(key.clone());
            }
            progress(&key);
        }
    }
    Ok(found)
}
