//! What every SQL backend stores the same way: the integer conversions of counters and
//! sequence numbers, table names per collection, fresh data epochs, stats rows read back and
//! the advertised stats day range. Its own module so the SQLite and PostgreSQL backends share
//! these rules instead of each keeping a copy.

use exosphere_meteor::Collection;
use rand::Rng as _;

use crate::error::StoreError;
use crate::record::StatsRow;

/// A stored (signed) integer as the unsigned count or sequence number it stands for;
/// a negative value is corruption, named by `what`.
pub fn to_u64(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative {what} {value}")))
}

/// An unsigned count or sequence number as the signed integer SQL stores; one beyond
/// `i64::MAX` is refused, named by `what`.
pub fn to_i64(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} {value} is out of range")))
}

/// The snake_case spelling of a collection in table and column names (`rec_<snake>`,
/// `changes_<snake>`).
pub fn snake(c: Collection) -> &'static str {
    match c {
        Collection::Packages => "packages",
        Collection::Versions => "versions",
        Collection::Builds => "builds",
        Collection::ReleaseTracks => "release_tracks",
        Collection::ReleaseVersions => "release_versions",
    }
}

/// A fresh random data epoch (Meteor `Random.id()` style, 17 characters).
pub fn new_epoch() -> String {
    const ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz";
    let mut rng = rand::rng();
    (0..17)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// Rebuilds a stored stats row, re-validating it (the database may have been edited by
/// hand).
pub fn stats_row(
    day: &str,
    name: String,
    version: String,
    direct_adds: i64,
    total_adds: i64,
) -> Result<StatsRow, StoreError> {
    StatsRow::new(
        day,
        name,
        version,
        to_u64(direct_adds, "directAdds")?,
        to_u64(total_adds, "totalAdds")?,
    )
    .map_err(|e| StoreError::Corrupt(format!("stats row: {e}")))
}

/// The advertised stats day range ([`crate::store::CatalogState::stats_earliest`] and
/// `stats_latest`) from the first and last finished day with imported stats rows and the
/// first and last finished day rolled up: a day counts when it has either.
pub fn stats_range(
    imported: (Option<String>, Option<String>),
    rolled_up: (Option<String>, Option<String>),
) -> (Option<String>, Option<String>) {
    let earliest = match (imported.0, rolled_up.0) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    (earliest, imported.1.max(rolled_up.1))
}
