//! The page cache's second tier: encoded sync pages kept in files.
//!
//! A full sync of a catalog the size of packages.meteor.com is hundreds of megabytes of page
//! text, several times what the in-memory tier ([`Syncer`](crate::Syncer)) holds by default,
//! so without this tier every client syncing from scratch has every page read from the store,
//! assembled and (for compressing clients) compressed again. Pages the memory tier evicts are
//! written here with the encoded forms computed for them so far (a WebSocket-compressed
//! body, say), and a later client is served them from the file: read, never recomputed.
//!
//! The contract:
//!
//! * **Never stale.** A file records the store snapshot its page was read from (epoch and
//!   head sequence). It is served only while the store is at that snapshot, exactly like a
//!   page in memory, so read-your-writes (spec §3.6) holds and a page never mixes two
//!   snapshots: a page is written whole from one computed page, to a temporary file renamed
//!   into place, so a reader sees an old file or a new one, never a part.
//! * **Bounded.** The files listed hold at most the configured bytes; the oldest go first.
//!   A file deleted (evicted, stale or replaced) while a page read from it is still held (in
//!   the memory tier, or in replies queued for clients) keeps its disk blocks until the last
//!   holder drops it, so the disk can exceed the bound by up to the memory tier's bound
//!   (`--sync-cache-size`) plus the pages being sent.
//! * **Discarded at start.** Opening the tier empties its directory, so a restart (or a
//!   crash mid-write) never serves a file from an earlier process.
//! * **Checked once, then kept mapped.** Every file ends with a CRC-32 of its contents and
//!   states its lengths; a truncated or corrupt file is logged, deleted and recomputed, never
//!   served. The first read of a file maps it and checks it whole: the header (key,
//!   snapshot), every length against the file's, the CRC and the text's UTF-8. The checked
//!   mapping is then kept with the file's listing (up to [`MAX_KEPT_MAPPINGS`] of them) and
//!   every later read of that page is served from it, with no system call and no check, until
//!   the file is evicted, replaced or stale: opening, mapping, checking and unmapping each
//!   page again was most of the server's own CPU in a full sync served from this tier. A file
//!   replaced under its name after that first read is never read (the mapping holds the
//!   inode that checked), and one beyond the bound of kept mappings is read and checked whole
//!   on every read.
//! * **Not copied.** A page is served from its file mapped into memory ([`StoredText`]): the
//!   socket copies the kernel's cached pages of the file, and no heap buffer is filled first.
//!   The encoded forms (a fraction of the text) are copied out, once. This relies on an
//!   invariant that nothing here can enforce (the data directory's lock is advisory):
//!   **nothing may modify or truncate the files in `DATA_DIR/sync-pages` while the server
//!   runs.** The files are created read-only (mode 0400) to make an accident less likely. A
//!   file truncated while mapped, or a disk read error on a page of the mapping the kernel
//!   has to read again, raises `SIGBUS` and kills the server: the same exposure the SQLite
//!   catalog's own reads carry, since they map the database file (`mmap_size`).
//!
//! File layout: the magic `EXOPAGE1`; a little-endian `u32` length and that many bytes of a
//! JSON header (the page's key, snapshot, follow-up call, text length, and each encoded
//! form's tag and length); the text; the forms; the CRC-32
//! (little-endian `u32`) of all that precedes it.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Write};
use std::ops::Range;
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::sync::NextCall;

const MAGIC: &[u8; 8] = b"EXOPAGE1";

/// A header longer than this is not one this module wrote.
const MAX_HEADER: u32 = 1 << 20;

/// At most this many checked files are kept mapped: each mapping is one of the process's
/// memory areas, which Linux bounds (`vm.max_map_count`, 65,530 by default) for the
/// process as a whole, SQLite's own mapping and every thread's stack included. At the
/// default page size (`--sync-page-bytes`) a full sync of packages.meteor.com is about 400
/// pages.
const MAX_KEPT_MAPPINGS: usize = 4096;

