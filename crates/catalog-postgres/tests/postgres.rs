//! What only the PostgreSQL backend has: several handles (servers) writing at once, the
//! schema created once by concurrent opens and upgraded under the rolling-deploy rule,
//! refusals at open, contention and storage trouble as errors, use from every kind of
//! thread a Tokio server calls it from, and what several servers share: seats, duties and
//! change hints.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::TestDatabase;
use exosphere_catalog::accounts::{ReceivingElsewhere, Upload, UploadState};
use exosphere_catalog::conformance::accounts::pending_publish;
use exosphere_catalog::conformance::store::{all, by_count, record, upsert};
use exosphere_catalog::conformance::with;
use exosphere_catalog::error::Storage;
use exosphere_catalog::replica::{ReplicaSink, SyncReplica};
use exosphere_catalog::store::{Cursors, Duty, Page, PageLimits, Snapshot};
use exosphere_catalog::{CatalogStore, Collection, Lookup, Record, StoreError};
use exosphere_catalog_postgres::{
    DUTY_LOCK_CLASS, PgOptions, PgStore, SERVER_LOCK_CLASS, open_postgres,
};
use exosphere_catalog_sqlite::replica::SqliteReplica;

/// A plain connection to `database`, as an operator's `psql` would be.
fn connect(database: &TestDatabase) -> postgres::Client {
    postgres::Client::connect(database.url(), postgres::NoTls)
        .expect("the test database accepts connections")
}

/// The server process ids of the stores' sessions on `database`.
fn sessions(database: &TestDatabase) -> Vec<i32> {
    connect(database)
        .query(
            "SELECT pid FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = 'exosphere'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// Pages `store` from the start until `done` is set and the store has nothing more, checking
/// that cursors only move forward; returns every record sent, in the order sent.
fn page_until_done(store: &PgStore, done: &AtomicBool) -> Vec<(Collection, String)> {
    let limits = PageLimits {
        records: 5,
        bytes: usize::MAX,
    };
    let mut cursors = Cursors::default();
    let mut seen = Vec::new();
    loop {
        let finished = done.load(Ordering::SeqCst);
        let page = store.read_page(&cursors, &limits).unwrap();
        for (c, records) in page.records.iter() {
            for r in records {
                assert!(r.seq > cursors[c], "cursors only move forward");
                assert!(r.seq <= page.head_seq, "no record beyond the head");
                cursors[c] = r.seq;
                seen.push((c, r.json.clone()));
            }
        }
        if finished && !page.has_more {
            return seen;
        }
    }
}

#[test]
fn concurrent_writers_never_let_readers_page_past_an_uncommitted_seq() {
    let database = TestDatabase::new();
    writers_never_let_readers_skip((0..2).map(|_| open(&database)).collect());
}

#[test]
fn concurrent_writers_never_let_readers_of_sync_replicas_page_past_an_uncommitted_seq() {
    let database = TestDatabase::new();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    writers_never_let_readers_skip(
        dirs.iter()
            .map(|dir| open_replicated(&database, dir.path()))
            .collect(),
    );
}

/// Two servers' `stores` on one database, each with two writers and two readers paging from
/// the start until the writers are done (a server's readers share its replica, if it has
/// one): every reader gets every record exactly once.
fn writers_never_let_readers_skip(stores: Vec<PgStore>) {
    const WRITERS: usize = 4;
    const WRITES: usize = 60;
    let done = AtomicBool::new(false);
    let seen: Vec<Vec<(Collection, String)>> = std::thread::scope(|scope| {
        let readers: Vec<_> = stores
            .iter()
            .chain(&stores)
            .map(|store| scope.spawn(|| page_until_done(store, &done)))
            .collect();
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let store = &stores[writer % 2];
                scope.spawn(move || {
                    for i in 0..WRITES {
                        // Transactions of one to three records in two collections, so
                        // commits of several sequence numbers interleave with single ones.
                        store
                            .write(&mut |w| {
                                for k in 0..=(i % 3) {
                                    let c = [Collection::Packages, Collection::Builds][k % 2];
                                    w.upsert(&record(c, &format!("w{writer}-{i}-{k}"), "1"))?;
                                }
                                Ok(())
                            })
                            .unwrap();
                    }
                })
            })
            .collect();
        // Readers stop even if a writer failed; the scope then reports that failure.
        let wrote: Vec<_> = writers.into_iter().map(|writer| writer.join()).collect();
        done.store(true, Ordering::SeqCst);
        assert!(wrote.iter().all(Result::is_ok), "every write committed");
        readers
            .into_iter()
            .map(|reader| reader.join().unwrap())
            .collect()
    });
    let everything: BTreeSet<_> = all(&stores[0]).into_iter().collect();
    let written = WRITERS * (0..WRITES).map(|i| i % 3 + 1).sum::<usize>();
    assert_eq!(everything.len(), written);
    for seen in seen {
        let unique: BTreeSet<_> = seen.iter().cloned().collect();
        assert_eq!(unique.len(), seen.len(), "no record was sent twice");
        assert_eq!(
            unique, everything,
            "the reader got every record, none skipped"
        );
    }
}

#[test]
fn synchronous_commit_off_is_refused_with_the_fix() {
    let database = TestDatabase::new();
    connect(&database)
        .batch_execute(&format!(
            "ALTER DATABASE {} SET synchronous_commit = off",
            database.name
        ))
        .unwrap();
    let error = open_postgres(database.url()).err().expect("refused");
    let message = error.to_string();
    assert!(message.contains("synchronous_commit = off"), "{message}");
    assert!(message.contains("SET synchronous_commit = on"), "{message}");
}

#[test]
fn a_connection_opened_after_commits_became_losable_is_refused() {
    let database = TestDatabase::new();
    // Open uses a connection of its own; the pool opens its first at the first call.
    let store = open_postgres(database.url()).unwrap();
    connect(&database)
        .batch_execute(&format!(
            "ALTER DATABASE {} SET synchronous_commit = off",
            database.name
        ))
        .unwrap();
    let error = store.state().unwrap_err();
    let message = error.to_string();
    assert!(message.contains("synchronous_commit = off"), "{message}");
}

