//! The read side of the index: `search`, `show`, `deps` and `releases`, answered from the
//! typed and derived tables with indexed lookups only, as typed, serializable results (the
//! binary renders them as tables or `--json`).

use std::collections::HashSet;

use rusqlite::{OptionalExtension as _, params};
use serde::{Deserialize, Serialize};

use crate::error::IndexError;
use crate::handle::Index;
use crate::readme::ReadmeFile;
use exosphere_meteor::MeteorVersion;

/// One package found by [`Index::find`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchHit {
    /// The package name.
    pub name: String,
    /// Its latest version (official versions before prereleases).
    pub version: String,
    /// That version's summary.
    pub description: Option<String>,
    /// When any of its versions last changed (ISO-8601).
    pub last_updated: Option<String>,
    /// The usernames of its maintainers.
    pub maintainers: Vec<String>,
    /// Its direct adds over the last 30 days the server counted (0 when the index holds no
    /// usage, as a client's index does).
    pub direct_adds_30d: u64,
}

/// Everything [`Index::show`] says about a package, or one version of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PackageInfo {
    /// The package name.
    pub name: String,
    /// `homepage` of the package record.
    pub homepage: Option<String>,
    /// The usernames of its maintainers.
    pub maintainers: Vec<String>,
    /// The latest version (official versions before prereleases).
    pub latest: String,
    /// The version shown: the one asked for, or the latest.
    pub version: VersionInfo,
    /// Every version, oldest first (Meteor version order).
    pub versions: Vec<VersionSummary>,
    /// Releases that include this package (any version of it when no version was asked for,
    /// else that version), newest first.
    pub releases: Vec<ReleaseMembership>,
}

/// One version in detail.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionInfo {
    /// The version string.
    pub version: String,
    /// Its summary.
    pub description: Option<String>,
    /// Its README excerpt.
    pub long_description: Option<String>,
    /// The README file published with it, when its record names one with a hash.
    pub readme: Option<ReadmeFile>,
    /// Its source repository.
    pub git: Option<String>,
    /// When it was published (ISO-8601).
    pub published: Option<String>,
    /// Who published it.
    pub published_by: Option<String>,
    /// Whether the publisher deprecated it, and why.
    pub deprecated: Option<String>,
    /// The symbols it exports, per architecture.
    pub exports: Vec<Export>,
    /// Only in development builds (`debugOnly`, spec §3.8).
    pub debug_only: bool,
    /// Only in production builds (`prodOnly`).
    pub prod_only: bool,
    /// Only in test builds (`testOnly`).
    pub test_only: bool,
    /// Not migrated to the current package format (`unmigrated`, spec §3.8): the tool
    /// never picks it, so it is the latest version only of a package whose every version
    /// is unmigrated.
    pub unmigrated: bool,
    /// Its dependencies, by name.
    pub dependencies: Vec<Dependency>,
    /// Its published builds.
    pub builds: Vec<Build>,
}

/// An exported symbol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Export {
    /// The symbol.
    pub name: String,
    /// The architectures it is exported on.
    #[serde(default)]
    pub architectures: Vec<String>,
}

/// One dependency edge of a version, as published (spec §3.8).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dependency {
    /// The package depended on.
    pub name: String,
    /// The version constraint (`1.0.0`, `=1.0.0`, `1.0.0 || 2.0.0`), none for "any".
    pub constraint: Option<String>,
    /// Whether every reference is weak (the dependency is only ordered, not pulled in).
    pub weak: bool,
    /// Per-architecture references with their flags.
    pub references: Vec<Reference>,
}

/// One architecture's use of a dependency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// The architecture (`os`, `web.browser`, …).
    pub arch: String,
    /// Only ordered after it if present, not pulled in.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub weak: bool,
    /// Not ordered before it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unordered: bool,
    /// Implied: users of this package get it too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub implied: bool,
}

/// A published build of a version.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Build {
    /// The architectures, `+`-joined as published.
    pub architectures: String,
    /// When it was published (ISO-8601).
    pub published: Option<String>,
}

/// A version in a package's version list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionSummary {
    /// The version string.
    pub version: String,
    /// When it was published (ISO-8601).
    pub published: Option<String>,
}

/// A release that pins a package.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReleaseMembership {
    /// The release track (`METEOR`).
    pub track: String,
    /// The release version.
    pub release: String,
    /// The package version the release pins.
    pub version: String,
}

