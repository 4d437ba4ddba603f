//! The `/api/v1` routes and their handlers: each reads its parameters, asks the read model
//! one question through the index's query methods on the blocking pool, and shapes the
//! answer (`views`) with the headers every answer carries (`reply`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any, get};
use exosphere_index::{Index, IndexError, Listing, Releases, Search, SearchSort};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::model::{QueryError, ReadModel};
use crate::reply::{ApiError, OPENAPI, add_cors, entity_tag, fresh, not_modified, preflight};
use crate::views::{DependencyGroups, Hits, Lookup, PackageDetail, Page, VersionDetail};

/// Items a list returns when the request gives no `limit` (or the cap, if lower).
const DEFAULT_LIMIT: u64 = 20;

/// The deepest position a page may start at: a page is an `OFFSET` query, whose cost grows
/// with the position, so crawling a list through ever deeper cursors is bounded. Atmosphere's
/// longest list, the dependents of `meteor`, holds about 15,000.
const MAX_CURSOR: u64 = 50_000;

/// The longest search query accepted, in characters: the most the index looks at.
pub const MAX_QUERY_CHARS: usize = exosphere_index::MAX_SEARCH_CHARS;

/// How long a request waits for one of the [`ApiConfig::max_queries`] turns before it is
/// answered `503` (busy): long enough for a burst, short enough not to pile requests up.
const QUEUE_WAIT: Duration = Duration::from_secs(1);

/// How the API bounds what one request may ask for, and how many run at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// The most items one page, search or bulk lookup returns (`--api-max-limit`); a larger
    /// `limit` is lowered to it, and a bulk lookup of more names is refused.
    pub max_limit: u64,
    /// The most queries running at once on the blocking pool (`--api-max-queries`), each on
    /// its own reader connection (as many are kept open); a request that waits
    /// [`QUEUE_WAIT`] for a turn is answered `503` with `Retry-After`, so API load cannot
    /// take the blocking pool that DDP, uploads and the feeder share.
    pub max_queries: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            max_limit: 100,
            max_queries: default_max_queries(),
        }
    }
}

/// The default of [`ApiConfig::max_queries`]: twice the CPUs, since a query mostly reads
/// pages the OS has cached.
pub fn default_max_queries() -> usize {
    std::thread::available_parallelism().map_or(2, |cpus| cpus.get() * 2)
}

#[derive(Clone)]
struct Api {
    model: Arc<ReadModel>,
    config: ApiConfig,
    /// One permit per query allowed to run at once.
    turns: Arc<Semaphore>,
}

/// The query parameters the endpoints read (each reads its own; others are ignored).
#[derive(Debug, Default, Deserialize)]
struct Params {
    limit: Option<String>,
    cursor: Option<String>,
    q: Option<String>,
    names: Option<String>,
    sort: Option<String>,
    maintainer: Option<String>,
    published_within: Option<String>,
    include_deprecated: Option<String>,
    exclude_core: Option<String>,
}

impl Params {
    /// The search these parameters ask for (`q`, `sort` and the filters), a page of it.
    fn search(self, offset: u64, limit: u64) -> Result<Search, ApiError> {
        let text = self.q.unwrap_or_default();
        if text.chars().count() > MAX_QUERY_CHARS {
            return Err(ApiError::bad_request(
                "query_too_long",
                format!("q is longer than {MAX_QUERY_CHARS} characters; search with fewer words"),
            ));
        }
        let invalid = |message: String| ApiError::bad_request("invalid_parameter", message);
        let sort = match self.sort {
            Some(sort) => sort.parse::<SearchSort>().map_err(invalid)?,
            None => SearchSort::default(),
        };
        let published_within_days = match self.published_within {
            Some(days) => Some(
                days.parse::<u32>()
                    .ok()
                    .filter(|days| (1..=MAX_DAYS).contains(days))
                    .ok_or_else(|| {
                        invalid(format!(
                            "published_within must be a number of days from 1 to {MAX_DAYS}, \
                             not {days:?}"
                        ))
                    })?,
            ),
            None => None,
        };
        Ok(Search {
            text,
            sort,
            maintainer: self.maintainer.filter(|user| !user.is_empty()),
            published_within_days,
            include_deprecated: flag("include_deprecated", self.include_deprecated)?,
            exclude_core: flag("exclude_core", self.exclude_core)?,
            offset: usize_of(offset),
            limit: usize_of(limit),
        })
    }
}

