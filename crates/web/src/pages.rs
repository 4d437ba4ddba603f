//! The web catalog's pages, rendered on the server and complete without JavaScript:
//! home, search, browse, package and version pages with their full lists, maintainers,
//! releases, Atom feeds, badges, the assets they link, and Atmosphere's old links. They
//! ask the read model through the same bounded runner as the JSON API (`runner`), and
//! carry the same entity tags and error kinds, as HTML.
//!
//! Every answer carries a strict Content-Security-Policy ([`CONTENT_SECURITY_POLICY`]):
//! the pages load nothing but this server's own stylesheet and images, run no script and
//! have no inline style, so nothing a record holds can run or load anything.
//!
//! * `page`: the site's settings and state, the layout, rendering, errors, headers;
//! * `links`: the pages' URLs; `text`: how values read; `assets`: the embedded files;
//! * `home`, `lists` (search, browse, maintainer), `package` (package and version pages,
//!   versions, dependents), `releases`, `feeds`, `badges`, `redirect` (Atmosphere's
//!   links): the pages, each with its handlers;
//! * `chart`: the stats section's SVG; `readme`: the README section's slot.

mod assets;
mod badges;
mod chart;
mod feeds;
mod home;
mod links;
mod lists;
mod package;
mod page;
pub(crate) mod readme;
mod redirect;
mod releases;
mod text;

use axum::Router;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware;
use axum::response::Response;
use axum::routing::get;

pub use page::{CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY_REMOTE_IMAGES, SiteConfig};
pub(crate) use page::{Site, readme_stamp};

use crate::reply::ApiError;

/// The pages' routes over `site`, for any outer router's state. Its fallback answers every
/// path no route of the server takes with an HTML `404`.
pub(crate) fn router<S: Clone + Send + Sync + 'static>(site: Site) -> Router<S> {
    let missing = site.clone();
    let refused = site.clone();
    let policy = site.config.content_security_policy();
    Router::new()
        .route("/", get(home::home))
        .route("/search", get(lists::search))
        .route("/browse", get(lists::browse))
        .route("/maintainer/{user}", get(lists::maintainer))
        .route("/package/{name}", get(package::package))
        .route("/package/{name}/versions", package::versions())
        .route("/package/{name}/dependents", package::dependents())
        .route("/package/{name}/feed.atom", get(feeds::package))
        .route("/package/{name}/badge/{file}", get(badges::badge))
        .route("/package/{name}/{version}", get(package::version))
        .route("/releases", get(releases::tracks))
        .route("/release/{track}", get(releases::track))
        .route("/release/{track}/{version}", get(releases::release))
        .route("/feed.atom", get(feeds::catalog))
        .route("/assets/{version}/{name}", get(assets::serve))
        .route("/{owner}/{name}", get(redirect::atmosphere))
        .method_not_allowed_fallback(move |method: Method, uri: Uri| async move {
            method_not_allowed(&refused, &method, &uri)
        })
        .fallback(move |uri: Uri| async move {
            missing.error_page(&ApiError::not_found(
                "not_found",
                format!("there is no page at {}", uri.path()),
            ))
        })
        .layer(middleware::from_fn_with_state(policy, page::secure))
        .with_state(site)
}