/// The answer of [`Index::deps`]: a dependency tree (one level unless asked for more).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DepsReport {
    /// The package asked about.
    pub name: String,
    /// Its version: the one asked for, or the latest.
    pub version: String,
    /// Whether these are dependents (who depends on it) rather than dependencies.
    pub reverse: bool,
    /// The first level of the tree.
    pub nodes: Vec<DepNode>,
}

/// One edge in a dependency tree.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DepNode {
    /// The package at the end of the edge.
    pub name: String,
    /// Its version: for dependencies, the newest the constraint admits (none when the
    /// index has no such version); for dependents, the version that depends.
    pub version: Option<String>,
    /// The constraint on the edge.
    pub constraint: Option<String>,
    /// Whether the edge is weak.
    pub weak: bool,
    /// The edge's references, for flags per architecture.
    pub references: Vec<Reference>,
    /// Shown earlier in the tree, so not expanded again.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub repeated: bool,
    /// The next level, when the depth allows.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<DepNode>,
}

/// A release track in [`Releases::Tracks`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrackSummary {
    /// The track name.
    pub track: String,
    /// Release versions published on it.
    pub versions: u64,
    /// The recommended release with the greatest `orderKey`, as the tool picks its default.
    pub recommended: Option<String>,
    /// The usernames of its maintainers.
    pub maintainers: Vec<String>,
}

/// A release version in [`Releases::Track`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReleaseSummary {
    /// The release version.
    pub version: String,
    /// Whether it is recommended.
    pub recommended: bool,
    /// `orderKey`, the track's own order.
    pub order_key: Option<String>,
    /// When it was published (ISO-8601).
    pub published: Option<String>,
    /// Its description.
    pub description: Option<String>,
    /// The `meteor-tool` it runs.
    pub tool: Option<String>,
    /// How many packages it pins.
    pub packages: u64,
}

/// The answer of [`Index::releases`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Releases {
    /// Every track.
    Tracks(Vec<TrackSummary>),
    /// One track's versions, newest first.
    Track {
        /// The track.
        track: String,
        /// Its versions.
        versions: Vec<ReleaseSummary>,
    },
}

/// The condition on the `versions` rows of the package `?1` that keeps those of its
/// latest version's kind: the migrated ones, or every one when all are unmigrated (spec
/// §3.8). A package's version lists show these.
pub(crate) const LATEST_KIND: &str =
    "unmigrated = (SELECT unmigrated FROM latest WHERE package = ?1)";

/// How many edges a `deps --tree` may print before it stops expanding.
const MAX_TREE_NODES: usize = 10_000;

/// How many levels a `deps --tree` expands at most, whatever `--depth` asks: the tree is
/// walked and rendered recursively, so a crafted long dependency chain must not be able to
/// exhaust the stack. Real trees are a few dozen levels deep.
const MAX_TREE_DEPTH: u32 = 256;

impl Index {
    /// A package's summary, versions, maintainers, homepage, and one version in detail
    /// (the latest, or `version`): git, exports, builds and architectures, dependencies with
    /// constraints, and the releases that include it.
    pub fn show(&self, name: &str, version: Option<&str>) -> Result<PackageInfo, IndexError> {
        self.require_synced()?;
        let latest = self.latest_version(name)?;
        let (rowid, version_text) = match version {
            Some(version) => (self.version_rowid(name, version)?, version.to_owned()),
            None => latest.clone(),
        };
        let homepage: Option<String> = self
            .connection
            .prepare_cached(
                "SELECT json_extract(doc, '$.homepage') FROM packages WHERE name = ?1 LIMIT 1",
            )
            .and_then(|mut s| s.query_row([name], |row| row.get(0)).optional())
            .map_err(|e| self.sqlite(e))?
            .flatten();
        let versions = self.collect(
            &format!(
                "SELECT version, published FROM versions WHERE package = ?1 AND {LATEST_KIND}
                 ORDER BY sort_key"
            ),
            [name],
            |row| {
                Ok(VersionSummary {
                    version: row.get(0)?,
                    published: row.get::<_, Option<i64>>(1)?.and_then(iso_date),
                })
            },
        )?;
        let releases = self.collect(
            "SELECT r.track, r.version, p.version
             FROM release_packages p JOIN release_versions r ON r.rowid = p.release_rowid
             WHERE p.package = ?1 AND (?2 IS NULL OR p.version = ?2)
             ORDER BY r.track, r.order_key DESC, r.version DESC",
            params![name, version],
            |row| {
                Ok(ReleaseMembership {
                    track: row.get(0)?,
                    release: row.get(1)?,
                    version: row.get(2)?,
                })
            },
        )?;
        Ok(PackageInfo {
            name: name.to_owned(),
            homepage,
            maintainers: self.maintainers(name)?,
            latest: latest.1,
            version: self.version_info(rowid, version_text)?,
            versions,
            releases,
        })
    }