#[test]
fn concurrent_first_opens_create_the_schema_once() {
    let database = TestDatabase::new();
    let barrier = Barrier::new(3);
    let epochs: Vec<String> = std::thread::scope(|scope| {
        let opens: Vec<_> = (0..3)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    open_postgres(database.url())
                        .unwrap()
                        .state()
                        .unwrap()
                        .epoch
                })
            })
            .collect();
        opens.into_iter().map(|open| open.join().unwrap()).collect()
    });
    assert!(epochs.iter().all(|epoch| *epoch == epochs[0]), "{epochs:?}");
    let rows = connect(&database)
        .query("SELECT version FROM exosphere_schema", &[])
        .unwrap();
    assert_eq!(rows.len(), 1);
}

#[test]
fn a_newer_schema_is_refused() {
    let database = TestDatabase::new();
    drop(open_postgres(database.url()).unwrap());
    connect(&database)
        .batch_execute(
            "UPDATE exosphere_schema SET version = version + 1, compatible = version + 1",
        )
        .unwrap();
    let error = open_postgres(database.url()).err().expect("refused");
    assert!(
        matches!(
            error,
            StoreError::SchemaTooNew {
                found: 4,
                supported: 3
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("upgrade Exosphere"), "{error}");
}

#[test]
fn a_writer_waiting_past_the_lock_timeout_is_busy_and_then_proceeds() {
    let database = TestDatabase::new();
    let store = open_postgres(database.url()).unwrap();
    let impatient = PgStore::open(
        database.url(),
        &PgOptions {
            lock_timeout: Duration::from_millis(100),
            ..PgOptions::default()
        },
    )
    .unwrap();
    store
        .write(&mut |w| {
            w.upsert(&record(Collection::Packages, "p", "1"))?;
            let blocked = impatient.write(&mut |_| Ok(()));
            assert!(matches!(blocked, Err(StoreError::Busy)), "{blocked:?}");
            // Reads go on from the last committed snapshot meanwhile.
            assert_eq!(impatient.state().unwrap().head_seq, 0);
            Ok(())
        })
        .unwrap();
    upsert(&impatient, &record(Collection::Packages, "p", "2"));
    assert_eq!(store.state().unwrap().head_seq, 2);
}

#[test]
fn a_read_only_database_is_named_and_nothing_is_written() {
    let database = TestDatabase::new();
    upsert(
        &open_postgres(database.url()).unwrap(),
        &record(Collection::Packages, "p", "1"),
    );
    connect(&database)
        .batch_execute(&format!(
            "ALTER DATABASE {} SET default_transaction_read_only = on",
            database.name
        ))
        .unwrap();
    let store = open_postgres(database.url()).unwrap();
    assert_eq!(store.state().unwrap().head_seq, 1);
    let before = sessions(&database);
    let error = store
        .write(&mut |w| w.upsert(&record(Collection::Packages, "q", "1")).map(drop))
        .unwrap_err();
    assert!(matches!(error, StoreError::ReadOnly(_)), "{error:?}");
    let message = error.to_string();
    assert!(message.contains(&database.name), "{message}");
    assert!(
        message.contains("Point the database URL at the primary"),
        "{message}"
    );
    assert!(!message.contains("remount"), "{message}");
    assert_eq!(store.state().unwrap().head_seq, 1);
    assert_eq!(
        sessions(&database),
        before,
        "a refused statement leaves its connection in the pool"
    );
}

#[test]
fn an_unreachable_server_is_named_with_what_to_check() {
    let error = open_postgres("postgres://postgres@127.0.0.1:1/nothing")
        .err()
        .expect("refused");
    let message = error.to_string();
    assert!(message.contains("cannot connect to"), "{message}");
    assert!(message.contains("127.0.0.1:1"), "{message}");
    assert!(message.contains("check the host, port"), "{message}");
}

#[test]
fn works_from_the_blocking_pool_block_in_place_and_async_tasks() {
    let database = TestDatabase::new();
    let store: Arc<dyn CatalogStore> = Arc::new(open_postgres(database.url()).unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..8 {
            let store = Arc::clone(&store);
            tasks.push(tokio::task::spawn_blocking(move || {
                upsert(
                    &*store,
                    &record(Collection::Packages, &format!("b{i}"), "1"),
                )
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let in_place = Arc::clone(&store);
        tokio::spawn(async move {
            tokio::task::block_in_place(|| {
                upsert(&*in_place, &record(Collection::Packages, "in-place", "1"))
            })
        })
        .await
        .unwrap();
        // Straight from an async task, as `watch` seeds its state.
        assert_eq!(store.state().unwrap().head_seq, 9);
    });
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    current.block_on(async {
        upsert(&*store, &record(Collection::Packages, "current", "1"));
    });
    assert_eq!(store.state().unwrap().head_seq, 10);
}

#[test]
fn a_database_that_went_back_in_time_starts_a_new_epoch() {
    let database = TestDatabase::new();
    let store = open_postgres(database.url()).unwrap();
    for id in ["a", "b", "c"] {
        upsert(&store, &record(Collection::Packages, id, "1"));
    }
    let before = store.state().unwrap();
    assert_eq!(before.head_seq, 3);
    // A backup taken after the first record put back (or a standby that lacked the last
    // two commits): the numbers 2 and 3 would be handed out again.
    connect(&database)
        .batch_execute("DELETE FROM rec_packages WHERE seq > 1; UPDATE meta SET head_seq = 1")
        .unwrap();
    let after = store.state().unwrap();
    assert_eq!(after.head_seq, 1);
    assert_ne!(
        after.epoch, before.epoch,
        "a new epoch makes every client resync"
    );
    // Once, not at every read; another handle reads the same new epoch.
    assert_eq!(store.state().unwrap().epoch, after.epoch);
    assert_eq!(
        open_postgres(database.url())
            .unwrap()
            .state()
            .unwrap()
            .epoch,
        after.epoch
    );

    // A write notices too, and its commit carries the new epoch.
    connect(&database)
        .batch_execute("UPDATE meta SET head_seq = 0; DELETE FROM rec_packages")
        .unwrap();
    upsert(&store, &record(Collection::Packages, "d", "1"));
    let written = store.state().unwrap();
    assert_eq!(written.head_seq, 1);
    assert_ne!(written.epoch, after.epoch);
}

#[test]
fn a_writer_killed_mid_transaction_leaves_nothing_and_its_dead_connection_leaves_the_pool() {
    let database = TestDatabase::new();
    // One connection, and a short wait for it: were the dead connection still counted, the
    // next call would find the pool full and be refused as busy.
    let store = PgStore::open(
        database.url(),
        &PgOptions {
            max_connections: 1,
            connect_timeout: Duration::from_millis(500),
            ..PgOptions::default()
        },
    )
    .unwrap();
    upsert(&store, &record(Collection::Packages, "kept", "1"));
    let mut killed_pid = 0;
    let killed = store.write(&mut |w| {
        w.upsert(&record(Collection::Packages, "lost", "1"))?;
        // Every other session on the database is this store's: end the one in a transaction.
        let ended = connect(&database)
            .query(
                "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid() \
                 AND state = 'idle in transaction'",
                &[],
            )
            .unwrap();
        assert_eq!(ended.len(), 1);
        killed_pid = ended[0].get(0);
        w.upsert(&record(Collection::Packages, "after", "1"))
            .map(drop)
    });
    assert!(killed.is_err(), "{killed:?}");
    let state = store.state().unwrap();
    assert_eq!(state.head_seq, 1, "nothing of the killed write is visible");
    upsert(&store, &record(Collection::Packages, "next", "1"));
    let texts: Vec<String> = all(&store).into_iter().map(|(_, text)| text).collect();
    assert_eq!(texts.len(), 2);
    assert!(texts[1].contains(r#""_id":"next""#), "{texts:?}");
    assert_eq!(store.state().unwrap().head_seq, 2);
    // The store's one session now is a new one.
    let sessions = sessions(&database);
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_ne!(sessions[0], killed_pid);
}

#[test]
fn a_call_waits_for_a_free_connection_then_is_busy() {
    let database = TestDatabase::new();
    let store = PgStore::open(
        database.url(),
        &PgOptions {
            max_connections: 1,
            connect_timeout: Duration::from_millis(200),
            ..PgOptions::default()
        },
    )
    .unwrap();
    store
        .write(&mut |_| {
            // The one connection is this write's.
            let error = store.state().unwrap_err();
            assert!(matches!(error, StoreError::Busy), "{error:?}");
            Ok(())
        })
        .unwrap();
    assert_eq!(
        store.state().unwrap().head_seq,
        0,
        "the connection came back"
    );
}

#[test]
fn a_database_of_another_application_is_not_taken_over() {
    let database = TestDatabase::new();
    connect(&database)
        .batch_execute("CREATE TABLE meta (x int)")
        .unwrap();
    let error = open_postgres(database.url()).err().expect("refused");
    assert!(matches!(error, StoreError::NotACatalog(_)), "{error:?}");
    let message = error.to_string();
    assert!(message.contains(&database.name), "{message}");
}

#[test]
fn reads_are_served_while_writers_queue() {
    const WRITERS: usize = 6;
    let database = TestDatabase::new();
    // Two connections: were waiting writers to hold connections, both would be taken and
    // a read would wait out the 500 ms and be refused as busy.
    let store = PgStore::open(
        database.url(),
        &PgOptions {
            max_connections: 2,
            connect_timeout: Duration::from_millis(500),
            ..PgOptions::default()
        },
    )
    .unwrap();
    let started = Barrier::new(WRITERS + 1);
    let reads = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|i| {
                let (store, started) = (&store, &started);
                scope.spawn(move || {
                    started.wait();
                    store
                        .write(&mut |w| {
                            w.upsert(&record(Collection::Packages, &format!("p{i}"), "1"))?;
                            std::thread::sleep(Duration::from_millis(200));
                            Ok(())
                        })
                        .unwrap();
                })
            })
            .collect();
        started.wait();
        let mut reads = 0;
        while !writers.iter().all(|writer| writer.is_finished()) {
            store.state().expect("a read is served while writers queue");
            reads += 1;
        }
        for writer in writers {
            writer.join().unwrap();
        }
        reads
    });
    assert!(reads > WRITERS, "reads went on during the writes: {reads}");
    assert_eq!(store.state().unwrap().head_seq, WRITERS as u64);
}

#[test]
fn a_server_that_accepts_but_never_answers_fails_the_open_in_time() {
    // The kernel completes the TCP handshake for the listener's backlog; nothing ever reads
    // the startup message or answers it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let started = std::time::Instant::now();
    let error = PgStore::open(
        &format!("postgres://postgres@127.0.0.1:{port}/silent"),
        &PgOptions {
            connect_timeout: Duration::from_millis(300),
            ..PgOptions::default()
        },
    )
    .err()
    .expect("refused");
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(5), "gave up after {waited:?}");
    let message = error.to_string();
    assert!(
        message.contains("did not finish the connection"),
        "{message}"
    );
    assert!(message.contains(&port.to_string()), "{message}");
    drop(listener);
}

#[test]
fn a_write_idle_in_its_transaction_past_the_lock_timeout_is_ended_by_the_server() {
    let database = TestDatabase::new();
    let store = PgStore::open(
        database.url(),
        &PgOptions {
            lock_timeout: Duration::from_millis(200),
            ..PgOptions::default()
        },
    )
    .unwrap();
    let stuck = store.write(&mut |w| {
        w.upsert(&record(Collection::Packages, "stuck", "1"))?;
        // A lock holder that stopped: every other writer would have given up by now.
        std::thread::sleep(Duration::from_millis(600));
        w.upsert(&record(Collection::Packages, "late", "1"))
            .map(drop)
    });
    assert!(stuck.is_err(), "{stuck:?}");
    assert_eq!(store.state().unwrap().head_seq, 0, "nothing of it was kept");
    upsert(&store, &record(Collection::Packages, "next", "1"));
    assert_eq!(store.state().unwrap().head_seq, 1);
}

#[test]
fn concurrent_readers_during_writes_change_no_epoch() {
    const READERS: usize = 4;
    const WRITES: usize = 40;
    let database = TestDatabase::new();
    let store = open_postgres(database.url()).unwrap();
    let other = open_postgres(database.url()).unwrap();
    let epoch = store.state().unwrap().epoch;
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        // Readers whose snapshots start and end in every order, some older than what
        // another reader of the same store saw a moment before.
        let readers: Vec<_> = (0..READERS)
            .map(|i| {
                let (store, done, epoch) = (&store, &done, &epoch);
                scope.spawn(move || {
                    let mut reads = 0;
                    while !done.load(Ordering::SeqCst) {
                        let seen = if i % 2 == 0 {
                            store.state().unwrap().epoch
                        } else {
                            store
                                .read_page(
                                    &Cursors::default(),
                                    &PageLimits {
                                        records: 10,
                                        bytes: usize::MAX,
                                    },
                                )
                                .unwrap()
                                .epoch
                        };
                        assert_eq!(&seen, epoch, "a read saw another epoch");
                        reads += 1;
                    }
                    reads
                })
            })
            .collect();
        for i in 0..WRITES {
            let writer = if i % 2 == 0 { &store } else { &other };
            upsert(writer, &record(Collection::Packages, &format!("p{i}"), "1"));
        }
        done.store(true, Ordering::SeqCst);
        for reader in readers {
            assert!(reader.join().unwrap() > 0);
        }
    });
    let state = store.state().unwrap();
    assert_eq!(state.epoch, epoch);
    assert_eq!(state.head_seq, WRITES as u64);
}

#[test]
fn a_database_not_in_utf8_is_refused_with_the_fix() {
    let database = TestDatabase::new();
    let ascii = format!("{}_ascii", database.name);
    connect(&database)
        .batch_execute(&format!(
            "CREATE DATABASE {ascii} ENCODING 'SQL_ASCII' TEMPLATE template0 \
             LC_COLLATE 'C' LC_CTYPE 'C'"
        ))
        .unwrap();
    let opened = open_postgres(&database.url().replace(&database.name, &ascii));
    connect(&database)
        .batch_execute(&format!("DROP DATABASE {ascii} WITH (FORCE)"))
        .unwrap();
    let message = opened.err().expect("refused").to_string();
    assert!(message.contains("stores text as SQL_ASCII"), "{message}");
    assert!(message.contains("ENCODING 'UTF8'"), "{message}");
}

#[test]
fn time_limits_beyond_what_postgresql_accepts_are_taken_as_its_longest() {
    let database = TestDatabase::new();
    let store = PgStore::open(
        database.url(),
        &PgOptions {
            lock_timeout: Duration::MAX,
            connect_timeout: Duration::MAX,
            ..PgOptions::default()
        },
    )
    .unwrap();
    upsert(&store, &record(Collection::Packages, "p", "1"));
    assert_eq!(store.state().unwrap().head_seq, 1);
}

/// Waits until `done` holds, failing with `what` after ten seconds (PostgreSQL releases a
/// closed session's locks, and reconnects happen, a moment later, not at once).
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One more store on `database`, as another server opens it.
fn open(database: &TestDatabase) -> PgStore {
    open_postgres(database.url()).expect("the database opens")
}

/// One more store on `database` that reads sync pages from its replica in `dir`, as
/// `serve --sync-replica` (the default) opens it.
fn open_replicated(database: &TestDatabase, dir: &Path) -> PgStore {
    let replica = SqliteReplica::open(&dir.join("sync-replica.sqlite3")).expect("it opens");
    open(database)
        .with_sync_replica(Box::new(replica))
        .expect("the replica catches up")
}

/// An upload ticket that expires far in the future, open.
fn open_ticket() -> Upload {
    Upload {
        staging: "uploads/x".into(),
        destination: "packages/a/1.0.0/s.tgz".into(),
        max_size: 10,
        expires: i64::MAX,
        state: UploadState::Open,
    }
}

#[test]
fn uploads_a_running_server_receives_are_left_alone_by_the_others_until_it_stops() {
    let database = TestDatabase::new();
    let (a, b) = (open(&database), open(&database));
    let seat_a = a.join_servers().unwrap();
    let seat_b = b.join_servers().unwrap();
    assert_ne!(seat_a.id(), seat_b.id(), "seats are unique");
    let pending = |user: &str, uploads: &[&str]| pending_publish(user, uploads, i64::MAX);
    let id_a = seat_a.id().to_owned();
    a.write(&mut |w| {
        let accounts = w.accounts();
        for hash in ["t1", "t2", "t3", "orphaned"] {
            accounts.put_upload(hash, &open_ticket())?;
        }
        accounts.put_pending("p1", &pending("u1", &["t1", "t2"]))?;
        accounts.put_pending("p2", &pending("u2", &["t3", "orphaned"]))?;
        accounts.start_receiving("t1", &id_a)?;
        // A mark without a seat (as a server that died left it, or `put_upload`): nobody's.
        accounts.put_upload(
            "orphaned",
            &Upload {
                state: UploadState::Receiving,
                ..open_ticket()
            },
        )
    })
    .unwrap();
    let elsewhere = |store: &PgStore, seat: &str, hash: &str, user: &str| {
        with(store, |w| {
            w.accounts().receiving_elsewhere(seat, hash, user)
        })
    };
    let seen = |ticket, by_user| ReceivingElsewhere { ticket, by_user };
    assert_eq!(elsewhere(&b, seat_b.id(), "t1", "u1"), seen(true, 1));
    assert_eq!(elsewhere(&b, seat_b.id(), "t2", "u1"), seen(false, 1));
    assert_eq!(elsewhere(&b, seat_b.id(), "t3", "u2"), seen(false, 0));
    assert_eq!(
        elsewhere(&a, seat_a.id(), "t1", "u1"),
        seen(false, 0),
        "a server's own uploads are not elsewhere"
    );
    let reopen = |store: &PgStore| with(store, |w| w.accounts().reopen_abandoned_uploads());
    assert_eq!(reopen(&b), 1, "only the mark without a running seat");
    let state = |hash: &str| b.upload_ticket(hash).unwrap().unwrap().upload.state;
    assert_eq!(
        state("t1"),
        UploadState::Receiving,
        "a live server's upload stays"
    );
    assert_eq!(state("orphaned"), UploadState::Open);

    drop(seat_a);
    eventually("the stopped server's seat is released", || {
        elsewhere(&b, seat_b.id(), "t1", "u1") == seen(false, 0)
    });
    assert_eq!(reopen(&b), 1, "the stopped server's upload reopens");
    assert_eq!(state("t1"), UploadState::Open);
}

#[test]
fn a_server_ends_only_its_own_claim_and_reopens_only_its_own_unheld_marks() {
    let database = TestDatabase::new();
    let store = open(&database);
    with(&store, |w| {
        let accounts = w.accounts();
        for hash in ["t", "held", "stale", "theirs"] {
            accounts.put_upload(hash, &open_ticket())?;
        }
        // Server a's seat lapsed while it received "t", and server b took the URL over.
        accounts.start_receiving("t", "a")?;
        accounts.start_receiving("t", "b")?;
        let received = UploadState::Received {
            size: 3,
            sha256: "h".into(),
        };
        assert!(
            !accounts.end_receiving("t", "a", &received, 0)?,
            "a's outcome does not overwrite b's claim"
        );
        assert_eq!(accounts.upload("t")?.unwrap().state, UploadState::Receiving);
        assert!(accounts.end_receiving("t", "b", &received, 0)?);
        // Ended, the ticket is nobody's: a's reopening leaves it alone.
        accounts.start_receiving("held", "a")?;
        accounts.start_receiving("stale", "a")?;
        accounts.start_receiving("theirs", "b")?;
        assert_eq!(
            accounts.reopen_unheld_uploads("a", &["held".to_owned()])?,
            1,
            "only a's mark that no slot of a's holds"
        );
        for (hash, state) in [
            ("t", received),
            ("held", UploadState::Receiving),
            ("stale", UploadState::Open),
            ("theirs", UploadState::Receiving),
        ] {
            assert_eq!(accounts.upload(hash)?.unwrap().state, state, "{hash}");
        }
        Ok(())
    });
}

#[test]
fn a_seat_whose_connection_the_database_ended_is_taken_again() {
    let database = TestDatabase::new();
    let store = open(&database);
    let seat = store.join_servers().unwrap();
    let id = seat.id().to_owned();
    let holder = || {
        connect(&database)
            .query_opt(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted \
                 AND classid = $1::int::oid AND objid::text = $2 AND objsubid = 2",
                &[&SERVER_LOCK_CLASS, &id],
            )
            .unwrap()
            .map(|row| row.get::<_, i32>(0))
    };
    let first = holder().expect("the seat is held");
    connect(&database)
        .execute("SELECT pg_terminate_backend($1)", &[&first])
        .unwrap();
    eventually("the seat is taken again on a new connection", || {
        holder().is_some_and(|pid| pid != first)
    });
    drop(seat);
    eventually("a dropped seat is released", || holder().is_none());
}

#[test]
fn a_server_of_the_older_single_server_release_keeps_new_servers_out_and_is_kept_out() {
    let database = TestDatabase::new();
    let store = open(&database);
    // The older release's serve held this lock alone on its database.
    let mut older = connect(&database);
    older
        .execute("SELECT pg_advisory_lock(1165520723::bigint)", &[])
        .unwrap();
    let refused = store
        .join_servers()
        .err()
        .expect("refused beside an older server");
    let message = refused.to_string();
    assert!(
        message.contains("stop the exosphere serve of the older release first"),
        "{message}"
    );
    older
        .execute("SELECT pg_advisory_unlock(1165520723::bigint)", &[])
        .unwrap();
    let seat = store
        .join_servers()
        .expect("joins once the older server stopped");
    let started: bool = older
        .query_one("SELECT pg_try_advisory_lock(1165520723::bigint)", &[])
        .unwrap()
        .get(0);
    assert!(!started, "an older server cannot start beside a seat");
    drop(seat);
}

#[test]
fn each_duty_is_held_by_one_store_at_a_time_and_passes_on_when_its_holder_goes() {
    let database = TestDatabase::new();
    let (a, b) = (open(&database), open(&database));
    let rollup = a
        .try_duty(Duty::Rollup)
        .unwrap()
        .expect("a free duty is taken");
    assert!(b.try_duty(Duty::Rollup).unwrap().is_none(), "held by a");
    let sweep = b
        .try_duty(Duty::Sweep)
        .unwrap()
        .expect("duties are separate");
    // The duty lives on its own connection: the store's pooled work does not release it.
    upsert(&a, &record(Collection::Packages, "p", "1"));
    assert!(b.try_duty(Duty::Rollup).unwrap().is_none());
    drop(rollup);
    eventually("a released duty can be taken", || {
        b.try_duty(Duty::Rollup).unwrap().is_some()
    });

    // A holder whose connection the database ends learns that it lost the duty, and the
    // duty is free for another server.
    assert!(!sweep.lost());
    let holder: i32 = connect(&database)
        .query_one(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = $1::int::oid \
             AND objid = 3 AND objsubid = 2 AND granted",
            &[&DUTY_LOCK_CLASS],
        )
        .unwrap()
        .get(0);
    connect(&database)
        .execute("SELECT pg_terminate_backend($1)", &[&holder])
        .unwrap();
    eventually("the holder notices the lost duty", || sweep.lost());
    // The backend releases its locks a moment after its connection ended.
    eventually("the lost duty can be taken by another store", || {
        a.try_duty(Duty::Sweep).unwrap().is_some()
    });
}

/// A TCP proxy in front of `database`'s server that forwards every byte until the returned
/// flag is set, then holds them with both sockets open (a network that stopped delivering,
/// which no connection close reveals); returns the URL through it and the flag.
fn freezable_proxy(database: &TestDatabase) -> (String, Arc<AtomicBool>) {
    let config: postgres::Config = database.url().parse().unwrap();
    let port = config.get_ports()[0];
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = listener.local_addr().unwrap().port();
    let frozen = Arc::new(AtomicBool::new(false));
    let freeze = Arc::clone(&frozen);
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let client = client.unwrap();
            let server = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            for (mut from, mut to) in [
                (client.try_clone().unwrap(), server.try_clone().unwrap()),
                (server, client),
            ] {
                let frozen = Arc::clone(&freeze);
                std::thread::spawn(move || {
                    use std::io::{Read, Write};
                    let mut buf = [0u8; 8192];
                    while let Ok(read) = from.read(&mut buf) {
                        while frozen.load(Ordering::Acquire) {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        if read == 0 || to.write_all(&buf[..read]).is_err() {
                            break;
                        }
                    }
                });
            }
        }
    });
    let url = database
        .url()
        .replace(&format!("port={port}"), &format!("port={proxy}"));
    (url, frozen)
}

