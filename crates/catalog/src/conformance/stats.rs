//! Per-package stats ranges read from the store's stats rows.

use chrono::NaiveDate;

use super::NewStore;
use crate::day::parse_day;
use crate::record::StatsRow;
use crate::stats::{Interval, RangeError, package_stats};

fn day(text: &str) -> NaiveDate {
    parse_day(text).unwrap()
}

/// Checks that package ranges sum per period and version with a trend.
pub fn package_ranges_sum_per_period_and_version_with_a_trend(new_store: NewStore<'_>) {
    let store = new_store();
    let rows = [
        // The previous 14-day range (2024-09-16 … 2024-09-29): 4 total, 2 direct.
        ("2024-09-20", "tracker", "1.0.0", 2, 4),
        // The range 2024-09-30 (a Monday) … 2024-10-13.
        ("2024-09-30", "tracker", "1.0.0", 1, 3),
        ("2024-10-01", "tracker", "1.1.0", 2, 2),
        ("2024-10-07", "tracker", "1.1.0", 0, 1),
        ("2024-10-13", "tracker", "1.1.0", 1, 4),
        // Outside the range, or another package.
        ("2024-10-14", "tracker", "1.1.0", 9, 9),
        ("2024-10-01", "ddp", "1.0.0", 9, 9),
    ];
    store
        .write(&mut |w| {
            rows.iter().try_for_each(|(d, n, v, direct, total)| {
                w.upsert_stats(&StatsRow::new(*d, *n, *v, *direct, *total).unwrap())
            })
        })
        .unwrap();
    let stats = package_stats(
        &*store,
        "tracker",
        day("2024-09-30"),
        day("2024-10-13"),
        Interval::Week,
        366,
    )
    .unwrap();
    let json = serde_json::to_value(&stats).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "name": "tracker", "interval": "week",
            "from": "2024-09-30", "to": "2024-10-13", "directAdds": 4, "totalAdds": 10,
            "versions": [
                {"version": "1.1.0", "directAdds": 3, "totalAdds": 7},
                {"version": "1.0.0", "directAdds": 1, "totalAdds": 3},
            ],
            "periods": [
                {"from": "2024-09-30", "to": "2024-10-06", "directAdds": 3, "totalAdds": 5,
                 "versions": [
                    {"version": "1.0.0", "directAdds": 1, "totalAdds": 3},
                    {"version": "1.1.0", "directAdds": 2, "totalAdds": 2},
                 ]},
                {"from": "2024-10-07", "to": "2024-10-13", "directAdds": 1, "totalAdds": 5,
                 "versions": [{"version": "1.1.0", "directAdds": 1, "totalAdds": 5}]},
            ],
            "trend": {
                "previousFrom": "2024-09-16", "previousTo": "2024-09-29",
                "previous": {"directAdds": 2, "totalAdds": 4},
                "totalAddsChange": 1.5, "directAddsChange": 1.0,
            },
        })
    );

    // Months are clipped to the range.
    let stats = package_stats(
        &*store,
        "tracker",
        day("2024-09-25"),
        day("2024-10-20"),
        Interval::Month,
        366,
    )
    .unwrap();
    let spans: Vec<(String, String, u64)> = stats
        .periods
        .iter()
        .map(|p| (p.from.to_string(), p.to.to_string(), p.adds.total_adds))
        .collect();
    assert_eq!(
        spans,
        [
            ("2024-09-25".into(), "2024-09-30".into(), 3),
            ("2024-10-01".into(), "2024-10-20".into(), 16)
        ]
    );
    // 19 adds against 4 in the 26 days before (2024-08-30 … 2024-09-24).
    assert_eq!(stats.trend.total_adds_change, Some(3.75));
    let quiet = package_stats(
        &*store,
        "tracker",
        day("2024-09-01"),
        day("2024-09-10"),
        Interval::Day,
        366,
    )
    .unwrap();
    assert_eq!(
        quiet.trend.total_adds_change, None,
        "nothing before: no ratio"
    );
    let days = package_stats(
        &*store,
        "tracker",
        day("2024-10-01"),
        day("2024-10-03"),
        Interval::Day,
        366,
    )
    .unwrap();
    assert_eq!(days.periods.len(), 3);
    assert_eq!(days.periods[2].versions, []);

    assert!(matches!(
        package_stats(
            &*store,
            "tracker",
            day("2024-10-02"),
            day("2024-10-01"),
            Interval::Day,
            366
        ),
        Err(RangeError::Reversed { .. })
    ));
    assert!(matches!(
        package_stats(
            &*store,
            "tracker",
            day("2023-01-01"),
            day("2024-10-01"),
            Interval::Day,
            366
        ),
        Err(RangeError::TooLong { max: 366, .. })
    ));
    assert_eq!("week".parse(), Ok(Interval::Week));
    assert!("year".parse::<Interval>().is_err());
}
