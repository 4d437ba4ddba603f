//! A package's pages: the package page (`/package/NAME`, its latest version) and a
//! version's page (`/package/NAME/VERSION`), both one template, with the full lists they
//! show the start of (`/versions`, `/dependents`) a page at a time.

use askama::Template;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use axum::routing::{MethodRouter, get};
use exosphere_index::{
    Build, DepNode, Index, IndexError, Listing, MeteorVersion, PackageInfo, VersionSummary,
};

use super::chart::{Chart, chart};
use super::links;
use super::page::{Layout, PageParams, Pager, Shown, Site, params, path, range};
use super::readme::{self, Readme};
use super::text;
use crate::reply::ApiError;
use crate::runner::usize_of;
use crate::usage::{Adds, UsageRange, VersionAdds};
use crate::views::{DependencyGroups, GroupedDependency};

/// `GET /package/{name}`: the package, shown at its latest version.
pub async fn package(
    State(site): State<Site>,
    name: Result<Path<String>, PathRejection>,
    query: Result<Query<PageParams>, QueryRejection>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    show(
        site,
        path(name).map(|name| (name, None)),
        query,
        headers,
        uri,
    )
    .await
}

/// `GET /package/{name}/{version}`: the package at one version.
pub async fn version(
    State(site): State<Site>,
    asked: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<PageParams>, QueryRejection>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let asked = path(asked).map(|(name, version)| (name, Some(version)));
    show(site, asked, query, headers, uri).await
}

/// The package page of `asked` (a name, and a version or the latest), with the usage
/// numbers over the range `?range=` names.
async fn show(
    site: Site,
    asked: Result<(String, Option<String>), ApiError>,
    query: Result<Query<PageParams>, QueryRejection>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let asked = asked.and_then(|(name, version)| Ok((name, version, range(&params(query)?)?)));
    let (name, version, range) = match asked {
        Ok(asked) => asked,
        Err(error) => return site.error_page(&error),
    };
    let (shown, salt) = match site.usage(&name, range).await {
        Ok(usage) => usage,
        Err(error) => return site.error_page(&error),
    };
    let on = site.clone();
    site.page_as(
        Ok((name, version)),
        (&headers, &uri),
        salt,
        move |index, (name, version)| {
            let page = PackagePage::of(&on, index, &name, version, range, &shown)?;
            // The excerpt in place of a README file that may yet arrive does not last.
            let lasting = page.readme.as_ref().is_none_or(|readme| readme.lasting);
            Ok((page, lasting))
        },
    )
    .await
}

/// `package.html`: a package at one version.
#[derive(Template)]
#[template(path = "package.html")]
pub struct PackagePage {
    layout: Layout,
    /// What the index holds of the package, at the version shown.
    info: PackageInfo,
    /// Whether this is a version's own page rather than the package's.
    version_page: bool,
    /// The notes above the page: an older version, deprecated, unmigrated.
    banners: Vec<Banner>,
    /// The command that adds it to an app.
    add: String,
    /// The architectures of its builds, without repeats.
    architectures: Vec<String>,
    /// Its README (the file, or the excerpt), already safe HTML.
    readme: Option<Readme>,
    /// The newest versions (a page's worth), and whether there are more.
    versions: Vec<VersionSummary>,
    more_versions: bool,
    /// Its dependencies by kind, each group with a heading.
    groups: Vec<Group>,
    /// The first page of its dependents.
    dependents: Listing<DepNode>,
    /// The usage section.
    stats: Stats,
    /// Badges to copy into a README: (alt text, image URL, Markdown).
    badges: Vec<(String, String, String)>,
}

/// A note shown above a version's details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Banner {
    /// `warning` or `info`, a class of the stylesheet.
    pub kind: &'static str,
    /// The note.
    pub text: String,
    /// A link to follow, with its text.
    pub link: Option<(String, String)>,
}

/// One group of dependencies with its heading.
pub struct Group {
    /// The heading, and the id it is linked by.
    pub title: &'static str,
    /// See `title`.
    pub id: &'static str,
    /// What the group means.
    pub explanation: &'static str,
    /// The dependencies.
    pub items: Vec<GroupedDependency>,
}

