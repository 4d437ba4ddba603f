//! The `syncNewPackageData` method (spec §3): turns a client's sync token into one page of
//! catalog changes, returned as the pre-encoded JSON text of the method result so the DDP
//! layer can splice it into a `result` frame without re-encoding megabytes of records.
//!
//! # Token
//!
//! `{"format": <echoed>, "epoch": "<data epoch>", "packages": <ms>, "packagesSeq": <seq>,
//! ...}` — per collection, the `seq` of the last record sent (the real cursor) and that
//! record's `lastUpdated` (kept numeric for the tool's progress hack, never used for
//! ordering, so colliding `lastUpdated` values cannot make a client skip or loop).
//!
//! * A token with no key besides `format` (and the `_id` the tool adds locally), such as
//!   the tool's default `{"format":"1.1"}` or a pre-0.9.3 `{}`, starts from zero without
//!   `resetData`: the client's database is empty anyway.
//! * A token from another epoch (a record was deleted since), from another server, or with
//!   malformed or impossible cursors gets `resetData: true` and the first page from zero;
//!   the token it gets back carries the current epoch, so the reset happens once.
//! * A record changed while a client pages gets a new `seq` and is sent again later.

use std::io::Write;

use base64::Engine;
use exosphere_meteor::{Collection, PerCollection};
use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Map, Number, Value};

use crate::error::StoreError;
use crate::store::{CatalogStore, Cursors, Page, PageLimits};

/// Page sizes: records per collection, and bytes per page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paging {
    /// Records per collection per page (spec §3.6: "500 or so"). 0 is treated as 1.
    pub page_size: usize,
    /// Records per collection per page when the client sets `shortPagesForTest`.
    /// 0 is treated as 1.
    pub short_page_size: usize,
    /// Bytes of record text per page, all collections together ([`PageLimits::bytes`]):
    /// a page always holds at least one record, so it is at most this plus one record
    /// ([`MAX_RECORD_SIZE`](crate::record::MAX_RECORD_SIZE)) and the result's envelope;
    /// the compressed form (spec §3.7) is at most about 4/3 of that. The default, 8 MiB,
    /// never cuts a page of the real catalog (500 records of each collection are about
    /// 1 MB in the 2015 fixture, whose largest record is under 4 KiB) and keeps every
    /// page, compressed or not, far below the 64 MiB frame limit of the `meteor` tool's
    /// WebSocket client (spec §1.1), whatever publishers put in records.
    pub page_bytes: usize,
}

/// The default [`Paging::page_bytes`]: 8 MiB.
pub const DEFAULT_PAGE_BYTES: usize = 8 << 20;

impl Default for Paging {
    fn default() -> Self {
        Paging {
            page_size: 500,
            short_page_size: 3,
            page_bytes: DEFAULT_PAGE_BYTES,
        }
    }
}

