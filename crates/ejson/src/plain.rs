//! Lowering EJSON to plain JSON for clients that read it with `JSON.parse`.
//!
//! `syncNewPackageData` with `compressCollections` (spec §3.7) hands the tool gzipped
//! JSON it parses with plain `JSON.parse`, so `{"$date": …}` would arrive as an object
//! and become an Invalid Date. The lowering therefore mirrors what Meteor's server
//! produces there, `JSON.stringify` of the live values:
//!
//! | EJSON | plain JSON |
//! |---|---|
//! | Date | ISO-8601 string exactly as `Date.prototype.toISOString` (`null` if out of range) |
//! | Binary | its standard padded base64 string |
//! | NaN, ±Infinity | `null` |
//! | RegExp | `{}` (a `RegExp` has no enumerable properties, so `JSON.stringify` prints `{}`) |
//! | objects | literal, never `$escape`d |

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

use crate::decode::parse;
use crate::error::EjsonError;
use crate::iso_date::to_iso_string;
use crate::value::Ejson;

impl Ejson {
    /// Lowers this value to plain JSON (see the module documentation for the mapping).
    pub fn to_plain_json(&self) -> Value {
        match self {
            Ejson::Null | Ejson::NonFinite(_) => Value::Null,
            Ejson::Bool(b) => Value::Bool(*b),
            Ejson::Number(n) => Value::Number(n.clone()),
            Ejson::String(s) => Value::String(s.clone()),
            Ejson::Array(items) => Value::Array(items.iter().map(Ejson::to_plain_json).collect()),
            Ejson::Object(map) => Value::Object(
                map.iter()
                    .map(|(key, value)| (key.clone(), value.to_plain_json()))
                    .collect(),
            ),
            Ejson::Date(ms) => to_iso_string(*ms).map_or(Value::Null, Value::String),
            Ejson::Binary(bytes) => Value::String(STANDARD.encode(bytes)),
            Ejson::Regexp { .. } => Value::Object(Map::new()),
        }
    }
}

/// Parses EJSON text and returns it as compact plain JSON text (see [`Ejson::to_plain_json`]).
///
/// The catalog uses this to build `collectionsCompressed` sync pages from stored EJSON.
pub fn plain_json_text(ejson_text: &str) -> Result<String, EjsonError> {
    Ok(parse(ejson_text)?.to_plain_json().to_string())
}

