//! The page loop of spec §3.3, from a DDP client into a [`PageSink`].
//!
//! Each page is applied together with its token by the sink, so an interrupted pass resumes
//! after the last whole page. Only the current page and the next one in flight are held.
//!
//! Pipelining: Exosphere writes the token and `upToDate` at the head of a result, so the next
//! page is requested as soon as that head is read and the server prepares it while the sink
//! applies the current one. Servers that put the token elsewhere get one call at a time, as
//! the `meteor` tool makes them.
//!
//! The loop does not trust the server to end it: a token that does not move without
//! `upToDate`, too many empty pages in a row, `resetData` on consecutive pages, or a
//! compressed page that inflates past its limit stop the pass with [`SyncError::Protocol`].

use std::fmt;
use std::time::{Duration, Instant};

use exosphere_ddp::client::{Client, PendingCall};
use exosphere_ddp::ejson::{Ejson, EjsonMap};

use crate::error::SyncError;
use crate::page::{FIRST_TOKEN, Page, SyncResult, leading_token, page_of};

/// Where a pass puts pages. Every implementation MUST keep this contract:
///
/// * [`PageSink::apply`] stores a page's records and its token atomically, so that after a
///   crash [`PageSink::token`] names exactly the last page whose records are all stored;
/// * on a page with `reset_data`, what the sink held before is replaced by the full catalog
///   that starts with this page (a sink that serves clients replaces it only once that
///   catalog is complete);
/// * a record is replaced by a later record with the same collection and `_id`.
///
/// Both methods block (a database transaction); the pass calls them off the async workers.
pub trait PageSink {
    /// What applying one page reports (counts for progress and summaries).
    type Applied;

    /// The token stored with the last applied page; `None` before the first one.
    fn token(&mut self) -> Result<Option<String>, SyncError>;

    /// Stores one page and its token, atomically.
    fn apply(&mut self, page: &Page<'_>) -> Result<Self::Applied, SyncError>;
}

/// How a pass asks for pages, and how much it accepts from a server before calling it
/// broken: a faulty or malicious server must not make the client loop or exhaust memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassOptions {
    /// Ask for `collectionsCompressed` pages (spec §3.7).
    pub compress: bool,
    /// The most bytes a compressed page may inflate to.
    pub max_page_size: usize,
    /// The most pages in a row without records and without `upToDate`.
    pub max_empty_pages: u32,
}

/// What one pass (from the stored token to `upToDate`) did.
#[derive(Debug, Default, Clone)]
pub struct Pass {
    /// Pages applied.
    pub pages: u64,
    /// Records received and handed to the sink.
    pub records: u64,
    /// Bytes of `result` frames received.
    pub bytes: u64,
    /// Whether the server told us to start over (`resetData`).
    pub reset: bool,
    /// How long the pass took.
    pub elapsed: Duration,
    /// Of `elapsed`, the time spent in [`PageSink::apply`] (the rest is waiting for the
    /// server and decoding).
    pub applying: Duration,
}

impl fmt::Display for Pass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        write!(
            f,
            "{} records in {} pages ({:.1} MB) in {secs:.2} s ({:.0} records/s, {:.2} s of it \
             applying pages)",
            self.records,
            self.pages,
            self.bytes as f64 / 1e6,
            self.records as f64 / secs.max(1e-9),
            self.applying.as_secs_f64(),
        )?;
        if self.reset {
            f.write_str(", after the server reset the catalog")?;
        }
        Ok(())
    }
}