/// A page read back from its file.
#[derive(Clone)]
pub(crate) struct StoredPage {
    /// The page's text, in the file mapped into memory.
    pub(crate) text: StoredText,
    /// Its encoded forms, by tag, copied out of the file once.
    pub(crate) forms: Vec<(u8, Arc<[u8]>)>,
    /// The call after it, if any.
    pub(crate) next: Option<NextCall>,
}

/// A page to write, borrowed from the memory tier's entry.
pub(crate) struct PageToStore<'a> {
    pub(crate) epoch: &'a str,
    pub(crate) head_seq: u64,
    pub(crate) text: &'a str,
    pub(crate) forms: &'a [(u8, Arc<[u8]>)],
    pub(crate) next: Option<&'a NextCall>,
}

/// A page's text as read back from its file: the file mapped into memory, not copied into
/// the heap, and checked to hold the UTF-8 text that was written (see the module's contract).
/// It exists so that serving a page from the disk tier costs no copy and no fresh memory:
/// whatever sends the page reads the kernel's cached pages of the file. Dropping the last
/// owner unmaps the file (a file deleted meanwhile stays readable until then).
#[derive(Clone)]
pub struct StoredText {
    map: Arc<Mapping>,
    text: Range<usize>,
}

impl AsRef<str> for StoredText {
    fn as_ref(&self) -> &str {
        // SAFETY: `read_page` made this value only after `std::str::from_utf8` accepted
        // exactly this range of this very mapping, and the mapped bytes do not change while
        // the mapping lives (see `Mapping::bytes` for the invariant that rests on).
        unsafe { std::str::from_utf8_unchecked(&self.map.bytes()[self.text.clone()]) }
    }
}

impl std::fmt::Debug for StoredText {
    /// The text's length, not the text (a page is megabytes).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredText")
            .field("len", &self.text.len())
            .finish_non_exhaustive()
    }
}

/// A whole file mapped read-only into this process's memory.
struct Mapping {
    ptr: std::ptr::NonNull<libc::c_void>,
    len: usize,
}

// SAFETY: the mapping is read-only and owned by this value alone; reading it from any thread
// is as safe as reading a shared byte slice.
unsafe impl Send for Mapping {}
// SAFETY: as above: `&Mapping` only gives out `&[u8]`.
unsafe impl Sync for Mapping {}

/// Maps every page of the file at once: one system call instead of a page fault per few
/// pages as the socket reads them.
#[cfg(any(target_os = "linux", target_os = "android"))]
const MAP_POPULATE: libc::c_int = libc::MAP_POPULATE;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const MAP_POPULATE: libc::c_int = 0;

impl Mapping {
    /// Maps the first `len` bytes of `file` (its whole length, which is above 0).
    fn new(file: &File, len: usize) -> io::Result<Mapping> {
        // SAFETY: a new read-only private mapping of an open file at an address the kernel
        // chooses; nothing else in the process is affected. Failure is checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE | MAP_POPULATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = std::ptr::NonNull::new(ptr).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(Mapping { ptr, len })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes until `drop`. The file is the tier's own: it
        // was written whole under a temporary name, made read-only and renamed into place,
        // and the tier only deletes such files (the mapping then stays valid), never writes
        // or truncates them. The bytes therefore do not change while mapped, provided nothing
        // else modifies or truncates the files in the tier's directory while the server runs:
        // the data directory's lock is advisory and does not enforce that, so it is an
        // invariant of deployment (see the module's contract). Breaking it can change the
        // text under a `&str` (and truncation raises `SIGBUS` on access, as does a disk read
        // error on a page the kernel re-reads), the same exposure as SQLite's `mmap_size`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast::<u8>(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped; no borrow of it outlives `self`.
        unsafe {
            libc::munmap(self.ptr.as_ptr(), self.len);
        }
    }
}