/// The most days `published_within` accepts: a century.
const MAX_DAYS: u32 = 36_500;

/// A `true`/`false` query parameter; absent is `false`.
fn flag(name: &str, value: Option<String>) -> Result<bool, ApiError> {
    match value.as_deref() {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(ApiError::bad_request(
            "invalid_parameter",
            format!("{name} must be true or false, not {other:?}"),
        )),
    }
}

/// The `/api/v1` routes over `model`, for any outer router's state. CORS headers go on
/// every answer, errors and unknown `/api/v1` paths included.
pub fn router<S: Clone + Send + Sync + 'static>(
    model: Arc<ReadModel>,
    config: ApiConfig,
) -> Router<S> {
    Router::new()
        .route("/api/v1/packages", get(lookup))
        .route("/api/v1/packages/{name}", get(package))
        .route("/api/v1/packages/{name}/versions", paged(Index::versions))
        .route("/api/v1/packages/{name}/versions/{version}", get(version))
        .route(
            "/api/v1/packages/{name}/dependents",
            paged(Index::dependents),
        )
        .route("/api/v1/search", get(search))
        .route("/api/v1/releases", get(releases))
        .route("/api/v1/releases/{track}", get(release_track))
        .route("/api/v1/maintainers/{user}", get(maintainer))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/{*rest}", any(unknown))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(cors))
        .with_state(Api::new(model, config))
}

/// Answers preflights, and puts the CORS headers on every answer.
async fn cors(request: Request, next: Next) -> Response {
    let mut response = if request.method() == Method::OPTIONS {
        preflight()
    } else {
        next.run(request).await
    };
    add_cors(response.headers_mut());
    response
}

impl Api {
    /// The API over `model`, keeping as many idle readers as queries may run at once.
    fn new(model: Arc<ReadModel>, config: ApiConfig) -> Api {
        let turns = config.max_queries.max(1);
        model.keep_idle_readers(turns);
        Api {
            model,
            config,
            turns: Arc::new(Semaphore::new(turns)),
        }
    }

    /// Waits up to [`QUEUE_WAIT`] for a turn to query; `503` (busy) if none comes.
    async fn turn(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        match tokio::time::timeout(QUEUE_WAIT, Arc::clone(&self.turns).acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) | Err(_) => Err(ApiError::busy()),
        }
    }

    /// Runs `query` with the request's `parsed` parameters on the read model and answers
    /// with its body, an entity tag and the read model's freshness; a `304` without
    /// querying when the client's tag is current; the error of parameters that did not
    /// parse.
    async fn answer<P, T, F>(
        &self,
        parsed: Result<P, ApiError>,
        headers: &HeaderMap,
        uri: &Uri,
        query: F,
    ) -> Response
    where
        P: Send + 'static,
        T: Serialize + Send + 'static,
        F: FnOnce(&Index, P) -> Result<T, ApiError> + Send + 'static,
    {
        let parsed = match parsed {
            Ok(parsed) => parsed,
            Err(error) => return error.into_response(),
        };
        if self.model.is_off() {
            return ApiError::disabled().into_response();
        }
        let Some(freshness) = self.model.freshness() else {
            return ApiError::building().into_response();
        };
        let tag = entity_tag(&freshness, uri);
        if not_modified(headers, &tag, false) {
            return fresh(None::<&()>, &tag, &freshness);
        }
        let turn = match self.turn().await {
            Ok(turn) => turn,
            Err(busy) => return busy.into_response(),
        };
        let model = Arc::clone(&self.model);
        let asked = exosphere_task::blocking(move || {
            let answer = model.query(|index| query(index, parsed));
            drop(turn);
            answer
        });
        match asked.await {
            Ok(Ok((Ok(body), freshness))) => {
                let tag = entity_tag(&freshness, uri);
                let body = (!not_modified(headers, &tag, true)).then_some(&body);
                fresh(body, &tag, &freshness)
            }
            Ok(Ok((Err(error), _))) => error.into_response(),
            Ok(Err(QueryError::Building)) => ApiError::building().into_response(),
            Ok(Err(QueryError::Index(error))) => ApiError::from(error).into_response(),
            Err(error) => ApiError::internal(&error).into_response(),
        }
    }

    /// The page size asked for, between 1 and the cap.
    fn limit(&self, params: &Params) -> Result<u64, ApiError> {
        let cap = self.config.max_limit.max(1);
        match &params.limit {
            None => Ok(DEFAULT_LIMIT.min(cap)),
            Some(text) => match text.parse::<u64>() {
                Ok(limit) if limit >= 1 => Ok(limit.min(cap)),
                _ => Err(ApiError::bad_request(
                    "invalid_parameter",
                    format!("limit must be a whole number from 1 to {cap}, not {text:?}"),
                )),
            },
        }
    }
}

