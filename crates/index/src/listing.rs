//! Paged lists and lookups by name, for callers that show one page of a long list at a time
//! (the server's JSON API and web pages): a package's versions, its dependents, several
//! packages' summaries at once, every package by name, the packages published or created
//! most recently, one release's package set, and whether an index can answer queries yet.

use rusqlite::{OptionalExtension as _, params};
use serde::Serialize;

use crate::error::IndexError;
use crate::handle::Index;
use crate::query::{
    DepNode, LATEST_KIND, RELEASE_COLUMNS, ReleaseSummary, SearchHit, VersionSummary, iso_date,
    references, release_summary,
};

/// One page of a longer list, with the list's length so a caller knows where it ends.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listing<T> {
    /// How many items the whole list holds.
    pub total: u64,
    /// The items of this page, in the list's order.
    pub items: Vec<T>,
}

/// A package with the date that places it in a list: when its latest version was
/// published ([`Index::recently_published`]), or when its first one was
/// ([`Index::new_packages`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatedPackage {
    /// The package name.
    pub name: String,
    /// Its latest version.
    pub version: String,
    /// That version's summary.
    pub description: Option<String>,
    /// The date (ISO-8601).
    pub date: String,
}

/// One release version and the package versions it pins ([`Index::release`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReleaseContents {
    /// The release track.
    pub track: String,
    /// The release version itself.
    pub release: ReleaseSummary,
    /// The packages it pins, by name.
    pub packages: Vec<PinnedPackage>,
}

