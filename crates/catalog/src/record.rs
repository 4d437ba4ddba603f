//! Catalog records: validated record text of the five synced collections, and the daily
//! package-usage rows behind `/stats/v1/<day>`.
//!
//! A [`Record`] keeps the EJSON text of a catalog document exactly as it was given (only
//! insignificant whitespace is removed), because sync pages embed that text verbatim
//! instead of re-encoding it (`meteor-package-server.md` §3.2, `catalog-dump.md`).

use exosphere_meteor::Collection;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::day::{InvalidDay, parse_day};

/// Why a text was refused as a catalog record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The text is not JSON at all.
    #[error("record is not valid JSON: {0}")]
    InvalidJson(String),
    /// The text is JSON but not an object.
    #[error("record is not a JSON object")]
    NotAnObject,
    /// The object has no `_id` key.
    #[error("record has no `_id`")]
    MissingId,
    /// The `_id` is present but not a string.
    #[error("record `_id` is not a string")]
    IdNotString,
    /// The JSON does not decode as EJSON (e.g. it uses a `$type` custom type, which makes
    /// the tool drop the whole DDP frame, spec §2).
    #[error("record is not valid EJSON: {0}")]
    InvalidEjson(String),
    /// The compact text is longer than [`MAX_RECORD_SIZE`].
    #[error("record is {size} bytes long; a record may be at most {MAX_RECORD_SIZE} bytes")]
    TooLarge {
        /// The length of the record's compact text, in bytes.
        size: usize,
    },
}

/// The longest compact record text the catalog accepts, in bytes (256 KiB).
///
/// Every sync page is cut by bytes ([`crate::sync::Paging::page_bytes`]) but always holds
/// at least one record, so one record is the most a page can exceed its budget by; this
/// bound keeps a page with the default 8 MiB budget far below the 64 MiB frame limit of the
/// `meteor` tool's WebSocket client (spec §1.1) whatever the records hold. The largest
/// records a real tool publishes (a `versions` record with many dependencies and exports,
/// a release naming every core package) are a few tens of KiB, and the publishing methods
/// bound every field they accept well below this; it also stays below the 1 MiB DDP
/// message a publisher may send. Records written before this bound existed may be longer:
/// stores never put them in a page (see [`crate::store::CatalogStore::read_page`]).
pub const MAX_RECORD_SIZE: usize = 256 * 1024;

/// A catalog document, validated and ready to be stored and spliced into sync pages.
///
/// Fields are private so that every `Record` in existence has passed
/// [`Record::from_json`], or was read by the one-pass dump scan (`Record::scanned`),
/// which accepts only what `from_json` accepts as the same record (checked against it by
/// the scan's tests and the `dump_line` fuzz target): stores and sync pages can trust its
/// text blindly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    collection: Collection,
    id: String,
    last_updated: Option<i64>,
    json: String,
}

/// The two fields of a record the catalog itself looks at; everything else is opaque.
#[derive(Deserialize)]
struct RecordHead<'a> {
    #[serde(rename = "_id", default, borrow)]
    id: Field<'a>,
    #[serde(rename = "lastUpdated", borrow)]
    last_updated: Option<&'a RawValue>,
}

/// A field that may be absent; unlike `Option`, a present `null` counts as present.
#[derive(Default)]
struct Field<'a>(Option<&'a RawValue>);

impl<'de: 'a, 'a> Deserialize<'de> for Field<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <&'a RawValue>::deserialize(deserializer).map(|raw| Field(Some(raw)))
    }
}

impl Record {
    /// Validates `text` as a record of `collection`: a JSON object with a string `_id`
    /// that decodes as EJSON, at most [`MAX_RECORD_SIZE`] bytes once compacted. The stored text is `text` with insignificant whitespace
    /// removed; every token (numbers, escapes, key order, unknown fields) is kept as given.
    pub fn from_json(collection: Collection, text: &str) -> Result<Record, RecordError> {
        if !text.trim_start().starts_with('{') {
            // serde would also accept a JSON array for a struct; records must be objects.
            return match serde_json::from_str::<serde::de::IgnoredAny>(text) {
                Ok(_) => Err(RecordError::NotAnObject),
                Err(e) => Err(RecordError::InvalidJson(e.to_string())),
            };
        }
        let head: RecordHead<'_> =
            serde_json::from_str(text).map_err(|e| RecordError::InvalidJson(e.to_string()))?;
        let id: String = match head.id.0 {
            None => return Err(RecordError::MissingId),
            Some(raw) => serde_json::from_str(raw.get()).map_err(|_| RecordError::IdNotString)?,
        };
        exosphere_ejson::parse(text).map_err(|e| RecordError::InvalidEjson(e.to_string()))?;
        let json = compact_json(text);
        if json.len() > MAX_RECORD_SIZE {
            return Err(RecordError::TooLarge { size: json.len() });
        }
        Ok(Record {
            collection,
            id,
            last_updated: head.last_updated.and_then(date_millis),
            json,
        })
    }

