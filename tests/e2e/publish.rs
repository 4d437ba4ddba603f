//! `meteor publish` end to end (spec §5, §6, §8): accounts and tokens made with the CLI, the
//! tool's exact method sequences (§5.1 `publish --create`, a second version, §5.11
//! `publish-for-arch`, §5.12 a release track and a patch release) over a real WebSocket and
//! real HTTP uploads, then a fresh sync and byte-for-byte downloads; and every refusal the
//! issue lists, each checked to leave the catalog exactly as it was (`exosphere export`).

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::time::Duration;

use crate::common::{Backend, Ddp, Server, assert_success, import_on, run, sync_loop};
use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// SHA-256 of the empty string: the `treeHash` every Meteor 3 tool sends (spec §8.2).
pub(crate) const BLANK_HASH: &str = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";

/// Upload limit of the test servers, small enough to exceed cheaply.
const MAX_UPLOAD: usize = 64 * 1024;

/// `tarballHash` as the tool computes it (spec §8.2).
pub(crate) fn hash(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(bytes))
}

/// Distinct, deterministic file contents for each upload.
pub(crate) fn file(label: &str, size: usize) -> Vec<u8> {
    label.bytes().cycle().take(size).collect()
}

/// A data directory holding users alice (member of org acme), mallory and the
/// administrator root, and their tokens; [`world`] adds the 2015 fixture.
pub(crate) struct World {
    _dir: tempfile::TempDir,
    pub(crate) data: std::path::PathBuf,
    pub(crate) alice: String,
    pub(crate) mallory: String,
    /// Where the catalog is: servers of this world are started with its flags.
    pub(crate) backend: Backend,
}

/// A [`World`] whose catalog holds the 2015 fixture.
pub(crate) fn world() -> World {
    world_on(Backend::Sqlite)
}

/// A [`World`] whose catalog, on `backend`, holds the 2015 fixture.
pub(crate) fn world_on(backend: Backend) -> World {
    let world = bare_world_on(backend);
    import_on(&world.backend, &world.data, &crate::common::fixture());
    world
}

/// A [`World`] over an empty catalog, for tests that sync the whole catalog many times.
pub(crate) fn bare_world() -> World {
    bare_world_on(Backend::Sqlite)
}

/// A [`World`] over an empty catalog on `backend`.
fn bare_world_on(backend: Backend) -> World {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (alice, mallory) = accounts_on(&backend, &data);
    World {
        alice,
        mallory,
        _dir: dir,
        data,
        backend,
    }
}

/// Adds the accounts of a [`World`] to the data directory `data` and returns the tokens
/// of alice and mallory.
pub(crate) fn accounts(data: &Path) -> (String, String) {
    accounts_on(&Backend::Sqlite, data)
}

/// [`accounts`] with the catalog on `backend`, made with `exosphere user`, `org` and
/// `token` as an operator runs them.
fn accounts_on(backend: &Backend, data: &Path) -> (String, String) {
    let data_arg = data.to_str().unwrap();
    let flags = backend.flags();
    let run = |args: &[&str]| run(&[args, &flags].concat());
    for args in [
        vec!["user", "add", "alice", "--data-dir", data_arg],
        vec!["user", "add", "mallory", "--data-dir", data_arg],
        vec!["user", "add", "root", "--admin", "--data-dir", data_arg],
        vec![
            "org",
            "add",
            "acme",
            "--member",
            "alice",
            "--data-dir",
            data_arg,
        ],
    ] {
        assert_success(&run(&args));
    }
    let token = |user: &str| {
        let output = run(&["token", "create", user, "--data-dir", data_arg]);
        assert_success(&output);
        let text = String::from_utf8(output.stdout).unwrap();
        text.lines().next().unwrap().to_owned()
    };
    (token("alice"), token("mallory"))
}

/// A server with the given upload limit and extra flags, listening on `listen`.
fn serve_with_limit_on(listen: &str, data: &Path, limit: usize, extra: &[&str]) -> Server {
    let limit = limit.to_string();
    let mut args = vec!["--max-upload-size", limit.as_str()];
    args.extend_from_slice(extra);
    Server::start_on(listen, data, &args)
}

/// A server with the given upload limit and extra flags.
pub(crate) fn serve_with_limit(data: &Path, limit: usize, extra: &[&str]) -> Server {
    serve_with_limit_on("127.0.0.1:0", data, limit, extra)
}

/// A server with the small test upload limit.
pub(crate) fn serve(data: &Path, extra: &[&str]) -> Server {
    serve_with_limit(data, MAX_UPLOAD, extra)
}

/// [`serve`] listening on `listen`: a server restarted where the one before it listened,
/// so the upload URLs that one handed out reach it.
pub(crate) fn serve_on(listen: &str, data: &Path, extra: &[&str]) -> Server {
    serve_with_limit_on(listen, data, MAX_UPLOAD, extra)
}

/// Upload limit of the servers that take a large build.
pub(crate) const LARGE_LIMIT: usize = 16 << 20;

/// A build larger than one streamed chunk (5 MiB), so it is written in several parts.
const LARGE_BUILD: usize = 6 << 20;

/// The tool's login (spec §6.2): subscribe to the login configuration, then `login`.
pub(crate) async fn login(server: &Server, token: &str) -> Ddp {
    let mut ddp = server.ddp().await;
    let (_, ready) = ddp
        .subscribe("login-config", "meteor.loginServiceConfiguration")
        .await;
    assert_eq!(ready["msg"], "ready");
    let answer = ddp.call("login", json!([{"resume": token}])).await;
    let result = &answer["result"];
    assert!(result["id"].is_string(), "{answer}");
    assert_eq!(result["token"], token);
    assert!(result["tokenExpires"]["$date"].is_number(), "{answer}");
    ddp
}

/// A successful call's result.
pub(crate) async fn ok(ddp: &mut Ddp, method: &str, params: Value) -> Value {
    let answer = ddp.call(method, params).await;
    assert!(answer.get("error").is_none(), "{method} failed: {answer}");
    answer.get("result").cloned().unwrap_or(Value::Null)
}

/// A refused call's error object.
pub(crate) async fn refused(ddp: &mut Ddp, method: &str, params: Value) -> Value {
    let answer = ddp.call(method, params.clone()).await;
    answer
        .get("error")
        .cloned()
        .unwrap_or_else(|| panic!("{method} {params} should have failed: {answer}"))
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .new_agent()
}

/// The tool's upload (spec §5.2): a raw PUT with its headers; returns status and body.
pub(crate) fn put(url: &str, body: &[u8]) -> (u16, String) {
    try_put(url, body).expect("upload request")
}

/// [`put`] that returns a failed request (the server went away) instead of failing the
/// test.
pub(crate) fn try_put(url: &str, body: &[u8]) -> Result<(u16, String), ureq::Error> {
    let mut response = agent()
        .put(url)
        .header("content-type", "application/octet-stream")
        .header("x-amz-acl", "public-read")
        .header("user-agent", "Meteor/METEOR@3.0.4 OS/linux")
        .send(body)?;
    let status = response.status().as_u16();
    Ok((
        status,
        response.body_mut().read_to_string().unwrap_or_default(),
    ))
}

/// A download (spec §8.1): status, headers of interest, bytes.
pub(crate) fn get(
    url: &str,
    range: Option<&str>,
) -> (u16, Option<String>, Option<String>, Vec<u8>) {
    let (status, header, bytes) = fetch(url, range);
    (
        status,
        header("content-length"),
        header("cache-control"),
        bytes,
    )
}

/// A download with every response header: status, a header lookup, bytes.
fn fetch(url: &str, range: Option<&str>) -> (u16, impl Fn(&str) -> Option<String>, Vec<u8>) {
    let mut request = agent().get(url);
    if let Some(range) = range {
        request = request.header("range", range);
    }
    let mut response = request.call().expect("download request");
    let headers = response.headers().clone();
    let header = move |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let status = response.status().as_u16();
    let bytes = response.body_mut().read_to_vec().unwrap_or_default();
    (status, header, bytes)
}

pub(crate) fn export(data: &Path) -> String {
    let output = run(&["export", "--data-dir", data.to_str().unwrap()]);
    assert_success(&output);
    String::from_utf8(output.stdout).unwrap()
}

/// Creates package `name` and its version 1.0.0 (spec §5.1 steps 1–2): see
/// [`new_version`].
pub(crate) async fn new_package(ddp: &mut Ddp, name: &str) -> (Value, String, String) {
    ok(ddp, "createPackage", json!([{"name": name}])).await;
    new_version(ddp, name, "1.0.0").await
}

/// `publishPackageVersion` with the hashes of the uploaded source and README (spec §5.1
/// step 4), expecting success.
pub(crate) async fn publish_files(
    ddp: &mut Ddp,
    token: &Value,
    source: &[u8],
    readme: Option<&[u8]>,
) {
    let mut hashes = json!({"tarballHash": hash(source), "treeHash": BLANK_HASH});
    if let Some(readme) = readme {
        hashes["readmeHash"] = json!(hash(readme));
    }
    ok(ddp, "publishPackageVersion", json!([token, hashes])).await;
}