/// Runs the loop of spec §3.3 from the sink's stored token until the server says
/// `upToDate`, calling `on_page` after each applied page.
///
/// The sink is called through `tokio::task::block_in_place`, so this needs tokio's
/// multi-threaded runtime: the connection's reader keeps receiving the next page meanwhile.
pub async fn sync_pass<S: PageSink>(
    client: &Client,
    sink: &mut S,
    settings: PassOptions,
    mut on_page: impl FnMut(&Page<'_>, &S::Applied),
) -> Result<Pass, SyncError> {
    let started = Instant::now();
    let options: EjsonMap = if settings.compress {
        [("compressCollections".to_owned(), Ejson::from(true))]
            .into_iter()
            .collect()
    } else {
        EjsonMap::new()
    };
    let options = Ejson::Object(options);
    let stored = tokio::task::block_in_place(|| sink.token())?;
    let first = stored.unwrap_or_else(|| FIRST_TOKEN.to_owned());
    let mut pending = request(client, &first, &options).await?;
    let mut guard = PageGuard::new(first, settings.max_empty_pages);
    let mut pass = Pass::default();
    loop {
        let answer = pending.result().await?;
        let frame = answer.frame();
        let next = match leading_token(frame) {
            Some((token, false)) => Some(request(client, token, &options).await?),
            _ => None,
        };
        let Some(result) = answer.decode::<SyncResult>()? else {
            return Err(protocol(
                "the server answered syncNewPackageData without a result",
            ));
        };
        let mut inflated = String::new();
        let page = page_of(result, &mut inflated, settings.max_page_size)?;
        guard.before_apply(&page)?;
        let complete = page.up_to_date;
        let records = page.records();
        // Sinks block (a database); other tasks (the connection reader receiving the next
        // page) move to another worker meanwhile.
        let applying = Instant::now();
        let applied = tokio::task::block_in_place(|| sink.apply(&page))?;
        pass.applying += applying.elapsed();
        on_page(&page, &applied);
        pass.pages += 1;
        pass.records += records;
        pass.bytes += frame.len() as u64;
        pass.reset |= page.reset_data;
        if complete {
            pass.elapsed = started.elapsed();
            return Ok(pass);
        }
        guard.after_apply(&page)?;
        let token = page.sync_token.get();
        pending = match next {
            Some(next) => next,
            None => request(client, token, &options).await?,
        };
    }
}

/// The checks that keep a page loop from running forever on a server that breaks the
/// protocol: `resetData` on two pages in a row, a page without `upToDate` that returns the
/// token it was asked with, or too many pages in a row without records. [`sync_pass`] runs
/// them over DDP, and a loop that asks a `Syncer` directly (the server's read model) runs
/// the same ones.
#[derive(Debug, Clone)]
pub struct PageGuard {
    previous: String,
    previous_reset: bool,
    empty_pages: u32,
    max_empty_pages: u32,
}

impl PageGuard {
    /// A guard for a loop whose first page is asked for with `first_token`, allowing
    /// `max_empty_pages` pages in a row without records and without `upToDate`.
    pub fn new(first_token: String, max_empty_pages: u32) -> PageGuard {
        PageGuard {
            previous: first_token,
            previous_reset: false,
            empty_pages: 0,
            max_empty_pages,
        }
    }

    /// Checks a page before it is applied: refuses a second `resetData` in a row.
    pub fn before_apply(&mut self, page: &Page<'_>) -> Result<(), SyncError> {
        if page.reset_data && self.previous_reset {
            return Err(protocol(
                "the server broke the sync protocol: it sent `resetData` on two pages in a \
                 row (spec §3.6 forbids it); stopping instead of starting over forever",
            ));
        }
        Ok(())
    }

    /// Checks an applied page that is not `upToDate` before the next one is asked for with
    /// its token: refuses a token that did not move and too many empty pages in a row.
    pub fn after_apply(&mut self, page: &Page<'_>) -> Result<(), SyncError> {
        let token = page.sync_token.get();
        if token == self.previous {
            return Err(protocol(
                "the server broke the sync protocol: it answered without `upToDate` but \
                 returned the token it was sent, so the next page would be the same \
                 (spec §3.3, §3.5); stopping instead of looping forever",
            ));
        }
        self.empty_pages = if page.records() == 0 {
            self.empty_pages + 1
        } else {
            0
        };
        if self.empty_pages > self.max_empty_pages {
            return Err(protocol(format!(
                "the server broke the sync protocol: it sent {} pages in a row without \
                 records and without `upToDate` (spec §3.3); stopping instead of looping \
                 forever (--max-empty-pages)",
                self.empty_pages
            )));
        }
        self.previous_reset = page.reset_data;
        token.clone_into(&mut self.previous);
        Ok(())
    }
}

/// A [`SyncError::Protocol`] with this text.
fn protocol(text: impl Into<String>) -> SyncError {
    SyncError::Protocol(text.into())
}

/// Sends `syncNewPackageData(token, options)`.
async fn request(client: &Client, token: &str, options: &Ejson) -> Result<PendingCall, SyncError> {
    let parsed = exosphere_ddp::ejson::parse(token)
        .map_err(|error| protocol(format!("the sync token {token} is not EJSON: {error}")))?;
    Ok(client
        .start_call("syncNewPackageData", &[parsed, options.clone()])
        .await?)
}

#[cfg(test)]
mod tests {
    use serde_json::value::RawValue;

    use super::*;

    /// A page without `upToDate` with `token` and `records` records.
    fn page<'a>(token: &'a RawValue, record: &'a RawValue, records: usize) -> Page<'a> {
        Page {
            reset_data: false,
            up_to_date: false,
            sync_token: token,
            collections: vec![("packages", vec![record; records])],
        }
    }

    #[test]
    fn the_guard_refuses_pages_that_would_never_end() {
        let record = RawValue::from_string(r#"{"_id":"a"}"#.into()).unwrap();
        let first = RawValue::from_string(FIRST_TOKEN.into()).unwrap();
        let second = RawValue::from_string(r#"{"n":2}"#.into()).unwrap();
        let third = RawValue::from_string(r#"{"n":3}"#.into()).unwrap();

        let mut guard = PageGuard::new(FIRST_TOKEN.to_owned(), 1);
        let same = guard.after_apply(&page(&first, &record, 1)).unwrap_err();
        assert!(same.to_string().contains("the token it was sent"), "{same}");

        let mut guard = PageGuard::new(FIRST_TOKEN.to_owned(), 1);
        guard.after_apply(&page(&second, &record, 0)).unwrap();
        let empty = guard.after_apply(&page(&third, &record, 0)).unwrap_err();
        assert!(empty.to_string().contains("2 pages in a row"), "{empty}");

        let mut guard = PageGuard::new(FIRST_TOKEN.to_owned(), 1);
        let reset = Page {
            reset_data: true,
            ..page(&second, &record, 1)
        };
        guard.before_apply(&reset).unwrap();
        guard.after_apply(&reset).unwrap();
        let again = Page {
            sync_token: &third,
            ..reset
        };
        let twice = guard.before_apply(&again).unwrap_err();
        assert!(twice.to_string().contains("two pages in a row"), "{twice}");
    }
}
