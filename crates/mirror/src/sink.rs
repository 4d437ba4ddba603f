//! Upstream pages into the catalog store: the mirror's [`PageSink`].
//!
//! A page goes straight into the served catalog while the mirror is up to date with the
//! upstream. A full catalog (the first mirror, the upstream's `resetData`, a token that went
//! backwards, another upstream) goes into the staged catalog instead, beside the served one,
//! and replaces it in the transaction of its last page, so Exosphere's clients never see a
//! half-mirrored catalog and are never told to reset. Each page commits with the upstream
//! token that resumes after it.
//!
//! Pages of a staged catalog are gathered ([`GATHER_PAGES`] pages or [`GATHER_BYTES`] of
//! record text) and stored in one transaction, with the token of the last: clients do not see
//! them either way, and a transaction of thousands of records dirties each page of the
//! stage's and the file keys' indexes once rather than once per upstream page (their keys
//! arrive in random order). A batch is stored on a thread of its own while the next pages
//! arrive and are validated; batches commit in order, the next one only once the one before
//! has. A mirror killed meanwhile resumes after the last stored page, as before; the gathered
//! pages are fetched again.

use std::str::FromStr as _;
use std::sync::Arc;

use exosphere_catalog::mirror::{MirrorState, UpstreamFile};
use exosphere_catalog::{CatalogStore, CatalogWriter, Collection, Record, StoreError};
use exosphere_sync_client::{FIRST_TOKEN, Page, PageSink, SyncError};
use serde_json::Value;

use crate::apply::{Applied, ApplyOutcome, Claims, apply_staged, upsert_upstream};
use crate::config::MirrorConfig;
use crate::files::rewrite;

/// The most staged pages gathered before they are stored.
const GATHER_PAGES: usize = 8;

/// The most bytes of staged record text gathered before they are stored.
const GATHER_BYTES: usize = 16 << 20;

/// What one page did to the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PageDone {
    /// Pages stored by this call: 1, 0 for a staged page gathered for later, or the gathered
    /// pages with this one.
    pub(crate) pages: u64,
    /// Records stored (served or staged).
    pub(crate) stored: u64,
    /// Records refused as invalid, or as changing a published version's content.
    pub(crate) rejected: u64,
    /// Records not served because a local record holds their name.
    pub(crate) shadowed: u64,
    /// Whether the page went to the staged catalog.
    pub(crate) staged: bool,
    /// Whether this page started a full resync beside the served catalog (the upstream's
    /// `resetData` while the mirror was up to date).
    pub(crate) resync: bool,
    /// What became of the staged catalog, when this page completed it.
    pub(crate) finished: Option<ApplyOutcome>,
}

/// A page's records, validated and with their file URLs rewritten, ready to be stored.
struct Prepared {
    /// Each record with the upstream files it names.
    records: Vec<(Record, Vec<(String, UpstreamFile)>)>,
    /// Bytes of record text.
    bytes: usize,
    /// The token that resumes after the page.
    token: String,
}

/// The store as the sink of the upstream's pages.
pub(crate) struct StoreSink<'a> {
    store: Arc<dyn CatalogStore>,
    config: &'a MirrorConfig,
    /// Staged pages gathered, not yet stored.
    gathered: Vec<Prepared>,
    /// The staging token of the last page this sink stored (or is storing): gathered pages
    /// follow it, and are stored only if the stored state still has it.
    staging_token: Option<String>,
    /// A batch of gathered pages being stored on a thread of its own, while the next pages
    /// are received and prepared.
    storing: Option<std::thread::JoinHandle<Result<PageDone, SyncError>>>,
}

/// What a write of pages needs to know besides the pages.
#[derive(Clone)]
struct Target {
    upstream: String,
    max_shrink: f64,
}

/// How a write of pages ends the sync, if it does.
#[derive(Clone, Copy, Default)]
struct Ending {
    /// The last page says `resetData`.
    reset_data: bool,
    /// The last page says `upToDate`.
    up_to_date: bool,
}

