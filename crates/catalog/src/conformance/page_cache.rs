//! The [`Syncer`] page cache in front of the store: prefetched pages, invalidation and its
//! bound, in memory and in its tier of page files.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::NaiveDate;

use serde_json::{Value, json};

use super::NewStore;
use crate::Collection;
use crate::accounts::UploadTicket;
use crate::audit::{AuditEntry, AuditQuery};
use crate::error::StoreError;
use crate::mirror::{MirrorState, UpstreamFile};
use crate::page_cache::{PageText, Syncer};
use crate::page_disk::StoredText;
use crate::record::Record;
use crate::record::StatsRow;
use crate::store::{
    CatalogState, CatalogStore, CatalogWriter, Cursors, Duty, ExportItem, Hold, Page, PageLimits,
    ServerSeat, Snapshot,
};
use crate::sync::{NextCall, Paging, answer};

fn store_with(new_store: NewStore<'_>, n: usize) -> Arc<dyn CatalogStore> {
    let store = new_store();
    store
        .write(&mut |w| {
            for i in 0..n {
                let text = format!(r#"{{"_id":"p{i}","name":"pkg{i}"}}"#);
                w.upsert(&Record::from_json(Collection::Packages, &text).unwrap())?;
            }
            Ok(())
        })
        .unwrap();
    store
}

fn short() -> Value {
    json!({"shortPagesForTest": true})
}

/// Checks that a prefetched page is served, equals a fresh one, and is one page shared by
/// every client it is served to (what lets the server compress it once).
pub fn a_prefetched_page_is_served_and_equals_a_fresh_one(new_store: NewStore<'_>) {
    let store = store_with(new_store, 7);
    let syncer = Syncer::<Arc<str>>::new(Arc::clone(&store), Paging::default(), 1 << 20);
    let first = syncer.answer(&json!({"format": "1.1"}), &short()).unwrap();
    let next = first.next.clone().expect("more pages");
    syncer.prefetch(&next);
    assert!(syncer.cache_usage().1 > 0, "the next page is cached");

    // The tool sends the token back with its own `_id` (spec §3.4).
    let mut token = next.token.clone();
    token["_id"] = json!("1");
    let cached = syncer.answer(&token, &short()).unwrap();
    let fresh = answer(&*store, &next.token, &short(), &Paging::default()).unwrap();
    assert_eq!(*cached.text, *fresh.text);
    assert_eq!(cached.next.map(|n| n.token), fresh.next.map(|n| n.token));
    let another_client = syncer.answer(&next.token, &short()).unwrap();
    assert!(Arc::ptr_eq(&cached.text, &another_client.text));
}

/// Checks that a prefetch computes the two pages after the one answered, one after the
/// other, passing a page already cached, and no more.
pub fn a_prefetch_computes_two_pages_ahead(new_store: NewStore<'_>) {
    let (store, syncer, second) = first_page_prefetched(new_store, 10);
    assert_eq!(
        syncer.cache_usage().0,
        3,
        "the first page and the two after it"
    );
    let answered = syncer.answer(&second.token, &short()).unwrap();
    let fresh = answer(&*store, &second.token, &short(), &Paging::default()).unwrap();
    assert_eq!(answered.text, fresh.text);
    syncer.prefetch(&answered.next.expect("more pages"));
    assert_eq!(
        syncer.cache_usage().0,
        4,
        "the third, passed, and the fourth and last"
    );
}

/// A store of `n` packages, a syncer over it that answered the first short page and then
/// prefetched from the second, and the call for the second.
fn first_page_prefetched(
    new_store: NewStore<'_>,
    n: usize,
) -> (Arc<dyn CatalogStore>, Syncer<String>, NextCall) {
    let store = store_with(new_store, n);
    let syncer = Syncer::<String>::new(Arc::clone(&store), Paging::default(), 1 << 20);
    let first = syncer.answer(&json!({"format": "1.1"}), &short()).unwrap();
    let next = first.next.expect("more pages");
    syncer.prefetch(&next);
    (store, syncer, next)
}

/// Writes the package `late`, after pages were cached.
fn write_late_package(store: &dyn CatalogStore) {
    store
        .write(&mut |w| {
            let text = r#"{"_id":"late","name":"late"}"#;
            w.upsert(&Record::from_json(Collection::Packages, text).unwrap())
                .map(|_| ())
        })
        .unwrap();
}

/// Checks that a write invalidates cached pages.
pub fn a_write_invalidates_cached_pages(new_store: NewStore<'_>) {
    let (store, syncer, next) = first_page_prefetched(new_store, 5);
    write_late_package(&*store);

    let second = syncer.answer(&next.token, &short()).unwrap();
    let page: Value = serde_json::from_str(&second.text).unwrap();
    let names: Vec<&str> = page["collections"]["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["_id"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["p3", "p4", "late"], "read-your-writes (spec §3.6)");
    assert_eq!(
        syncer.cache_usage(),
        (1, second.text.len()),
        "pages of the state before the write can never be served again, and are not kept"
    );
}

/// Checks that the cache stays within its byte bound.
pub fn the_cache_stays_within_its_byte_bound(new_store: NewStore<'_>) {
    let store = store_with(new_store, 30);
    let first_len = answer(&*store, &json!({}), &short(), &Paging::default())
        .unwrap()
        .text
        .len();
    let bound = first_len * 2 + first_len / 2;
    let syncer = Syncer::<String>::new(Arc::clone(&store), Paging::default(), bound);
    let mut next = syncer.answer(&json!({}), &short()).unwrap().next;
    while let Some(call) = next {
        syncer.prefetch(&call);
        assert!(syncer.cache_usage().1 <= bound);
        next = syncer.answer(&call.token, &short()).unwrap().next;
    }
    assert!(syncer.cache_usage().0 <= 2);
}

/// Checks that caching can be turned off.
pub fn caching_can_be_turned_off(new_store: NewStore<'_>) {
    let store = store_with(new_store, 5);
    let syncer = Syncer::<String>::new(store, Paging::default(), 0);
    let first = syncer.answer(&json!({}), &short()).unwrap();
    syncer.prefetch(&first.next.unwrap());
    assert_eq!(syncer.cache_usage().0, 0);
}

/// A page type that counts how each page text was made, and carries one encoded form, so
/// the tests see what the tiers compute, read back and keep. Counts are kept per page text,
/// which holds its store's random epoch in the token, so tests running at once (on other
/// stores) do not disturb each other's.
#[derive(Clone)]
struct Counted {
    text: Arc<str>,
    forms: Vec<(u8, Arc<[u8]>)>,
}

/// How a page text was made: computed from the store, or read back from its file.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Made {
    Computed,
    Restored,
}

/// How many times each page text was made, and how.
static MADE: Mutex<BTreeMap<(Made, String), usize>> = Mutex::new(BTreeMap::new());

fn count(how: Made, text: &str) {
    *MADE
        .lock()
        .unwrap()
        .entry((how, text.to_owned()))
        .or_default() += 1;
}

/// How many times `text` was made `how`.
fn made(how: Made, text: &str) -> usize {
    MADE.lock()
        .unwrap()
        .get(&(how, text.to_owned()))
        .copied()
        .unwrap_or(0)
}

/// The encoded form a [`Counted`] page carries: its length, as text.
fn form_of(text: &str) -> Arc<[u8]> {
    Arc::from(text.len().to_string().as_bytes())
}

impl From<String> for Counted {
    fn from(text: String) -> Self {
        count(Made::Computed, &text);
        let forms = vec![(3, form_of(&text))];
        Counted {
            text: Arc::from(text),
            forms,
        }
    }
}

impl AsRef<str> for Counted {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl PageText for Counted {
    fn forms(&self) -> Vec<(u8, Arc<[u8]>)> {
        self.forms.clone()
    }

    fn with_forms(text: StoredText, forms: Vec<(u8, Arc<[u8]>)>) -> Self {
        count(Made::Restored, text.as_ref());
        Counted {
            text: Arc::from(text.as_ref()),
            forms,
        }
    }
}

/// A full sync as the server runs it for one client: each answer, then its prefetch.
fn full_sync<P: PageText>(syncer: &Syncer<P>) -> Vec<P> {
    let mut pages = Vec::new();
    let mut token = json!({"format": "1.1"});
    loop {
        let page = syncer.answer(&token, &short()).unwrap();
        pages.push(page.text);
        let Some(next) = page.next else {
            return pages;
        };
        syncer.prefetch(&next);
        token = next.token;
    }
}

/// The pages a fresh computation gives, for comparison.
fn fresh_sync(store: &dyn CatalogStore) -> Vec<String> {
    let mut pages = Vec::new();
    let mut token = json!({"format": "1.1"});
    loop {
        let page = answer(store, &token, &short(), &Paging::default()).unwrap();
        pages.push(page.text);
        let Some(next) = page.next else {
            return pages;
        };
        token = next.token;
    }
}

fn texts<P: AsRef<str>>(pages: &[P]) -> Vec<&str> {
    pages.iter().map(AsRef::as_ref).collect()
}

/// One page's size, to set the tiers' bounds in pages.
fn page_len(store: &dyn CatalogStore) -> usize {
    fresh_sync(store).iter().map(String::len).max().unwrap()
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().metadata().unwrap().len())
        .sum()
}

/// Checks that pages evicted from memory are served from their files, with their encoded
/// forms, equal to fresh pages, and not computed again.
pub fn evicted_pages_are_served_from_files_with_their_forms(new_store: NewStore<'_>) {
    let store = store_with(new_store, 30);
    let dir = tempfile::tempdir().unwrap();
    let memory = page_len(&*store) * 2;
    let syncer = Syncer::<Counted>::new(Arc::clone(&store), Paging::default(), memory)
        .with_files(dir.path(), 1 << 20)
        .unwrap();
    let first = full_sync(&syncer);
    assert_eq!(texts(&first), texts(&fresh_sync(&*store)));
    let (files, bytes) = syncer.file_usage();
    assert!(
        files >= first.len() - 3,
        "evicted pages went to files: {files}"
    );
    assert_eq!(bytes, dir_bytes(dir.path()));

    let second = full_sync(&syncer);
    assert_eq!(texts(&second), texts(&first));
    for page in &first {
        assert_eq!(made(Made::Computed, &page.text), 1, "nothing recomputed");
    }
    let restored = first
        .iter()
        .filter(|page| made(Made::Restored, &page.text) == 1)
        .count();
    assert!(
        restored >= first.len() - 3,
        "read back from files: {restored}"
    );
    for page in &second {
        assert_eq!(page.forms, vec![(3, form_of(&page.text))]);
    }
}

/// Checks that a write makes every page file stale (read-your-writes, spec §3.6), and that
/// the files then stay within their byte bound.
pub fn a_write_invalidates_page_files_and_they_stay_bounded(new_store: NewStore<'_>) {
    let store = store_with(new_store, 30);
    let dir = tempfile::tempdir().unwrap();
    let one = page_len(&*store);
    let file_bound = (one as u64 + 512) * 4;
    let syncer = Syncer::<String>::new(Arc::clone(&store), Paging::default(), one * 2)
        .with_files(dir.path(), file_bound)
        .unwrap();
    full_sync(&syncer);
    assert!(syncer.file_usage().0 > 0);
    assert!(dir_bytes(dir.path()) <= file_bound);
    write_late_package(&*store);
    let after = full_sync(&syncer);
    assert_eq!(texts(&after), texts(&fresh_sync(&*store)));
    assert!(
        after.concat().contains(r#""_id":"late""#),
        "read-your-writes"
    );
    assert!(syncer.file_usage().1 <= file_bound);
    assert!(dir_bytes(dir.path()) <= file_bound);
}

/// Checks that files of an earlier process are discarded, that a corrupt or truncated file
/// is recomputed, not served, and that a file replaced after its first read is never read:
/// its page is served as it was written and checked.
pub fn page_files_are_discarded_at_start_and_checked_when_read(new_store: NewStore<'_>) {
    let store = store_with(new_store, 30);
    let dir = tempfile::tempdir().unwrap();
    let one = page_len(&*store);
    let open = || {
        Syncer::<String>::new(Arc::clone(&store), Paging::default(), one * 2)
            .with_files(dir.path(), 1 << 20)
            .unwrap()
    };
    full_sync(&open());
    assert!(dir_bytes(dir.path()) > 0);
    let restarted = open();
    assert_eq!(
        dir_bytes(dir.path()),
        0,
        "an earlier process's files are discarded"
    );

    // The files this sync writes are not read back yet (memory holds two pages): damaged
    // now, in place or by a new file, each is caught at its first read and recomputed.
    full_sync(&restarted);
    damage_page_files(dir.path(), true);
    assert_eq!(texts(&full_sync(&restarted)), texts(&fresh_sync(&*store)));
    // Now every file was read back and checked whole; files put in their places since are
    // never read, and the pages are served as they were written.
    assert_eq!(texts(&full_sync(&restarted)), texts(&fresh_sync(&*store)));
    damage_page_files(dir.path(), false);
    assert_eq!(texts(&full_sync(&restarted)), texts(&fresh_sync(&*store)));
}

/// Damages every page file in `dir`, in turn: truncated, one bit flipped (still UTF-8), one
/// byte of the text made not UTF-8. Each is a new file renamed into place, and the last kind
/// is written into the file in place when `in_place` (only for files not yet mapped: a
/// mapped file must never be modified, see `page_disk.rs`).
fn damage_page_files(dir: &std::path::Path, in_place: bool) {
    for (i, entry) in std::fs::read_dir(dir).unwrap().enumerate() {
        let path = entry.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() - 10;
        match i % 3 {
            0 => bytes.truncate(bytes.len() / 2),
            1 => bytes[at] ^= 1,
            _ => bytes[at] ^= 0x80,
        }
        if in_place && i % 3 == 2 {
            let writable = std::os::unix::fs::PermissionsExt::from_mode(0o600);
            std::fs::set_permissions(&path, writable).unwrap();
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|mut file| std::io::Write::write_all(&mut file, &bytes))
                .unwrap();
        } else {
            let temp = path.with_extension("new");
            std::fs::write(&temp, bytes).unwrap();
            std::fs::rename(&temp, &path).unwrap();
        }
    }
}

/// Checks that clients asking for the same page at once share one computation.
pub fn clients_asking_at_once_share_one_computation(new_store: NewStore<'_>) {
    let store = store_with(new_store, 30);
    let syncer = Syncer::<Counted>::new(Arc::clone(&store), Paging::default(), 1 << 20);
    let clients = 8;
    let barrier = std::sync::Barrier::new(clients);
    let pages: Vec<Counted> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    syncer
                        .answer(&json!({"format": "1.1"}), &short())
                        .unwrap()
                        .text
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(made(Made::Computed, &pages[0].text), 1);
    assert!(
        pages
            .iter()
            .all(|page| Arc::ptr_eq(&page.text, &pages[0].text))
    );
}

/// Checks that a page claimed by a prefetch that failed before computing it (the store's
/// snapshot could not be read) is released, not left pending for the life of the process:
/// the cache holds nothing after the failure, and the next prefetch of that page caches it.
pub fn a_failed_prefetch_leaves_no_page_pending(new_store: NewStore<'_>) {
    let store: Arc<dyn CatalogStore> = Arc::new(Watched::new(store_with(new_store, 5), 1));
    let next = after_first_page(&*store);
    let syncer = Syncer::<String>::new(Arc::clone(&store), Paging::default(), 1 << 20);

    syncer.prefetch(&next);
    assert_eq!(syncer.cache_usage(), (0, 0), "no page left pending");

    syncer.prefetch(&next);
    assert!(syncer.cache_usage().1 > 0, "the page is cached now");
    let fresh = answer(&*store, &next.token, &short(), &Paging::default()).unwrap();
    assert_eq!(
        syncer.answer(&next.token, &short()).unwrap().text,
        fresh.text
    );
}

/// Checks that a page whose computation panicked is released, not left pending: the cache
/// holds nothing after the panic, and the next answer for that page computes and caches it.
pub fn a_page_whose_computation_panicked_is_not_left_pending(new_store: NewStore<'_>) {
    let store = store_with(new_store, 5);
    let next = after_first_page(&*store);
    let watched = Watched::new(Arc::clone(&store), 0);
    watched.panicking.store(1, Ordering::SeqCst);
    let syncer = Syncer::<String>::new(Arc::new(watched), Paging::default(), 1 << 20);

    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        syncer.answer(&next.token, &short())
    }));
    assert!(panicked.is_err(), "the page read panicked");
    assert_eq!(syncer.cache_usage(), (0, 0), "no page left pending");

    let fresh = answer(&*store, &next.token, &short(), &Paging::default()).unwrap();
    assert_eq!(
        syncer.answer(&next.token, &short()).unwrap().text,
        fresh.text
    );
    assert!(syncer.cache_usage().1 > 0, "the page is cached now");
}