    /// The dependencies of a package version (the latest, or `version`), or with `reverse`
    /// the packages whose latest version depends on it (with a `version`: whose constraint
    /// admits that version). `depth` levels are expanded (1: direct only; at most 256,
    /// `MAX_TREE_DEPTH`); weak dependencies are not expanded (they pull nothing in), nor
    /// packages already shown.
    pub fn deps(
        &self,
        name: &str,
        version: Option<&str>,
        reverse: bool,
        depth: u32,
    ) -> Result<DepsReport, IndexError> {
        self.require_synced()?;
        let (rowid, version_text) = match version {
            Some(version) => (self.version_rowid(name, version)?, version.to_owned()),
            None => self.latest_version(name)?,
        };
        let depth = depth.min(MAX_TREE_DEPTH);
        let mut seen = HashSet::from([name.to_owned()]);
        let mut budget = MAX_TREE_NODES;
        let nodes = if reverse {
            let admitted = version.and_then(|v| MeteorVersion::parse(v).ok());
            self.dependents_tree(name, admitted.as_ref(), depth, &mut seen, &mut budget)?
        } else {
            self.dependencies_tree(rowid, depth, &mut seen, &mut budget)?
        };
        Ok(DepsReport {
            name: name.to_owned(),
            version: version_text,
            reverse,
            nodes,
        })
    }

