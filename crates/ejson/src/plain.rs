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
}