/// The version record `createPackageVersion` receives from a Meteor 3 tool (spec §5.4).
pub(crate) fn version_record(name: &str, version: &str) -> Value {
    json!({
        "packageName": name,
        "version": version,
        "description": "A widget",
        "longDescription": "Widgets for everyone.",
        "git": "https://example.com/widget.git",
        "compilerVersion": "meteor/34",
        "containsPlugins": false,
        "debugOnly": false,
        "prodOnly": false,
        "testOnly": false,
        "exports": [{"name": "Widget", "architectures": ["web.browser", "os"]}],
        "releaseName": "METEOR@3.0.4",
        "dependencies": {
            "meteor": {"constraint": null, "references": [{"arch": "os"}, {"arch": "web.browser"}]},
            "isobuild:isopack-2": {"constraint": "1.0.0", "references": [{"arch": "os"}]}
        }
    })
}

/// Uploaded files of one published version, to compare downloads with.
pub(crate) struct Published {
    pub(crate) source: Vec<u8>,
    readme: Vec<u8>,
}

/// Spec §5.1 steps 3–8: (`createPackage`,) `createPackageVersion`, PUT README, PUT source,
/// `publishPackageVersion`.
pub(crate) async fn publish_version(
    ddp: &mut Ddp,
    name: &str,
    version: &str,
    create: bool,
) -> Published {
    if create {
        assert_eq!(
            ok(ddp, "createPackage", json!([{"name": name}])).await,
            Value::Null
        );
    } else {
        ok(ddp, "amIAuthorizedPackage", json!([name])).await;
    }
    let created = ok(
        ddp,
        "createPackageVersion",
        json!([version_record(name, version)]),
    )
    .await;
    let keys: Vec<&String> = created.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["uploadToken", "uploadUrl", "readmeUrl"]);
    let readme = format!("# {name}\n\nVersion {version}.\n").into_bytes();
    let source = file(&format!("source of {name}@{version}"), 20_000);
    assert_eq!(put(created["readmeUrl"].as_str().unwrap(), &readme).0, 200);
    assert_eq!(put(created["uploadUrl"].as_str().unwrap(), &source).0, 200);
    publish_files(ddp, &created["uploadToken"], &source, Some(&readme)).await;
    Published { source, readme }
}

/// Spec §5.1 step 9 / §5.11: `createPackageBuild`, PUT, `publishPackageBuild`.
pub(crate) async fn publish_build(
    ddp: &mut Ddp,
    name: &str,
    version: &str,
    archs: &str,
) -> Vec<u8> {
    publish_build_of_size(ddp, name, version, archs, 30_000).await
}

/// [`publish_build`] with a tarball of `size` bytes.
async fn publish_build_of_size(
    ddp: &mut Ddp,
    name: &str,
    version: &str,
    archs: &str,
    size: usize,
) -> Vec<u8> {
    let created = ok(
        ddp,
        "createPackageBuild",
        json!([{"packageName": name, "version": version, "buildArchitectures": archs}]),
    )
    .await;
    let keys: Vec<&String> = created.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["uploadUrl", "uploadToken"]);
    let build = file(&format!("build of {name}@{version} for {archs}"), size);
    assert_eq!(put(created["uploadUrl"].as_str().unwrap(), &build).0, 200);
    ok(
        ddp,
        "publishPackageBuild",
        json!([created["uploadToken"], hash(&build), BLANK_HASH]),
    )
    .await;
    build
}

pub(crate) const PORTABLE: &str = "os+web.browser+web.browser.legacy+web.cordova";
const LINUX: &str = "os.linux.x86_64+web.browser+web.browser.legacy+web.cordova";
const MAC: &str = "os.osx.arm64+web.browser+web.browser.legacy+web.cordova";

/// Downloads `url` and checks it is served exactly (spec §8.1): 200, exact length, cache
/// headers, the uploaded bytes; and a resumed download gets 206 with the rest.
pub(crate) fn assert_downloads(url: &str, expected: &[u8]) {
    let (status, length, cache, bytes) = get(url, None);
    assert_eq!(status, 200, "{url}");
    assert_eq!(length, Some(expected.len().to_string()));
    assert!(cache.unwrap_or_default().contains("max-age"), "{url}");
    assert!(bytes == expected, "{url} served different bytes");
    let half = expected.len() / 2;
    let (status, length, _, tail) = get(url, Some(&format!("bytes={half}-")));
    assert_eq!(status, 206);
    assert_eq!(length, Some((expected.len() - half).to_string()));
    assert!(tail == expected[half..], "{url} served a different tail");
}

#[tokio::test]
async fn the_tools_publish_sequences_end_in_a_synced_catalog_with_identical_files() {
    publish_sync_and_download_on(Backend::Sqlite).await;
}

/// The same publishes, by a user made with `exosphere user --database-url`, to a server
/// whose catalog is in PostgreSQL: the files still go to the data directory's file store.
#[tokio::test]
async fn the_tools_publish_sequences_end_in_a_synced_catalog_with_identical_files_on_postgres() {
    publish_sync_and_download_on(Backend::postgres()).await;
}

/// [`publish_sync_and_download`] on a world and a server with the catalog on `backend`,
/// the files in the data directory's local file store; `exosphere audit` on the same
/// backend then lists alice's publishes.
async fn publish_sync_and_download_on(backend: Backend) {
    let world = world_on(backend);
    let flags = world.backend.flags();
    let server = serve_with_limit(&world.data, LARGE_LIMIT, &flags);
    publish_sync_and_download(&world, &server).await;
    assert!(world.data.join("files/packages/acme_widget").is_dir());
    let data = world.data.to_str().unwrap();
    let audit = [
        &["audit", "--data-dir", data, "--user", "alice"][..],
        &flags,
    ]
    .concat();
    let output = run(&audit);
    assert_success(&output);
    let entries = String::from_utf8(output.stdout).unwrap();
    assert!(entries.contains("acme:widget"), "{entries}");
}

#[tokio::test]
async fn package_files_can_live_in_an_s3_bucket() {
    let s3 = S3::start();
    let bucket = s3.create_bucket();
    let world = world();
    let server = serve_with_limit(&world.data, LARGE_LIMIT, &s3.flags(&bucket));
    publish_sync_and_download(&world, &server).await;
    assert!(
        !world.data.join("files").exists(),
        "files went to the local directory"
    );
    let (status, listing) = s3.get(&format!("{bucket}?list-type=2"));
    assert_eq!(status, 200, "{listing}");
    assert!(
        listing.contains("<Key>packages/acme_widget/1.0.0/"),
        "{listing}"
    );
    assert!(
        listing.contains("/acme_widget-1.0.0-source.tgz</Key>"),
        "{listing}"
    );
    assert!(
        !listing.contains("<Key>uploads/"),
        "staging uploads were left behind: {listing}"
    );
}

/// A local S3-compatible server (moto): the one `.ci/run` started
/// (`EXOSPHERE_TEST_S3_ENDPOINT`), or one started here when `moto_server` is installed.
pub(crate) struct S3 {
    pub(crate) endpoint: String,
    child: Option<std::process::Child>,
}

