//! `exosphere serve --upstream` end to end (issue 11; spec §0.2, §0.4 item 10, §3, §8.1): a
//! mirror of an Exosphere upstream and of the fault-injecting fake upstream (timestamp tokens,
//! `lastDeletion`, files on another port), checked as a client of the mirror sees it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::common::{
    Catalog, PATIENCE, Server, assert_success, fixture_catalog, import_text, run, serve_fixture,
    sync_loop,
};
use crate::fake_upstream::{FakeUpstream, FileFault, SyncFault};

/// The fields of a record that hold a file URL (spec §3.8), which a mirror rewrites.
const FILE_FIELDS: [&str; 3] = ["build", "source", "readme"];

/// Starts a mirror of `upstream` on `data`, with short timeouts so faults show quickly.
pub(crate) fn mirror_of(upstream: &str, data: &Path, extra: &[&str]) -> Server {
    let mut args = vec![
        "--upstream",
        upstream,
        "--upstream-call-timeout",
        "5s",
        "--upstream-poll-interval",
        "1s",
        "--upstream-max-backoff",
        "1s",
        "--upstream-file-idle-timeout",
        "2s",
    ];
    args.extend_from_slice(extra);
    Server::start(data, &args)
}

/// `/healthz`.
async fn health(server: &Server) -> Value {
    let url = format!("{}/healthz", server.http);
    let body = tokio::task::spawn_blocking(move || crate::common::http_get(&url).1)
        .await
        .unwrap();
    serde_json::from_str::<Value>(&body).expect("healthz is JSON")
}

/// The mirror section of `/healthz`.
pub(crate) async fn status(server: &Server) -> Value {
    health(server).await["mirror"].clone()
}

