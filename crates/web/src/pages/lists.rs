//! Lists of packages, a page at a time, one template for all: search results
//! (`/search?q=`, the index's ranking, as the API's search), a maintainer's packages
//! (`/maintainer/USER`) and every package by name (`/browse?after=NAME`).

use askama::Template;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use exosphere_index::{IndexError, Search, SearchHit, SearchSort};

use super::links;
use super::page::{Layout, PageParams, Pager, Site, params, path};
use super::text;
use crate::reply::ApiError;
use crate::runner::usize_of;

/// `hits.html`: a list of packages.
#[derive(Template)]
#[template(path = "hits.html")]
struct HitsPage {
    layout: Layout,
    /// The page's heading.
    heading: String,
    /// A line under it (how many, what was searched), if any.
    intro: Option<String>,
    /// The search page's form, as filled in: only the search page has one.
    form: Option<SearchForm>,
    /// What to say when the list is empty.
    empty: String,
    hits: Vec<SearchHit>,
    pager: Pager,
}

/// The search page's form: words, an order and filters, as the request gave them.
struct SearchForm {
    sort: &'static str,
    maintainer: String,
    published_within: String,
    include_deprecated: bool,
    include_unmigrated: bool,
    exclude_core: bool,
}

impl SearchForm {
    /// The orders the form offers, every one search has: (value, label).
    fn sorts(&self) -> [(&'static str, &'static str); SearchSort::ALL.len()] {
        SearchSort::ALL.map(|sort| {
            let label = match sort {
                SearchSort::Relevance => "Best match",
                SearchSort::MostAdded => "Most added (30 days)",
                SearchSort::Updated => "Recently updated",
                SearchSort::Newest => "Newest",
                SearchSort::Name => "Name",
            };
            (sort.as_str(), label)
        })
    }

    /// The "published within" choices: (days, label).
    const WITHIN: [(&'static str, &'static str); 4] = [
        ("", "Any time"),
        ("30", "Last 30 days"),
        ("365", "Last year"),
        ("1095", "Last 3 years"),
    ];

    /// Whether the order named `value` is the one chosen.
    fn sorted(&self, value: &str) -> bool {
        self.sort == value
    }

    /// Whether the "published within" choice `value` is the one chosen.
    fn within(&self, value: &str) -> bool {
        self.published_within == value
    }

    /// A "published within" the request asked for that the form does not list (a link
    /// from elsewhere), shown as one more choice so that submitting again keeps it.
    fn other_within(&self) -> Option<&str> {
        let listed = Self::WITHIN
            .iter()
            .any(|(days, _)| *days == self.published_within);
        (!listed).then_some(self.published_within.as_str())
    }
}

/// `GET /search?q=WORDS&sort=…&page=N` (and the API's filters): packages matching the
/// words, best first, or, with an order or a filter and no words, every package they keep;
/// with neither, the search form alone.
pub async fn search(
    State(site): State<Site>,
    query: Result<Query<PageParams>, QueryRejection>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let asked = params(query).and_then(|params| {
        let at = site.page_at(&params)?;
        let fields = params.search;
        let browse = fields.narrows();
        let search = fields
            .clone()
            .search(site.runner.config(), at.offset, at.size)?;
        Ok((fields, search, browse, at))
    });
    let on = site.clone();
    site.page(
        asked,
        (&headers, &uri),
        0,
        move |index, (fields, search, browse, at)| {
            let words = search.text.trim().to_owned();
            let hits = if words.is_empty() && !browse {
                Vec::new()
            } else {
                // A query of punctuation alone has no words to look for: it finds nothing.
                match index.find(&search) {
                    Err(IndexError::EmptyQuery { .. }) => Vec::new(),
                    found => found?,
                }
            };
            let full = hits.len() as u64 == at.size;
            let form = SearchForm {
                sort: search.sort.as_str(),
                maintainer: search.maintainer.clone().unwrap_or_default(),
                published_within: search
                    .published_within_days
                    .map(|days| days.to_string())
                    .unwrap_or_default(),
                include_deprecated: search.include_deprecated,
                include_unmigrated: search.include_unmigrated,
                exclude_core: search.exclude_core,
            };
            let kept: Vec<(&str, &str)> = std::iter::once(("q", words.as_str()))
                .filter(|(_, words)| !words.is_empty())
                .chain(fields.narrowing())
                .collect();
            let mut layout = on.layout(
                if words.is_empty() {
                    "Search".to_owned()
                } else {
                    format!("{words} – search")
                },
                &links::with_query("/search", "q", &words),
            );
            layout.query = words.clone();
            Ok(HitsPage {
                heading: if words.is_empty() {
                    if browse {
                        "Packages".to_owned()
                    } else {
                        "Search packages".to_owned()
                    }
                } else {
                    format!("Packages matching “{words}”")
                },
                intro: (at.number > 1).then(|| format!("Page {}", at.number)),
                form: Some(form),
                empty: if words.is_empty() && !browse {
                    "Type words from a package's name or what it does.".to_owned()
                } else {
                    "No package matches. Try fewer or other words, or fewer filters.".to_owned()
                },
                pager: Pager::new("/search", &kept, at, full),
                layout,
                hits,
            })
        },
    )
    .await
}