impl S3 {
    /// The running S3-compatible server.
    pub(crate) fn start() -> S3 {
        if let Ok(endpoint) = std::env::var("EXOSPHERE_TEST_S3_ENDPOINT") {
            return S3 {
                endpoint,
                child: None,
            };
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let child = std::process::Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "the S3 tests need a local S3-compatible server and could not start \
                     moto_server ({error}): run tests/setup-s3.sh (installs moto[server] from \
                     PyPI), or set EXOSPHERE_TEST_S3_ENDPOINT to a running one"
                )
            });
        let s3 = S3 {
            endpoint: format!("http://127.0.0.1:{port}"),
            child: Some(child),
        };
        let deadline = std::time::Instant::now() + crate::common::PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "moto_server did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        s3
    }

    /// The `serve` flags that keep package files in `bucket` of this server.
    pub(crate) fn flags<'a>(&'a self, bucket: &'a str) -> [&'a str; 8] {
        [
            "--s3-bucket",
            bucket,
            "--s3-endpoint",
            &self.endpoint,
            "--s3-access-key-id",
            "test",
            "--s3-secret-access-key",
            "test",
        ]
    }

    /// A fresh bucket (moto accepts unsigned requests).
    pub(crate) fn create_bucket(&self) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let bucket = format!("exosphere-test-{nanos}");
        let (status, body) = put(&format!("{}/{bucket}", self.endpoint), b"");
        assert_eq!(status, 200, "cannot create bucket {bucket}: {body}");
        bucket
    }

    fn get(&self, path: &str) -> (u16, String) {
        let (status, _, _, body) = get(&format!("{}/{path}", self.endpoint), None);
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Publishes with the tool's sequences as alice, then checks a fresh sync and every
/// download.
async fn publish_sync_and_download(world: &World, server: &Server) {
    let mut alice = login(server, &world.alice).await;
    let name = "acme:widget";

    // §5.1 with --create, a second version, both with a portable build.
    let v1 = publish_version(&mut alice, name, "1.0.0", true).await;
    let b1 = publish_build(&mut alice, name, "1.0.0", PORTABLE).await;
    let v2 = publish_version(&mut alice, name, "1.1.0", false).await;
    let b2 = publish_build(&mut alice, name, "1.1.0", PORTABLE).await;
    // A binary package: the version alone, then §5.11 publish-for-arch per platform.
    let v3 = publish_version(&mut alice, name, "1.2.0", false).await;
    let linux = publish_build(&mut alice, name, "1.2.0", LINUX).await;
    let mac = publish_build_of_size(&mut alice, name, "1.2.0", MAC, LARGE_BUILD).await;

    // §5.12: a track, a recommended release, then a patch release from it.
    let track = "acme:STABLE";
    ok(&mut alice, "createReleaseTrack", json!([{"name": track}])).await;
    let release = |version: &str, order: &str| {
        json!({"track": track, "version": version, "orderKey": order, "description": "Stable",
               "recommended": true, "tool": "acme:widget@1.1.0",
               "packages": {"acme:widget": "1.1.0"}})
    };
    ok(
        &mut alice,
        "createReleaseVersion",
        json!([release("1.0", "0001.0000$")]),
    )
    .await;
    ok(&mut alice, "amIAuthorizedRelease", json!([track])).await;
    ok(
        &mut alice,
        "createPatchReleaseVersion",
        json!([release("1.0.1", "0001.0000.0001$"), ["1.0"]]),
    )
    .await;

    // A fresh sync (§3) shows everything, and only what was published.
    let mut fresh = server.ddp().await;
    let synced = sync_loop(&mut fresh, json!({"format": "1.1"}), json!({}))
        .await
        .catalog;
    let package = synced["packages"]
        .values()
        .find(|p| p["name"] == name)
        .expect("the package is synced");
    let maintainers: Vec<&Value> = package["maintainers"].as_array().unwrap().iter().collect();
    assert_eq!(
        maintainers[0]["username"], "acme",
        "the prefix owner: {package}"
    );
    assert_eq!(maintainers[0]["isOrganization"], true);
    assert_eq!(maintainers[1]["username"], "alice");
    let versions: Vec<&Value> = synced["versions"]
        .values()
        .filter(|v| v["packageName"] == name)
        .collect();
    assert_eq!(versions.len(), 3);
    for (version, published) in [("1.0.0", &v1), ("1.1.0", &v2), ("1.2.0", &v3)] {
        let record = versions.iter().find(|v| v["version"] == version).unwrap();
        assert_eq!(record["description"], "A widget");
        assert_eq!(record["releaseName"], "METEOR@3.0.4");
        assert_eq!(record["publishedBy"]["username"], "alice");
        assert!(record["published"]["$date"].is_number());
        assert_eq!(record["source"]["tarballHash"], hash(&published.source));
        assert_eq!(record["source"]["treeHash"], BLANK_HASH);
        assert_eq!(record["readme"]["hash"], hash(&published.readme));
        assert_eq!(
            record["dependencies"]["isobuild:isopack-2"]["constraint"],
            "1.0.0"
        );
        let source_url = record["source"]["url"].as_str().unwrap();
        assert!(source_url.starts_with(&server.http), "{source_url}");
        assert_downloads(source_url, &published.source);
        assert_downloads(record["readme"]["url"].as_str().unwrap(), &published.readme);
        let builds: Vec<&Value> = synced["builds"]
            .values()
            .filter(|b| b["versionId"] == record["_id"])
            .collect();
        let expected: Vec<(&str, &Vec<u8>)> = match version {
            "1.0.0" => vec![(PORTABLE, &b1)],
            "1.1.0" => vec![(PORTABLE, &b2)],
            _ => vec![(LINUX, &linux), (MAC, &mac)],
        };
        assert_eq!(builds.len(), expected.len(), "builds of {version}");
        for (archs, bytes) in expected {
            let build = builds
                .iter()
                .find(|b| b["buildArchitectures"] == archs)
                .unwrap();
            assert_eq!(build["build"]["tarballHash"], hash(bytes));
            assert_eq!(build["builtBy"]["username"], "alice");
            assert_downloads(build["build"]["url"].as_str().unwrap(), bytes);
        }
    }
    let track_record = synced["releaseTracks"]
        .values()
        .find(|t| t["name"] == track)
        .expect("the track is synced");
    assert_eq!(track_record["maintainers"][0]["username"], "acme");
    let releases: Vec<&Value> = synced["releaseVersions"]
        .values()
        .filter(|r| r["track"] == track)
        .collect();
    let old = releases.iter().find(|r| r["version"] == "1.0").unwrap();
    let patch = releases.iter().find(|r| r["version"] == "1.0.1").unwrap();
    assert_eq!(old["recommended"], false);
    assert_eq!(old["patchReleaseVersion"], "1.0.1");
    assert_eq!(patch["recommended"], true);
    assert_eq!(patch["tool"], "acme:widget@1.1.0");
    assert_eq!(patch["publishedBy"]["username"], "alice");

    // §5.13 admin methods, seen by the same client's next sync.
    ok(&mut alice, "addMaintainer", json!([name, "mallory"])).await;
    ok(
        &mut alice,
        "_changePackageHomepage",
        json!([name, "https://widget.example"]),
    )
    .await;
    ok(
        &mut alice,
        "setBannersOnReleases",
        json!([track, [{"versions": ["1.0"], "banner": {"text": "Update!"}}]]),
    )
    .await;
    ok(&mut alice, "unrecommendVersion", json!([track, "1.0.1"])).await;
    let error = refused(&mut alice, "removeMaintainer", json!([name, "acme"])).await;
    assert!(
        error["reason"]
            .as_str()
            .unwrap()
            .contains("remove the maintainer in the package"),
        "{error}"
    );
    let again = sync_loop(&mut fresh, json!({"format": "1.1"}), json!({}))
        .await
        .catalog;
    let package = again["packages"]
        .values()
        .find(|p| p["name"] == name)
        .unwrap();
    assert_eq!(package["homepage"], "https://widget.example");
    assert_eq!(package["maintainers"][2]["username"], "mallory");
    let old = again["releaseVersions"]
        .values()
        .find(|r| r["track"] == track && r["version"] == "1.0")
        .unwrap();
    assert_eq!(old["banner"]["text"], "Update!");
    assert!(old["banner"]["lastUpdated"]["$date"].is_number());
}

#[tokio::test]
async fn refusals_answer_clearly_and_change_nothing() {
    let world = world();
    let server = serve(&world.data, &[]);
    let mut alice = login(&server, &world.alice).await;
    let name = "acme:gadget";
    publish_version(&mut alice, name, "1.0.0", true).await;
    publish_build(&mut alice, name, "1.0.0", PORTABLE).await;
    let before = export(&world.data);

    // §6.2: a bad token gets Meteor's 403; an anonymous session may not publish.
    let mut anonymous = server.ddp().await;
    let error = refused(&mut anonymous, "login", json!([{"resume": "not-a-token"}])).await;
    assert_eq!(error["error"], 403);
    assert_eq!(
        error["reason"],
        "You've been logged out by the server. Please log in again."
    );
    let error = refused(&mut anonymous, "createPackage", json!([{"name": "acme:x"}])).await;
    assert_eq!(error["error"], 401);

    // A non-maintainer: numeric 401 from the pre-check (§5.8), and refused for real.
    let mut mallory = login(&server, &world.mallory).await;
    let error = refused(&mut mallory, "amIAuthorizedPackage", json!([name])).await;
    assert_eq!(error["error"], json!(401));
    let error = refused(
        &mut mallory,
        "createPackageVersion",
        json!([version_record(name, "2.0.0")]),
    )
    .await;
    assert!(
        error["reason"]
            .as_str()
            .unwrap()
            .contains("You are not an authorized maintainer"),
        "{error}"
    );
    let error = refused(
        &mut mallory,
        "createPackageBuild",
        json!([{"packageName": name, "version": "1.0.0", "buildArchitectures": LINUX}]),
    )
    .await;
    assert!(
        error["reason"]
            .as_str()
            .unwrap()
            .contains("You are not an authorized maintainer"),
        "{error}"
    );
    for other in ["acme:stolen", "toplevel"] {
        let error = refused(&mut mallory, "createPackage", json!([{"name": other}])).await;
        assert_eq!(error["error"], 403, "{other}: {error}");
    }
    let error = refused(&mut mallory, "addMaintainer", json!([name, "mallory"])).await;
    assert_eq!(error["error"], 403);

    // Names and versions that break the rules (§5.0).
    for bad in [
        "acme:Widget",
        "acme:..x",
        "-acme:x",
        "acme:x.",
        "acme:",
        "",
        "acme:x_y",
    ] {
        let error = refused(&mut alice, "createPackage", json!([{"name": bad}])).await;
        assert_eq!(error["error"], 400, "{bad}: {error}");
    }
    let error = refused(
        &mut alice,
        "createPackageVersion",
        json!([version_record(name, "1.0")]),
    )
    .await;
    assert_eq!(error["error"], 400, "{error}");
    let mut long = version_record(name, "2.0.0");
    long["description"] = json!("x".repeat(101));
    let error = refused(&mut alice, "createPackageVersion", json!([long])).await;
    assert_eq!(error["error"], 400, "{error}");
    // A package with versions cannot be created again.
    let error = refused(&mut alice, "createPackage", json!([{"name": name}])).await;
    assert_eq!(error["error"], 409, "{error}");
    // Publishing a published version again points at publish-for-arch.
    let error = refused(
        &mut alice,
        "createPackageVersion",
        json!([version_record(name, "1.0.0")]),
    )
    .await;
    assert!(
        error["reason"]
            .as_str()
            .unwrap()
            .contains("publish-for-arch"),
        "{error}"
    );

    // A wrong hash; a reused upload URL; an oversized upload.
    let created = ok(
        &mut alice,
        "createPackageVersion",
        json!([version_record(name, "2.0.0")]),
    )
    .await;
    let source = file("the real source", 5000);
    let url = created["uploadUrl"].as_str().unwrap();
    assert_eq!(put(url, &source).0, 200);
    let (status, body) = put(url, &source);
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("already used"), "{body}");
    let (status, body) = put(
        created["readmeUrl"].as_str().unwrap(),
        &file("big", MAX_UPLOAD + 1),
    );
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("upload limit"), "{body}");
    let error = refused(
        &mut alice,
        "publishPackageVersion",
        json!([created["uploadToken"], {"tarballHash": hash(b"something else"), "treeHash": BLANK_HASH}]),
    )
    .await;
    assert_eq!(error["error"], 400);
    let reason = error["reason"].as_str().unwrap();
    assert!(reason.contains("does not match"), "{error}");
    // The error names the step that works: the URL itself is used up (409 above).
    assert!(reason.contains("run the publish again"), "{error}");
    assert_eq!(put(url, &source).0, 409);
    let error = refused(
        &mut alice,
        "publishPackageVersion",
        json!([created["uploadToken"], {"tarballHash": hash(&source), "treeHash": BLANK_HASH, "readmeHash": hash(b"")}]),
    )
    .await;
    assert!(
        error["reason"].as_str().unwrap().contains("not uploaded"),
        "{error}"
    );
    // Someone else cannot finish alice's publish with her upload token.
    let error = refused(
        &mut mallory,
        "publishPackageVersion",
        json!([created["uploadToken"], {"tarballHash": hash(&source), "treeHash": BLANK_HASH}]),
    )
    .await;
    assert_eq!(error["error"], 403, "{error}");

    // Path traversal: neither downloads nor uploads reach outside published files.
    for path in [
        "/packages/../catalog.sqlite3",
        "/packages/%2e%2e/%2e%2e/data/catalog.sqlite3",
        "/packages/acme_gadget/..%2F..%2F..%2Fcatalog.sqlite3",
        "/packages/../uploads/x",
        "/packages/.hidden",
    ] {
        let (status, body) = raw_request(&server, "GET", path);
        assert!(status == 404 || status == 400, "{path}: {status}");
        assert!(
            !body.contains("SQLite format"),
            "{path} leaked the database"
        );
    }
    let (status, _) = raw_request(&server, "PUT", "/uploads/..%2F..%2Fcatalog.sqlite3");
    assert_eq!(status, 404);

    assert!(
        export(&world.data) == before,
        "a refusal changed the catalog"
    );

    // The refused 2.0.0 can still be published: the tool re-runs the whole sequence.
    publish_version(&mut alice, name, "2.0.0", false).await;
    assert!(export(&world.data).contains("\"version\":\"2.0.0\""));

    // An upload URL outlives neither its lifetime nor a later server's shorter one: a
    // server with a 1-second lifetime on the same data directory (after the first one
    // stopped: one `serve` per data directory).
    drop(server);
    let short = serve(&world.data, &["--upload-ttl", "1s"]);
    let mut quick = login(&short, &world.alice).await;
    let created = ok(
        &mut quick,
        "createPackageVersion",
        json!([version_record(name, "3.0.0")]),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, body) = put(created["uploadUrl"].as_str().unwrap(), &source);
    assert_eq!(status, 410, "{body}");
    let error = refused(
        &mut quick,
        "publishPackageVersion",
        json!([created["uploadToken"], {"tarballHash": hash(&source), "treeHash": BLANK_HASH}]),
    )
    .await;
    assert_eq!(error["error"], 404, "{error}");
}

