//! The bulk-copy contract of `exosphere-catalog` (`conformance::bulk`), run on SQLite.

use std::sync::{Arc, Mutex};

use exosphere_catalog::bulk::BulkStore;
use exosphere_catalog_sqlite::open_sqlite;

/// Fresh stores, each in its own temporary directory; the directories are deleted when the
/// factory is dropped at the end of the test.
fn temp_stores() -> impl Fn() -> Arc<dyn BulkStore> {
    let dirs = Mutex::new(Vec::new());
    move || {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = open_sqlite(dir.path()).expect("a fresh store opens");
        dirs.lock()
            .expect("no test panicked holding the list")
            .push(dir);
        Arc::new(store)
    }
}

exosphere_catalog::bulk_conformance_tests!(temp_stores());