/// Checks that a prefetch stops at a page it could not cache (here every page is bigger
/// than the cache): the pages after it would be read from the store for nothing.
pub fn a_prefetch_stops_at_a_page_it_could_not_cache(new_store: NewStore<'_>) {
    let watched = Arc::new(Watched::new(store_with(new_store, 10), 0));
    let store: Arc<dyn CatalogStore> = Arc::clone(&watched) as Arc<dyn CatalogStore>;
    let next = after_first_page(&*store);
    let syncer = Syncer::<String>::new(Arc::clone(&store), Paging::default(), 1);
    let before = watched.pages_read.load(Ordering::SeqCst);
    syncer.prefetch(&next);
    assert_eq!(syncer.cache_usage(), (0, 0));
    assert_eq!(
        watched.pages_read.load(Ordering::SeqCst) - before,
        1,
        "the next page only, not the one after it"
    );
}

/// The call for the second short page of `store`, read from the store, not through a
/// [`Syncer`].
fn after_first_page(store: &dyn CatalogStore) -> NextCall {
    answer(
        store,
        &json!({"format": "1.1"}),
        &short(),
        &Paging::default(),
    )
    .unwrap()
    .next
    .expect("more pages")
}

/// A store that is `inner`, except that its first `failing` calls of
/// [`CatalogStore::snapshot`] fail and its first `panicking` page reads panic, and that
/// counts the pages read from it.
struct Watched {
    inner: Arc<dyn CatalogStore>,
    failing: AtomicUsize,
    panicking: AtomicUsize,
    pages_read: AtomicUsize,
}