    /// Every release track, or one track's release versions, newest first.
    pub fn releases(&self, track: Option<&str>) -> Result<Releases, IndexError> {
        self.require_synced()?;
        let Some(track) = track else {
            let tracks = self.collect(
                "SELECT t.name,
                        (SELECT count(*) FROM release_versions r WHERE r.track = t.name),
                        (SELECT r.version FROM release_versions r
                         WHERE r.track = t.name AND r.recommended
                         ORDER BY r.order_key DESC LIMIT 1),
                        t.doc
                 FROM release_tracks t ORDER BY t.name",
                [],
                |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get::<_, String>(3)?,
                    ))
                },
            )?;
            return Ok(Releases::Tracks(
                tracks
                    .into_iter()
                    .map(|(track, versions, recommended, doc)| TrackSummary {
                        track,
                        versions,
                        recommended,
                        maintainers: usernames(&doc),
                    })
                    .collect(),
            ));
        };
        let versions = self.collect(
            &format!(
                "SELECT {RELEASE_COLUMNS} FROM release_versions WHERE track = ?1
                 ORDER BY order_key DESC, version DESC"
            ),
            [track],
            release_summary,
        )?;
        if versions.is_empty() {
            self.require_track(track)?;
        }
        Ok(Releases::Track {
            track: track.to_owned(),
            versions,
        })
    }

    /// [`IndexError::UnknownTrack`] unless the index holds the release track `track`.
    pub(crate) fn require_track(&self, track: &str) -> Result<(), IndexError> {
        let known: bool = self
            .connection
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM release_tracks WHERE name = ?1)",
                [track],
                |row| row.get(0),
            )
            .map_err(|e| self.sqlite(e))?;
        if known {
            Ok(())
        } else {
            Err(IndexError::UnknownTrack {
                track: track.to_owned(),
            })
        }
    }

    fn dependencies_tree(
        &self,
        version_rowid: i64,
        depth: u32,
        seen: &mut HashSet<String>,
        budget: &mut usize,
    ) -> Result<Vec<DepNode>, IndexError> {
        let edges = self.collect(
            "SELECT name, constraint_text, refs, weak FROM dependencies
             WHERE version_rowid = ?1 ORDER BY name",
            [version_rowid],
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, Option<String>>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, bool>(3)?,
                ))
            },
        )?;
        let mut nodes = Vec::with_capacity(edges.len());
        for (name, constraint, refs, weak) in edges {
            let resolved = self.newest_admitted(&name, constraint.as_deref())?;
            let mut node = DepNode {
                version: resolved.as_ref().map(|(_, version)| version.clone()),
                references: references(&refs),
                constraint,
                weak,
                repeated: false,
                children: Vec::new(),
                name,
            };
            *budget = budget.saturating_sub(1);
            if depth > 1
                && !weak
                && *budget > 0
                && let Some((rowid, _)) = resolved
            {
                if seen.insert(node.name.clone()) {
                    node.children = self.dependencies_tree(rowid, depth - 1, seen, budget)?;
                } else {
                    node.repeated = true;
                }
            }
            nodes.push(node);
        }
        Ok(nodes)
    }

    fn dependents_tree(
        &self,
        name: &str,
        admitted: Option<&MeteorVersion>,
        depth: u32,
        seen: &mut HashSet<String>,
        budget: &mut usize,
    ) -> Result<Vec<DepNode>, IndexError> {
        let edges = self.collect(
            "SELECT package, version, constraint_text, refs, weak FROM dependents
             WHERE name = ?1 ORDER BY package",
            [name],
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, Option<String>>(2)?,
                    row.get::<_, String>(3)?,
                    row.get(4)?,
                ))
            },
        )?;
        let mut nodes = Vec::with_capacity(edges.len());
        for (package, version, constraint, refs, weak) in edges {
            if let Some(admitted) = admitted
                && !constraint_admits(constraint.as_deref(), admitted)
            {
                continue;
            }
            let mut node = DepNode {
                name: package,
                version: Some(version),
                constraint,
                weak,
                references: references(&refs),
                repeated: false,
                children: Vec::new(),
            };
            *budget = budget.saturating_sub(1);
            if depth > 1 && *budget > 0 {
                if seen.insert(node.name.clone()) {
                    node.children =
                        self.dependents_tree(&node.name, None, depth - 1, seen, budget)?;
                } else {
                    node.repeated = true;
                }
            }
            nodes.push(node);
        }
        Ok(nodes)
    }

    /// The newest version of `name` that `constraint` admits, as (rowid, version).
    fn newest_admitted(
        &self,
        name: &str,
        constraint: Option<&str>,
    ) -> Result<Option<(i64, String)>, IndexError> {
        let candidates = self.collect(
            "SELECT rowid, version FROM versions WHERE package = ?1 AND NOT unmigrated
             ORDER BY sort_key DESC",
            [name],
            |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?)),
        )?;
        // Official versions first: the tool's solver reaches for a prerelease only when
        // nothing else fits.
        let mut prerelease = None;
        for (rowid, version) in candidates {
            let Ok(parsed) = MeteorVersion::parse(&version) else {
                continue;
            };
            if constraint_admits(constraint, &parsed) {
                if !parsed.is_prerelease() {
                    return Ok(Some((rowid, version)));
                }
                prerelease.get_or_insert((rowid, version));
            }
        }
        Ok(prerelease)
    }

    fn version_info(&self, rowid: i64, version: String) -> Result<VersionInfo, IndexError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Doc {
            #[serde(default)]
            description: Option<String>,
            #[serde(default)]
            long_description: Option<String>,
            #[serde(default)]
            readme: Option<serde_json::Value>,
            #[serde(default)]
            git: Option<String>,
            #[serde(default)]
            published_by: Option<User>,
            #[serde(default)]
            deprecated: Option<bool>,
            #[serde(default)]
            deprecated_message: Option<String>,
            #[serde(default)]
            exports: Option<Vec<Export>>,
            #[serde(default)]
            debug_only: Option<bool>,
            #[serde(default)]
            prod_only: Option<bool>,
            #[serde(default)]
            test_only: Option<bool>,
            #[serde(default)]
            unmigrated: Option<bool>,
        }
        #[derive(Deserialize)]
        struct User {
            #[serde(default)]
            username: Option<String>,
        }
        let (doc, published, id): (String, Option<i64>, String) = self
            .connection
            .prepare_cached("SELECT doc, published, id FROM versions WHERE rowid = ?1")
            .and_then(|mut s| {
                s.query_row([rowid], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            })
            .map_err(|e| self.sqlite(e))?;
        let doc: Doc = serde_json::from_str(&doc).map_err(|e| IndexError::Corrupt {
            path: self.path.clone(),
            reason: format!("a stored version record does not parse: {e}"),
        })?;
        let dependencies = self.collect(
            "SELECT name, constraint_text, weak, refs FROM dependencies
             WHERE version_rowid = ?1 ORDER BY name",
            [rowid],
            |row| {
                Ok(Dependency {
                    name: row.get(0)?,
                    constraint: row.get(1)?,
                    weak: row.get(2)?,
                    references: references(&row.get::<_, String>(3)?),
                })
            },
        )?;
        let builds = self.collect(
            "SELECT architectures, published FROM builds WHERE version_id = ?1
             ORDER BY architectures",
            [id],
            |row| {
                Ok(Build {
                    architectures: row.get(0)?,
                    published: row.get::<_, Option<i64>>(1)?.and_then(iso_date),
                })
            },
        )?;
        Ok(VersionInfo {
            version,
            description: doc.description,
            long_description: doc.long_description.filter(|text| !text.is_empty()),
            readme: doc.readme.as_ref().and_then(ReadmeFile::from_value),
            git: doc.git,
            published: published.and_then(iso_date),
            published_by: doc.published_by.and_then(|user| user.username),
            deprecated: doc.deprecated.unwrap_or(false).then(|| {
                doc.deprecated_message
                    .unwrap_or_else(|| "deprecated".to_owned())
            }),
            exports: doc.exports.unwrap_or_default(),
            debug_only: doc.debug_only.unwrap_or(false),
            prod_only: doc.prod_only.unwrap_or(false),
            test_only: doc.test_only.unwrap_or(false),
            unmigrated: doc.unmigrated.unwrap_or(false),
            dependencies,
            builds,
        })
    }

    /// The latest version of `name` as (rowid, version), or [`IndexError::UnknownPackage`].
    pub(crate) fn latest_version(&self, name: &str) -> Result<(i64, String), IndexError> {
        self.connection
            .prepare_cached(
                "SELECT v.rowid, v.version FROM latest l JOIN versions v ON v.rowid = l.version_rowid
                 WHERE l.package = ?1",
            )
            .and_then(|mut s| s.query_row([name], |row| Ok((row.get(0)?, row.get(1)?))).optional())
            .map_err(|e| self.sqlite(e))?
            .ok_or_else(|| IndexError::UnknownPackage {
                name: name.to_owned(),
            })
    }

    /// The rowid of `name@version`, or an error naming what is missing.
    fn version_rowid(&self, name: &str, version: &str) -> Result<i64, IndexError> {
        let rowid = self
            .connection
            .prepare_cached("SELECT rowid FROM versions WHERE package = ?1 AND version = ?2")
            .and_then(|mut s| s.query_row([name, version], |row| row.get(0)).optional())
            .map_err(|e| self.sqlite(e))?;
        match rowid {
            Some(rowid) => Ok(rowid),
            None => {
                self.latest_version(name)?;
                Err(IndexError::UnknownVersion {
                    name: name.to_owned(),
                    version: version.to_owned(),
                })
            }
        }
    }

    /// The hits of `sql`, whose columns are a package's name, latest version, summary,
    /// last update (ms) and direct adds over 30 days, each with its maintainers: every
    /// list of [`SearchHit`]s is read this way.
    pub(crate) fn hits<P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
    ) -> Result<Vec<SearchHit>, IndexError> {
        let rows = self.collect(sql, params, |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Option<String>>(2)?,
                row.get::<_, Option<i64>>(3)?,
                row.get::<_, i64>(4)?,
            ))
        })?;
        rows.into_iter()
            .map(|(name, version, description, last_updated, adds)| {
                Ok(SearchHit {
                    maintainers: self.maintainers(&name)?,
                    name,
                    version,
                    description,
                    last_updated: last_updated.and_then(iso_date),
                    direct_adds_30d: u64::try_from(adds).unwrap_or(0),
                })
            })
            .collect()
    }

    pub(crate) fn maintainers(&self, package: &str) -> Result<Vec<String>, IndexError> {
        self.collect(
            "SELECT DISTINCT username FROM maintainers WHERE package = ?1 ORDER BY username",
            [package],
            |row| row.get(0),
        )
    }

    /// Queries need an index that a sync has brought up to date at least once.
    pub(crate) fn require_synced(&self) -> Result<(), IndexError> {
        if self.sync_token()?.is_none() {
            return Err(IndexError::NotSynced {
                path: self.path.clone(),
            });
        }
        if crate::ingest::is_first_sync(&self.connection).map_err(|e| self.sqlite(e))? {
            return Err(IndexError::Unfinished {
                path: self.path.clone(),
            });
        }
        Ok(())
    }

    pub(crate) fn collect<T, P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
        map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, IndexError> {
        let mut statement = self
            .connection
            .prepare_cached(sql)
            .map_err(|e| self.sqlite(e))?;
        let rows = statement
            .query_map(params, map)
            .map_err(|e| self.sqlite(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sqlite(e))
    }
}

