//! Property tests of the EJSON codec (spec §2): encoding then decoding is the identity,
//! plain JSON without `$`-keys passes through untouched, and dates lower to the same
//! ISO-8601 text as an independent implementation (chrono) prints.

use exosphere_ejson::{Ejson, EjsonMap, NonFinite, parse, plain_json_text};
use proptest::prelude::*;
use serde_json::{Map, Number, Value};

/// Keys that exercise escaping: ordinary names, `$`-names, and every tag name.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{0,3}",
        "\\$[a-z]{0,3}",
        prop::sample::select(vec![
            "$date", "$regexp", "$flags", "$InfNaN", "$binary", "$escape", "$type", "$value",
        ])
        .prop_map(str::to_owned),
    ]
}

fn finite_f64() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("finite", |f| f.is_finite())
}

fn number() -> impl Strategy<Value = Number> {
    prop_oneof![
        any::<i64>().prop_map(Number::from),
        any::<u64>().prop_map(Number::from),
        finite_f64().prop_filter_map("finite", Number::from_f64),
    ]
}

/// Regexp flags as the decoder leaves them: distinct letters of `gimuy`.
fn flags() -> impl Strategy<Value = String> {
    prop::sample::subsequence(vec!['g', 'i', 'm', 'u', 'y'], 0..=5)
        .prop_shuffle()
        .prop_map(|chars| chars.into_iter().collect())
}

fn ejson() -> impl Strategy<Value = Ejson> {
    let leaf = prop_oneof![
        Just(Ejson::Null),
        any::<bool>().prop_map(Ejson::Bool),
        number().prop_map(Ejson::Number),
        any::<String>().prop_map(Ejson::String),
        prop_oneof![
            (-8_640_000_000_000_000_i64..=8_640_000_000_000_000).prop_map(|ms| ms as f64),
            finite_f64()
        ]
        .prop_map(Ejson::Date),
        prop::collection::vec(any::<u8>(), 0..24).prop_map(Ejson::Binary),
        prop::sample::select(vec![
            NonFinite::NaN,
            NonFinite::Infinity,
            NonFinite::NegInfinity
        ])
        .prop_map(Ejson::NonFinite),
        (any::<String>(), flags()).prop_map(|(source, flags)| Ejson::Regexp { source, flags }),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Ejson::Array),
            prop::collection::vec((key(), inner), 0..4)
                .prop_map(|pairs| Ejson::Object(pairs.into_iter().collect::<EjsonMap>())),
        ]
    })
}

/// Arbitrary JSON whose object keys never start with `$`.
fn dollar_free_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number().prop_map(Value::Number),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec(
                (
                    any::<String>().prop_filter("no $-key", |k| !k.starts_with('$')),
                    inner
                ),
                0..4
            )
            .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

proptest! {
    #[test]
    fn encode_then_decode_is_identity(value in ejson()) {
        let decoded = Ejson::from_json(value.to_json());
        prop_assert_eq!(decoded.ok(), Some(value.clone()));
        let reparsed = parse(&value.to_json_string());
        prop_assert_eq!(reparsed.ok(), Some(value));
    }

    #[test]
    fn dollar_free_json_is_unchanged(json in dollar_free_json()) {
        let text = json.to_string();
        let decoded = parse(&text);
        prop_assert_eq!(decoded.as_ref().ok().map(Ejson::to_json), Some(json.clone()));
        prop_assert_eq!(decoded.ok().map(|d| d.to_plain_json()), Some(json.clone()));
        prop_assert_eq!(plain_json_text(&text).ok(), Some(text));
    }

    #[test]
    fn plain_lowering_never_fails_on_encoded_values(value in ejson()) {
        let lowered = plain_json_text(&value.to_json_string());
        prop_assert_eq!(lowered.ok(), Some(value.to_plain_json().to_string()));
    }

    #[test]
    fn dates_lower_like_an_independent_formatter(
        ms in -62_167_219_200_000_i64..=253_402_300_799_999,
    ) {
        let expected = chrono::DateTime::from_timestamp_millis(ms)
            .map(|d| d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string());
        prop_assert_eq!(
            Ejson::Date(ms as f64).to_plain_json().as_str().map(str::to_owned),
            expected
        );
    }
}
