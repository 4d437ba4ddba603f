//! The release pages: every release track (`/releases`), one track's release versions
//! (`/release/TRACK`), and one release with the package versions it pins
//! (`/release/TRACK/VERSION`).

use askama::Template;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use exosphere_index::{ReleaseContents, ReleaseSummary, Releases, TrackSummary};

use super::links;
use super::page::{Layout, Site, path};
use super::text;
use crate::reply::ApiError;

/// `releases.html`: the tracks, or one track's versions.
#[derive(Template)]
#[template(path = "releases.html")]
struct ReleasesPage {
    layout: Layout,
    /// The track shown, or `None` for the list of tracks.
    track: Option<String>,
    tracks: Vec<TrackSummary>,
    versions: Vec<ReleaseSummary>,
}

/// `release.html`.
#[derive(Template)]
#[template(path = "release.html")]
struct ReleasePage {
    layout: Layout,
    release: ReleaseContents,
}

/// `GET /releases`: every release track.
pub async fn tracks(State(site): State<Site>, headers: HeaderMap, uri: Uri) -> Response {
    let on = site.clone();
    site.page(Ok(()), (&headers, &uri), 0, move |index, ()| {
        let tracks = match index.releases(None)? {
            Releases::Tracks(tracks) => tracks,
            Releases::Track { .. } => return Err(ApiError::internal(&"a track for no track")),
        };
        Ok(ReleasesPage {
            layout: on.layout("Releases", "/releases"),
            track: None,
            tracks,
            versions: Vec::new(),
        })
    })
    .await
}

/// `GET /release/{track}`: a track's release versions, newest first.
pub async fn track(
    State(site): State<Site>,
    track: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let on = site.clone();
    site.page(path(track), (&headers, &uri), 0, move |index, track| {
        let versions = match index.releases(Some(&track))? {
            Releases::Track { versions, .. } => versions,
            Releases::Tracks(_) => return Err(ApiError::internal(&"no track for a track")),
        };
        Ok(ReleasesPage {
            layout: on.layout(format!("{track} releases"), &links::track(&track)),
            track: Some(track),
            tracks: Vec::new(),
            versions,
        })
    })
    .await
}

/// `GET /release/{track}/{version}`: one release and the package versions it pins.
pub async fn release(
    State(site): State<Site>,
    asked: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let on = site.clone();
    site.page(
        path(asked),
        (&headers, &uri),
        0,
        move |index, (track, version)| {
            let release = index.release(&track, &version)?;
            Ok(ReleasePage {
                layout: on.layout(
                    format!("{track}@{version}"),
                    &links::release(&track, &version),
                ),
                release,
            })
        },
    )
    .await
}
