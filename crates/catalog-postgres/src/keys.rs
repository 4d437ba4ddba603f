//! Natural-key lookups of records ([`Lookup`]): the key columns stored beside the record
//! text, their indexes, and the queries that read them.
//!
//! Since schema version 3 every record table (and the mirror's stage) has two key columns,
//! `key1` and `key2`: the record's [`natural_key`], the fields its lookups name in their
//! order (`name`; `packageName`, `version`; `versionId`; `name`; `track`, `version`), each
//! the field's string or NULL. They are computed in Rust whenever a record is stored (the
//! writer's upserts, the mirror's stage, bulk loads), so PostgreSQL parses no JSON to index a
//! record, and are `COLLATE "C"`, so they compare by bytes as SQLite does.
//!
//! PostgreSQL's text cannot hold U+0000, and a record whose key holds one (written `\u0000`
//! in its text) must still be stored and found: key columns and looked-up keys spell it
//! U+FFFD ([`stored`]), so such a key differs from the real one only if it holds U+0000 or
//! U+FFFD (no valid package or release name does). Versions 1 and 2 indexed expressions on
//! the record text read as `json` with the escape spelled `\ufffd` the same way (`key!`);
//! version 3 fills the columns from it once and drops those indexes.

use exosphere_catalog::bulk::{Table, Value, record_table};
use exosphere_catalog::error::StoreError;
use exosphere_catalog::store::{Lookup, natural_key};
use exosphere_meteor::Collection;

use crate::session::{Session, col};

/// The SQL expression of one natural-key field of the record text in schema versions 1 and
/// 2 (see the module doc), kept to create version 1 and to upgrade from it.
macro_rules! key {
    ($field:literal) => {
        concat!(
            "(replace(json, E'\\\\u0000', E'\\\\ufffd')::json ->> '",
            $field,
            "')"
        )
    };
}

/// The `CREATE` statements of the natural-key indexes of schema version 1 (dropped by
/// version 3).
pub(crate) const NATURAL_KEY_INDEXES_V1: [&str; 5] = [
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

/// The string a field of the record text `j` (read as in version 1) holds, else NULL, as
/// [`natural_key`] reads it.
macro_rules! string {
    ($field:literal) => {
        concat!(
            "CASE WHEN json_typeof(j -> '",
            $field,
            "') = 'string' THEN j ->> '",
            $field,
            "' END"
        )
    };
}

/// The `FROM` that reads a row's record text as `j` (see `key!`).
macro_rules! parsed {
    () => {
        " FROM (SELECT replace(json, E'\\\\u0000', E'\\\\ufffd')::json AS j) AS record"
    };
}

/// A statement that fills `$table`'s key columns from its record text.
macro_rules! fill {
    ($table:literal, $first:literal) => {
        concat!(
            "UPDATE ",
            $table,
            " SET key1 = (SELECT ",
            string!($first),
            parsed!(),
            ");\n"
        )
    };
    ($table:literal, $first:literal, $second:literal) => {
        concat!(
            "UPDATE ",
            $table,
            " SET (key1, key2) = (SELECT ",
            string!($first),
            ", ",
            string!($second),
            parsed!(),
            ");\n"
        )
    };
}

/// A statement that adds the key columns to `$table`, and `$more` changes.
macro_rules! add_keys {
    ($table:literal, $more:literal) => {
        concat!(
            "ALTER TABLE ",
            $table,
            " ADD COLUMN key1 TEXT COLLATE \"C\", ADD COLUMN key2 TEXT COLLATE \"C\"",
            $more,
            ";\n"
        )
    };
}

/// Schema version 3: the key columns on every record table and the mirror's stage, filled
/// from the stored records, indexed as plain text in place of the expression indexes; and
/// record text kept uncompressed (`STORAGE EXTERNAL`: pages read it without decompressing,
/// and storing it compresses nothing; rows stored before keep their compression).
pub(crate) const KEY_COLUMNS: &str = concat!(
    "DROP INDEX rec_packages_by_name, rec_versions_by_key, rec_builds_by_version, \
     rec_release_tracks_by_name, rec_release_versions_by_key;\n",
    add_keys!("rec_packages", ", ALTER COLUMN json SET STORAGE EXTERNAL"),
    add_keys!("rec_versions", ", ALTER COLUMN json SET STORAGE EXTERNAL"),
    add_keys!("rec_builds", ", ALTER COLUMN json SET STORAGE EXTERNAL"),
    add_keys!(
        "rec_release_tracks",
        ", ALTER COLUMN json SET STORAGE EXTERNAL"
    ),
    add_keys!(
        "rec_release_versions",
        ", ALTER COLUMN json SET STORAGE EXTERNAL"
    ),
    add_keys!("mirror_stage", ""),
    fill!("rec_packages", "name"),
    fill!("rec_versions", "packageName", "version"),
    fill!("rec_builds", "versionId"),
    fill!("rec_release_tracks", "name"),
    fill!("rec_release_versions", "track", "version"),
    "UPDATE mirror_stage SET (key1, key2) = (SELECT CASE collection ",
    "WHEN 'packages' THEN ",
    string!("name"),
    " WHEN 'versions' THEN ",
    string!("packageName"),
    " WHEN 'builds' THEN ",
    string!("versionId"),
    " WHEN 'releaseTracks' THEN ",
    string!("name"),
    " WHEN 'releaseVersions' THEN ",
    string!("track"),
    " END, CASE WHEN collection IN ('versions', 'releaseVersions') THEN ",
    string!("version"),
    " END",
    parsed!(),
    ");\n",
    "CREATE INDEX rec_packages_by_key ON rec_packages (key1);\n",
    "CREATE INDEX rec_versions_by_key ON rec_versions (key1, key2);\n",
    "CREATE INDEX rec_builds_by_key ON rec_builds (key1);\n",
    "CREATE INDEX rec_release_tracks_by_key ON rec_release_tracks (key1);\n",
    "CREATE INDEX rec_release_versions_by_key ON rec_release_versions (key1, key2);\n",
);

/// The key columns of a record of `collection` whose text is `json`: its [`natural_key`]
/// with U+0000 spelled U+FFFD (see the module doc).
pub(crate) fn key_columns(collection: Collection, json: &str) -> [Option<String>; 2] {
    natural_key(collection, json).map(|key| key.map(stored))
}

/// `key` as key columns hold it: U+0000 spelled U+FFFD.
fn stored(key: String) -> String {
    if key.contains('\0') {
        key.replace('\0', "\u{fffd}")
    } else {
        key
    }
}

/// The tables whose rows carry key columns: the record tables, and the mirror's stage, whose
/// rows the stage's move copies into them with their keys.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Keyed {
    /// A record table of this collection.
    Records(Collection),
    /// `mirror_stage`, whose rows name their collection in their first column.
    Stage,
}

