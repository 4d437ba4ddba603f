//! Two handles on one data directory (as `exosphere serve` and `exosphere import` in two
//! processes): what one commits, the other sees.

use std::sync::Arc;
use std::time::Duration;

use exosphere_catalog::conformance::usage::{app, day, file, rows};
use exosphere_catalog::usage::{Recorder, RecorderOptions, roll_up};
use exosphere_catalog::{CatalogStore, Collection, Record, StatsRow, watch};
use exosphere_catalog_sqlite::open_sqlite;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorder_acknowledges_only_committed_reports() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn CatalogStore> = Arc::new(open_sqlite(dir.path()).unwrap());
    let recorder = Recorder::start(
        Arc::clone(&store),
        &RecorderOptions {
            queue: 8,
            batch_size: 16,
            batch_delay: Duration::from_millis(2),
            count_unknown_packages: true,
        },
    );
    let calls: Vec<_> = (0..200)
        .map(|i| {
            let recorder = recorder.clone();
            let report = app(&format!("app{i}"), &[("tracker", "1.0.0", i % 2 == 0)]);
            tokio::spawn(async move { recorder.record(day("2024-10-01"), report).await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    // Every acknowledged report is visible to another handle on the same file.
    let other = open_sqlite(dir.path()).unwrap();
    assert_eq!(roll_up(&other, day("2024-10-01")).unwrap(), Some(1));
    assert_eq!(
        file(&other, "2024-10-01"),
        rows(&[("tracker", "1.0.0", 100, 200)])
    );
    drop(recorder);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sees_writes_from_another_handle_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let served: Arc<dyn CatalogStore> = Arc::new(open_sqlite(dir.path()).unwrap());
    let importer = open_sqlite(dir.path()).unwrap();
    let mut rx = watch(served, Duration::from_millis(100));
    assert_eq!(rx.borrow().head_seq, 0);

    let record = Record::from_json(Collection::Builds, r#"{"_id":"b"}"#).unwrap();
    let row = StatsRow::new("2015-05-06", "a", "1.0.0", 1, 1).unwrap();
    tokio::task::spawn_blocking(move || {
        importer.write(&mut |w| {
            w.upsert(&record)?;
            w.upsert_stats(&row)
        })
    })
    .await
    .unwrap()
    .unwrap();

    tokio::time::timeout(Duration::from_secs(1), rx.changed())
        .await
        .expect("change seen within a second")
        .unwrap();
    let state = rx.borrow_and_update().clone();
    assert_eq!(state.head_seq, 1);
    assert_eq!(state.changes(Collection::Builds), 1);
    assert_eq!(state.stats_latest.as_deref(), Some("2015-05-06"));
}
