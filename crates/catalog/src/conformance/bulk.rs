//! The [`BulkStore`] contract: a whole catalog copied row for row into an empty store,
//! refusals that change nothing, and a copy that goes on as the same catalog.
//!
//! Its bodies take a [`NewBulkStore`] factory and are stamped by
//! [`bulk_conformance_tests!`](crate::bulk_conformance_tests), beside the store's own
//! conformance tests.

use std::sync::Arc;

use super::dump::{BAD_LINES, dump_with};
use super::store::{all, record};
use super::usage::{app, day};
use super::with;
use crate::Collection;
use crate::accounts::{Org, Pending, PendingKind, Token, Upload, UploadState, User};
use crate::audit::{AuditEntry, AuditQuery};
use crate::bulk::{self, BulkStore, META, Row, TABLES, Value};
use crate::dump::{DumpError, ImportOptions};
use crate::error::StoreError;
use crate::mirror::{Claim, MirrorState, UpstreamFile};
use crate::record::{Record, StatsRow};

/// Makes a fresh, empty bulk store of the backend under test; a test may call it more than
/// once.
pub type NewBulkStore<'a> = &'a dyn Fn() -> Arc<dyn BulkStore>;

/// Record texts that must survive any copy byte for byte: an escaped NUL, a character
/// outside the Basic Multilingual Plane (as itself and as a surrogate pair escape), dotted
/// and `$` keys, numbers written as sent.
pub const UNUSUAL_TEXTS: [&str; 3] = [
    r#"{"_id":"nul","name":"a\u0000b","x":"\u0000"}"#,
    r#"{"_id":"astral","name":"smile-😀","s":"\ud83d\ude00"}"#,
    r#"{"_id":"dotted","name":"dots","a.b":{"c.d":1},"$weird":[1.50,1e3]}"#,
];

