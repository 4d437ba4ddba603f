//! The API's answer bodies, built from the index's typed query results: what each endpoint
//! returns, named as the OpenAPI document (`openapi.json`) describes it.

use exosphere_index::{
    Dependency, Listing, PackageInfo, ReleaseMembership, SearchHit, VersionInfo,
};
use serde::Serialize;

use crate::pages::readme::Origin;

/// `GET /api/v1/packages/{name}`: a package at a glance.
#[derive(Debug, Serialize)]
pub(crate) struct PackageDetail {
    /// The package name.
    pub name: String,
    /// Its latest version (official versions before prereleases).
    pub latest_version: String,
    /// The latest version's summary.
    pub description: Option<String>,
    /// The usernames of its maintainers.
    pub maintainers: Vec<String>,
    /// How many versions it has (unmigrated ones left out).
    pub version_count: usize,
    /// The latest version's source repository.
    pub git: Option<String>,
    /// The package's homepage.
    pub homepage: Option<String>,
    /// When its first version was published (the earliest date of any version).
    pub created: Option<String>,
    /// When its latest version was published.
    pub published: Option<String>,
    /// Who published the latest version.
    pub published_by: Option<String>,
    /// Why the latest version is deprecated, when it is.
    pub deprecated: Option<String>,
}

impl From<PackageInfo> for PackageDetail {
    fn from(info: PackageInfo) -> Self {
        PackageDetail {
            created: info
                .versions
                .iter()
                .filter_map(|v| v.published.clone())
                .min(),
            version_count: info.versions.len(),
            latest_version: info.latest,
            description: info.version.description,
            maintainers: info.maintainers,
            git: info.version.git,
            homepage: info.homepage,
            published: info.version.published,
            published_by: info.version.published_by,
            deprecated: info.version.deprecated,
            name: info.name,
        }
    }
}

/// `GET /api/v1/packages/{name}/versions/{version}/readme`: a version's README, raw and
/// rendered.
#[derive(Debug, Serialize)]
pub(crate) struct ReadmeAnswer {
    /// The package name.
    pub name: String,
    /// The version.
    pub version: String,
    /// Where the Markdown comes from: `file`, the README file published with the version
    /// (checked against its hash), or `excerpt`, its README excerpt (`longDescription`, at
    /// most 1,500 characters) when the server has no README file to show.
    pub source: Origin,
    /// The README as published (empty when the version has none).
    pub markdown: String,
    /// The README rendered (GitHub-flavoured Markdown) and sanitized: safe to put in a page.
    pub html: String,
    /// Whether the README was longer than the server renders (`--readme-max-bytes`) and
    /// `html` ends with a notice.
    pub truncated: bool,
}

/// `GET /api/v1/packages/{name}/versions/{version}`: one version in full, as the index
/// shows it (dependencies with their references as published, exports, builds, flags),
/// with its dependencies grouped by kind and the releases that pin it.
#[derive(Debug, Serialize)]
pub(crate) struct VersionDetail {
    /// The package name.
    pub name: String,
    /// Whether this is the package's latest version.
    pub latest: bool,
    /// The version's own fields.
    #[serde(flatten)]
    pub version: VersionInfo,
    /// Its dependencies by kind.
    pub dependency_groups: DependencyGroups,
    /// Releases that pin this version.
    pub releases: Vec<ReleaseMembership>,
}

/// A version's dependencies by how they are used: a dependency appears in each group one
/// of its references falls in, with that group's architectures. `implied` (users of the
/// package get it too) is told apart first, then `weak` (only ordered after, not pulled
/// in), then `unordered` (pulled in, not ordered before); the rest are `strong`.
#[derive(Debug, Default, Serialize)]
pub(crate) struct DependencyGroups {
    /// Pulled in and ordered before.
    pub strong: Vec<GroupedDependency>,
    /// Ordered after when present, not pulled in.
    pub weak: Vec<GroupedDependency>,
    /// Pulled in, not ordered before.
    pub unordered: Vec<GroupedDependency>,
    /// Passed on to the package's own users.
    pub implied: Vec<GroupedDependency>,
}

/// One dependency within a group.
#[derive(Debug, PartialEq, Serialize)]
pub(crate) struct GroupedDependency {
    /// The package depended on.
    pub name: String,
    /// The constraint, none for "any version".
    pub constraint: Option<String>,
    /// The architectures on which it is used this way.
    pub architectures: Vec<String>,
}