/// Why a sync call failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The token is not an object; the server answers with a client error (400).
    #[error("bad sync token: {0}")]
    BadToken(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored record could not be lowered to plain JSON for `compressCollections`
    /// (records are validated on the way in, so this means a damaged database).
    #[error("stored {collection} record cannot be lowered to plain JSON: {reason}")]
    Lowering {
        /// The record's collection.
        collection: Collection,
        /// The EJSON error.
        reason: String,
    },
    /// Compressing the collections failed.
    #[error("compressing sync collections: {0}")]
    Compress(#[source] std::io::Error),
}

/// Answers one `syncNewPackageData(token, options)` call with the JSON text of its result:
/// `{"collections":{…five arrays…},"syncToken":{…},"upToDate":…,"resetData":…}`, or with
/// `collectionsCompressed` (base64 of gzipped plain JSON) instead of `collections` when
/// `options.compressCollections` is truthy. `options` may be `null` or absent-as-null.
pub fn sync_new_package_data(
    store: &dyn CatalogStore,
    token: &Value,
    options: &Value,
    paging: &Paging,
) -> Result<String, SyncError> {
    answer(store, token, options, paging).map(|answer| answer.text)
}

/// One answered call: the result text, and the call the client will make next.
///
/// `T` is how the text is held: a `String` when just computed, or the page type a
/// [`Syncer`](crate::Syncer) caches pages as (shared between the clients it serves).
pub struct Answer<T = String> {
    /// The JSON text of the method result.
    pub text: T,
    /// The follow-up call, when more pages remain; [`Syncer::prefetch`](crate::Syncer::prefetch)
    /// can compute it ahead of the client.
    pub next: Option<NextCall>,
    /// The store snapshot the page was read from: a cached page is valid while these hold.
    pub(crate) epoch: String,
    pub(crate) head_seq: u64,
}

/// A `syncNewPackageData` call a client is about to make.
#[derive(Debug, Clone)]
pub struct NextCall {
    /// The token the previous page returned.
    pub token: Value,
    /// The options of the previous call, which the client repeats.
    pub options: Value,
}

/// [`sync_new_package_data`], also describing the call that follows.
pub(crate) fn answer(
    store: &dyn CatalogStore,
    token: &Value,
    options: &Value,
    paging: &Paging,
) -> Result<Answer, SyncError> {
    let request = parse_token(token)?;
    let short = flag(options, "shortPagesForTest");
    let limits = PageLimits {
        records: if short {
            paging.short_page_size
        } else {
            paging.page_size
        },
        bytes: paging.page_bytes,
    };
    let limits = &limits;
    let (page, mut position, reset) = match request.start {
        Start::Fresh => (
            store.read_page(&Cursors::default(), limits)?,
            Position::zero(),
            false,
        ),
        Start::Resume { epoch, position } => {
            let page = store.read_page(&position.cursors, limits)?;
            let valid = page.epoch == epoch
                && position
                    .cursors
                    .iter()
                    .all(|(_, seq)| *seq <= page.head_seq);
            if valid {
                (page, position, false)
            } else {
                (
                    store.read_page(&Cursors::default(), limits)?,
                    Position::zero(),
                    true,
                )
            }
        }
        Start::Foreign => (
            store.read_page(&Cursors::default(), limits)?,
            Position::zero(),
            true,
        ),
    };
    position.advance(&page);
    let next_token = render_token(request.format, &page.epoch, &position);
    let text = render_result(
        &page,
        &next_token.to_string(),
        reset,
        flag(options, "compressCollections"),
    )?;
    Ok(Answer {
        text,
        next: page.has_more.then(|| NextCall {
            token: next_token,
            options: options.clone(),
        }),
        epoch: page.epoch,
        head_seq: page.head_seq,
    })
}

/// Where a client is: per collection, the cursor and the progress value to echo.
struct Position {
    cursors: Cursors,
    progress: PerCollection<Number>,
}

impl Position {
    fn zero() -> Position {
        Position {
            cursors: Cursors::default(),
            progress: PerCollection::from_fn(|_| Number::from(0)),
        }
    }

    /// Moves past the records of `page`.
    fn advance(&mut self, page: &Page) {
        for (c, records) in page.records.iter() {
            if let Some(last) = records.last() {
                self.cursors[c] = last.seq;
                if let Some(ms) = last.last_updated {
                    self.progress[c] = Number::from(ms);
                }
            }
        }
    }
}

/// How a token says to start.
enum Start {
    /// The default token: from zero, no reset.
    Fresh,
    /// One of our tokens: continue if its epoch is still current.
    Resume { epoch: String, position: Position },
    /// Not one of our tokens: reset.
    Foreign,
}

/// A parsed token.
struct Request<'a> {
    format: Option<&'a Value>,
    start: Start,
}

fn parse_token(token: &Value) -> Result<Request<'_>, SyncError> {
    let Value::Object(map) = token else {
        return Err(SyncError::BadToken(format!(
            "the sync token must be an object, not {}",
            exosphere_ejson::json_kind(token)
        )));
    };
    let start = if map.keys().all(|k| k == "format" || k == "_id") {
        Start::Fresh
    } else {
        resume_position(map).unwrap_or(Start::Foreign)
    };
    Ok(Request {
        format: map.get("format"),
        start,
    })
}

/// Reads the epoch and every cursor of one of our tokens; `None` if any is missing or
/// malformed. Progress values are informational: a non-number is replaced by 0.
fn resume_position(map: &Map<String, Value>) -> Option<Start> {
    let epoch = map.get("epoch")?.as_str()?.to_owned();
    let mut position = Position::zero();
    for c in Collection::ALL {
        position.cursors[c] = map.get(seq_key(c))?.as_u64()?;
        if let Some(Value::Number(ms)) = map.get(c.as_str()) {
            position.progress[c] = ms.clone();
        }
    }
    Some(Start::Resume { epoch, position })
}

/// The token key holding a collection's cursor.
const fn seq_key(c: Collection) -> &'static str {
    match c {
        Collection::Packages => "packagesSeq",
        Collection::Versions => "versionsSeq",
        Collection::Builds => "buildsSeq",
        Collection::ReleaseTracks => "releaseTracksSeq",
        Collection::ReleaseVersions => "releaseVersionsSeq",
    }
}