impl<'a> StoreSink<'a> {
    /// A sink for one pass.
    pub(crate) fn new(store: Arc<dyn CatalogStore>, config: &'a MirrorConfig) -> StoreSink<'a> {
        StoreSink {
            store,
            config,
            gathered: Vec::new(),
            staging_token: None,
            storing: None,
        }
    }

    /// Whether `page` can wait to be stored with the next ones: it continues a staged sync
    /// this sink stored (or is storing) the last page of, does not end it, and does not send
    /// the token backwards.
    fn can_gather(&self, page: &Page<'_>) -> bool {
        let Some(stored) = &self.staging_token else {
            return false;
        };
        let sent = self.gathered.last().map_or(stored, |last| &last.token);
        !page.reset_data && !page.up_to_date && !went_backwards(sent, page.sync_token.get())
    }

    /// Whether the pages gathered are enough for one write.
    fn gathered_enough(&self) -> bool {
        let bytes: usize = self.gathered.iter().map(|page| page.bytes).sum();
        self.gathered.len() >= GATHER_PAGES || bytes >= GATHER_BYTES
    }

    /// Waits for the batch being stored, if any; what it did, or why it failed.
    fn stored(&mut self) -> Result<PageDone, SyncError> {
        match self.storing.take() {
            None => Ok(PageDone::default()),
            Some(storing) => storing.join().unwrap_or_else(|_| {
                Err(SyncError::Sink(
                    "storing a batch of upstream pages failed unexpectedly".into(),
                ))
            }),
        }
        .inspect_err(|_| self.staging_token = None)
    }

    /// What a write of pages needs from the configuration, owned for a thread of its own.
    fn target(&self) -> Target {
        Target {
            upstream: self.config.upstream.clone(),
            max_shrink: self.config.max_shrink,
        }
    }
}

impl Drop for StoreSink<'_> {
    /// A pass that ends early leaves no write behind: the next pass reads the token it stored.
    fn drop(&mut self) {
        if let Some(storing) = self.storing.take() {
            let _ = tokio::task::block_in_place(|| storing.join());
        }
    }
}

impl PageSink for StoreSink<'_> {
    type Applied = PageDone;

    fn token(&mut self) -> Result<Option<String>, SyncError> {
        let state = self.store.mirror_state().map_err(sink)?;
        Ok(state
            .filter(|state| state.upstream == self.config.upstream)
            .and_then(|state| state.staging_token.or(state.token)))
    }

    fn apply(&mut self, page: &Page<'_>) -> Result<PageDone, SyncError> {
        let (prepared, rejected) = prepare(page, self.config);
        if self.can_gather(page) {
            self.gathered.push(prepared);
            let mut done = PageDone {
                rejected,
                staged: true,
                ..PageDone::default()
            };
            if self.gathered_enough() {
                // The batch before this one is stored first: batches commit in order.
                let before = self.stored()?;
                done.pages = before.pages;
                done.stored = before.stored;
                let pages = std::mem::take(&mut self.gathered);
                let expected = self.staging_token.clone();
                self.staging_token = pages.last().map(|last| last.token.clone());
                let (store, target) = (Arc::clone(&self.store), self.target());
                let span = tracing::Span::current();
                self.storing = Some(std::thread::spawn(move || {
                    span.in_scope(|| {
                        write_pages(&*store, &target, &pages, expected, Ending::default(), 0)
                    })
                }));
            }
            return Ok(done);
        }
        let before = self.stored()?;
        let mut pages = std::mem::take(&mut self.gathered);
        if page.reset_data {
            // The pages gathered belong to the catalog this page replaces.
            pages.clear();
        }
        pages.push(prepared);
        let expected = self.staging_token.take();
        let ending = Ending {
            reset_data: page.reset_data,
            up_to_date: page.up_to_date,
        };
        let mut done = write_pages(
            &*self.store,
            &self.target(),
            &pages,
            expected,
            ending,
            rejected,
        )?;
        if done.staged && done.finished.is_none() {
            self.staging_token = pages.last().map(|last| last.token.clone());
        }
        done.pages += before.pages;
        done.stored += before.stored;
        Ok(done)
    }
}