/// Where a page starts: the `next_cursor` of the page before, or the start.
fn offset(params: &Params) -> Result<u64, ApiError> {
    let offset = params.cursor.as_deref().map_or(Ok(0), |cursor| {
        cursor.parse().map_err(|_| {
            ApiError::bad_request(
                "invalid_cursor",
                format!(
                    "cursor {cursor:?} is not one this API handed out: pass a page's \
                     next_cursor as it is, or leave it out to start from the first page"
                ),
            )
        })
    })?;
    if offset > MAX_CURSOR {
        return Err(ApiError::bad_request(
            "cursor_too_deep",
            format!(
                "pages past item {MAX_CURSOR} are not served (each costs a scan of every item \
                 before it): narrow the search, or sync the catalog with `exosphere sync` \
                 and query it locally"
            ),
        ));
    }
    Ok(offset)
}

/// A count or position as an index query takes it (larger ones are clamped).
fn usize_of(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

/// The path's parameters, or a JSON `400` when they do not decode (not UTF-8), instead of
/// axum's plain-text rejection.
fn path<T>(path: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    path.map(|Path(value)| value).map_err(|rejection| {
        ApiError::bad_request(
            "invalid_parameter",
            format!(
                "{}: give names in the path as UTF-8, percent-encoded",
                rejection.body_text()
            ),
        )
    })
}

/// The query parameters, or a JSON `400` when they are not a query string.
fn params(query: Result<Query<Params>, QueryRejection>) -> Result<Params, ApiError> {
    query
        .map(|Query(params)| params)
        .map_err(|rejection| ApiError::bad_request("invalid_parameter", rejection.body_text()))
}

/// `GET /api/v1/packages/{name}`.
async fn package(
    State(api): State<Api>,
    name: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    api.answer(path(name), &headers, &uri, move |index, name| {
        Ok(PackageDetail::from(index.show(&name, None)?))
    })
    .await
}

/// `GET /api/v1/packages/{name}/versions/{version}`: one version in full.
async fn version(
    State(api): State<Api>,
    asked: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    api.answer(
        path(asked),
        &headers,
        &uri,
        move |index, (name, version)| {
            let info = index.show(&name, Some(&version))?;
            Ok(VersionDetail {
                latest: info.latest == info.version.version,
                name: info.name,
                dependency_groups: DependencyGroups::of(&info.version.dependencies),
                version: info.version,
                releases: info.releases,
            })
        },
    )
    .await
}

/// The route of a paged list about one package (`/versions`, newest first; `/dependents`,
/// the packages whose latest version depends on it): `list` is the index's paged query.
fn paged<T, L>(list: L) -> MethodRouter<Api>
where
    T: Serialize + Send + 'static,
    L: Fn(&Index, &str, u64, u64) -> Result<Listing<T>, IndexError> + Copy + Send + Sync + 'static,
{
    get(
        move |State(api): State<Api>,
              name: Result<Path<String>, PathRejection>,
              query: Result<Query<Params>, QueryRejection>,
              headers: HeaderMap,
              uri: Uri| async move {
            let asked = path(name).and_then(|name| {
                let p = params(query)?;
                Ok((name, api.limit(&p)?, offset(&p)?))
            });
            api.answer(
                asked,
                &headers,
                &uri,
                move |index, (name, limit, offset)| {
                    Ok(Page::of(list(index, &name, offset, limit)?, offset, limit))
                },
            )
            .await
        },
    )
}

/// `GET /api/v1/search?q=`: the index's ranking (or a browse with `sort` and filters), a
/// page at a time.
async fn search(
    State(api): State<Api>,
    query: Result<Query<Params>, QueryRejection>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let searched = params(query).and_then(|params| {
        let (limit, offset) = (api.limit(&params)?, offset(&params)?);
        Ok((params.search(offset, limit)?, offset, limit))
    });
    api.answer(
        searched,
        &headers,
        &uri,
        |index, (search, offset, limit)| Ok(Hits::of(index.find(&search)?, offset, limit)),
    )
    .await
}

/// `GET /api/v1/packages?names=a,b`: several packages' summaries in one request.
async fn lookup(
    State(api): State<Api>,
    query: Result<Query<Params>, QueryRejection>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let cap = api.config.max_limit.max(1);
    let asked = params(query).and_then(|params| {
        let given = params.names.unwrap_or_default();
        // A name asked twice is answered once, in the order first asked.
        let mut seen = HashSet::new();
        let names: Vec<String> = given
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty() && seen.insert(*name))
            .map(str::to_owned)
            .collect();
        if names.is_empty() {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                "give the packages to look up as names=a,b,c",
            ));
        }
        if names.len() as u64 > cap {
            return Err(ApiError::bad_request(
                "too_many_names",
                format!(
                    "{} names asked, at most {cap} per request: split the lookup",
                    names.len()
                ),
            ));
        }
        Ok(names)
    });
    api.answer(asked, &headers, &uri, |index, names| {
        let asked: Vec<&str> = names.iter().map(String::as_str).collect();
        let items = index.summaries(&asked)?;
        let found: HashSet<&str> = items.iter().map(|hit| hit.name.as_str()).collect();
        let missing = names
            .iter()
            .filter(|name| !found.contains(name.as_str()))
            .cloned()
            .collect();
        Ok(Lookup { items, missing })
    })
    .await
}

