//! The in-memory EJSON value model.
//!
//! [`Ejson`] is JSON's data model plus the tagged types of spec §2 (Date, Binary,
//! NaN/±Infinity, RegExp). Objects keep their key order ([`EjsonMap`] is an insertion
//! ordered map) because EJSON tries to preserve it. Equality follows `EJSON.equals`:
//! NaN equals NaN and object comparison ignores key order.

use indexmap::IndexMap;
use serde_json::Number;

/// An EJSON object: keys in insertion order, as EJSON preserves them.
pub type EjsonMap = IndexMap<String, Ejson>;

/// One EJSON value: a JSON value or one of EJSON's tagged types.
#[derive(Debug, Clone)]
pub enum Ejson {
    /// JSON `null`.
    Null,
    /// JSON `true` / `false`.
    Bool(bool),
    /// A finite JSON number (non-finite numbers are [`Ejson::NonFinite`]).
    Number(Number),
    /// A JSON string.
    String(String),
    /// A JSON array.
    Array(Vec<Ejson>),
    /// A JSON object whose keys are literal (never interpreted as tags).
    Object(EjsonMap),
    /// A JavaScript `Date`: milliseconds since the Unix epoch (`{"$date": ms}`).
    Date(f64),
    /// Binary data (`{"$binary": "<base64>"}`).
    Binary(Vec<u8>),
    /// NaN, +Infinity or -Infinity (`{"$InfNaN": 0 | 1 | -1}`), which plain JSON cannot carry.
    NonFinite(NonFinite),
    /// A JavaScript regular expression (`{"$regexp": source, "$flags": flags}`).
    Regexp {
        /// The pattern text, as `RegExp.prototype.source` returns it.
        source: String,
        /// The flags, already normalised to a subset of `gimuy` without repeats.
        flags: String,
    },
}

/// The three IEEE-754 values JSON numbers cannot represent.
///
/// A dedicated enum (instead of an `f64`) makes "an `$InfNaN` holding 5.0"
/// unrepresentable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NonFinite {
    /// Not-a-number (`{"$InfNaN": 0}`).
    NaN,
    /// Positive infinity (`{"$InfNaN": 1}`).
    Infinity,
    /// Negative infinity (`{"$InfNaN": -1}`).
    NegInfinity,
}

impl NonFinite {
    /// Classifies `value`, or returns `None` when it is finite.
    pub fn from_f64(value: f64) -> Option<Self> {
        if value.is_nan() {
            Some(Self::NaN)
        } else if value == f64::INFINITY {
            Some(Self::Infinity)
        } else if value == f64::NEG_INFINITY {
            Some(Self::NegInfinity)
        } else {
            None
        }
    }

    /// The floating-point value this stands for.
    pub fn to_f64(self) -> f64 {
        match self {
            Self::NaN => f64::NAN,
            Self::Infinity => f64::INFINITY,
            Self::NegInfinity => f64::NEG_INFINITY,
        }
    }

    /// The number carried by the `$InfNaN` wire form (0, 1 or -1).
    pub(crate) fn sign(self) -> i64 {
        match self {
            Self::NaN => 0,
            Self::Infinity => 1,
            Self::NegInfinity => -1,
        }
    }
}

impl Ejson {
    /// The string, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// The boolean, if this is a boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Self::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The number as `i64`, if this is an integral number in range.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Self::Number(n) => n.as_i64(),
            _ => None,
        }
    }

    /// The number as `f64`, including the non-finite values.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Number(n) => n.as_f64(),
            Self::NonFinite(n) => Some(n.to_f64()),
            _ => None,
        }
    }

    /// The elements, if this is an array.
    pub fn as_array(&self) -> Option<&[Ejson]> {
        match self {
            Self::Array(items) => Some(items),
            _ => None,
        }
    }

    /// The fields, if this is an object.
    pub fn as_object(&self) -> Option<&EjsonMap> {
        match self {
            Self::Object(map) => Some(map),
            _ => None,
        }
    }

    /// The value of field `key`, if this is an object that has it.
    pub fn get(&self, key: &str) -> Option<&Ejson> {
        self.as_object().and_then(|map| map.get(key))
    }

    /// Whether this is `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Self::Null)
    }
}

