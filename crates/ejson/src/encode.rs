//! Encoding: [`Ejson`] → JSON value (Meteor's `EJSON.toJSONValue`, spec §2).
//!
//! Tagged types get their wire form; a literal object whose keys would be read back as a
//! tagged value is wrapped in `{"$escape": …}` so decoding restores it exactly. Dates are
//! written as integers when integral, binary as standard padded base64.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Number, Value};

use crate::tag::Tag;
use crate::value::{Ejson, EjsonMap};

/// The largest magnitude up to which every integer is exactly representable in an `f64`.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

impl Ejson {
    /// Encodes this value as EJSON's JSON representation.
    pub fn to_json(&self) -> Value {
        match self {
            Ejson::Null => Value::Null,
            Ejson::Bool(b) => Value::Bool(*b),
            Ejson::Number(n) => Value::Number(n.clone()),
            Ejson::String(s) => Value::String(s.clone()),
            Ejson::Array(items) => Value::Array(items.iter().map(Ejson::to_json).collect()),
            Ejson::Object(map) => {
                let fields: Map<String, Value> = map
                    .iter()
                    .map(|(key, value)| (key.clone(), value.to_json()))
                    .collect();
                if needs_escape(map) {
                    tagged("$escape", Value::Object(fields))
                } else {
                    Value::Object(fields)
                }
            }
            Ejson::Date(ms) => tagged("$date", millis_number(*ms)),
            Ejson::Binary(bytes) => tagged("$binary", Value::String(STANDARD.encode(bytes))),
            Ejson::NonFinite(n) => tagged("$InfNaN", Value::from(n.sign())),
            Ejson::Regexp { source, flags } => {
                let mut map = Map::with_capacity(2);
                map.insert("$regexp".to_owned(), Value::String(source.clone()));
                map.insert("$flags".to_owned(), Value::String(flags.clone()));
                Value::Object(map)
            }
        }
    }

    /// Encodes this value as compact EJSON text (Meteor's `EJSON.stringify`).
    pub fn to_json_string(&self) -> String {
        self.to_json().to_string()
    }
}

/// Whether a literal object would be mistaken for a tagged value when decoded.
fn needs_escape(map: &EjsonMap) -> bool {
    Tag::of_keys(map.keys().map(String::as_str)).is_some()
}

/// A one-key object `{key: value}`.
fn tagged(key: &str, value: Value) -> Value {
    let mut map = Map::with_capacity(1);
    map.insert(key.to_owned(), value);
    Value::Object(map)
}

/// A date's milliseconds: an integer when integral, otherwise the float itself;
/// `null` for a non-finite date (what `JSON.stringify` makes of an invalid `Date`).
fn millis_number(ms: f64) -> Value {
    if ms.fract() == 0.0 && ms.abs() <= MAX_SAFE_INTEGER {
        // Exact: `ms` is integral and within the range where i64 and f64 agree.
        Value::Number(Number::from(ms as i64))
    } else {
        Number::from_f64(ms).map_or(Value::Null, Value::Number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::NonFinite;
    use serde_json::json;

    fn object(pairs: Vec<(&str, Ejson)>) -> Ejson {
        pairs.into_iter().collect()
    }

    #[test]
    fn tagged_types() {
        assert_eq!(
            Ejson::Date(1424908800000.0).to_json(),
            json!({"$date": 1424908800000_i64})
        );
        assert_eq!(Ejson::Date(1.5).to_json(), json!({"$date": 1.5}));
        assert_eq!(Ejson::Date(-0.0).to_json().to_string(), r#"{"$date":0}"#);
        assert_eq!(Ejson::Date(f64::NAN).to_json(), json!({"$date": null}));
        assert_eq!(
            Ejson::Binary(b"a".to_vec()).to_json(),
            json!({"$binary": "YQ=="})
        );
        assert_eq!(
            Ejson::Binary(vec![0xfb, 0xff]).to_json(),
            json!({"$binary": "+/8="})
        );
        assert_eq!(
            Ejson::NonFinite(NonFinite::NaN).to_json(),
            json!({"$InfNaN": 0})
        );
        assert_eq!(
            Ejson::NonFinite(NonFinite::Infinity).to_json(),
            json!({"$InfNaN": 1})
        );
        assert_eq!(
            Ejson::NonFinite(NonFinite::NegInfinity).to_json(),
            json!({"$InfNaN": -1})
        );
        assert_eq!(
            Ejson::Regexp {
                source: "^a".to_owned(),
                flags: "g".to_owned()
            }
            .to_json_string(),
            r#"{"$regexp":"^a","$flags":"g"}"#
        );
    }

    #[test]
    fn objects_that_look_tagged_are_escaped() {
        // The spec §2 example, produced from the value it denotes.
        assert_eq!(
            object(vec![("$date", Ejson::Date(32491.0))]).to_json(),
            json!({"$escape": {"$date": {"$date": 32491}}})
        );
        assert_eq!(
            object(vec![("$type", Ejson::from("x")), ("$value", Ejson::Null)]).to_json(),
            json!({"$escape": {"$type": "x", "$value": null}})
        );
        assert_eq!(
            object(vec![("$escape", object(vec![]))]).to_json(),
            json!({"$escape": {"$escape": {}}})
        );
    }

    #[test]
    fn other_objects_are_not_escaped() {
        assert_eq!(
            object(vec![("$foo", Ejson::Null)]).to_json(),
            json!({"$foo": null})
        );
        assert_eq!(
            object(vec![("$date", Ejson::Null), ("x", Ejson::Null)]).to_json(),
            json!({"$date": null, "x": null})
        );
        assert_eq!(object(vec![]).to_json(), json!({}));
    }

    #[test]
    fn nested_values_and_order() {
        let value = object(vec![
            ("z", Ejson::Array(vec![Ejson::Date(1.0), Ejson::from("s")])),
            ("a", Ejson::from(1_i64)),
        ]);
        assert_eq!(value.to_json_string(), r#"{"z":[{"$date":1},"s"],"a":1}"#);
    }
}
