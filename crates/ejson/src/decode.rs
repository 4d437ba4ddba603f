//! Decoding: JSON value → [`Ejson`] (Meteor's `EJSON.fromJSONValue`, spec §2).
//!
//! Every object whose keys form a tagged shape ([`Tag`]) is converted; candidates that
//! match no converter (`{"$foo": 1}`) and all other objects stay literal, their values
//! decoded recursively. Deviations from Meteor's JavaScript, all stricter, never looser:
//! `$date`, `$InfNaN` must be numbers, `$regexp`/`$flags` strings, `$escape` must wrap an
//! object, `$binary` must be standard base64 (padding optional, as in Meteor's decoder).

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};

use crate::error::EjsonError;
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
        Decoded::deserialize(value)?.0
    }
}

/// Parses EJSON text (Meteor's `EJSON.parse`) in one pass, without an intermediate JSON
/// value.
pub fn parse(text: &str) -> Result<Ejson, EjsonError> {
    serde_json::from_str::<Decoded>(text)?.0
}

/// One EJSON value decoded while its JSON is parsed (spec §2), for parsers that read EJSON
/// fields straight out of a larger document (DDP frames).
///
/// A malformed tagged value is the `Err` inside, not a deserialization error: the parser
/// still reads the rest of its input, so invalid JSON anywhere stays a syntax error and
/// callers can tell it apart from invalid EJSON, as Meteor does (`Bad request` versus
/// `Parse error`).
#[derive(Debug)]
pub struct Decoded(pub Result<Ejson, EjsonError>);

impl<'de> Deserialize<'de> for Decoded {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let node = deserializer.deserialize_any(NodeVisitor)?;
        Ok(Decoded(node.and_then(Node::interpret)))
    }
}

/// A JSON value whose own object keys are not interpreted yet.
///
/// Whether an object is a tagged value depends on all of its keys, and `$escape` takes
/// its inner object's keys literally, so an object is decoded bottom-up: its values are
/// decoded, and its own shape is interpreted by whoever holds it.
enum Node {
    /// Anything but an object.
    Value(Ejson),
    /// An object other than `{"$escape": …}`: literal keys, decoded values.
    Map(EjsonMap),
    /// Exactly `{"$escape": inner}`, with `inner` still uninterpreted.
    Escape(Box<Node>),
}

impl Node {
    /// The value this node decodes to (`EJSON.fromJSONValue`).
    fn interpret(self) -> Result<Ejson, EjsonError> {
        match self {
            Node::Value(value) => Ok(value),
            Node::Map(map) => match Tag::of_keys(map.keys().map(String::as_str)) {
                Some(tag) => decode_tagged(tag, map),
                None => Ok(Ejson::Object(map)),
            },
            Node::Escape(inner) => inner.literal().map(Ejson::Object),
        }
    }

    /// The object this node is when its keys are taken literally (inside `$escape`).
    fn literal(self) -> Result<EjsonMap, EjsonError> {
        match self {
            Node::Map(map) => Ok(map),
            Node::Escape(inner) => Ok(EjsonMap::from([("$escape".to_owned(), inner.interpret()?)])),
            Node::Value(value) => Err(EjsonError::InvalidEscape(ejson_kind(&value))),
        }
    }
}

/// Reads one JSON value as a [`Node`]; malformed EJSON below it is the inner `Err`.
struct NodeVisitor;

impl<'de> DeserializeSeed<'de> for NodeVisitor {
    type Value = Result<Node, EjsonError>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Result<Node, EjsonError>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Ok(Node::Value(Ejson::Null)))
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Ok(Node::Value(Ejson::Null)))
    }

    fn visit_bool<E>(self, b: bool) -> Result<Self::Value, E> {
        Ok(Ok(Node::Value(Ejson::Bool(b))))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Self::Value, E> {
        Ok(Ok(Node::Value(Ejson::Number(n.into()))))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Self::Value, E> {
        Ok(Ok(Node::Value(Ejson::Number(n.into()))))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Self::Value, E> {
        // JSON numbers are finite; a non-finite one can only come from another deserializer.
        Ok(Ok(Node::Value(match Number::from_f64(n) {
            Some(number) => Ejson::Number(number),
            None => Ejson::NonFinite(NonFinite::from_f64(n).unwrap_or(NonFinite::NaN)),
        })))
    }

    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Ok(Node::Value(Ejson::String(s.to_owned()))))
    }

    fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
        Ok(Ok(Node::Value(Ejson::String(s))))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(node) = seq.next_element_seed(NodeVisitor)? {
            match node.and_then(Node::interpret) {
                Ok(item) => items.push(item),
                Err(error) => {
                    while seq.next_element::<IgnoredAny>()?.is_some() {}
                    return Ok(Err(error));
                }
            }
        }
        Ok(Ok(Node::Value(Ejson::Array(items))))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut map = EjsonMap::new();
        // A leading `$escape` stays uninterpreted until another key shows the object is
        // not `{"$escape": …}` after all.
        let mut escape = None;
        while let Some(key) = access.next_key::<String>()? {
            let node = access.next_value_seed(NodeVisitor)?;
            let decoded = node.and_then(|node| {
                if key == "$escape" && map.is_empty() {
                    escape = Some(node);
                    return Ok(());
                }
                if let Some(pending) = escape.take() {
                    map.insert("$escape".to_owned(), pending.interpret()?);
                }
                map.insert(key, node.interpret()?);
                Ok(())
            });
            if let Err(error) = decoded {
                while access.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                return Ok(Err(error));
            }
        }
        Ok(Ok(match escape {
            Some(inner) => Node::Escape(Box::new(inner)),
            None => Node::Map(map),
        }))
    }
}