/// Fills `store` with a row in every table: records of every collection (the unusual texts
/// among them, one updated and one deleted, so sequence numbers have gaps and the epoch is
/// not the first), stats rows, usage recorded and rolled up, accounts, tokens, upload
/// tickets and a pending publish, the mirror's state, stage, files and claims, and audit
/// entries with unusual text. Shared with backends' own tests.
pub fn fill(store: &dyn BulkStore) {
    with(store, |w| {
        for text in UNUSUAL_TEXTS {
            w.upsert(&Record::from_json(Collection::Packages, text).unwrap())?;
        }
        let version = r#"{"_id":"v1","packageName":"tracker","version":"1.0.0"}"#;
        w.upsert(&Record::from_json(Collection::Versions, version).unwrap())?;
        for c in Collection::ALL {
            w.upsert(&record(c, &format!("{c}-é"), "1"))?;
            w.upsert(&record(c, "gone", "1"))?;
        }
        w.upsert(&record(Collection::Builds, "Builds-é", "2"))?;
        w.upsert_stats(&StatsRow::new("2015-01-02", "tracker", "1.0.0", 3, 4).unwrap())?;
        Ok(())
    });
    with(store, |w| w.delete(Collection::Builds, "gone"));
    with(store, |w| {
        w.record_usage(day("2024-10-01"), &app("A", &[("tracker", "1.0.0", true)]))?;
        w.record_usage(day("2024-10-02"), &app("B", &[("tracker", "1.0.0", false)]))?;
        w.roll_up_usage(day("2024-10-01")).map(drop)
    });
    with(store, |w| {
        let accounts = w.accounts();
        for (id, name, admin) in [("u1", "ada", true), ("u2", "Émile", false)] {
            accounts.insert_user(&User {
                id: id.into(),
                username: name.into(),
                admin,
            })?;
        }
        accounts.insert_org(&Org {
            id: "o1".into(),
            name: "acme".into(),
        })?;
        accounts.add_org_member("o1", "u2")?;
        accounts.insert_token(&Token {
            id: "t1".into(),
            hash: "h1".into(),
            user_id: "u1".into(),
            created: 1,
            expires: i64::MAX,
        })?;
        for (hash, state) in [
            ("up1", UploadState::Open),
            (
                "up2",
                UploadState::Received {
                    size: 5,
                    sha256: "c2hh".into(),
                },
            ),
        ] {
            accounts.put_upload(
                hash,
                &Upload {
                    staging: format!("staging/{hash}"),
                    destination: "files/a\tb\\c\nd".into(),
                    max_size: 10,
                    expires: 99,
                    state,
                },
            )?;
        }
        accounts.put_pending(
            "p1",
            &Pending {
                kind: PendingKind::Version,
                subject: "ada:pkg@1.0.0".into(),
                user_id: "u1".into(),
                record: r#"{"_id":"x","s":"\u0000😀"}"#.into(),
                uploads: vec!["up1".into(), "up2".into()],
                expires: 99,
            },
        )?;
        let mirror = w.mirror();
        mirror.put_state(&MirrorState {
            upstream: "https://packages.example".into(),
            token: Some("{\"format\":\"1.1\"}".into()),
            staging_token: None,
            held: None,
            last_success_ms: Some(5),
            last_error: Some((6, "down\r\n".into())),
            sync_requested_ms: None,
        })?;
        // "b" staged twice: its second staging is the one kept, where it was staged.
        for (id, body) in [("b", "1"), ("a", "1"), ("😀", "1"), ("b", "2")] {
            mirror.stage(&record(Collection::Versions, id, body))?;
        }
        mirror.stage_file(
            "k2",
            &UpstreamFile {
                url: "https://u/2".into(),
                sha256: None,
            },
        )?;
        mirror.put_file(
            "k1",
            &UpstreamFile {
                url: "https://u/1".into(),
                sha256: Some("aGFzaA==".into()),
            },
        )?;
        mirror.mark_cached("k1", Some(42))?;
        mirror.claim(&Claim::Track("METEOR".into()))?;
        // Names whose order under a language's collation is not their byte order.
        for name in ["b", "B", "a", "Z", "ä", "a-b", "ab", "a b"] {
            w.mirror().claim(&Claim::Package(name.into()))?;
            w.upsert_stats(&StatsRow::new("2015-01-03", name, "1.0.0", 1, 1).unwrap())?;
        }
        for (time, actor) in [(1, "ada"), (2, "Émile\t😀")] {
            w.audit(&AuditEntry {
                time,
                actor: actor.into(),
                address: None,
                action: "publish".into(),
                target: "ada:pkg@1.0.0".into(),
                package: Some("ada:pkg".into()),
                detail: serde_json::json!({"nul": "\u{0}", "a.b": 1}),
            })?;
        }
        Ok(())
    });
}

/// Checks that a backend moves every table and column it keeps: `actual` lists its tables'
/// columns as its own catalog reports them (`(table, column)`), and each must be a column of
/// [`TABLES`] or listed in `backend_only` (a whole table as `table`, a column as
/// `table.column`); every column of [`TABLES`] must be there, and every `backend_only`
/// entry too (no stale entry). Columns a backend derives from moved ones (recomputed at
/// load, such as a natural key extracted from record text) belong in `backend_only`; so do
/// those that are the running servers' own state, not catalog data (`uploads.receiver`).
/// Anything else is a table or column a copy would silently leave behind.
pub fn assert_tables_are_moved(actual: &[(String, String)], backend_only: &[&str]) {
    let moved = |table: &str, column: &str| {
        TABLES
            .iter()
            .any(|t| t.name == table && t.columns.iter().any(|c| c.name == column))
    };
    let own = |table: &str, column: &str| {
        backend_only
            .iter()
            .any(|entry| *entry == table || *entry == format!("{table}.{column}"))
    };
    let left_behind: Vec<String> = actual
        .iter()
        .filter(|(table, column)| !moved(table, column) && !own(table, column))
        .map(|(table, column)| format!("{table}.{column}"))
        .collect();
    assert!(
        left_behind.is_empty(),
        "columns neither in bulk::TABLES nor listed as the backend's own: {left_behind:?}"
    );
    let has = |table: &str, column: &str| actual.iter().any(|(t, c)| t == table && c == column);
    let missing: Vec<String> = TABLES
        .iter()
        .flat_map(|t| t.columns.iter().map(move |c| (t.name, c.name)))
        .filter(|(table, column)| !has(table, column))
        .map(|(table, column)| format!("{table}.{column}"))
        .collect();
    assert!(
        missing.is_empty(),
        "bulk::TABLES names columns the backend lacks: {missing:?}"
    );
    let stale: Vec<&&str> = backend_only
        .iter()
        .filter(|entry| {
            !actual.iter().any(|(table, column)| {
                **entry == table.as_str() || **entry == format!("{table}.{column}")
            })
        })
        .collect();
    assert!(stale.is_empty(), "backend-only entries it lacks: {stale:?}");
}