/// The columns of `release_versions` that [`release_summary`] reads, in its order.
pub(crate) const RELEASE_COLUMNS: &str = "version, recommended, order_key, published,
    json_extract(doc, '$.description'), json_extract(doc, '$.tool'), packages";

/// A row of [`RELEASE_COLUMNS`] as a [`ReleaseSummary`].
pub(crate) fn release_summary(row: &rusqlite::Row<'_>) -> rusqlite::Result<ReleaseSummary> {
    Ok(ReleaseSummary {
        version: row.get(0)?,
        recommended: row.get(1)?,
        order_key: row.get(2)?,
        published: row.get::<_, Option<i64>>(3)?.and_then(iso_date),
        description: row.get(4)?,
        tool: row.get(5)?,
        packages: row.get(6)?,
    })
}

/// The usernames in a record's `maintainers`.
fn usernames(doc: &str) -> Vec<String> {
    #[derive(Deserialize)]
    struct Doc {
        #[serde(default)]
        maintainers: Option<Vec<User>>,
    }
    #[derive(Deserialize)]
    struct User {
        #[serde(default)]
        username: Option<String>,
    }
    serde_json::from_str::<Doc>(doc)
        .ok()
        .and_then(|doc| doc.maintainers)
        .into_iter()
        .flatten()
        .filter_map(|user| user.username)
        .collect()
}

