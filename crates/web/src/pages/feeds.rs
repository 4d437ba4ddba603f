//! Atom feeds of new versions: the catalog's (`/feed.atom`, the packages whose latest
//! version was published last) and one package's (`/package/NAME/feed.atom`, its newest
//! versions). Every URL in them is absolute, on the public URL.

use askama::Template;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;

use super::links;
use exosphere_index::Index;

use super::page::{Site, path, render, text};
use crate::reply::ApiError;

/// Atom's media type.
const ATOM: &str = "application/atom+xml; charset=utf-8";

/// The date of a feed without entries (Atom requires one).
const NO_DATE: &str = "1970-01-01T00:00:00Z";

/// `feed.xml`: an Atom feed.
#[derive(Template)]
#[template(path = "feed.xml")]
struct Feed {
    /// The feed's own absolute URL, also its id.
    id: String,
    title: String,
    /// The page the feed follows.
    page: String,
    /// The newest entry's date.
    updated: String,
    entries: Vec<Entry>,
}

/// One new version.
struct Entry {
    /// The version page's absolute URL, also the entry's id.
    link: String,
    title: String,
    updated: String,
    summary: Option<String>,
}

/// `text` without the characters XML 1.0 forbids (C0 controls other than tab, line feed
/// and carriage return, and U+FFFE, U+FFFF): a summary is a publisher's text, and one such
/// character would make the whole feed unreadable to every reader.
fn xml_text(text: &str) -> String {
    text.chars()
        .filter(|&c| {
            !matches!(c, '\u{0}'..='\u{8}' | '\u{B}' | '\u{C}' | '\u{E}'..='\u{1F}')
                && c != '\u{FFFE}'
                && c != '\u{FFFF}'
        })
        .collect()
}

impl Feed {
    fn new(site: &Site, path: &str, title: String, page: &str, entries: Vec<Entry>) -> Feed {
        Feed {
            id: site.absolute(path),
            title,
            page: site.absolute(page),
            updated: entries
                .iter()
                .map(|entry| entry.updated.clone())
                .max()
                .unwrap_or_else(|| NO_DATE.to_owned()),
            entries,
        }
    }
}

/// `GET /feed.atom`: the catalog's new versions.
pub async fn catalog(State(site): State<Site>, headers: HeaderMap, uri: Uri) -> Response {
    answer(site, Ok(()), (headers, uri), |site, index, ()| {
        let size = usize::try_from(site.config.page_size).unwrap_or(usize::MAX);
        let entries = index
            .recently_published(size)?
            .into_iter()
            .map(|package| Entry {
                link: site.absolute(&links::version(&package.name, &package.version)),
                title: xml_text(&format!("{} {}", package.name, package.version)),
                updated: package.date,
                summary: package.description.as_deref().map(xml_text),
            })
            .collect();
        let title = "New package versions".to_owned();
        Ok(Feed::new(site, "/feed.atom", title, "/", entries))
    })
    .await
}

/// `GET /package/{name}/feed.atom`: one package's newest versions.
pub async fn package(
    State(site): State<Site>,
    name: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    answer(site, path(name), (headers, uri), |site, index, name| {
        let versions = index.versions(&name, 0, site.config.page_size)?;
        let summary = index
            .summaries(&[&name])?
            .into_iter()
            .next()
            .and_then(|hit| hit.description);
        let entries = versions
            .items
            .into_iter()
            .filter_map(|version| {
                Some(Entry {
                    link: site.absolute(&links::version(&name, &version.version)),
                    title: xml_text(&format!("{name} {}", version.version)),
                    updated: version.published?,
                    summary: summary.as_deref().map(xml_text),
                })
            })
            .collect();
        let page = links::package(&name);
        let title = format!("New versions of {name}");
        Ok(Feed::new(
            site,
            &format!("{page}/feed.atom"),
            title,
            &page,
            entries,
        ))
    })
    .await
}

/// The feed `build` makes of the read model for the request's `parsed` parameters, as
/// Atom with its entity tag, or an error page.
async fn answer<P: Send + 'static>(
    site: Site,
    parsed: Result<P, ApiError>,
    (headers, uri): (HeaderMap, Uri),
    build: impl FnOnce(&Site, &Index, P) -> Result<Feed, ApiError> + Send + 'static,
) -> Response {
    let on = site.clone();
    let asked = site
        .text(parsed, (&headers, &uri), 0, move |index, parsed| {
            render(&build(&on, index, parsed)?)
        })
        .await;
    match asked {
        Ok(answer) => text(answer, ATOM),
        Err(error) => site.error_page(&error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_text_holds_no_character_xml_forbids() {
        assert_eq!(xml_text("a\u{1}b\u{0}c\td\ne\u{FFFF}"), "abc\td\ne");
    }
}