/// Stores `pages` (a page, or staged pages gathered and the page after them) in one
/// transaction with the token of the last. Pages that continue a staged sync this sink
/// stored before are stored only if the stored staging token is still `expected`, the one
/// this sink stored last.
fn write_pages(
    store: &dyn CatalogStore,
    target: &Target,
    pages: &[Prepared],
    expected: Option<String>,
    ending: Ending,
    rejected: u64,
) -> Result<PageDone, SyncError> {
    let started = std::time::Instant::now();
    let mut done = PageDone::default();
    let mut backwards = false;
    let mut moved = false;
    store
        .write(&mut |writer| {
            done = PageDone {
                rejected,
                ..PageDone::default()
            };
            let mut state = current_state(writer, &target.upstream)?;
            if expected.is_some() && state.staging_token != expected {
                // Another writer (an operator's command) moved the mirror's state while
                // pages were gathered: they are dropped and the pass restarts.
                moved = true;
                return Ok(());
            }
            let mut sent = state.staging_token.as_deref().or(state.token.as_deref());
            backwards = !ending.reset_data
                && pages.iter().any(|next| {
                    let behind = sent.is_some_and(|sent| went_backwards(sent, &next.token));
                    sent = Some(&next.token);
                    behind
                });
            if backwards {
                // Resync from the start, beside the served catalog; these pages are dropped.
                writer.mirror().clear_stage()?;
                state.held = None;
                state.staging_token = Some(FIRST_TOKEN.to_owned());
                return writer.mirror().put_state(&state);
            }
            done.staged = ending.reset_data || state.staging_token.is_some();
            done.resync = ending.reset_data && state.token.is_some();
            if ending.reset_data {
                // A held catalog is replaced by the new one, which is checked again.
                writer.mirror().clear_stage()?;
                state.held = None;
            }
            for prepared in pages {
                store_records(writer, prepared, done.staged, &mut done)?;
            }
            done.pages = pages.len() as u64;
            let token = pages.last().map(|last| last.token.clone());
            if done.staged {
                state.staging_token = token;
                if ending.up_to_date {
                    done.finished =
                        Some(apply_staged(writer, &mut state, target.max_shrink, false)?);
                }
            } else {
                state.token = token;
            }
            if ending.up_to_date {
                state.last_success_ms = Some(now_ms());
                state.last_error = None;
            }
            writer.mirror().put_state(&state)
        })
        .map_err(sink)?;
    tracing::debug!(
        pages = done.pages,
        stored = done.stored,
        staged = done.staged,
        finished = done.finished.is_some(),
        elapsed_ms = started.elapsed().as_millis(),
        "stored upstream pages"
    );
    if moved {
        return Err(SyncError::Restart(
            "the mirror's state changed while upstream pages were gathered; syncing again \
             from the stored token"
                .to_owned(),
        ));
    }
    if backwards {
        return Err(SyncError::Restart(
            "the upstream's sync token went backwards (its catalog was restored or \
             replaced); syncing its whole catalog again beside the served one"
                .to_owned(),
        ));
    }
    Ok(done)
}

/// The mirror's state for `upstream`: the stored one, or a fresh one whose first pass fills
/// the staged catalog (a first mirror, or a mirror pointed at another upstream).
fn current_state(
    writer: &mut dyn CatalogWriter,
    upstream: &str,
) -> Result<MirrorState, StoreError> {
    match writer.mirror().state()? {
        Some(state) if state.upstream == upstream => Ok(state),
        _ => {
            writer.mirror().clear_stage()?;
            Ok(MirrorState {
                upstream: upstream.to_owned(),
                staging_token: Some(FIRST_TOKEN.to_owned()),
                ..MirrorState::default()
            })
        }
    }
}

