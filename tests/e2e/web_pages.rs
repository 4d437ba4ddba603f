//! The web catalog's pages as a person's browser (with JavaScript off) reads them: a real
//! `exosphere serve` over the 2015 fixture, with a few days of usage numbers and a hostile
//! package, asked over HTTP. Every page a visitor reaches from the home page and a package
//! page answers, carries the security headers, holds no script, no inline style and no
//! resource of another host; a package page shows its dependencies, dependents and
//! usage; Atmosphere's links redirect; the server's other routes keep their paths.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use chrono::{Days, Utc};
use serde_json::{Value, json};

use crate::common::{Server, fixture, import};

/// The most a test waits for the read model's first build.
const PATIENCE: Duration = Duration::from_secs(60);

/// The most pages the crawl fetches.
const CRAWL: usize = 150;

/// One answer.
pub(crate) struct Page {
    pub(crate) status: u16,
    header: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Page {
    /// The value of the header `name`, if the answer has it.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.header
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// `GET url` without following redirects, with `If-None-Match: tag` when given.
pub(crate) fn get(url: &str, tag: Option<&str>) -> Page {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .new_agent();
    let mut request = agent.get(url);
    if let Some(tag) = tag {
        request = request.header("If-None-Match", tag);
    }
    let mut response = request.call().expect("HTTP request");
    let header = response
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                value.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    Page {
        status,
        header,
        body,
    }
}

/// The fixture, two days of adds of `iron:router`, and a package whose fields are markup.
fn catalog(dir: &std::path::Path) -> std::path::PathBuf {
    let mut dump = std::fs::read_to_string(fixture()).unwrap();
    let today = Utc::now().date_naive();
    for (days_ago, version, direct, total) in [(1, "1.0.6", 3, 7), (2, "1.0.5", 1, 4)] {
        let day = today - Days::new(days_ago);
        let line = json!({"collection": "stats", "date": day.to_string(), "doc": {
            "name": "iron:router", "version": version, "directAdds": direct, "totalAdds": total}});
        dump.push_str(&format!("{line}\n"));
    }
    let package = json!({"_id": "hostilePackage", "name": "hostile:pkg",
        "maintainers": [{"username": "\"><img src=x onerror=alert(1)>", "id": "u"}],
        "homepage": "javascript:alert(1)", "lastUpdated": {"$date": 1_500_000_000_000_i64}});
    let version = json!({"_id": "hostileVersion", "packageName": "hostile:pkg",
        "version": "1.0.0", "description": "<script>alert(1)</script>",
        "longDescription": "<img src=https://elsewhere.example/x.png onerror=alert(2)>",
        "git": "https://github.com/hostile/pkg\" onmouseover=\"alert(3)",
        "dependencies": {}, "exports": [], "published": {"$date": 1_500_000_000_000_i64},
        "lastUpdated": {"$date": 1_500_000_000_000_i64}});
    for (collection, doc) in [("packages", package), ("versions", version)] {
        dump.push_str(&format!(
            "{}\n",
            json!({"collection": collection, "doc": doc})
        ));
    }
    let file = dir.join("catalog.ndjson");
    std::fs::write(&file, dump).unwrap();
    file
}

/// A server over [`catalog`], once its pages answer.
fn serve_pages() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    import(&data, &catalog(dir.path()));
    let server = Server::start(&data, &[]);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let page = get(&format!("{}/package/iron:router", server.http), None);
        if page.status == 200 {
            break;
        }
        assert_eq!(page.status, 503, "{}", page.body);
        assert!(Instant::now() < deadline, "the read model never finished");
        std::thread::sleep(Duration::from_millis(100));
    }
    (dir, server)
}

/// The values of `attribute` in every tag of `html`, each with its whole tag.
fn attributes<'a>(html: &'a str, attribute: &str) -> Vec<(&'a str, &'a str)> {
    let needle = format!(" {attribute}=\"");
    let mut found = Vec::new();
    for (start, _) in html.match_indices('<') {
        let Some(end) = html[start..].find('>') else {
            continue;
        };
        let tag = &html[start..start + end];
        if let Some(at) = tag.find(&needle) {
            let value = &tag[at + needle.len()..];
            if let Some(close) = value.find('"') {
                found.push((&value[..close], tag));
            }
        }
    }
    found
}