/// A stored `references` array (checked when it was ingested).
pub(crate) fn references(refs: &str) -> Vec<Reference> {
    serde_json::from_str(refs).unwrap_or_default()
}

/// Whether a Meteor constraint admits `version`: none admits anything; `=x.y.z` exactly
/// that version; `x.y.z` that version or a later one with the same major version;
/// alternatives are joined with `||` (the tool's `PackageVersion.VersionConstraint`).
pub fn constraint_admits(constraint: Option<&str>, version: &MeteorVersion) -> bool {
    let Some(constraint) = constraint.map(str::trim).filter(|c| !c.is_empty()) else {
        return true;
    };
    constraint.split("||").map(str::trim).any(|alternative| {
        if let Some(exact) = alternative.strip_prefix('=') {
            MeteorVersion::parse(exact).is_ok_and(|exact| &exact == version)
        } else {
            MeteorVersion::parse(alternative)
                .is_ok_and(|minimum| minimum.major() == version.major() && &minimum <= version)
        }
    })
}

/// Milliseconds since the epoch as ISO-8601 (`2015-01-01T00:00:00.000Z`).
pub(crate) fn iso_date(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|date| date.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> MeteorVersion {
        MeteorVersion::parse(text).unwrap()
    }

    #[test]
    fn constraints_admit_as_the_tool_does() {
        assert!(constraint_admits(None, &v("0.1.0")));
        assert!(constraint_admits(Some(""), &v("0.1.0")));
        assert!(constraint_admits(Some("1.0.0"), &v("1.0.0")));
        assert!(constraint_admits(Some("1.0.0"), &v("1.4.2_1")));
        assert!(!constraint_admits(Some("1.0.0"), &v("2.0.0")));
        assert!(!constraint_admits(Some("1.2.0"), &v("1.1.9")));
        assert!(!constraint_admits(Some("1.0.0"), &v("1.0.0-rc.1")));
        assert!(constraint_admits(Some("=1.0.0"), &v("1.0.0")));
        assert!(!constraint_admits(Some("=1.0.0"), &v("1.0.1")));
        assert!(constraint_admits(Some("1.0.0 || 2.0.0"), &v("2.1.0")));
        assert!(constraint_admits(Some("=1.0.0||=3.0.0"), &v("3.0.0")));
        assert!(!constraint_admits(Some("1.0.0 || 2.0.0"), &v("3.0.0")));
        assert!(!constraint_admits(Some("not a version"), &v("1.0.0")));
    }

    #[test]
    fn dates_are_iso() {
        assert_eq!(
            iso_date(1420070400000).as_deref(),
            Some("2015-01-01T00:00:00.000Z")
        );
        assert_eq!(iso_date(i64::MAX), None);
    }
}
