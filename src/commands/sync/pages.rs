//! The page loop of spec §3.3, from a DDP client into a local index.
//!
//! Each `syncNewPackageData` answer is decoded once, borrowing from the received frame:
//! every record stays a slice of the frame text until the index parses it, and only the
//! current page (plus the next one in flight) is held. A compressed page (§3.7) is
//! inflated into one buffer for that page only. Each page is applied together with its token
//! in one index transaction, so an interrupted sync resumes after the last whole page.
//!
//! Pipelining: Exosphere writes the token and `upToDate` at the head of a result, so the next
//! page is requested as soon as that head is read and the server prepares it while this
//! client applies the current one. Servers that put the token elsewhere get one call at a
//! time, as the `meteor` tool makes them.

use std::fmt;
use std::io::Read as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use exosphere_ddp::client::{Client, PendingCall};
use exosphere_ddp::ejson::{Ejson, EjsonMap};
use exosphere_index::{Index, PageApplied, SyncPage};
use serde::Deserialize;
use serde::de::{MapAccess, Visitor};
use serde_json::value::RawValue;

/// The token of a client that has never synced (spec §3.1).
const FIRST_TOKEN: &str = r#"{"format":"1.1"}"#;

/// How a pass asks for pages, and how much it accepts from a server before calling it
/// broken: a faulty or malicious server must not make the client loop or exhaust memory.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PassOptions {
    /// Ask for `collectionsCompressed` pages (spec §3.7).
    pub(crate) compress: bool,
    /// The most bytes a compressed page may inflate to.
    pub(crate) max_page_size: usize,
    /// The most pages in a row without records and without `upToDate`.
    pub(crate) max_empty_pages: u32,
}

/// What one pass (from the stored token to `upToDate`) did.
#[derive(Debug, Default, Clone)]
pub(crate) struct Pass {
    /// Pages applied.
    pub(crate) pages: u64,
    /// Records received and stored.
    pub(crate) records: u64,
    /// Bytes of `result` frames received.
    pub(crate) bytes: u64,
    /// Records of a shape spec §3.8 does not describe, kept as sent but left out of
    /// queries ([`exosphere_index::PageApplied::raw_only`]).
    pub(crate) raw_only: u64,
    /// Whether the server told us to start over (`resetData`).
    pub(crate) reset: bool,
    pub(crate) elapsed: Duration,
    /// Of `elapsed`, the time spent in `Index::apply_page` (the rest is waiting for the
    /// server and decoding).
    pub(crate) applying: Duration,
}

impl fmt::Display for Pass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        write!(
            f,
            "{} records in {} pages ({:.1} MB) in {secs:.2} s ({:.0} records/s, {:.2} s of it \
             applying pages to the index)",
            self.records,
            self.pages,
            self.bytes as f64 / 1e6,
            self.records as f64 / secs.max(1e-9),
            self.applying.as_secs_f64(),
        )?;
        if self.reset {
            f.write_str(", after the server reset the catalog")?;
        }
        if self.raw_only > 0 {
            let (n, records, were) = match self.raw_only {
                1 => (1, "record", "was"),
                n => (n, "records", "were"),
            };
            write!(
                f,
                "; warning: {n} {records} of an unexpected shape {were} kept as sent, outside \
                 search, show and deps"
            )?;
        }
        Ok(())
    }
}

/// One `syncNewPackageData` result (spec §3.2), borrowed from the frame.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SyncResult<'a> {
    #[serde(borrow)]
    collections: Option<Collections<'a>>,
    #[serde(borrow)]
    collections_compressed: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    sync_token: &'a RawValue,
    #[serde(default)]
    up_to_date: bool,
    #[serde(default)]
    reset_data: bool,
}

/// The `collections` object: collection name → records, each record's raw text.
#[derive(Default)]
struct Collections<'a>(Vec<(&'a str, Vec<&'a RawValue>)>);

impl<'de: 'a, 'a> Deserialize<'de> for Collections<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CollectionsVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for CollectionsVisitor<'a> {
            type Value = Collections<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of record arrays")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut collections = Vec::with_capacity(5);
                while let Some(entry) = map.next_entry::<&'de str, Vec<&'de RawValue>>()? {
                    collections.push(entry);
                }
                Ok(Collections(collections))
            }
        }
        deserializer.deserialize_map(CollectionsVisitor(std::marker::PhantomData))
    }
}

