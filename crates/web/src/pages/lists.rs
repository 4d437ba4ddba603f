//! Lists of packages, a page at a time, one template for all: search results
//! (`/search?q=`, the index's ranking, as the API's search), a maintainer's packages
//! (`/maintainer/USER`) and every package by name (`/browse?after=NAME`).

use askama::Template;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use exosphere_index::{IndexError, SearchHit};

use super::links;
use super::page::{Layout, PageParams, Pager, Site, params, path};
use super::text;
use crate::reply::ApiError;
use crate::runner::{search_words, usize_of};

/// `hits.html`: a list of packages.
#[derive(Template)]
#[template(path = "hits.html")]
struct HitsPage {
    layout: Layout,
    /// The page's heading.
    heading: String,
    /// A line under it (how many, what was searched), if any.
    intro: Option<String>,
    /// Whether this is the search page, which has its own search form.
    search: bool,
    /// What to say when the list is empty.
    empty: String,
    hits: Vec<SearchHit>,
    pager: Pager,
}

/// `GET /search?q=WORDS&page=N`: packages matching the words, best first; without words,
/// the search form alone.
pub async fn search(
    State(site): State<Site>,
    query: Result<Query<PageParams>, QueryRejection>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let asked = params(query)
        .and_then(|params| Ok((search_words(params.q.clone())?, site.page_at(&params)?)));
    let on = site.clone();
    site.page(asked, (&headers, &uri), 0, move |index, (q, at)| {
        let words = q.trim();
        let hits = if words.is_empty() {
            Vec::new()
        } else {
            // A query of punctuation alone has no words to look for: it finds nothing.
            match index.search_from(words, None, usize_of(at.offset), usize_of(at.size)) {
                Err(IndexError::EmptyQuery { .. }) => Vec::new(),
                found => found?,
            }
        };
        let full = hits.len() as u64 == at.size;
        let mut layout = on.layout(
            if words.is_empty() {
                "Search".to_owned()
            } else {
                format!("{words} – search")
            },
            &links::with_query("/search", "q", words),
        );
        layout.query = words.to_owned();
        Ok(HitsPage {
            heading: if words.is_empty() {
                "Search packages".to_owned()
            } else {
                format!("Packages matching “{words}”")
            },
            intro: (!words.is_empty() && at.number > 1).then(|| format!("Page {}", at.number)),
            search: true,
            empty: if words.is_empty() {
                "Type words from a package's name or what it does.".to_owned()
            } else {
                format!("No package matches “{words}”. Try fewer or other words.")
            },
            pager: Pager::new("/search", &[("q", words)], at, full),
            layout,
            hits,
        })
    })
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
        let hits = index.search_from("", Some(&user), usize_of(at.offset), usize_of(at.size))?;
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
            search: false,
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
            search: false,
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