/// Appends the plain JSON of `text` to `out` the quick way, when the only EJSON values in it
/// are dates of whole milliseconds written `{"$date":<ms>}` (a stored catalog record's
/// usual shape): `text` is copied with each of those rewritten as
/// [`Ejson::to_plain_json`] does, every other byte kept, so the result is the same JSON as
/// [`plain_json_text`]'s. Returns `false`, with `out` as it was, for any other text (one with
/// another string starting with `$`, say); lower that with [`plain_json_text`].
///
/// It exists because parsing every record of a sync page into a tree and printing it again
/// was most of the CPU of a `collectionsCompressed` page. `text` must be valid JSON (the
/// catalog validates records when it stores them); this does not check it.
pub fn push_plain_if_dates_only(out: &mut String, text: &str) -> bool {
    const DATE: &str = r#"{"$date":"#;
    let start_len = out.len();
    let mut copied = 0;
    // In valid JSON, `"$` starts a string beginning with `$` or follows a backslash inside
    // a string; only `{"$date":` followed by digits and `}` is taken here.
    for (at, _) in text.match_indices("\"$") {
        if at < copied {
            continue;
        }
        let lowered = at.checked_sub(1).and_then(|open| {
            let digits = text.get(open..)?.strip_prefix(DATE)?;
            let end = digits.find('}')?;
            let ms: i64 = digits[..end].parse().ok()?;
            Some((open, open + DATE.len() + end + 1, ms))
        });
        let Some((open, close, ms)) = lowered else {
            out.truncate(start_len);
            return false;
        };
        out.push_str(&text[copied..open]);
        // Whole milliseconds beyond ±2^53 are far outside a date's range (`null` either way).
        match to_iso_string(ms as f64) {
            Some(iso) => {
                out.push('"');
                out.push_str(&iso);
                out.push('"');
            }
            None => out.push_str("null"),
        }
        copied = close;
    }
    out.push_str(&text[copied..]);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::NonFinite;
    use serde_json::json;

    #[test]
    fn lowering_of_each_type() {
        assert_eq!(
            Ejson::Date(1424908800000.0).to_plain_json(),
            json!("2015-02-26T00:00:00.000Z")
        );
        assert_eq!(Ejson::Date(1e17).to_plain_json(), Value::Null);
        assert_eq!(Ejson::Binary(vec![1, 2, 3]).to_plain_json(), json!("AQID"));
        assert_eq!(
            Ejson::NonFinite(NonFinite::NaN).to_plain_json(),
            Value::Null
        );
        assert_eq!(
            Ejson::NonFinite(NonFinite::Infinity).to_plain_json(),
            Value::Null
        );
        assert_eq!(
            Ejson::Regexp {
                source: "a".to_owned(),
                flags: String::new()
            }
            .to_plain_json(),
            json!({})
        );
        assert_eq!(Ejson::from(3_i64).to_plain_json(), json!(3));
    }

    #[test]
    fn objects_are_never_escaped() {
        let value: Ejson = [("$date", Ejson::Date(0.0))].into_iter().collect();
        assert_eq!(
            value.to_plain_json(),
            json!({"$date": "1970-01-01T00:00:00.000Z"})
        );
    }

    #[test]
    fn plain_text_of_a_sync_like_page() {
        let text = r#"{"packages":[{"name":"a","lastUpdated":{"$date":1424908800000}}],"blob":{"$binary":"YQ=="},"x":{"$escape":{"$type":1,"$value":[{"$InfNaN":-1}]}}}"#;
        assert_eq!(
            plain_json_text(text).ok().as_deref(),
            Some(
                r#"{"packages":[{"name":"a","lastUpdated":"2015-02-26T00:00:00.000Z"}],"blob":"YQ==","x":{"$type":1,"$value":[null]}}"#
            )
        );
        assert!(plain_json_text(r#"{"$type":"x","$value":1}"#).is_err());
        assert!(plain_json_text("not json").is_err());
    }

    #[test]
    fn records_with_only_dates_are_lowered_quickly_to_the_same_json() {
        for text in [
            r#"{"_id":"a","published":{"$date":1424908800000},"x":[{"$date":-5},{"$date":0}]}"#,
            r#"{"_id":"b","far":{"$date":8640000000000001},"s":"{\"$date\" in a string"}"#,
            r#"{"_id":"c","plain":[1,2.5,"é"],"nested":{"d":{"$date":1}}}"#,
            r#"{"_id":"d"}"#,
        ] {
            let mut out = "prefix".to_owned();
            let quick = push_plain_if_dates_only(&mut out, text);
            if text.contains(r#"\""#) {
                assert!(!quick, "{text}");
                assert_eq!(out, "prefix");
                continue;
            }
            assert!(quick, "{text}");
            let quick: Value = serde_json::from_str(&out["prefix".len()..]).unwrap();
            let slow: Value = serde_json::from_str(&plain_json_text(text).unwrap()).unwrap();
            assert_eq!(quick, slow, "{text}");
        }
        for other in [
            r#"{"a":{"$binary":"YQ=="}}"#,
            r#"{"a":{"$date":1.5}}"#,
            r#"{"a":{"$date":1,"b":2}}"#,
            r#"{"a":{ "$date":1}}"#,
            r#"{"a":"$money"}"#,
            r#"{"a":{"$escape":{"$date":1}}}"#,
            r#"{"a":{"$date":99999999999999999999}}"#,
        ] {
            let mut out = String::new();
            assert!(!push_plain_if_dates_only(&mut out, other), "{other}");
            assert!(out.is_empty());
        }
    }
}