impl Collections<'_> {
    fn records(&self) -> u64 {
        self.0.iter().map(|(_, records)| records.len() as u64).sum()
    }
}

/// Runs the loop of spec §3.3 from the index's stored token until the server says
/// `upToDate`, calling `on_page` after each committed page.
pub(crate) async fn sync_pass(
    client: &Client,
    index: &mut Index,
    settings: PassOptions,
    mut on_page: impl FnMut(&PageApplied),
) -> anyhow::Result<Pass> {
    let started = Instant::now();
    let options: EjsonMap = if settings.compress {
        [("compressCollections".to_owned(), Ejson::from(true))]
            .into_iter()
            .collect()
    } else {
        EjsonMap::new()
    };
    let options = Ejson::Object(options);
    let stored = index.sync_token()?;
    let mut previous = stored.unwrap_or_else(|| FIRST_TOKEN.to_owned());
    let mut pending = request(client, &previous, &options).await?;
    let mut pass = Pass::default();
    let mut empty_pages = 0u32;
    let mut previous_reset = false;
    loop {
        let answer = pending.result().await?;
        let frame = answer.frame();
        let next = match leading_token(frame) {
            Some((token, false)) => Some(request(client, token, &options).await?),
            _ => None,
        };
        let Some(result) = answer.decode::<SyncResult>()? else {
            bail!("the server answered syncNewPackageData without a result");
        };
        let inflated;
        let collections = match (&result.collections_compressed, result.collections) {
            (Some(packed), _) => {
                inflated = inflate(packed, settings.max_page_size)?;
                serde_json::from_str::<Collections>(&inflated)
                    .context("a compressed page does not hold a collections object")?
            }
            (None, Some(collections)) => collections,
            (None, None) => bail!("the server sent a sync page without collections"),
        };
        let records = collections.records();
        if result.reset_data && previous_reset {
            bail!(
                "the server broke the sync protocol: it sent `resetData` on two pages in a \
                 row (spec §3.6 forbids it); stopping instead of starting over forever"
            );
        }
        // Spec §3.3 steps 5 and 7: older servers end a sync with an empty `collections`
        // object instead of `upToDate`.
        let complete = result.up_to_date || (!result.reset_data && collections.0.is_empty());
        let page = SyncPage {
            reset_data: result.reset_data,
            up_to_date: complete,
            sync_token: result.sync_token,
            collections: collections.0,
        };
        // SQLite work is blocking; other tasks (the connection reader receiving the next
        // page) move to another worker meanwhile.
        let applying = Instant::now();
        let applied = tokio::task::block_in_place(|| index.apply_page(&page))?;
        pass.applying += applying.elapsed();
        on_page(&applied);
        pass.pages += 1;
        pass.records += records;
        pass.raw_only += applied.raw_only;
        pass.bytes += frame.len() as u64;
        pass.reset |= result.reset_data;
        if complete {
            pass.elapsed = started.elapsed();
            return Ok(pass);
        }
        let token = result.sync_token.get();
        if token == previous {
            bail!(
                "the server broke the sync protocol: it answered without `upToDate` but \
                 returned the token it was sent, so the next page would be the same \
                 (spec §3.3, §3.5); stopping instead of looping forever"
            );
        }
        empty_pages = if records == 0 { empty_pages + 1 } else { 0 };
        if empty_pages > settings.max_empty_pages {
            bail!(
                "the server broke the sync protocol: it sent {empty_pages} pages in a row \
                 without records and without `upToDate` (spec §3.3); stopping instead of \
                 looping forever (--max-empty-pages)"
            );
        }
        previous_reset = result.reset_data;
        previous = token.to_owned();
        pending = match next {
            Some(next) => next,
            None => request(client, token, &options).await?,
        };
    }
}

/// Sends `syncNewPackageData(token, options)`.
async fn request(client: &Client, token: &str, options: &Ejson) -> anyhow::Result<PendingCall> {
    let token = exosphere_ddp::ejson::parse(token)
        .with_context(|| format!("the sync token {token} is not EJSON"))?;
    Ok(client
        .start_call("syncNewPackageData", &[token, options.clone()])
        .await?)
}