/// A method other than `GET` or `HEAD` on a page: an HTML `405`.
fn method_not_allowed(site: &Site, method: &Method, uri: &Uri) -> Response {
    let mut response = site.error_page(&ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: "method_not_allowed",
        message: format!(
            "{method} is not allowed on {}: pages are read with GET",
            uri.path()
        ),
    });
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    response
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::{Arc, OnceLock};

    use axum::body::Body;
    use axum::http::{HeaderMap, Request};
    use axum::routing::any;
    use exosphere_index::Index;
    use tower::ServiceExt as _;

    use super::*;
    use crate::model::ReadModel;
    use crate::readme_source::{NoReadme, ReadmeFile, ReadmeSource};
    use crate::runner::{ApiConfig, Runner};
    use crate::usage::{Adds, PeriodAdds, Usage, UsageError, UsageRange, UsageSource, VersionAdds};

    /// Records no publisher would send, as an upstream or an import could hold them.
    const HOSTILE: &str = r##"{"collection":"packages","doc":{"_id":"evilPackage","name":"evil:pkg","maintainers":[{"username":"\"><img src=x onerror=alert(1)>","id":"evilUser"}],"homepage":"javascript:alert(1)","lastUpdated":{"$date":1500000000000}}}
{"collection":"versions","doc":{"_id":"evilVersion","packageName":"evil:pkg","version":"1.0.0","description":"<script>alert('description')</script>","longDescription":"# Evil\n<script>alert('readme')</script><style>body{}</style>","git":"javascript:alert('git')","dependencies":{"iron:core":{"constraint":"1.0.0","references":[{"arch":"os"},{"arch":"web.browser","weak":true}]}},"exports":[{"name":"<b>X</b>","architectures":["os"]}],"debugOnly":true,"publishedBy":{"username":"<i>me</i>","id":"evilUser"},"published":{"$date":1500000000000},"lastUpdated":{"$date":1500000000000}}}"##;

    /// The 2015 fixture and [`HOSTILE`] in one index, built once for every test.
    fn index_path() -> &'static PathBuf {
        static PATH: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
        &PATH
            .get_or_init(|| {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("index.sqlite3");
                let fixture = std::fs::read_to_string(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../../../shared/fixtures/meteor-2015-catalog.ndjson"
                ))
                .unwrap();
                let dump = format!("{fixture}\n{HOSTILE}\n");
                Index::open(&path).unwrap().load_dump(&dump, 1000).unwrap();
                (dir, path)
            })
            .1
    }

    /// Three days of adds of `iron:router`, nothing for anything else.
    struct Numbers;

    impl UsageSource for Numbers {
        fn usage(&self, name: &str, _: UsageRange) -> Result<Usage, UsageError> {
            if name == "broken:stats" {
                return Err(UsageError("the store is down".into()));
            }
            let adds = |direct, total| Adds { direct, total };
            let version = |version: &str, direct, total| VersionAdds {
                version: version.into(),
                adds: adds(direct, total),
            };
            let busy = name == "iron:router";
            let periods = (1..=3)
                .map(|day| PeriodAdds {
                    from: format!("2024-10-0{day}"),
                    to: format!("2024-10-0{day}"),
                    adds: if busy { adds(day, 2 * day) } else { adds(0, 0) },
                    versions: if busy {
                        vec![version("1.0.6", day, 2 * day)]
                    } else {
                        Vec::new()
                    },
                })
                .collect();
            let versions = if busy {
                vec![version("1.0.6", 6, 12)]
            } else {
                Vec::new()
            };
            Ok(Usage { periods, versions })
        }
    }

    fn site(model: Arc<ReadModel>, page_size: u64) -> Router {
        router(Site {
            runner: Runner::new(model, ApiConfig::default()),
            config: Arc::new(SiteConfig {
                public_url: "https://packages.example.org".into(),
                page_size,
                ..SiteConfig::default()
            }),
            usage: Some(Arc::new(Numbers)),
            readmes: None,
        })
    }

    fn served() -> Router {
        let model = ReadModel::new();
        model.publish(index_path(), Some(1)).unwrap();
        site(model, 5)
    }

    async fn fetch(
        router: &Router,
        uri: &str,
        headers: &[(header::HeaderName, &str)],
    ) -> (StatusCode, HeaderMap, String) {
        let mut request = Request::builder().uri(uri);
        for (name, value) in headers {
            request = request.header(name, *value);
        }
        let response = router
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 24).await.unwrap();
        (
            parts.status,
            parts.headers,
            String::from_utf8(bytes.to_vec()).unwrap(),
        )
    }

    /// Every HTML page: the security headers, no script, no inline style, no resource of
    /// another host.
    fn assert_safe_page(uri: &str, headers: &HeaderMap, body: &str) {
        assert_eq!(
            headers[header::CONTENT_SECURITY_POLICY],
            CONTENT_SECURITY_POLICY,
            "{uri}"
        );
        assert_eq!(headers[header::REFERRER_POLICY], "no-referrer", "{uri}");
        if headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
        {
            assert!(body.starts_with("<!doctype html>"), "{uri}: {body}");
            assert!(body.contains("<html lang=\"en\">"), "{uri}");
        }
        for forbidden in [
            "<script",
            "style=",
            "<style",
            "=\"javascript:",
            "src=\"http",
            "src=\"//",
        ] {
            assert!(!body.contains(forbidden), "{uri} has {forbidden}: {body}");
        }
    }

    #[tokio::test]
    async fn every_page_answers_with_its_headers_and_a_304_for_its_tag() {
        let router = served();
        for uri in [
            "/",
            "/search?q=router",
            "/search",
            "/search?q=%3A%3A",
            "/browse",
            "/browse?after=iron%3Acore",
            "/package/iron:router",
            "/package/iron:router?range=all",
            "/package/iron:router/1.0.0",
            "/package/iron:router/versions?page=2",
            "/package/iron:core/dependents",
            "/maintainer/iron",
            "/releases",
            "/release/METEOR",
            "/release/METEOR/1.1-rc.0",
            "/feed.atom",
            "/package/iron:router/feed.atom",
            "/package/iron:router/badge/version.svg",
            "/package/iron:router/badge/adds.json",
        ] {
            let (status, headers, body) = fetch(&router, uri, &[]).await;
            assert_eq!(status, StatusCode::OK, "{uri}: {body}");
            assert_safe_page(uri, &headers, &body);
            let tag = headers[header::ETAG].to_str().unwrap().to_owned();
            assert_eq!(headers[header::CACHE_CONTROL], "public, no-cache", "{uri}");
            let (again, headers, body) =
                fetch(&router, uri, &[(header::IF_NONE_MATCH, &tag)]).await;
            assert_eq!(again, StatusCode::NOT_MODIFIED, "{uri}");
            assert!(body.is_empty());
            assert_eq!(
                headers[header::CONTENT_SECURITY_POLICY],
                CONTENT_SECURITY_POLICY
            );
        }
    }

    #[tokio::test]
    async fn a_package_page_shows_what_the_index_and_the_usage_source_know() {
        let router = served();
        let (_, _, page) = fetch(&router, "/package/iron:router", &[]).await;
        for expected in [
            "<h1 id=\"package-title\">iron:router</h1>",
            "meteor add iron:router",
            "href=\"/package/iron:core\"",
            "id=\"dependencies-strong\"",
            "https://github.com/iron/router\" rel=\"nofollow noopener noreferrer external\"",
            "href=\"/maintainer/iron\"",
            "<svg xmlns=\"http://www.w3.org/2000/svg\"",
            "id=\"stats-table\"",
            "<td>6</td><td>12</td>",
            "href=\"/package/iron:router?range=90d#stats\"",
            "<link rel=\"canonical\" href=\"https://packages.example.org/package/iron:router\">",
            "https://packages.example.org/package/iron:router/badge/version.svg",
        ] {
            assert!(page.contains(expected), "{expected} missing: {page}");
        }
        let (_, _, dependents) = fetch(&router, "/package/iron:layout", &[]).await;
        assert!(
            dependents.contains("href=\"/package/iron:router\""),
            "{dependents}"
        );

        let (_, _, old) = fetch(&router, "/package/iron:router/1.0.0", &[]).await;
        assert!(
            old.contains("This is an old version of iron:router"),
            "{old}"
        );
        assert!(old.contains("meteor add iron:router@=1.0.0"));
        assert!(
            old.contains("No app reported adding iron:router 1.0.0"),
            "{old}"
        );

        let (_, _, quiet) = fetch(&router, "/package/iron:core", &[]).await;
        assert!(quiet.contains("No app reported adding iron:core in the last 30 days"));
        let (status, _, _) = fetch(&router, "/package/iron:router?range=7d", &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    /// README files with one, `http://files/readme.md`, that is missing until `here` is
    /// set.
    #[derive(Default)]
    struct Arriving {
        here: std::sync::atomic::AtomicBool,
    }

    impl ReadmeSource for Arriving {
        fn readme(&self, file: &ReadmeFile) -> Result<String, NoReadme> {
            use std::sync::atomic::Ordering::SeqCst;
            if file.url != "http://files/readme.md" {
                return Err(NoReadme::Elsewhere);
            }
            if self.here.load(SeqCst) {
                Ok("# Widget\n\n## Only in the file\n\nEverything else.".into())
            } else {
                Err(NoReadme::Coming)
            }
        }
    }

    #[tokio::test]
    async fn a_readme_file_takes_the_excerpts_place_once_it_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite3");
        let dump = r#"{"collection":"packages","doc":{"_id":"p","name":"ann:widget","lastUpdated":{"$date":1}}}
{"collection":"versions","doc":{"_id":"v","packageName":"ann:widget","version":"1.0.0","longDescription":"Short excerpt.","readme":{"url":"http://files/readme.md","hash":"H"},"dependencies":{},"published":{"$date":1},"lastUpdated":{"$date":1}}}"#;
        Index::open(&path).unwrap().load_dump(dump, 10).unwrap();
        let model = ReadModel::new();
        model.publish(&path, Some(1)).unwrap();
        let source = Arc::new(Arriving::default());
        let readmes: Arc<dyn ReadmeSource> = Arc::clone(&source) as _;
        /// The README test asks for no usage statistics.
        struct NoStats;
        impl crate::StatsSource for NoStats {
            fn range(
                &self,
                _: &str,
                _: &crate::usage::RangeQuery,
            ) -> Result<crate::RangeStats, ApiError> {
                Err(ApiError::internal(&"no statistics in this test"))
            }
        }
        let router: Router = crate::router(
            model,
            ApiConfig::default(),
            SiteConfig::default(),
            None,
            Arc::new(NoStats),
            Some(readmes),
        );
        let api = "/api/v1/packages/ann:widget/versions/1.0.0/readme";

        let (status, headers, page) = fetch(&router, "/package/ann:widget", &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("data-source=\"excerpt\""), "{page}");
        assert!(page.contains("Short excerpt.") && page.contains("not available"));
        let (_, _, answer) = fetch(&router, api, &[]).await;
        let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(
            (&answer["source"], &answer["markdown"]),
            (&"excerpt".into(), &"Short excerpt.".into())
        );
        // The excerpt stood in for a file that may arrive: its tag is not confirmed, and
        // the page is not kept.
        let tag = headers[header::ETAG].to_str().unwrap().to_owned();
        assert!(tag.ends_with("-provisional\""), "{tag}");
        let (again, headers, _) = fetch(
            &router,
            "/package/ann:widget",
            &[(header::IF_NONE_MATCH, &tag)],
        )
        .await;
        assert_eq!(again, StatusCode::OK);

        source.here.store(true, std::sync::atomic::Ordering::SeqCst);
        let tag = headers[header::ETAG].to_str().unwrap().to_owned();
        let (status, headers, page) = fetch(
            &router,
            "/package/ann:widget",
            &[(header::IF_NONE_MATCH, &tag)],
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("data-source=\"file\""), "{page}");
        assert!(page.contains("Only in the file") && !page.contains("Short excerpt."));
        let tag = headers[header::ETAG].to_str().unwrap().to_owned();
        let (again, _, _) = fetch(
            &router,
            "/package/ann:widget",
            &[(header::IF_NONE_MATCH, &tag)],
        )
        .await;
        assert_eq!(
            again,
            StatusCode::NOT_MODIFIED,
            "a README file shown is final"
        );
        let (_, _, answer) = fetch(&router, api, &[]).await;
        let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(answer["source"], "file");
        assert!(
            answer["html"]
                .as_str()
                .unwrap()
                .contains("Only in the file")
        );
    }

    #[tokio::test]
    async fn a_websocket_handshake_on_a_two_segment_path_is_a_404_even_while_building() {
        let building = site(ReadModel::new(), 5);
        let (status, _, _) = fetch(
            &building,
            "/elsewhere/websocket",
            &[
                (header::UPGRADE, "websocket"),
                (header::CONNECTION, "upgrade"),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _, _) = fetch(&building, "/elsewhere/websocket", &[]).await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "a page waits for the index"
        );
    }

    #[tokio::test]
    async fn remote_readme_images_open_the_policy_to_https_images_only() {
        let model = ReadModel::new();
        model.publish(index_path(), Some(1)).unwrap();
        let readme = exosphere_readme::RenderOptions {
            remote_images: true,
            ..exosphere_readme::RenderOptions::default()
        };
        let router = router(Site {
            runner: Runner::new(model, ApiConfig::default()),
            config: Arc::new(SiteConfig {
                readme,
                ..SiteConfig::default()
            }),
            usage: None,
            readmes: None,
        });
        let (status, headers, _) = fetch(&router, "/package/evil:pkg", &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            headers[header::CONTENT_SECURITY_POLICY],
            CONTENT_SECURITY_POLICY_REMOTE_IMAGES
        );
        assert!(CONTENT_SECURITY_POLICY_REMOTE_IMAGES.contains("img-src 'self' https:;"));
    }

    #[tokio::test]
    async fn hostile_records_are_escaped_and_their_links_dropped() {
        let router = served();
        for uri in [
            "/package/evil:pkg",
            "/package/evil:pkg/1.0.0",
            "/search?q=evil",
            "/browse",
        ] {
            let (status, headers, body) = fetch(&router, uri, &[]).await;
            assert_eq!(status, StatusCode::OK, "{uri}");
            assert_safe_page(uri, &headers, &body);
            assert!(!body.contains("<img src=x"), "{uri}");
            assert!(
                !body.contains("<i>me</i>") && !body.contains("<b>X</b>"),
                "{uri}"
            );
        }
        let (_, _, page) = fetch(&router, "/package/evil:pkg", &[]).await;
        assert!(
            page.contains("&#60;script&#62;alert(&#39;description&#39;)"),
            "{page}"
        );
        let readme = &page[page.find("id=\"readme\"").expect("the README section")..];
        assert!(
            readme.contains("<h1") && readme.contains("Evil"),
            "{readme}"
        );
        assert!(page.contains("<span class=\"url\">javascript:alert(&#39;git&#39;)</span>"));
        assert!(
            page.contains(
                "href=\"/maintainer/%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E\""
            )
        );
        assert!(page.contains("<li>debug only</li>"));
        let (status, _, _) = fetch(
            &router,
            "/maintainer/%22%3E%3Cimg%20src=x%20onerror=alert(1)%3E",
            &[],
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn errors_are_html_pages_with_their_status() {
        let router = served();
        let deep = format!("/search?q=iron&page={}", 50_000 / 5 + 2);
        let long = format!("/search?q={}", "a".repeat(201));
        for (uri, status) in [
            ("/package/no:such", StatusCode::NOT_FOUND),
            ("/package/iron:router/9.9.9", StatusCode::NOT_FOUND),
            ("/package/no:such/versions", StatusCode::NOT_FOUND),
            (
                "/package/iron:router/badge/downloads.svg",
                StatusCode::NOT_FOUND,
            ),
            ("/maintainer/nobody-at-all", StatusCode::NOT_FOUND),
            ("/release/NO-SUCH", StatusCode::NOT_FOUND),
            ("/release/METEOR/0.0.1", StatusCode::NOT_FOUND),
            ("/nowhere/at/all", StatusCode::NOT_FOUND),
            ("/package/%FF", StatusCode::BAD_REQUEST),
            ("/search?q=iron&page=0", StatusCode::BAD_REQUEST),
            ("/search?q=iron&page=x", StatusCode::BAD_REQUEST),
            (deep.as_str(), StatusCode::BAD_REQUEST),
            (long.as_str(), StatusCode::BAD_REQUEST),
        ] {
            let (got, headers, body) = fetch(&router, uri, &[]).await;
            assert_eq!(got, status, "{uri}: {body}");
            assert_safe_page(uri, &headers, &body);
            assert_eq!(headers[header::CONTENT_TYPE], page::HTML, "{uri}");
            assert!(
                body.contains(&format!("Error {}", status.as_u16())),
                "{uri}"
            );
        }
        let (_, _, missing) = fetch(&router, "/package/no:such", &[]).await;
        assert!(
            missing.contains("There is no package &#34;no:such&#34;."),
            "{missing}"
        );
        assert!(missing.contains("id=\"error-q\""), "a search form");
        let within = format!("/search?q=iron&page={}", 50_000 / 5 + 1);
        assert_eq!(fetch(&router, &within, &[]).await.0, StatusCode::OK);
        let posted = router
            .clone()
            .oneshot(
                Request::post("/package/iron:router")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(posted.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(posted.headers()[header::ALLOW], "GET, HEAD");
        assert_eq!(
            posted.headers()[header::CONTENT_SECURITY_POLICY],
            CONTENT_SECURITY_POLICY
        );
    }

    #[tokio::test]
    async fn badges_and_feeds_use_the_public_url() {
        let router = served();
        let (_, headers, svg) = fetch(&router, "/package/iron:router/badge/version.svg", &[]).await;
        assert!(
            headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("image/svg+xml")
        );
        assert!(svg.contains(">1.0.6</text>"), "{svg}");
        let (_, _, adds) = fetch(&router, "/package/iron:router/badge/adds.json", &[]).await;
        let adds: serde_json::Value = serde_json::from_str(&adds).unwrap();
        assert_eq!(adds["message"], "12");
        assert_eq!(adds["schemaVersion"], 1);
        let (status, _, missing) = fetch(&router, "/package/no:such/badge/version.svg", &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(missing.contains(">not found</text>"));
        let (_, headers, feed) = fetch(&router, "/package/iron:router/feed.atom", &[]).await;
        assert!(
            headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("application/atom+xml")
        );
        assert!(
            feed.contains("<id>https://packages.example.org/package/iron:router/1.0.6</id>"),
            "{feed}"
        );
        let (_, _, catalog) = fetch(&router, "/feed.atom", &[]).await;
        assert!(catalog.contains("<entry>"), "{catalog}");
        assert!(catalog.contains("<link rel=\"self\" type=\"application/atom+xml\" href=\"https://packages.example.org/feed.atom\"/>"));
    }

    #[tokio::test]
    async fn atmosphere_links_redirect_to_packages_that_exist() {
        let router = served();
        for (uri, target) in [
            ("/iron/router", "/package/iron:router"),
            ("/meteor/accounts-base", "/package/accounts-base"),
        ] {
            let (status, headers, _) = fetch(&router, uri, &[]).await;
            assert_eq!(status, StatusCode::MOVED_PERMANENTLY, "{uri}");
            assert_eq!(headers[header::LOCATION], target);
            assert_eq!(
                headers[header::CONTENT_SECURITY_POLICY],
                CONTENT_SECURITY_POLICY
            );
        }
        for uri in ["/nobody/nothing", "/stats/v1", "/api/v2", "/package/x/y/z"] {
            let (status, _, body) = fetch(&router, uri, &[]).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{uri}: {body}");
        }
    }

    /// The server's own routes beside the pages (stand-ins with the same shapes) are never
    /// taken by the pages' catch-alls.
    #[tokio::test]
    async fn the_servers_routes_keep_their_paths() {
        let router = Router::new()
            .route("/healthz", get(|| async { "health" }))
            .route("/stats/v1/{day}", get(|| async { "stats" }))
            .route("/websocket", any(|| async { "websocket" }))
            .route("/sockjs/{*rest}", any(|| async { "sockjs" }))
            .route("/packages/{*key}", get(|| async { "file" }))
            .route("/mirror/files/{*key}", get(|| async { "mirrored" }))
            .merge(served());
        for (uri, body) in [
            ("/healthz", "health"),
            ("/stats/v1/2024-10-01", "stats"),
            ("/websocket", "websocket"),
            ("/sockjs/info", "sockjs"),
            ("/sockjs/iframe.html", "sockjs"),
            ("/packages/iron_router/1.0.6/source.tgz", "file"),
            ("/packages/iron/router", "file"),
            ("/mirror/files/a/b", "mirrored"),
        ] {
            let (status, _, got) = fetch(&router, uri, &[]).await;
            assert_eq!((status, got.as_str()), (StatusCode::OK, body), "{uri}");
        }
    }

    #[tokio::test]
    async fn while_the_read_model_builds_pages_say_so_and_home_still_helps() {
        let router = site(ReadModel::new(), 5);
        let (status, headers, body) = fetch(&router, "/package/iron:router", &[]).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers[header::RETRY_AFTER], "5");
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        assert_safe_page("/package/iron:router", &headers, &body);
        assert!(body.contains("building its catalog index"), "{body}");
        let (status, headers, home) = fetch(&router, "/", &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        assert!(home.contains("METEOR_PACKAGE_SERVER_URL=https://packages.example.org"));
        assert!(home.contains("id=\"catalog-note\""));
        let off = site(ReadModel::off(), 5);
        let (status, headers, _) = fetch(&off, "/browse", &[]).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!headers.contains_key(header::RETRY_AFTER));
    }

    #[tokio::test]
    async fn assets_are_immutable_under_their_hash() {
        let router = served();
        let css = assets::href("site.css");
        let (status, headers, body) = fetch(&router, &css, &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            headers[header::CACHE_CONTROL],
            "public, max-age=31536000, immutable"
        );
        assert!(
            headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/css")
        );
        assert!(body.contains("prefers-color-scheme: dark"));
        let (status, _, _) = fetch(&router, "/assets/0000000000000000/site.css", &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (_, _, home) = fetch(&router, "/", &[]).await;
        assert!(home.contains(&format!("<link rel=\"stylesheet\" href=\"{css}\">")));
    }
}