/// Files of encoded pages in one directory, bounded in bytes.
pub(crate) struct PageFiles {
    dir: PathBuf,
    max_bytes: u64,
    index: Mutex<Index>,
    /// How many checked mappings the index may keep ([`MAX_KEPT_MAPPINGS`]; lower in tests).
    max_kept: usize,
    /// Numbers every write to make temporary file names unique between threads writing at
    /// once; it starts at a random number, so two instances' names do not meet either.
    serial: AtomicU64,
    /// How many files were read and checked whole, for the tests that check it is once per
    /// file while its mapping is kept.
    #[cfg(test)]
    whole_checks: AtomicU64,
}

/// What the files hold, kept in memory so a miss costs no system call.
#[derive(Default)]
struct Index {
    files: HashMap<String, Listed>,
    /// File names, oldest first, for eviction.
    order: VecDeque<String>,
    bytes: u64,
    /// How many listings keep their checked mapping.
    kept: usize,
}

/// One file as listed in the index.
struct Listed {
    size: u64,
    epoch: String,
    head_seq: u64,
    forms: Vec<u8>,
    /// The serial number of the write that put this file in place, which tells a read of
    /// this file from a read of the one it replaced.
    serial: u64,
    /// The file, mapped and checked whole by its first read, for every later one.
    kept: Option<StoredPage>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    key: String,
    epoch: String,
    head_seq: u64,
    next: Option<NextHeader>,
    text_len: u64,
    forms: Vec<(u8, u64)>,
}

#[derive(Serialize, Deserialize)]
struct NextHeader {
    token: serde_json::Value,
    options: serde_json::Value,
}

/// Why a file was not served.
#[derive(Debug, thiserror::Error)]
enum BadFile {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("{0}")]
    Format(&'static str),
}

impl PageFiles {
    /// Opens the tier in `dir` (created if missing) and deletes every file already in it:
    /// pages of an earlier process are not trusted.
    pub(crate) fn open(dir: &Path, max_bytes: u64) -> io::Result<PageFiles> {
        std::fs::create_dir_all(dir)?;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(PageFiles {
            dir: dir.to_owned(),
            max_bytes,
            index: Mutex::new(Index::default()),
            max_kept: MAX_KEPT_MAPPINGS,
            serial: AtomicU64::new(rand::random()),
            #[cfg(test)]
            whole_checks: AtomicU64::new(0),
        })
    }

    /// The page stored under `key` if it was read from the snapshot `epoch`/`head_seq`.
    /// A file of another snapshot, or one that does not read back whole, is deleted. The
    /// first read of a file checks it whole and keeps its mapping for the later ones.
    pub(crate) fn load(&self, key: &str, epoch: &str, head_seq: u64) -> Option<StoredPage> {
        let name = file_name(key);
        let serial = {
            let mut index = self.lock();
            let listed = index.files.get(&name)?;
            if listed.epoch != epoch || listed.head_seq != head_seq {
                index.remove(&name, &self.dir);
                return None;
            }
            if let Some(kept) = &listed.kept {
                return Some(kept.clone());
            }
            listed.serial
        };
        let expected = Expected {
            key,
            epoch,
            head_seq,
        };
        match read_page(&self.dir.join(&name), &expected) {
            Ok(page) => {
                #[cfg(test)]
                self.whole_checks.fetch_add(1, Ordering::Relaxed);
                let mut index = self.lock();
                let room = index.kept < self.max_kept;
                // Kept only for the listing it was read for: a store may have replaced the
                // file (with more forms) since the index was unlocked.
                if let Some(listed) = index.files.get_mut(&name)
                    && room
                    && listed.serial == serial
                    && listed.kept.is_none()
                {
                    listed.kept = Some(page.clone());
                    index.kept += 1;
                }
                Some(page)
            }
            Err(error) => {
                tracing::warn!(file = %name, %error, "a cached sync page file is unreadable; recomputing the page");
                self.lock().remove(&name, &self.dir);
                None
            }
        }
    }

