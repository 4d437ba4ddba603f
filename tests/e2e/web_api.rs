//! The JSON API under `/api/v1` as a program uses it: a real `exosphere serve` over the
//! 2015 fixture (SQLite and PostgreSQL), asked over HTTP. The server's read model builds
//! at startup, so every test first waits for it, then checks answers, errors, pagination,
//! entity tags, CORS, that a change to the catalog shows up within seconds, that every
//! answer matches the OpenAPI document, and that restarts, new data epochs and a damaged
//! read model never stop the API for long nor the server at all.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{Backend, Server, fixture, import_on};

/// The most a test waits for the read model (its first build, or a change).
const PATIENCE: Duration = Duration::from_secs(60);

/// One answer: status, headers that matter, body as JSON.
pub struct Answer {
    pub status: u16,
    pub etag: Option<String>,
    pub cors: Option<String>,
    pub cache_control: Option<String>,
    pub body: Value,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent()
}

/// `GET url`, with `If-None-Match: tag` when given.
pub fn get(url: &str, tag: Option<&str>) -> Answer {
    let mut request = agent().get(url);
    if let Some(tag) = tag {
        request = request.header("If-None-Match", tag);
    }
    let mut response = request.call().expect("HTTP request");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (etag, cors) = (header("etag"), header("access-control-allow-origin"));
    let cache_control = header("cache-control");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().expect("UTF-8 body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: not JSON ({e}): {text}"))
    };
    Answer {
        status,
        etag,
        cors,
        cache_control,
        body,
    }
}

/// Polls `url` until `done` holds for its answer, failing after [`PATIENCE`].
pub fn wait_for(url: &str, done: impl Fn(&Answer) -> bool) -> Answer {
    wait_for_tagged(url, None, done)
}