/// Waits until the mirror's status satisfies `done`, and returns it.
pub(crate) async fn wait_status(
    server: &Server,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let status = status(server).await;
        if done(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the mirror never got {what}: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the mirror reports being up to date.
async fn up_to_date(server: &Server) -> Value {
    wait_status(server, "up to date", |s| s["state"] == "up to date").await
}

/// Everything a fresh client of `server` syncs.
async fn client_catalog(server: &Server) -> (Catalog, Value) {
    let mut ddp = server.ddp().await;
    let synced = sync_loop(&mut ddp, json!({"format": "1.1"}), json!({})).await;
    (synced.catalog, synced.token)
}

/// The catalog with every file URL removed (a mirror serves its own URLs).
fn without_urls(mut catalog: Catalog) -> Catalog {
    for records in catalog.values_mut() {
        for record in records.values_mut() {
            for field in FILE_FIELDS {
                if let Some(file) = record.get_mut(field).and_then(Value::as_object_mut) {
                    file.remove("url");
                }
            }
        }
    }
    catalog
}

/// Every file URL of a catalog.
fn urls(catalog: &Catalog) -> Vec<String> {
    catalog
        .values()
        .flat_map(|records| records.values())
        .flat_map(|record| {
            FILE_FIELDS
                .iter()
                .filter_map(|field| record[field]["url"].as_str().map(str::to_owned))
        })
        .collect()
}

/// A GET of a URL: status and body bytes (a body cut short reads as an error).
async fn get(url: &str, range: Option<&str>) -> Result<(u16, Vec<u8>), String> {
    let (url, range) = (url.to_owned(), range.map(str::to_owned));
    tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        let mut request = agent.get(&url);
        if let Some(range) = range {
            request = request.header("Range", &range);
        }
        let mut response = request.call().map_err(|error| error.to_string())?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .map_err(|error| error.to_string())?;
        Ok((status, body))
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_serves_exactly_the_upstreams_catalog_and_follows_its_changes() {
    let (_up_dir, up_data, upstream) = serve_fixture();
    let dir = tempfile::tempdir().unwrap();
    let mirror = mirror_of(&upstream.http, &dir.path().join("data"), &[]);
    let status = up_to_date(&mirror).await;
    assert_eq!(status["upstream"], upstream.http.as_str());
    assert_eq!(status["records"], 8290);

    // Records by `_id` and content, URLs aside (spec §3.4: `_id`s stay stable).
    let (mirrored, token) = client_catalog(&mirror).await;
    let (original, _) = client_catalog(&upstream).await;
    assert_eq!(without_urls(mirrored.clone()), without_urls(original));
    let served = urls(&mirrored);
    assert!(!served.is_empty());
    let prefix = format!("{}/mirror/files/mirror/", mirror.http);
    assert!(
        served.iter().all(|url| url.starts_with(&prefix)),
        "{served:?}"
    );

    // A change upstream reaches a subscriber of the mirror's `changes` within seconds, and
    // the next sync from the client's token (no reset) carries it.
    let mut watcher = mirror.ddp().await;
    watcher.subscribe("c", "changes").await;
    let started = Instant::now();
    let mut package = mirrored["packages"].values().next().unwrap().clone();
    package["homepage"] = json!("https://example.com/changed");
    import_text(
        &up_data,
        &format!("{}\n", json!({"collection": "packages", "doc": package})),
    );
    let changed = watcher
        .wait_for(|m| m["msg"] == "changed" && m["collection"] == "changes")
        .await;
    assert_eq!(changed["id"], "packages", "{changed}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let mut client = mirror.ddp().await;
    let next = sync_loop(&mut client, token, json!({})).await;
    assert!(next.pages.iter().all(|page| page["resetData"] != true));
    let id = package["_id"].as_str().unwrap();
    assert_eq!(
        next.catalog["packages"][id]["homepage"],
        "https://example.com/changed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_never_wait_on_or_fail_because_of_the_upstream() {
    let fake = FakeUpstream::from_fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let mirror = mirror_of(&fake.url(), &dir.path().join("data"), &[]);
    up_to_date(&mirror).await;
    let (before, token) = client_catalog(&mirror).await;
    assert_eq!(without_urls(before.clone()), without_urls(fake.catalog()));

    // Upstream gone: the mirror says so, its clients notice nothing.
    fake.stop().await;
    let failing = wait_status(&mirror, "failing", |s| s["state"] == "failing").await;
    assert!(failing["detail"]["error"].is_string(), "{failing}");
    let started = Instant::now();
    let (during, _) = client_catalog(&mirror).await;
    assert_eq!(during, before);
    let mut client = mirror.ddp().await;
    let resumed = sync_loop(&mut client, token.clone(), json!({})).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(resumed.pages.len(), 1);
    assert_eq!(resumed.pages[0]["resetData"], false);

    // An upstream that hangs or answers errors changes nothing either.
    fake.restart().await;
    fake.set_sync_fault(Some(SyncFault::SyncError(500)));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(client_catalog(&mirror).await.0, before);
    fake.set_sync_fault(None);
    up_to_date(&mirror).await;
    let mut client = mirror.ddp().await;
    let after = sync_loop(&mut client, token, json!({})).await;
    assert!(after.pages.iter().all(|page| page["resetData"] != true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_versions_content_stays_when_the_upstream_changes_it() {
    let fake = FakeUpstream::from_fixture().await;
    fake.serve_catalog_files();
    let dir = tempfile::tempdir().unwrap();
    let mirror = mirror_of(&fake.url(), &dir.path().join("data"), &[]);
    up_to_date(&mirror).await;
    let (before, token) = client_catalog(&mirror).await;
    let upstream = fake.catalog();
    let (id, version) = upstream["versions"]
        .iter()
        .find(|(_, version)| version["source"]["tarballHash"].is_string())
        .unwrap();
    let mut changed = version.clone();
    // Another file's hash (the empty file's) for the same URL.
    changed["source"]["tarballHash"] = json!("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
    fake.upsert("versions", changed);
    let (described_id, described) = upstream["versions"]
        .iter()
        .find(|(other, _)| *other != id)
        .unwrap();
    let mut described = described.clone();
    described["description"] = json!("Described again upstream");
    fake.upsert("versions", described);

    // The refused record does not stop the mirror: it goes on, up to date.
    wait_status(&mirror, "the change refused", |s| {
        s["rejected"] == 1 && s["state"] == "up to date"
    })
    .await;
    let mut client = mirror.ddp().await;
    let next = sync_loop(&mut client, token, json!({})).await;
    assert_eq!(
        next.catalog["versions"][described_id.as_str()]["description"],
        "Described again upstream",
        "metadata follows the upstream"
    );
    let (after, _) = client_catalog(&mirror).await;
    assert_eq!(
        after["versions"][id.as_str()],
        before["versions"][id.as_str()]
    );
    // Its file is still checked against the hash the served record promises, so the
    // tarball clients get is the one that record describes.
    let url = after["versions"][id.as_str()]["source"]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = get(&url, None).await.unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).starts_with("the source tarball of"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_mirror_is_visible_only_once_complete_and_resumes_after_a_kill() {
    let fake = FakeUpstream::from_fixture().await;
    fake.set_page_size(100);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mirror = mirror_of(&fake.url(), &data, &[]);
    wait_status(&mirror, "a few staged pages", |s| {
        s["state"] == "syncing a full catalog" && s["pages"].as_u64().unwrap_or(0) >= 3
    })
    .await;
    fake.set_sync_fault(Some(SyncFault::Hang));
    // Half a catalog is never served: a client sees nothing until the whole of it is there.
    let (seen, _) = client_catalog(&mirror).await;
    assert!(seen.values().all(|records| records.is_empty()), "{seen:?}");

    // Killed mid-sync (kill -9), restarted: it resumes from the last staged page.
    let pages_before = status(&mirror).await["pages"].as_u64().unwrap();
    drop(mirror);
    fake.set_sync_fault(None);
    let mirror = mirror_of(&fake.url(), &data, &[]);
    let done = up_to_date(&mirror).await;
    let full = 4039_u64.div_ceil(100);
    assert!(
        done["pages"].as_u64().unwrap() + pages_before <= full + 2,
        "the restarted mirror started over: {done}, {pages_before} pages before"
    );
    let (mirrored, _) = client_catalog(&mirror).await;
    assert_eq!(without_urls(mirrored), without_urls(fake.catalog()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_reset_or_a_token_going_backwards_never_resets_clients() {
    let fake = FakeUpstream::from_fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let mirror = mirror_of(&fake.url(), &dir.path().join("data"), &[]);
    up_to_date(&mirror).await;
    let (before, token) = client_catalog(&mirror).await;

    // The upstream deletes a version: it answers the mirror with `resetData`. The mirror
    // resyncs beside the served catalog and keeps the deleted record (its documented
    // policy: a deletion would reset every client).
    let deleted = before["versions"].keys().next().unwrap().clone();
    fake.delete("versions", &deleted);
    let mut package = before["packages"].values().next().unwrap().clone();
    package["homepage"] = json!("https://example.com/after-reset");
    fake.upsert("packages", package.clone());
    let id = package["_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + PATIENCE;
    let after = loop {
        let mut client = mirror.ddp().await;
        let after = sync_loop(&mut client, token.clone(), json!({})).await;
        assert!(after.pages.iter().all(|page| page["resetData"] != true));
        if after
            .catalog
            .get("packages")
            .is_some_and(|p| p.contains_key(&id))
        {
            break after;
        }
        assert!(Instant::now() < deadline, "the change never arrived");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        after.catalog["packages"][&id]["homepage"],
        "https://example.com/after-reset"
    );
    let (now, token) = client_catalog(&mirror).await;
    assert!(now["versions"].contains_key(&deleted));
    assert_eq!(status(&mirror).await["resyncs"], 1);

    // A token that goes backwards (a restored upstream): resynced beside, no reset either.
    fake.set_sync_fault(Some(SyncFault::TokenBackwards));
    package["homepage"] = json!("https://example.com/after-backwards");
    fake.upsert("packages", package);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut client = mirror.ddp().await;
        let next = sync_loop(&mut client, token.clone(), json!({})).await;
        assert!(next.pages.iter().all(|page| page["resetData"] != true));
        let homepage = next
            .catalog
            .get("packages")
            .and_then(|p| p.get(&id))
            .map(|p| p["homepage"].clone());
        if homepage == Some(json!("https://example.com/after-backwards")) {
            break;
        }
        assert!(Instant::now() < deadline, "the change never arrived");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(client_catalog(&mirror).await.0.len(), before.len());
    assert_eq!(status(&mirror).await["resyncs"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_much_smaller_upstream_catalog_is_held_for_an_operator() {
    let fake = FakeUpstream::from_fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mirror = mirror_of(&fake.url(), &data, &[]);
    up_to_date(&mirror).await;
    let (before, _) = client_catalog(&mirror).await;
    let gone: Vec<String> = before["versions"].keys().take(1000).cloned().collect();
    for id in &gone {
        fake.delete("versions", id);
    }
    let held = wait_status(&mirror, "held", |s| s["state"] == "held for an operator").await;
    let reason = held["detail"]["reason"].as_str().unwrap();
    assert!(reason.contains("exosphere mirror accept"), "{reason}");
    assert_eq!(client_catalog(&mirror).await.0, before);

    let data = data.to_str().unwrap();
    let shown = run(&["mirror", "status", "--data-dir", data]);
    assert_success(&shown);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("Held for an operator"), "{shown}");
    let accepted = run(&["mirror", "accept", "--data-dir", data]);
    assert_success(&accepted);
    assert!(
        String::from_utf8_lossy(&accepted.stdout).contains("Applied the held upstream catalog")
    );
    let again = run(&["mirror", "accept", "--data-dir", data]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("holds no catalog"));
    // Deleted upstream records stay served; the mirror goes on following.
    up_to_date(&mirror).await;
    assert_eq!(client_catalog(&mirror).await.0, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_come_through_the_mirror_fetched_once_and_only_when_they_match() {
    let fake = FakeUpstream::from_fixture().await;
    fake.serve_catalog_files();
    let dir = tempfile::tempdir().unwrap();
    let mirror = mirror_of(&fake.url(), &dir.path().join("data"), &[]);
    up_to_date(&mirror).await;
    let (mirrored, _) = client_catalog(&mirror).await;
    let upstream = fake.catalog();
    let builds: Vec<(&String, &Value)> = mirrored["builds"].iter().take(3).collect();
    let file_of = |id: &str| -> (String, String) {
        let url = mirrored["builds"][id]["build"]["url"]
            .as_str()
            .unwrap()
            .to_owned();
        let original = upstream["builds"][id]["build"]["url"].as_str().unwrap();
        let path = original.strip_prefix(&fake.files_url()).unwrap().to_owned();
        (url, path)
    };

    // Fifty clients at once, one upstream fetch, everyone the right bytes.
    let (url, path) = file_of(builds[0].0);
    let direct = get(&format!("{}{path}", fake.files_url()), None)
        .await
        .unwrap()
        .1;
    let before = fake.requests(&path);
    let url = Arc::new(url);
    let clients: Vec<_> = (0..50)
        .map(|_| {
            let url = Arc::clone(&url);
            tokio::spawn(async move { get(&url, None).await })
        })
        .collect();
    for client in clients {
        let (status, body) = client.await.unwrap().unwrap();
        assert_eq!(status, 200);
        assert!(body == direct, "a client got other bytes");
    }
    assert_eq!(fake.requests(&path) - before, 1);
    // Cached: no more upstream requests; ranges work (spec §8.1).
    assert_eq!(get(&url, None).await.unwrap().1, direct);
    let (status, tail) = get(&url, Some("bytes=10-")).await.unwrap();
    assert_eq!((status, tail.as_slice()), (206, &direct[10..]));
    assert_eq!(fake.requests(&path) - before, 1);

    // A wrong file never reaches a client whole and is not cached.
    let (wrong_url, wrong_path) = file_of(builds[1].0);
    fake.set_file_fault(&wrong_path, Some(FileFault::WrongBytes));
    not_delivered(get(&wrong_url, None).await);
    fake.set_file_fault(&wrong_path, None);
    let direct = get(&format!("{}{wrong_path}", fake.files_url()), None)
        .await
        .unwrap()
        .1;
    assert_eq!(get(&wrong_url, None).await.unwrap(), (200, direct));
    assert_eq!(fake.requests(&wrong_path), 3);

    // A truncated or failing upstream: the client's download breaks, nothing is cached.
    let (short_url, short_path) = file_of(builds[2].0);
    fake.set_file_fault(&short_path, Some(FileFault::Truncate));
    not_delivered(get(&short_url, None).await);
    fake.set_file_fault(&short_path, Some(FileFault::Status(500)));
    let (status, body) = get(&short_url, None).await.unwrap();
    assert_eq!(status, 502, "{}", String::from_utf8_lossy(&body));

    // Upstream down: cached files are served, uncached ones fail fast with a clear 5xx.
    fake.stop().await;
    assert_eq!(get(&url, None).await.unwrap().0, 200);
    let started = Instant::now();
    let (status, body) = get(&short_url, None).await.unwrap();
    assert_eq!(status, 502);
    assert!(String::from_utf8_lossy(&body).contains("not cached"));
    assert!(started.elapsed() < Duration::from_secs(3));
    // A client has its last byte once the file is verified; the file is counted once it is
    // also kept, which a loaded machine may finish a little later.
    let deadline = Instant::now() + PATIENCE;
    let health = loop {
        let health = status_files(&mirror).await;
        if health["fetched"].as_u64().unwrap() >= 2 || Instant::now() > deadline {
            break health;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(health["fetched"].as_u64().unwrap() >= 2, "{health}");
    assert_eq!(health["cached"], health["fetched"], "{health}");
    assert_eq!(health["cached_bytes"], health["fetched_bytes"], "{health}");
    assert!(health["failures"].as_u64().unwrap() >= 3, "{health}");
}

/// Checks that a download did not deliver a file: its response broke off before its length
/// (the download failed while streaming), or it was a 5xx (it failed before the answer).
fn not_delivered(answer: Result<(u16, Vec<u8>), String>) {
    if let Ok((status, body)) = answer {
        assert!(
            status >= 500,
            "a bad file was delivered: {status} {}",
            String::from_utf8_lossy(&body)
        );
    }
}

/// The mirrored files' counters on `/healthz`.
async fn status_files(server: &Server) -> Value {
    health(server).await["mirror_files"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exosphere_mirroring_an_exosphere_that_mirrors_a_third_serves_the_same() {
    let fake = FakeUpstream::from_fixture().await;
    fake.serve_catalog_files();
    let dir = tempfile::tempdir().unwrap();
    let middle = mirror_of(&fake.url(), &dir.path().join("middle"), &[]);
    up_to_date(&middle).await;
    let last = mirror_of(&middle.http, &dir.path().join("last"), &[]);
    up_to_date(&last).await;
    let (mirrored, _) = client_catalog(&last).await;
    assert_eq!(without_urls(mirrored.clone()), without_urls(fake.catalog()));
    let (id, build) = mirrored["builds"].iter().next().unwrap();
    let url = build["build"]["url"].as_str().unwrap();
    assert!(url.starts_with(&last.http), "{url}");
    let original = fake.catalog()["builds"][id]["build"]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let direct = get(&original, None).await.unwrap().1;
    assert_eq!(get(url, None).await.unwrap(), (200, direct));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_package_made_here_owns_its_name() {
    let fake = FakeUpstream::from_fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    import_text(
        &data,
        &format!(
            "{}\n",
            json!({"collection": "packages", "doc": {"_id": "localPkg1", "name": "acme-private", "maintainers": []}})
        ),
    );
    let mirror = mirror_of(&fake.url(), &data, &[]);
    up_to_date(&mirror).await;
    fake.upsert(
        "packages",
        json!({"_id": "upstreamPkg1", "name": "acme-private", "maintainers": []}),
    );
    let shadowed = wait_status(&mirror, "a shadowed record", |s| s["shadowed"] == 1).await;
    assert_eq!(shadowed["state"], "up to date");
    // The name is this server's now: the upstream's versions of it are not served either.
    fake.upsert(
        "versions",
        json!({"_id": "upstreamPrivateV1", "packageName": "acme-private", "version": "9.9.9",
               "dependencies": {}}),
    );
    wait_status(&mirror, "a second shadowed record", |s| s["shadowed"] == 2).await;
    // Nor can the upstream take the local record over by sending its `_id` with another name.
    fake.upsert(
        "packages",
        json!({"_id": "localPkg1", "name": "taken-over", "maintainers": ["mallory"]}),
    );
    wait_status(&mirror, "a third shadowed record", |s| s["shadowed"] == 3).await;
    let (seen, _) = client_catalog(&mirror).await;
    assert_eq!(seen["packages"]["localPkg1"]["name"], "acme-private");
    let named: Vec<&String> = seen["packages"]
        .iter()
        .filter(|(_, p)| p["name"] == "acme-private")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(named, ["localPkg1"]);
    assert!(!seen["versions"].contains_key("upstreamPrivateV1"));
    assert_eq!(
        seen["packages"].len(),
        fixture_catalog()["packages"].len() + 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_of_compressed_pages_serves_the_same_records() {
    let (_up_dir, _up_data, upstream) = serve_fixture();
    let dir = tempfile::tempdir().unwrap();
    let mirror = mirror_of(
        &upstream.http,
        &dir.path().join("data"),
        &["--upstream-compress"],
    );
    let status = up_to_date(&mirror).await;
    assert_eq!(status["records"], 8290);
    let (mirrored, _) = client_catalog(&mirror).await;
    let (original, _) = client_catalog(&upstream).await;
    let ids = |catalog: &Catalog| -> Vec<(String, Vec<String>)> {
        catalog
            .iter()
            .map(|(name, records)| (name.clone(), records.keys().cloned().collect()))
            .collect()
    };
    assert_eq!(ids(&mirrored), ids(&original));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_commands_explain_an_empty_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    import_text(&data, "");
    let data = data.to_str().unwrap();
    let shown = run(&["mirror", "status", "--data-dir", data]);
    assert_success(&shown);
    assert!(String::from_utf8_lossy(&shown.stdout).contains("exosphere serve --upstream"));
    let accepted = run(&["mirror", "accept", "--data-dir", data]);
    assert!(!accepted.status.success());
    assert!(String::from_utf8_lossy(&accepted.stderr).contains("no mirror has run"));
    let refused = run(&["serve", "--data-dir", data, "--upstream", "ftp://x"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("http://"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetched_files_are_served_while_the_upstream_is_down() {
    let fake = FakeUpstream::from_fixture().await;
    fake.serve_catalog_files();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mirror = mirror_of(&fake.url(), &data, &[]);
    up_to_date(&mirror).await;
    let (mirrored, _) = client_catalog(&mirror).await;
    let upstream = fake.catalog();

    // An app on the fixture's release, with one package of its own.
    let release = upstream["releaseVersions"].values().next().unwrap();
    let extra = upstream["versions"]
        .values()
        .find(|v| release["packages"][v["packageName"].as_str().unwrap()].is_null())
        .unwrap();
    let app = dir.path().join("app");
    std::fs::create_dir_all(app.join(".meteor")).unwrap();
    std::fs::write(
        app.join(".meteor/release"),
        format!(
            "{}@{}\n",
            release["track"].as_str().unwrap(),
            release["version"].as_str().unwrap()
        ),
    )
    .unwrap();
    std::fs::write(
        app.join(".meteor/versions"),
        format!(
            "{}@{}\n",
            extra["packageName"].as_str().unwrap(),
            extra["version"].as_str().unwrap()
        ),
    )
    .unwrap();
    let output = run(&[
        "mirror",
        "prefetch",
        "--data-dir",
        data.to_str().unwrap(),
        "--app",
        app.to_str().unwrap(),
        "--arch",
        "os.linux.x86_64",
    ]);
    assert_success(&output);
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(summary.starts_with("Prefetched "), "{summary}");

    // Which builds were fetched: the app's own package among them, not everything.
    let path_of = |id: &str| -> String {
        let url = upstream["builds"][id]["build"]["url"].as_str().unwrap();
        url.strip_prefix(&fake.files_url()).unwrap().to_owned()
    };
    let fetched: Vec<&String> = upstream["builds"]
        .keys()
        .filter(|id| fake.requests(&path_of(id)) > 0)
        .collect();
    let (count, total) = summary
        .strip_prefix("Prefetched ")
        .and_then(|rest| rest.split_once(" files"))
        .and_then(|(counts, _)| counts.split_once(" of "))
        .unwrap();
    assert_eq!(count, total, "{summary}");
    assert_eq!(count.parse::<usize>().unwrap(), fetched.len());
    let extra_id = extra["_id"].as_str().unwrap();
    assert!(
        fetched
            .iter()
            .any(|id| upstream["builds"][*id]["versionId"] == extra_id),
        "the app's own package was not fetched"
    );
    assert!(fetched.len() < upstream["builds"].len());

    // Upstream gone: every prefetched file is served; one that was not is not.
    fake.stop().await;
    for id in &fetched {
        let url = mirrored["builds"][*id]["build"]["url"].as_str().unwrap();
        assert_eq!(get(url, None).await.unwrap().0, 200, "{url}");
    }
    let other = upstream["builds"]
        .keys()
        .find(|id| fake.requests(&path_of(id)) == 0)
        .unwrap();
    let url = mirrored["builds"][other]["build"]["url"].as_str().unwrap();
    assert_eq!(get(url, None).await.unwrap().0, 502);

    // `mirror verify` re-hashes what is cached, and deletes what got damaged on disk.
    let data_arg = data.to_str().unwrap();
    let verified = run(&["mirror", "verify", "--data-dir", data_arg]);
    assert_success(&verified);
    let verified = String::from_utf8_lossy(&verified.stdout);
    assert!(
        verified.contains(&format!("{} matched", fetched.len())),
        "{verified}"
    );
    let damaged_url = mirrored["builds"][fetched[0]]["build"]["url"]
        .as_str()
        .unwrap();
    let key = exosphere_mirror::key_of(damaged_url).unwrap();
    let path = data.join("files").join(key);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let found = run(&["mirror", "verify", "--data-dir", data_arg]);
    assert!(!found.status.success());
    assert!(String::from_utf8_lossy(&found.stderr).contains(key));
    assert_eq!(get(damaged_url, None).await.unwrap().0, 502);

    // Nothing chosen is a clear error.
    let refused = run(&["mirror", "prefetch", "--data-dir", data.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--release TRACK@VERSION"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimed_name_is_served_from_here_only() {
    let fake = FakeUpstream::from_fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mirror = mirror_of(&fake.url(), &data, &[]);
    up_to_date(&mirror).await;
    let (before, token) = client_catalog(&mirror).await;
    let (id, package) = before["packages"].iter().next().unwrap();
    let name = package["name"].as_str().unwrap().to_owned();
    let data = data.to_str().unwrap();
    assert_success(&run(&["user", "add", "--data-dir", data, "alice"]));
    let unknown = run(&[
        "mirror",
        "claim",
        "--data-dir",
        data,
        &name,
        "--maintainer",
        "bob",
    ]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no user or organization named bob"));
    let claimed = run(&[
        "mirror",
        "claim",
        "--data-dir",
        data,
        &name,
        "--maintainer",
        "alice",
    ]);
    assert_success(&claimed);
    assert!(String::from_utf8_lossy(&claimed.stdout).contains("lists alice"));
    // The claim is in the audit log; the refused one left no entry.
    let audit = run(&["audit", "--json", "--data-dir", data, "--package", &name]);
    assert_success(&audit);
    let entries: Vec<Value> = String::from_utf8_lossy(&audit.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["action"], "mirror.claim");
    assert_eq!(entries[0]["detail"]["maintainers"], json!(["alice"]));

    // Clients get the same record (same `_id`), now maintained here: never two of one name.
    let mut client = mirror.ddp().await;
    let next = sync_loop(&mut client, token, json!({})).await;
    assert_eq!(
        next.catalog["packages"][id]["maintainers"][0]["username"],
        "alice"
    );
    assert_eq!(next.catalog["packages"].len(), 1);

    // Upstream records of the name are no longer served; others still are.
    let version = json!({"_id": "upstreamNewVersion", "packageName": name, "version": "99.0.0",
                         "dependencies": {}});
    fake.upsert("versions", version);
    let mut other = before["packages"].values().nth(1).unwrap().clone();
    other["homepage"] = json!("https://example.com/still-mirrored");
    fake.upsert("packages", other.clone());
    let other_id = other["_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + PATIENCE;
    let (now, _) = loop {
        let now = client_catalog(&mirror).await;
        if now.0["packages"][&other_id]["homepage"] == "https://example.com/still-mirrored" {
            break now;
        }
        assert!(Instant::now() < deadline, "the other change never arrived");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(!now["versions"].contains_key("upstreamNewVersion"));
    assert_eq!(now["packages"][id]["maintainers"][0]["username"], "alice");
    let shown = run(&["mirror", "status", "--data-dir", data]);
    assert!(String::from_utf8_lossy(&shown.stdout).contains(&format!("package {name}")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_now_makes_an_idle_mirror_sync_at_once() {
    let fake = FakeUpstream::from_fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Polls hourly: only the operator's request can make it sync during the test.
    let mirror = Server::start(
        &data,
        &["--upstream", &fake.url(), "--upstream-poll-interval", "1h"],
    );
    let before = up_to_date(&mirror).await["pages"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(status(&mirror).await["pages"].as_u64().unwrap(), before);
    let asked = run(&["mirror", "sync-now", "--data-dir", data.to_str().unwrap()]);
    assert_success(&asked);
    let after = wait_status(&mirror, "another pass", |s| {
        s["pages"].as_u64().unwrap_or(0) > before && s["state"] == "up to date"
    })
    .await;
    assert!(after["last_success_ms"].as_i64() > Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_carries_a_mirror_to_a_closed_network() {
    let fake = FakeUpstream::from_fixture().await;
    fake.serve_catalog_files();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mirror = mirror_of(&fake.url(), &data, &[]);
    up_to_date(&mirror).await;
    let release = fake.catalog()["releaseVersions"]
        .values()
        .next()
        .unwrap()
        .clone();
    let release = format!(
        "{}@{}",
        release["track"].as_str().unwrap(),
        release["version"].as_str().unwrap()
    );
    let data_arg = data.to_str().unwrap();
    assert_success(&run(&[
        "mirror",
        "prefetch",
        "--data-dir",
        data_arg,
        "--release",
        &release,
        "--arch",
        "os.linux.x86_64",
    ]));
    let bundle = dir.path().join("bundle");
    let exported = run(&[
        "mirror",
        "export-bundle",
        "--data-dir",
        data_arg,
        "--output",
        bundle.to_str().unwrap(),
    ]);
    assert_success(&exported);
    assert!(String::from_utf8_lossy(&exported.stdout).contains("import-bundle"));
    fake.stop().await;
    drop(mirror);

    // The closed site: no upstream, its own URL.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let site = format!("http://127.0.0.1:{port}");
    let closed = dir.path().join("closed");
    let closed_arg = closed.to_str().unwrap();
    let loaded = run(&[
        "mirror",
        "import-bundle",
        "--data-dir",
        closed_arg,
        "--public-url",
        &site,
        "--only-with-files",
        bundle.to_str().unwrap(),
    ]);
    assert_success(&loaded);
    assert!(String::from_utf8_lossy(&loaded.stdout).contains("leaving out"));
    let server = Server::start_on(
        &format!("127.0.0.1:{port}"),
        &closed,
        &["--public-url", &site],
    );
    let carried = std::fs::read_to_string(bundle.join("files.ndjson"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(health(&server).await["mirror_files"]["cached"], carried);
    let (served, _) = client_catalog(&server).await;
    let upstream = fake.catalog();
    let builds = &served["builds"];
    assert!(!builds.is_empty() && builds.len() < upstream["builds"].len());
    for (id, build) in builds {
        let url = build["build"]["url"].as_str().unwrap();
        assert!(
            url.starts_with(&format!("{site}/mirror/files/mirror/")),
            "{url}"
        );
        let (status, body) = get(url, None).await.unwrap();
        assert_eq!(status, 200, "{url}");
        let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&body));
        assert_eq!(
            upstream["builds"][id]["build"]["tarballHash"],
            hash.as_str()
        );
        assert!(served["versions"].contains_key(build["versionId"].as_str().unwrap()));
    }
    // Only versions that kept a build are offered.
    let with_builds: std::collections::HashSet<&str> = builds
        .values()
        .map(|b| b["versionId"].as_str().unwrap())
        .collect();
    assert!(
        served["versions"]
            .keys()
            .all(|id| with_builds.contains(id.as_str()))
    );

    // A bundle damaged in transit is refused, and nothing of its catalog is loaded.
    let list = std::fs::read_to_string(bundle.join("files.ndjson")).unwrap();
    let first: Value = serde_json::from_str(list.lines().next().unwrap()).unwrap();
    let damaged = bundle.join("files").join(first["key"].as_str().unwrap());
    let mut bytes = std::fs::read(&damaged).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&damaged, bytes).unwrap();
    let other = dir.path().join("other");
    let refused = run(&[
        "mirror",
        "import-bundle",
        "--data-dir",
        other.to_str().unwrap(),
        "--public-url",
        &site,
        bundle.to_str().unwrap(),
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("damaged"));
    let exported = run(&["export", "--data-dir", other.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&exported.stdout).trim().is_empty());
}
