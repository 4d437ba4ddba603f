//! Paged lists and lookups by name, for callers that show one page of a long list at a time
//! (the server's JSON API): a package's versions, its dependents, several packages'
//! summaries at once, and whether an index can answer queries yet.

use rusqlite::params;
use serde::Serialize;

use crate::error::IndexError;
use crate::handle::Index;
use crate::query::{DepNode, SearchHit, VersionSummary, iso_date, references};

/// One page of a longer list, with the list's length so a caller knows where it ends.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listing<T> {
    /// How many items the whole list holds.
    pub total: u64,
    /// The items of this page, in the list's order.
    pub items: Vec<T>,
}

impl Index {
    /// Whether queries can be answered: a sync has brought the index up to date at least
    /// once (an empty or half-built index answers `false`, not an error), so a server can
    /// keep serving an older index while a new one is built.
    pub fn is_ready(&self) -> Result<bool, IndexError> {
        match self.require_synced() {
            Ok(()) => Ok(true),
            Err(IndexError::NotSynced { .. } | IndexError::Unfinished { .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// `limit` versions of `name` from `offset` on, newest first (Meteor version order;
    /// unmigrated versions left out, as in [`Index::show`]), or
    /// [`IndexError::UnknownPackage`].
    pub fn versions(
        &self,
        name: &str,
        offset: u64,
        limit: u64,
    ) -> Result<Listing<VersionSummary>, IndexError> {
        self.require_synced()?;
        self.latest_version(name)?;
        let total = self.count(
            "SELECT count(*) FROM versions WHERE package = ?1 AND NOT unmigrated",
            name,
        )?;
        let items = self.collect(
            "SELECT version, published FROM versions WHERE package = ?1 AND NOT unmigrated
             ORDER BY sort_key DESC LIMIT ?2 OFFSET ?3",
            params![name, sql_int(limit), sql_int(offset)],
            |row| {
                Ok(VersionSummary {
                    version: row.get(0)?,
                    published: row.get::<_, Option<i64>>(1)?.and_then(iso_date),
                })
            },
        )?;
        Ok(Listing { total, items })
    }

    /// `limit` of the packages whose latest version depends on `name`, from `offset` on,
    /// by package name, each with the constraint and references it uses (the first level
    /// of `deps --reverse`), or [`IndexError::UnknownPackage`].
    pub fn dependents(
        &self,
        name: &str,
        offset: u64,
        limit: u64,
    ) -> Result<Listing<DepNode>, IndexError> {
        self.require_synced()?;
        self.latest_version(name)?;
        let total = self.count("SELECT count(*) FROM dependents WHERE name = ?1", name)?;
        let items = self.collect(
            "SELECT package, version, constraint_text, refs, weak FROM dependents
             WHERE name = ?1 ORDER BY package LIMIT ?2 OFFSET ?3",
            params![name, sql_int(limit), sql_int(offset)],
            |row| {
                Ok(DepNode {
                    name: row.get(0)?,
                    version: Some(row.get(1)?),
                    constraint: row.get(2)?,
                    references: references(&row.get::<_, String>(3)?),
                    weak: row.get(4)?,
                    repeated: false,
                    children: Vec::new(),
                })
            },
        )?;
        Ok(Listing { total, items })
    }

    /// The latest version, summary, last update and maintainers of each of `names` the
    /// index knows, in the order asked (unknown names are left out): the bulk lookup badge
    /// services and package listings make.
    pub fn summaries(&self, names: &[&str]) -> Result<Vec<SearchHit>, IndexError> {
        self.require_synced()?;
        let mut hits = Vec::with_capacity(names.len());
        for name in names {
            let found = self.collect(
                "SELECT v.version, v.description, l.last_updated, coalesce(a.direct_30d, 0)
                 FROM latest l JOIN versions v ON v.rowid = l.version_rowid
                 LEFT JOIN adds a ON a.package = l.package
                 WHERE l.package = ?1",
                [name],
                |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, Option<String>>(1)?,
                        row.get::<_, Option<i64>>(2)?,
                        row.get::<_, i64>(3)?,
                    ))
                },
            )?;
            for (version, description, last_updated, adds) in found {
                hits.push(SearchHit {
                    name: (*name).to_owned(),
                    version,
                    description,
                    last_updated: last_updated.and_then(iso_date),
                    maintainers: self.maintainers(name)?,
                    direct_adds_30d: u64::try_from(adds).unwrap_or(0),
                });
            }
        }
        Ok(hits)
    }

    fn count(&self, sql: &str, name: &str) -> Result<u64, IndexError> {
        let count = self.collect(sql, [name], |row| row.get::<_, i64>(0))?;
        Ok(count
            .first()
            .map_or(0, |&count| u64::try_from(count).unwrap_or(0)))
    }
}

/// A count or position as SQLite's integer (larger ones are clamped, and match nothing).
pub(crate) fn sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::Search;

    fn fixture_index(dir: &std::path::Path) -> Index {
        let dump = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/fixtures/meteor-2015-catalog.ndjson"
        ))
        .expect("the 2015 fixture");
        let mut index = Index::open(&dir.join("index.sqlite3")).unwrap();
        index.load_dump(&dump, 500).unwrap();
        index
    }

    #[test]
    fn lists_page_and_lookups_skip_unknown_names() {
        let dir = tempfile::tempdir().unwrap();
        let empty = Index::open(&dir.path().join("empty.sqlite3")).unwrap();
        assert!(!empty.is_ready().unwrap());
        let index = fixture_index(dir.path());
        assert!(index.is_ready().unwrap());

        let all = index.versions("iron:router", 0, 1000).unwrap();
        assert_eq!(all.total, all.items.len() as u64);
        assert_eq!(all.items[0].version, "1.0.6");
        let second = index.versions("iron:router", 1, 2).unwrap();
        assert_eq!(second.items.len(), 2);
        assert_eq!(second.items[0], all.items[1]);
        assert!(matches!(
            index.versions("no:such", 0, 10),
            Err(IndexError::UnknownPackage { .. })
        ));

        let dependents = index.dependents("iron:core", 0, 1000).unwrap();
        assert!(
            dependents.items.iter().any(|d| d.name == "iron:router"),
            "{dependents:?}"
        );
        assert_eq!(dependents.total, dependents.items.len() as u64);
        assert_eq!(index.dependents("iron:core", 0, 1).unwrap().items.len(), 1);

        let page = |offset, limit| Search {
            maintainer: Some("iron".into()),
            offset,
            limit,
            ..Search::default()
        };
        let first = index.find(&page(0, 3)).unwrap();
        let next = index.find(&page(2, 3)).unwrap();
        assert_eq!(first[2], next[0]);

        let hits = index
            .summaries(&["iron:router", "no:such", "iron:core"])
            .unwrap();
        let names: Vec<&str> = hits.iter().map(|hit| hit.name.as_str()).collect();
        assert_eq!(names, ["iron:router", "iron:core"]);
        assert_eq!(hits[0].version, "1.0.6");
        assert_eq!(hits[0].maintainers, ["iron"]);
    }
}