/// Sends one request line by hand, so no client library normalises the path.
fn raw_request(server: &Server, method: &str, path: &str) -> (u16, String) {
    let address = server.http.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(crate::common::PATIENCE))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[test]
fn token_create_prints_the_token_then_the_session_file_entries() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    assert_success(&run(&["user", "add", "alice", "--data-dir", data_arg]));
    let output = run(&[
        "token",
        "create",
        "alice",
        "--data-dir",
        data_arg,
        "--public-url",
        "https://pkgs.example.com:8443/",
    ]);
    assert_success(&output);
    let text = String::from_utf8(output.stdout).unwrap();
    let mut lines = text.lines();
    let token = lines.next().unwrap();
    let session: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(
        session["sessions"]["pkgs.example.com:8443"],
        json!({"type": "package-server", "token": token})
    );
    assert_eq!(session["sessions"]["www.meteor.com"]["username"], "alice");
    assert!(session["sessions"]["www.meteor.com"]["userId"].is_string());

    let list = run(&["token", "list", "--data-dir", data_arg]);
    assert_success(&list);
    let listing = String::from_utf8(list.stdout).unwrap();
    assert!(
        !listing.contains(token),
        "token list must not show the secret"
    );
    let id = listing.split('\t').next().unwrap();
    assert_success(&run(&["token", "revoke", id, "--data-dir", data_arg]));
    let list = run(&["token", "list", "--data-dir", data_arg]);
    assert!(String::from_utf8(list.stdout).unwrap().is_empty());

    let taken = run(&["org", "add", "alice", "--data-dir", data_arg]);
    assert!(!taken.status.success());
    let unknown = run(&["token", "create", "bob", "--data-dir", data_arg]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no user named bob"));
}

/// What a reverse proxy does: the public URL's base replaced by the server's own.
fn via_proxy(url: &str, public: &str, server: &Server) -> String {
    let path = url
        .strip_prefix(public)
        .unwrap_or_else(|| panic!("{url} does not start with the public URL {public}"));
    format!("{}{path}", server.http)
}

#[tokio::test]
async fn publish_update_readmes_admin_commands_and_the_public_url() {
    let world = world();
    let public = "https://packages.example.test:8443";
    let server = serve(
        &world.data,
        &["--public-url", "https://packages.example.test:8443/"],
    );
    let mut alice = login(&server, &world.alice).await;
    let name = "acme:tool";

    // §5.1 by hand through the "proxy": every URL handed out starts with --public-url.
    // `publish --create` run again after a failure re-creates the still empty package.
    ok(&mut alice, "createPackage", json!([{"name": name}])).await;
    ok(&mut alice, "createPackage", json!([{"name": name}])).await;
    let mut mallory = login(&server, &world.mallory).await;
    let error = refused(&mut mallory, "createPackage", json!([{"name": name}])).await;
    assert_eq!(error["error"], 409, "{error}");
    let created = ok(
        &mut alice,
        "createPackageVersion",
        json!([version_record(name, "1.0.0")]),
    )
    .await;
    let source = file("tool source", 4096);
    let readme = b"# tool\n".to_vec();
    let upload = via_proxy(created["uploadUrl"].as_str().unwrap(), public, &server);
    assert_eq!(put(&upload, &source).0, 200);
    let readme_upload = via_proxy(created["readmeUrl"].as_str().unwrap(), public, &server);
    assert_eq!(put(&readme_upload, &readme).0, 200);
    publish_files(&mut alice, &created["uploadToken"], &source, Some(&readme)).await;

    // §5.9 and §5.10: `meteor publish --update`.
    let id = json!({"packageName": name, "version": "1.0.0"});
    ok(
        &mut alice,
        "changeVersionMetadata",
        json!([id, {"git": "", "description": "Updated", "longDescription": "Much longer"}]),
    )
    .await;
    let fresh_readme = b"# tool\n\nNow with docs.\n".to_vec();
    let created = ok(&mut alice, "createReadme", json!([id])).await;
    let keys: Vec<&String> = created.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["url", "uploadToken"]);
    let url = via_proxy(created["url"].as_str().unwrap(), public, &server);
    assert_eq!(put(&url, &fresh_readme).0, 200);
    ok(
        &mut alice,
        "publishReadme",
        json!([created["uploadToken"], {"hash": hash(&fresh_readme)}]),
    )
    .await;
    // Meteor 3 tools call createReadme and then crash before the upload: harmless.
    ok(&mut alice, "createReadme", json!([id])).await;

    // §5.13 on versions and tracks.
    ok(
        &mut alice,
        "_changeVersionMigrationStatus",
        json!([name, "1.0.0", true]),
    )
    .await;
    ok(
        &mut alice,
        "createReleaseTrack",
        json!([{"name": "acme:TOOLS"}]),
    )
    .await;
    ok(
        &mut alice,
        "addReleaseMaintainer",
        json!(["acme:TOOLS", "mallory"]),
    )
    .await;
    ok(
        &mut alice,
        "removeReleaseMaintainer",
        json!(["acme:TOOLS", "mallory"]),
    )
    .await;
    ok(
        &mut alice,
        "removeReleaseMaintainer",
        json!(["acme:TOOLS", "alice"]),
    )
    .await;
    ok(
        &mut alice,
        "createReleaseVersion",
        json!([{"track": "acme:TOOLS", "version": "1", "description": "Tools", "recommended": false,
                "tool": "acme:tool@1.0.0", "packages": {"acme:tool": "1.0.0"}}]),
    )
    .await;
    let error = refused(&mut alice, "recommendVersion", json!(["acme:TOOLS", "1"])).await;
    assert!(
        error["reason"].as_str().unwrap().contains("orderKey"),
        "{error}"
    );
    ok(
        &mut alice,
        "createReleaseVersion",
        json!([{"track": "acme:TOOLS", "version": "1.1", "orderKey": "0001.0001$", "description": "Tools",
                "recommended": false, "tool": "acme:tool@1.0.0", "packages": {"acme:tool": "1.0.0"}}]),
    )
    .await;
    ok(&mut alice, "recommendVersion", json!(["acme:TOOLS", "1.1"])).await;
    let error = refused(
        &mut alice,
        "createReleaseVersion",
        json!([{"track": "acme:TOOLS", "version": "2", "description": "Tools", "recommended": false,
                "tool": "acme:tool@9.9.9", "packages": {"acme:tool": "1.0.0", "acme:none": "1.0.0"}}]),
    )
    .await;
    assert!(
        error["reason"]
            .as_str()
            .unwrap()
            .contains("acme:tool@9.9.9, acme:none@1.0.0"),
        "{error}"
    );

    let mut fresh = server.ddp().await;
    let synced = sync_loop(&mut fresh, json!({"format": "1.1"}), json!({}))
        .await
        .catalog;
    let version = synced["versions"]
        .values()
        .find(|v| v["packageName"] == name)
        .unwrap();
    assert_eq!(version["description"], "Updated");
    assert_eq!(version["longDescription"], "Much longer");
    assert_eq!(version["git"], "");
    assert_eq!(version["unmigrated"], true);
    assert_eq!(version["readme"]["hash"], hash(&fresh_readme));
    let readme_url = version["readme"]["url"].as_str().unwrap();
    assert_downloads(&via_proxy(readme_url, public, &server), &fresh_readme);
    let source_url = version["source"]["url"].as_str().unwrap();
    assert_downloads(&via_proxy(source_url, public, &server), &source);
    let track = synced["releaseTracks"]
        .values()
        .find(|t| t["name"] == "acme:TOOLS")
        .unwrap();
    assert_eq!(
        track["maintainers"],
        json!([{"username": "acme", "id": track["maintainers"][0]["id"], "isOrganization": true}])
    );
    let release = |version: &str| {
        synced["releaseVersions"]
            .values()
            .find(|r| r["track"] == "acme:TOOLS" && r["version"] == version)
            .unwrap()
    };
    assert_eq!(release("1")["recommended"], false);
    assert_eq!(release("1.1")["recommended"], true);
    assert!(
        !synced["releaseVersions"]
            .values()
            .any(|r| r["track"] == "acme:TOOLS" && r["version"] == "2"),
        "a refused release was stored"
    );
}

