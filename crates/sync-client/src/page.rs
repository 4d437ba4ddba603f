//! One `syncNewPackageData` result (spec §3.2), decoded once: every record stays a slice of
//! the received frame (or of the one buffer a compressed page is inflated into) until the
//! sink parses it.

use std::fmt;
use std::io::Read as _;

use base64::Engine as _;
use serde::Deserialize;
use serde::de::{MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::error::SyncError;

/// The token of a client that has never synced (spec §3.1).
pub const FIRST_TOKEN: &str = r#"{"format":"1.1"}"#;

/// One page as a sink receives it, borrowed from the frame (no copies).
#[derive(Debug, Clone)]
pub struct Page<'a> {
    /// The server said `resetData: true`: what the sink holds is to be replaced by the full
    /// catalog, starting with this page.
    pub reset_data: bool,
    /// The server said `upToDate: true` (or ended the sync as older servers do).
    pub up_to_date: bool,
    /// The `syncToken` to store with this page, as raw JSON.
    pub sync_token: &'a RawValue,
    /// Records by collection name, each record's raw JSON text: EJSON as in `collections`,
    /// or the plain JSON of a decoded `collectionsCompressed` (spec §3.7).
    pub collections: Vec<(&'a str, Vec<&'a RawValue>)>,
}

impl Page<'_> {
    /// How many records the page carries, over every collection.
    pub fn records(&self) -> u64 {
        self.collections
            .iter()
            .map(|(_, records)| records.len() as u64)
            .sum()
    }
}

/// One `syncNewPackageData` result (spec §3.2), borrowed from the frame.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SyncResult<'a> {
    #[serde(borrow)]
    pub(crate) collections: Option<Collections<'a>>,
    #[serde(borrow)]
    pub(crate) collections_compressed: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) sync_token: &'a RawValue,
    #[serde(default)]
    pub(crate) up_to_date: bool,
    #[serde(default)]
    pub(crate) reset_data: bool,
}

/// The `collections` object: collection name → records, each record's raw text.
#[derive(Default)]
pub(crate) struct Collections<'a>(pub(crate) Vec<(&'a str, Vec<&'a RawValue>)>);

impl<'de: 'a, 'a> Deserialize<'de> for Collections<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        pub(crate) struct CollectionsVisitor<'a>(std::marker::PhantomData<&'a ()>);
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

/// The `syncToken` and `upToDate` at the head of a result frame, read without parsing the
/// records behind them; `None` when the result does not start with them.
pub fn leading_token(frame: &str) -> Option<(&str, bool)> {
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

/// Decodes one `syncNewPackageData` result's JSON text (spec §3.2) into a [`Page`]: a
/// compressed page is inflated into `buffer` (to at most `limit` bytes), which the page then
/// borrows. It exists so a reader of pages that did not come over DDP (the server's own read
/// model, fed from its page cache) decodes them exactly as the sync loop does.
pub fn decode_page<'a>(
    text: &'a str,
    buffer: &'a mut String,
    limit: usize,
) -> Result<Page<'a>, SyncError> {
    let result: SyncResult<'a> = serde_json::from_str(text).map_err(|error| {
        SyncError::Protocol(format!(
            "a sync page is not a syncNewPackageData result: {error}"
        ))
    })?;
    page_of(result, buffer, limit)
}

/// The page a decoded result holds: its collections (inflated into `buffer` when
/// compressed), and whether it ends the sync, which older servers say with an empty
/// `collections` object instead of `upToDate` (spec §3.3 steps 5 and 7).
pub(crate) fn page_of<'a>(
    result: SyncResult<'a>,
    buffer: &'a mut String,
    limit: usize,
) -> Result<Page<'a>, SyncError> {
    let collections = match (&result.collections_compressed, result.collections) {
        (Some(packed), _) => {
            *buffer = inflate(packed, limit)?;
            let inflated: &'a String = buffer;
            serde_json::from_str::<Collections>(inflated).map_err(|error| {
                SyncError::Protocol(format!(
                    "a compressed page does not hold a collections object: {error}"
                ))
            })?
        }
        (None, Some(collections)) => collections,
        (None, None) => {
            return Err(SyncError::Protocol(
                "the server sent a sync page without collections".to_owned(),
            ));
        }
    };
    let complete = result.up_to_date || (!result.reset_data && collections.0.is_empty());
    Ok(Page {
        reset_data: result.reset_data,
        up_to_date: complete,
        sync_token: result.sync_token,
        collections: collections.0,
    })
}

/// Decodes `collectionsCompressed` as the tool does (spec §3.7): base64, then gunzip, to
/// at most `limit` bytes, so a gzip bomb fails instead of filling memory.
pub(crate) fn inflate(packed: &str, limit: usize) -> Result<String, SyncError> {
    let gzipped = base64::engine::general_purpose::STANDARD
        .decode(packed)
        .map_err(|error| {
            SyncError::Protocol(format!("a compressed page is not base64: {error}"))
        })?;
    let mut json = Vec::with_capacity(gzipped.len().saturating_mul(6).min(limit));
    flate2::read::GzDecoder::new(gzipped.as_slice())
        .take(u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1))
        .read_to_end(&mut json)
        .map_err(|error| {
            SyncError::Protocol(format!("a compressed page is not gzipped: {error}"))
        })?;
    if json.len() > limit {
        return Err(SyncError::Protocol(format!(
            "the server sent a compressed page that inflates to more than {limit} bytes \
             (--max-page-size); refusing it"
        )));
    }
    String::from_utf8(json).map_err(|error| {
        SyncError::Protocol(format!("a compressed page is not UTF-8 text: {error}"))
    })
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
        assert_eq!(
            collections
                .0
                .iter()
                .map(|(_, records)| records.len())
                .sum::<usize>(),
            2
        );
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
    fn page_texts_decode_as_the_loop_decodes_frames() {
        use std::io::Write as _;
        let text =
            r#"{"collections":{"packages":[{"_id":"a"}]},"syncToken":{"x":1},"upToDate":false}"#;
        let mut buffer = String::new();
        let page = decode_page(text, &mut buffer, 1 << 20).expect("a page");
        assert_eq!(
            (page.records(), page.up_to_date, page.reset_data),
            (1, false, false)
        );
        assert_eq!(page.sync_token.get(), r#"{"x":1}"#);

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(br#"{"versions":[{"_id":"v"}]}"#)
            .expect("gzip");
        let packed = base64::engine::general_purpose::STANDARD.encode(gz.finish().expect("gzip"));
        let text = format!(
            r#"{{"collectionsCompressed":"{packed}","syncToken":{{}},"resetData":true,"upToDate":true}}"#
        );
        let mut buffer = String::new();
        let page = decode_page(&text, &mut buffer, 1 << 20).expect("a compressed page");
        assert_eq!(page.collections[0].0, "versions");
        assert!(page.reset_data && page.up_to_date);

        // Older servers end a sync with an empty `collections` object.
        let mut buffer = String::new();
        let last = decode_page(r#"{"collections":{},"syncToken":{}}"#, &mut buffer, 10).unwrap();
        assert!(last.up_to_date);
        assert!(decode_page(r#"{"syncToken":{}}"#, &mut String::new(), 10).is_err());
        assert!(decode_page("[]", &mut String::new(), 10).is_err());
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
