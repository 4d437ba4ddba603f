//! How every answer is shaped: the error kinds ([`ApiError`]) with the headers they carry
//! (as JSON errors, `{"error": {"code": ..., "message": ...}}`, for the API; the pages
//! render their own), entity tags from the read model's state and the URL, `304 Not
//! Modified`, cache headers, and the API's JSON bodies and CORS headers.

use std::hash::{Hash as _, Hasher as _};

use axum::body::Bytes;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use exosphere_index::IndexError;
use serde::Serialize;
use serde_json::json;

use crate::model::Freshness;

/// The OpenAPI 3.1 document of this API, served at `/api/v1/openapi.json`. It is the format
/// of every answer, so entity tags hash it too.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// The catalog head sequence the answer is current with.
pub(crate) const HEAD_HEADER: HeaderName = HeaderName::from_static("exosphere-catalog-head");

/// `current`, or `catching-up` while the read model applies a change the catalog made.
pub(crate) const STATE_HEADER: HeaderName = HeaderName::from_static("exosphere-read-model");

/// Marks the `503` of a read model still building its first file, or turned off: the
/// server answers it on purpose, so the server's request log does not count it as a failure.
#[derive(Debug, Clone, Copy)]
pub struct Building;

/// Seconds a client is told to wait while the first build of the read model runs.
const RETRY_AFTER_SECONDS: &str = "5";

/// Answers change within a second of a write, so clients revalidate every time; a `304`
/// costs no query.
pub(crate) const CACHE_DATA: &str = "public, no-cache";

/// An API error: its status, a stable machine-readable code and a message saying what to
/// do next.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The stable code (`package_not_found`, `invalid_parameter`, …).
    pub code: &'static str,
    /// What went wrong and what to do.
    pub message: String,
}

impl ApiError {
    /// A `400` about a request parameter.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
        }
    }

    /// A `404` for something the catalog does not hold.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code,
            message: message.into(),
        }
    }

    /// The `503` of a read model whose first build is still running.
    pub fn building() -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "read_model_building",
            message: format!(
                "the server is building its catalog index for the API; retry in \
                 {RETRY_AFTER_SECONDS} seconds"
            ),
        }
    }

    /// The `503` of a request that found every query turn taken (`--api-max-queries`)
    /// for the whole wait.
    pub fn busy() -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "api_busy",
            message: format!(
                "the server is answering as many API queries as it allows at once; retry in \
                 {RETRY_AFTER_SECONDS} seconds (its operator can raise --api-max-queries)"
            ),
        }
    }

    /// The `503` of a server that keeps no read model (`--read-model off`).
    pub fn disabled() -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "api_disabled",
            message: "this server does not serve the JSON API (it runs with --read-model off); \
                      its operator can turn it on, or use the DDP catalog"
                .to_owned(),
        }
    }

    /// A `500`, logged: the message says only that the server failed.
    pub fn internal(error: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(%error, "an API query failed");
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: "the server failed to answer; its log says why".to_owned(),
        }
    }
}

impl From<IndexError> for ApiError {
    fn from(error: IndexError) -> Self {
        match &error {
            IndexError::UnknownPackage { name } => ApiError::not_found(
                "package_not_found",
                format!("there is no package {name:?}; search with /api/v1/search?q=..."),
            ),
            IndexError::UnknownVersion { name, version } => ApiError::not_found(
                "version_not_found",
                format!(
                    "{name} has no version {version:?}; list them with \
                     /api/v1/packages/{name}/versions"
                ),
            ),
            IndexError::UnknownTrack { track } => ApiError::not_found(
                "track_not_found",
                format!("there is no release track {track:?}; list them with /api/v1/releases"),
            ),
            IndexError::UnknownRelease { track, version } => ApiError::not_found(
                "release_not_found",
                format!(
                    "release track {track} has no release {version:?}; list them with \
                     /api/v1/releases/{track}"
                ),
            ),
            IndexError::EmptyQuery { .. } => ApiError::bad_request(
                "empty_query",
                "q has no letters or digits to look for: give some words, or leave q out to browse",
            ),
            IndexError::NotSynced { .. } | IndexError::Unfinished { .. } => ApiError::building(),
            _ => ApiError::internal(&error),
        }
    }
}

