//! The read model's recent adds: each package's direct and total adds over the last 30
//! finished days, counted from the catalog's rolled-up usage stats and stored in the index
//! (`Index::replace_adds`), where search boosts by them and the most-added and trending
//! lists rank by them.
//!
//! Counted again when the last finished day moves on, when the index file has none (a new
//! generation), and every [`RECOUNT_EVERY`] so that a late rollup (or one run by hand)
//! shows.

use std::collections::HashMap;
use std::hash::{Hash as _, Hasher as _};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{Days, NaiveDate};
use exosphere_catalog::{CatalogStore, StoreError};
use exosphere_index::{Index, PackageAdds};
use exosphere_web::ReadModel;

/// How often the adds are counted again when nothing else asks for it.
pub(super) const RECOUNT_EVERY: Duration = Duration::from_secs(3600);

/// Days counted: 35 = the last 7 and the 28 before them (trending), of which the last 30
/// make the 30-day counts.
const DAYS: u64 = 35;

/// Where the adds come from, and when they were last counted.
#[derive(Clone)]
pub(super) struct Usage {
    store: Arc<dyn CatalogStore>,
    counted: Counted,
}

impl Usage {
    /// The adds of `store`'s usage stats, not counted yet.
    pub(super) fn new(store: Arc<dyn CatalogStore>) -> Usage {
        Usage {
            store,
            counted: Counted::default(),
        }
    }

    /// Counts the adds into `index` when they are due, through yesterday (UTC), and tells
    /// `model` their stamp: called before the index is published, so an answer's entity
    /// tag names counts no newer than its body (the stamp is set after the counts commit).
    pub(super) fn refresh(&mut self, index: &mut Index, model: &ReadModel) -> anyhow::Result<()> {
        let today = chrono::Utc::now().date_naive();
        if let Some(stamp) = self.counted.refresh(&*self.store, index, today)? {
            model.usage_counted(stamp);
        }
        Ok(())
    }
}

/// When the adds were last counted, and through which day.
#[derive(Debug, Default, Clone)]
struct Counted {
    last: Option<(NaiveDate, Instant)>,
}

impl Counted {
    /// Counts the adds into `index` when they are due (see the module doc), through the day
    /// before `today`; returns a stamp of what was stored (the same counts give the same
    /// stamp) when it counted, for the API's entity tags.
    fn refresh(
        &mut self,
        store: &dyn CatalogStore,
        index: &mut Index,
        today: NaiveDate,
    ) -> anyhow::Result<Option<u64>> {
        let through = today - Days::new(1);
        let stored = index.adds_through()?;
        let due = match self.last {
            Some((day, at)) => {
                day != through
                    || at.elapsed() >= RECOUNT_EVERY
                    || stored.as_deref() != Some(&*through.to_string())
            }
            None => true,
        };
        if !due {
            return Ok(None);
        }
        let adds = count(store, through)?;
        index.replace_adds(&through.to_string(), &adds)?;
        self.last = Some((through, Instant::now()));
        tracing::debug!(%through, packages = adds.len(), "counted the recent adds");
        Ok(Some(stamp(through, &adds)))
    }
}

/// Each package's adds over the [`DAYS`] days through `through`, read a day at a time.
fn count(store: &dyn CatalogStore, through: NaiveDate) -> Result<Vec<PackageAdds>, StoreError> {
    let mut packages: HashMap<String, PackageAdds> = HashMap::new();
    for back in 0..DAYS {
        let day = through - Days::new(back);
        store.stats_day(&day.to_string(), &mut |row| {
            let adds = packages
                .entry(row.name().to_owned())
                .or_insert_with(|| PackageAdds {
                    package: row.name().to_owned(),
                    ..PackageAdds::default()
                });
            if back < 30 {
                adds.direct_30d += row.direct_adds();
                adds.total_30d += row.total_adds();
            }
            if back < 7 {
                adds.direct_7d += row.direct_adds();
            } else {
                adds.direct_prior_28d += row.direct_adds();
            }
            Ok(())
        })?;
    }
    let mut adds: Vec<PackageAdds> = packages.into_values().collect();
    adds.sort_unstable_by(|a, b| a.package.cmp(&b.package));
    Ok(adds)
}

/// A hash of the counts, the same for the same counts in any process.
fn stamp(through: NaiveDate, adds: &[PackageAdds]) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    through.hash(&mut hasher);
    for package in adds {
        package.package.hash(&mut hasher);
        package.direct_30d.hash(&mut hasher);
        package.total_30d.hash(&mut hasher);
        package.direct_7d.hash(&mut hasher);
        package.direct_prior_28d.hash(&mut hasher);
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use exosphere_catalog::StatsRow;

    #[test]
    fn adds_are_counted_over_30_days_and_the_weeks_for_trending() {
        let dir = tempfile::tempdir().unwrap();
        let store = exosphere_catalog_sqlite::open_sqlite(&dir.path().join("data")).unwrap();
        let today = NaiveDate::from_ymd_opt(2026, 12, 6).unwrap();
        // (days before today, package, version, direct, total)
        let rows = [
            (0, "a:pkg", "1.0.0", 1000, 1000), // today: not finished, not counted
            (1, "a:pkg", "1.0.0", 5, 7),
            (1, "a:pkg", "2.0.0", 3, 3),    // versions add up
            (7, "a:pkg", "2.0.0", 2, 2),    // the last of the 7 days
            (8, "a:pkg", "2.0.0", 11, 11),  // the first of the 28 before
            (30, "a:pkg", "2.0.0", 13, 13), // the last of the 30 days
            (31, "a:pkg", "2.0.0", 17, 17), // before the 30, within the 35
            (36, "a:pkg", "2.0.0", 19, 19), // before all of them
            (3, "b:pkg", "1.0.0", 0, 4),
        ];
        store
            .write(&mut |writer| {
                for (back, name, version, direct, total) in rows {
                    let day = (today - Days::new(back)).to_string();
                    writer
                        .upsert_stats(&StatsRow::new(day, name, version, direct, total).unwrap())?;
                }
                Ok(())
            })
            .unwrap();
        let adds = count(&store, today - Days::new(1)).unwrap();
        assert_eq!(
            adds,
            [
                PackageAdds {
                    package: "a:pkg".into(),
                    direct_30d: 5 + 3 + 2 + 11 + 13,
                    total_30d: 7 + 3 + 2 + 11 + 13,
                    direct_7d: 5 + 3 + 2,
                    direct_prior_28d: 11 + 13 + 17,
                },
                PackageAdds {
                    package: "b:pkg".into(),
                    total_30d: 4,
                    ..PackageAdds::default()
                },
            ]
        );

        // Stored in the index, counted again only when due, with the same stamp for the
        // same counts.
        let mut index = Index::open(&dir.path().join("index.sqlite3")).unwrap();
        let mut counted = Counted::default();
        let first = counted.refresh(&store, &mut index, today).unwrap();
        assert!(first.is_some());
        assert_eq!(index.adds_through().unwrap().as_deref(), Some("2026-12-05"));
        assert_eq!(counted.refresh(&store, &mut index, today).unwrap(), None);
        let tomorrow = today + Days::new(1);
        let next = counted.refresh(&store, &mut index, tomorrow).unwrap();
        assert!(next.is_some_and(|stamp| Some(stamp) != first));
        assert_eq!(index.adds_through().unwrap().as_deref(), Some("2026-12-06"));
        let mut again = Counted::default();
        assert_eq!(again.refresh(&store, &mut index, tomorrow).unwrap(), next);
    }
}