/// The files waiting in the staging area of the data directory's blob store.
fn staged_files(data: &Path) -> Vec<String> {
    staged_in(&data.join("files"))
}

/// The files waiting in the staging area of the blob store in `files` (`--files-dir`).
pub(crate) fn staged_in(files: &Path) -> Vec<String> {
    match std::fs::read_dir(files.join("uploads")) {
        Ok(entries) => entries
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Spec §5.1 retried after a crash, and §5.1/§5.10 abandoned after the uploads: the
/// uploaded files of replaced and abandoned publishes are deleted, not kept forever.
#[tokio::test]
async fn retried_and_abandoned_publishes_leave_no_staging_files() {
    let world = world();
    let mut server = serve(&world.data, &["--upload-ttl", "3s"]);
    let mut alice = login(&server, &world.alice).await;
    let name = "acme:retried";
    ok(&mut alice, "createPackage", json!([{"name": name}])).await;
    for attempt in 0..2 {
        let created = ok(
            &mut alice,
            "createPackageVersion",
            json!([version_record(name, "1.0.0")]),
        )
        .await;
        let source = file(&format!("attempt {attempt}"), 5_000);
        assert_eq!(put(created["readmeUrl"].as_str().unwrap(), b"# r\n").0, 200);
        assert_eq!(put(created["uploadUrl"].as_str().unwrap(), &source).0, 200);
    }
    assert_eq!(staged_files(&world.data).len(), 4);
    publish_version(&mut alice, name, "1.0.0", false).await;
    assert_eq!(staged_files(&world.data), Vec::<String>::new());

    // Uploaded, never published: a version (with a 0-byte README, as the tool sends for
    // packages without docs) and a README update.
    let created = ok(
        &mut alice,
        "createPackageVersion",
        json!([version_record(name, "1.0.1")]),
    )
    .await;
    assert_eq!(put(created["readmeUrl"].as_str().unwrap(), b"").0, 200);
    assert_eq!(put(created["uploadUrl"].as_str().unwrap(), b"src").0, 200);
    let id = json!({"packageName": name, "version": "1.0.0"});
    let readme = ok(&mut alice, "createReadme", json!([id])).await;
    assert_eq!(put(readme["url"].as_str().unwrap(), b"# new\n").0, 200);
    assert_eq!(staged_files(&world.data).len(), 3);

    // The sweep runs at startup: after the tickets expired, a restart deletes the files.
    drop(alice);
    server.signal_terminate();
    server.wait_exit(Duration::from_secs(10));
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    let _server = serve(&world.data, &[]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !staged_files(&world.data).is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(staged_files(&world.data), Vec::<String>::new());
}

/// Spec §6.2: a revoked token ends the sessions already logged in with it: their next call
/// gets the 403 of a bad token, changes nothing, and the session is logged out.
#[tokio::test]
async fn revoking_a_token_logs_its_open_sessions_out() {
    let world = world();
    let server = serve(&world.data, &[]);
    let mut alice = login(&server, &world.alice).await;
    let mut mallory = login(&server, &world.mallory).await;
    ok(
        &mut alice,
        "createPackage",
        json!([{"name": "acme:before"}]),
    )
    .await;

    // A publish started before the revocation: its upload URL must not outlive the token.
    let started = ok(
        &mut alice,
        "createPackageVersion",
        json!([version_record("acme:before", "1.0.0")]),
    )
    .await;
    let upload_url = started["uploadUrl"].as_str().unwrap().to_owned();

    let data_arg = world.data.to_str().unwrap();
    let list = run(&["token", "list", "--data-dir", data_arg]);
    assert_success(&list);
    let listing = String::from_utf8(list.stdout).unwrap();
    let id = listing
        .lines()
        .find(|line| line.split('\t').nth(1) == Some("alice"))
        .and_then(|line| line.split('\t').next())
        .unwrap();
    let revoked = run(&["token", "revoke", id, "--data-dir", data_arg]);
    assert_success(&revoked);
    let said = String::from_utf8(revoked.stdout).unwrap();
    assert!(said.contains("withdrew 1 unfinished publish"), "{said}");
    let (status, body) = put(&upload_url, &file("after the revocation", 100));
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("unknown or expired"), "{body}");

    let error = refused(&mut alice, "createPackage", json!([{"name": "acme:after"}])).await;
    assert_eq!(error["error"], 403, "{error}");
    assert_eq!(
        error["reason"],
        "You've been logged out by the server. Please log in again."
    );
    let error = refused(&mut alice, "amIAuthorizedPackage", json!(["acme:before"])).await;
    assert_eq!(error["error"], 401, "logged out after the refusal: {error}");
    let after = export(&world.data);
    assert!(after.contains("acme:before") && !after.contains("acme:after"));
    // Other tokens keep working.
    ok(
        &mut mallory,
        "createPackage",
        json!([{"name": "mallory:still"}]),
    )
    .await;
}

/// An upload URL's secret is its authorization: the request log shows `/uploads/…`.
#[tokio::test]
async fn upload_secrets_stay_out_of_the_logs() {
    use std::io::BufRead as _;
    let world = world();
    let mut child = crate::common::exosphere()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&world.data)
        .env("RUST_LOG", "info,tower_http=debug")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let http = line.trim().strip_prefix("Exosphere listening on ").unwrap();
    let secret = "A".repeat(43);
    assert_eq!(put(&format!("{http}/uploads/{secret}"), b"x").0, 404);
    child.kill().unwrap();
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    child.wait().unwrap();
    assert!(logs.contains("/uploads/…"), "{logs}");
    assert!(!logs.contains(&secret), "{logs}");
}

/// `--public-url` defaults to the listen address, which is no URL when the server listens
/// on every interface: refused before anything is opened or bound.
#[test]
fn listening_on_every_interface_needs_a_public_url() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let output = run(&["serve", "--listen", listen, "--data-dir", data]);
        assert!(!output.status.success(), "{listen} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("set --public-url"), "{stderr}");
    }
}

/// The reason text of a refused call.
fn reason(error: &Value) -> &str {
    error["reason"].as_str().unwrap_or_default()
}