/// `GET /maintainer/{user}?page=N`: the packages a user maintains, most recently updated
/// first; `404` when they maintain none.
pub async fn maintainer(
    State(site): State<Site>,
    user: Result<Path<String>, PathRejection>,
    query: Result<Query<PageParams>, QueryRejection>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let asked = path(user).and_then(|user| Ok((user, site.page_at(&params(query)?)?)));
    let on = site.clone();
    site.page(asked, (&headers, &uri), 0, move |index, (user, at)| {
        let hits = index.find(&Search {
            maintainer: Some(user.clone()),
            sort: SearchSort::Updated,
            include_deprecated: true,
            offset: usize_of(at.offset),
            limit: usize_of(at.size),
            ..Search::default()
        })?;
        if hits.is_empty() && at.number == 1 {
            return Err(ApiError::not_found(
                "maintainer_not_found",
                format!("{user:?} maintains no package in this catalog"),
            ));
        }
        let full = hits.len() as u64 == at.size;
        let page = links::maintainer(&user);
        Ok(HitsPage {
            layout: on.layout(format!("Packages maintained by {user}"), &page),
            heading: format!("Packages maintained by {user}"),
            intro: None,
            form: None,
            empty: "No more packages.".to_owned(),
            pager: Pager::new(&page, &[], at, full),
            hits,
        })
    })
    .await
}

/// `GET /browse?after=NAME`: every package by name, a page at a time; each page starts
/// after the last name of the one before, so a deep page costs what the first does.
pub async fn browse(
    State(site): State<Site>,
    query: Result<Query<PageParams>, QueryRejection>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let asked = params(query).map(|params| params.after);
    let on = site.clone();
    site.page(asked, (&headers, &uri), 0, move |index, after| {
        let size = on.config.page_size.max(1);
        let listing = index.browse(after.as_deref(), size)?;
        let next = (listing.items.len() as u64 == size)
            .then(|| listing.items.last())
            .flatten()
            .map(|last| links::with_query("/browse", "after", &last.name));
        let mut layout = on.layout("All packages", "/browse");
        if let Some(after) = &after {
            layout.canonical = Some(on.absolute(&links::with_query("/browse", "after", after)));
        }
        Ok(HitsPage {
            layout,
            heading: "All packages".to_owned(),
            intro: Some(format!(
                "{}, by name{}.",
                text::count(&listing.total, "package", "packages"),
                after
                    .as_deref()
                    .map(|after| format!(", after “{after}”"))
                    .unwrap_or_default()
            )),
            form: None,
            empty: "No more packages.".to_owned(),
            pager: Pager {
                number: 0,
                previous: after.is_some().then(|| "/browse".to_owned()),
                previous_label: "First page",
                next,
            },
            hits: listing.items,
        })
    })
    .await
}