impl Watched {
    fn new(inner: Arc<dyn CatalogStore>, failing: usize) -> Self {
        Watched {
            inner,
            failing: AtomicUsize::new(failing),
            panicking: AtomicUsize::new(0),
            pages_read: AtomicUsize::new(0),
        }
    }
}

/// Takes one from `count` if it is above zero: whether a made-up failure is still due.
fn due(count: &AtomicUsize) -> bool {
    count
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

impl CatalogStore for Watched {
    fn write(
        &self,
        f: &mut dyn FnMut(&mut dyn CatalogWriter) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.inner.write(f)
    }

    fn read_page(&self, cursors: &Cursors, limits: &PageLimits) -> Result<Page, StoreError> {
        self.pages_read.fetch_add(1, Ordering::SeqCst);
        assert!(!due(&self.panicking), "a page read made to panic");
        self.inner.read_page(cursors, limits)
    }

    fn state(&self) -> Result<CatalogState, StoreError> {
        self.inner.state()
    }

    fn snapshot(&self) -> Result<Snapshot, StoreError> {
        if due(&self.failing) {
            return Err(StoreError::TaskFailed("a snapshot made to fail".to_owned()));
        }
        self.inner.snapshot()
    }

    fn stats_day(
        &self,
        date: &str,
        f: &mut dyn FnMut(&StatsRow) -> Result<(), StoreError>,
    ) -> Result<bool, StoreError> {
        self.inner.stats_day(date, f)
    }

    fn package_stats_rows(
        &self,
        name: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<StatsRow>, StoreError> {
        self.inner.package_stats_rows(name, from, to)
    }

    fn pending_usage_days(&self, before: NaiveDate) -> Result<Vec<NaiveDate>, StoreError> {
        self.inner.pending_usage_days(before)
    }

    fn upload_ticket(&self, hash: &str) -> Result<Option<UploadTicket>, StoreError> {
        self.inner.upload_ticket(hash)
    }

    fn export(
        &self,
        f: &mut dyn FnMut(ExportItem<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.inner.export(f)
    }

    fn mirror_state(&self) -> Result<Option<MirrorState>, StoreError> {
        self.inner.mirror_state()
    }

    fn mirror_file(&self, key: &str) -> Result<Option<UpstreamFile>, StoreError> {
        self.inner.mirror_file(key)
    }

    fn mirror_files(
        &self,
        after: &str,
        limit: usize,
    ) -> Result<Vec<(String, UpstreamFile)>, StoreError> {
        self.inner.mirror_files(after, limit)
    }

    fn mirror_cached(&self) -> Result<(u64, u64), StoreError> {
        self.inner.mirror_cached()
    }

    fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        self.inner.audit_log(query)
    }

    fn join_servers(&self) -> Result<ServerSeat, StoreError> {
        self.inner.join_servers()
    }

    fn try_duty(&self, duty: Duty) -> Result<Option<Hold>, StoreError> {
        self.inner.try_duty(duty)
    }

    fn hint_changes(&self, wake: Arc<dyn Fn() + Send + Sync>) -> Result<Option<Hold>, StoreError> {
        self.inner.hint_changes(wake)
    }
}
