//! The 2015 catalog fixture (`shared/fixtures/meteor-2015-catalog.ndjson`) in PostgreSQL and in
//! SQLite: the same dump exports byte-identical from both, and a full sync sends the same
//! records in the same pages.

mod common;

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;

use common::TestDatabase;
use exosphere_catalog::dump::{export, import};
use exosphere_catalog::{CatalogStore, Paging, sync_new_package_data};
use exosphere_catalog_postgres::open_postgres;
use exosphere_catalog_sqlite::open_sqlite;
use serde_json::{Value, json};

fn fixture() -> BufReader<File> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/meteor-2015-catalog.ndjson");
    BufReader::new(File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

fn export_bytes(store: &dyn CatalogStore) -> Vec<u8> {
    let mut out = Vec::new();
    export(store, &mut out).unwrap();
    out
}

/// The `collections` of every page of a full sync from the start (tokens differ between
/// stores: they carry the epoch).
fn full_sync(store: &dyn CatalogStore) -> Vec<Value> {
    let mut token = json!({"format": "1.1"});
    let mut pages = Vec::new();
    loop {
        let text = sync_new_package_data(store, &token, &json!({}), &Paging::default()).unwrap();
        let result: Value = serde_json::from_str(&text).unwrap();
        pages.push(result["collections"].clone());
        token = result["syncToken"].clone();
        if result["upToDate"] == true {
            return pages;
        }
    }
}

#[test]
fn the_fixture_exports_and_syncs_the_same_from_both_backends() {
    let database = TestDatabase::new();
    let postgres = open_postgres(database.url()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = open_sqlite(dir.path()).unwrap();
    let imported = import(&postgres, fixture()).unwrap();
    assert_eq!(imported, import(&sqlite, fixture()).unwrap());
    assert_eq!(
        postgres.state().unwrap().head_seq,
        sqlite.state().unwrap().head_seq
    );
    assert_eq!(export_bytes(&postgres), export_bytes(&sqlite));
    let pages = full_sync(&postgres);
    assert!(pages.len() > 1, "the fixture takes several pages");
    assert_eq!(pages, full_sync(&sqlite));
}