/// Whether `options[key]` is truthy in JavaScript terms (the tool is JavaScript).
pub(crate) fn flag(options: &Value, key: &str) -> bool {
    options.get(key).is_some_and(js_truthy)
}

/// JavaScript truthiness of an EJSON value: `false`, `0`, `""`, `null` and NaN (EJSON
/// `{"$InfNaN":0}`) are falsy; everything else, including `{}` and `[]`, is truthy.
fn js_truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) => true,
        Value::Object(map) => {
            let nan = map.len() == 1 && map.get("$InfNaN").and_then(Value::as_f64) == Some(0.0);
            !nan
        }
    }
}

fn render_token(format: Option<&Value>, epoch: &str, position: &Position) -> Value {
    let mut token = Map::new();
    if let Some(format) = format {
        token.insert("format".into(), format.clone());
    }
    token.insert("epoch".into(), Value::String(epoch.to_owned()));
    for c in Collection::ALL {
        token.insert(
            c.as_str().into(),
            Value::Number(position.progress[c].clone()),
        );
        token.insert(seq_key(c).into(), Value::from(position.cursors[c]));
    }
    Value::Object(token)
}

fn render_result(
    page: &Page,
    token: &str,
    reset: bool,
    compress: bool,
) -> Result<String, SyncError> {
    let records_len: usize = page
        .records
        .iter()
        .flat_map(|(_, records)| records.iter().map(|r| r.json.len() + 1))
        .sum();
    let collections_len = records_len + 100;
    // The token and flags come first: a client can read them and ask for the next page
    // before it has parsed the megabyte of records behind them. Key order means nothing to
    // the tool's `JSON.parse`.
    let mut out = String::with_capacity(collections_len + token.len() + 100);
    out.push_str("{\"syncToken\":");
    out.push_str(token);
    out.push_str(",\"upToDate\":");
    out.push_str(if page.has_more { "false" } else { "true" });
    out.push_str(",\"resetData\":");
    out.push_str(if reset { "true" } else { "false" });
    if compress {
        let mut plain = String::with_capacity(collections_len + collections_len / 4);
        push_collections(&mut plain, page, true)?;
        // A fast level: a page is compressed once per store snapshot (the page cache keeps it,
        // in memory and in its files), but the first client after each write waits for it.
        // Level 2, not 1: zlib-rs's level 1 is its quick strategy (static Huffman codes only),
        // which made pages about 9% larger than level 1 of flate2's former backend.
        let mut gz = GzEncoder::new(Vec::with_capacity(plain.len() / 4), Compression::new(2));
        gz.write_all(plain.as_bytes())
            .map_err(SyncError::Compress)?;
        out.push_str(",\"collectionsCompressed\":\"");
        base64::engine::general_purpose::STANDARD
            .encode_string(gz.finish().map_err(SyncError::Compress)?, &mut out);
        out.push('"');
    } else {
        out.push_str(",\"collections\":");
        push_collections(&mut out, page, false)?;
    }
    out.push('}');
    Ok(out)
}

/// Appends the collections object with all five arrays; records are spliced as stored,
/// or lowered to plain JSON (dates as ISO strings) for the compressed form, which the
/// tool reads with `JSON.parse`, not EJSON (spec §3.7).
fn push_collections(out: &mut String, page: &Page, plain: bool) -> Result<(), SyncError> {
    out.push('{');
    for (i, (c, records)) in page.records.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        out.push_str(c.as_str());
        out.push_str("\":[");
        for (j, record) in records.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            if plain {
                if !exosphere_ejson::push_plain_if_dates_only(out, &record.json) {
                    let lowered = exosphere_ejson::plain_json_text(&record.json).map_err(|e| {
                        SyncError::Lowering {
                            collection: c,
                            reason: e.to_string(),
                        }
                    })?;
                    out.push_str(&lowered);
                }
            } else {
                out.push_str(&record.json);
            }
        }
        out.push(']');
    }
    out.push('}');
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn options_follow_javascript_truthiness() {
        for falsy in [
            json!(false),
            json!(0),
            json!(0.0),
            json!(""),
            Value::Null,
            json!({"$InfNaN":0}),
        ] {
            assert!(!js_truthy(&falsy), "{falsy}");
        }
        for truthy in [
            json!(true),
            json!(-1),
            json!("false"),
            json!([]),
            json!({}),
            json!({"$InfNaN":1}),
        ] {
            assert!(js_truthy(&truthy), "{truthy}");
        }
        assert!(!flag(&Value::Null, "shortPagesForTest"));
        assert!(!flag(&json!([1]), "shortPagesForTest"));
        assert!(flag(&json!({"shortPagesForTest": 1}), "shortPagesForTest"));
    }
}