/// [`wait_for`], sending `tag` as `If-None-Match`.
pub fn wait_for_tagged(url: &str, tag: Option<&str>, done: impl Fn(&Answer) -> bool) -> Answer {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let answer = get(url, tag);
        if done(&answer) {
            return answer;
        }
        assert!(
            Instant::now() < deadline,
            "{url} still answers {} {}",
            answer.status,
            answer.body
        );
        if answer.status == 503 {
            assert_eq!(answer.body["error"]["code"], "read_model_building");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A server over the fixture with the API's cap at 5, once its read model answers.
pub fn serve_api(backend: &Backend) -> (tempfile::TempDir, std::path::PathBuf, Server) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    import_on(backend, &data, &fixture());
    let mut flags = backend.flags();
    flags.extend(["--api-max-limit", "5"]);
    let server = Server::start(&data, &flags);
    wait_for(
        &format!("{}/api/v1/packages/iron:router", server.http),
        |a| a.status == 200,
    );
    (dir, data, server)
}

/// The README excerpt of `web-api:fresh`: Markdown with code, a relative link, an image on
/// another host, and a script that must never come back.
const README: &str = "# Fresh\n\nA package <script>alert(1)</script> that does things.\n\n\
    ```js\nconst answer = 42;\n```\n\n[the docs](docs/usage.md) \
    ![logo](https://cdn.example.com/logo.png)\n";

/// A dump of one new package, `web-api:fresh@1.0.0`, made from a fixture version.
fn fresh_package(dir: &Path) -> std::path::PathBuf {
    one_package(dir, "web-api:fresh", |version| {
        version["description"] = json!("A package published while the server runs");
        version["longDescription"] = json!(README);
        version["git"] = json!("https://github.com/web-api/fresh");
    })
}

/// A dump of one new package `name@1.0.0`, maintained by `fresh`, its version made from a
/// fixture version of `iron:core` and changed by `edit`.
fn one_package(dir: &Path, name: &str, edit: impl FnOnce(&mut Value)) -> std::path::PathBuf {
    let dump = std::fs::read_to_string(fixture()).unwrap();
    let mut version: Value = dump
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .find(|line| line["collection"] == "versions" && line["doc"]["packageName"] == "iron:core")
        .expect("a version of iron:core")["doc"]
        .clone();
    version["_id"] = json!(format!("{name}-version"));
    version["packageName"] = json!(name);
    version["version"] = json!("1.0.0");
    edit(&mut version);
    let package = json!({"_id": format!("{name}-package"), "name": name,
        "maintainers": [{"username": "fresh", "id": "freshUser"}], "homepage": null,
        "lastUpdated": {"$date": 1_700_000_000_000_i64}});
    let file = dir.join(format!("{}.ndjson", name.replace(':', "-")));
    let lines = [
        json!({"collection": "packages", "doc": package}),
        json!({"collection": "versions", "doc": version}),
    ];
    std::fs::write(
        &file,
        lines
            .iter()
            .map(|line| format!("{line}\n"))
            .collect::<String>(),
    )
    .unwrap();
    file
}

/// A dump of stats rows `(name, version, days ago, direct adds, total adds)`, each for the
/// UTC day that many days before today.
fn stats_dump(dir: &Path, rows: &[(&str, &str, u64, u64, u64)]) -> std::path::PathBuf {
    let today = chrono::Utc::now().date_naive();
    let lines: String = rows
        .iter()
        .map(|(name, version, days_ago, direct, total)| {
            let day = (today - chrono::Days::new(*days_ago)).to_string();
            let line = json!({"collection": "stats", "date": day, "doc": {
                "name": name, "version": version, "directAdds": direct, "totalAdds": total}});
            format!("{line}\n")
        })
        .collect();
    let file = dir.join("stats.ndjson");
    std::fs::write(&file, lines).unwrap();
    file
}

fn api_answers_and_follows_the_catalog(backend: &Backend) {
    let (dir, data, server) = serve_api(backend);
    let api = format!("{}/api/v1", server.http);

    let detail = get(&format!("{api}/packages/iron:router"), None);
    assert_eq!(detail.status, 200);
    assert_eq!(detail.cors.as_deref(), Some("*"));
    let body = &detail.body;
    assert_eq!(body["name"], "iron:router");
    assert_eq!(body["latest_version"], "1.0.6");
    assert_eq!(body["maintainers"], json!(["iron"]));
    assert_eq!(body["git"], "https://github.com/iron/router");
    assert!(body["version_count"].as_u64().unwrap() > 5, "{body}");
    assert!(body["created"].as_str().unwrap() < body["published"].as_str().unwrap());

    // Entity tags: the same answer again is a 304 without a body.
    let tag = detail.etag.expect("an ETag");
    let again = get(&format!("{api}/packages/iron:router"), Some(&tag));
    assert_eq!(again.status, 304);
    assert_eq!(again.etag.as_deref(), Some(tag.as_str()));
    assert_eq!(
        get(&format!("{api}/packages/iron:core"), Some(&tag)).status,
        200
    );

    // Errors are JSON, with CORS too.
    let missing = get(&format!("{api}/packages/no:such"), None);
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body["error"]["code"], "package_not_found");
    assert_eq!(missing.cors.as_deref(), Some("*"));
    let nowhere = get(&format!("{api}/nowhere"), None);
    assert_eq!((nowhere.status, nowhere.cors.as_deref()), (404, Some("*")));
    assert_eq!(nowhere.body["error"]["code"], "not_found");

    // Versions, newest first, a page at a time, the limit capped at 5.
    let page = get(
        &format!("{api}/packages/iron:router/versions?limit=2"),
        None,
    )
    .body;
    assert_eq!(page["items"][0]["version"], "1.0.6");
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let cursor = page["next_cursor"].as_str().expect("more pages");
    let next = get(
        &format!("{api}/packages/iron:router/versions?limit=2&cursor={cursor}"),
        None,
    )
    .body;
    assert_ne!(next["items"][0], page["items"][0]);
    let capped = get(
        &format!("{api}/packages/iron:router/versions?limit=100000"),
        None,
    )
    .body;
    assert_eq!(capped["limit"], 5);
    assert_eq!(capped["items"].as_array().unwrap().len(), 5);
    assert_eq!(
        get(
            &format!("{api}/packages/iron:router/versions?limit=x"),
            None
        )
        .status,
        400
    );

    // One version in full.
    let version = get(&format!("{api}/packages/iron:router/versions/1.0.6"), None).body;
    assert_eq!(version["latest"], true);
    let strong: Vec<&str> = version["dependency_groups"]["strong"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert!(strong.contains(&"iron:core"), "{version}");
    assert!(
        version["builds"][0]["architectures"].is_string(),
        "{version}"
    );
    assert_eq!(version["debug_only"], false);
    assert!(
        version["dependencies"][0]["references"].is_array(),
        "{version}"
    );
    let no_version = get(&format!("{api}/packages/iron:router/versions/9.9.9"), None);
    assert_eq!(no_version.body["error"]["code"], "version_not_found");

    // Who depends on it.
    let dependents = get(
        &format!("{api}/packages/iron:core/dependents?limit=5"),
        None,
    )
    .body;
    assert!(dependents["total"].as_u64().unwrap() >= 1, "{dependents}");
    let all = get(&format!("{api}/packages/iron:layout/dependents"), None).body;
    assert!(
        all["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["name"] == "iron:router"),
        "{all}"
    );

    // Search, with the index's ranking, and its bounds.
    let hits = get(&format!("{api}/search?q=router"), None).body;
    assert_eq!(hits["items"][0]["name"], "iron:router");
    assert!(hits["items"].as_array().unwrap().len() <= 5);
    let first = get(&format!("{api}/search?q=iron&limit=2"), None).body;
    let cursor = first["next_cursor"].as_str().expect("more hits");
    let second = get(
        &format!("{api}/search?q=iron&limit=2&cursor={cursor}"),
        None,
    )
    .body;
    assert_eq!(second["items"].as_array().unwrap().len(), 2, "{second}");
    assert_ne!(first["items"][0], second["items"][0]);
    let long = "a".repeat(201);
    assert_eq!(
        get(&format!("{api}/search?q={long}"), None).body["error"]["code"],
        "query_too_long"
    );
    assert_eq!(get(&format!("{api}/search?q=-"), None).status, 400);
    // No words: a browse of every package.
    assert_eq!(get(&format!("{api}/search?q="), None).status, 200);

    // Bulk lookup by names.
    let lookup = get(
        &format!("{api}/packages?names=iron:router,no:such,iron:core"),
        None,
    )
    .body;
    let found: Vec<&str> = lookup["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hit| hit["name"].as_str().unwrap())
        .collect();
    assert_eq!(found, ["iron:router", "iron:core"]);
    assert_eq!(lookup["missing"], json!(["no:such"]));
    let too_many = get(&format!("{api}/packages?names=a,b,c,d,e,f"), None);
    assert_eq!(too_many.body["error"]["code"], "too_many_names");

    // Releases and maintainers.
    let releases = get(&format!("{api}/releases"), None).body;
    assert_eq!(releases["items"][0]["track"], "METEOR");
    let iron = get(&format!("{api}/maintainers/iron"), None).body;
    assert!(!iron["items"].as_array().unwrap().is_empty());
    assert_eq!(
        get(&format!("{api}/maintainers/nobody-here"), None).status,
        404
    );

    let health = get(&format!("{}/healthz", server.http), None).body;
    assert_eq!(health["read_model"]["status"], "current", "{health}");

    // A change to the catalog shows up within seconds, and the old tag no longer matches.
    let before = get(&format!("{api}/packages/iron:router"), None)
        .etag
        .unwrap();
    // Asked (and its answer kept, `--web-cache-bytes`) before the change: never given again
    // once the catalog moved on.
    let not_yet = get(&format!("{api}/search?q=published%20while"), None).body;
    assert_eq!(not_yet["items"], json!([]), "{not_yet}");
    import_on(backend, &data, &fresh_package(dir.path()));
    let fresh = wait_for(&format!("{api}/packages/web-api:fresh"), |a| {
        a.status == 200
    });
    assert_eq!(fresh.body["latest_version"], "1.0.0");
    // Its README, as published and rendered safe (issue 13, items 2 and 6).
    let readme = get(
        &format!("{api}/packages/web-api:fresh/versions/1.0.0/readme"),
        None,
    );
    assert_eq!(readme.status, 200, "{}", readme.body);
    assert_eq!(readme.body["markdown"], README);
    assert_eq!(readme.body["source"], "excerpt");
    let html = readme.body["html"].as_str().unwrap();
    assert!(html.contains("<h1") && html.contains("Fresh"), "{html}");
    assert!(
        !html.contains("<script") && !html.contains("alert(1)</script>"),
        "{html}"
    );
    assert!(
        html.contains("class=\"hl-"),
        "code is highlighted by class: {html}"
    );
    assert!(
        html.contains("https://github.com/web-api/fresh/blob/HEAD/docs/usage.md"),
        "relative links resolve against the repository: {html}"
    );
    assert!(
        !html.contains("<img"),
        "no image from another host loads: {html}"
    );
    assert!(
        html.contains("href=\"https://cdn.example.com/logo.png\""),
        "{html}"
    );
    assert_eq!(fresh.body["maintainers"], json!(["fresh"]));
    // The tag follows each committed page just after it commits: poll until it moved.
    wait_for_tagged(&format!("{api}/packages/iron:router"), Some(&before), |a| {
        a.status == 200
    });
    let found = get(&format!("{api}/search?q=published%20while"), None).body;
    assert_eq!(found["items"][0]["name"], "web-api:fresh", "{found}");
}

#[test]
fn api_answers_and_follows_the_catalog_on_sqlite() {
    api_answers_and_follows_the_catalog(&Backend::Sqlite);
}

#[test]
fn api_answers_and_follows_the_catalog_on_postgres() {
    api_answers_and_follows_the_catalog(&Backend::postgres());
}

#[test]
fn the_read_model_survives_a_restart_and_serves_at_once() {
    use std::os::unix::fs::MetadataExt as _;
    let (_dir, data, mut server) = serve_api(&Backend::Sqlite);
    let file = data.join("read-model/index-1.sqlite3");
    let inode = std::fs::metadata(&file).unwrap().ino();
    server.signal_terminate();
    server.wait_exit(Duration::from_secs(30));
    let server = Server::start(&data, &[]);
    // The file of the first run is served again, not rebuilt: the first answer that is not
    // "still opening" is the package, from the same file.
    let first = wait_for(
        &format!("{}/api/v1/packages/iron:router", server.http),
        |a| a.status != 503,
    );
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(read_model_files(&data), ["index-1.sqlite3"]);
    assert_eq!(
        std::fs::metadata(&file).unwrap().ino(),
        inode,
        "the file was rebuilt"
    );
}

/// The OpenAPI document as the repository keeps it.
fn openapi_document() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/web/openapi.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("openapi.json is JSON")
}

/// Checks `body` against the schema the document gives `template`'s answer of `status`.
fn check(document: &Value, template: &str, status: u16, body: &Value) {
    let errors = violations(document, template, status, body);
    assert!(errors.is_empty(), "{template} {status}: {errors:?}\n{body}");
}

/// What in `body` the schema of `template`'s answer of `status` does not allow.
fn violations(document: &Value, template: &str, status: u16, body: &Value) -> Vec<String> {
    let response = &document["paths"][template]["get"]["responses"][status.to_string()];
    assert!(
        response.is_object(),
        "the document has no {status} answer for {template}"
    );
    if status == 304 {
        return Vec::new();
    }
    // The whole document is the schema's root, so its `$ref`s resolve; the other keywords
    // of the document are not JSON Schema keywords and are ignored.
    let mut schema = document.clone();
    schema["$ref"] = response["content"]["application/json"]["schema"]["$ref"].clone();
    if schema["$ref"].is_null() {
        schema = response["content"]["application/json"]["schema"].clone();
    }
    let validator = jsonschema::draft202012::new(&schema).expect("the schema compiles");
    validator
        .iter_errors(body)
        .map(|error| format!("{} at {}", error, error.instance_path()))
        .collect()
}

#[test]
fn answers_match_the_openapi_document() {
    let (dir, data, server) = serve_api(&Backend::Sqlite);
    let usage = stats_dump(
        dir.path(),
        &[
            ("iron:router", "1.0.6", 1, 3, 5),
            ("iron:router", "1.0.5", 9, 1, 2),
        ],
    );
    import_on(&Backend::Sqlite, &data, &usage);
    let document = openapi_document();
    let served = get(&format!("{}/api/v1/openapi.json", server.http), None);
    assert_eq!(
        served.body, document,
        "the binary serves the repository's document"
    );

    let cases = [
        (
            "/api/v1/packages",
            "/api/v1/packages?names=iron:router,no:such",
            200,
        ),
        ("/api/v1/packages", "/api/v1/packages?names=", 400),
        (
            "/api/v1/packages/{name}",
            "/api/v1/packages/iron:router",
            200,
        ),
        ("/api/v1/packages/{name}", "/api/v1/packages/no:such", 404),
        (
            "/api/v1/packages/{name}/versions",
            "/api/v1/packages/iron:router/versions?limit=2",
            200,
        ),
        (
            "/api/v1/packages/{name}/versions",
            "/api/v1/packages/iron:router/versions?limit=x",
            400,
        ),
        (
            "/api/v1/packages/{name}/versions",
            "/api/v1/packages/no:such/versions",
            404,
        ),
        (
            "/api/v1/packages/{name}/versions/{version}",
            "/api/v1/packages/iron:router/versions/1.0.6",
            200,
        ),
        (
            "/api/v1/packages/{name}/versions/{version}",
            "/api/v1/packages/iron:router/versions/0.0.0",
            404,
        ),
        (
            "/api/v1/packages/{name}/versions/{version}/readme",
            "/api/v1/packages/iron:router/versions/1.0.6/readme",
            200,
        ),
        (
            "/api/v1/packages/{name}/versions/{version}/readme",
            "/api/v1/packages/iron:router/versions/0.0.0/readme",
            404,
        ),
        (
            "/api/v1/packages/{name}/dependents",
            "/api/v1/packages/iron:core/dependents",
            200,
        ),
        (
            "/api/v1/packages/{name}/dependents",
            "/api/v1/packages/iron:core/dependents?cursor=zz",
            400,
        ),
        (
            "/api/v1/packages/{name}/dependents",
            "/api/v1/packages/no:such/dependents",
            404,
        ),
        ("/api/v1/search", "/api/v1/search?q=router&limit=3", 200),
        (
            "/api/v1/search",
            "/api/v1/search?q=iron&limit=2&cursor=2",
            200,
        ),
        (
            "/api/v1/search",
            "/api/v1/search?sort=newest&exclude_core=true",
            200,
        ),
        (
            "/api/v1/search",
            "/api/v1/search?q=iron&include_unmigrated=true&include_deprecated=true",
            200,
        ),
        ("/api/v1/search", "/api/v1/search?q=-", 400),
        (
            "/api/v1/lists/{list}",
            "/api/v1/lists/recently-published?limit=3",
            200,
        ),
        ("/api/v1/lists/{list}", "/api/v1/lists/new", 200),
        ("/api/v1/lists/{list}", "/api/v1/lists/most-added", 200),
        ("/api/v1/lists/{list}", "/api/v1/lists/trending", 200),
        ("/api/v1/lists/{list}", "/api/v1/lists/best", 404),
        ("/api/v1/lists/{list}", "/api/v1/lists/new?limit=0", 400),
        ("/api/v1/releases", "/api/v1/releases", 200),
        ("/api/v1/releases/{track}", "/api/v1/releases/METEOR", 200),
        (
            "/api/v1/releases/{track}",
            "/api/v1/releases/NO-SUCH-TRACK",
            404,
        ),
        (
            "/api/v1/maintainers/{user}",
            "/api/v1/maintainers/iron",
            200,
        ),
        (
            "/api/v1/maintainers/{user}",
            "/api/v1/maintainers/iron?limit=0x",
            400,
        ),
        (
            "/api/v1/maintainers/{user}",
            "/api/v1/maintainers/nobody-here",
            404,
        ),
        (
            "/api/v1/stats/packages/{name}",
            "/api/v1/stats/packages/iron:router?interval=week",
            200,
        ),
        (
            "/api/v1/stats/packages/{name}",
            "/api/v1/stats/packages/iron:core",
            200,
        ),
        (
            "/api/v1/stats/packages/{name}",
            "/api/v1/stats/packages/iron:router?interval=year",
            400,
        ),
        (
            "/api/v1/stats/packages/{name}",
            "/api/v1/stats/packages/no:such",
            404,
        ),
        ("/api/v1/openapi.json", "/api/v1/openapi.json", 200),
    ];
    let mut covered = std::collections::BTreeSet::new();
    for (template, url, status) in cases {
        let answer = get(&format!("{}{url}", server.http), None);
        assert_eq!(answer.status, status, "{url}: {}", answer.body);
        check(&document, template, status, &answer.body);
        if status == 200 && template != "/api/v1/openapi.json" {
            let tag = answer.etag.as_deref().expect("an ETag");
            let again = get(&format!("{}{url}", server.http), Some(tag));
            assert_eq!(again.status, 304, "{url}");
            check(&document, template, 304, &again.body);
        }
        covered.insert((template.to_owned(), status.to_string()));
    }
    // Every answer the document lists, but the 503 of a first build, was checked.
    for (template, item) in document["paths"].as_object().unwrap() {
        for status in item["get"]["responses"].as_object().unwrap().keys() {
            if status != "503" && status != "304" {
                assert!(
                    covered.contains(&(template.clone(), status.clone())),
                    "no test answer for {template} {status}"
                );
            }
        }
    }
}

/// The index files in `data`'s read-model directory, by name.
fn read_model_files(data: &Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(data.join("read-model"))
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".sqlite3"))
        .collect();
    files.sort();
    files
}