/// A short name of the JSON type a decoded value had on the wire, for error messages.
fn ejson_kind(value: &Ejson) -> &'static str {
    match value {
        Ejson::Null => "null",
        Ejson::Bool(_) => "a boolean",
        Ejson::Number(_) => "a number",
        Ejson::String(_) => "a string",
        Ejson::Array(_) => "an array",
        Ejson::Object(_)
        | Ejson::Date(_)
        | Ejson::Binary(_)
        | Ejson::NonFinite(_)
        | Ejson::Regexp { .. } => "an object",
    }
}

/// Converts an object already known to have the shape of `tag`; its values are decoded.
fn decode_tagged(tag: Tag, mut map: EjsonMap) -> Result<Ejson, EjsonError> {
    let mut take = |key: &str| map.shift_remove(key).unwrap_or(Ejson::Null);
    match tag {
        Tag::Date => match take("$date") {
            Ejson::Number(n) => Ok(Ejson::Date(n.as_f64().unwrap_or(f64::NAN))),
            other => Err(EjsonError::InvalidDate(ejson_kind(&other))),
        },
        Tag::Regexp => match (take("$regexp"), take("$flags")) {
            (Ejson::String(source), Ejson::String(flags)) => Ok(Ejson::Regexp {
                source,
                flags: normalize_flags(&flags),
            }),
            _ => Err(EjsonError::InvalidRegexp),
        },
        Tag::InfNaN => match take("$InfNaN") {
            Ejson::Number(n) => Ok(Ejson::NonFinite(infnan_from_sign(
                n.as_f64().unwrap_or(0.0),
            ))),
            other => Err(EjsonError::InvalidInfNaN(ejson_kind(&other))),
        },
        Tag::Binary => match take("$binary") {
            Ejson::String(text) => BASE64_LENIENT
                .decode(text.as_bytes())
                .map(Ejson::Binary)
                .map_err(|e| EjsonError::InvalidBinary(e.to_string())),
            other => Err(EjsonError::InvalidBinary(format!(
                "found {}",
                ejson_kind(&other)
            ))),
        },
        // The decoder hands `{"$escape": …}` over as `Node::Escape`; a map of that shape
        // has its inner object decoded already.
        Tag::Escape => match take("$escape") {
            Ejson::Object(inner) => Ok(Ejson::Object(inner)),
            other => Err(EjsonError::InvalidEscape(ejson_kind(&other))),
        },
        Tag::Custom => Err(EjsonError::UnknownCustomType(
            take("$type").to_json().to_string(),
        )),
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
    fn nested_escapes_take_one_level_literally() {
        // An escape inside an escape: the inner `$escape` key is literal, its value decoded.
        assert_eq!(
            decode(json!({"$escape": {"$escape": {"$date": 1}}})),
            object(vec![("$escape", Ejson::Date(1.0))])
        );
        // Not an escape (two keys): the inner escape is one, its `$date` key literal.
        assert_eq!(
            decode(json!({"$escape": {"$escape": {"$date": 1}}, "x": 2})),
            object(vec![
                ("$escape", object(vec![("$date", Ejson::from(1_i64))])),
                ("x", Ejson::from(2_i64))
            ])
        );
        assert!(matches!(
            Ejson::from_json(json!({"$escape": {"$date": 1}, "$escape": 5})),
            Err(EjsonError::InvalidEscape("a number"))
        ));
    }

    #[test]
    fn one_pass_parsing_tells_syntax_from_ejson_errors() {
        // Invalid EJSON early, invalid JSON later: the text is not JSON.
        assert!(matches!(
            parse(r#"[{"$date": "x"}, {"a": }]"#),
            Err(EjsonError::Json(_))
        ));
        let decoded: Result<Decoded, _> =
            serde_json::from_str(r#"{"a": [{"$binary": 1}, 2], "b": 3}"#);
        assert!(matches!(
            decoded,
            Ok(Decoded(Err(EjsonError::InvalidBinary(_))))
        ));
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