/// Every row of `store`, in dump order.
pub fn rows(store: &dyn BulkStore) -> Vec<Row> {
    let mut out = Vec::new();
    store
        .dump_rows(&mut |row| {
            out.push(row);
            Ok(())
        })
        .unwrap();
    out
}

/// Checks that a copy holds every row of every table as the source does, reads the same
/// sync pages, and goes on as the same catalog: its next sequence number, usage app and
/// audit entry follow the copied ones.
pub fn a_copy_holds_every_row_and_goes_on_as_the_same_catalog(new_store: NewBulkStore<'_>) {
    let (from, to) = (new_store(), new_store());
    fill(&*from);
    let source_rows = rows(&*from);
    for table in TABLES {
        assert!(
            source_rows.iter().any(|row| row.table.name == table.name),
            "the filled store has no row in {}",
            table.name
        );
    }
    let mut loaded = 0;
    bulk::copy(&*from, &*to, &mut |_| loaded += 1).unwrap();
    assert_eq!(loaded, source_rows.len());
    assert_eq!(rows(&*to), source_rows);
    let verified = bulk::verify(&*from, &*to).unwrap().unwrap();
    assert_eq!(verified.counts.total(), source_rows.len() as u64);
    assert_eq!(verified.rows, source_rows.len() as u64);
    assert_eq!(verified.synced_records, all(&*from).len() as u64);
    assert_eq!(from.servers_running().unwrap(), 0);
    assert_eq!(to.state().unwrap(), from.state().unwrap());
    let texts: Vec<String> = all(&*to)
        .into_iter()
        .filter(|(c, _)| *c == Collection::Packages)
        .map(|(_, text)| text)
        .take(3)
        .collect();
    assert_eq!(texts, UNUSUAL_TEXTS);
    assert_eq!(
        with(&*to, |w| w.find(&crate::Lookup::Package("smile-😀"))),
        [UNUSUAL_TEXTS[1]]
    );

    // A stats row changed in the target: the same counts and sync pages, one row differs.
    with(&*to, |w| {
        w.upsert_stats(&StatsRow::new("2015-01-02", "tracker", "1.0.0", 9, 9).unwrap())
    });
    let mismatch = bulk::verify(&*from, &*to).unwrap().unwrap_err();
    assert!(
        matches!(&mismatch, bulk::Mismatch::Row { table: "stats", row: 1, what }
            if what.starts_with(r#"day = "2015-01-02", name = "tracker", version = "1.0.0""#)),
        "{mismatch:?}"
    );
    with(&*to, |w| {
        w.upsert_stats(&StatsRow::new("2015-01-02", "tracker", "1.0.0", 3, 4).unwrap())
    });
    assert!(bulk::verify(&*from, &*to).unwrap().is_ok());

    let head = from.state().unwrap().head_seq;
    with(&*to, |w| {
        w.upsert(&record(Collection::Packages, "new", "1"))?;
        w.record_usage(day("2024-10-03"), &app("C", &[("tracker", "1.0.0", true)]))?;
        w.audit(&AuditEntry {
            time: 3,
            actor: "ada".into(),
            address: None,
            action: "later".into(),
            target: "t".into(),
            package: None,
            detail: serde_json::json!({}),
        })
    });
    assert_eq!(to.state().unwrap().head_seq, head + 1);
    let audit = to
        .audit_log(&AuditQuery {
            limit: 10,
            ..AuditQuery::default()
        })
        .unwrap();
    assert_eq!(audit.len(), 3, "{audit:?}");
    let counts = to.row_counts().unwrap();
    let apps = counts
        .by_table()
        .find(|(table, _)| table.name == "usage_apps")
        .map(|(_, n)| n);
    assert_eq!(apps, Some(3));
}

/// Checks that a load into a store holding anything is refused, naming what it holds, and
/// changes nothing; and that an emptied store (records deleted) is not empty either.
pub fn a_load_into_a_store_that_is_not_empty_is_refused(new_store: NewBulkStore<'_>) {
    let (from, to) = (new_store(), new_store());
    fill(&*from);
    with(&*to, |w| {
        w.accounts().insert_user(&User {
            id: "u9".into(),
            username: "zed".into(),
            admin: false,
        })
    });
    let before = rows(&*to);
    let refused = bulk::copy(&*from, &*to, &mut |_| {}).unwrap_err();
    assert!(
        matches!(&refused, StoreError::NotEmpty(what) if what == "users 1"),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("empty"), "{refused}");
    assert_eq!(rows(&*to), before);

    let emptied = new_store();
    with(&*emptied, |w| {
        w.upsert(&record(Collection::Packages, "p", "1"))?;
        w.delete(Collection::Packages, "p").map(drop)
    });
    let refused = bulk::copy(&*from, &*emptied, &mut |_| {}).unwrap_err();
    assert!(matches!(refused, StoreError::NotEmpty(_)), "{refused:?}");
}

/// Checks that a load whose rows fail part way, or break the sequence contract, stores
/// nothing, and that the store then takes a good load.
pub fn a_failed_load_stores_nothing(new_store: NewBulkStore<'_>) {
    let (from, to) = (new_store(), new_store());
    fill(&*from);
    let source = rows(&*from);
    let fresh = rows(&*to);

    let mut given = source.clone().into_iter().take(8);
    let failed = to
        .load_rows(&mut || match given.next() {
            Some(row) => Ok(Some(row)),
            None => Err(StoreError::Aborted),
        })
        .unwrap_err();
    assert!(matches!(failed, StoreError::Aborted), "{failed:?}");
    assert_eq!(rows(&*to), fresh);

    // The meta row says head 1, yet records go up to the source's head.
    let mut broken = source.clone();
    let meta = broken
        .iter_mut()
        .find(|row| row.table.name == META)
        .unwrap();
    meta.values[2] = Value::Int(1);
    let mut given = broken.into_iter();
    let refused = to.load_rows(&mut || Ok(given.next())).unwrap_err();
    assert!(matches!(refused, StoreError::Corrupt(_)), "{refused:?}");
    assert_eq!(rows(&*to), fresh);

    let mut given = source.clone().into_iter();
    to.load_rows(&mut || Ok(given.next())).unwrap();
    assert_eq!(rows(&*to), source);
}

/// Checks that a dump bulk loaded into an empty store ([`bulk::import_dump`]) stores what
/// its upserts would, and that a dump whose records share an `_id` or a natural key, whose
/// stats rows share a day, name and version, or a store that is not empty, is refused
/// ([`StoreError::BulkRefused`], [`StoreError::NotEmpty`]) and stores nothing (the import
/// then takes the upserts).
pub fn a_bulk_imported_dump_is_stored_as_upserts_would(new_store: NewBulkStore<'_>) {
    let dump = [
        r#"{"collection":"packages","doc":{"_id":"p1","name":"a-b","lastUpdated":{"$date":5}}}"#,
        r#"{"collection":"stats","date":"2015-01-02","doc":{"name":"a","version":"1.0.0","directAdds":1,"totalAdds":2}}"#,
        r#"{"collection":"versions","doc":{"_id":"v1","packageName":"a-b","version":"1.0.0","s":"\u0000😀"}}"#,
        r#"{"collection":"packages","doc":{"_id":"p2","name":"ab"}}"#,
    ]
    .join("\n");
    let (bulk_loaded, upserted) = (new_store(), new_store());
    let epoch = bulk_loaded.state().unwrap().epoch;
    let summary =
        bulk::import_dump(&*bulk_loaded, dump.as_bytes(), &ImportOptions::default()).unwrap();
    assert_eq!(
        summary,
        crate::dump::import(&*upserted, dump.as_bytes()).unwrap()
    );
    let (state, expected) = (bulk_loaded.state().unwrap(), upserted.state().unwrap());
    assert_eq!(state.epoch, epoch, "the store keeps its epoch");
    assert_eq!(
        (state.head_seq, state.change_counters, state.stats_latest),
        (
            expected.head_seq,
            expected.change_counters,
            expected.stats_latest
        )
    );
    let without_meta = |store: &dyn BulkStore| -> Vec<Row> {
        rows(store)
            .into_iter()
            .filter(|row| row.table.name != META)
            .collect()
    };
    assert_eq!(without_meta(&*bulk_loaded), without_meta(&*upserted));
    let refused = bulk::import_dump(&*bulk_loaded, dump.as_bytes(), &ImportOptions::default());
    assert!(
        matches!(refused, Err(DumpError::Store(StoreError::NotEmpty(_)))),
        "{refused:?}"
    );

    for twice in [
        concat!(
            r#"{"collection":"packages","doc":{"_id":"p1","name":"a"}}"#,
            "\n",
            r#"{"collection":"packages","doc":{"_id":"p1","name":"b"}}"#
        ),
        concat!(
            r#"{"collection":"versions","doc":{"_id":"v1","packageName":"a","version":"1.0.0"}}"#,
            "\n",
            r#"{"collection":"versions","doc":{"_id":"v2","packageName":"a","version":"1.0.0"}}"#
        ),
        concat!(
            r#"{"collection":"stats","date":"2015-01-02","doc":{"name":"a","version":"1.0.0","directAdds":1,"totalAdds":2}}"#,
            "\n",
            r#"{"collection":"stats","date":"2015-01-02","doc":{"name":"a","version":"1.0.0","directAdds":3,"totalAdds":4}}"#
        ),
        // The second is read the general way (an escape in a key field), the first in one
        // pass: both are keyed alike.
        concat!(
            r#"{"collection":"versions","doc":{"_id":"v1","packageName":"a","version":"1.0.0"}}"#,
            "\n",
            r#"{"collection":"versions","doc":{"_id":"v2","packageName":"\u0061","version":"1.0.0"}}"#
        ),
        r#"{"collection":"versions","doc":{"_id":"v1","packageName":1,"version":"1.0.0"}}"#,
    ] {
        let store = new_store();
        let fresh = rows(&*store);
        let refused = bulk::import_dump(&*store, twice.as_bytes(), &ImportOptions::default());
        assert!(
            matches!(refused, Err(DumpError::Store(StoreError::BulkRefused(_)))),
            "{refused:?}"
        );
        assert_eq!(rows(&*store), fresh);
    }
}

/// Checks that a bulk import refuses every invalid line of [`BAD_LINES`] as an import record
/// by record does, naming the same line with the same reason, and stores nothing.
pub fn a_bulk_import_refuses_bad_lines_as_upserts_do(new_store: NewBulkStore<'_>) {
    let (bulk_loaded, upserted) = (new_store(), new_store());
    let fresh = rows(&*bulk_loaded);
    for (bad, _) in BAD_LINES {
        let dump = dump_with(bad);
        let refused = bulk::import_dump(&*bulk_loaded, dump.as_bytes(), &ImportOptions::default())
            .unwrap_err();
        let expected = crate::dump::import(&*upserted, dump.as_bytes()).unwrap_err();
        assert!(
            matches!(refused, DumpError::Line { line: 3, .. }),
            "{refused}"
        );
        assert_eq!(refused.to_string(), expected.to_string());
        assert_eq!(rows(&*bulk_loaded), fresh);
    }
}

/// A dump of `n` package records, more than the rows that may wait between an import's
/// reading and loading threads when `n` is in the thousands.
fn many_packages(n: usize) -> String {
    (0..n)
        .map(|i| format!(r#"{{"collection":"packages","doc":{{"_id":"p{i}","name":"pkg{i}"}}}}"#))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Checks that a dump bigger than what waits between an import's threads, imported into a
/// store that is not empty, is refused cleanly ([`StoreError::NotEmpty`]): the reader,
/// blocked on a full channel while the load fails, stops; nothing hangs and nothing is
/// stored.
pub fn a_big_dump_into_a_store_that_is_not_empty_is_refused(new_store: NewBulkStore<'_>) {
    let store = new_store();
    store
        .write(&mut |w| {
            w.upsert(&Record::from_json(Collection::Packages, r#"{"_id":"x","name":"x"}"#).unwrap())
                .map(|_| ())
        })
        .unwrap();
    let before = rows(&*store);
    let dump = many_packages(5000);
    let refused = bulk::import_dump(&*store, dump.as_bytes(), &ImportOptions::default());
    assert!(
        matches!(refused, Err(DumpError::Store(StoreError::NotEmpty(_)))),
        "{refused:?}"
    );
    assert_eq!(rows(&*store), before);
}

/// Checks that a bad line far into a big dump (after more rows than wait between an
/// import's threads were loaded) names that line and stores nothing.
pub fn a_bad_line_far_into_a_big_dump_stores_nothing(new_store: NewBulkStore<'_>) {
    let store = new_store();
    let fresh = rows(&*store);
    let dump = format!("{}\n{{\"collection\":\"packages\"", many_packages(5000));
    let refused =
        bulk::import_dump(&*store, dump.as_bytes(), &ImportOptions::default()).unwrap_err();
    assert!(
        matches!(refused, DumpError::Line { line: 5001, .. }),
        "{refused}"
    );
    assert_eq!(rows(&*store), fresh);
}

/// Stamps one `#[test]` per [`BulkStore`] conformance body (module `bulk`), each calling the
/// body with the factory `$new_store`, an expression evaluated once per test that makes
/// `Arc<dyn BulkStore>`s. A backend runs it beside
/// [`conformance_tests!`](crate::conformance_tests).
#[macro_export]
macro_rules! bulk_conformance_tests {
    ($new_store:expr) => {
        mod bulk {
            #[allow(unused_imports)]
            use super::*;
            $crate::bulk_conformance_tests! {
                @stamp $new_store;
                a_copy_holds_every_row_and_goes_on_as_the_same_catalog,
                a_load_into_a_store_that_is_not_empty_is_refused,
                a_failed_load_stores_nothing,
                a_bulk_imported_dump_is_stored_as_upserts_would,
                a_bulk_import_refuses_bad_lines_as_upserts_do,
                a_big_dump_into_a_store_that_is_not_empty_is_refused,
                a_bad_line_far_into_a_big_dump_stores_nothing
            }
        }
    };
    (@stamp $new_store:expr; $($body:ident),+) => {
        $(
            #[test]
            fn $body() {
                let new_store = $new_store;
                $crate::conformance::bulk::$body(&new_store);
            }
        )+
    };
}