#[test]
fn a_new_epoch_rebuilds_the_read_model_beside_the_served_one() {
    let backend = Backend::postgres();
    let (_dir, data, server) = serve_api(&backend);
    let url = format!("{}/api/v1/packages/iron:router", server.http);
    let before = get(&url, None).etag.unwrap();
    let output = crate::common::exosphere()
        .args(["epoch", "new", "--data-dir"])
        .arg(&data)
        .args(backend.flags())
        .output()
        .unwrap();
    crate::common::assert_success(&output);
    // The old file answers while the next generation builds, then the new one replaces it.
    let deadline = Instant::now() + PATIENCE;
    while read_model_files(&data) != ["index-2.sqlite3"] {
        let answer = get(&url, None);
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert!(Instant::now() < deadline, "{:?}", read_model_files(&data));
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = get(&url, None);
    assert_eq!(after.body["latest_version"], "1.0.6");
    assert_ne!(
        after.etag.unwrap(),
        before,
        "a new epoch is a new sync token"
    );
}

#[test]
fn a_damaged_read_model_is_rebuilt_and_never_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    import_on(&Backend::Sqlite, &data, &fixture());
    std::fs::create_dir_all(data.join("read-model")).unwrap();
    std::fs::write(data.join("read-model/index-1.sqlite3"), b"not an index").unwrap();
    let server = Server::start(&data, &[]);
    let answer = wait_for(&format!("{}/api/v1/packages/iron:core", server.http), |a| {
        a.status == 200
    });
    assert_eq!(answer.body["name"], "iron:core");
    assert_eq!(read_model_files(&data), ["index-1.sqlite3"]);
}

