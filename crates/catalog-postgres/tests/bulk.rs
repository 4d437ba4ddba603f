//! Copies between PostgreSQL and SQLite in both directions (the bulk-copy contract on one
//! backend runs in `conformance.rs`).

mod common;

use common::TestDatabase;
use exosphere_catalog::bulk::{copy, verify};
use exosphere_catalog::conformance::bulk::{fill, rows};
use exosphere_catalog_postgres::open_postgres;
use exosphere_catalog_sqlite::open_sqlite;

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