/// `EJSON.equals` semantics: NaN equals NaN (also for dates), objects compare as maps.
impl PartialEq for Ejson {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Null, Self::Null) => true,
            (Self::Bool(a), Self::Bool(b)) => a == b,
            (Self::Number(a), Self::Number(b)) => a == b,
            (Self::String(a), Self::String(b)) => a == b,
            (Self::Array(a), Self::Array(b)) => a == b,
            (Self::Object(a), Self::Object(b)) => a == b,
            (Self::Date(a), Self::Date(b)) => a == b || (a.is_nan() && b.is_nan()),
            (Self::Binary(a), Self::Binary(b)) => a == b,
            (Self::NonFinite(a), Self::NonFinite(b)) => a == b,
            (
                Self::Regexp { source, flags },
                Self::Regexp {
                    source: other_source,
                    flags: other_flags,
                },
            ) => source == other_source && flags == other_flags,
            _ => false,
        }
    }
}

impl From<bool> for Ejson {
    fn from(value: bool) -> Self {
        Self::Bool(value)
    }
}

impl From<i64> for Ejson {
    fn from(value: i64) -> Self {
        Self::Number(value.into())
    }
}

impl From<u64> for Ejson {
    fn from(value: u64) -> Self {
        Self::Number(value.into())
    }
}

/// Finite values become numbers; NaN and the infinities become [`Ejson::NonFinite`].
impl From<f64> for Ejson {
    fn from(value: f64) -> Self {
        match Number::from_f64(value) {
            Some(number) => Self::Number(number),
            None => NonFinite::from_f64(value).map_or(Self::Null, Self::NonFinite),
        }
    }
}

impl From<&str> for Ejson {
    fn from(value: &str) -> Self {
        Self::String(value.to_owned())
    }
}

impl From<String> for Ejson {
    fn from(value: String) -> Self {
        Self::String(value)
    }
}

impl From<Vec<Ejson>> for Ejson {
    fn from(value: Vec<Ejson>) -> Self {
        Self::Array(value)
    }
}

impl From<EjsonMap> for Ejson {
    fn from(value: EjsonMap) -> Self {
        Self::Object(value)
    }
}

/// Builds an object from `(key, value)` pairs, keeping their order.
impl<K: Into<String>> FromIterator<(K, Ejson)> for Ejson {
    fn from_iter<I: IntoIterator<Item = (K, Ejson)>>(iter: I) -> Self {
        Self::Object(iter.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_equals_nan() {
        assert_eq!(
            Ejson::NonFinite(NonFinite::NaN),
            Ejson::NonFinite(NonFinite::NaN)
        );
        assert_eq!(Ejson::Date(f64::NAN), Ejson::Date(f64::NAN));
        assert_ne!(Ejson::Date(1.0), Ejson::Date(2.0));
    }

    #[test]
    fn objects_compare_as_maps() {
        let a: Ejson = [("x", Ejson::from(1_i64)), ("y", Ejson::Null)]
            .into_iter()
            .collect();
        let b: Ejson = [("y", Ejson::Null), ("x", Ejson::from(1_i64))]
            .into_iter()
            .collect();
        assert_eq!(a, b);
    }

    #[test]
    fn different_variants_differ() {
        assert_ne!(Ejson::Null, Ejson::Bool(false));
        assert_ne!(Ejson::Date(0.0), Ejson::from(0_i64));
        assert_ne!(
            Ejson::Binary(b"a".to_vec()),
            Ejson::String("YQ==".to_owned())
        );
    }

    #[test]
    fn f64_conversion_classifies_non_finite_values() {
        assert_eq!(Ejson::from(1.5).as_f64(), Some(1.5));
        assert_eq!(
            Ejson::from(f64::NEG_INFINITY),
            Ejson::NonFinite(NonFinite::NegInfinity)
        );
        assert_eq!(Ejson::from(f64::NAN), Ejson::NonFinite(NonFinite::NaN));
        assert_eq!(NonFinite::from_f64(3.0), None);
        assert!(NonFinite::NaN.to_f64().is_nan());
    }

    #[test]
    fn accessors() {
        let value: Ejson = [
            ("name", Ejson::from("meteor")),
            ("ok", Ejson::from(true)),
            ("n", Ejson::from(7_i64)),
            ("list", Ejson::from(vec![Ejson::Null])),
        ]
        .into_iter()
        .collect();
        assert_eq!(value.get("name").and_then(Ejson::as_str), Some("meteor"));
        assert_eq!(value.get("ok").and_then(Ejson::as_bool), Some(true));
        assert_eq!(value.get("n").and_then(Ejson::as_i64), Some(7));
        assert_eq!(
            value.get("list").and_then(Ejson::as_array).map(<[_]>::len),
            Some(1)
        );
        assert!(value.get("missing").is_none());
        assert!(Ejson::Null.is_null());
        assert!(Ejson::from("x").get("x").is_none());
    }
}