    /// The record of a dump line read in one pass ([`crate::scan`], through
    /// `Scanned::into_record`), which accepts only lines that [`Record::from_json`] accepts
    /// as this same record (that module's contract, checked by its tests against
    /// `from_json`), so it is not validated again.
    pub(crate) fn scanned(
        collection: Collection,
        id: String,
        last_updated: Option<i64>,
        json: String,
    ) -> Record {
        Record {
            collection,
            id,
            last_updated,
            json,
        }
    }

    /// The collection this record belongs to.
    pub fn collection(&self) -> Collection {
        self.collection
    }

    /// The record's `_id`, its identity within the collection.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `lastUpdated` in ms since the epoch, if the record has one; echoed in sync tokens
    /// for the tool's progress display, never used for ordering.
    pub fn last_updated(&self) -> Option<i64> {
        self.last_updated
    }

    /// The record's compact EJSON text, embedded verbatim in sync pages and dumps.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// The record's `_id`, `lastUpdated` and text, taken apart without copying them (a
    /// bulk import's rows).
    pub(crate) fn into_parts(self) -> (String, Option<i64>, String) {
        (self.id, self.last_updated, self.json)
    }
}

/// Reads a date given as EJSON `{"$date": ms}` or as a plain ms number (spec §3.8 allows
/// both); anything else is treated as "no date".
fn date_millis(raw: &RawValue) -> Option<i64> {
    let value: serde_json::Value = serde_json::from_str(raw.get()).ok()?;
    let number = match &value {
        serde_json::Value::Object(map) if map.len() == 1 => map.get("$date")?,
        serde_json::Value::Number(_) => &value,
        _ => return None,
    };
    let number = number.as_number()?;
    if let Some(ms) = number.as_i64() {
        return Some(ms);
    }
    let ms = number.as_f64()?.floor();
    // The range check keeps the float-to-int conversion exact instead of saturating.
    (ms.is_finite() && ms >= i64::MIN as f64 && ms < i64::MAX as f64).then_some(ms as i64)
}

/// Removes whitespace outside strings from already-validated JSON text, keeping every
/// token byte for byte.
fn compact_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for ch in text.chars() {
        if in_string {
            out.push(ch);
            if escaped {
                escaped = false;
            } else if ch == '\\' {
                escaped = true;
            } else if ch == '"' {
                in_string = false;
            }
        } else if !matches!(ch, ' ' | '\t' | '\n' | '\r') {
            in_string = ch == '"';
            out.push(ch);
        }
    }
    out
}

/// Why a stats row was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatsRowError {
    /// The date is not a real `YYYY-MM-DD` calendar day.
    #[error(transparent)]
    InvalidDay(#[from] InvalidDay),
    /// The package name is empty.
    #[error("stats row has an empty package name")]
    EmptyName,
    /// The version is empty.
    #[error("stats row has an empty version")]
    EmptyVersion,
    /// A count exceeds what JavaScript consumers can represent exactly (2^53 - 1).
    #[error("stats row {field} = {value} exceeds 2^53 - 1")]
    CountTooLarge {
        /// `directAdds` or `totalAdds`.
        field: &'static str,
        /// The refused value.
        value: u64,
    },
}

/// Largest integer a JavaScript number holds exactly; stats consumers `JSON.parse` rows.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// One line of `/stats/v1/<day>` (spec §7.2): how many apps added `name@version` that day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsRow {
    date: String,
    name: String,
    version: String,
    direct_adds: u64,
    total_adds: u64,
}

impl StatsRow {
    /// Validates and builds a row: `date` must be a real `YYYY-MM-DD` day, `name` and
    /// `version` non-empty, counts at most 2^53 - 1.
    pub fn new(
        date: impl Into<String>,
        name: impl Into<String>,
        version: impl Into<String>,
        direct_adds: u64,
        total_adds: u64,
    ) -> Result<StatsRow, StatsRowError> {
        let (date, name, version) = (date.into(), name.into(), version.into());
        parse_day(&date)?;
        if name.is_empty() {
            return Err(StatsRowError::EmptyName);
        }
        if version.is_empty() {
            return Err(StatsRowError::EmptyVersion);
        }
        for (field, value) in [("directAdds", direct_adds), ("totalAdds", total_adds)] {
            if value > MAX_SAFE_INTEGER {
                return Err(StatsRowError::CountTooLarge { field, value });
            }
        }
        Ok(StatsRow {
            date,
            name,
            version,
            direct_adds,
            total_adds,
        })
    }

    /// The UTC day, `YYYY-MM-DD`.
    pub fn date(&self) -> &str {
        &self.date
    }

    /// The package name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The package version.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Apps that added this version directly that day.
    pub fn direct_adds(&self) -> u64 {
        self.direct_adds
    }

