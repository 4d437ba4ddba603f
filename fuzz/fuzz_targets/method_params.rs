//! The parameters of the publishing methods (EJSON, as the DDP layer hands them over):
//! read as the methods read them, and the record parameter checked against the fields of
//! `createPackageVersion`, `changeVersionMetadata` and `createReleaseVersion` (dependency
//! constraints included). A record that passes passes again after a JSON round trip, and
//! holds only fields the table names.
#![no_main]

use exosphere::service::fields::{
    Check, METADATA_FIELDS, RELEASE_FIELDS, VERSION_FIELDS, check_fields,
};
use exosphere::service::params::{object_param, plain_params, string_field, string_param};
use exosphere_ejson::{Ejson, parse};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

/// The record checked against one method's fields, and again after a round trip.
fn check(record: &Map<String, Value>, fields: &[(&str, Check)]) {
    let first = check_fields(record, fields, &[], "a record").is_ok();
    let text = serde_json::to_string(record).expect("a record encodes");
    let again: Map<String, Value> = serde_json::from_str(&text).expect("a record decodes");
    assert_eq!(
        check_fields(&again, fields, &[], "a record").is_ok(),
        first,
        "{text}"
    );
    if first {
        for key in record.keys() {
            assert!(fields.iter().any(|(name, _)| name == key), "{key:?} passed");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(Ejson::Array(params)) = parse(text) else {
        return;
    };
    let params = plain_params(params);
    let _ = string_param(&params, 1, "the version");
    let Ok(record) = object_param(&params, 0, "the record") else {
        return;
    };
    let _ = string_field(&record, "packageName");
    for fields in [VERSION_FIELDS, METADATA_FIELDS, RELEASE_FIELDS] {
        check(&record, fields);
    }
});