/// The stats section.
pub struct Stats {
    /// The ranges to choose from: (label, link, whether it is the one shown).
    pub ranges: Vec<(&'static str, String, bool)>,
    /// The range shown.
    pub range: &'static str,
    /// What there is to show.
    pub state: StatsState,
}

/// What the stats section shows.
pub enum StatsState {
    /// The server keeps no usage numbers.
    Off,
    /// Its usage numbers could not be read.
    Failed,
    /// No app added it in the range.
    Empty,
    /// The chart, and (on the package page) the range per version.
    Drawn(Chart, Vec<VersionAdds>),
}

impl PackagePage {
    /// The page of `name` at `version` (the latest when `None`).
    fn of(
        site: &Site,
        index: &Index,
        name: &str,
        version: Option<String>,
        range: UsageRange,
        shown: &Shown,
    ) -> Result<PackagePage, ApiError> {
        let info = index.show(name, version.as_deref())?;
        let size = site.config.page_size;
        let dependents = index.dependents(name, 0, size)?;
        let page_path = match &version {
            Some(version) => links::version(name, version),
            None => links::package(name),
        };
        let mut layout = site.layout(
            match &version {
                Some(version) => format!("{name} {version}"),
                None => name.to_owned(),
            },
            &page_path,
        );
        layout.feed = Some(format!("{}/feed.atom", links::package(name)));
        let newest: Vec<VersionSummary> = info.versions.iter().rev().cloned().collect();
        let more_versions = newest.len() as u64 > size;
        let readme = readme::readme(
            name,
            &info.version,
            site.readmes.as_deref(),
            &site.config.readme,
        );
        let stats = stats(&page_path, range, shown, version.as_deref());
        Ok(PackagePage {
            banners: banners(&info),
            add: match &version {
                Some(version) => format!("meteor add {name}@={version}"),
                None => format!("meteor add {name}"),
            },
            architectures: architectures(&info.version.builds),
            readme,
            versions: newest.into_iter().take(usize_of(size)).collect(),
            more_versions,
            groups: groups(DependencyGroups::of(&info.version.dependencies)),
            dependents,
            stats,
            badges: badges(site, name),
            version_page: version.is_some(),
            layout,
            info,
        })
    }
}

/// The notes about the version shown: older or newer than the latest, deprecated,
/// unmigrated.
fn banners(info: &PackageInfo) -> Vec<Banner> {
    let mut banners = Vec::new();
    let shown = &info.version.version;
    if *shown != info.latest {
        let older = match (
            MeteorVersion::parse(shown),
            MeteorVersion::parse(&info.latest),
        ) {
            (Ok(shown), Ok(latest)) => shown < latest,
            _ => true,
        };
        let text = if older {
            format!(
                "This is an old version of {}: version {} superseded it.",
                info.name, info.latest
            )
        } else {
            format!(
                "This version is newer than {}'s latest official version, {}: it is a \
                 prerelease or not chosen by default.",
                info.name, info.latest
            )
        };
        banners.push(Banner {
            kind: "warning",
            text,
            link: Some((
                links::version(&info.name, &info.latest),
                format!("See {} {}", info.name, info.latest),
            )),
        });
    }
    if let Some(reason) = &info.version.deprecated {
        banners.push(Banner {
            kind: "warning",
            text: format!("Deprecated: {reason}"),
            link: None,
        });
    }
    if info.version.unmigrated {
        banners.push(Banner {
            kind: "info",
            text: "This version was never migrated to the current package format: the \
                   meteor tool does not choose it."
                .to_owned(),
            link: None,
        });
    }
    banners
}

/// The architectures of `builds`, in order, without repeats.
fn architectures(builds: &[Build]) -> Vec<String> {
    let mut seen = Vec::new();
    for arch in builds
        .iter()
        .flat_map(|build| build.architectures.split('+'))
    {
        if !arch.is_empty() && !seen.iter().any(|known| known == arch) {
            seen.push(arch.to_owned());
        }
    }
    seen
}

/// The dependency groups in the order the page shows them, empty ones left out.
fn groups(groups: DependencyGroups) -> Vec<Group> {
    [
        (
            "Strong",
            "strong",
            "Added to the app and loaded before this package.",
            groups.strong,
        ),
        (
            "Weak",
            "weak",
            "Not added: loaded before this package only when the app has it.",
            groups.weak,
        ),
        (
            "Unordered",
            "unordered",
            "Added to the app, but not necessarily loaded first.",
            groups.unordered,
        ),
        (
            "Implied",
            "implied",
            "Passed on: apps and packages that use this one get it too.",
            groups.implied,
        ),
    ]
    .into_iter()
    .filter(|group| !group.3.is_empty())
    .map(|(title, id, explanation, items)| Group {
        title,
        id,
        explanation,
        items,
    })
    .collect()
}

/// The stats section of the page at `page_path` over `range`; a version's page charts
/// that version's adds alone.
fn stats(page_path: &str, range: UsageRange, shown: &Shown, version: Option<&str>) -> Stats {
    let state = match shown {
        Shown::Off => StatsState::Off,
        Shown::Failed => StatsState::Failed,
        Shown::Numbers(usage) => {
            let drawn = match version {
                None => chart(&usage.periods, range, |period| period.adds),
                Some(version) => chart(&usage.periods, range, |period| {
                    adds_of(&period.versions, version)
                }),
            };
            if drawn.adds.total == 0 {
                StatsState::Empty
            } else {
                let per_version = match version {
                    None => usage.versions.clone(),
                    Some(_) => Vec::new(),
                };
                StatsState::Drawn(drawn, per_version)
            }
        }
    };
    Stats {
        ranges: UsageRange::ALL
            .into_iter()
            .map(|choice| {
                (
                    choice.label(),
                    format!("{page_path}?range={}#stats", choice.param()),
                    choice == range,
                )
            })
            .collect(),
        range: range.label(),
        state,
    }
}

/// `version`'s adds among `versions`.
fn adds_of(versions: &[VersionAdds], version: &str) -> Adds {
    versions
        .iter()
        .find(|adds| adds.version == version)
        .map(|adds| adds.adds)
        .unwrap_or_default()
}

/// The badges of `name`: alt text, the image's path on this server (an absolute URL on
/// another host would be refused by the pages' `img-src 'self'` when the public URL is
/// not the host the page was read from), and the Markdown that shows it, on the public
/// URL, linked to the package page.
fn badges(site: &Site, name: &str) -> Vec<(String, String, String)> {
    let page = site.absolute(&links::package(name));
    ["version", "adds"]
        .into_iter()
        .map(|badge| {
            let image = format!("{}/badge/{badge}.svg", links::package(name));
            let alt = format!("{name} {badge}");
            let markdown = format!("[![{alt}]({})]({page})", site.absolute(&image));
            (alt, image, markdown)
        })
        .collect()
}

/// `versions.html`: every version, a page at a time.
#[derive(Template)]
#[template(path = "versions.html")]
struct VersionsPage {
    layout: Layout,
    name: String,
    versions: Listing<VersionSummary>,
    pager: Pager,
}

/// `dependents.html`: every dependent, a page at a time.
#[derive(Template)]
#[template(path = "dependents.html")]
struct DependentsPage {
    layout: Layout,
    name: String,
    dependents: Listing<DepNode>,
    pager: Pager,
}

/// `GET /package/{name}/versions?page=N`: every version, newest first.
pub fn versions() -> MethodRouter<Site> {
    full_list(
        "versions",
        Index::versions,
        |layout, pager, name, versions| VersionsPage {
            layout,
            name,
            versions,
            pager,
        },
    )
}

/// `GET /package/{name}/dependents?page=N`: the packages whose latest version depends on
/// it, by name, with the constraint each uses.
pub fn dependents() -> MethodRouter<Site> {
    full_list(
        "dependents",
        Index::dependents,
        |layout, pager, name, dependents| DependentsPage {
            layout,
            name,
            dependents,
            pager,
        },
    )
}

/// The route of a package's full list at `/package/NAME/{what}`, a page at a time: `list`
/// is the index's paged query (as the API's lists use it), `page` the template around one
/// page of it.
fn full_list<T, L, P>(
    what: &'static str,
    list: L,
    page: fn(Layout, Pager, String, Listing<T>) -> P,
) -> MethodRouter<Site>
where
    T: Send + 'static,
    L: Fn(&Index, &str, u64, u64) -> Result<Listing<T>, IndexError> + Copy + Send + Sync + 'static,
    P: Template + 'static,
{
    get(
        move |State(site): State<Site>,
              name: Result<Path<String>, PathRejection>,
              query: Result<Query<PageParams>, QueryRejection>,
              headers: HeaderMap,
              uri: Uri| async move {
            let asked = path(name).and_then(|name| Ok((name, site.page_at(&params(query)?)?)));
            let on = site.clone();
            site.page(asked, (&headers, &uri), 0, move |index, (name, at)| {
                let listing = list(index, &name, at.offset, at.size)?;
                let path = format!("{}/{what}", links::package(&name));
                let has_next = at.offset + (listing.items.len() as u64) < listing.total;
                let layout = on.layout(format!("{} of {name}", capitalized(what)), &path);
                Ok(page(
                    layout,
                    Pager::new(&path, &[], at, has_next),
                    name,
                    listing,
                ))
            })
            .await
        },
    )
}

/// `what` with its first letter upper case.
fn capitalized(what: &str) -> String {
    let mut chars = what.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}