impl ApiError {
    /// Puts this error's status and headers on `response`, whatever its body: a server
    /// error is never stored, a `503` says when to retry (unless waiting cannot help), and
    /// one answered on purpose is marked [`Building`] for the request log.
    pub(crate) fn mark(&self, mut response: Response) -> Response {
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        // A server error says nothing about the resource: no cache may keep it.
        let cache = if self.status.is_server_error() {
            "no-store"
        } else {
            CACHE_DATA
        };
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
        // Waiting does not turn a disabled API on.
        if self.status == StatusCode::SERVICE_UNAVAILABLE && self.code != "api_disabled" {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
        }
        if matches!(self.code, "read_model_building" | "api_disabled") {
            response.extensions_mut().insert(Building);
        }
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = axum::Json(json!({"error": {"code": self.code, "message": self.message}}));
        self.mark(body.into_response())
    }
}

/// What an API answer's body depends on besides the index and the URL: this build's
/// version and its API document, so that an upgrade that changes a body changes every tag.
pub(crate) fn api_format() -> &'static str {
    static FORMAT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    FORMAT.get_or_init(|| {
        let mut hasher = std::hash::DefaultHasher::new();
        OPENAPI.hash(&mut hasher);
        format!("{}/{:016x}", env!("CARGO_PKG_VERSION"), hasher.finish())
    })
}

/// The entity tag of `uri`'s answer from a read model at `freshness`: the same `format`
/// (this build's API document or templates, and whatever else the body shows), UTC `day`
/// ([`utc_day`]), sync token, rewrites of derived rows and usage stamp (the same index content) and URL
/// give the same body.
pub(crate) fn entity_tag(format: &str, day: u64, freshness: &Freshness, uri: &Uri) -> String {
    let mut hasher = std::hash::DefaultHasher::new();
    format.hash(&mut hasher);
    day.hash(&mut hasher);
    freshness.token.hash(&mut hasher);
    freshness.rewrites.hash(&mut hasher);
    freshness.usage.hash(&mut hasher);
    uri.path().hash(&mut hasher);
    uri.query().unwrap_or("").hash(&mut hasher);
    format!("\"{:016x}\"", hasher.finish())
}

/// Today's number of days since 1970 in UTC, which every entity tag hashes: answers that
/// count days from today (a search published within a week, the usage ranges ending today)
/// change at midnight UTC even when the catalog does not, and so does every tag, which
/// also lets go every answer kept under the day's tags.
pub(crate) fn utc_day() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs() / 86_400)
}

/// Whether `If-None-Match` names `tag`, or is `*` and the resource `exists` (RFC 9110
/// §13.1.2: `*` matches any current representation, so only once a query found one; a
/// missing package must answer `404`, not `304`). Weak tags compare by their value.
pub(crate) fn not_modified(headers: &HeaderMap, tag: &str, exists: bool) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|candidate| candidate.trim())
        .any(|candidate| (candidate == "*" && exists) || candidate.trim_start_matches("W/") == tag)
}

/// A `200` JSON answer whose entity tag hashes its own bytes, or a `304` when the request's
/// `If-None-Match` names that tag: for answers read from elsewhere than the read model,
/// whose state cannot name them before they are computed, so a `304` saves the transfer,
/// not the work. Kept `max_age` seconds when given, else revalidated every time.
pub(crate) fn tagged_json(
    body: &serde_json::Value,
    headers: &HeaderMap,
    max_age: Option<u64>,
) -> Response {
    let bytes = match serde_json::to_vec(body) {
        Ok(bytes) => bytes,
        Err(error) => return ApiError::internal(&error).into_response(),
    };
    let mut hasher = std::hash::DefaultHasher::new();
    bytes.hash(&mut hasher);
    let tag = format!("\"{:016x}\"", hasher.finish());
    let mut response = if not_modified(headers, &tag, true) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
    };
    let cache = match max_age {
        Some(seconds) => format!("public, max-age={seconds}"),
        None => CACHE_DATA.to_owned(),
    };
    for (name, value) in [(header::ETAG, tag), (header::CACHE_CONTROL, cache)] {
        if let Ok(value) = HeaderValue::try_from(value) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// A `200` answer of encoded JSON, or a `304` when the client holds `tag` already, with
/// the headers saying how current it is.
pub(crate) fn fresh(body: Option<Bytes>, tag: &str, freshness: &Freshness) -> Response {
    let response = match body {
        Some(body) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        None => StatusCode::NOT_MODIFIED.into_response(),
    };
    current(response, tag, freshness)
}

/// `body` as JSON text, for [`fresh`]: encoded where the query ran, so that the bytes can
/// be given again.
pub(crate) fn encode(body: &impl Serialize) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(body).map_err(|error| ApiError::internal(&error))
}

