//! A published README on the web catalog: a version published through the `meteor`
//! tool's sequence (spec §5.1) with a README file longer than its excerpt shows that file
//! on its package page and in `/api/v1/.../readme`, checked against its hash, and
//! `/api/v1/search` finds words only the README holds within seconds of the publish; a
//! README replaced with `createReadme` and `publishReadme` (§5.10) takes its place on the
//! page, in the API and in search. A mirror shows the excerpt of a README it has not
//! cached, never waiting for the upstream, and the README once fetched in the background.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::Server;
use crate::mirror::mirror_of;
use crate::publish::{
    bare_world, file, hash, login, ok, publish_files, put, serve, version_record,
};

/// The most a test waits for the read model to show a publish: it follows the catalog
/// within about a second.
const PATIENCE: Duration = Duration::from_secs(10);

/// `GET url`: status, `ETag`, body; with `If-None-Match: tag` when given.
fn get(url: &str, tag: Option<&str>) -> (u16, Option<String>, String) {
    let page = crate::web_pages::get(url, tag);
    let tag = page.header("etag").map(str::to_owned);
    (page.status, tag, page.body)
}

/// The names `/api/v1/search?q=words` finds, once the read model answers.
fn found(server: &Server, words: &str) -> Vec<String> {
    let (status, _, body) = get(&format!("{}/api/v1/search?q={words}", server.http), None);
    if status == 503 {
        return Vec::new();
    }
    assert_eq!(status, 200, "{body}");
    let hits: Value = serde_json::from_str(&body).unwrap();
    hits["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hit| hit["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits until searching for `words` finds exactly `names`; how long that took.
fn wait_for_search(server: &Server, words: &str, names: &[&str]) -> Duration {
    let start = Instant::now();
    loop {
        if found(server, words) == names {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < PATIENCE,
            "searching for {words:?} found {:?}, not {names:?}",
            found(server, words)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The README API's answer for `acme:widget@1.0.0`, with its tag.
fn readme_answer(server: &Server) -> (Value, String) {
    let url = format!(
        "{}/api/v1/packages/acme:widget/versions/1.0.0/readme",
        server.http
    );
    let (status, tag, body) = get(&url, None);
    assert_eq!(status, 200, "{body}");
    let (again, _, _) = get(&url, tag.as_deref());
    assert_eq!(
        again, 304,
        "a README file shown is final: its tag is confirmed"
    );
    (serde_json::from_str(&body).unwrap(), tag.unwrap())
}

/// Publishes `acme:widget@1.0.0` on `server` as alice (whose token is `token`) with a
/// README longer than its excerpt, holding words the excerpt does not; returns the
/// README.
async fn publish_widget(server: &Server, token: &str) -> String {
    let mut alice = login(server, token).await;
    let name = "acme:widget";
    ok(&mut alice, "createPackage", json!([{"name": name}])).await;
    let record = version_record(name, "1.0.0");
    let excerpt = record["longDescription"].as_str().unwrap().to_owned();
    let created = ok(&mut alice, "createPackageVersion", json!([record])).await;
    let readme = format!(
        "# {name}\n\n{excerpt}\n\n## Gyroscopic calibration\n\nEvery widget is \
         quuxinated before it ships:\n\n```js\nWidget.calibrate({{ axis: 'z' }});\n```\n\n{}",
        "More words about widgets. ".repeat(100)
    );
    assert!(readme.len() > 1_500 && !excerpt.contains("quuxinated"));
    let source = file("widget source", 4096);
    assert_eq!(
        put(created["readmeUrl"].as_str().unwrap(), readme.as_bytes()).0,
        200
    );
    assert_eq!(put(created["uploadUrl"].as_str().unwrap(), &source).0, 200);
    publish_files(
        &mut alice,
        &created["uploadToken"],
        &source,
        Some(readme.as_bytes()),
    )
    .await;
    readme
}

#[tokio::test]
async fn a_published_readme_is_shown_whole_and_found_by_its_words() {
    let world = bare_world();
    let server = serve(&world.data, &[]);
    let readme = publish_widget(&server, &world.alice).await;
    let name = "acme:widget";

    let took = wait_for_search(&server, "quuxinated", &[name]);
    assert!(
        took < Duration::from_secs(5),
        "search found it after {took:?}"
    );

    let (status, _, page) = get(&format!("{}/package/{name}", server.http), None);
    assert_eq!(status, 200, "{page}");
    for expected in [
        "data-source=\"file\"",
        "Gyroscopic calibration</h2>",
        "quuxinated before it ships",
        "<pre class=\"hl-code\"><code><span class=\"hl-",
    ] {
        assert!(page.contains(expected), "{expected} missing: {page}");
    }
    assert!(!page.contains("full README is not available"), "{page}");
    let (answer, first_tag) = readme_answer(&server);
    assert_eq!(answer["source"], "file");
    assert_eq!(answer["markdown"], readme);
    assert!(
        answer["html"]
            .as_str()
            .unwrap()
            .contains("Gyroscopic calibration</h2>"),
        "{answer}"
    );

    // `meteor publish --update` replaces the README (spec §5.10).
    let mut alice = login(&server, &world.alice).await;
    let id = json!({"packageName": name, "version": "1.0.0"});
    let created = ok(&mut alice, "createReadme", json!([id])).await;
    let fresh = format!("# {name}\n\nNow with tesseracts.\n");
    assert_eq!(
        put(created["url"].as_str().unwrap(), fresh.as_bytes()).0,
        200
    );
    ok(
        &mut alice,
        "publishReadme",
        json!([created["uploadToken"], {"hash": hash(fresh.as_bytes())}]),
    )
    .await;
    wait_for_search(&server, "tesseracts", &[name]);
    assert!(found(&server, "quuxinated").is_empty());
    let (answer, tag) = readme_answer(&server);
    assert_eq!(
        (&answer["source"], &answer["markdown"]),
        (&"file".into(), &fresh.into())
    );
    assert_ne!(tag, first_tag);
}

#[tokio::test]
async fn a_mirrored_readme_shows_the_excerpt_until_it_is_fetched_in_the_background() {
    let world = bare_world();
    let upstream = serve(&world.data, &[]);
    let readme = publish_widget(&upstream, &world.alice).await;
    let dir = tempfile::tempdir().unwrap();
    let mirror = mirror_of(&upstream.http, &dir.path().join("data"), &[]);
    let page = format!("{}/package/acme:widget", mirror.http);

    // The first page the mirror shows: its README file is not cached (the `meteor` tool
    // never downloads READMEs), so the excerpt, without waiting for the upstream.
    let start = Instant::now();
    let (tag, first) = loop {
        let (status, tag, body) = get(&page, None);
        if status == 200 {
            break (tag.unwrap(), body);
        }
        assert!(matches!(status, 404 | 503), "{status}: {body}");
        assert!(
            start.elapsed() < PATIENCE,
            "the mirror never showed the package"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(first.contains("data-source=\"excerpt\""), "{first}");
    assert!(first.contains("full README is not available"), "{first}");

    // The page asked the mirror to fetch it: the excerpt's tag holds until the file is
    // cached, then a view shows it whole under another tag.
    let start = Instant::now();
    loop {
        let (status, _, body) = get(&page, Some(&tag));
        assert!(
            start.elapsed() < PATIENCE,
            "the README never arrived: {status} {body}"
        );
        if status == 304 {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        assert_eq!(status, 200, "{body}");
        if body.contains("data-source=\"file\"") {
            assert!(body.contains("Gyroscopic calibration</h2>"), "{body}");
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let url = format!(
        "{}/api/v1/packages/acme:widget/versions/1.0.0/readme",
        mirror.http
    );
    let (_, _, answer) = get(&url, None);
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(
        (&answer["source"], &answer["markdown"]),
        (&"file".into(), &readme.into())
    );
}