/// `GET /api/v1/releases`: every release track.
async fn releases(State(api): State<Api>, headers: HeaderMap, uri: Uri) -> Response {
    api.answer(Ok(()), &headers, &uri, |index, ()| {
        match index.releases(None)? {
            Releases::Tracks(tracks) => Ok(json!({ "items": tracks })),
            Releases::Track { .. } => Err(ApiError::internal(&"a track asked for no track")),
        }
    })
    .await
}

/// `GET /api/v1/releases/{track}`: one track's release versions, newest first.
async fn release_track(
    State(api): State<Api>,
    track: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    api.answer(path(track), &headers, &uri, move |index, track| {
        Ok(index.releases(Some(&track))?)
    })
    .await
}

/// `GET /api/v1/maintainers/{user}`: the packages a user maintains, most recently updated
/// first.
async fn maintainer(
    State(api): State<Api>,
    user: Result<Path<String>, PathRejection>,
    query: Result<Query<Params>, QueryRejection>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let asked = path(user).and_then(|user| {
        let params = params(query)?;
        Ok((user, api.limit(&params)?, offset(&params)?))
    });
    api.answer(asked, &headers, &uri, move |index, (user, limit, offset)| {
        let items = index.find(&Search {
            maintainer: Some(user.clone()),
            sort: SearchSort::Updated,
            include_deprecated: true,
            offset: usize_of(offset),
            limit: usize_of(limit),
            ..Search::default()
        })?;
        if items.is_empty() && offset == 0 {
            return Err(ApiError::not_found(
                "maintainer_not_found",
                format!(
                    "{user:?} maintains no package; search for packages with /api/v1/search?q=..."
                ),
            ));
        }
        Ok(Hits::of(items, offset, limit))
    })
    .await
}

/// `GET /api/v1/openapi.json`: this API's OpenAPI document, built into the binary.
async fn openapi() -> Response {
    let mut response = ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}

/// A method other than `GET` (or a preflight's `OPTIONS`) on an endpoint: a JSON `405`.
async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let mut response = ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: "method_not_allowed",
        message: format!(
            "{method} is not allowed on {}: the API is read-only, ask with GET",
            uri.path()
        ),
    }
    .into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, OPTIONS"));
    response
}

