//! Decoding: JSON value → [`Ejson`] (Meteor's `EJSON.fromJSONValue`, spec §2).
//!
//! Every object whose keys form a tagged shape ([`Tag`]) is converted; candidates that
//! match no converter (`{"$foo": 1}`) and all other objects stay literal, their values
//! decoded recursively. Deviations from Meteor's JavaScript, all stricter, never looser:
//! `$date`, `$InfNaN` must be numbers, `$regexp`/`$flags` strings, `$escape` must wrap an
//! object, `$binary` must be standard base64 (padding optional, as in Meteor's decoder).

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Map, Value};

use crate::error::{EjsonError, json_kind};
use crate::tag::Tag;
use crate::value::{Ejson, EjsonMap, NonFinite};

/// Standard-alphabet base64 that accepts input with or without `=` padding.
const BASE64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Meteor keeps at most this many UTF-16 code units of a RegExp's flags.
const MAX_FLAGS_UTF16_LEN: usize = 50;

impl Ejson {
    /// Decodes a JSON value with EJSON's rules (spec §2).
    ///
    /// Fails on malformed tagged values and on any `{"$type", "$value"}` object, because
    /// no custom types are registered (Meteor throws "Custom EJSON type … is not defined").
    pub fn from_json(value: Value) -> Result<Ejson, EjsonError> {
        Ok(match value {
            Value::Null => Ejson::Null,
            Value::Bool(b) => Ejson::Bool(b),
            Value::Number(n) => Ejson::Number(n),
            Value::String(s) => Ejson::String(s),
            Value::Array(items) => Ejson::Array(
                items
                    .into_iter()
                    .map(Ejson::from_json)
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => match Tag::of_keys(map.keys().map(String::as_str)) {
                Some(tag) => decode_tagged(tag, map)?,
                None => Ejson::Object(decode_fields(map)?),
            },
        })
    }
}

/// Parses EJSON text (Meteor's `EJSON.parse`).
pub fn parse(text: &str) -> Result<Ejson, EjsonError> {
    Ejson::from_json(serde_json::from_str(text)?)
}

/// Decodes every value of an object whose keys are literal.
fn decode_fields(map: Map<String, Value>) -> Result<EjsonMap, EjsonError> {
    map.into_iter()
        .map(|(key, value)| Ok((key, Ejson::from_json(value)?)))
        .collect()
}

/// Converts an object already known to have the shape of `tag`.
fn decode_tagged(tag: Tag, mut map: Map<String, Value>) -> Result<Ejson, EjsonError> {
    let mut take = |key: &str| map.remove(key).unwrap_or(Value::Null);
    match tag {
        Tag::Date => match take("$date") {
            Value::Number(n) => Ok(Ejson::Date(n.as_f64().unwrap_or(f64::NAN))),
            other => Err(EjsonError::InvalidDate(json_kind(&other))),
        },
        Tag::Regexp => match (take("$regexp"), take("$flags")) {
            (Value::String(source), Value::String(flags)) => Ok(Ejson::Regexp {
                source,
                flags: normalize_flags(&flags),
            }),
            _ => Err(EjsonError::InvalidRegexp),
        },
        Tag::InfNaN => match take("$InfNaN") {
            Value::Number(n) => Ok(Ejson::NonFinite(infnan_from_sign(
                n.as_f64().unwrap_or(0.0),
            ))),
            other => Err(EjsonError::InvalidInfNaN(json_kind(&other))),
        },
        Tag::Binary => match take("$binary") {
            Value::String(text) => BASE64_LENIENT
                .decode(text.as_bytes())
                .map(Ejson::Binary)
                .map_err(|e| EjsonError::InvalidBinary(e.to_string())),
            other => Err(EjsonError::InvalidBinary(format!(
                "found {}",
                json_kind(&other)
            ))),
        },
        Tag::Escape => match take("$escape") {
            Value::Object(inner) => Ok(Ejson::Object(decode_fields(inner)?)),
            other => Err(EjsonError::InvalidEscape(json_kind(&other))),
        },
        Tag::Custom => Err(EjsonError::UnknownCustomType(take("$type").to_string())),
    }
}

/// Meteor decodes `{"$InfNaN": x}` as `x / 0`.
fn infnan_from_sign(sign: f64) -> NonFinite {
    if sign > 0.0 {
        NonFinite::Infinity
    } else if sign < 0.0 {
        NonFinite::NegInfinity
    } else {
        NonFinite::NaN
    }
}

/// Normalises RegExp flags the way Meteor's decoder does: keep the first 50 UTF-16 code
/// units, drop everything but `gimuy`, and keep only the last occurrence of a repeat.
pub(crate) fn normalize_flags(flags: &str) -> String {
    let mut utf16_len = 0;
    let kept: Vec<char> = flags
        .chars()
        .take_while(|c| {
            utf16_len += c.len_utf16();
            utf16_len <= MAX_FLAGS_UTF16_LEN
        })
        .filter(|c| "gimuy".contains(*c))
        .collect();
    kept.iter()
        .enumerate()
        .filter(|(i, c)| !kept[i + 1..].contains(c))
        .map(|(_, c)| *c)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(value: Value) -> Ejson {
        match Ejson::from_json(value) {
            Ok(ejson) => ejson,
            Err(e) => panic!("decode failed: {e}"),
        }
    }

    fn object(pairs: Vec<(&str, Ejson)>) -> Ejson {
        pairs.into_iter().collect()
    }

    #[test]
    fn plain_json_is_unchanged() {
        assert_eq!(
            decode(json!({"a": [1, "x", null, true, 2.5], "b": {"c": {}}})),
            object(vec![
                (
                    "a",
                    Ejson::Array(vec![
                        Ejson::from(1_i64),
                        Ejson::from("x"),
                        Ejson::Null,
                        Ejson::Bool(true),
                        Ejson::from(2.5),
                    ])
                ),
                ("b", object(vec![("c", object(vec![]))])),
            ])
        );
    }

    #[test]
    fn date() {
        assert_eq!(
            decode(json!({"$date": 1424908800000_i64})),
            Ejson::Date(1.4249088e12)
        );
        assert_eq!(decode(json!({"$date": -1.5})), Ejson::Date(-1.5));
        assert!(matches!(
            Ejson::from_json(json!({"$date": "2015-02-26"})),
            Err(EjsonError::InvalidDate("a string"))
        ));
    }

    #[test]
    fn binary() {
        assert_eq!(
            decode(json!({"$binary": "AQID"})),
            Ejson::Binary(vec![1, 2, 3])
        );
        assert_eq!(
            decode(json!({"$binary": "YQ=="})),
            Ejson::Binary(b"a".to_vec())
        );
        assert_eq!(
            decode(json!({"$binary": "YQ"})),
            Ejson::Binary(b"a".to_vec())
        );
        assert_eq!(decode(json!({"$binary": ""})), Ejson::Binary(vec![]));
        for bad in [
            json!({"$binary": "a-b_"}),
            json!({"$binary": "Y Q=="}),
            json!({"$binary": 5}),
        ] {
            assert!(
                matches!(
                    Ejson::from_json(bad.clone()),
                    Err(EjsonError::InvalidBinary(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn infnan() {
        assert_eq!(
            decode(json!({"$InfNaN": 0})),
            Ejson::NonFinite(NonFinite::NaN)
        );
        assert_eq!(
            decode(json!({"$InfNaN": 1})),
            Ejson::NonFinite(NonFinite::Infinity)
        );
        assert_eq!(
            decode(json!({"$InfNaN": -1})),
            Ejson::NonFinite(NonFinite::NegInfinity)
        );
        assert_eq!(
            decode(json!({"$InfNaN": 7.5})),
            Ejson::NonFinite(NonFinite::Infinity)
        );
        assert!(matches!(
            Ejson::from_json(json!({"$InfNaN": null})),
            Err(EjsonError::InvalidInfNaN("null"))
        ));
    }

    #[test]
    fn regexp() {
        assert_eq!(
            decode(json!({"$regexp": "a+b", "$flags": "gi"})),
            Ejson::Regexp {
                source: "a+b".to_owned(),
                flags: "gi".to_owned()
            }
        );
        assert_eq!(
            decode(json!({"$flags": "", "$regexp": ""})),
            Ejson::Regexp {
                source: String::new(),
                flags: String::new()
            }
        );
        assert!(matches!(
            Ejson::from_json(json!({"$regexp": 1, "$flags": ""})),
            Err(EjsonError::InvalidRegexp)
        ));
    }

    #[test]
    fn regexp_flags_are_normalised() {
        assert_eq!(normalize_flags("gim"), "gim");
        assert_eq!(normalize_flags("gig"), "ig");
        assert_eq!(normalize_flags("xsgdy"), "gy");
        let long = format!("{}u", "x".repeat(50));
        assert_eq!(normalize_flags(&long), "");
        let astral = format!("{}g", "😀".repeat(25));
        assert_eq!(normalize_flags(&astral), "");
        let astral = format!("{}g", "😀".repeat(24));
        assert_eq!(normalize_flags(&astral), "g");
    }

    #[test]
    fn escape_makes_one_level_literal() {
        // The spec §2 example: the key `$date` maps to a Date.
        assert_eq!(
            decode(json!({"$escape": {"$date": {"$date": 32491}}})),
            object(vec![("$date", Ejson::Date(32491.0))])
        );
        assert_eq!(
            decode(json!({"$escape": {"$type": "x", "$value": 1}})),
            object(vec![
                ("$type", Ejson::from("x")),
                ("$value", Ejson::from(1_i64))
            ])
        );
        assert!(matches!(
            Ejson::from_json(json!({"$escape": [1]})),
            Err(EjsonError::InvalidEscape("an array"))
        ));
    }

    #[test]
    fn custom_types_are_rejected() {
        let err = Ejson::from_json(json!({"$type": "oid", "$value": "abc"}));
        assert!(matches!(err, Err(EjsonError::UnknownCustomType(ref t)) if t == "\"oid\""));
        assert!(Ejson::from_json(json!([{"a": {"$value": 1, "$type": 2}}])).is_err());
    }

    #[test]
    fn non_matching_candidates_pass_through_with_values_decoded() {
        assert_eq!(
            decode(json!({"$foo": 1})),
            object(vec![("$foo", Ejson::from(1_i64))])
        );
        assert_eq!(
            decode(json!({"$date": 1, "$bar": {"$date": 2}})),
            object(vec![
                ("$date", Ejson::from(1_i64)),
                ("$bar", Ejson::Date(2.0))
            ])
        );
        assert_eq!(
            decode(json!({"$date": 1, "x": 2})),
            object(vec![
                ("$date", Ejson::from(1_i64)),
                ("x", Ejson::from(2_i64))
            ])
        );
        assert_eq!(
            decode(json!({"$type": "t"})),
            object(vec![("$type", Ejson::from("t"))])
        );
    }

    #[test]
    fn key_order_is_preserved() {
        let decoded = decode(json!({"z": 1, "a": 2, "m": 3}));
        let keys: Vec<&str> = decoded
            .as_object()
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(keys, ["z", "a", "m"]);
    }

    #[test]
    fn parse_text() {
        assert_eq!(
            parse(r#"[{"$date": 5}, "s"]"#).ok(),
            Some(Ejson::Array(vec![Ejson::Date(5.0), Ejson::from("s")]))
        );
        assert!(matches!(parse("{"), Err(EjsonError::Json(_))));
        assert!(matches!(
            parse(r#"{"$date": "x"}"#),
            Err(EjsonError::InvalidDate(_))
        ));
    }
}
