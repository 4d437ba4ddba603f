//! The README files of published and mirrored versions, read from this server's file
//! store (the directory or bucket that `/packages/...` and `/mirror/files/...` serve,
//! `http/files.rs`) for the web catalog's pages and README API
//! ([`exosphere_web::ReadmeSource`]) and for the read model's full-text search
//! ([`exosphere_index::ReadmeTexts`]).
//!
//! A record names its README by URL, with the SHA-256 of its bytes (spec §5.5, §8.2). A
//! URL of a file published here (`<public URL>/packages/<key>`) is kept under that key
//! (`exosphere_catalog::files::published_key`), one of a mirrored file
//! (`<public URL>/mirror/files/<key>`) under its key once fetched
//! (`exosphere_mirror::key_of`): the mapping those routes serve by. Any other URL is
//! another host's, and is never fetched. A file is read whole, only when it has at most
//! `--readme-max-bytes`, and is given only when its bytes hash to what the record names.
//!
//! A mirrored README not cached yet is never waited for: the page shows the excerpt, and
//! the file is fetched in the background through the mirror's file service
//! ([`MirrorFiles::open`]: one download per file however many ask, at most
//! `--upstream-max-downloads` at once, checked against its hash, then cached), so a later
//! view shows it (an answer showing the excerpt for a missing file is never kept, and its
//! entity tag never confirmed).
//! Waiting even a little would hold one of the few query turns, and a reader, on a host
//! the server does not control. The read model never fetches: a README cached after its
//! package's latest version was indexed is searched once that package's latest version
//! changes again (or the read model is built again).

use base64::Engine as _;
use exosphere_blobs::{BlobKey, BlobStore, Span};
use exosphere_catalog::files::published_key;
use exosphere_index::ReadmeTexts;
use exosphere_mirror::{MirrorFiles, key_of};
use exosphere_web::{NoReadme, ReadmeFile, ReadmeSource};
use futures_util::{StreamExt as _, TryStreamExt as _};
use sha2::{Digest as _, Sha256};
use tokio::runtime::Handle;

/// README files the read model reads at once while it indexes: enough to hide a bucket's
/// round trips when a first build reads thousands, few enough for a local disk.
const READS_AT_ONCE: usize = 8;

/// README files in this server's file store. Cheap to clone.
#[derive(Clone)]
pub struct ReadmeFiles {
    blobs: BlobStore,
    /// The mirror's file service, when the server mirrors an upstream: missing mirrored
    /// READMEs are fetched through it, in the background.
    mirror: Option<MirrorFiles>,
    /// The most bytes of a file read (`--readme-max-bytes`).
    max_bytes: u64,
    /// The runtime the file store's reads run on, entered from the blocking pool.
    runtime: Handle,
}

impl ReadmeFiles {
    /// The README files of `blobs` (and of `mirror`'s upstream, fetched when missing),
    /// read up to `max_bytes`. Call it inside the tokio runtime the reads should run on.
    pub fn new(blobs: BlobStore, mirror: Option<MirrorFiles>, max_bytes: usize) -> ReadmeFiles {
        ReadmeFiles {
            blobs,
            mirror,
            max_bytes: u64::try_from(max_bytes).unwrap_or(u64::MAX),
            runtime: Handle::current(),
        }
    }

    /// The text of `file` if the file store holds it, whole, within the limit and as its
    /// hash promises; never from another host.
    async fn read(&self, file: &ReadmeFile) -> Result<String, NoReadme> {
        let key = kept_under(&file.url).ok_or(NoReadme::Elsewhere)?;
        let failed = |error: exosphere_blobs::BlobError| NoReadme::Failed(error.to_string());
        let download = self
            .blobs
            .get(&key, Span::Whole)
            .await
            .map_err(failed)?
            .ok_or(NoReadme::Absent)?;
        if download.size > self.max_bytes {
            return Err(NoReadme::TooLarge {
                size: download.size,
                limit: self.max_bytes,
            });
        }
        // A file is never rewritten under its key; one that grew past the size the store
        // gave is cut off at the limit all the same.
        let max_bytes = self.max_bytes;
        let bytes = download
            .body
            .map_err(failed)
            .try_fold(Vec::new(), |mut bytes, chunk| async move {
                bytes.extend_from_slice(&chunk);
                match bytes.len() as u64 {
                    size if size > max_bytes => Err(NoReadme::TooLarge {
                        size,
                        limit: max_bytes,
                    }),
                    _ => Ok(bytes),
                }
            })
            .await?;
        if base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&bytes)) != file.hash {
            return Err(NoReadme::Mismatch);
        }
        if bytes.is_empty() {
            return Err(NoReadme::Empty);
        }
        Ok(String::from_utf8(bytes)
            .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned()))
    }

    /// Starts fetching the mirrored file `file` names from the upstream, through the
    /// mirror's file service, which caches it once it matched its hash; nothing waits for
    /// it. Not a mirrored file, or no mirror: nothing to do (`false`).
    fn fetch_in_background(&self, file: &ReadmeFile) -> bool {
        let (Some(mirror), Some(key)) = (&self.mirror, key_of(&file.url)) else {
            return false;
        };
        let (mirror, key) = (mirror.clone(), key.to_owned());
        let _runtime = self.runtime.enter();
        exosphere_task::spawn(async move {
            // The download runs to its end whether or not anyone reads it.
            if let Err(error) = mirror.open(&key, Span::Whole).await {
                tracing::debug!(%error, key, "cannot fetch a mirrored README now");
            }
        });
        true
    }
}