/// A page's records with their file URLs rewritten and validated, and how many were refused
/// as invalid (left out).
fn prepare(page: &Page<'_>, config: &MirrorConfig) -> (Prepared, u64) {
    let mut prepared = Prepared {
        records: Vec::new(),
        bytes: 0,
        token: page.sync_token.get().to_owned(),
    };
    let mut rejected = 0;
    for (name, records) in &page.collections {
        let Ok(collection) = Collection::from_str(name) else {
            continue;
        };
        for raw in records {
            let record = rewrite(collection, raw.get(), &config.public_url)
                .ok()
                .and_then(|rewritten| {
                    let record = Record::from_json(collection, &rewritten.text).ok()?;
                    Some((record, rewritten.files))
                });
            let Some((record, files)) = record else {
                tracing::warn!(
                    collection = name,
                    record = %format_args!("{:.200}", raw.get()),
                    "the upstream sent an invalid record; left out"
                );
                rejected += 1;
                continue;
            };
            prepared.bytes += record.json().len();
            prepared.records.push((record, files));
        }
    }
    (prepared, rejected)
}

/// Stores a page's prepared records in the staged or the served catalog.
fn store_records(
    writer: &mut dyn CatalogWriter,
    page: &Prepared,
    staged: bool,
    done: &mut PageDone,
) -> Result<(), StoreError> {
    // Pages of a full catalog are staged; others go to the served catalog, past the claims.
    let mut claims = if staged {
        None
    } else {
        Some(Claims::load(writer)?)
    };
    for (record, files) in &page.records {
        match &mut claims {
            // A record not served names no file: its entries would be another record's.
            Some(claims) => match upsert_upstream(writer, claims, record)? {
                Applied::Served => {
                    for (key, file) in files {
                        writer.mirror().put_file(key, file)?;
                    }
                    done.stored += 1;
                }
                Applied::Shadowed => done.shadowed += 1,
                Applied::Kept => done.rejected += 1,
            },
            None => {
                for (key, file) in files {
                    writer.mirror().stage_file(key, file)?;
                }
                writer.mirror().stage(record)?;
                done.stored += 1;
            }
        }
    }
    Ok(())
}

/// Whether the upstream's new token is behind the one it was sent: a cursor went down.
/// Exosphere's tokens carry per-collection sequence numbers (`packagesSeq`, …), the only
/// cursors there (their per-collection `lastUpdated` values may go down legitimately); the
/// real server's tokens carry per-collection timestamps (`packages`, …), which it pages by.
/// Tokens that are not objects compare as not backwards.
fn went_backwards(sent: &str, received: &str) -> bool {
    let (Ok(Value::Object(sent)), Ok(Value::Object(received))) = (
        serde_json::from_str::<Value>(sent),
        serde_json::from_str::<Value>(received),
    ) else {
        return false;
    };
    let sequences = sent.keys().any(|key| key.ends_with("Seq"));
    Collection::ALL.iter().any(|collection| {
        let key = if sequences {
            format!("{}Seq", collection.as_str())
        } else {
            collection.as_str().to_owned()
        };
        matches!(
            (
                sent.get(&key).and_then(Value::as_f64),
                received.get(&key).and_then(Value::as_f64),
            ),
            (Some(before), Some(after)) if after < before
        )
    })
}

/// A store error as the page loop reports it.
fn sink(error: StoreError) -> SyncError {
    SyncError::Sink(Box::new(error))
}

/// Now, in ms since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_go_backwards_when_a_cursor_goes_down() {
        // The real server's timestamps.
        let sent = r#"{"format":"1.1","packages":100,"versions":200}"#;
        assert!(!went_backwards(
            sent,
            r#"{"format":"1.1","packages":100,"versions":250}"#
        ));
        assert!(went_backwards(
            sent,
            r#"{"format":"1.1","packages":99,"versions":250}"#
        ));
        assert!(!went_backwards(sent, r#"{"format":"1.1"}"#));
        assert!(!went_backwards(sent, "[]"));
        assert!(!went_backwards(r#"{"epoch":"a"}"#, r#"{"epoch":"b"}"#));
        // Exosphere's sequence numbers: its lastUpdated values may go down.
        let sent = r#"{"packages":500,"packagesSeq":7,"builds":9,"buildsSeq":3}"#;
        assert!(!went_backwards(
            sent,
            r#"{"packages":100,"packagesSeq":9,"builds":9,"buildsSeq":3}"#
        ));
        assert!(went_backwards(
            sent,
            r#"{"packages":900,"packagesSeq":6,"builds":9,"buildsSeq":3}"#
        ));
    }
}