#[test]
fn a_read_model_that_keeps_failing_shows_on_healthz_while_the_server_serves() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    import_on(&Backend::Sqlite, &data, &fixture());
    // A file where the read model's directory goes: every pass fails to create it.
    std::fs::write(data.join("read-model"), b"in the way").unwrap();
    let server = Server::start(&data, &[]);
    let health = wait_for(&format!("{}/healthz", server.http), |a| {
        a.body["read_model"]["status"] == "failing"
    });
    let read_model = &health.body["read_model"];
    assert!(
        read_model["failures"].as_u64().unwrap() >= 1,
        "{read_model}"
    );
    assert!(
        read_model["last_error"]
            .as_str()
            .unwrap()
            .contains("cannot create the read model's directory"),
        "{read_model}"
    );
    assert!(read_model["since"].is_string(), "{read_model}");
    let answer = get(&format!("{}/api/v1/packages/iron:core", server.http), None);
    assert_eq!(answer.status, 503);
}

#[test]
fn a_server_with_the_read_model_off_keeps_none_and_says_the_api_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    import_on(&Backend::Sqlite, &data, &fixture());
    let server = Server::start(&data, &["--read-model", "off"]);
    let answer = get(&format!("{}/api/v1/packages/iron:core", server.http), None);
    assert_eq!(answer.status, 503);
    assert_eq!(answer.body["error"]["code"], "api_disabled");
    let health = get(&format!("{}/healthz", server.http), None).body;
    assert_eq!(health["read_model"]["status"], "off", "{health}");
    assert!(!data.join("read-model").exists());
}

