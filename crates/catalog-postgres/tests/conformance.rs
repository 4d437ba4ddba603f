//! The store contract of `exosphere-catalog` (its `conformance` module), run on PostgreSQL:
//! the store's and the bulk copy's.

mod common;

use std::sync::{Arc, Mutex};

use common::TestDatabase;
use exosphere_catalog::CatalogStore;
use exosphere_catalog::bulk::BulkStore;
use exosphere_catalog_postgres::{PgStore, open_postgres};

/// Fresh stores, each in a database of its own and handed out as `share` makes them
/// (`Arc<dyn CatalogStore>`, `Arc<dyn BulkStore>`); the databases are dropped when the
/// factory is dropped at the end of the test.
fn temp_stores<S: ?Sized>(share: fn(PgStore) -> Arc<S>) -> impl Fn() -> Arc<S> {
    let databases = Mutex::new(Vec::new());
    move || {
        let database = TestDatabase::new();
        let store = open_postgres(database.url()).expect("a fresh store opens");
        databases
            .lock()
            .expect("no test panicked holding the list")
            .push(database);
        share(store)
    }
}

exosphere_catalog::conformance_tests!(temp_stores(|store| -> Arc<dyn CatalogStore> {
    Arc::new(store)
}));

exosphere_catalog::bulk_conformance_tests!(temp_stores(|store| -> Arc<dyn BulkStore> {
    Arc::new(store)
}));