    /// Apps that added this version directly or as a dependency that day.
    pub fn total_adds(&self) -> u64 {
        self.total_adds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_keeps_text_and_extracts_id_and_date() {
        let text = r#"{"_id":"a1","lastUpdated":{"$date":1421971200000},"x":1.50,"k.y":"\u00e9"}"#;
        let r = Record::from_json(Collection::Versions, text).unwrap();
        assert_eq!(r.id(), "a1");
        assert_eq!(r.last_updated(), Some(1_421_971_200_000));
        assert_eq!(r.json(), text);
        assert_eq!(r.collection(), Collection::Versions);
    }

    #[test]
    fn record_text_is_compacted_but_strings_are_untouched() {
        let text = "{ \"_id\" : \"a b\",\n \"n\": [1, 2] ,\"s\":\"x \\\" y\" }";
        let r = Record::from_json(Collection::Packages, text).unwrap();
        assert_eq!(r.json(), r#"{"_id":"a b","n":[1,2],"s":"x \" y"}"#);
    }

    #[test]
    fn record_dates_in_other_shapes() {
        let date = |t: &str| {
            Record::from_json(Collection::Packages, t)
                .unwrap()
                .last_updated()
        };
        assert_eq!(date(r#"{"_id":"a","lastUpdated":5}"#), Some(5));
        assert_eq!(date(r#"{"_id":"a","lastUpdated":{"$date":5.7}}"#), Some(5));
        assert_eq!(date(r#"{"_id":"a","lastUpdated":"2015-01-01"}"#), None);
        assert_eq!(date(r#"{"_id":"a","lastUpdated":{"$date":1e300}}"#), None);
        assert_eq!(date(r#"{"_id":"a"}"#), None);
    }

    #[test]
    fn record_rejects_bad_input() {
        let err = |t: &str| Record::from_json(Collection::Packages, t).unwrap_err();
        assert!(matches!(err("{"), RecordError::InvalidJson(_)));
        assert!(matches!(err("not json"), RecordError::InvalidJson(_)));
        assert_eq!(err(r#"["_id"]"#), RecordError::NotAnObject);
        assert_eq!(err("\"x\""), RecordError::NotAnObject);
        assert_eq!(err(r#"{"name":"x"}"#), RecordError::MissingId);
        assert_eq!(err(r#"{"_id":5}"#), RecordError::IdNotString);
        assert_eq!(err(r#"{"_id":null}"#), RecordError::IdNotString);
        assert!(matches!(
            err(r#"{"_id":"a","_id":"b"}"#),
            RecordError::InvalidJson(_)
        ));
        assert!(matches!(
            err(r#"{"_id":"a","x":{"$type":"oid","$value":"1"}}"#),
            RecordError::InvalidEjson(_)
        ));
    }

    #[test]
    fn records_are_bounded_in_bytes_once_compacted() {
        let body = |n: usize| "x".repeat(n);
        let fits = format!(r#"{{"_id":"a","s":"{}"}}"#, body(MAX_RECORD_SIZE - 18));
        assert_eq!(fits.len(), MAX_RECORD_SIZE);
        assert!(Record::from_json(Collection::Versions, &fits).is_ok());
        let spaced = format!(
            "{{ \"_id\": \"a\",\n  \"s\": \"{}\" }}",
            body(MAX_RECORD_SIZE - 18)
        );
        assert!(Record::from_json(Collection::Versions, &spaced).is_ok());
        let over = format!(r#"{{"_id":"a","s":"{}"}}"#, body(MAX_RECORD_SIZE - 17));
        assert_eq!(
            Record::from_json(Collection::Versions, &over),
            Err(RecordError::TooLarge {
                size: MAX_RECORD_SIZE + 1
            })
        );
    }

    #[test]
    fn stats_row_validation() {
        let row = StatsRow::new("2015-02-28", "iron:router", "1.0.0", 2, 8).unwrap();
        assert_eq!(
            (row.date(), row.name(), row.version()),
            ("2015-02-28", "iron:router", "1.0.0")
        );
        assert_eq!((row.direct_adds(), row.total_adds()), (2, 8));
        assert!(matches!(
            StatsRow::new("2015-02-29", "a", "1", 0, 0),
            Err(StatsRowError::InvalidDay(_))
        ));
        assert_eq!(
            StatsRow::new("2015-02-28", "", "1", 0, 0),
            Err(StatsRowError::EmptyName)
        );
        assert_eq!(
            StatsRow::new("2015-02-28", "a", "", 0, 0),
            Err(StatsRowError::EmptyVersion)
        );
        assert!(matches!(
            StatsRow::new("2015-02-28", "a", "1", 0, 1 << 53),
            Err(StatsRowError::CountTooLarge {
                field: "totalAdds",
                ..
            })
        ));
    }
}