#[test]
fn if_none_match_any_is_a_304_only_for_what_exists() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    import_on(&Backend::Sqlite, &data, &fixture());
    let server = Server::start(&data, &[]);
    let api = format!("{}/api/v1", server.http);
    wait_for(&format!("{api}/packages/iron:core"), |a| a.status == 200);
    assert_eq!(
        get(&format!("{api}/packages/iron:core"), Some("*")).status,
        304
    );
    let missing = get(&format!("{api}/packages/no:such-package"), Some("*"));
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body["error"]["code"], "package_not_found");
}

#[test]
fn a_name_asked_twice_in_a_bulk_lookup_is_answered_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    import_on(&Backend::Sqlite, &data, &fixture());
    let server = Server::start(&data, &["--api-max-limit", "4"]);
    let url = format!(
        "{}/api/v1/packages?names=iron:core,nope:nope,iron:core,nope:nope",
        server.http
    );
    let answer = wait_for(&url, |a| a.status == 200);
    let items = answer.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{}", answer.body);
    assert_eq!(items[0]["name"], "iron:core");
    assert_eq!(answer.body["missing"], json!(["nope:nope"]));
}

/// Issue 13, "Search that finds what people mean": the server's read model counts the
/// recent adds from its own usage stats, and `/api/v1/search` ranks, sorts and filters by
/// them; bad sort orders and filters are refused with JSON errors.
#[test]
fn search_sorts_and_filters_by_the_servers_own_usage() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    import_on(&Backend::Sqlite, &data, &fixture());
    // Yesterday's usage: a lot of iron:router, a little of iron:core.
    let stats = stats_dump(
        dir.path(),
        &[
            ("iron:router", "1.0.6", 1, 700, 900),
            ("iron:core", "1.0.6", 1, 20, 950),
        ],
    );
    import_on(&Backend::Sqlite, &data, &stats);
    let server = Server::start(&data, &[]);
    let api = format!("{}/api/v1", server.http);

    let most_added = wait_for(&format!("{api}/search?sort=most-added&limit=3"), |a| {
        a.status == 200 && a.body["items"][0]["name"] == "iron:router"
    });
    let items = most_added.body["items"].as_array().unwrap();
    assert_eq!(items[0]["direct_adds_30d"], 700);
    assert_eq!(items[1]["name"], "iron:core");
    assert_eq!(items[1]["direct_adds_30d"], 20);

    // The home page's lists over JSON.
    let listed = get(&format!("{api}/lists/most-added?limit=2"), None);
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.body["items"][0]["name"], "iron:router");
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 2);
    let recent = get(&format!("{api}/lists/recently-published?limit=1"), None);
    assert!(
        recent.body["items"][0]["date"].as_str().is_some(),
        "{}",
        recent.body
    );

    // Words: the package named `router` (base name) first.
    let router = get(&format!("{api}/search?q=router"), None);
    assert_eq!(
        router.body["items"][0]["name"], "iron:router",
        "{}",
        router.body
    );
    // Filters: no core packages, one maintainer's.
    let community = get(&format!("{api}/search?exclude_core=true&limit=100"), None);
    let names: Vec<&str> = community.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hit| hit["name"].as_str().unwrap())
        .collect();
    assert!(
        !names.is_empty() && names.iter().all(|n| n.contains(':')),
        "{names:?}"
    );
    let iron = get(
        &format!("{api}/search?maintainer=iron&sort=name&limit=100"),
        None,
    );
    let iron: Vec<&str> = iron.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hit| hit["name"].as_str().unwrap())
        .collect();
    let mut sorted = iron.clone();
    sorted.sort_unstable();
    assert_eq!(iron, sorted);
    assert!(iron.contains(&"iron:router"), "{iron:?}");

    // The pages rank the same way: the home page's most-added list, and the search page
    // with an order and a filter but no words, whose form keeps what was chosen.
    let page = |path: &str| {
        agent()
            .get(&format!("{}{path}", server.http))
            .call()
            .expect("HTTP request")
            .body_mut()
            .read_to_string()
            .expect("UTF-8 page")
    };
    let home = page("/");
    let list = &home[home.find("id=\"most-added\"").expect("a most-added list")..];
    assert!(
        list.find("iron:router").unwrap() < list.find("iron:core").unwrap(),
        "{list}"
    );
    let browse = page("/search?sort=most-added&exclude_core=true");
    let results = &browse[browse.find("id=\"results\"").expect("results")..];
    assert!(results.find("iron:router").unwrap() < results.find("iron:core").unwrap());
    assert!(
        browse.contains("<option value=\"most-added\" selected>"),
        "{browse}"
    );
    assert!(browse.contains("name=\"exclude_core\" value=\"true\" checked"));

    for (query, code) in [
        ("sort=best", "invalid_parameter"),
        ("published_within=0", "invalid_parameter"),
        ("exclude_core=yes", "invalid_parameter"),
        ("q=%3A%3A", "empty_query"),
    ] {
        let refused = get(&format!("{api}/search?{query}"), None);
        assert_eq!(refused.status, 400, "{query}: {}", refused.body);
        assert_eq!(refused.body["error"]["code"], code, "{query}");
        assert!(refused.cors.is_some(), "CORS on errors too");
    }
}

