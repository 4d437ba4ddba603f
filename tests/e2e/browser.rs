//! A real browser speaks DDP to the real binary over SockJS (spec §1.1, the issue's
//! acceptance criterion) with npm clients only: headless Chromium (Debian's `chromium`,
//! driven by `playwright-core`) loads `tests/browser/page.html` from its own loopback port,
//! so every request is cross-origin. Its script, `tests/browser/client.js` (bundled by
//! `run.mjs` with esbuild on each run), is the npm DDP client `ddp.js` over the npm
//! `sockjs-client`, forced to one transport at a time: websocket, xhr-streaming,
//! xhr-polling, eventsource, jsonp-polling, and iframe-eventsource, iframe-htmlfile and
//! iframe-xhr-polling, which run inside the server's iframe page (whose sockjs-client script
//! comes from the page's own server through `--sockjs-client-url`, as the default CDN is out
//! of reach offline).
//! On each, ddp.js negotiates DDP `1` (§1.2), runs the tool's sync loop (§3.3), subscribes
//! to `changes` (§4.3), and sees the `changed` that an `exosphere import` by another
//! process causes. Needs `/usr/bin/chromium` and `npm ci --prefix tests/browser` (both
//! installed by `tests/setup.sh`, which `.ci/run` runs).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::{COLLECTIONS, NodeScript, Server, fixture, import, import_text};
use serde_json::{Value, json};

/// The browser client gives up (with its own message) after this long: 90 s per transport,
/// each of which syncs the whole fixture (about 2 s on a quiet machine).
const CLIENT_TIMEOUT_SECS: u64 = 90 * TRANSPORTS.len() as u64;
/// How long this test waits for one line: longer than the client's own limit.
const PATIENCE: Duration = Duration::from_secs(CLIENT_TIMEOUT_SECS + 30);
/// The transports sockjs-client is forced to, one page each: every one of sockjs-client
/// 1.6's transports that Chromium runs on a cross-origin page. Not `htmlfile` (same origin
/// only: its cross-origin form is `iframe-htmlfile`) nor the `xdr-*` ones (old IE only).
const TRANSPORTS: [&str; 8] = [
    "websocket",
    "xhr-streaming",
    "xhr-polling",
    "eventsource",
    "jsonp-polling",
    "iframe-eventsource",
    "iframe-htmlfile",
    "iframe-xhr-polling",
];

/// Where the browser tests' Node scripts and their npm packages are.
pub(crate) fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Fails with the command to run unless Chromium and the npm packages the browser tests
/// need (`packages`, files under `node_modules`) are installed.
pub(crate) fn assert_browser_ready(packages: &[&str]) {
    let node_modules = browser_dir().join("node_modules");
    assert!(
        packages
            .iter()
            .all(|file| node_modules.join(file).is_file())
            && Path::new("/usr/bin/chromium").is_file(),
        "the browser test needs Chromium and its npm dependencies: run `tests/setup.sh` \
         (as .ci/run does) and try again"
    );
}

#[test]
fn chromium_syncs_and_watches_over_every_sockjs_transport() {
    assert_browser_ready(&["playwright-core/package.json"]);
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    import(&data, &fixture());
    let mut expected = fixture_counts();
    // The page's server, which also serves sockjs-client for the server's iframe page.
    let page_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let client_url = format!("http://127.0.0.1:{page_port}/sockjs.min.js");
    let server = Server::start(&data, &["--sockjs-client-url", &client_url]);

    let mut command = Command::new("node");
    command
        .arg(browser_dir().join("run.mjs"))
        .arg(&server.http)
        .args(TRANSPORTS)
        .args(["--timeout", &CLIENT_TIMEOUT_SECS.to_string()])
        .args(["--page-port", &page_port.to_string()]);
    let mut client = NodeScript::spawn(command, "the browser client", PATIENCE);

    let mut version = 0;
    for transport in TRANSPORTS {
        let synced = client.expect("synced");
        assert_eq!(synced["transport"], transport);
        assert_eq!(
            synced["used"], transport,
            "sockjs-client used the forced transport"
        );
        // ddp.js proposes only DDP 1 (§1.2); the server must accept it with a session id.
        assert_eq!(synced["proposed"]["version"], "1", "{synced}");
        assert!(
            synced["connected"]["session"]
                .as_str()
                .is_some_and(|session| !session.is_empty()),
            "§1.2: {transport}: the server accepted DDP 1: {synced}"
        );
        assert_eq!(
            synced["counts"], expected,
            "§3.3: {transport}: the whole catalog arrived"
        );
        let before = synced["changes"]["versions"]
            .as_u64()
            .expect("a versions counter");

        // Another process writes to the catalog; the browser must see `changed` (§4.3).
        client.send("wait-change versions");
        version += 1;
        import_text(&data, &new_version(version));
        // The next page syncs this version too.
        expected["versions"] = json!(expected["versions"].as_u64().unwrap_or_default() + 1);
        let changed = client.expect("changed");
        assert_eq!(changed["transport"], transport);
        assert!(
            changed["fields"]["changes"].as_u64() > Some(before),
            "§4.3: {transport}: the versions counter grows live: {changed}"
        );
    }
    client.finish();
}

/// Records per collection in the fixture.
fn fixture_counts() -> Value {
    let text = std::fs::read_to_string(fixture()).expect("fixture");
    let mut counts = serde_json::Map::new();
    for name in COLLECTIONS {
        let n = text
            .lines()
            .filter(|line| {
                serde_json::from_str::<Value>(line).is_ok_and(|entry| entry["collection"] == name)
            })
            .count();
        counts.insert(name.to_owned(), json!(n));
    }
    Value::Object(counts)
}

/// A dump line with one new version of a fixture package.
fn new_version(n: u32) -> String {
    let text = std::fs::read_to_string(fixture()).expect("fixture");
    let mut entry: Value = text
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|entry| entry["collection"] == "versions")
        .expect("the fixture has versions");
    entry["doc"]["_id"] = json!(format!("browserVersion{n}"));
    entry["doc"]["version"] = json!(format!("99.0.{n}"));
    format!("{entry}\n")
}
