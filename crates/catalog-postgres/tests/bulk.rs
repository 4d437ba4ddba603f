//! The bulk-copy contract of `exosphere-catalog` (`conformance::bulk`), run on PostgreSQL,
//! and copies between PostgreSQL and SQLite in both directions.

mod common;

use std::sync::{Arc, Mutex};

use common::TestDatabase;
use exosphere_catalog::bulk::{BulkStore, copy, verify};
use exosphere_catalog::conformance::bulk::{fill, rows};
use exosphere_catalog_postgres::open_postgres;
use exosphere_catalog_sqlite::open_sqlite;

/// Fresh stores, each in a database of its own; the databases are dropped when the
/// factory is dropped at the end of the test.
fn temp_stores() -> impl Fn() -> Arc<dyn BulkStore> {
    let databases = Mutex::new(Vec::new());
    move || {
        let database = TestDatabase::new();
        let store = open_postgres(database.url()).expect("a fresh store opens");
        databases
            .lock()
            .expect("no test panicked holding the list")
            .push(database);
        Arc::new(store)
    }
}

exosphere_catalog::bulk_conformance_tests!(temp_stores());

/// A catalog copied from SQLite into PostgreSQL and back into SQLite keeps every row of
/// every table byte for byte (the unusual texts, names that sort differently under a
/// language's collation than by bytes), and each copy reads the same sync pages.
#[test]
fn a_catalog_moves_from_sqlite_to_postgres_and_back_unchanged() {
    let (dir, back_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let sqlite = open_sqlite(dir.path()).unwrap();
    fill(&sqlite);
    let database = TestDatabase::new();
    let postgres = open_postgres(database.url()).unwrap();
    copy(&sqlite, &postgres, &mut |_| {}).unwrap();
    assert!(verify(&sqlite, &postgres).unwrap().is_ok());
    assert_eq!(rows(&postgres), rows(&sqlite));

    let back = open_sqlite(back_dir.path()).unwrap();
    copy(&postgres, &back, &mut |_| {}).unwrap();
    assert!(verify(&postgres, &back).unwrap().is_ok());
    assert_eq!(rows(&back), rows(&sqlite));
}