    /// Writes `page` under `key`, unless the file already holds it with at least these
    /// forms, or it would not fit the bound on its own. Evicts the oldest files to stay
    /// within the bound. Failures are logged: the page is then recomputed when next asked.
    pub(crate) fn store(&self, key: &str, page: &PageToStore<'_>) {
        let name = file_name(key);
        let tags: Vec<u8> = page.forms.iter().map(|(tag, _)| *tag).collect();
        if let Some(listed) = self.lock().files.get(&name)
            && listed.epoch == page.epoch
            && listed.head_seq == page.head_seq
            && tags.iter().all(|tag| listed.forms.contains(tag))
        {
            return;
        }
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        let size = match self.write_file(&name, key, serial, page) {
            Ok(size) => size,
            Err(error) => {
                tracing::warn!(file = %name, %error, "writing a sync page file failed");
                return;
            }
        };
        let mut index = self.lock();
        index.remove_listing(&name);
        if size > self.max_bytes {
            index.delete(&name, &self.dir);
            return;
        }
        while index.bytes + size > self.max_bytes {
            let Some(oldest) = index.order.front().cloned() else {
                break;
            };
            index.remove(&oldest, &self.dir);
        }
        index.bytes += size;
        index.order.push_back(name.clone());
        index.files.insert(
            name,
            Listed {
                size,
                epoch: page.epoch.to_owned(),
                head_seq: page.head_seq,
                forms: tags,
                serial,
                kept: None,
            },
        );
    }