impl DependencyGroups {
    /// Groups `dependencies` by their references' flags.
    pub fn of(dependencies: &[Dependency]) -> DependencyGroups {
        let mut groups = DependencyGroups::default();
        for dependency in dependencies {
            let mut by_group: [Vec<String>; 4] = Default::default();
            for reference in &dependency.references {
                let group = if reference.implied {
                    3
                } else if reference.weak {
                    1
                } else if reference.unordered {
                    2
                } else {
                    0
                };
                by_group[group].push(reference.arch.clone());
            }
            let lists = [
                &mut groups.strong,
                &mut groups.weak,
                &mut groups.unordered,
                &mut groups.implied,
            ];
            // A dependency without references goes where its `weak` flag says (strong: 0, weak: 1).
            let bare = dependency
                .references
                .is_empty()
                .then(|| usize::from(dependency.weak));
            for (index, (list, architectures)) in lists.into_iter().zip(by_group).enumerate() {
                let bare = bare == Some(index);
                if !architectures.is_empty() || bare {
                    list.push(GroupedDependency {
                        name: dependency.name.clone(),
                        constraint: dependency.constraint.clone(),
                        architectures,
                    });
                }
            }
        }
        groups
    }
}

/// One page of a list: the items, how many there are in all, and the cursor of the next
/// page (`None` on the last).
#[derive(Debug, Serialize)]
pub(crate) struct Page<T> {
    /// How many items the whole list holds.
    pub total: u64,
    /// The page size used (the asked `limit`, capped).
    pub limit: u64,
    /// This page's items.
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// The page of `listing` that starts at `offset`.
    pub fn of(listing: Listing<T>, offset: u64, limit: u64) -> Page<T> {
        let end = offset.saturating_add(listing.items.len() as u64);
        Page {
            next_cursor: (end < listing.total).then(|| end.to_string()),
            total: listing.total,
            limit,
            items: listing.items,
        }
    }
}

/// `GET /api/v1/packages?names=`: what the catalog knows of each name asked.
#[derive(Debug, Serialize)]
pub(crate) struct Lookup {
    /// The packages found, in the order asked.
    pub items: Vec<SearchHit>,
    /// The names asked that the catalog does not hold.
    pub missing: Vec<String>,
}

/// `GET /api/v1/search` and `GET /api/v1/maintainers/{user}`: packages, best first, a
/// page at a time (without a total, which would cost a second search).
#[derive(Debug, Serialize)]
pub(crate) struct Hits {
    /// The page size used (the asked `limit`, capped).
    pub limit: u64,
    /// The packages.
    pub items: Vec<SearchHit>,
    /// Pass as `cursor` for the next page; `null` when this page is not full.
    pub next_cursor: Option<String>,
}

impl Hits {
    /// The page of hits that starts at `offset`.
    pub fn of(items: Vec<SearchHit>, offset: u64, limit: u64) -> Hits {
        Hits {
            next_cursor: (items.len() as u64 == limit)
                .then(|| offset.saturating_add(limit).to_string()),
            limit,
            items,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dependency(name: &str, weak: bool, references: serde_json::Value) -> Dependency {
        Dependency {
            name: name.into(),
            constraint: None,
            weak,
            references: serde_json::from_value(references).unwrap(),
        }
    }

    #[test]
    fn dependencies_group_by_reference() {
        let groups = DependencyGroups::of(&[
            dependency(
                "a",
                false,
                json!([{"arch": "os"}, {"arch": "web.browser", "implied": true}]),
            ),
            dependency("b", true, json!([{"arch": "os", "weak": true}])),
            dependency("c", false, json!([{"arch": "os", "unordered": true}])),
            dependency("d", false, json!([])),
        ]);
        let names = |list: &[GroupedDependency]| {
            list.iter()
                .map(|d| format!("{}:{}", d.name, d.architectures.join("+")))
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&groups.strong), ["a:os", "d:"]);
        assert_eq!(names(&groups.implied), ["a:web.browser"]);
        assert_eq!(names(&groups.weak), ["b:os"]);
        assert_eq!(names(&groups.unordered), ["c:os"]);
    }

    #[test]
    fn pages_point_at_the_next() {
        let listing = Listing {
            total: 5,
            items: vec![1, 2],
        };
        assert_eq!(Page::of(listing, 2, 2).next_cursor.as_deref(), Some("4"));
        let last = Listing {
            total: 5,
            items: vec![5],
        };
        assert_eq!(Page::of(last, 4, 2).next_cursor, None);
    }
}