#[test]
fn a_duty_whose_connection_stops_answering_is_lost_within_seconds() {
    let database = TestDatabase::new();
    let (url, frozen) = freezable_proxy(&database);
    let store = open_postgres(&url).expect("opens through the proxy");
    let mirror = store.try_duty(Duty::Mirror).unwrap().expect("a free duty");
    std::thread::sleep(Duration::from_secs(2));
    assert!(!mirror.lost(), "a connection that answers keeps its duty");
    frozen.store(true, Ordering::Release);
    let started = std::time::Instant::now();
    eventually(
        "the holder notices that its duty's connection stopped answering",
        || mirror.lost(),
    );
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(8), "noticed after {waited:?}");
}

#[test]
fn commits_of_other_stores_wake_the_listener_which_survives_a_terminated_connection() {
    let database = TestDatabase::new();
    let (watcher, writer) = (open(&database), open(&database));
    let (woken, wakes) = std::sync::mpsc::channel();
    let hints = watcher
        .hint_changes(Arc::new(move || {
            let _ = woken.send(());
        }))
        .unwrap()
        .expect("PostgreSQL hints at changes");
    let patience = Duration::from_secs(10);
    let listener = || {
        connect(&database)
            .query_opt(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
                 AND query LIKE '%LISTEN exosphere_changes'",
                &[],
            )
            .unwrap()
            .map(|row| row.get::<_, i32>(0))
    };
    // Listening: the listener wakes once when it starts listening.
    wakes.recv_timeout(patience).expect("woken once listening");
    let first = listener().expect("a listening session");
    upsert(&writer, &record(Collection::Packages, "p", "1"));
    wakes
        .recv_timeout(patience)
        .expect("woken by another store's commit");

    while wakes.try_recv().is_ok() {}
    connect(&database)
        .execute("SELECT pg_terminate_backend($1)", &[&first])
        .unwrap();
    // The reconnected listener wakes once it listens again; only then is the next
    // commit's notification one that the new connection must deliver.
    wakes
        .recv_timeout(patience)
        .expect("woken once listening again");
    eventually("the listener listens on a new session", || {
        listener().is_some_and(|pid| pid != first)
    });
    while wakes.try_recv().is_ok() {}
    upsert(&writer, &record(Collection::Packages, "q", "1"));
    wakes
        .recv_timeout(patience)
        .expect("woken by a commit after reconnecting");
    drop(hints);
    eventually("the listener stops with its hold", || listener().is_none());
}