    /// Writes the file, read-only, through a temporary name (`serial` makes it unique) and
    /// renames it into place; returns its size.
    fn write_file(
        &self,
        name: &str,
        key: &str,
        serial: u64,
        page: &PageToStore<'_>,
    ) -> io::Result<u64> {
        let header = serde_json::to_vec(&Header {
            key: key.to_owned(),
            epoch: page.epoch.to_owned(),
            head_seq: page.head_seq,
            next: page.next.map(|next| NextHeader {
                token: next.token.clone(),
                options: next.options.clone(),
            }),
            text_len: page.text.len() as u64,
            forms: page
                .forms
                .iter()
                .map(|(tag, form)| (*tag, form.len() as u64))
                .collect(),
        })?;
        let header_len = u32::try_from(header.len())
            .ok()
            .filter(|len| *len <= MAX_HEADER)
            .ok_or_else(|| io::Error::other("the page's header is too long"))?;
        let temp = self.dir.join(format!("{name}.{serial}.tmp"));
        let written = (|| {
            let mut file = io::BufWriter::new(
                File::options()
                    .write(true)
                    .create_new(true)
                    .mode(0o400)
                    .open(&temp)?,
            );
            let mut crc = crc32fast::Hasher::new();
            let mut part = |bytes: &[u8]| {
                crc.update(bytes);
                file.write_all(bytes)
            };
            part(MAGIC)?;
            part(&header_len.to_le_bytes())?;
            part(&header)?;
            part(page.text.as_bytes())?;
            for (_, form) in page.forms {
                part(form)?;
            }
            file.write_all(&crc.finalize().to_le_bytes())?;
            let file = file.into_inner().map_err(io::IntoInnerError::into_error)?;
            std::fs::rename(&temp, self.dir.join(name))?;
            Ok(file.metadata()?.len())
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        written
    }

    /// How many files the tier lists and their bytes, for the tests of its bound.
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn usage(&self) -> (usize, u64) {
        let index = self.lock();
        (index.files.len(), index.bytes)
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        self.index
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Index {
    /// Forgets a file and deletes it.
    fn remove(&mut self, name: &str, dir: &Path) {
        self.remove_listing(name);
        self.delete(name, dir);
    }

    /// Forgets a file (which a caller is about to replace or delete).
    fn remove_listing(&mut self, name: &str) {
        if let Some(listed) = self.files.remove(name) {
            self.bytes -= listed.size;
            self.kept -= usize::from(listed.kept.is_some());
            self.order.retain(|listed| listed != name);
        }
    }

    fn delete(&self, name: &str, dir: &Path) {
        if let Err(error) = std::fs::remove_file(dir.join(name))
            && error.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(file = %name, %error, "deleting a sync page file failed");
        }
    }
}

/// The file name of a key: its SHA-256 in hex (tokens are long and hold any characters).
fn file_name(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut name = String::with_capacity(digest.len() * 2 + 5);
    for byte in digest {
        name.push_str(&format!("{byte:02x}"));
    }
    name.push_str(".page");
    name
}

/// What a file read back must be: the page asked for.
struct Expected<'a> {
    key: &'a str,
    epoch: &'a str,
    head_seq: u64,
}

/// Maps a page file and checks it whole: its magic, its header's key and snapshot, every
/// length against the file's, the CRC and the text's UTF-8.
fn read_page(path: &Path, expected: &Expected<'_>) -> Result<StoredPage, BadFile> {
    let file = File::open(path)?;
    let file_len = usize::try_from(file.metadata()?.len())
        .map_err(|_| BadFile::Format("the file is too large"))?;
    if file_len < MAGIC.len() + 4 + 4 {
        return Err(BadFile::Format("the file ends early"));
    }
    let map = Mapping::new(&file, file_len)?;
    let bytes = map.bytes();
    let mut at = 0usize;
    let mut take = |len: u64| -> Result<Range<usize>, BadFile> {
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| at.checked_add(len))
            .filter(|end| *end <= file_len)
            .ok_or(BadFile::Format("the file ends early"))?;
        let range = at..end;
        at = end;
        Ok(range)
    };
    if bytes[take(MAGIC.len() as u64)?] != *MAGIC {
        return Err(BadFile::Format("not a sync page file"));
    }
    let header_len = u32::from_le_bytes(
        bytes[take(4)?]
            .try_into()
            .map_err(|_| BadFile::Format("short header length"))?,
    );
    if header_len > MAX_HEADER {
        return Err(BadFile::Format("the header is too long"));
    }
    let header: Header = serde_json::from_slice(&bytes[take(u64::from(header_len))?])
        .map_err(|_| BadFile::Format("the header is not valid"))?;
    if header.key != expected.key
        || header.epoch != expected.epoch
        || header.head_seq != expected.head_seq
    {
        return Err(BadFile::Format("the header is for another page"));
    }
    let total = header
        .forms
        .iter()
        .try_fold(header.text_len, |total, (_, len)| total.checked_add(*len))
        .and_then(|total| total.checked_add(MAGIC.len() as u64 + 4 + u64::from(header_len) + 4));
    if total != u64::try_from(file_len).ok() {
        return Err(BadFile::Format(
            "the file's length does not match its header",
        ));
    }
    let text = take(header.text_len)?;
    let forms = header
        .forms
        .iter()
        .map(|(tag, len)| Ok((*tag, Arc::from(&bytes[take(*len)?]))))
        .collect::<Result<Vec<_>, BadFile>>()?;
    let (contents, stored_crc) = bytes.split_at(file_len - 4);
    if crc32fast::hash(contents).to_le_bytes() != stored_crc {
        return Err(BadFile::Format("the checksum does not match"));
    }
    // Whatever the CRC said: `StoredText::as_ref` relies on it.
    if std::str::from_utf8(&bytes[text.clone()]).is_err() {
        return Err(BadFile::Format("the text is not UTF-8"));
    }
    Ok(StoredPage {
        text: StoredText {
            map: Arc::new(map),
            text,
        },
        forms,
        next: header.next.map(|next| NextCall {
            token: next.token,
            options: next.options,
        }),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn page<'a>(
        text: &'a str,
        forms: &'a [(u8, Arc<[u8]>)],
        next: &'a NextCall,
    ) -> PageToStore<'a> {
        PageToStore {
            epoch: "e1",
            head_seq: 7,
            text,
            forms,
            next: Some(next),
        }
    }

    fn next() -> NextCall {
        NextCall {
            token: json!({"epoch": "e1", "packagesSeq": 3}),
            options: json!({"compressCollections": true}),
        }
    }

    #[test]
    fn a_page_reads_back_with_its_forms_for_its_snapshot_only() {
        let dir = tempfile::tempdir().unwrap();
        let files = PageFiles::open(dir.path(), 1 << 20).unwrap();
        let forms: Vec<(u8, Arc<[u8]>)> = vec![(6, Arc::from(&b"\x01\x02"[..]))];
        let next = next();
        files.store("k", &page("{\"a\":1}", &forms, &next));
        let loaded = files.load("k", "e1", 7).expect("stored");
        assert_eq!(loaded.text.as_ref(), "{\"a\":1}");
        assert_eq!(loaded.forms, forms);
        assert_eq!(loaded.next.unwrap().token, next.token);
        assert!(files.load("other", "e1", 7).is_none());
        assert!(files.load("k", "e1", 8).is_none(), "a later snapshot");
        assert!(files.load("k", "e1", 7).is_none(), "the stale file went");
        assert_eq!(files.usage(), (0, 0));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    /// A way to damage a file's bytes.
    type Damage<'a> = &'a dyn Fn(&mut Vec<u8>);

    #[test]
    fn truncated_or_corrupt_files_are_dropped_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let files = PageFiles::open(dir.path(), 1 << 20).unwrap();
        let next = next();
        let path = dir.path().join(file_name("k"));
        let damages: [Damage; 4] = [
            &|bytes| bytes.truncate(bytes.len() - 3),
            &|bytes| {
                let middle = bytes.len() - 8;
                bytes[middle] ^= 0x20;
            },
            &|bytes| bytes[0] = b'X',
            &|bytes| bytes[8..12].copy_from_slice(&u32::MAX.to_le_bytes()),
        ];
        for damage in damages {
            files.store("k", &page("{\"page\":\"text\"}", &[], &next));
            let mut bytes = std::fs::read(&path).unwrap();
            damage(&mut bytes);
            replace_by_rename(&path, &bytes);
            assert!(files.load("k", "e1", 7).is_none());
            assert!(!path.exists(), "the bad file is deleted");
            assert_eq!(files.usage(), (0, 0));
        }
    }

    /// Replaces the file at `path` with a new file holding `bytes`: a new inode.
    fn replace_by_rename(path: &Path, bytes: &[u8]) {
        let temp = path.with_extension("new");
        std::fs::write(&temp, bytes).unwrap();
        std::fs::rename(&temp, path).unwrap();
    }

    #[test]
    fn a_file_is_checked_whole_once_then_served_from_its_mapping() {
        let dir = tempfile::tempdir().unwrap();
        let files = PageFiles::open(dir.path(), 1 << 20).unwrap();
        let next = next();
        let path = dir.path().join(file_name("k"));
        let text = "[\"page text\"]";
        files.store("k", &page(text, &[], &next));
        for _ in 0..3 {
            let loaded = files.load("k", "e1", 7).expect("stored");
            assert_eq!(loaded.text.as_ref(), text);
        }
        assert_eq!(files.whole_checks.load(Ordering::Relaxed), 1);

        // A file put in its place after that first read (another inode, here truncated) is
        // never read: the page is served as it was written and checked.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 3);
        replace_by_rename(&path, &bytes);
        let loaded = files.load("k", "e1", 7).expect("kept");
        assert_eq!(loaded.text.as_ref(), text);
        assert_eq!(files.whole_checks.load(Ordering::Relaxed), 1);

        // The page written again with a new form replaces the listing, and its file is read
        // and checked whole once more.
        let forms: Vec<(u8, Arc<[u8]>)> = vec![(9, Arc::from(&b"xyz"[..]))];
        files.store("k", &page(text, &forms, &next));
        assert_eq!(files.load("k", "e1", 7).expect("stored").forms, forms);
        assert_eq!(files.load("k", "e1", 7).expect("kept").forms, forms);
        assert_eq!(files.whole_checks.load(Ordering::Relaxed), 2);
        assert_eq!(files.lock().kept, 1);
    }

    #[test]
    fn mappings_beyond_the_bound_are_not_kept_and_their_files_are_checked_on_every_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = PageFiles::open(dir.path(), 1 << 20).unwrap();
        files.max_kept = 1;
        let next = next();
        files.store("a", &page("[\"a\"]", &[], &next));
        files.store("b", &page("[\"b\"]", &[], &next));
        for _ in 0..3 {
            assert_eq!(files.load("a", "e1", 7).unwrap().text.as_ref(), "[\"a\"]");
            assert_eq!(files.load("b", "e1", 7).unwrap().text.as_ref(), "[\"b\"]");
        }
        assert_eq!(files.whole_checks.load(Ordering::Relaxed), 1 + 3);
        assert_eq!(files.lock().kept, 1);

        // Once the kept one goes (stale), another file's mapping takes its place.
        assert!(files.load("a", "e1", 8).is_none());
        assert_eq!(files.lock().kept, 0);
        files.load("b", "e1", 7).unwrap();
        files.load("b", "e1", 7).unwrap();
        assert_eq!(files.whole_checks.load(Ordering::Relaxed), 1 + 3 + 1);
        assert_eq!(files.lock().kept, 1);
    }