/// Checks what every page must hold to: the security headers, no script or inline style,
/// nothing loaded from another host, and no link to another host but a record's own
/// (marked `external`, sent without a referrer).
fn assert_safe(url: &str, page: &Page, origin: &str) {
    assert_eq!(
        page.header("content-security-policy"),
        Some(exosphere_web::CONTENT_SECURITY_POLICY),
        "{url}"
    );
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"), "{url}");
    assert_eq!(
        page.header("x-content-type-options"),
        Some("nosniff"),
        "{url}"
    );
    let lower = page.body.to_ascii_lowercase();
    for forbidden in ["<script", "style=", "<style", "<iframe", "=\"javascript:"] {
        assert!(!lower.contains(forbidden), "{url} holds {forbidden}");
    }
    for attribute in ["src", "action", "srcset", "poster", "data"] {
        for (value, tag) in attributes(&page.body, attribute) {
            assert!(
                !value.contains("://") && !value.starts_with("//"),
                "{url}: {tag}"
            );
        }
    }
    for (value, tag) in attributes(&page.body, "href") {
        let absolute = value.contains("://") || value.starts_with("//");
        if absolute && !value.starts_with(origin) {
            // The page's own links to a repository or homepage say `external`; a README's
            // links (exosphere_readme::EXTERNAL_REL) do not; both follow no referrer.
            assert!(
                tag.starts_with("<a ") && tag.contains("rel=\"nofollow noopener noreferrer"),
                "{url} links another host: {tag}"
            );
        }
    }
}

/// The same-site links of a page, as URLs on `origin`.
fn links(page: &str, origin: &str) -> Vec<String> {
    attributes(page, "href")
        .into_iter()
        .map(|(value, _)| value.replace("&#38;", "&").replace("&amp;", "&"))
        .filter(|value| value.starts_with('/') && !value.starts_with("//"))
        .map(|value| format!("{origin}{}", value.split('#').next().unwrap_or_default()))
        .collect()
}

#[test]
fn web_pages_link_to_pages_that_answer_and_stay_on_this_server() {
    let (_dir, server) = serve_pages();
    let origin = server.http.as_str();
    let mut queue: VecDeque<String> = [
        "/",
        "/package/iron:router",
        "/package/iron:layout",
        "/search?q=router",
        "/package/hostile:pkg",
    ]
    .into_iter()
    .map(|path| format!("{origin}{path}"))
    .collect();
    let mut seen = BTreeSet::new();
    while let Some(url) = queue.pop_front() {
        if seen.len() >= CRAWL || !seen.insert(url.clone()) {
            continue;
        }
        let page = get(&url, None);
        assert_eq!(page.status, 200, "{url}: {}", page.body);
        if url.starts_with(&format!("{origin}/api/")) {
            // The JSON API's document, linked from every page's footer: not a page.
            continue;
        }
        assert_safe(&url, &page, origin);
        let html = page
            .header("content-type")
            .is_some_and(|kind| kind.starts_with("text/html"));
        if html {
            assert!(page.body.starts_with("<!doctype html>"), "{url}");
            queue.extend(links(&page.body, origin));
        }
    }
    assert!(seen.len() >= 60, "only {} pages reached", seen.len());
}