/// Puts on `response` its entity tag, its cache policy and the headers saying how current
/// the read model it was read from is.
pub(crate) fn current(mut response: Response, tag: &str, freshness: &Freshness) -> Response {
    let headers = response.headers_mut();
    if let Ok(tag) = HeaderValue::from_str(tag) {
        headers.insert(header::ETAG, tag);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE_DATA));
    if let Some(head) = freshness.head {
        headers.insert(HEAD_HEADER, HeaderValue::from(head));
    }
    headers.insert(
        STATE_HEADER,
        HeaderValue::from_static(if freshness.catching_up {
            "catching-up"
        } else {
            "current"
        }),
    );
    response
}

/// CORS on every API answer, errors included: the API is public and read-only, so any
/// page may read it; scripts may read the headers that say how current it is.
pub(crate) fn add_cors(headers: &mut HeaderMap) {
    insert_all(
        headers,
        [
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            (
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                "ETag, Retry-After, Exosphere-Catalog-Head, Exosphere-Read-Model",
            ),
        ],
    );
}

/// The answer to a CORS preflight (a script sending `If-None-Match` asks first).
pub(crate) fn preflight() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    insert_all(
        response.headers_mut(),
        [
            (header::ACCESS_CONTROL_ALLOW_METHODS, "GET, HEAD, OPTIONS"),
            (
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "If-None-Match, Content-Type",
            ),
            (header::ACCESS_CONTROL_MAX_AGE, "86400"),
        ],
    );
    response
}

fn insert_all<const N: usize>(headers: &mut HeaderMap, values: [(HeaderName, &'static str); N]) {
    for (name, value) in values {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(head: u64) -> Freshness {
        Freshness {
            token: format!("{{\"packagesSeq\":{head}}}"),
            head: Some(head),
            catching_up: false,
            usage: 0,
            rewrites: 0,
        }
    }

    #[test]
    fn tags_follow_the_state_the_day_and_the_url() {
        let uri: Uri = "/api/v1/packages/a?x=1".parse().unwrap();
        let other: Uri = "/api/v1/packages/a?x=2".parse().unwrap();
        let tag = |freshness: &Freshness, uri: &Uri| entity_tag(api_format(), 1, freshness, uri);
        assert_eq!(tag(&at(1), &uri), tag(&at(1), &uri));
        assert_ne!(tag(&at(1), &uri), tag(&at(2), &uri));
        assert_ne!(tag(&at(1), &uri), tag(&at(1), &other));
        let rewritten = Freshness {
            rewrites: 1,
            ..at(1)
        };
        assert_ne!(
            tag(&at(1), &uri),
            tag(&rewritten, &uri),
            "derived rows rewritten"
        );
        assert_ne!(
            entity_tag(api_format(), 1, &at(1), &uri),
            entity_tag(api_format(), 2, &at(1), &uri),
            "the next day"
        );
        assert_ne!(
            entity_tag("0.1.0/a", 1, &at(1), &uri),
            entity_tag("0.2.0/a", 1, &at(1), &uri),
            "an upgrade changes the tags"
        );
        assert!(api_format().starts_with(env!("CARGO_PKG_VERSION")));
    }

    #[test]
    fn server_errors_are_never_stored_and_client_errors_revalidate() {
        let internal = ApiError::internal(&"a test failure").into_response();
        assert_eq!(internal.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(internal.headers()[header::CACHE_CONTROL], "no-store");
        assert!(!internal.headers().contains_key(header::RETRY_AFTER));
        let missing = ApiError::not_found("package_not_found", "none").into_response();
        assert_eq!(missing.headers()[header::CACHE_CONTROL], CACHE_DATA);
    }

    #[test]
    fn if_none_match_lists_and_weak_tags_match() {
        let tag = "\"abc\"";
        let mut headers = HeaderMap::new();
        assert!(!not_modified(&headers, tag, true));
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"x\", W/\"abc\""),
        );
        assert!(not_modified(&headers, tag, false));
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(not_modified(&headers, tag, true));
        assert!(!not_modified(&headers, tag, false), "* before the query");
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"abd\""));
        assert!(!not_modified(&headers, tag, true));
    }
}