    #[test]
    fn a_page_stays_readable_after_its_file_is_replaced_or_evicted() {
        let dir = tempfile::tempdir().unwrap();
        let next = next();
        let text = "y".repeat(1000);
        let files = PageFiles::open(dir.path(), 1 << 20).unwrap();
        files.store("k", &page(&text, &[], &next));
        let one = files.usage().1;
        let held = files.load("k", "e1", 7).expect("stored");
        let forms: Vec<(u8, Arc<[u8]>)> = vec![(6, Arc::from(&b"abc"[..]))];
        files.store("k", &page(&text, &forms, &next));
        assert_eq!(files.load("k", "e1", 7).unwrap().forms.len(), 1);
        assert_eq!(held.text.as_ref(), text, "after its file was replaced");

        let small = PageFiles::open(dir.path(), one + 16).unwrap();
        small.store("a", &page(&text, &[], &next));
        let held = small.load("a", "e1", 7).expect("stored");
        small.store("b", &page(&text, &[], &next));
        assert!(small.load("a", "e1", 7).is_none(), "evicted");
        assert!(!dir.path().join(file_name("a")).exists());
        assert_eq!(held.text.as_ref(), text, "after its file was evicted");
    }

    #[test]
    fn files_are_written_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let files = PageFiles::open(dir.path(), 1 << 20).unwrap();
        files.store("k", &page("[1]", &[], &next()));
        let mode = std::fs::metadata(dir.path().join(file_name("k")))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o400
        );
    }

    #[test]
    fn files_stay_within_the_byte_bound_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let next = next();
        let text = "x".repeat(1000);
        let probe = PageFiles::open(dir.path(), u64::MAX).unwrap();
        probe.store("probe", &page(&text, &[], &next));
        let one = probe.usage().1;
        let files = PageFiles::open(dir.path(), one * 3).unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "opening empties the directory"
        );
        for key in ["a", "b", "c", "d"] {
            files.store(key, &page(&text, &[], &next));
            assert!(files.usage().1 <= one * 3);
        }
        assert!(files.load("a", "e1", 7).is_none(), "the oldest went");
        assert!(files.load("d", "e1", 7).is_some());
        let on_disk: u64 = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().metadata().unwrap().len())
            .sum();
        assert_eq!(on_disk, files.usage().1);
        let small = PageFiles::open(dir.path(), one - 1).unwrap();
        small.store("large", &page(&text, &[], &next));
        assert_eq!(
            small.usage(),
            (0, 0),
            "a page larger than the bound is not kept"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_page_is_rewritten_only_when_it_gained_forms() {
        let dir = tempfile::tempdir().unwrap();
        let files = PageFiles::open(dir.path(), 1 << 20).unwrap();
        let next = next();
        let none: Vec<(u8, Arc<[u8]>)> = Vec::new();
        let six: Vec<(u8, Arc<[u8]>)> = vec![(6, Arc::from(&b"abc"[..]))];
        files.store("k", &page("[1]", &six, &next));
        let before = files.usage();
        files.store("k", &page("[1]", &none, &next));
        assert_eq!(files.usage(), before);
        assert_eq!(files.load("k", "e1", 7).unwrap().forms.len(), 1);
    }
}