/// Spec §5.0, §5.3, §5.4, §5.6, §5.12: names, versions and `buildArchitectures` are
/// checked when the publish starts, with the 400 of every validation error, so nothing
/// fails later at publish time; the longest accepted name and version publish in full.
#[tokio::test]
async fn names_versions_and_architectures_are_checked_before_any_upload() {
    let world = world();
    let server = serve(&world.data, &[]);
    let mut alice = login(&server, &world.alice).await;
    let before = export(&world.data);

    let too_long = format!("acme:{}", "w".repeat(96));
    let error = refused(&mut alice, "createPackage", json!([{"name": too_long}])).await;
    assert_eq!(error["error"], 400, "{error}");
    assert!(reason(&error).contains("at most 100"), "{error}");
    let error = refused(
        &mut alice,
        "createReleaseTrack",
        json!([{"name": format!("acme:{}", "T".repeat(96))}]),
    )
    .await;
    assert_eq!(error["error"], 400, "{error}");
    assert!(reason(&error).contains("at most 100"), "{error}");
    assert!(
        export(&world.data) == before,
        "a refusal changed the catalog"
    );

    // The longest name and version accepted publish a version and a build.
    let name = format!("acme:{}", "w".repeat(95));
    let version = format!("1.0.0-{}_1", "r".repeat(56));
    assert_eq!(version.len(), 64);
    publish_version(&mut alice, &name, &version, true).await;
    publish_build(&mut alice, &name, &version, LINUX).await;
    let error = refused(
        &mut alice,
        "createPackageVersion",
        json!([version_record(
            &name,
            &format!("1.0.0-{}_1", "r".repeat(57))
        )]),
    )
    .await;
    assert_eq!(error["error"], 400, "{error}");
    assert!(reason(&error).contains("at most 64"), "{error}");

    // buildArchitectures as the tool computes it: known names, sorted, no repeats.
    for bad in [
        "web.browser+os",
        "os+os",
        "os+os.linux.x86_64+web.browser",
        "os.beos.x86_64+web.browser",
        "os+web.browser+",
        "",
        &"os+web.browser".repeat(30),
    ] {
        let error = refused(
            &mut alice,
            "createPackageBuild",
            json!([{"packageName": name, "version": version, "buildArchitectures": bad}]),
        )
        .await;
        assert_eq!(error["error"], 400, "{bad}: {error}");
        assert!(reason(&error).contains("buildArchitectures"), "{error}");
    }
    publish_build(&mut alice, &name, &version, MAC).await;
}

/// Spec §5.4–§5.6: a user may have `--max-open-publishes` unfinished publishes; one more
/// is refused with a reason saying what to do, a retry of an unfinished one replaces it,
/// and finishing one makes room.
#[tokio::test]
async fn unfinished_publishes_per_user_are_capped() {
    let world = world();
    let server = serve(&world.data, &["--max-open-publishes", "2"]);
    let mut alice = login(&server, &world.alice).await;
    let name = "acme:busy";
    ok(&mut alice, "createPackage", json!([{"name": name}])).await;
    for version in ["1.0.0", "1.0.1"] {
        ok(
            &mut alice,
            "createPackageVersion",
            json!([version_record(name, version)]),
        )
        .await;
    }
    let error = refused(
        &mut alice,
        "createPackageVersion",
        json!([version_record(name, "1.0.2")]),
    )
    .await;
    assert_eq!(error["error"], 429, "{error}");
    assert!(reason(&error).contains("unfinished publishes"), "{error}");
    assert!(reason(&error).contains("expire"), "{error}");
    // Running an unfinished publish again replaces it instead of counting twice.
    ok(
        &mut alice,
        "createPackageVersion",
        json!([version_record(name, "1.0.1")]),
    )
    .await;
    // Another user has an allowance of their own.
    let mut mallory = login(&server, &world.mallory).await;
    ok(
        &mut mallory,
        "createPackage",
        json!([{"name": "mallory:own"}]),
    )
    .await;
    ok(
        &mut mallory,
        "createPackageVersion",
        json!([version_record("mallory:own", "1.0.0")]),
    )
    .await;
    // Finishing one makes room for the next.
    publish_version(&mut alice, name, "1.0.0", false).await;
    ok(
        &mut alice,
        "createPackageVersion",
        json!([version_record(name, "1.0.2")]),
    )
    .await;
}

/// Host and path of an upload URL.
pub(crate) fn split_url(url: &str) -> (&str, &str) {
    let rest = url.trim_start_matches("http://");
    let slash = rest.find('/').unwrap();
    (&rest[..slash], &rest[slash..])
}

/// Starts the tool's upload of `length` bytes by hand and waits for the server's
/// `100 Continue`, which it sends once the handler reads the body: the upload then holds
/// its upload slot and its ticket. The caller sends (some of) the body.
pub(crate) fn start_upload(url: &str, length: usize) -> std::net::TcpStream {
    let (host, path) = split_url(url);
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    stream
        .set_read_timeout(Some(crate::common::PATIENCE))
        .unwrap();
    write!(
        stream,
        "PUT {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {length}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !seen.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("the interim response");
        seen.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&seen);
    assert!(head.starts_with("HTTP/1.1 100"), "{head}");
    stream
}

/// The whole response on a `Connection: close` stream, lower-cased headers and all.
pub(crate) fn read_response(mut stream: std::net::TcpStream) -> (u16, String) {
    let mut response = Vec::new();
    // The server may close before reading everything sent; what it answered is complete.
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, text.to_ascii_lowercase())
}

/// A PUT written by hand with these extra header lines (each ending in `\r\n`) and raw
/// body bytes; the server may answer before reading all of them.
fn raw_put(url: &str, headers: &str, body: &[u8]) -> (u16, String) {
    let (host, path) = split_url(url);
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    stream
        .set_read_timeout(Some(crate::common::PATIENCE))
        .unwrap();
    let head = format!("PUT {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{headers}\r\n");
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body));
    read_response(stream)
}

/// Closes a connection with a TCP reset (`SO_LINGER` 0) instead of an orderly close, as
/// a client that crashes or loses its network does: the server's connection fails
/// outright, which drops the request handler, rather than only seeing a short body.
fn reset(stream: std::net::TcpStream) {
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(stream);
}

