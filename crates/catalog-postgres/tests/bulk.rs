//! Copies between PostgreSQL and SQLite in both directions (the bulk-copy contract on one
//! backend runs in `conformance.rs`).

mod common;

use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use common::TestDatabase;
use exosphere_catalog::bulk::{BulkStore as _, copy, verify};
use exosphere_catalog::conformance::bulk::{fill, rows};
use exosphere_catalog::conformance::store::{record, upsert};
use exosphere_catalog::conformance::with;
use exosphere_catalog::record::Record;
use exosphere_catalog::store::Lookup;
use exosphere_catalog::{CatalogStore as _, Collection, StoreError};
use exosphere_catalog_postgres::{open_postgres, open_postgres_existing};
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

/// A mirror's stage copied into PostgreSQL gets the key columns its records' text names, so
/// that a stage served after the copy is found by natural key like one staged there
/// (records moved from the stage keep the keys the stage holds).
#[test]
fn a_copied_stage_is_served_with_its_natural_keys() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = open_sqlite(dir.path()).unwrap();
    with(&sqlite, |w| {
        for (id, version) in [("v1", "1.0.0"), ("v2", "2.0.0")] {
            let text = format!(
                r#"{{"_id":"{id}","packageName":"a:b","version":"{version}","lastUpdated":{{"$date":7}}}}"#
            );
            w.mirror()
                .stage(&Record::from_json(Collection::Versions, &text).unwrap())?;
        }
        Ok(())
    });
    let database = TestDatabase::new();
    let postgres = open_postgres(database.url()).unwrap();
    copy(&sqlite, &postgres, &mut |_| {}).unwrap();
    with(&postgres, |w| {
        assert_eq!(w.mirror().serve_stage()?, Some(2));
        for (id, version) in [("v1", "1.0.0"), ("v2", "2.0.0")] {
            let found = w.find(&Lookup::Version {
                package: "a:b",
                version,
            })?;
            assert_eq!(found.len(), 1, "{version} is found by its key");
            assert!(found[0].contains(id), "{found:?}");
        }
        Ok(())
    });
}

/// How many sessions on `database` wait for a lock.
fn waiting_for_locks(database: &TestDatabase) -> i64 {
    postgres::Client::connect(database.url(), postgres::NoTls)
        .expect("the test database accepts connections")
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock'",
            &[],
        )
        .expect("pg_stat_activity is readable")
        .get(0)
}

/// A write of another server that waits for the meta row's lock behind a bulk load goes on
/// after the load as the next write of the loaded catalog (the load updates the meta row in
/// place, so the waiting writer finds it), a second load that waited beside it is refused
/// as not empty, and the load's commit wakes the servers' change listeners.
#[test]
fn writes_waiting_behind_a_load_go_on_after_it_and_a_second_load_is_refused() {
    let source_dir = tempfile::tempdir().unwrap();
    let source = open_sqlite(source_dir.path()).unwrap();
    fill(&source);
    let source_rows = rows(&source);
    let head = source.state().unwrap().head_seq;
    let database = TestDatabase::new();
    let (loader, writer, second) = (
        open_postgres(database.url()).unwrap(),
        open_postgres(database.url()).unwrap(),
        open_postgres(database.url()).unwrap(),
    );
    let (woken, wakes) = mpsc::channel();
    let _hints = writer
        .hint_changes(Arc::new(move || {
            let _ = woken.send(());
        }))
        .unwrap()
        .expect("PostgreSQL hints at changes");
    let patience = Duration::from_secs(10);
    wakes.recv_timeout(patience).expect("woken once listening");

    let (release, released) = mpsc::channel::<()>();
    let (locked, holding) = mpsc::channel::<()>();
    let first_rows = source_rows.clone();
    std::thread::scope(|scope| {
        let loading = scope.spawn(move || {
            let mut given = first_rows.into_iter();
            let mut first = true;
            // Called only once the load holds the meta row's lock.
            loader.load_rows(&mut || {
                if std::mem::take(&mut first) {
                    locked.send(()).expect("the test waits");
                    released.recv().expect("released");
                }
                Ok(given.next())
            })
        });
        holding.recv_timeout(patience).expect("the load starts");
        let writing = scope.spawn(|| upsert(&writer, &record(Collection::Packages, "later", "1")));
        let loading_again = scope.spawn(|| {
            let mut given = source_rows.clone().into_iter();
            second.load_rows(&mut || Ok(given.next()))
        });
        let started = Instant::now();
        while waiting_for_locks(&database) < 2 {
            assert!(started.elapsed() < patience, "the writers never waited");
            std::thread::sleep(Duration::from_millis(20));
        }
        release.send(()).unwrap();
        loading.join().unwrap().expect("the load commits");
        writing
            .join()
            .expect("the waiting write succeeds after the load");
        let refused = loading_again.join().unwrap().unwrap_err();
        assert!(matches!(refused, StoreError::NotEmpty(_)), "{refused:?}");
    });
    wakes
        .recv_timeout(patience)
        .expect("the load's commit notifies the listeners");
    assert_eq!(writer.state().unwrap().head_seq, head + 1);
}