impl Keyed {
    /// How `table`'s rows are keyed, if they are.
    pub(crate) fn of(table: &Table) -> Option<Keyed> {
        if table.name == "mirror_stage" {
            return Some(Keyed::Stage);
        }
        Collection::ALL
            .into_iter()
            .find(|c| record_table(*c).name == table.name)
            .map(Keyed::Records)
    }

    /// The key columns of a bulk-loaded row of such a table, as `COPY` values after the
    /// row's own: computed from its record text, the row's last value. A stage row naming
    /// no collection gets none (no move reads it).
    pub(crate) fn values(self, values: &[Value]) -> [Value; 2] {
        let collection = match self {
            Keyed::Records(collection) => Some(collection),
            Keyed::Stage => match values.first() {
                Some(Value::Text(name)) => name.parse().ok(),
                _ => None,
            },
        };
        let json = match values.last() {
            Some(Value::Text(json)) => json.as_str(),
            _ => "",
        };
        match collection {
            Some(collection) => {
                key_columns(collection, json).map(|key| key.map_or(Value::Null, Value::Text))
            }
            None => [Value::Null, Value::Null],
        }
    }
}

/// A query on `$table` that finds two records sharing their natural key.
macro_rules! duplicate {
    ($table:literal) => {
        concat!(
            "SELECT 1 FROM ",
            $table,
            " WHERE key1 IS NOT NULL AND key2 IS NOT NULL \
             GROUP BY key1, key2 HAVING count(*) > 1 LIMIT 1"
        )
    };
}

/// Per collection whose records must not share a natural key, a query that finds a served
/// record sharing its key with another (through the key indexes). Packages and release
/// tracks have one key field, so their `key2` is always NULL and `key1` is checked alone.
pub(crate) const DUPLICATE_KEYS: [&str; 4] = [
    "SELECT 1 FROM rec_packages WHERE key1 IS NOT NULL \
     GROUP BY key1 HAVING count(*) > 1 LIMIT 1",
    duplicate!("rec_versions"),
    "SELECT 1 FROM rec_release_tracks WHERE key1 IS NOT NULL \
     GROUP BY key1 HAVING count(*) > 1 LIMIT 1",
    duplicate!("rec_release_versions"),
];

/// A query on `$table` for the records whose `key1` is `$1` and, with `both`, whose `key2`
/// is `$2` (else `$2` is NULL).
macro_rules! by_key {
    ($table:literal) => {
        concat!(
            "SELECT json FROM ",
            $table,
            " WHERE key1 = $1 AND $2::text IS NULL ORDER BY seq"
        )
    };
    ($table:literal, both) => {
        concat!(
            "SELECT json FROM ",
            $table,
            " WHERE key1 = $1 AND key2 = $2 ORDER BY seq"
        )
    };
}

/// Record texts by natural key, in `seq` order.
pub(crate) fn find(s: &mut Session<'_, '_>, key: &Lookup<'_>) -> Result<Vec<String>, StoreError> {
    let (sql, first, second) = match *key {
        Lookup::Package(name) => (by_key!("rec_packages"), name, None),
        Lookup::Version { package, version } => {
            (by_key!("rec_versions", both), package, Some(version))
        }
        Lookup::VersionsOf(package) => (by_key!("rec_versions"), package, None),
        Lookup::BuildsOf(version_id) => (by_key!("rec_builds"), version_id, None),
        Lookup::ReleaseTrack(name) => (by_key!("rec_release_tracks"), name, None),
        Lookup::ReleaseVersion { track, version } => {
            (by_key!("rec_release_versions", both), track, Some(version))
        }
        Lookup::ReleaseVersionsOf(track) => (by_key!("rec_release_versions"), track, None),
    };
    let first = stored(first.to_owned());
    let second = second.map(|second| stored(second.to_owned()));
    s.query(sql, &[&first, &second])?
        .iter()
        .map(|row| col(row, 0))
        .collect()
}
