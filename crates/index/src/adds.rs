//! Recent usage per package: the `adds` table, replaced whole by whoever counts adds (the
//! server's read model, from its rolled-up usage stats) and read by search's popularity
//! boost and by the most-added and trending lists. A client's index has none, and ranks
//! without it.

use rusqlite::{OptionalExtension as _, params};

use crate::error::IndexError;
use crate::handle::Index;
use crate::listing::sql_int;
use crate::query::SearchHit;
use crate::schema::update_boost;
use crate::search::popularity;

/// Direct adds a package needs in the last 7 days to trend: fewer is noise.
const TRENDING_MIN_ADDS: i64 = 3;

/// Adds a trending package's weekly baseline is padded with, so that a package going from
/// nothing to a handful does not outrank one going from hundreds to thousands.
const TRENDING_BASELINE: f64 = 5.0;

/// One package's recent adds, counted over the days ending with [`Index::replace_adds`]'s
/// `through` day.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackageAdds {
    /// The package name.
    pub package: String,
    /// Direct adds (apps that list it in `.meteor/packages`) over the last 30 days.
    pub direct_30d: u64,
    /// Direct and indirect adds over the last 30 days.
    pub total_30d: u64,
    /// Direct adds over the last 7 days.
    pub direct_7d: u64,
    /// Direct adds over the 28 days before those 7.
    pub direct_prior_28d: u64,
}

impl Index {
    /// Replaces the recent adds of every package with `adds`, counted through `through`
    /// (`YYYY-MM-DD`), and every package's search boost with them, in one transaction:
    /// readers see the old counts or the new ones. Names the index holds no package of
    /// (usage reported for unknown packages) are left out.
    pub fn replace_adds(&mut self, through: &str, adds: &[PackageAdds]) -> Result<(), IndexError> {
        let path = self.path.clone();
        let sqlite = |e| IndexError::from_sqlite(&path, e);
        let tx = self.connection.transaction().map_err(sqlite)?;
        tx.execute("DELETE FROM adds", []).map_err(sqlite)?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO adds
                         (package, direct_30d, total_30d, direct_7d, direct_prior_28d,
                          popularity)
                     SELECT ?1, ?2, ?3, ?4, ?5, ?6
                     WHERE EXISTS (SELECT 1 FROM latest WHERE package = ?1)",
                )
                .map_err(sqlite)?;
            for row in adds {
                insert
                    .execute(params![
                        row.package,
                        sql_int(row.direct_30d),
                        sql_int(row.total_30d),
                        sql_int(row.direct_7d),
                        sql_int(row.direct_prior_28d),
                        popularity(row.direct_30d)
                    ])
                    .map_err(sqlite)?;
            }
        }
        tx.execute_batch(&update_boost("1")).map_err(sqlite)?;
        tx.execute(
            "INSERT OR REPLACE INTO adds_state (id, through) VALUES (1, ?1)",
            [through],
        )
        .map_err(sqlite)?;
        tx.commit().map_err(sqlite)
    }

    /// The last day the recent adds count (`YYYY-MM-DD`); `None` when none were stored.
    pub fn adds_through(&self) -> Result<Option<String>, IndexError> {
        self.connection
            .prepare_cached("SELECT through FROM adds_state WHERE id = 1")
            .and_then(|mut s| s.query_row([], |row| row.get(0)).optional())
            .map_err(|e| self.sqlite(e))
    }

    /// The packages with the most direct adds over the last 30 days, most first; packages
    /// nobody added are left out.
    pub fn most_added(&self, limit: usize) -> Result<Vec<SearchHit>, IndexError> {
        let names = self.collect(
            "SELECT a.package FROM adds a JOIN latest l ON l.package = a.package
             WHERE NOT l.unmigrated AND a.direct_30d > 0
             ORDER BY a.direct_30d DESC, a.package LIMIT ?1",
            [sql_int(limit as u64)],
            |row| row.get::<_, String>(0),
        )?;
        self.summaries(&names.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// The packages whose direct adds over the last 7 days grew most against their weekly
    /// average of the 28 days before, most first; packages with fewer than
    /// [`TRENDING_MIN_ADDS`] in those 7 days are left out.
    pub fn trending(&self, limit: usize) -> Result<Vec<SearchHit>, IndexError> {
        let names = self.collect(
            &format!(
                "SELECT a.package FROM adds a JOIN latest l ON l.package = a.package
                 WHERE NOT l.unmigrated AND a.direct_7d >= {TRENDING_MIN_ADDS}
                 ORDER BY a.direct_7d / (a.direct_prior_28d / 4.0 + {TRENDING_BASELINE}) DESC,
                          a.direct_7d DESC, a.package
                 LIMIT ?1"
            ),
            [sql_int(limit as u64)],
            |row| row.get::<_, String>(0),
        )?;
        self.summaries(&names.iter().map(String::as_str).collect::<Vec<_>>())
    }
}