/// Issue 13, "include deprecated/unmigrated": a package whose every version is unmigrated
/// (published before Meteor 0.9) is found by `/api/v1/search` and the search page only
/// with `include_unmigrated=true`, and then its detail answers too.
#[test]
fn unmigrated_packages_are_searched_only_when_asked_for() {
    let (dir, data, server) = serve_api(&Backend::Sqlite);
    let api = format!("{}/api/v1", server.http);
    let dump = one_package(dir.path(), "web-api:classic", |version| {
        version["description"] = json!("A classic package from before packages migrated");
        version["unmigrated"] = json!(true);
    });
    import_on(&Backend::Sqlite, &data, &dump);
    let asked = wait_for(
        &format!("{api}/search?q=classic&include_unmigrated=true"),
        |a| a.status == 200 && !a.body["items"].as_array().unwrap().is_empty(),
    );
    assert_eq!(asked.body["items"][0]["name"], "web-api:classic");
    assert_eq!(asked.body["items"][0]["version"], "1.0.0");
    assert_eq!(asked.cors.as_deref(), Some("*"));
    for left_out in [
        "q=classic",
        "q=web-api:classic",
        "q=classic&include_unmigrated=false",
        "include_unmigrated=",
    ] {
        let hits = get(&format!("{api}/search?{left_out}"), None);
        assert_eq!(hits.status, 200, "{left_out}: {}", hits.body);
        assert!(
            hits.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .all(|hit| hit["name"] != "web-api:classic"),
            "{left_out}: {}",
            hits.body
        );
    }
    let browsed = get(
        &format!("{api}/search?sort=name&include_unmigrated=true&maintainer=fresh"),
        None,
    );
    assert_eq!(
        browsed.body["items"][0]["name"], "web-api:classic",
        "{}",
        browsed.body
    );
    let refused = get(
        &format!("{api}/search?q=classic&include_unmigrated=yes"),
        None,
    );
    assert_eq!(refused.status, 400);
    assert_eq!(refused.body["error"]["code"], "invalid_parameter");
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("include_unmigrated"),
        "{}",
        refused.body
    );
    // Found, it is shown: its latest version is its unmigrated one.
    let detail = get(&format!("{api}/packages/web-api:classic"), None);
    assert_eq!(detail.status, 200, "{}", detail.body);
    assert_eq!(detail.body["latest_version"], "1.0.0");
    let version = get(
        &format!("{api}/packages/web-api:classic/versions/1.0.0"),
        None,
    );
    assert_eq!(version.body["unmigrated"], true);

    // The search page: the checkbox beside "include deprecated", kept when checked.
    let page = |path: &str| {
        agent()
            .get(&format!("{}{path}", server.http))
            .call()
            .expect("HTTP request")
            .body_mut()
            .read_to_string()
            .expect("UTF-8 page")
    };
    let plain = page("/search?q=classic");
    assert!(
        plain.contains("name=\"include_unmigrated\" value=\"true\">"),
        "{plain}"
    );
    assert!(!plain.contains("web-api:classic"), "{plain}");
    let included = page("/search?q=classic&include_unmigrated=true");
    assert!(included.contains("name=\"include_unmigrated\" value=\"true\" checked"));
    let results = &included[included.find("id=\"results\"").expect("results")..];
    assert!(results.contains("web-api:classic"), "{results}");
}