/// PUTs `body` until the URL is free again (the server releases a cut-off upload's slot
/// and ticket as soon as it notices the client left); returns the final status.
pub(crate) async fn put_when_free(url: &str, body: &[u8]) -> (u16, String) {
    let deadline = std::time::Instant::now() + crate::common::PATIENCE;
    loop {
        let (status, text) = put(url, body);
        if (status != 409 && status != 503) || std::time::Instant::now() > deadline {
            return (status, text);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Spec §5.2 under load: `--max-concurrent-uploads` bodies at once, the next one gets
/// 503 with `Retry-After`; a client whose connection breaks mid-body frees its slot and
/// its URL at once and leaves no partial file, so the tool's retry succeeds.
#[tokio::test]
async fn upload_slots_are_capped_and_cut_off_uploads_leave_their_urls_usable() {
    let world = world();
    let server = serve(&world.data, &["--max-concurrent-uploads", "1"]);
    let mut alice = login(&server, &world.alice).await;
    let name = "acme:sturdy";
    let (token, source_url, readme_url) = new_package(&mut alice, name).await;
    let (source_url, readme_url) = (source_url.as_str(), readme_url.as_str());
    let source = file("sturdy source", 20_000);
    let readme = b"# sturdy\n".to_vec();

    let mut cut_off = start_upload(source_url, source.len());
    cut_off.write_all(&source[..5_000]).unwrap();
    cut_off.flush().unwrap();
    let (status, text) = raw_put(readme_url, "Content-Length: 9\r\n", &readme);
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("\r\nretry-after: 5\r\n"), "{text}");
    assert!(text.contains("stays valid"), "{text}");

    reset(cut_off);
    let (status, text) = put_when_free(source_url, &source).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(put(readme_url, &readme).0, 200);
    assert_eq!(
        staged_files(&world.data).len(),
        2,
        "a partial file was left: {:?}",
        staged_files(&world.data)
    );
    publish_files(&mut alice, &token, &source, Some(&readme)).await;
}

/// Spec §5.2: an upload that sends nothing for `--upload-idle-timeout` is abandoned with
/// a 408 saying so; its URL stays usable and no partial file is kept.
#[tokio::test]
async fn stalled_uploads_are_abandoned_and_their_urls_stay_usable() {
    let world = world();
    let server = serve(&world.data, &["--upload-idle-timeout", "1s"]);
    let mut alice = login(&server, &world.alice).await;
    let name = "acme:stalled";
    let (token, url, _) = new_package(&mut alice, name).await;
    let url = url.as_str();
    let source = file("stalled source", 10_000);
    let mut stalled = start_upload(url, source.len());
    stalled.write_all(&source[..100]).unwrap();
    let (status, text) = read_response(stalled);
    assert_eq!(status, 408, "{text}");
    assert!(text.contains("within 1 seconds"), "{text}");
    assert_eq!(staged_files(&world.data), Vec::<String>::new());
    assert_eq!(put(url, &source).0, 200);
    publish_files(&mut alice, &token, &source, None).await;
}

/// A fresh version of `name` by this session (the package exists): its upload token,
/// source URL and README URL.
async fn new_version(ddp: &mut Ddp, name: &str, version: &str) -> (Value, String, String) {
    let created = ok(
        ddp,
        "createPackageVersion",
        json!([version_record(name, version)]),
    )
    .await;
    (
        created["uploadToken"].clone(),
        created["uploadUrl"].as_str().unwrap().to_owned(),
        created["readmeUrl"].as_str().unwrap().to_owned(),
    )
}

/// Starts an upload to `url` that sends one byte every 100 ms until the server answers;
/// the answer's status and text, once the connection is reset and the dripping stopped.
fn drip_upload(url: &str) -> (u16, String) {
    let trickle = start_upload(url, MAX_UPLOAD);
    let mut writer = trickle.try_clone().unwrap();
    let dripping = std::thread::spawn(move || {
        while writer.write_all(b"x").and_then(|()| writer.flush()).is_ok() {
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let answer = read_response(trickle.try_clone().unwrap());
    reset(trickle);
    dripping.join().unwrap();
    answer
}

/// A slow-drip client that never goes idle (issue 17, finding 7: a trickling body kept
/// its upload slot until its URL expired, two hours): an upload averaging less than
/// `--upload-min-rate` over a window of `--upload-idle-timeout` is abandoned at the end
/// of that window with a 408 saying so; its URL stays usable and its slot is free.
#[tokio::test]
async fn uploads_slower_than_the_minimum_rate_give_their_slot_back() {
    let world = world();
    let server = serve(
        &world.data,
        &[
            "--upload-idle-timeout",
            "2s",
            "--upload-min-rate",
            "1000",
            "--max-concurrent-uploads",
            "1",
        ],
    );
    let mut alice = login(&server, &world.alice).await;
    let name = "acme:slow-drip";
    ok(&mut alice, "createPackage", json!([{"name": name}])).await;
    let (token, url, _) = new_version(&mut alice, name, "1.0.0").await;
    // Ten bytes a second, never idle, far below 1000 bytes a second.
    let (status, text) = drip_upload(&url);
    assert_eq!(status, 408, "{text}");
    assert!(
        text.contains("fewer than 2000 bytes within 2 seconds"),
        "{text}"
    );
    assert_eq!(staged_files(&world.data), Vec::<String>::new());
    // The URL stays usable and the only slot is free: an honest upload goes through.
    let source = file("slow-drip source", 10_000);
    let (status, text) = put(&url, &source);
    assert_eq!(status, 200, "{text}");
    publish_files(&mut alice, &token, &source, None).await;
}

/// Spec §5.2 against a slow-drip client: an upload that sends a byte more often than
/// `--upload-idle-timeout` still ends when its URL expires (`--upload-ttl`), with a 408
/// saying so, no partial file, and its slot free for others.
#[tokio::test]
async fn trickling_uploads_are_cut_off_when_their_url_expires() {
    let world = world();
    let server = serve(
        &world.data,
        &[
            "--upload-ttl",
            "8s",
            "--upload-idle-timeout",
            "3s",
            "--upload-min-rate",
            "0",
            "--max-concurrent-uploads",
            "1",
        ],
    );
    let mut alice = login(&server, &world.alice).await;
    let name = "acme:trickle";
    ok(&mut alice, "createPackage", json!([{"name": name}])).await;
    let (_, url, _) = new_version(&mut alice, name, "1.0.0").await;
    // A byte every 100 ms, far under the 3 s idle limit (a loaded machine may pause the
    // thread), until the server hangs up.
    let (status, text) = drip_upload(&url);
    assert_eq!(status, 408, "{text}");
    assert!(text.contains("before its upload url expired"), "{text}");
    assert_eq!(staged_files(&world.data), Vec::<String>::new());
    assert_eq!(put(&url, b"late").0, 410, "the URL expired");
    // The only slot is free again: a new publish uploads at once.
    let (token, url, _) = new_version(&mut alice, name, "1.0.1").await;
    let source = file("trickle source", 1000);
    let (status, text) = put(&url, &source);
    assert_eq!(status, 200, "{text}");
    publish_files(&mut alice, &token, &source, None).await;
}

/// Spec §5.2 with several publishers: one user runs at most `--max-uploads-per-user`
/// uploads at once (one more gets 429 with `Retry-After` and its URL stays usable), so
/// another user's upload still finds a server-wide slot.
#[tokio::test]
async fn one_user_cannot_take_every_upload_slot() {
    let world = world();
    let server = serve(
        &world.data,
        &[
            "--max-concurrent-uploads",
            "3",
            "--max-uploads-per-user",
            "2",
        ],
    );
    let mut alice = login(&server, &world.alice).await;
    let name = "acme:greedy";
    ok(&mut alice, "createPackage", json!([{"name": name}])).await;
    let (first_token, first_source, first_readme) = new_version(&mut alice, name, "1.0.0").await;
    let (_, second_source, second_readme) = new_version(&mut alice, name, "1.0.1").await;
    let source = file("greedy source", 20_000);
    let readme = b"# greedy\n".to_vec();
    let mut holding = Vec::new();
    for url in [&first_source, &second_source] {
        let mut upload = start_upload(url, source.len());
        upload.write_all(&source[..1_000]).unwrap();
        upload.flush().unwrap();
        holding.push(upload);
    }
    for url in [&first_readme, &second_readme] {
        let (status, text) = raw_put(url, "Content-Length: 9\r\n", &readme);
        assert_eq!(status, 429, "{text}");
        assert!(text.contains("\r\nretry-after: 5\r\n"), "{text}");
        assert!(text.contains("already sending 2 uploads"), "{text}");
        assert!(text.contains("stays valid"), "{text}");
    }
    let mut mallory = login(&server, &world.mallory).await;
    ok(
        &mut mallory,
        "createPackage",
        json!([{"name": "mallory:own"}]),
    )
    .await;
    let (token, url, _) = new_version(&mut mallory, "mallory:own", "1.0.0").await;
    let own = file("mallory source", 5_000);
    let (status, text) = put(&url, &own);
    assert_eq!(status, 200, "another user still gets a slot: {text}");
    publish_files(&mut mallory, &token, &own, None).await;
    // When one of alice's uploads ends, her next one is taken.
    let mut first = holding.remove(0);
    first.write_all(&source[1_000..]).unwrap();
    let (status, text) = read_response(first);
    assert_eq!(status, 200, "{text}");
    let (status, text) = put(&first_readme, &readme);
    assert_eq!(status, 200, "{text}");
    publish_files(&mut alice, &first_token, &source, Some(&readme)).await;
}

/// A PUT with a secret no ticket has is answered from a read-only lookup: it takes no
/// upload slot, so a flood of them while every slot is busy still gets 404 (not 503),
/// and a real upload gets the slot as soon as it frees.
#[tokio::test]
async fn unknown_upload_urls_take_no_slot() {
    let world = world();
    let server = serve(&world.data, &["--max-concurrent-uploads", "1"]);
    let mut alice = login(&server, &world.alice).await;
    let name = "acme:crowded";
    let (token, source_url, readme_url) = new_package(&mut alice, name).await;
    let source = file("crowded source", 20_000);
    let readme = b"# crowd\n".to_vec();
    let mut holding = start_upload(&source_url, source.len());
    holding.write_all(&source[..1_000]).unwrap();
    holding.flush().unwrap();
    let base = source_url.rsplit_once('/').unwrap().0;
    for n in 0..20 {
        let bogus = format!("{base}/{n:0>43}");
        let (status, text) = put(&bogus, b"junk");
        assert_eq!(status, 404, "{text}");
        assert!(text.contains("unknown or expired"), "{text}");
    }
    let (status, text) = put(&source_url, &source);
    assert_eq!(
        status, 409,
        "the URL in use is refused read-only too: {text}"
    );
    let (status, text) = raw_put(&readme_url, "Content-Length: 8\r\n", &readme);
    assert_eq!(status, 503, "the only slot is still busy: {text}");
    holding.write_all(&source[1_000..]).unwrap();
    let (status, text) = read_response(holding);
    assert_eq!(status, 200, "{text}");
    let (status, text) = put(&readme_url, &readme);
    assert_eq!(status, 200, "{text}");
    publish_files(&mut alice, &token, &source, Some(&readme)).await;
}

/// A server killed (`kill -9`) in the middle of an upload leaves its ticket claimed in
/// the catalog and the local store's temporary file (`<staging key>#<n>`) on disk; the
/// next `serve` on the same data directory reopens the ticket, so the tool's retry of the
/// same URL works instead of getting 409 until `--upload-ttl`, and deletes the file.
#[tokio::test]
async fn an_upload_cut_off_by_a_killed_server_can_be_retried_after_a_restart() {
    let world = world();
    let server = serve(&world.data, &[]);
    let address = server.http.trim_start_matches("http://").to_owned();
    let mut alice = login(&server, &world.alice).await;
    let name = "acme:phoenix";
    let (token, url, _) = new_package(&mut alice, name).await;
    let source = file("phoenix source", 20_000);
    let mut cut_off = start_upload(&url, source.len());
    cut_off.write_all(&source[..5_000]).unwrap();
    cut_off.flush().unwrap();
    drop(alice);
    drop(server);
    drop(cut_off);
    let temporary = |name: &String| name.contains('#');
    assert!(
        staged_files(&world.data).iter().any(temporary),
        "the killed write left no temporary file: {:?}",
        staged_files(&world.data)
    );
    let server = serve_on(&address, &world.data, &[]);
    assert!(
        !staged_files(&world.data).iter().any(temporary),
        "a temporary file survived the restart: {:?}",
        staged_files(&world.data)
    );
    let (status, text) = put(&url, &source);
    assert_eq!(status, 200, "{text}");
    let mut alice = login(&server, &world.alice).await;
    publish_files(&mut alice, &token, &source, None).await;
    let published = published_url(&world.data, "phoenix-1.0.0-source.tgz");
    assert_downloads(&published, &source);
}

/// Spec §5.1 retried while an upload is still arriving: re-running
/// `createPackageVersion` replaces the pending publish and withdraws its upload URLs, and
/// a body that finishes afterwards does not bring its ticket back: it gets 410, its file
/// is not kept, and the URL stays unknown. The new publish goes through.
#[tokio::test]
async fn an_upload_finishing_after_its_publish_was_replaced_is_not_kept() {
    let world = world();
    let server = serve(&world.data, &[]);
    let mut alice = login(&server, &world.alice).await;
    let name = "acme:overtaken";
    ok(&mut alice, "createPackage", json!([{"name": name}])).await;
    let (_, old_url, _) = new_version(&mut alice, name, "1.0.0").await;
    let source = file("overtaken source", 20_000);
    let mut held = start_upload(&old_url, source.len());
    held.write_all(&source[..5_000]).unwrap();
    held.flush().unwrap();
    let (token, url, readme_url) = new_version(&mut alice, name, "1.0.0").await;
    held.write_all(&source[5_000..]).unwrap();
    held.flush().unwrap();
    let (status, text) = read_response(held);
    assert_eq!(status, 410, "{text}");
    assert!(
        text.contains("was withdrawn while the file arrived"),
        "{text}"
    );
    assert_eq!(staged_files(&world.data), Vec::<String>::new());
    // No pending publish lists the old ticket any more: its URL is unknown.
    assert_eq!(put(&old_url, &source).0, 404, "the old URL came back");
    let readme = b"# overtaken\n".to_vec();
    assert_eq!(put(&url, &source).0, 200);
    assert_eq!(put(&readme_url, &readme).0, 200);
    publish_files(&mut alice, &token, &source, Some(&readme)).await;
    let published = published_url(&world.data, "overtaken-1.0.0-source.tgz");
    assert_downloads(&published, &source);
}

/// Spec §5.2: a chunked upload (no `Content-Length` to refuse up front) is cut off with
/// 413 once it passes the limit, keeps nothing, and its URL stays usable.
#[tokio::test]
async fn chunked_oversized_uploads_are_cut_off_and_leave_nothing() {
    let world = world();
    let server = serve(&world.data, &[]);
    let mut alice = login(&server, &world.alice).await;
    let name = "acme:chunky";
    let (token, url, _) = new_package(&mut alice, name).await;
    let url = url.as_str();
    let mut body = Vec::new();
    for chunk in file("chunky", MAX_UPLOAD + 10_000).chunks(8192) {
        body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(chunk);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let (status, text) = raw_put(url, "Transfer-Encoding: chunked\r\n", &body);
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("upload limit"), "{text}");
    assert_eq!(staged_files(&world.data), Vec::<String>::new());
    let source = file("small enough", 1000);
    let (status, text) = raw_put(
        url,
        "Transfer-Encoding: chunked\r\n",
        &[
            format!("{:x}\r\n", source.len()).as_bytes(),
            &source,
            b"\r\n0\r\n\r\n",
        ]
        .concat(),
    );
    assert_eq!(status, 200, "{text}");
    publish_files(&mut alice, &token, &source, None).await;
}

/// The URL in the exported catalog that ends with `suffix`.
fn published_url(data: &Path, suffix: &str) -> String {
    export(data)
        .split('"')
        .find(|part| part.starts_with("http://") && part.ends_with(suffix))
        .unwrap_or_else(|| panic!("no published URL ends with {suffix}"))
        .to_owned()
}

/// Spec §8.1: no download path reaches a file outside the published files, however it
/// is spelled: a sentinel next to the files directory and one at an absolute path.
#[tokio::test]
async fn downloads_never_reach_outside_the_published_files() {
    let world = world();
    let sentinel = "SENTINEL-7f3a9c: this file must never be served";
    std::fs::write(world.data.join("sentinel.txt"), sentinel).unwrap();
    let outside = world.data.parent().unwrap().join("outside.txt");
    std::fs::write(&outside, sentinel).unwrap();
    let absolute = outside.to_str().unwrap().trim_start_matches('/').to_owned();
    let server = serve(&world.data, &[]);
    let mut alice = login(&server, &world.alice).await;
    publish_version(&mut alice, "acme:fenced", "1.0.0", true).await;
    let real = published_url(&world.data, "-source.tgz");
    let (_, real_path) = split_url(&real);
    assert_eq!(raw_request(&server, "GET", real_path).0, 200);
    let mut paths = vec![
        "/packages/../sentinel.txt".to_owned(),
        "/packages/../../sentinel.txt".to_owned(),
        "/packages/%2e%2e/sentinel.txt".to_owned(),
        "/packages/%2E%2E/%2E%2E/sentinel.txt".to_owned(),
        "/packages/..%2Fsentinel.txt".to_owned(),
        "/packages/..%2f..%2fsentinel.txt".to_owned(),
        "/packages/..%5Csentinel.txt".to_owned(),
        "/packages/acme_fenced/..%2F..%2F..%2Fsentinel.txt".to_owned(),
        "/packages/acme_fenced/1.0.0/../../../sentinel.txt".to_owned(),
        "/packages/%2e%2e%2f%2e%2e%2foutside.txt".to_owned(),
        format!("/packages//{absolute}"),
        format!("/packages/%2F{}", absolute.replace('/', "%2F")),
        format!("/packages/{absolute}"),
        format!("/packages/file:%2F%2F%2F{absolute}"),
        format!("{real_path}/../../../../sentinel.txt"),
        format!("{real_path}%2F..%2F..%2F..%2F..%2Fsentinel.txt"),
    ];
    paths.push(format!("/{absolute}"));
    for path in &paths {
        let (status, body) = raw_request(&server, "GET", path);
        assert!(
            !body.contains("SENTINEL-7f3a9c"),
            "{path} ({status}) served the sentinel"
        );
        assert_ne!(status, 200, "{path}");
    }
}

/// Spec §8.1 and RFC 9110 §14: one byte range in each form gets 206 with its
/// `Content-Range`; an unsatisfiable one 416 with `bytes */LEN`; several ranges or a
/// malformed header the whole file with 200.
#[tokio::test]
async fn downloads_honour_single_byte_ranges() {
    let world = world();
    let server = serve(&world.data, &[]);
    let mut alice = login(&server, &world.alice).await;
    let published = publish_version(&mut alice, "acme:ranged", "1.0.0", true).await;
    let url = published_url(&world.data, "-source.tgz");
    let whole = &published.source;
    let len = whole.len();
    for (range, first, last) in [
        (format!("bytes={}-", len - 10), len - 10, len - 1),
        ("bytes=100-199".to_owned(), 100, 199),
        ("bytes=5-5".to_owned(), 5, 5),
        (format!("bytes=100-{}", len * 2), 100, len - 1),
        ("bytes=-300".to_owned(), len - 300, len - 1),
        (format!("bytes=-{}", len * 3), 0, len - 1),
    ] {
        let (status, header, bytes) = fetch(&url, Some(&range));
        assert_eq!(status, 206, "{range}");
        assert_eq!(
            header("content-range"),
            Some(format!("bytes {first}-{last}/{len}")),
            "{range}"
        );
        assert_eq!(
            header("content-length"),
            Some((last + 1 - first).to_string())
        );
        assert!(bytes == whole[first..=last], "{range} served other bytes");
    }
    for range in [
        format!("bytes={len}-"),
        format!("bytes={}-{}", len + 5, len + 10),
        "bytes=-0".to_owned(),
    ] {
        let (status, header, _) = fetch(&url, Some(&range));
        assert_eq!(status, 416, "{range}");
        assert_eq!(header("content-range"), Some(format!("bytes */{len}")));
    }
    for range in [
        "bytes=0-1,5-6",
        "bytes=9-3",
        "bytes=0-",
        "lines=1-2",
        "bytes=x-",
    ] {
        let (status, header, bytes) = fetch(&url, Some(range));
        assert_eq!(status, 200, "{range}");
        assert_eq!(header("content-range"), None, "{range}");
        assert!(bytes == *whole, "{range} did not serve the whole file");
        // A package file is never sniffed into something a browser would run.
        assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"));
    }
}

/// Spec §5.2 on S3: a client that closes its connection mid-body leaves no multipart upload and no
/// object behind, and the URL stays usable.
#[tokio::test]
async fn a_cut_off_upload_to_s3_aborts_its_multipart_upload() {
    let s3 = S3::start();
    let bucket = s3.create_bucket();
    let world = world();
    let server = serve(
        &world.data,
        &[
            "--s3-bucket",
            &bucket,
            "--s3-endpoint",
            &s3.endpoint,
            "--s3-access-key-id",
            "test",
            "--s3-secret-access-key",
            "test",
        ],
    );
    let mut alice = login(&server, &world.alice).await;
    let name = "acme:clouded";
    let (token, url, _) = new_package(&mut alice, name).await;
    let url = url.as_str();
    let source = file("clouded source", 20_000);
    let mut cut_off = start_upload(url, source.len());
    cut_off.write_all(&source[..5_000]).unwrap();
    drop(cut_off);
    let (status, text) = put_when_free(url, &source).await;
    assert_eq!(status, 200, "{text}");
    let (status, listing) = s3.get(&format!("{bucket}?uploads"));
    assert_eq!(status, 200, "{listing}");
    assert!(
        !listing.contains("<UploadId>"),
        "a multipart upload was left open: {listing}"
    );
    publish_files(&mut alice, &token, &source, None).await;
}