/// Any other `/api/v1` path: a JSON `404` that lists where to look.
async fn unknown(uri: Uri) -> Response {
    ApiError::not_found(
        "not_found",
        format!(
            "{} is not an API endpoint; /api/v1/openapi.json lists them",
            uri.path()
        ),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::StatusCode;
    use tower::ServiceExt as _;

    async fn ask(method: Method, uri: &str) -> Response {
        let router: Router = router(ReadModel::new(), ApiConfig::default());
        let request = axum::http::Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        router.oneshot(request).await.unwrap()
    }

    async fn body(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn a_building_read_model_answers_503_with_retry_after_and_cors() {
        let response = ask(Method::GET, "/api/v1/packages/iron:router").await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let headers = response.headers();
        assert_eq!(headers[header::RETRY_AFTER], "5");
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        assert!(response.extensions().get::<crate::Building>().is_some());
        assert_eq!(body(response).await["error"]["code"], "read_model_building");
        // Parameters are checked first: a bad one is a 400 even while building.
        let deep = ask(Method::GET, "/api/v1/search?q=x&cursor=50001").await;
        assert_eq!(deep.status(), StatusCode::BAD_REQUEST);
        assert_eq!(body(deep).await["error"]["code"], "cursor_too_deep");
        for limit in ["many", "0", "-1"] {
            let bad = ask(Method::GET, &format!("/api/v1/search?q=x&limit={limit}")).await;
            assert_eq!(bad.status(), StatusCode::BAD_REQUEST, "limit={limit}");
            assert_eq!(body(bad).await["error"]["code"], "invalid_parameter");
        }
    }

    #[tokio::test]
    async fn rejections_and_other_methods_are_json() {
        let bad = ask(Method::GET, "/api/v1/packages/%FF").await;
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
        assert_eq!(body(bad).await["error"]["code"], "invalid_parameter");
        let posted = ask(Method::POST, "/api/v1/packages/iron:router").await;
        assert_eq!(posted.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(posted.headers()[header::ALLOW], "GET, OPTIONS");
        assert_eq!(posted.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(body(posted).await["error"]["code"], "method_not_allowed");
    }

    #[tokio::test]
    async fn a_server_without_a_read_model_says_the_api_is_off() {
        let router: Router = router(ReadModel::off(), ApiConfig::default());
        let request = axum::http::Request::builder()
            .uri("/api/v1/packages/iron:router")
            .body(Body::empty())
            .unwrap();
        let response = router.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(!response.headers().contains_key(header::RETRY_AFTER));
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(body(response).await["error"]["code"], "api_disabled");
    }

    #[tokio::test(start_paused = true)]
    async fn a_query_without_a_turn_within_the_wait_is_answered_busy() {
        let config = ApiConfig {
            max_queries: 1,
            ..ApiConfig::default()
        };
        let api = Api::new(ReadModel::new(), config);
        let held = api.turn().await.unwrap();
        let busy = api.turn().await.unwrap_err();
        assert_eq!(busy.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(busy.code, "api_busy");
        let response = busy.into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        drop(held);
        assert!(api.turn().await.is_ok(), "a released turn is taken again");
    }

    #[tokio::test]
    async fn preflights_unknown_paths_and_the_document() {
        let preflight = ask(Method::OPTIONS, "/api/v1/packages/iron:router").await;
        assert_eq!(preflight.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            preflight.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "*"
        );
        assert!(
            preflight.headers()[header::ACCESS_CONTROL_ALLOW_HEADERS]
                .to_str()
                .unwrap()
                .contains("If-None-Match")
        );
        let unknown = ask(Method::GET, "/api/v1/nothing/here").await;
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
        assert_eq!(unknown.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(body(unknown).await["error"]["code"], "not_found");
        let document = body(ask(Method::GET, "/api/v1/openapi.json").await).await;
        assert_eq!(document["openapi"], "3.1.0");
        let paths = document["paths"].as_object().unwrap();
        for path in [
            "/api/v1/packages/{name}",
            "/api/v1/search",
            "/api/v1/releases",
        ] {
            assert!(paths.contains_key(path), "{path}");
        }
    }
}
