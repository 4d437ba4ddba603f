//! The store contract of `exosphere-catalog` (its `conformance` module), run on SQLite: the
//! store's and the bulk copy's.

use std::sync::{Arc, Mutex};

use exosphere_catalog::CatalogStore;
use exosphere_catalog::bulk::BulkStore;
use exosphere_catalog_sqlite::{SqliteStore, open_sqlite};

/// Fresh stores, each in its own temporary directory and handed out as `share` makes them
/// (`Arc<dyn CatalogStore>`, `Arc<dyn BulkStore>`); the directories are deleted when the
/// factory is dropped at the end of the test.
fn temp_stores<S: ?Sized>(share: fn(SqliteStore) -> Arc<S>) -> impl Fn() -> Arc<S> {
    let dirs = Mutex::new(Vec::new());
    move || {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = open_sqlite(dir.path()).expect("a fresh store opens");
        dirs.lock()
            .expect("no test panicked holding the list")
            .push(dir);
        share(store)
    }
}

exosphere_catalog::conformance_tests!(temp_stores(|store| -> Arc<dyn CatalogStore> {
    Arc::new(store)
}));

exosphere_catalog::bulk_conformance_tests!(temp_stores(|store| -> Arc<dyn BulkStore> {
    Arc::new(store)
}));

/// Every table and column of a SQLite catalog is one `exosphere migrate` moves
/// (`bulk::TABLES`); SQLite keeps none of its own besides its internal `sqlite_` tables.
#[test]
fn every_table_and_column_is_moved_by_a_copy() {
    let dir = tempfile::tempdir().expect("temporary directory");
    drop(open_sqlite(dir.path()).expect("a fresh store opens"));
    let conn = rusqlite::Connection::open(dir.path().join(exosphere_catalog_sqlite::DATABASE_FILE))
        .expect("the catalog file opens");
    let mut columns = conn
        .prepare(
            "SELECT m.name, c.name FROM sqlite_master m, pragma_table_info(m.name) c \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'",
        )
        .expect("the query prepares");
    let actual: Vec<(String, String)> = columns
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .expect("the schema is readable")
        .collect::<Result<_, _>>()
        .expect("the schema is readable");
    exosphere_catalog::conformance::bulk::assert_tables_are_moved(&actual, &[]);
}
