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
//! * **Bounded.** The files hold at most the configured bytes; the oldest go first.
//! * **Discarded at start.** Opening the tier empties its directory, so a restart (or a
//!   crash mid-write) never serves a file from an earlier process.
//! * **Checked.** Every file ends with a CRC-32 of its contents and states its lengths; a
//!   truncated or corrupt file is logged, deleted and recomputed, never served. The whole
//!   file (CRC, and the text's UTF-8) is checked the first time it is read back; later reads
//!   check its header (key, snapshot, and the write's serial number, so a file replaced since
//!   is checked whole again) and its length. Files are written whole and renamed into place,
//!   then only deleted, never written in place, so a file that checked whole once still holds
//!   those bytes; re-checking them on every read was most of the CPU of a sync served from
//!   this tier.
//! * **Not copied.** A page is served from its file mapped into memory ([`StoredText`]): the
//!   socket copies the kernel's cached pages of the file, and no heap buffer is filled first.
//!   The encoded forms (a fraction of the text) are copied out.
//!
//! File layout: the magic `EXOPAGE1`; a little-endian `u32` length and that many bytes of a
//! JSON header (the page's key, snapshot, the write's serial number, follow-up call, text
//! length, and each encoded form's tag and length); the text; the forms; the CRC-32
//! (little-endian `u32`) of all that precedes it.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Write};
use std::ops::Range;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::sync::NextCall;

const MAGIC: &[u8; 8] = b"EXOPAGE1";

/// A header longer than this is not one this module wrote.
const MAX_HEADER: u32 = 1 << 20;