#[test]
fn web_pages_show_dependencies_dependents_and_usage() {
    let (_dir, server) = serve_pages();
    let origin = &server.http;
    let router = get(&format!("{origin}/package/iron:router"), None);
    let body = &router.body;
    assert!(body.contains("meteor add iron:router"), "{body}");
    assert!(body.contains("id=\"dependencies-strong\""));
    assert!(body.contains("<a href=\"/package/iron:core\">iron:core</a>"));
    assert!(body.contains("<code>1.0.6</code>"), "a constraint");
    assert!(body.contains("https://github.com/iron/router"));
    // Usage: 7 + 4 adds in the last 30 days, 3 + 1 of them direct, per version too.
    assert!(
        body.contains("<strong>11</strong> in all, <strong>4</strong> of them directly"),
        "{body}"
    );
    assert!(body.contains("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(
        body.contains("<a href=\"/package/iron:router/1.0.5\">1.0.5</a></th><td>1</td><td>4</td>")
    );
    assert!(body.contains(&format!(
        "<link rel=\"canonical\" href=\"{origin}/package/iron:router\">"
    )));

    // A dependency's page lists iron:router among its dependents, with its constraint.
    let layout = get(&format!("{origin}/package/iron:layout"), None);
    assert!(
        layout
            .body
            .contains("<a href=\"/package/iron:router\">iron:router</a>"),
        "{}",
        layout.body
    );
    assert!(
        layout
            .body
            .contains("<a href=\"/package/iron:router/1.0.6\">1.0.6</a>")
    );

    // The version page of 1.0.5 charts that version alone and says it is old.
    let old = get(&format!("{origin}/package/iron:router/1.0.5"), None).body;
    assert!(
        old.contains("This is an old version of iron:router"),
        "{old}"
    );
    assert!(old.contains("<strong>4</strong> in all, <strong>1</strong> of them directly"));

    // Tags: the same page again is a 304.
    let tag = router.header("etag").expect("an ETag").to_owned();
    let again = get(&format!("{origin}/package/iron:router"), Some(&tag));
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());

    // The hostile package's markup is text.
    let hostile = get(&format!("{origin}/package/hostile:pkg"), None).body;
    assert!(
        hostile.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
        "{hostile}"
    );
    assert!(!hostile.contains("<img src=https"));

    // Feeds and badges name this server by its public URL.
    let feed = get(&format!("{origin}/package/iron:router/feed.atom"), None).body;
    assert!(
        feed.contains(&format!("<id>{origin}/package/iron:router/1.0.6</id>")),
        "{feed}"
    );
    let badge = get(
        &format!("{origin}/package/iron:router/badge/adds.json"),
        None,
    )
    .body;
    let badge: Value = serde_json::from_str(&badge).unwrap();
    assert_eq!(badge["message"], "11");
}

#[test]
fn web_pages_keep_old_links_and_the_servers_routes() {
    let (_dir, server) = serve_pages();
    let origin = &server.http;
    for (path, target) in [
        ("/iron/router", "/package/iron:router"),
        ("/meteor/accounts-base", "/package/accounts-base"),
    ] {
        let page = get(&format!("{origin}{path}"), None);
        assert_eq!(page.status, 301, "{path}");
        assert_eq!(page.header("location"), Some(target));
        assert_eq!(get(&format!("{origin}{target}"), None).status, 200);
    }
    let missing = get(&format!("{origin}/nobody/nothing"), None);
    assert_eq!(missing.status, 404);
    assert!(
        missing
            .body
            .contains("There is no package &#34;nobody:nothing&#34;."),
        "{}",
        missing.body
    );

    // The server's own routes answer as before, never as a page or a redirect.
    let info = get(&format!("{origin}/sockjs/info"), None);
    assert_eq!(info.status, 200);
    assert!(serde_json::from_str::<Value>(&info.body).unwrap()["websocket"].is_boolean());
    let health = get(&format!("{origin}/healthz"), None);
    assert_eq!(
        serde_json::from_str::<Value>(&health.body).unwrap()["status"],
        "ok"
    );
    let api = get(&format!("{origin}/api/v1/packages/iron:router"), None);
    assert_eq!(
        serde_json::from_str::<Value>(&api.body).unwrap()["name"],
        "iron:router"
    );
    let range = get(&format!("{origin}/api/v1/stats/packages/iron:router"), None);
    assert_eq!(
        serde_json::from_str::<Value>(&range.body).unwrap()["totalAdds"],
        11
    );
    for path in [
        "/stats/v1",
        "/packages/iron/router",
        "/mirror/files",
        "/api/v1",
    ] {
        let page = get(&format!("{origin}{path}"), None);
        assert_eq!(page.status, 404, "{path}: {}", page.body);
    }
    let day = (Utc::now().date_naive() - Days::new(1)).to_string();
    let file = get(&format!("{origin}/stats/v1/{day}"), None);
    assert_eq!(file.header("content-type"), Some("application/x-ndjson"));
    let websocket = get(&format!("{origin}/websocket"), None);
    assert!(
        websocket.status != 301 && websocket.status != 200,
        "{}",
        websocket.status
    );
}
