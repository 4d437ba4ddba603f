//! The store contract of `exosphere-catalog` (its `conformance` module), run on PostgreSQL.

mod common;

use std::sync::{Arc, Mutex};

use common::TestDatabase;
use exosphere_catalog::CatalogStore;
use exosphere_catalog_postgres::open_postgres;

/// Fresh stores, each in a database of its own; the databases are dropped when the
/// factory is dropped at the end of the test.
fn temp_stores() -> impl Fn() -> Arc<dyn CatalogStore> {
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

exosphere_catalog::conformance_tests!(temp_stores());
