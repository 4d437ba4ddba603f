//! The real-shaped 2015 catalog fixture (`shared/fixtures/meteor-2015-catalog.ndjson`):
//! import, idempotent re-import, byte-identical export round trip, error reporting on a
//! damaged copy, and a full sync through it with the default page size.

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;

use exosphere_catalog::dump::{DumpError, export, import};
use exosphere_catalog::{CatalogStore, Collection, Paging, sync_new_package_data};
use exosphere_catalog_sqlite::open_sqlite;
use serde_json::{Value, json};

fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/meteor-2015-catalog.ndjson")
}

fn fixture() -> BufReader<File> {
    let path = fixture_path();
    BufReader::new(File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

fn export_bytes(store: &dyn CatalogStore) -> Vec<u8> {
    let mut out = Vec::new();
    export(store, &mut out).unwrap();
    out
}

#[test]
fn fixture_imports_and_reimports_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_sqlite(dir.path()).unwrap();
    let summary = import(&store, fixture()).unwrap();
    let inserted = |c| summary.records[c].inserted;
    assert_eq!(inserted(Collection::Packages), 210);
    assert_eq!(inserted(Collection::Versions), 4039);
    assert_eq!(inserted(Collection::Builds), 4039);
    assert_eq!(inserted(Collection::ReleaseTracks), 1);
    assert_eq!(inserted(Collection::ReleaseVersions), 1);
    let state = store.state().unwrap();
    assert_eq!(state.head_seq, 210 + 4039 * 2 + 2);
    assert_eq!(state.changes(Collection::Versions), 4039);

    let again = import(&store, fixture()).unwrap();
    for (c, counts) in again.records.iter() {
        assert_eq!((counts.inserted, counts.updated), (0, 0), "{c}");
        assert_eq!(counts.unchanged, summary.records[c].inserted, "{c}");
    }
    assert_eq!(store.state().unwrap(), state);
}

#[test]
fn export_import_export_is_byte_identical() {
    let first_dir = tempfile::tempdir().unwrap();
    let first = open_sqlite(first_dir.path()).unwrap();
    import(&first, fixture()).unwrap();
    let stats = "{\"collection\":\"stats\",\"date\":\"2015-02-01\",\"doc\":{\"name\":\"iron:router\",\"version\":\"1.0.0\",\"directAdds\":200,\"totalAdds\":800}}\n";
    import(&first, stats.as_bytes()).unwrap();
    let exported = export_bytes(&first);

    let second_dir = tempfile::tempdir().unwrap();
    let second = open_sqlite(second_dir.path()).unwrap();
    let summary = import(&second, &exported[..]).unwrap();
    assert_eq!(summary.stats_rows, 1);
    assert_eq!(summary.records[Collection::Builds].inserted, 4039);
    assert!(export_bytes(&second) == exported, "re-export differs");
}

#[test]
fn damaged_fixture_names_the_line_and_stores_nothing() {
    let text = std::fs::read_to_string(fixture_path()).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let damaged_line = 1234;
    let cut = &lines[damaged_line - 1][..100];
    lines[damaged_line - 1] = cut;
    let damaged = lines.join("\n");

    let dir = tempfile::tempdir().unwrap();
    let store = open_sqlite(dir.path()).unwrap();
    let before = store.state().unwrap();
    let err = import(&store, damaged.as_bytes()).unwrap_err();
    assert!(matches!(err, DumpError::Line { line: 1234, .. }), "{err}");
    assert_eq!(store.state().unwrap(), before);
    assert!(export_bytes(&store).is_empty());

    // A half-written file: the last line is cut off.
    let truncated = &text.as_bytes()[..text.len() - 50];
    let err = import(&store, truncated).unwrap_err();
    let DumpError::Line { line, reason } = &err else {
        panic!("{err}")
    };
    assert_eq!(*line as usize, text.lines().count());
    assert!(reason.contains("truncated"), "{reason}");
    assert!(export_bytes(&store).is_empty());
}

#[test]
fn full_sync_of_the_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_sqlite(dir.path()).unwrap();
    import(&store, fixture()).unwrap();
    let mut token = json!({"format": "1.1"});
    let mut counts = [0usize; 5];
    let mut calls = 0;
    loop {
        let text = sync_new_package_data(&store, &token, &json!({}), &Paging::default()).unwrap();
        let result: Value = serde_json::from_str(&text).unwrap();
        calls += 1;
        assert_eq!(result["resetData"], false);
        for (i, c) in Collection::ALL.iter().enumerate() {
            let page = result["collections"][c.as_str()].as_array().unwrap();
            assert!(page.len() <= 500);
            counts[i] += page.len();
        }
        token = result["syncToken"].clone();
        if result["upToDate"] == true {
            break;
        }
    }
    assert_eq!(counts, [210, 4039, 4039, 1, 1]);
    assert_eq!(calls, 9);
    assert_eq!(token["format"], "1.1");
}