/// The key a file named by `url` is kept under in this server's file store: a mirrored
/// file's served key, or a published file's key; `None` for another host's URL.
fn kept_under(url: &str) -> Option<BlobKey> {
    let key = key_of(url).or_else(|| published_key(url))?;
    BlobKey::new(key).ok()
}

impl ReadmeSource for ReadmeFiles {
    /// Reads the file store from the blocking pool (see the module doc).
    fn readme(&self, file: &ReadmeFile) -> Result<String, NoReadme> {
        match self.runtime.block_on(self.read(file)) {
            Err(NoReadme::Absent) if self.fetch_in_background(file) => Err(NoReadme::Coming),
            read => read,
        }
    }
}

impl ReadmeTexts for ReadmeFiles {
    /// Reads [`READS_AT_ONCE`] files at a time from the file store, none from another
    /// host.
    fn texts(&self, files: &[ReadmeFile]) -> Vec<Option<String>> {
        let reads = futures_util::stream::iter(files)
            .map(|file| async move {
                match self.read(file).await {
                    // Only the start is searched: hold no more of it.
                    Ok(text) => Some(exosphere_index::searched(&text).to_owned()),
                    Err(reason @ (NoReadme::Mismatch | NoReadme::Failed(_))) => {
                        tracing::warn!(url = file.url, %reason, "a README is not searched");
                        None
                    }
                    Err(reason) => {
                        tracing::debug!(url = file.url, %reason, "a README is not searched");
                        None
                    }
                }
            })
            .buffered(READS_AT_ONCE)
            .collect();
        self.runtime.block_on(reads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file store in a temporary directory holding `files` (key, bytes), and the README
    /// files over it, read up to `max_bytes`.
    fn store(files: &[(&str, &[u8])], max_bytes: usize) -> (tempfile::TempDir, ReadmeFiles) {
        let dir = tempfile::tempdir().unwrap();
        for (key, bytes) in files {
            let path = dir.path().join(key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        let blobs = BlobStore::local(dir.path()).unwrap();
        (dir, ReadmeFiles::new(blobs, None, max_bytes))
    }

    fn named(url: &str, bytes: &[u8]) -> ReadmeFile {
        ReadmeFile {
            url: url.to_owned(),
            hash: base64::engine::general_purpose::STANDARD.encode(Sha256::digest(bytes)),
        }
    }

    const README: &[u8] = b"# Widget\n\nThe whole README.\n";
    const PUBLISHED: &str = "http://old.example:3000/packages/ann_widget/1.0.0/r1/README.md";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_file_is_read_only_whole_within_the_limit_and_as_its_hash_promises() {
        let (_dir, files) = store(
            &[
                ("packages/ann_widget/1.0.0/r1/README.md", README),
                ("packages/ann_widget/1.0.0/r2/README.md", b""),
                ("mirror/0123/README.md", README),
            ],
            README.len(),
        );
        let read = |file: ReadmeFile| {
            let files = files.clone();
            async move {
                exosphere_task::blocking(move || files.readme(&file))
                    .await
                    .unwrap()
            }
        };
        let text = String::from_utf8(README.to_vec()).unwrap();
        assert_eq!(read(named(PUBLISHED, README)).await, Ok(text.clone()));
        let mirrored = "http://here/mirror/files/mirror/0123/README.md";
        assert_eq!(read(named(mirrored, README)).await, Ok(text));
        assert_eq!(
            read(named(PUBLISHED, b"other bytes")).await,
            Err(NoReadme::Mismatch)
        );
        let empty = PUBLISHED.replace("/r1/", "/r2/");
        assert_eq!(read(named(&empty, b"")).await, Err(NoReadme::Empty));
        let elsewhere = "https://warehouse.meteor.com/readmes/README.md";
        assert_eq!(
            read(named(elsewhere, README)).await,
            Err(NoReadme::Elsewhere)
        );
        let missing = PUBLISHED.replace("/r1/", "/r3/");
        assert_eq!(read(named(&missing, README)).await, Err(NoReadme::Absent));

        let (_dir, small) = store(
            &[("packages/ann_widget/1.0.0/r1/README.md", README)],
            README.len() - 1,
        );
        let too_large = exosphere_task::blocking(move || small.readme(&named(PUBLISHED, README)))
            .await
            .unwrap();
        assert_eq!(
            too_large,
            Err(NoReadme::TooLarge {
                size: README.len() as u64,
                limit: README.len() as u64 - 1
            })
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn search_gets_the_texts_it_may_keep_in_order() {
        let (_dir, files) = store(
            &[("packages/ann_widget/1.0.0/r1/README.md", README)],
            1 << 20,
        );
        let asked = vec![
            named(PUBLISHED, README),
            named(PUBLISHED, b"tampered"),
            named("https://elsewhere.example/README.md", README),
            named(PUBLISHED, README),
        ];
        let texts = exosphere_task::blocking(move || files.texts(&asked))
            .await
            .unwrap();
        let text = Some(String::from_utf8(README.to_vec()).unwrap());
        assert_eq!(texts, [text.clone(), None, None, text]);
    }
}