/// Opening a source to read it writes nothing: an empty database is refused and stays
/// empty, a catalog of an older schema version is refused naming the upgrade and keeps its
/// version, one of a newer version is refused naming that, and a current one opens.
#[test]
fn a_source_is_opened_without_creating_or_upgrading_its_schema() {
    let database = TestDatabase::new();
    let tables = || -> i64 {
        postgres::Client::connect(database.url(), postgres::NoTls)
            .unwrap()
            .query_one(
                "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace",
                &[],
            )
            .unwrap()
            .get(0)
    };
    let refused = open_postgres_existing(database.url()).err().unwrap();
    assert!(
        refused.to_string().contains("holds no Exosphere catalog"),
        "{refused}"
    );
    assert_eq!(tables(), 0, "nothing was created");

    drop(open_postgres(database.url()).unwrap());
    let set_version = |version: i64| {
        postgres::Client::connect(database.url(), postgres::NoTls)
            .unwrap()
            .execute("UPDATE exosphere_schema SET version = $1", &[&version])
            .unwrap();
    };
    let version = || -> i64 {
        postgres::Client::connect(database.url(), postgres::NoTls)
            .unwrap()
            .query_one("SELECT version FROM exosphere_schema", &[])
            .unwrap()
            .get(0)
    };
    let current = version();
    set_version(current - 1);
    let refused = open_postgres_existing(database.url())
        .err()
        .unwrap()
        .to_string();
    assert!(
        refused.contains("upgrade it first") && refused.contains("exosphere user list"),
        "{refused}"
    );
    assert_eq!(version(), current - 1, "the source was not upgraded");
    set_version(current + 1);
    let refused = open_postgres_existing(database.url()).err().unwrap();
    assert!(
        matches!(refused, StoreError::SchemaTooNew { .. }),
        "{refused:?}"
    );
    set_version(current);
    assert!(open_postgres_existing(database.url()).is_ok());
}

/// The servers running on a database are counted by their seats, for `exosphere migrate`
/// to refuse a store that servers run on.
#[test]
fn the_servers_running_are_counted_by_their_seats() {
    let database = TestDatabase::new();
    let store = open_postgres(database.url()).unwrap();
    assert_eq!(store.servers_running().unwrap(), 0);
    let (first, second) = (store.join_servers().unwrap(), store.join_servers().unwrap());
    assert_eq!(store.servers_running().unwrap(), 2);
    drop((first, second));
    let started = Instant::now();
    while store.servers_running().unwrap() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the seats stay held"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every table and column of a PostgreSQL catalog is one `exosphere migrate` moves
/// (`bulk::TABLES`), or one of the backend's own listed here: the schema version, the
/// stage tables' written order (`ord`, kept by loading in that order) and the upload marks'
/// owner (`uploads.receiver`, a running server's, left NULL by a copy), and the natural keys
/// (`key1`, `key2` of the record and stage tables) a load derives from the moved record text.
#[test]
fn every_table_and_column_is_moved_by_a_copy_or_the_backends_own() {
    let database = TestDatabase::new();
    drop(open_postgres(database.url()).unwrap());
    let actual: Vec<(String, String)> = postgres::Client::connect(database.url(), postgres::NoTls)
        .unwrap()
        .query(
            "SELECT table_name::text, column_name::text FROM information_schema.columns \
                 WHERE table_schema = current_schema()",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    exosphere_catalog::conformance::bulk::assert_tables_are_moved(
        &actual,
        &[
            "exosphere_schema",
            "mirror_stage.ord",
            "mirror_stage_files.ord",
            "uploads.receiver",
            "rec_packages.key1",
            "rec_packages.key2",
            "rec_versions.key1",
            "rec_versions.key2",
            "rec_builds.key1",
            "rec_builds.key2",
            "rec_release_tracks.key1",
            "rec_release_tracks.key2",
            "rec_release_versions.key1",
            "rec_release_versions.key2",
            "mirror_stage.key1",
            "mirror_stage.key2",
        ],
    );
}

/// A record whose `_id` holds a real NUL character (`"a\u0000"`), which SQLite stores and
/// PostgreSQL cannot, stops a copy into PostgreSQL with an error naming the record, and
/// nothing is written.
#[test]
fn a_nul_in_a_record_id_is_refused_naming_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = open_sqlite(dir.path()).unwrap();
    let text = r#"{"_id":"nul\u0000id","name":"x"}"#;
    with(&sqlite, |w| {
        w.upsert(&Record::from_json(Collection::Packages, text).unwrap())
            .map(drop)
    });
    let database = TestDatabase::new();
    let postgres = open_postgres(database.url()).unwrap();
    let fresh = rows(&postgres);
    let refused = copy(&sqlite, &postgres, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains(r#"the rec_packages row seq = 1 holds a NUL character in id ("nul\0id")"#),
        "{refused}"
    );
    assert_eq!(rows(&postgres), fresh);
}