/// The `syncToken` and `upToDate` at the head of a result frame, read without parsing the
/// records behind them; `None` when the result does not start with them.
pub(crate) fn leading_token(frame: &str) -> Option<(&str, bool)> {
    const LEAD: &str = r#""result":{"syncToken":"#;
    let head = &frame.as_bytes()[..frame.len().min(256)];
    let start = head
        .windows(LEAD.len())
        .position(|w| w == LEAD.as_bytes())?
        + LEAD.len();
    let mut values = serde_json::Deserializer::from_str(&frame[start..]).into_iter::<&RawValue>();
    let token = values.next()?.ok()?;
    let rest = &frame[start + values.byte_offset()..];
    if rest.starts_with(r#","upToDate":true"#) {
        Some((token.get(), true))
    } else if rest.starts_with(r#","upToDate":false"#) {
        Some((token.get(), false))
    } else {
        None
    }
}

/// Decodes `collectionsCompressed` as the tool does (spec §3.7): base64, then gunzip, to
/// at most `limit` bytes, so a gzip bomb fails instead of filling memory.
fn inflate(packed: &str, limit: usize) -> anyhow::Result<String> {
    let gzipped = base64::engine::general_purpose::STANDARD
        .decode(packed)
        .context("a compressed page is not base64")?;
    let mut json = Vec::with_capacity(gzipped.len().saturating_mul(6).min(limit));
    flate2::read::GzDecoder::new(gzipped.as_slice())
        .take(u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1))
        .read_to_end(&mut json)
        .context("a compressed page is not gzipped")?;
    if json.len() > limit {
        bail!(
            "the server sent a compressed page that inflates to more than {limit} bytes \
             (--max-page-size); refusing it"
        );
    }
    String::from_utf8(json).context("a compressed page is not UTF-8 text")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_tokens() {
        let frame = r#"{"msg":"result","id":"1","result":{"syncToken":{"format":"1.1","packages":5},"upToDate":false,"resetData":false,"collections":{}}}"#;
        assert_eq!(
            leading_token(frame),
            Some((r#"{"format":"1.1","packages":5}"#, false))
        );
        let last = frame.replace(r#""upToDate":false"#, r#""upToDate":true"#);
        assert!(matches!(leading_token(&last), Some((_, true))));
        // Another order: no shortcut, the whole result is read first.
        let other = r#"{"msg":"result","id":"1","result":{"collections":{},"syncToken":{},"upToDate":false}}"#;
        assert_eq!(leading_token(other), None);
        assert_eq!(leading_token(r#"{"msg":"result","id":"1"}"#), None);
    }

    #[test]
    fn pages_decode_borrowing_records() {
        let text = r#"{"collections":{"packages":[{"_id":"a"},{"_id":"b"}],"builds":[]},"syncToken":{"x":1},"upToDate":true}"#;
        let result: SyncResult = serde_json::from_str(text).expect("a valid page");
        let collections = result.collections.expect("collections");
        assert_eq!(collections.records(), 2);
        assert_eq!(collections.0[0].0, "packages");
        assert_eq!(collections.0[0].1[1].get(), r#"{"_id":"b"}"#);
        assert!(
            text.as_bytes()
                .as_ptr_range()
                .contains(&collections.0[0].1[1].get().as_ptr())
        );
        assert!(result.up_to_date && !result.reset_data);
    }

    #[test]
    fn compressed_pages_inflate() {
        use std::io::Write as _;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(br#"{"packages":[]}"#).expect("gzip");
        let packed = base64::engine::general_purpose::STANDARD.encode(gz.finish().expect("gzip"));
        assert_eq!(
            inflate(&packed, 15).ok().as_deref(),
            Some(r#"{"packages":[]}"#)
        );
        assert!(inflate("not base64!", 1 << 20).is_err());
        assert!(inflate("aGVsbG8=", 1 << 20).is_err());
    }

    #[test]
    fn compressed_pages_inflate_within_the_limit() {
        use std::io::Write as _;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![b' '; 1 << 20]).expect("gzip");
        let packed = base64::engine::general_purpose::STANDARD.encode(gz.finish().expect("gzip"));
        assert!(packed.len() < 4096, "{} bytes", packed.len());
        let error = inflate(&packed, 64 << 10).expect_err("over the limit");
        assert!(
            format!("{error:#}").contains("more than 65536 bytes"),
            "{error:#}"
        );
        assert_eq!(
            inflate(&packed, 1 << 20).map(|json| json.len()).ok(),
            Some(1 << 20)
        );
    }
}
