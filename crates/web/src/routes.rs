//! The `/api/v1` routes and their handlers: each reads its parameters, asks the read model
//! one question through the index's query methods (`runner`, bounded), and shapes the
//! answer (`views`) with the headers every answer carries (`reply`).

use std::collections::HashSet;
use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any, get};
use exosphere_index::{Index, IndexError, Listing, Releases, Search, SearchSort};
use exosphere_readme::RenderOptions;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::model::ReadModel;
use crate::pages::readme::{self, Origin};
use crate::pages::readme_stamp;
use crate::readme_source::ReadmeSource;
use crate::reply::{
    ApiError, OPENAPI, add_cors, api_format, encode, fresh, preflight, tagged_json,
};
use crate::runner::{Encoded, Runner, SearchFields, usize_of};
use crate::usage::{RangeQuery, StatsSource};
use crate::views::{
    DependencyGroups, Hits, Lookup, PackageDetail, Page, ReadmeAnswer, VersionDetail,
};

/// The query parameters the endpoints read (each reads its own; others are ignored).
#[derive(Debug, Default, Deserialize)]
struct Params {
    limit: Option<String>,
    cursor: Option<String>,
    names: Option<String>,
    #[serde(flatten)]
    search: SearchFields,
}

/// The `/api/v1` routes over `runner`'s read model, and `stats` for usage statistics, for
/// any outer router's state, with READMEs rendered with `readme_options` from
/// `readme_source`'s files when it has them. CORS headers go on every answer, errors and
/// unknown `/api/v1` paths included.
pub(crate) fn router<S: Clone + Send + Sync + 'static>(
    runner: Runner,
    readme_options: RenderOptions,
    stats: Arc<dyn StatsSource>,
    readme_source: Option<Arc<dyn ReadmeSource>>,
) -> Router<S> {
    let readmes = Arc::new((readme_options, readme_source));
    Router::new()
        .route("/api/v1/packages", get(lookup))
        .route("/api/v1/packages/{name}", get(package))
        .route("/api/v1/packages/{name}/versions", paged(Index::versions))
        .route("/api/v1/packages/{name}/versions/{version}", get(version))
        .route(
            "/api/v1/packages/{name}/versions/{version}/readme",
            get(move |api, asked, headers, uri| {
                readme(api, asked, headers, uri, Arc::clone(&readmes))
            }),
        )
        .route(
            "/api/v1/packages/{name}/dependents",
            paged(Index::dependents),
        )
        .route("/api/v1/search", get(search))
        .route("/api/v1/lists/{list}", get(list))
        .route("/api/v1/releases", get(releases))
        .route("/api/v1/releases/{track}", get(release_track))
        .route("/api/v1/maintainers/{user}", get(maintainer))
        .route(
            "/api/v1/stats/packages/{name}",
            get(move |api, name, query, headers| {
                package_stats(api, name, query, headers, Arc::clone(&stats))
            }),
        )
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/{*rest}", any(unknown))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(cors))
        .with_state(runner)
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

/// Runs `query` with the request's `parsed` parameters on the read model and answers
/// with its body as JSON, an entity tag and the read model's freshness; a `304` without
/// querying when the client's tag is current; a JSON error otherwise.
async fn answer<P, T, F>(
    runner: &Runner,
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
    let lasting = move |index: &Index, parsed| Ok((query(index, parsed)?, true));
    answer_as(runner, api_format(), parsed, headers, uri, lasting).await
}

/// [`answer`] for a body that also depends on what `format` names besides the API format
/// (its entity tags change with it), and that may not last (`query` says whether it does:
/// see [`Encoded`]).
async fn answer_as<P, T, F>(
    runner: &Runner,
    format: &str,
    parsed: Result<P, ApiError>,
    headers: &HeaderMap,
    uri: &Uri,
    query: F,
) -> Response
where
    P: Send + 'static,
    T: Serialize + Send + 'static,
    F: FnOnce(&Index, P) -> Result<(T, bool), ApiError> + Send + 'static,
{
    let asked = runner.ask(parsed, headers, uri, format, move |index, parsed| {
        let (body, lasting) = query(index, parsed)?;
        Ok(Encoded::new(encode(&body)?, lasting))
    });
    match asked.await {
        Ok(answer) => fresh(answer.body, &answer.tag, &answer.freshness),
        Err(error) => error.into_response(),
    }
}

/// The page size and start a list's parameters ask for.
fn window(runner: &Runner, params: &Params) -> Result<(u64, u64), ApiError> {
    Ok((
        runner.limit(params.limit.as_deref())?,
        runner.offset(params.cursor.as_deref())?,
    ))
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
fn params<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query
        .map(|Query(params)| params)
        .map_err(|rejection| ApiError::bad_request("invalid_parameter", rejection.body_text()))
}

/// `GET /api/v1/packages/{name}`.
async fn package(
    State(api): State<Runner>,
    name: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    answer(&api, path(name), &headers, &uri, move |index, name| {
        Ok(PackageDetail::from(index.show(&name, None)?))
    })
    .await
}

/// `GET /api/v1/packages/{name}/versions/{version}`: one version in full.
async fn version(
    State(api): State<Runner>,
    asked: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    answer(
        &api,
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

/// `GET /api/v1/packages/{name}/versions/{version}/readme`: the version's README as
/// published (Markdown) and rendered to sanitized HTML, as its page shows it: its README
/// file when the server can show it, else its excerpt, and which of the two. The entity
/// tag follows the source's stamp, so an excerpt shown in place of a README file that
/// may yet arrive is not confirmed once the file is there.
async fn readme(
    State(api): State<Runner>,
    asked: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    uri: Uri,
    readmes: Arc<(RenderOptions, Option<Arc<dyn ReadmeSource>>)>,
) -> Response {
    let format = format!("{}/{:016x}", api_format(), readme_stamp(&readmes.0));
    answer_as(
        &api,
        &format,
        path(asked),
        &headers,
        &uri,
        move |index, (name, version)| {
            let info = index.show(&name, Some(&version))?;
            let (options, source) = &*readmes;
            let shown = readme::readme(&info.name, &info.version, source.as_deref(), options);
            let (markdown, source, html, truncated, lasting) = match shown {
                Some(shown) => (
                    shown.markdown,
                    shown.origin,
                    shown.rendered.html,
                    shown.rendered.truncated,
                    shown.lasting,
                ),
                None => (String::new(), Origin::Excerpt, String::new(), false, true),
            };
            let answer = ReadmeAnswer {
                name: info.name,
                version: info.version.version,
                source,
                markdown,
                html,
                truncated,
            };
            Ok((answer, lasting))
        },
    )
    .await
}

/// The route of a paged list about one package (`/versions`, newest first; `/dependents`,
/// the packages whose latest version depends on it): `list` is the index's paged query.
fn paged<T, L>(list: L) -> MethodRouter<Runner>
where
    T: Serialize + Send + 'static,
    L: Fn(&Index, &str, u64, u64) -> Result<Listing<T>, IndexError> + Copy + Send + Sync + 'static,
{
    get(
        move |State(api): State<Runner>,
              name: Result<Path<String>, PathRejection>,
              query: Result<Query<Params>, QueryRejection>,
              headers: HeaderMap,
              uri: Uri| async move {
            let asked = path(name).and_then(|name| {
                let (limit, offset) = window(&api, &params(query)?)?;
                Ok((name, limit, offset))
            });
            answer(
                &api,
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
    State(api): State<Runner>,
    query: Result<Query<Params>, QueryRejection>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let searched = params(query).and_then(|params| {
        let (limit, offset) = window(&api, &params)?;
        Ok((
            params.search.search(api.config(), offset, limit)?,
            offset,
            limit,
        ))
    });
    answer(
        &api,
        searched,
        &headers,
        &uri,
        |index, (search, offset, limit)| Ok(Hits::of(index.find(&search)?, offset, limit)),
    )
    .await
}

/// `GET /api/v1/packages?names=a,b`: several packages' summaries in one request.
async fn lookup(
    State(api): State<Runner>,
    query: Result<Query<Params>, QueryRejection>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let cap = api.config().max_limit.max(1);
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
    answer(&api, asked, &headers, &uri, |index, names| {
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

/// `GET /api/v1/lists/{list}?limit=N`: the home page's lists, newest or most first:
/// `recently-published` and `new` (dated packages), `most-added` and `trending` (search
/// hits with their direct adds over 30 days).
async fn list(
    State(api): State<Runner>,
    list: Result<Path<String>, PathRejection>,
    query: Result<Query<Params>, QueryRejection>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let asked = path(list).and_then(|list| {
        let limit = api.limit(params(query)?.limit.as_deref())?;
        Ok((list, usize_of(limit)))
    });
    answer(&api, asked, &headers, &uri, |index, (list, limit)| {
        Ok(match list.as_str() {
            "recently-published" => json!({ "items": index.recently_published(limit)? }),
            "new" => json!({ "items": index.new_packages(limit)? }),
            "most-added" => json!({ "items": index.most_added(limit)? }),
            "trending" => json!({ "items": index.trending(limit)? }),
            other => {
                return Err(ApiError::not_found(
                    "not_found",
                    format!(
                        "there is no list {other:?}: ask for recently-published, new, \
                         most-added or trending"
                    ),
                ));
            }
        })
    })
    .await
}

/// `GET /api/v1/releases`: every release track.
async fn releases(State(api): State<Runner>, headers: HeaderMap, uri: Uri) -> Response {
    answer(&api, Ok(()), &headers, &uri, |index, ()| {
        match index.releases(None)? {
            Releases::Tracks(tracks) => Ok(json!({ "items": tracks })),
            Releases::Track { .. } => Err(ApiError::internal(&"a track asked for no track")),
        }
    })
    .await
}

/// `GET /api/v1/releases/{track}`: one track's release versions, newest first.
async fn release_track(
    State(api): State<Runner>,
    track: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    answer(&api, path(track), &headers, &uri, move |index, track| {
        Ok(index.releases(Some(&track))?)
    })
    .await
}

/// `GET /api/v1/maintainers/{user}`: the packages a user maintains, most recently updated
/// first.
async fn maintainer(
    State(api): State<Runner>,
    user: Result<Path<String>, PathRejection>,
    query: Result<Query<Params>, QueryRejection>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let asked = path(user).and_then(|user| {
        let (limit, offset) = window(&api, &params(query)?)?;
        Ok((user, limit, offset))
    });
    answer(&api, asked, &headers, &uri, move |index, (user, limit, offset)| {
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

/// `GET /api/v1/stats/packages/{name}?from=&to=&interval=`: one package's adds over a
/// range of days, per version and period, with the trend against the range before, from
/// `stats` (the catalog's stats rows) within a query turn. A range without adds of a
/// package the read model does not hold is a `404`. The entity tag hashes the body, so a
/// `304` saves the transfer, not the query.
async fn package_stats(
    State(api): State<Runner>,
    name: Result<Path<String>, PathRejection>,
    query: Result<Query<RangeQuery>, QueryRejection>,
    headers: HeaderMap,
    stats: Arc<dyn StatsSource>,
) -> Response {
    let (name, query) = match path(name).and_then(|name| Ok((name, params(query)?))) {
        Ok(asked) => asked,
        Err(error) => return error.into_response(),
    };
    let model = Arc::clone(api.model());
    let answered = api
        .blocking(move || {
            let range = stats.range(&name, &query)?;
            if !range.any_adds && !may_hold(&model, &name) {
                return Err(ApiError::from(IndexError::UnknownPackage { name }));
            }
            Ok(range)
        })
        .await;
    match answered {
        Ok(Ok(range)) => tagged_json(&range.body, &headers, range.max_age),
        Ok(Err(error)) | Err(error) => error.into_response(),
    }
}

/// Whether the read model holds the package `name`, or cannot tell (it is building, off or
/// failing): only a package it knows it does not hold is a `404` for its usage statistics.
/// Blocking.
fn may_hold(model: &ReadModel, name: &str) -> bool {
    match model.query(|index| index.summaries(&[name])) {
        Ok((Ok(found), _)) => !found.is_empty(),
        Ok((Err(_), _)) | Err(_) => true,
    }
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
    use crate::model::ReadModel;
    use crate::runner::ApiConfig;
    use axum::body::Body;
    use axum::http::StatusCode;
    use tower::ServiceExt as _;

    /// Usage numbers as a source gives them: `iron:router` was added on a finished range
    /// (`?to=2015-01-31`) and today, everything else never; `not a name` is refused and
    /// `broken:store` fails.
    struct Numbers;

    impl StatsSource for Numbers {
        fn range(&self, name: &str, query: &RangeQuery) -> Result<crate::RangeStats, ApiError> {
            match name {
                "not a name" => Err(ApiError::bad_request(
                    "invalid_parameter",
                    "\"not a name\" is not a Meteor package name",
                )),
                "broken:store" => Err(ApiError::internal(&"the store is down")),
                _ => Ok(crate::RangeStats {
                    body: json!({"name": name, "to": query.to,
                                 "totalAdds": u8::from(name == "iron:router")}),
                    any_adds: name == "iron:router",
                    max_age: query.to.as_ref().map(|_| 300),
                }),
            }
        }
    }

    fn over(model: std::sync::Arc<ReadModel>) -> Router {
        router(
            Runner::new(model, ApiConfig::default()),
            RenderOptions::default(),
            Arc::new(Numbers),
            None,
        )
    }

    async fn ask(method: Method, uri: &str) -> Response {
        ask_of(&over(ReadModel::new()), method, uri, None).await
    }

    /// Asks `router`, with `If-None-Match: tag` when given.
    async fn ask_of(router: &Router, method: Method, uri: &str, tag: Option<&str>) -> Response {
        let mut request = axum::http::Request::builder().method(method).uri(uri);
        if let Some(tag) = tag {
            request = request.header(header::IF_NONE_MATCH, tag);
        }
        let request = request.body(Body::empty()).unwrap();
        router.clone().oneshot(request).await.unwrap()
    }

    /// A read model serving an index that holds `iron:router` alone.
    fn serving_iron_router(dir: &std::path::Path) -> std::sync::Arc<ReadModel> {
        let path = dir.join("index.sqlite3");
        let dump = [
            r#"{"collection":"packages","doc":{"_id":"p1","name":"iron:router","lastUpdated":{"$date":1}}}"#,
            r#"{"collection":"versions","doc":{"_id":"v1","packageName":"iron:router","version":"1.0.0","lastUpdated":{"$date":1}}}"#,
        ]
        .join("\n");
        Index::open(&path).unwrap().load_dump(&dump, 10).unwrap();
        let model = ReadModel::new();
        model.publish(&path, Some(1)).unwrap();
        model
    }

    /// Issue 13: `/api/v1/stats/packages/{name}` answers as the rest of the API does: CORS
    /// on every answer and preflight, JSON errors, an entity tag of the body and `304`,
    /// revalidation unless the range is finished; a name the read model does not hold and
    /// nobody added is a `404`, and one it cannot tell about yet (building) has zeros.
    #[tokio::test]
    async fn usage_statistics_answer_as_the_rest_of_the_api() {
        let dir = tempfile::tempdir().unwrap();
        let router = over(serving_iron_router(dir.path()));
        let get = |uri: &'static str, tag: Option<String>| {
            let router = router.clone();
            async move { ask_of(&router, Method::GET, uri, tag.as_deref()).await }
        };

        let answer = get("/api/v1/stats/packages/iron:router", None).await;
        assert_eq!(answer.status(), StatusCode::OK);
        let headers = answer.headers().clone();
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(headers[header::CACHE_CONTROL], "public, no-cache");
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        assert_eq!(body(answer).await["totalAdds"], 1);
        let tag = headers[header::ETAG].to_str().unwrap().to_owned();
        let again = get("/api/v1/stats/packages/iron:router", Some(tag.clone())).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(again.headers()[header::ETAG], tag.as_str());
        assert_eq!(again.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        let finished = get(
            "/api/v1/stats/packages/iron:router?to=2015-01-31",
            Some(tag),
        )
        .await;
        assert_eq!(
            finished.status(),
            StatusCode::OK,
            "another body, another tag"
        );
        assert_eq!(
            finished.headers()[header::CACHE_CONTROL],
            "public, max-age=300"
        );

        // Known and never added: zeros. Unknown and never added: a 404.
        let known = get("/api/v1/stats/packages/iron:router", None).await;
        assert_eq!(known.status(), StatusCode::OK);
        let unknown = get("/api/v1/stats/packages/no:such", None).await;
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
        assert_eq!(unknown.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(body(unknown).await["error"]["code"], "package_not_found");
        let building = ask(Method::GET, "/api/v1/stats/packages/no:such").await;
        assert_eq!(
            building.status(),
            StatusCode::OK,
            "no read model to tell yet"
        );

        for (uri, status, code) in [
            (
                "/api/v1/stats/packages/not%20a%20name",
                400,
                "invalid_parameter",
            ),
            ("/api/v1/stats/packages/%FF", 400, "invalid_parameter"),
            (
                "/api/v1/stats/packages/a?from=1&from=2",
                400,
                "invalid_parameter",
            ),
            ("/api/v1/stats/packages/broken:store", 500, "internal"),
        ] {
            let refused = get(uri, None).await;
            assert_eq!(refused.status().as_u16(), status, "{uri}");
            assert_eq!(refused.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
            assert_eq!(body(refused).await["error"]["code"], code, "{uri}");
        }
        let preflight = ask(Method::OPTIONS, "/api/v1/stats/packages/iron:router").await;
        assert_eq!(preflight.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            preflight.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "*"
        );
        let posted = ask(Method::POST, "/api/v1/stats/packages/iron:router").await;
        assert_eq!(posted.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body(posted).await["error"]["code"], "method_not_allowed");
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
        let router = over(ReadModel::off());
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