/// Issue 13, "limits as flags": a server started with smaller bounds than the defaults
/// (`--web-max-query-chars`, `--web-max-page-depth`) holds the API and the pages to them,
/// and its errors name them.
#[test]
fn configured_bounds_take_effect_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    import_on(&Backend::Sqlite, &data, &fixture());
    let server = Server::start(
        &data,
        &[
            "--web-max-query-chars",
            "10",
            "--web-max-page-depth",
            "4",
            "--web-page-size",
            "2",
        ],
    );
    let api = format!("{}/api/v1", server.http);
    wait_for(&format!("{api}/search?q=0123456789"), |a| a.status == 200);
    let long = get(&format!("{api}/search?q=01234567890"), None);
    assert_eq!(long.status, 400);
    assert_eq!(long.cors.as_deref(), Some("*"));
    assert_eq!(long.body["error"]["code"], "query_too_long");
    let message = long.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("10 characters"), "{message}");

    let versions = format!("{api}/packages/iron:router/versions?limit=2");
    assert_eq!(get(&format!("{versions}&cursor=4"), None).status, 200);
    let deep = get(&format!("{versions}&cursor=5"), None);
    assert_eq!(deep.status, 400);
    assert_eq!(deep.body["error"]["code"], "cursor_too_deep");
    let message = deep.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("past item 4"), "{message}");

    // The pages: their search boxes take 10 characters, and page 3 (items 4 and 5) is
    // the deepest of a list of 2 a page.
    let page = |path: &str| {
        let mut response = agent()
            .get(&format!("{}{path}", server.http))
            .call()
            .expect("HTTP request");
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().unwrap())
    };
    let (status, home) = page("/");
    assert_eq!(status, 200);
    assert!(home.contains("maxlength=\"10\""), "{home}");
    assert!(!home.contains("maxlength=\"200\""), "{home}");
    assert_eq!(page("/search?q=iron&page=3").0, 200);
    let (status, refused) = page("/search?q=iron&page=4");
    assert_eq!(status, 400, "{refused}");
    assert!(refused.contains("past item 4"), "{refused}");
    assert_eq!(page("/search?q=01234567890").0, 400);
}

