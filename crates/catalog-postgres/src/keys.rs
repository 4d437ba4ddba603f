//! Natural-key lookups of records ([`Lookup`]): expression indexes on the record text and
//! the queries that read them.
//!
//! PostgreSQL's JSON operators refuse a document with the escape `\u0000` anywhere in it (its
//! text type cannot hold the character), and a record holding one must still be stored and
//! found. So the expressions (`key!`) read the record text with every `\u0000` escape
//! spelled `\ufffd` instead; the stored text is untouched, and a key found this way differs
//! from the real one only if it holds U+0000 or U+FFFD (no valid package or release name
//! does). Each query repeats its index's expression exactly, so PostgreSQL answers it from
//! the index.

use exosphere_catalog::error::StoreError;
use exosphere_catalog::store::Lookup;

use crate::session::{Session, col};

/// The SQL expression of one natural-key field of the record text (see the module doc).
macro_rules! key {
    ($field:literal) => {
        concat!(
            "(replace(json, E'\\\\u0000', E'\\\\ufffd')::json ->> '",
            $field,
            "')"
        )
    };
}

/// The `CREATE` statements of the natural-key indexes of the record tables.
pub(crate) const NATURAL_KEY_INDEXES: [&str; 5] = [
    concat!(
        "CREATE INDEX rec_packages_by_name ON rec_packages (",
        key!("name"),
        ")"
    ),
    concat!(
        "CREATE INDEX rec_versions_by_key ON rec_versions (",
        key!("packageName"),
        ", ",
        key!("version"),
        ")"
    ),
    concat!(
        "CREATE INDEX rec_builds_by_version ON rec_builds (",
        key!("versionId"),
        ")"
    ),
    concat!(
        "CREATE INDEX rec_release_tracks_by_name ON rec_release_tracks (",
        key!("name"),
        ")"
    ),
    concat!(
        "CREATE INDEX rec_release_versions_by_key ON rec_release_versions (",
        key!("track"),
        ", ",
        key!("version"),
        ")"
    ),
];

/// A query on `$table` that finds two records sharing the natural key `$field…`.
macro_rules! duplicate {
    ($table:literal, $first:literal $(, $rest:literal)*) => {
        concat!(
            "SELECT 1 FROM ", $table, " WHERE ", key!($first), " IS NOT NULL",
            $(" AND ", key!($rest), " IS NOT NULL",)*
            " GROUP BY ", key!($first),
            $(", ", key!($rest),)*
            " HAVING count(*) > 1 LIMIT 1"
        )
    };
}

/// Per collection with a natural key, a query that finds a served record sharing its key with
/// another (through the same expression indexes).
pub(crate) const DUPLICATE_KEYS: [&str; 4] = [
    duplicate!("rec_packages", "name"),
    duplicate!("rec_versions", "packageName", "version"),
    duplicate!("rec_release_tracks", "name"),
    duplicate!("rec_release_versions", "track", "version"),
];

/// A query on `$table` for the records whose `$first` field is `$1` and whose `$second`
/// field (if named) is `$2`, else `$2` is NULL.
macro_rules! by_key {
    ($table:literal, $first:literal) => {
        concat!(
            "SELECT json FROM ",
            $table,
            " WHERE ",
            key!($first),
            " = $1 AND $2::text IS NULL ORDER BY seq"
        )
    };
    ($table:literal, $first:literal, $second:literal) => {
        concat!(
            "SELECT json FROM ",
            $table,
            " WHERE ",
            key!($first),
            " = $1 AND ",
            key!($second),
            " = $2 ORDER BY seq"
        )
    };
}

/// Record texts by natural key, in `seq` order.
pub(crate) fn find(s: &mut Session<'_, '_>, key: &Lookup<'_>) -> Result<Vec<String>, StoreError> {
    let (sql, first, second) = match *key {
        Lookup::Package(name) => (by_key!("rec_packages", "name"), name, None),
        Lookup::Version { package, version } => (
            by_key!("rec_versions", "packageName", "version"),
            package,
            Some(version),
        ),
        Lookup::VersionsOf(package) => (by_key!("rec_versions", "packageName"), package, None),
        Lookup::BuildsOf(version_id) => (by_key!("rec_builds", "versionId"), version_id, None),
        Lookup::ReleaseTrack(name) => (by_key!("rec_release_tracks", "name"), name, None),
        Lookup::ReleaseVersion { track, version } => (
            by_key!("rec_release_versions", "track", "version"),
            track,
            Some(version),
        ),
        Lookup::ReleaseVersionsOf(track) => (by_key!("rec_release_versions", "track"), track, None),
    };
    s.query(sql, &[&first, &second])?
        .iter()
        .map(|row| col(row, 0))
        .collect()
}
