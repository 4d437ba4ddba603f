//! Usage recording and daily rollups: the counting rules of [`crate::usage`].

use chrono::NaiveDate;

use super::NewStore;
use crate::record::StatsRow;
use crate::store::CatalogStore;
use crate::usage::{AppReport, UsedPackage, catch_up, roll_up};

/// The day written `text` (`YYYY-MM-DD`); shared with backends' own usage tests.
pub fn day(text: &str) -> NaiveDate {
    crate::day::parse_day(text).unwrap()
}

/// A report of `app` listing `(name, version, direct)`.
pub fn app(app: &str, packages: &[(&str, &str, bool)]) -> AppReport {
    let packages = packages
        .iter()
        .map(|(name, version, direct)| UsedPackage {
            name: (*name).to_owned(),
            version: (*version).to_owned(),
            direct: *direct,
        })
        .collect();
    AppReport::new(app, packages).unwrap()
}

fn record(store: &dyn CatalogStore, on: &str, reports: &[AppReport]) {
    store
        .write(&mut |w| {
            reports
                .iter()
                .try_for_each(|report| w.record_usage(day(on), report))
        })
        .unwrap();
}

/// `(name, version, directAdds, totalAdds)` of a day, or `None` without a file.
pub fn file(store: &dyn CatalogStore, on: &str) -> Option<Vec<(String, String, u64, u64)>> {
    let rows = super::store::stats_rows(store, on)?;
    Some(
        rows.iter()
            .map(|r| {
                (
                    r.name().to_owned(),
                    r.version().to_owned(),
                    r.direct_adds(),
                    r.total_adds(),
                )
            })
            .collect(),
    )
}

/// [`file`]'s answer for these rows, spelled as tuples of literals.
pub fn rows(expected: &[(&str, &str, u64, u64)]) -> Option<Vec<(String, String, u64, u64)>> {
    Some(
        expected
            .iter()
            .map(|(n, v, d, t)| ((*n).to_owned(), (*v).to_owned(), *d, *t))
            .collect(),
    )
}

/// Several simulated days, each number computed by hand from the rules in the module
/// docs (spec §7.2).
pub fn several_days_roll_up_to_hand_computed_rows(new_store: NewStore<'_>) {
    let store = new_store();
    let a1 = app("A", &[("tracker", "1.0.0", true), ("ddp", "1.0.0", false)]);
    record(
        &*store,
        "2024-10-01",
        &[
            a1.clone(),
            app("B", &[("tracker", "1.0.0", false), ("ddp", "1.0.0", true)]),
            a1.clone(), // the same list again adds nothing
        ],
    );
    record(
        &*store,
        "2024-10-02",
        &[
            // A upgrades tracker: the new version is added.
            app("A", &[("tracker", "1.1.0", true), ("ddp", "1.0.0", false)]),
            app("C", &[("tracker", "1.0.0", true)]),
            // B now lists tracker directly, but that version already appeared in B.
            app("B", &[("tracker", "1.0.0", true), ("ddp", "1.0.0", true)]),
        ],
    );
    // A goes back to a version it had before: nothing is new.
    record(&*store, "2024-10-03", &[a1.clone(), a1]);

    assert_eq!(
        store.pending_usage_days(day("2024-10-04")).unwrap(),
        [day("2024-10-01"), day("2024-10-02"), day("2024-10-03")]
    );
    let done = catch_up(&*store, day("2024-10-04")).unwrap();
    assert_eq!(
        done,
        [
            (day("2024-10-01"), 2),
            (day("2024-10-02"), 2),
            (day("2024-10-03"), 0)
        ]
    );
    assert_eq!(
        file(&*store, "2024-10-01"),
        rows(&[("ddp", "1.0.0", 1, 2), ("tracker", "1.0.0", 1, 2)])
    );
    assert_eq!(
        file(&*store, "2024-10-02"),
        rows(&[("tracker", "1.0.0", 1, 1), ("tracker", "1.1.0", 1, 1)])
    );
    assert_eq!(
        file(&*store, "2024-10-03"),
        rows(&[]),
        "rolled up, nothing added"
    );
    assert_eq!(file(&*store, "2024-10-04"), None, "never recorded");
    let state = store.state().unwrap();
    assert_eq!(state.stats_earliest.as_deref(), Some("2024-10-01"));
    assert_eq!(state.stats_latest.as_deref(), Some("2024-10-03"));

    // Idempotent: nothing is pending any more, and rolling up again changes nothing.
    assert!(catch_up(&*store, day("2024-10-04")).unwrap().is_empty());
    assert_eq!(roll_up(&*store, day("2024-10-01")).unwrap(), Some(2));
    assert_eq!(
        file(&*store, "2024-10-01"),
        rows(&[("ddp", "1.0.0", 1, 2), ("tracker", "1.0.0", 1, 2)])
    );

    // A late recording makes its day pending again; only that day is rolled up.
    record(
        &*store,
        "2024-10-02",
        &[app("D", &[("ddp", "2.0.0", false)])],
    );
    assert_eq!(
        catch_up(&*store, day("2024-10-04")).unwrap(),
        [(day("2024-10-02"), 3)]
    );
    assert_eq!(
        file(&*store, "2024-10-02"),
        rows(&[
            ("ddp", "2.0.0", 0, 1),
            ("tracker", "1.0.0", 1, 1),
            ("tracker", "1.1.0", 1, 1)
        ])
    );
    // Days not before `today` wait: the current day is still being recorded.
    record(
        &*store,
        "2024-10-04",
        &[app("E", &[("ddp", "2.0.0", true)])],
    );
    assert!(catch_up(&*store, day("2024-10-04")).unwrap().is_empty());
    assert_eq!(roll_up(&*store, day("2024-10-04")).unwrap(), Some(1));
    assert_eq!(file(&*store, "2024-10-04"), rows(&[("ddp", "2.0.0", 1, 1)]));
}

