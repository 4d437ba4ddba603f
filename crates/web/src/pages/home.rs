//! The home page (`/`): a search box, the catalog's counts, the packages published and
//! created last, the most added and trending ones (from the server's usage), the latest
//! recommended `METEOR` release, and how to point the `meteor`
//! tool at this server (with the public URL). While the catalog cannot be read (its index
//! is building, turned off, or busy) the page still says how to use the server.

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use exosphere_index::{DatedPackage, Index, Releases, SearchHit};

use super::links;
use super::page::{HTML, Layout, Site, message_for_people, render, text};
use super::text;
use crate::reply::ApiError;

/// How many packages each of the home page's lists shows.
const HOME_LIST: usize = 10;

/// `home.html`.
#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    layout: Layout,
    /// The URL the `meteor` tool is pointed at.
    public_url: String,
    /// This server's version.
    version: &'static str,
    /// What the catalog holds; `None` while it cannot be read.
    catalog: Option<Catalog>,
    /// Why the catalog is not shown.
    note: Option<String>,
}

/// The catalog at a glance.
struct Catalog {
    packages: u64,
    versions: u64,
    releases: u64,
    recent: Vec<DatedPackage>,
    new: Vec<DatedPackage>,
    /// The most direct adds over 30 days, most first (empty without usage).
    most_added: Vec<SearchHit>,
    /// The fastest growing direct adds, week on weeks (empty without usage).
    trending: Vec<SearchHit>,
    /// The latest recommended release of the `METEOR` track.
    meteor: Option<String>,
}

impl Catalog {
    fn of(index: &Index) -> Result<Catalog, ApiError> {
        let counts = index.counts()?;
        let count = |collection: &str| {
            counts
                .iter()
                .find(|(name, _)| name == collection)
                .map_or(0, |(_, records)| *records)
        };
        let meteor = match index.releases(None)? {
            Releases::Tracks(tracks) => tracks
                .into_iter()
                .find(|track| track.track == "METEOR")
                .and_then(|track| track.recommended),
            Releases::Track { .. } => None,
        };
        Ok(Catalog {
            packages: count("packages"),
            versions: count("versions"),
            releases: count("releaseVersions"),
            recent: index.recently_published(HOME_LIST)?,
            new: index.new_packages(HOME_LIST)?,
            most_added: index.most_added(HOME_LIST)?,
            trending: index.trending(HOME_LIST)?,
            meteor,
        })
    }
}

impl HomePage {
    fn of(site: &Site, catalog: Option<Catalog>, note: Option<String>) -> HomePage {
        HomePage {
            layout: site.layout("Meteor packages", "/"),
            public_url: site.config.public_url.clone(),
            version: env!("CARGO_PKG_VERSION"),
            catalog,
            note,
        }
    }
}

/// `GET /`.
pub async fn home(State(site): State<Site>, headers: HeaderMap, uri: Uri) -> Response {
    let on = site.clone();
    let asked = site
        .text(Ok(()), (&headers, &uri), 0, move |index, ()| {
            render(&HomePage::of(&on, Some(Catalog::of(index)?), None))
        })
        .await;
    match asked {
        Ok(answer) => text(answer, HTML),
        Err(error) if error.status == StatusCode::SERVICE_UNAVAILABLE => {
            let page = HomePage::of(&site, None, Some(message_for_people(&error)));
            match render(&page) {
                Ok(body) => {
                    let mut response = body.into_response();
                    let headers = response.headers_mut();
                    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(HTML));
                    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                    response
                }
                Err(error) => site.error_page(&error),
            }
        }
        Err(error) => site.error_page(&error),
    }
}