/// A package version a release pins.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PinnedPackage {
    /// The package name.
    pub name: String,
    /// The version pinned.
    pub version: String,
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
    /// the versions of its latest version's kind, as in [`Index::show`]: unmigrated ones
    /// only when every version is), or [`IndexError::UnknownPackage`].
    pub fn versions(
        &self,
        name: &str,
        offset: u64,
        limit: u64,
    ) -> Result<Listing<VersionSummary>, IndexError> {
        self.require_synced()?;
        self.latest_version(name)?;
        let total = self.count(
            &format!("SELECT count(*) FROM versions WHERE package = ?1 AND {LATEST_KIND}"),
            name,
        )?;
        let items = self.collect(
            &format!(
                "SELECT version, published FROM versions WHERE package = ?1 AND {LATEST_KIND}
                 ORDER BY sort_key DESC LIMIT ?2 OFFSET ?3"
            ),
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
    /// index knows, in the order asked (unknown names are left out; a package whose every
    /// version is unmigrated is known, as to [`Index::show`]): the bulk lookup badge
    /// services and package listings make.
    pub fn summaries(&self, names: &[&str]) -> Result<Vec<SearchHit>, IndexError> {
        self.require_synced()?;
        let mut hits = Vec::with_capacity(names.len());
        for name in names {
            hits.extend(self.hits(
                "SELECT l.package, v.version, v.description, l.last_updated,
                        coalesce(a.direct_30d, 0)
                 FROM latest l JOIN versions v ON v.rowid = l.version_rowid
                 LEFT JOIN adds a ON a.package = l.package
                 WHERE l.package = ?1",
                [name],
            )?);
        }
        Ok(hits)
    }

    /// `limit` packages by name, after `after` (all of them from the first when `None`),
    /// each with its latest version, summary, last update and maintainers, and how many
    /// packages the index holds: the browse-all list, a page at a time (packages whose every
    /// version is unmigrated left out, as search leaves them). A page starts
    /// after the last name of the page before (not at a position), so every page costs the
    /// same however deep it is.
    pub fn browse(
        &self,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Listing<SearchHit>, IndexError> {
        self.require_synced()?;
        let total = self
            .one("SELECT count(*) FROM latest WHERE NOT unmigrated", [])?
            .unwrap_or(0);
        let items = self.hits(
            "SELECT l.package, v.version, v.description, l.last_updated,
                    coalesce(a.direct_30d, 0)
             FROM latest l JOIN versions v ON v.rowid = l.version_rowid
             LEFT JOIN adds a ON a.package = l.package
             WHERE NOT l.unmigrated AND (?1 IS NULL OR l.package > ?1)
             ORDER BY l.package LIMIT ?2",
            params![after, sql_int(limit)],
        )?;
        Ok(Listing {
            total: u64::try_from(total).unwrap_or(0),
            items,
        })
    }

    /// The `limit` packages whose latest version was published last, newest first.
    pub fn recently_published(&self, limit: usize) -> Result<Vec<DatedPackage>, IndexError> {
        self.newest_first("published", limit)
    }

    /// The `limit` packages whose first version (unmigrated ones left out) was published
    /// last, newest first: the catalog's new packages.
    pub fn new_packages(&self, limit: usize) -> Result<Vec<DatedPackage>, IndexError> {
        self.newest_first("created", limit)
    }

    /// The `limit` packages with the greatest `latest.<date>`, newest first, along that
    /// column's index.
    fn newest_first(&self, date: &str, limit: usize) -> Result<Vec<DatedPackage>, IndexError> {
        self.require_synced()?;
        self.collect(
            &format!(
                "SELECT l.package, v.version, v.description, l.{date}
                 FROM latest l JOIN versions v ON v.rowid = l.version_rowid
                 WHERE l.{date} IS NOT NULL AND NOT l.unmigrated
                 ORDER BY l.{date} DESC, l.package LIMIT ?1"
            ),
            [sql_int(limit as u64)],
            |row| {
                Ok(DatedPackage {
                    name: row.get(0)?,
                    version: row.get(1)?,
                    description: row.get(2)?,
                    date: iso_date(row.get(3)?).unwrap_or_default(),
                })
            },
        )
    }

    /// The release `version` of `track` with every package version it pins, or
    /// [`IndexError::UnknownTrack`] / [`IndexError::UnknownRelease`].
    pub fn release(&self, track: &str, version: &str) -> Result<ReleaseContents, IndexError> {
        self.require_synced()?;
        let found = self
            .connection
            .prepare_cached(&format!(
                "SELECT {RELEASE_COLUMNS}, rowid FROM release_versions
                 WHERE track = ?1 AND version = ?2"
            ))
            .and_then(|mut s| {
                s.query_row([track, version], |row| {
                    Ok((row.get::<_, i64>(7)?, release_summary(row)?))
                })
                .optional()
            })
            .map_err(|e| self.sqlite(e))?;
        let Some((rowid, release)) = found else {
            self.require_track(track)?;
            return Err(IndexError::UnknownRelease {
                track: track.to_owned(),
                version: version.to_owned(),
            });
        };
        let packages = self.collect(
            "SELECT package, version FROM release_packages WHERE release_rowid = ?1
             ORDER BY package",
            [rowid],
            |row| {
                Ok(PinnedPackage {
                    name: row.get(0)?,
                    version: row.get(1)?,
                })
            },
        )?;
        Ok(ReleaseContents {
            track: track.to_owned(),
            release,
            packages,
        })
    }

    /// The one value `sql` selects (`None` for no row or NULL).
    fn one(&self, sql: &str, params: impl rusqlite::Params) -> Result<Option<i64>, IndexError> {
        self.connection
            .prepare_cached(sql)
            .and_then(|mut s| s.query_row(params, |row| row.get(0)).optional())
            .map(Option::flatten)
            .map_err(|e| self.sqlite(e))
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

    #[test]
    fn browsing_pages_by_name_after_the_last_one() {
        let dir = tempfile::tempdir().unwrap();
        let index = fixture_index(dir.path());
        let first = index.browse(None, 3).unwrap();
        assert_eq!(first.items.len(), 3);
        let names: Vec<&str> = first.items.iter().map(|hit| hit.name.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        let next = index.browse(Some(names[1]), 2).unwrap();
        assert_eq!(next.items[0], first.items[2]);
        assert_eq!(next.total, first.total);
        let mut seen = 0;
        let mut after: Option<String> = None;
        loop {
            let page = index.browse(after.as_deref(), 500).unwrap();
            seen += page.items.len() as u64;
            match page.items.last() {
                Some(last) => after = Some(last.name.clone()),
                None => break,
            }
        }
        assert_eq!(seen, first.total, "every package once");
        assert!(index.browse(Some("zzzz"), 5).unwrap().items.is_empty());
    }

    /// The dated lists, checked against the same dates computed over every package.
    #[test]
    fn newest_lists_match_a_full_scan() {
        let dir = tempfile::tempdir().unwrap();
        let index = fixture_index(dir.path());
        let every = |sql: &str| -> Vec<(i64, String)> {
            let mut all = index
                .collect(sql, [], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
                })
                .unwrap();
            all.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
            all
        };
        let published = every(
            "SELECT v.published, l.package FROM latest l
             JOIN versions v ON v.rowid = l.version_rowid WHERE v.published IS NOT NULL",
        );
        let created = every(
            "SELECT min(published), package FROM versions
             WHERE NOT unmigrated AND published IS NOT NULL GROUP BY package",
        );
        for limit in [1, 5, 40] {
            let recent = index.recently_published(limit).unwrap();
            let want: Vec<&str> = published[..limit].iter().map(|(_, n)| n.as_str()).collect();
            let got: Vec<&str> = recent.iter().map(|p| p.name.as_str()).collect();
            assert_eq!(got, want, "recently published, {limit}");
            let new = index.new_packages(limit).unwrap();
            let want: Vec<&str> = created[..limit].iter().map(|(_, n)| n.as_str()).collect();
            let got: Vec<&str> = new.iter().map(|p| p.name.as_str()).collect();
            assert_eq!(got, want, "new packages, {limit}");
            assert_eq!(new[0].date, iso_date(created[0].0).unwrap());
        }
        let latest = index.recently_published(1).unwrap().remove(0);
        assert_eq!(
            latest.version,
            index.show(&latest.name, None).unwrap().latest
        );
        assert!(index.new_packages(0).unwrap().is_empty());
    }

    #[test]
    fn a_release_lists_what_it_pins() {
        let dir = tempfile::tempdir().unwrap();
        let index = fixture_index(dir.path());
        let release = index.release("METEOR", "1.1-rc.0").unwrap();
        assert_eq!(release.release.version, "1.1-rc.0");
        assert_eq!(
            release.packages.len() as u64,
            release.release.packages,
            "{release:?}"
        );
        assert!(
            release
                .packages
                .windows(2)
                .all(|pair| pair[0].name < pair[1].name)
        );
        assert!(release.packages.iter().any(|p| p.name == "accounts-base"));
        assert!(matches!(
            index.release("METEOR", "0.0.1"),
            Err(IndexError::UnknownRelease { .. })
        ));
        assert!(matches!(
            index.release("NO-SUCH", "1.0"),
            Err(IndexError::UnknownTrack { .. })
        ));
    }
}
