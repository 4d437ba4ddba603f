//! The record operations of the store: sequence numbers, pages, transactions, deletion epochs,
//! stats rows and natural-key lookups.

use super::{NewStore, with};
use crate::Collection;
use crate::error::StoreError;
use crate::record::{Record, StatsRow};
use crate::store::{CatalogStore, Cursors, ExportItem, Lookup, PageLimits, Snapshot, Upsert};

fn rec(c: Collection, json: &str) -> Record {
    Record::from_json(c, json).unwrap()
}

/// A record of collection `c` with `_id` `id`, value `v` = `body` and `lastUpdated` 7;
/// shared with backends' own tests.
pub fn record(c: Collection, id: &str, body: &str) -> Record {
    Record::from_json(
        c,
        &format!(r#"{{"_id":"{id}","v":{body},"lastUpdated":{{"$date":7}}}}"#),
    )
    .unwrap()
}

/// A day's stats rows as [`CatalogStore::stats_day`] visits them, or `None` when the day
/// has no data.
pub fn stats_rows(store: &dyn CatalogStore, day: &str) -> Option<Vec<StatsRow>> {
    let mut rows = Vec::new();
    let found = store
        .stats_day(day, &mut |row| {
            rows.push(row.clone());
            Ok(())
        })
        .unwrap();
    found.then_some(rows)
}

/// Page limits that cut by count only; shared with backends' own tests.
pub fn by_count(records: usize) -> PageLimits {
    PageLimits {
        records,
        bytes: usize::MAX,
    }
}

/// Upserts `r` in a transaction of its own and returns what the upsert did.
pub fn upsert(store: &dyn CatalogStore, r: &Record) -> Upsert {
    with(store, |w| w.upsert(r))
}

/// Every record of the store, as (collection, text), in export order.
pub fn all(store: &dyn CatalogStore) -> Vec<(Collection, String)> {
    let mut out = Vec::new();
    store
        .export(&mut |item| {
            if let ExportItem::Record { collection, json } = item {
                out.push((collection, json.to_owned()));
            }
            Ok(())
        })
        .unwrap();
    out
}

/// Asserts that the store's snapshot is its state's epoch and head sequence (the store is
/// not written meanwhile).
fn assert_snapshot_is_state(store: &dyn CatalogStore) {
    let state = store.state().unwrap();
    assert_eq!(
        store.snapshot().unwrap(),
        Snapshot {
            epoch: state.epoch,
            head_seq: state.head_seq
        },
        "the snapshot is the state's epoch and head sequence"
    );
}

/// Checks that upsert assigns increasing seq and skips identical text.
pub fn upsert_assigns_increasing_seq_and_skips_identical_text(new_store: NewStore<'_>) {
    let store = new_store();
    let a = record(Collection::Versions, "a", "1");
    assert_eq!(upsert(&*store, &a), Upsert::Inserted);
    assert_eq!(
        upsert(&*store, &record(Collection::Builds, "b", "1")),
        Upsert::Inserted
    );
    let before = store.state().unwrap();
    assert_eq!(upsert(&*store, &a), Upsert::Unchanged);
    assert_eq!(store.state().unwrap(), before);
    assert_eq!(
        upsert(&*store, &record(Collection::Versions, "a", "2")),
        Upsert::Updated
    );
    let state = store.state().unwrap();
    assert_snapshot_is_state(&*store);
    assert_eq!(state.head_seq, 3);
    assert_eq!(state.changes(Collection::Versions), 2);
    assert_eq!(state.changes(Collection::Builds), 1);
    assert_eq!(state.epoch, before.epoch);

    let page = store.read_page(&Cursors::default(), &by_count(10)).unwrap();
    let versions = &page.records[Collection::Versions];
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].seq, 3);
    assert_eq!(versions[0].last_updated, Some(7));
    assert!(versions[0].json.contains(r#""v":2"#));
    assert_eq!(page.records[Collection::Builds][0].seq, 2);
    assert!(!page.has_more);
}

/// Checks that pages respect cursors and limit.
pub fn pages_respect_cursors_and_limit(new_store: NewStore<'_>) {
    let store = new_store();
    for i in 0..5 {
        upsert(
            &*store,
            &record(Collection::Packages, &format!("p{i}"), "0"),
        );
    }
    let page = store.read_page(&Cursors::default(), &by_count(2)).unwrap();
    let seqs: Vec<u64> = page.records[Collection::Packages]
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(seqs, [1, 2]);
    assert!(page.has_more);
    let mut cursors = Cursors::default();
    cursors[Collection::Packages] = 3;
    let page = store.read_page(&cursors, &by_count(2)).unwrap();
    let seqs: Vec<u64> = page.records[Collection::Packages]
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(seqs, [4, 5]);
    assert!(!page.has_more);
    assert_eq!(page.head_seq, 5);
    let page = store.read_page(&Cursors::default(), &by_count(0)).unwrap();
    assert_eq!(page.records[Collection::Packages].len(), 1);
    cursors[Collection::Packages] = u64::MAX;
    assert!(
        store.read_page(&cursors, &by_count(2)).unwrap().records[Collection::Packages].is_empty()
    );
}

/// Checks that a page is cut by bytes across collections, in collection order, and still
/// holds one record when the first is bigger than the budget.
pub fn pages_are_cut_by_bytes_across_collections(new_store: NewStore<'_>) {
    let store = new_store();
    let size = |r: &Record| r.json().len();
    let p1 = record(Collection::Packages, "p1", "1");
    let p2 = record(Collection::Packages, "p2", "2");
    let v1 = record(
        Collection::Versions,
        "v1",
        &format!("\"{}\"", "x".repeat(100)),
    );
    let b1 = record(Collection::Builds, "b1", "1");
    for r in [&p1, &p2, &v1, &b1] {
        upsert(&*store, r);
    }
    let ids = |page: &crate::store::Page, c: Collection| -> Vec<u64> {
        page.records[c].iter().map(|r| r.seq).collect()
    };
    let all_fit = size(&p1) + size(&p2) + size(&v1) + size(&b1);
    let page = store
        .read_page(
            &Cursors::default(),
            &PageLimits {
                records: 10,
                bytes: all_fit,
            },
        )
        .unwrap();
    assert_eq!(
        (
            ids(&page, Collection::Packages),
            ids(&page, Collection::Builds)
        ),
        (vec![1, 2], vec![4])
    );
    assert!(!page.has_more);

    let limits = PageLimits {
        records: 10,
        bytes: size(&p1) + size(&p2) + size(&v1) - 1,
    };
    let page = store.read_page(&Cursors::default(), &limits).unwrap();
    assert_eq!(ids(&page, Collection::Packages), [1, 2]);
    assert!(page.records[Collection::Versions].is_empty());
    assert!(
        page.records[Collection::Builds].is_empty(),
        "the cut ends the whole page"
    );
    assert!(page.has_more);

    let mut cursors = Cursors::default();
    cursors[Collection::Packages] = 2;
    let tiny = PageLimits {
        records: 10,
        bytes: 1,
    };
    let page = store.read_page(&cursors, &tiny).unwrap();
    assert_eq!(
        ids(&page, Collection::Versions),
        [3],
        "one record even over the budget"
    );
    assert!(page.records[Collection::Builds].is_empty());
    assert!(page.has_more);
    cursors[Collection::Versions] = 3;
    let page = store.read_page(&cursors, &tiny).unwrap();
    assert_eq!(ids(&page, Collection::Builds), [4]);
    assert!(!page.has_more);
}

/// Checks that the bytes a page has left for a collection count only the records it took
/// of the collections before: a record beyond a collection's count (one that only tells
/// the collection has more) takes none of the budget, so every later record that fits is
/// on the page.
pub fn a_record_beyond_the_count_takes_none_of_the_byte_budget(new_store: NewStore<'_>) {
    let store = new_store();
    let packages: Vec<Record> = (1..=4)
        .map(|i| {
            let text = if i == 4 {
                format!("\"{}\"", "x".repeat(400))
            } else {
                i.to_string()
            };
            record(Collection::Packages, &format!("p{i}"), &text)
        })
        .collect();
    let versions: Vec<Record> = (1..=3)
        .map(|i| record(Collection::Versions, &format!("v{i}"), &i.to_string()))
        .collect();
    for r in packages.iter().chain(&versions) {
        upsert(&*store, r);
    }
    let size = |records: &[Record]| records.iter().map(|r| r.json().len()).sum::<usize>();
    let limits = PageLimits {
        records: 3,
        bytes: size(&packages[..3]) + size(&versions),
    };
    let page = store.read_page(&Cursors::default(), &limits).unwrap();
    let seqs = |c: Collection| -> Vec<u64> { page.records[c].iter().map(|r| r.seq).collect() };
    assert_eq!(seqs(Collection::Packages), [1, 2, 3]);
    assert_eq!(
        seqs(Collection::Versions),
        [5, 6, 7],
        "the fourth package, beyond the count, takes none of the budget"
    );
    assert!(page.has_more);
}

/// Checks that failed write rolls back everything.
pub fn failed_write_rolls_back_everything(new_store: NewStore<'_>) {
    let store = new_store();
    let before = store.state().unwrap();
    let result = store.write(&mut |w| {
        w.upsert(&record(Collection::Packages, "p", "1"))?;
        w.upsert_stats(&StatsRow::new("2015-01-01", "p", "1.0.0", 1, 1).unwrap())?;
        Err(StoreError::Aborted)
    });
    assert!(matches!(result, Err(StoreError::Aborted)));
    assert_eq!(store.state().unwrap(), before);
    assert!(all(&*store).is_empty());
    assert_eq!(stats_rows(&*store, "2015-01-01"), None);
}

/// Checks that get reads inside the transaction.
pub fn get_reads_inside_the_transaction(new_store: NewStore<'_>) {
    let store = new_store();
    store
        .write(&mut |w| {
            assert_eq!(w.get(Collection::Builds, "b")?, None);
            w.upsert(&record(Collection::Builds, "b", "1"))?;
            assert!(
                w.get(Collection::Builds, "b")?
                    .unwrap()
                    .contains(r#""v":1"#)
            );
            assert_eq!(w.get(Collection::Versions, "b")?, None);
            Ok(())
        })
        .unwrap();
}

/// Checks that delete starts a new epoch and counts a change.
pub fn delete_starts_a_new_epoch_and_counts_a_change(new_store: NewStore<'_>) {
    let store = new_store();
    upsert(&*store, &record(Collection::ReleaseTracks, "t", "1"));
    let before = store.state().unwrap();
    let mut existed = Vec::new();
    store
        .write(&mut |w| {
            existed.push(w.delete(Collection::ReleaseTracks, "t")?);
            existed.push(w.delete(Collection::ReleaseTracks, "t")?);
            Ok(())
        })
        .unwrap();
    assert_eq!(existed, [true, false]);
    let after = store.state().unwrap();
    assert_ne!(after.epoch, before.epoch);
    assert_eq!(after.head_seq, before.head_seq);
    assert_snapshot_is_state(&*store);
    assert_eq!(after.changes(Collection::ReleaseTracks), 2);
    assert!(all(&*store).is_empty());

    // Deleting nothing changes nothing.
    store
        .write(&mut |w| w.delete(Collection::Packages, "nope").map(|_| ()))
        .unwrap();
    assert_eq!(store.state().unwrap(), after);
}

/// Checks that stats rows upsert and day range.
pub fn stats_rows_upsert_and_day_range(new_store: NewStore<'_>) {
    let store = new_store();
    assert_eq!(store.state().unwrap().stats_earliest, None);
    let rows = [
        StatsRow::new("2015-03-02", "b", "1.0.0", 1, 2).unwrap(),
        StatsRow::new("2015-03-02", "a", "1.0.0", 3, 4).unwrap(),
        StatsRow::new("2015-01-09", "a", "1.0.0", 5, 6).unwrap(),
        StatsRow::new("2015-03-02", "b", "1.0.0", 7, 8).unwrap(),
    ];
    store
        .write(&mut |w| rows.iter().try_for_each(|r| w.upsert_stats(r)))
        .unwrap();
    let state = store.state().unwrap();
    assert_eq!(state.stats_earliest.as_deref(), Some("2015-01-09"));
    assert_eq!(state.stats_latest.as_deref(), Some("2015-03-02"));
    assert_eq!(state.head_seq, 0);
    let day = stats_rows(&*store, "2015-03-02").unwrap();
    assert_eq!(day, [rows[1].clone(), rows[3].clone()]);
    assert_eq!(stats_rows(&*store, "2015-03-03"), None);
    assert_eq!(stats_rows(&*store, "garbage"), None);
}

/// Checks that natural keys find records.
pub fn natural_keys_find_records(new_store: NewStore<'_>) {
    let store = new_store();
    with(&*store, |w| {
        w.upsert(&rec(Collection::Packages, r#"{"_id":"p","name":"a:b"}"#))?;
        w.upsert(&rec(
            Collection::Versions,
            r#"{"_id":"v1","packageName":"a:b","version":"1.0.0"}"#,
        ))?;
        w.upsert(&rec(
            Collection::Versions,
            r#"{"_id":"v2","packageName":"a:b","version":"2.0.0"}"#,
        ))?;
        w.upsert(&rec(
            Collection::Builds,
            r#"{"_id":"b1","versionId":"v1","buildArchitectures":"os"}"#,
        ))?;
        w.upsert(&rec(
            Collection::Builds,
            r#"{"_id":"b2","versionId":"v1","buildArchitectures":"web"}"#,
        ))?;
        w.upsert(&rec(Collection::ReleaseTracks, r#"{"_id":"t","name":"T"}"#))?;
        w.upsert(&rec(
            Collection::ReleaseVersions,
            r#"{"_id":"r","track":"T","version":"1"}"#,
        ))?;
        w.upsert(&rec(
            Collection::ReleaseVersions,
            r#"{"_id":"r2","track":"T","version":"2"}"#,
        ))?;
        Ok(())
    });
    let ids = |key: Lookup<'static>| -> Vec<String> {
        with(&*store, |w| w.find(&key))
            .iter()
            .map(|json| {
                serde_json::from_str::<serde_json::Value>(json).unwrap()["_id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(ids(Lookup::Package("a:b")), ["p"]);
    assert!(ids(Lookup::Package("a:c")).is_empty());
    assert_eq!(
        ids(Lookup::Version {
            package: "a:b",
            version: "2.0.0"
        }),
        ["v2"]
    );
    assert_eq!(ids(Lookup::VersionsOf("a:b")), ["v1", "v2"]);
    assert_eq!(ids(Lookup::BuildsOf("v1")), ["b1", "b2"]);
    assert_eq!(ids(Lookup::ReleaseTrack("T")), ["t"]);
    assert_eq!(
        ids(Lookup::ReleaseVersion {
            track: "T",
            version: "1"
        }),
        ["r"]
    );
    assert_eq!(ids(Lookup::ReleaseVersionsOf("T")), ["r", "r2"]);
    assert!(ids(Lookup::ReleaseVersionsOf("U")).is_empty());
}

/// Checks that record text with `\u0000` escapes, characters beyond the BMP (raw and
/// escaped) and dotted or `$` keys comes back byte-identical from exports, pages and
/// natural-key lookups, and that keys sort by their bytes (as Rust's `str` does), whatever
/// the backend's collation.
pub fn unusual_text_round_trips_and_keys_sort_by_bytes(new_store: NewStore<'_>) {
    let store = new_store();
    let texts = [
        r#"{"_id":"nul","name":"a\u0000b","x":"\u0000"}"#,
        r#"{"_id":"astral","name":"smile-😀","s":"\ud83d\ude00"}"#,
        r#"{"_id":"dotted","name":"dots","a.b":{"c.d":1},"$weird":[1.50,1e3]}"#,
    ];
    for text in texts {
        upsert(&*store, &rec(Collection::Packages, text));
    }
    let exported: Vec<String> = all(&*store).into_iter().map(|(_, text)| text).collect();
    assert_eq!(exported, texts);
    let page = store.read_page(&Cursors::default(), &by_count(10)).unwrap();
    let paged: Vec<&str> = page.records[Collection::Packages]
        .iter()
        .map(|r| r.json.as_str())
        .collect();
    assert_eq!(paged, texts);
    for (name, text) in [("smile-😀", texts[1]), ("dots", texts[2])] {
        assert_eq!(with(&*store, |w| w.find(&Lookup::Package(name))), [text]);
    }

    let mut ids = [
        "b", "B", "é", "a", "Z", "~", "ä", "😀", "a.b", "a-b", "a b", "ab",
    ];
    with(&*store, |w| {
        for id in ids {
            w.mirror().stage(&record(Collection::Versions, id, "1"))?;
        }
        Ok(())
    });
    let staged: Vec<String> = with(&*store, |w| {
        w.mirror().staged(Collection::Versions, "", 100)
    })
    .into_iter()
    .map(|(id, _)| id)
    .collect();
    ids.sort_unstable();
    assert_eq!(staged, ids);
}
