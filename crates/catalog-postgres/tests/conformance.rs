//! The store contract of `exosphere-catalog` (its `conformance` module), run on PostgreSQL:
//! the store's and the bulk copy's, and the store's again with sync pages read from a local
//! replica (`serve --sync-replica`, the default).

mod common;

use std::sync::{Arc, Mutex};

use common::TestDatabase;
use exosphere_catalog::CatalogStore;
use exosphere_catalog::bulk::BulkStore;
use exosphere_catalog_postgres::{PgStore, open_postgres};
use exosphere_catalog_sqlite::replica::SqliteReplica;

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

/// Fresh stores as [`temp_stores`] makes them, each reading sync pages from a replica in a
/// temporary directory of its own.
fn temp_replicated_stores() -> impl Fn() -> Arc<dyn CatalogStore> {
    let owned = Mutex::new(Vec::new());
    move || {
        let database = TestDatabase::new();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let replica = SqliteReplica::open(&dir.path().join("sync-replica.sqlite3"))
            .expect("a fresh replica opens");
        let store = open_postgres(database.url())
            .and_then(|store| store.with_sync_replica(Box::new(replica)))
            .expect("a fresh store takes its replica");
        owned
            .lock()
            .expect("no test panicked holding the list")
            .push((database, dir));
        Arc::new(store)
    }
}

exosphere_catalog::conformance_tests!(temp_stores(|store| -> Arc<dyn CatalogStore> {
    Arc::new(store)
}));

exosphere_catalog::bulk_conformance_tests!(temp_stores(|store| -> Arc<dyn BulkStore> {
    Arc::new(store)
}));

/// The store contract with sync pages read from a replica.
mod with_sync_replica {
    use super::temp_replicated_stores;

    exosphere_catalog::conformance_tests!(temp_replicated_stores());
}
