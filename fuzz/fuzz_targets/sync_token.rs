//! `syncNewPackageData(token, options)` (spec §3), as the server answers it from a small
//! catalog (the input is the JSON array of the call's parameters). Every answer is one
//! JSON object with the keys the tool reads, its pages hold at most a page of records, and
//! the token it hands back resumes without a reset: a client that sends back what it got
//! never loops or starts over.
#![no_main]

use std::sync::OnceLock;

use exosphere_catalog::{Paging, SyncError, dump, sync_new_package_data};
use exosphere_catalog_sqlite::{SqliteStore, open_sqlite};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// Records per collection per page: the catalog below has more versions than that, so
/// paging, resuming and the short pages of `shortPagesForTest` are all reached.
const PAGING: Paging = Paging {
    page_size: 3,
    short_page_size: 2,
    page_bytes: exosphere_catalog::sync::DEFAULT_PAGE_BYTES,
};

/// The catalog every call reads (`fuzz/catalog.ndjson`): one package with five versions,
/// a build, a release and two stats rows.
const CATALOG: &str = include_str!("../catalog.ndjson");

/// The store, with the directory it lives in (kept until the process ends).
fn store() -> &'static SqliteStore {
    static STORE: OnceLock<(tempfile::TempDir, SqliteStore)> = OnceLock::new();
    &STORE
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let store = open_sqlite(dir.path()).expect("a store");
            dump::import(&store, CATALOG.as_bytes()).expect("the catalog imports");
            (dir, store)
        })
        .1
}

/// One call: the answer as JSON, checked for the keys and limits every answer keeps.
fn call(token: &Value, options: &Value) -> Option<Value> {
    let text = match sync_new_package_data(store(), token, options, &PAGING) {
        Ok(text) => text,
        Err(SyncError::BadToken(_)) => {
            assert!(!token.is_object(), "an object token is refused: {token}");
            return None;
        }
        Err(error) => panic!("{token} {options}: {error}"),
    };
    let answer: Value = serde_json::from_str(&text).expect("the answer is JSON");
    assert!(answer["syncToken"].is_object(), "{text}");
    assert!(answer["upToDate"].is_boolean() && answer["resetData"].is_boolean());
    match answer.get("collections") {
        Some(Value::Object(collections)) => {
            assert_eq!(collections.len(), 5, "{text}");
            for records in collections.values() {
                let records = records.as_array().expect("a collection is an array");
                assert!(records.len() <= PAGING.page_size, "{text}");
            }
        }
        _ => assert!(answer["collectionsCompressed"].is_string(), "{text}"),
    }
    Some(answer)
}

fuzz_target!(|data: &[u8]| {
    let Ok(params) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let (token, options) = match &params {
        Value::Array(params) => (
            params.first().cloned().unwrap_or(Value::Null),
            params.get(1).cloned().unwrap_or(Value::Null),
        ),
        token => (token.clone(), Value::Null),
    };
    let Some(mut answer) = call(&token, &options) else {
        return;
    };
    // The catalog has 9 records: a client following the tokens is up to date within
    // 9 calls, and never told to reset again.
    for _ in 0..9 {
        if answer["upToDate"] == Value::Bool(true) {
            return;
        }
        let next = answer["syncToken"].clone();
        answer = call(&next, &options).expect("a token the server made is accepted");
        assert_eq!(answer["resetData"], Value::Bool(false), "{next} resets");
    }
    panic!("not up to date after 9 calls from {token} {options}");
});