#[test]
fn an_older_server_uses_a_compatibly_upgraded_schema_and_refuses_an_incompatible_one() {
    let database = TestDatabase::new();
    drop(open_postgres(database.url()).unwrap());
    let mut admin = connect(&database);
    let (version, compatible): (i64, i64) = {
        let row = admin
            .query_one("SELECT version, compatible FROM exosphere_schema", &[])
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert!(compatible <= version);
    // A newer release added something older code can do without.
    admin
        .execute(
            "UPDATE exosphere_schema SET version = $1",
            &[&(version + 1)],
        )
        .unwrap();
    let store = open_postgres(database.url()).expect("an additive upgrade keeps older servers");
    upsert(&store, &record(Collection::Packages, "p", "1"));
    // A newer release changed what older code relies on.
    admin
        .execute(
            "UPDATE exosphere_schema SET compatible = $1",
            &[&(version + 1)],
        )
        .unwrap();
    let refused = open_postgres(database.url())
        .err()
        .expect("refused")
        .to_string();
    assert!(
        refused.contains(&format!("schema version {}", version + 1))
            && refused.contains("upgrade Exosphere"),
        "{refused}"
    );
}

/// Turns a database of the current schema into one of version 2: the record tables without
/// key columns, indexed by expressions on their text (as version 1 created them).
fn downgrade_to_version_2(database: &TestDatabase) {
    let mut sql = String::from(
        "DROP INDEX rec_packages_by_key, rec_versions_by_key, rec_builds_by_key, \
         rec_release_tracks_by_key, rec_release_versions_by_key; \
         ALTER TABLE mirror_stage DROP COLUMN key1, DROP COLUMN key2; \
         UPDATE exosphere_schema SET version = 2, compatible = 2;",
    );
    for table in [
        "rec_packages",
        "rec_versions",
        "rec_builds",
        "rec_release_tracks",
        "rec_release_versions",
    ] {
        sql.push_str(&format!(
            "ALTER TABLE {table} DROP COLUMN key1, DROP COLUMN key2, \
             ALTER COLUMN json SET STORAGE EXTENDED;"
        ));
    }
    let key =
        |field: &str| format!("(replace(json, E'\\\\u0000', E'\\\\ufffd')::json ->> '{field}')");
    sql.push_str(&format!(
        "CREATE INDEX rec_packages_by_name ON rec_packages ({}); \
         CREATE INDEX rec_versions_by_key ON rec_versions ({}, {}); \
         CREATE INDEX rec_builds_by_version ON rec_builds ({}); \
         CREATE INDEX rec_release_tracks_by_name ON rec_release_tracks ({}); \
         CREATE INDEX rec_release_versions_by_key ON rec_release_versions ({}, {});",
        key("name"),
        key("packageName"),
        key("version"),
        key("versionId"),
        key("name"),
        key("track"),
        key("version"),
    ));
    connect(database).batch_execute(&sql).unwrap();
}

#[test]
fn a_version_2_schema_gets_key_columns_filled_from_its_records() {
    let database = TestDatabase::new();
    let store = open_postgres(database.url()).unwrap();
    let stored = [
        (Collection::Packages, r#"{"_id":"p","name":"a:b\u0000c"}"#),
        (Collection::Packages, r#"{"_id":"n","name":5}"#),
        (
            Collection::Versions,
            r#"{"_id":"v","packageName":"a:b","version":"1.0.0"}"#,
        ),
        (Collection::Builds, r#"{"_id":"b","versionId":"v"}"#),
        (Collection::ReleaseTracks, r#"{"_id":"t","name":"T"}"#),
        (
            Collection::ReleaseVersions,
            r#"{"_id":"r","track":"T","version":"1"}"#,
        ),
    ];
    store
        .write(&mut |w| {
            for (c, text) in stored {
                w.upsert(&Record::from_json(c, text).unwrap())?;
            }
            w.mirror().stage(
                &Record::from_json(
                    Collection::Versions,
                    r#"{"_id":"s","packageName":"c:d","version":"2.0.0"}"#,
                )
                .unwrap(),
            )
        })
        .unwrap();
    drop(store);
    downgrade_to_version_2(&database);
    let store = open_postgres(database.url()).expect("version 2 is upgraded");
    let found = |key: Lookup<'_>| {
        with(&store, |w| w.find(&key))
            .iter()
            .map(|text| text[8..9].to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(found(Lookup::Package("a:b\0c")), ["p"]);
    assert!(found(Lookup::Package("5")).is_empty(), "not a string");
    assert_eq!(
        found(Lookup::Version {
            package: "a:b",
            version: "1.0.0"
        }),
        ["v"]
    );
    assert_eq!(found(Lookup::VersionsOf("a:b")), ["v"]);
    assert_eq!(found(Lookup::BuildsOf("v")), ["b"]);
    assert_eq!(found(Lookup::ReleaseTrack("T")), ["t"]);
    assert_eq!(
        found(Lookup::ReleaseVersion {
            track: "T",
            version: "1"
        }),
        ["r"]
    );
    let mut admin = connect(&database);
    let staged = admin
        .query_one("SELECT key1, key2 FROM mirror_stage WHERE id = 's'", &[])
        .unwrap();
    assert_eq!(
        (staged.get::<_, String>(0), staged.get::<_, String>(1)),
        ("c:d".to_owned(), "2.0.0".to_owned())
    );
    let row = admin
        .query_one("SELECT version, compatible FROM exosphere_schema", &[])
        .unwrap();
    assert_eq!(
        (row.get::<_, i64>(0), row.get::<_, i64>(1)),
        (3, 3),
        "version 2 code would store records without their keys"
    );
}

#[test]
fn a_version_1_schema_is_upgraded_in_place_keeping_its_data() {
    let database = TestDatabase::new();
    let store = open_postgres(database.url()).unwrap();
    upsert(&store, &record(Collection::Packages, "p", "1"));
    drop(store);
    downgrade_to_version_2(&database);
    connect(&database)
        .batch_execute(
            "ALTER TABLE uploads DROP COLUMN receiver; \
             ALTER TABLE exosphere_schema DROP COLUMN compatible; \
             UPDATE exosphere_schema SET version = 1",
        )
        .unwrap();
    let store = open_postgres(database.url()).expect("version 1 is upgraded");
    assert_eq!(store.state().unwrap().head_seq, 1, "the data stays");
    let seat = store.join_servers().unwrap();
    let id = seat.id().to_owned();
    store
        .write(&mut |w| {
            w.accounts().put_upload("t", &open_ticket())?;
            w.accounts().start_receiving("t", &id)
        })
        .expect("upload marks have their owner column");
    let row = connect(&database)
        .query_one("SELECT version, compatible FROM exosphere_schema", &[])
        .unwrap();
    assert!(row.get::<_, i64>(0) > 1 && row.get::<_, i64>(1) > 1);
}

/// Every page of a full sync of `store` from scratch, three records per collection a page.
fn pages(store: &dyn CatalogStore) -> Vec<Page> {
    let mut cursors = Cursors::default();
    let mut pages = Vec::new();
    loop {
        let page = store.read_page(&cursors, &by_count(3)).unwrap();
        page.advance(&mut cursors);
        let more = page.has_more;
        pages.push(page);
        if !more {
            return pages;
        }
    }
}

#[test]
fn a_server_reading_pages_from_its_replica_sees_every_write_of_another_at_once() {
    // Read-your-writes across servers (spec §3.6): B's next page holds what A committed.
    let database = TestDatabase::new();
    let (a, dir) = (open(&database), tempfile::tempdir().unwrap());
    let b = open_replicated(&database, dir.path());
    let plain = open(&database);
    assert_eq!(pages(&b), pages(&plain), "an empty catalog");
    for i in 0..7 {
        upsert(&a, &record(Collection::Packages, &format!("p{i}"), "1"));
        upsert(&a, &record(Collection::Builds, &format!("b{i}"), "1"));
    }
    assert_eq!(pages(&b), pages(&plain), "new records");
    assert_eq!(pages(&b).len(), 3);

    // A changed record moves to a new seq: a client holding the old one gets it again, and
    // it is sent once from scratch.
    let mut cursors = Cursors::default();
    let first = b.read_page(&cursors, &by_count(500)).unwrap();
    first.advance(&mut cursors);
    upsert(&a, &record(Collection::Packages, "p2", "2"));
    let next = b.read_page(&cursors, &by_count(500)).unwrap();
    assert_eq!(next.records[Collection::Packages].len(), 1);
    assert!(
        next.records[Collection::Packages][0]
            .json
            .contains(r#""p2""#)
    );
    assert_eq!(pages(&b), pages(&plain), "a changed record");

    // A removal starts an epoch: the replica copies the catalog whole.
    let epoch = pages(&b)[0].epoch.clone();
    with(&a, |w| w.delete(Collection::Packages, "p3"));
    let after = pages(&b);
    assert_ne!(after[0].epoch, epoch);
    assert_eq!(after, pages(&plain), "a removed record");
    assert!(after.iter().all(|page| {
        page.records[Collection::Packages]
            .iter()
            .all(|r| !r.json.contains(r#""p3""#))
    }));
}

#[test]
fn a_restarted_server_catches_its_replica_up_and_a_database_gone_back_below_it_starts_an_epoch() {
    let database = TestDatabase::new();
    let dir = tempfile::tempdir().unwrap();
    let plain = open(&database);
    {
        let server = open_replicated(&database, dir.path());
        for id in ["a", "b", "c"] {
            upsert(&server, &record(Collection::Packages, id, "1"));
        }
        assert_eq!(pages(&server), pages(&plain));
    }
    // Written while the server was stopped: caught up when it starts again.
    upsert(&plain, &record(Collection::Versions, "v", "1"));
    let server = open_replicated(&database, dir.path());
    assert_eq!(pages(&server), pages(&plain));
    let held = pages(&server)[0].clone();
    assert_eq!(held.head_seq, 4);
    drop(server);

    // The database put back to a backup holding the first record only: the numbers 2 to
    // 4, which the replica holds, would be handed out again. A new epoch makes every
    // client resync, and the replica copies the database whole.
    connect(&database)
        .batch_execute(
            "DELETE FROM rec_packages WHERE seq > 1; DELETE FROM rec_versions; \
             UPDATE meta SET head_seq = 1",
        )
        .unwrap();
    let server = open_replicated(&database, dir.path());
    let after = pages(&server);
    assert_ne!(after[0].epoch, held.epoch, "a new epoch");
    assert_eq!(after, pages(&open(&database)));
    let records: usize = after
        .iter()
        .map(|page| page.records[Collection::Packages].len())
        .sum();
    assert_eq!(records, 1);
}

/// A replica that fails every call once `broken` is set (its disk full, say), and is
/// `inner` until then.
struct Breakable {
    inner: SqliteReplica,
    broken: Arc<AtomicBool>,
}

impl Breakable {
    fn check(&self) -> Result<(), StoreError> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(StoreError::DiskFull(Storage::Directory("/replica".into())));
        }
        Ok(())
    }
}

impl SyncReplica for Breakable {
    fn held(&self) -> Result<Snapshot, StoreError> {
        self.check()?;
        self.inner.held()
    }

    fn apply(
        &self,
        feed: &mut dyn FnMut(&Snapshot, &mut dyn ReplicaSink) -> Result<Snapshot, StoreError>,
    ) -> Result<Snapshot, StoreError> {
        self.check()?;
        self.inner.apply(feed)
    }

    fn read_page(&self, cursors: &Cursors, limits: &PageLimits) -> Result<Page, StoreError> {
        self.check()?;
        self.inner.read_page(cursors, limits)
    }
}

#[test]
fn pages_come_from_the_database_while_the_replica_fails() {
    let database = TestDatabase::new();
    let dir = tempfile::tempdir().unwrap();
    let broken = Arc::new(AtomicBool::new(false));
    let replica = Breakable {
        inner: SqliteReplica::open(&dir.path().join("sync-replica.sqlite3")).unwrap(),
        broken: broken.clone(),
    };
    let server = open(&database)
        .with_sync_replica(Box::new(replica))
        .unwrap();
    upsert(&server, &record(Collection::Packages, "a", "1"));
    let plain = open(&database);
    assert_eq!(pages(&server), pages(&plain));
    broken.store(true, Ordering::SeqCst);
    upsert(&server, &record(Collection::Packages, "b", "1"));
    assert_eq!(pages(&server), pages(&plain), "read from the database");
    broken.store(false, Ordering::SeqCst);
    upsert(&server, &record(Collection::Packages, "c", "1"));
    assert_eq!(
        pages(&server),
        pages(&plain),
        "from the replica again, caught up"
    );

    // A replica that fails at startup fails the start: the server says so, and the
    // operator can serve without one.
    broken.store(true, Ordering::SeqCst);
    let replica = Breakable {
        inner: SqliteReplica::open(&dir.path().join("another.sqlite3")).unwrap(),
        broken,
    };
    assert!(matches!(
        open(&database).with_sync_replica(Box::new(replica)),
        Err(StoreError::DiskFull(_))
    ));
}