/// A hand rollup of the current UTC day serves its file but is not advertised by the
/// `stats` publication: consumers fetch an advertised day once (spec §4.4, §7.2).
pub fn a_rollup_of_today_is_not_advertised(new_store: NewStore<'_>) {
    let store = new_store();
    let today = chrono::Utc::now().date_naive();
    let yesterday = today.pred_opt().unwrap();
    for d in [yesterday, today] {
        record(
            &*store,
            &d.to_string(),
            &[app("A", &[("tracker", "1.0.0", true)])],
        );
        roll_up(&*store, d).unwrap();
    }
    // A run crossing midnight sees today become yesterday's successor; re-read the clock.
    let now = chrono::Utc::now().date_naive();
    assert!(file(&*store, &today.to_string()).is_some());
    let state = store.state().unwrap();
    let expected = now.pred_opt().unwrap().min(today).to_string();
    assert_eq!(state.stats_latest.as_deref(), Some(expected.as_str()));
    assert_eq!(state.stats_earliest, Some(yesterday.to_string()));
}

/// Checks that rollup replaces imported rows of recorded days only.
pub fn rollup_replaces_imported_rows_of_recorded_days_only(new_store: NewStore<'_>) {
    let store = new_store();
    let imported = [
        StatsRow::new("2024-09-30", "tracker", "0.9.0", 7, 9).unwrap(),
        StatsRow::new("2024-10-01", "tracker", "0.9.0", 5, 5).unwrap(),
    ];
    store
        .write(&mut |w| imported.iter().try_for_each(|r| w.upsert_stats(r)))
        .unwrap();
    record(
        &*store,
        "2024-10-01",
        &[app("A", &[("tracker", "1.0.0", true)])],
    );
    assert_eq!(roll_up(&*store, day("2024-09-30")).unwrap(), None);
    assert_eq!(
        catch_up(&*store, day("2024-10-02")).unwrap(),
        [(day("2024-10-01"), 1)]
    );
    assert_eq!(
        file(&*store, "2024-09-30"),
        rows(&[("tracker", "0.9.0", 7, 9)])
    );
    assert_eq!(
        file(&*store, "2024-10-01"),
        rows(&[("tracker", "1.0.0", 1, 1)])
    );
}

/// The recorder's default rule (`crate::usage` module docs): only versions the catalog
/// holds count, a report left with nothing is not recorded, and
/// `count_unknown_packages` counts everything.
pub fn the_recorder_counts_only_versions_the_catalog_holds(new_store: NewStore<'_>) {
    use std::sync::Arc;

    use crate::usage::{Recorder, RecorderOptions};
    use crate::{Collection, Record};

    let store = new_store();
    store
        .write(&mut |w| {
            let version = r#"{"_id":"v1","packageName":"tracker","version":"1.0.0"}"#;
            w.upsert(&Record::from_json(Collection::Versions, version).unwrap())?;
            Ok(())
        })
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let record_with = |options: RecorderOptions, on: &str, report: AppReport| {
        runtime.block_on(async {
            let recorder = Recorder::start(Arc::clone(&store), &options);
            recorder.record(day(on), report).await.unwrap();
        });
    };
    let known_only = RecorderOptions::default();
    record_with(
        known_only.clone(),
        "2024-10-01",
        app(
            "A",
            &[("tracker", "1.0.0", true), ("made-up", "1.0.0", true)],
        ),
    );
    record_with(
        known_only,
        "2024-10-02",
        app("B", &[("made-up", "2.0.0", true)]),
    );
    assert_eq!(roll_up(&*store, day("2024-10-01")).unwrap(), Some(1));
    assert_eq!(
        file(&*store, "2024-10-01"),
        rows(&[("tracker", "1.0.0", 1, 1)])
    );
    assert_eq!(
        roll_up(&*store, day("2024-10-02")).unwrap(),
        None,
        "a report of made-up names only is not recorded at all"
    );
    let everything = RecorderOptions {
        count_unknown_packages: true,
        ..RecorderOptions::default()
    };
    record_with(
        everything,
        "2024-10-03",
        app("C", &[("made-up", "1.0.0", false)]),
    );
    assert_eq!(roll_up(&*store, day("2024-10-03")).unwrap(), Some(1));
    assert_eq!(
        file(&*store, "2024-10-03"),
        rows(&[("made-up", "1.0.0", 0, 1)])
    );
}