/// A page read back from its file.
pub(crate) struct StoredPage {
    /// The page's text, in the file mapped into memory.
    pub(crate) text: StoredText,
    /// Its encoded forms, by tag.
    pub(crate) forms: Vec<(u8, Vec<u8>)>,
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
pub struct StoredText {
    map: Mapping,
    text: Range<usize>,
}

impl AsRef<str> for StoredText {
    fn as_ref(&self) -> &str {
        // SAFETY: `read_page` made this value only for a range of this file whose bytes
        // were checked to be UTF-8 when the file was first read back, and the tier's files
        // never change once renamed into place (see `Mapping::bytes`).
        unsafe { std::str::from_utf8_unchecked(&self.map.bytes()[self.text.clone()]) }
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
        // was written whole under a temporary name and renamed into place, and the tier only
        // deletes such files (the mapping then stays valid), never writes or truncates them;
        // the data directory is this server's alone (its lock). So the bytes do not change
        // while mapped.
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
    /// Numbers every write: makes temporary file names unique between threads writing at
    /// once, and tells a file from the one it replaced (its header carries the number).
    serial: AtomicU64,
    /// How many files were checked whole, for the tests that check it is once per write.
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
}

/// One file as listed in the index.
struct Listed {
    size: u64,
    epoch: String,
    head_seq: u64,
    forms: Vec<u8>,
    /// The serial number of the write that made the file.
    serial: u64,
    /// The file was read back and checked whole (CRC and UTF-8) once.
    checked: bool,
}

#[derive(Serialize, Deserialize)]
struct Header {
    key: String,
    epoch: String,
    head_seq: u64,
    serial: u64,
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
            serial: AtomicU64::new(0),
            #[cfg(test)]
            whole_checks: AtomicU64::new(0),
        })
    }

    /// The page stored under `key` if it was read from the snapshot `epoch`/`head_seq`.
    /// A file of another snapshot, or one that does not read back whole, is deleted. A file
    /// is checked whole the first time it is read back, and by its header and length after.
    pub(crate) fn load(&self, key: &str, epoch: &str, head_seq: u64) -> Option<StoredPage> {
        let name = file_name(key);
        let checked_serial = {
            let mut index = self.lock();
            let listed = index.files.get(&name)?;
            if listed.epoch != epoch || listed.head_seq != head_seq {
                index.remove(&name, &self.dir);
                return None;
            }
            listed.checked.then_some(listed.serial)
        };
        let expected = Expected {
            key,
            epoch,
            head_seq,
            checked_serial,
        };
        match read_page(&self.dir.join(&name), &expected) {
            Ok((page, checked)) => {
                if let Some(serial) = checked {
                    #[cfg(test)]
                    self.whole_checks.fetch_add(1, Ordering::Relaxed);
                    if let Some(listed) = self.lock().files.get_mut(&name)
                        && listed.serial == serial
                    {
                        listed.checked = true;
                    }
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
                checked: false,
            },
        );
    }

    /// Writes the file through a temporary name and renames it into place; returns its size.
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
            serial,
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
            let mut file = io::BufWriter::new(File::create(&temp)?);
            let mut crc = crc32fast::Hasher::new();
            let mut size = 0u64;
            let mut part = |bytes: &[u8]| {
                crc.update(bytes);
                size += bytes.len() as u64;
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
            file.into_inner().map_err(io::IntoInnerError::into_error)?;
            std::fs::rename(&temp, self.dir.join(name))?;
            Ok(size + 4)
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

/// What a file read back must be: the page asked for, and whether (and as which write) it
/// was already checked whole.
struct Expected<'a> {
    key: &'a str,
    epoch: &'a str,
    head_seq: u64,
    /// The serial number of the write whose file was checked whole, if one was.
    checked_serial: Option<u64>,
}

/// Maps a page file and checks it: its magic, its header's key and snapshot, and every
/// length against the file's; and, unless the file is the write that `expected` says was
/// checked already, the CRC and the text's UTF-8. Returns the page and, if it was checked
/// whole here, the serial number of its write.
fn read_page(path: &Path, expected: &Expected<'_>) -> Result<(StoredPage, Option<u64>), BadFile> {
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
        .map(|(tag, len)| Ok((*tag, bytes[take(*len)?].to_vec())))
        .collect::<Result<Vec<_>, BadFile>>()?;
    let checked = if expected.checked_serial == Some(header.serial) {
        None
    } else {
        let (contents, stored_crc) = bytes.split_at(file_len - 4);
        if crc32fast::hash(contents).to_le_bytes() != stored_crc {
            return Err(BadFile::Format("the checksum does not match"));
        }
        if std::str::from_utf8(&bytes[text.clone()]).is_err() {
            return Err(BadFile::Format("the text is not UTF-8"));
        }
        Some(header.serial)
    };
    let page = StoredPage {
        text: StoredText { map, text },
        forms,
        next: header.next.map(|next| NextCall {
            token: next.token,
            options: next.options,
        }),
    };
    Ok((page, checked))
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
        assert_eq!(loaded.forms, vec![(6, vec![1, 2])]);
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
            std::fs::write(&path, bytes).unwrap();
            assert!(files.load("k", "e1", 7).is_none());
            assert!(!path.exists(), "the bad file is deleted");
            assert_eq!(files.usage(), (0, 0));
        }
    }

    #[test]
    fn a_file_is_checked_whole_once_per_write_and_by_its_length_after() {
        let dir = tempfile::tempdir().unwrap();
        let files = PageFiles::open(dir.path(), 1 << 20).unwrap();
        let next = next();
        let path = dir.path().join(file_name("k"));
        files.store("k", &page("[\"page text\"]", &[], &next));
        for _ in 0..3 {
            let loaded = files.load("k", "e1", 7).expect("stored");
            assert_eq!(loaded.text.as_ref(), "[\"page text\"]");
        }
        assert_eq!(files.whole_checks.load(Ordering::Relaxed), 1);

        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 3);
        std::fs::write(&path, bytes).unwrap();
        assert!(
            files.load("k", "e1", 7).is_none(),
            "truncated after its check"
        );
        assert!(!path.exists());

        // A file that checked whole, replaced by another write's file whose text is
        // corrupt: its serial number differs, so it is checked whole, and dropped.
        files.store("k", &page("[\"page text\"]", &[], &next));
        assert!(files.load("k", "e1", 7).is_some());
        let other_dir = tempfile::tempdir().unwrap();
        let other = PageFiles::open(other_dir.path(), 1 << 20).unwrap();
        for key in ["a", "b", "c", "k"] {
            other.store(key, &page("[\"page text\"]", &[], &next));
        }
        let mut bytes = std::fs::read(other_dir.path().join(file_name("k"))).unwrap();
        let at = bytes.len() - 8;
        bytes[at] ^= 0x01;
        std::fs::write(&path, bytes).unwrap();
        assert!(
            files.load("k", "e1", 7).is_none(),
            "another write's corrupt file"
        );
        assert!(!path.exists());
        assert_eq!(files.whole_checks.load(Ordering::Relaxed), 2);
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