/// Issue 13: `/api/v1/stats/packages/{name}` answers as the rest of `/api/v1` does (CORS on
/// every answer and preflight, JSON errors, an `ETag` and `304`, cache headers), from the
/// server's rolled-up stats, while `/stats/v1/<day>` stays as spec §7.2 has it.
#[test]
fn usage_statistics_answer_as_the_rest_of_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    import_on(&Backend::Sqlite, &data, &fixture());
    let usage = stats_dump(
        dir.path(),
        &[
            ("iron:router", "1.0.6", 1, 3, 5),
            ("iron:router", "1.0.5", 2, 1, 2),
            ("made-up:name", "1.0.0", 1, 1, 1),
        ],
    );
    import_on(&Backend::Sqlite, &data, &usage);
    let server = Server::start(&data, &["--stats-max-range-days", "400"]);
    let stats = format!("{}/api/v1/stats/packages", server.http);
    // Whether a name is a package is told by the read model: wait for it.
    wait_for(
        &format!("{}/api/v1/packages/iron:router", server.http),
        |a| a.status == 200,
    );

    let range = get(&format!("{stats}/iron:router"), None);
    assert_eq!(range.status, 200, "{}", range.body);
    assert_eq!(
        (
            range.body["directAdds"].clone(),
            range.body["totalAdds"].clone()
        ),
        (json!(4), json!(7))
    );
    assert_eq!(range.cors.as_deref(), Some("*"));
    assert_eq!(
        range.cache_control.as_deref(),
        Some("public, no-cache"),
        "today is still counted"
    );
    let tag = range.etag.expect("an ETag");
    let again = get(&format!("{stats}/iron:router"), Some(&tag));
    assert_eq!(again.status, 304);
    assert_eq!(again.etag.as_deref(), Some(tag.as_str()));
    assert_eq!(again.cors.as_deref(), Some("*"));
    let yesterday = (chrono::Utc::now().date_naive() - chrono::Days::new(1)).to_string();
    let finished = get(
        &format!("{stats}/iron:router?to={yesterday}&interval=month"),
        Some(&tag),
    );
    assert_eq!(finished.status, 200, "another range, another tag");
    assert_eq!(
        finished.cache_control.as_deref(),
        Some("public, max-age=300")
    );

    // A package nobody added has zeros; a name the catalog does not hold is a 404, unless
    // usage was counted for it (imported here).
    let unused = get(&format!("{stats}/iron:core"), None);
    assert_eq!(
        (unused.status, unused.body["totalAdds"].clone()),
        (200, json!(0))
    );
    let counted = get(&format!("{stats}/made-up:name"), None);
    assert_eq!(
        (counted.status, counted.body["totalAdds"].clone()),
        (200, json!(1))
    );
    let missing = get(&format!("{stats}/no:such"), None);
    assert_eq!(missing.status, 404);
    assert_eq!(missing.cors.as_deref(), Some("*"));
    assert_eq!(missing.body["error"]["code"], "package_not_found");

    for (bad, says) in [
        ("Not%20A%20Package", "not a Meteor package name"),
        ("iron:router?from=2024-02-30", "from: invalid day"),
        ("iron:router?interval=year", "invalid interval"),
        ("iron:router?from=2024-10-02&to=2024-10-01", "after to"),
        ("iron:router?from=2023-01-01&to=2024-10-01", "at most 400"),
        ("iron:router?to=2024-10-01&to=2024-10-02", "duplicate field"),
    ] {
        let refused = get(&format!("{stats}/{bad}"), None);
        assert_eq!(refused.status, 400, "{bad}: {}", refused.body);
        assert_eq!(refused.cors.as_deref(), Some("*"), "{bad}");
        assert_eq!(refused.body["error"]["code"], "invalid_parameter", "{bad}");
        let message = refused.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{bad}: {message}");
    }

    // A script's preflight, and another method.
    let preflight = agent()
        .options(&format!("{stats}/iron:router"))
        .header("Origin", "https://elsewhere.example")
        .header("Access-Control-Request-Headers", "if-none-match")
        .call()
        .expect("HTTP request");
    assert_eq!(preflight.status().as_u16(), 204);
    let allowed = |name: &str| {
        preflight
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(allowed("access-control-allow-origin").as_deref(), Some("*"));
    assert!(
        allowed("access-control-allow-headers")
            .unwrap()
            .contains("If-None-Match")
    );
    let mut posted = agent()
        .post(&format!("{stats}/iron:router"))
        .send_empty()
        .expect("HTTP request");
    assert_eq!(posted.status().as_u16(), 405);
    let posted: Value = serde_json::from_str(&posted.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(posted["error"]["code"], "method_not_allowed");

    // The daily files stay as spec §7.2 has them.
    let (status, body, content_type) =
        crate::common::http_get(&format!("{}/stats/v1/{yesterday}", server.http));
    assert_eq!(status, 200);
    assert_eq!(content_type.as_deref(), Some("application/x-ndjson"));
    assert!(body.contains("\"name\":\"iron:router\""), "{body}");
}
