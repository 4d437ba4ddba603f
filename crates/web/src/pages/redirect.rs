//! Atmosphere's links, which READMEs and posts still carry: `/{owner}/{name}` is the
//! package `owner:name`, and `/meteor/{name}` the core package `name`. Each redirects
//! permanently (`301`) to the package page, but only for a package the catalog holds:
//! the route matches any two-segment path no other route takes, and a cached permanent
//! redirect cannot be taken back, so anything else gets a `404` page that offers a search.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::links;
use super::page::{Site, path};
use crate::reply::ApiError;

/// First segments that belong to this server's own paths: never read as an owner, so a
/// mistyped path under them is a `404`, not a package.
const RESERVED: [&str; 16] = [
    "api",
    "assets",
    "browse",
    "feed.atom",
    "healthz",
    "maintainer",
    "mirror",
    "package",
    "packages",
    "release",
    "releases",
    "search",
    "sockjs",
    "stats",
    "uploads",
    "websocket",
];

/// Atmosphere's owner of Meteor's core packages, which have no `owner:` prefix.
const CORE_OWNER: &str = "meteor";

/// The package an Atmosphere path names, unless its first segment is one of ours.
fn package_of(owner: &str, name: &str) -> Option<String> {
    if RESERVED.contains(&owner) {
        return None;
    }
    Some(if owner == CORE_OWNER {
        name.to_owned()
    } else {
        format!("{owner}:{name}")
    })
}

/// `GET /{owner}/{name}`.
pub async fn atmosphere(
    State(site): State<Site>,
    asked: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let nowhere =
        || ApiError::not_found("not_found", format!("there is no page at {}", uri.path()));
    // A WebSocket handshake (a DDP client pointed at a wrong path, such as
    // `/prefix/websocket`) is never an old link: it gets its 404 at once, not a `503`
    // while the catalog's index builds.
    if headers.contains_key(header::UPGRADE) {
        return site.error_page(&nowhere());
    }
    let asked = path(asked).and_then(|(owner, name)| package_of(&owner, &name).ok_or_else(nowhere));
    // No conditional request: a redirect has no entity tag to compare.
    let found = site
        .text(
            asked,
            (&HeaderMap::new(), &uri),
            0,
            |index, name| match index.summaries(&[&name])?.is_empty() {
                true => Err(ApiError::not_found(
                    "package_not_found",
                    format!("there is no package {name:?}"),
                )),
                false => Ok(links::package(&name)),
            },
        )
        .await;
    match found.map(|answer| answer.body) {
        Ok(Some(target)) => {
            let mut response = StatusCode::MOVED_PERMANENTLY.into_response();
            if let Ok(location) = HeaderValue::from_maybe_shared(target) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
        Ok(None) => site.error_page(&ApiError::internal(&"a redirect answered 304")),
        Err(error) => site.error_page(&error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_become_prefixes_and_ours_are_not_owners() {
        assert_eq!(package_of("iron", "router").as_deref(), Some("iron:router"));
        assert_eq!(package_of("meteor", "tracker").as_deref(), Some("tracker"));
        assert_eq!(package_of("stats", "v1"), None);
        assert_eq!(package_of("sockjs", "info"), None);
    }
}
