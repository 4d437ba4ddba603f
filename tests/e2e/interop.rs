//! Interop with a DDP implementation that is not ours (the acceptance criterion).
//!
//! `tests/interop/sync.mjs` drives the server with the npm package `ddp`
//! (oortcloud/node-ddp-client, raw WebSocket through faye-websocket like the `meteor` tool,
//! spec §1.1): it runs the tool's sync loop (§3.3) against a catalog the server only ever saw
//! through `exosphere import`, watches the `changes` publication (§4.3) and reads a daily
//! stats file (§7.2). It reports JSON lines on stdout; this test checks them against the
//! fixture. Needs `node` (>= 20) and `npm ci --prefix tests/interop` (done by `.ci/run`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::{COLLECTIONS, NodeScript, Server, fixture, import, import_text, read_dump};
use serde_json::{Value, json};

/// The node client gives up (with its own message) after this long.
const NODE_TIMEOUT_SECS: u64 = 120;
/// How long this test waits for any one line; longer than the client's own limit, so a stuck
/// client normally explains itself first.
const PATIENCE: Duration = Duration::from_secs(NODE_TIMEOUT_SECS + 30);
/// The stats day the client reads.
const DAY: &str = "2024-10-01";
/// The `_id` of the version imported while the client watches.
const NEW_VERSION_ID: &str = "interopNewVersion";

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// The test does not install anything itself; it says how to.
fn require_npm_dependencies() {
    assert!(
        interop_dir()
            .join("node_modules/ddp/package.json")
            .is_file(),
        "the interop test needs its npm dependencies: run `npm ci --prefix tests/interop` \
         (as .ci/run does) and try again"
    );
}

/// Starts the node client (`sync.mjs`) against the server at `base_url`.
fn start_client(base_url: &str, catalog_out: &Path) -> NodeScript {
    let mut command = Command::new("node");
    command
        .arg(interop_dir().join("sync.mjs"))
        .arg(base_url)
        .args([
            "--stats-day",
            DAY,
            "--timeout",
            &NODE_TIMEOUT_SECS.to_string(),
        ])
        .arg("--catalog-out")
        .arg(catalog_out);
    NodeScript::spawn(command, "the node client", PATIENCE)
}

/// `page` lines up to the line `name` that ends them: (pages, that line). Further live
/// `change` lines may come in between.
fn pages_until(client: &mut NodeScript, name: &str) -> (Vec<Value>, Value) {
    let mut pages = Vec::new();
    loop {
        let line = client.next();
        match line["event"].as_str() {
            Some(event) if event == name => return (pages, line),
            Some("page") => pages.push(line),
            Some("change") => {}
            _ => panic!("unexpected line from the node client: {line}"),
        }
    }
}

/// Checks the shape of every `page` line of one sync (spec §3.2, §3.3, §3.5).
fn assert_pages(pages: &[Value], what: &str) {
    assert!(!pages.is_empty(), "{what}: no page at all");
    for (index, page) in pages.iter().enumerate() {
        let arrays: BTreeSet<&str> = page["sizes"]
            .as_object()
            .expect("sizes object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            arrays,
            BTreeSet::from(COLLECTIONS),
            "§3.2: {what}: page {page} must carry all five arrays"
        );
        assert_eq!(
            page["resetData"], false,
            "§3.5: {what}: no resetData for a fresh token or a plain addition: {page}"
        );
        let last = index + 1 == pages.len();
        assert_eq!(
            page["upToDate"], last,
            "§3.3: {what}: the loop stops at the first upToDate: {page}"
        );
    }
}

/// Every record of `expected` arrived unchanged in `actual`, and nothing else (spec §3.3, §3.8).
fn assert_same_catalog(
    expected: &BTreeMap<String, BTreeMap<String, Value>>,
    actual: &BTreeMap<String, BTreeMap<String, Value>>,
) {
    let empty = BTreeMap::new();
    for name in COLLECTIONS {
        let want = expected.get(name).unwrap_or(&empty);
        let got = actual.get(name).unwrap_or(&empty);
        let missing: Vec<&String> = want.keys().filter(|id| !got.contains_key(*id)).collect();
        let extra: Vec<&String> = got.keys().filter(|id| !want.contains_key(*id)).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "§3.3: {name}: {} imported records never arrived (first {:?}), {} arrived that were \
             never imported (first {:?})",
            missing.len(),
            missing.first(),
            extra.len(),
            extra.first()
        );
        for (id, record) in want {
            assert_eq!(
                &got[id], record,
                "§3.8: {name} {id} must arrive as imported"
            );
        }
    }
}

/// A stats row of the catalog dump format.
fn stats_line(date: &str, name: &str, version: &str, direct: u64, total: u64) -> String {
    let doc = json!({"name": name, "version": version, "directAdds": direct, "totalAdds": total});
    format!(
        "{}\n",
        json!({"collection": "stats", "date": date, "doc": doc})
    )
}

#[test]
fn a_third_party_ddp_client_syncs_watches_changes_and_reads_stats() {
    require_npm_dependencies();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let fixture_text = std::fs::read_to_string(fixture()).expect("fixture is readable");
    let (expected, _) = read_dump(&fixture_text);
    import(&data, &fixture());
    let stats = [
        stats_line(DAY, "tracker", "1.0.3", 250, 1000),
        stats_line(DAY, "iron:router", "1.0.7", 200, 800),
        stats_line("2024-10-02", "tracker", "1.0.3", 3, 4), // another day: must not show up
    ];
    import_text(&data, &stats.concat());
    let server = Server::start(&data, &[]);
    let synced_file = dir.path().join("synced.ndjson");
    let mut client = start_client(&server.http, &synced_file);

    // The initial sync from the default token (§3.3), every page checked by the client too.
    let (pages, synced) = pages_until(&mut client, "synced");
    assert_pages(&pages, "initial sync");
    assert_eq!(
        synced["pages"],
        pages.len(),
        "one `page` line per page: {synced}"
    );
    for name in COLLECTIONS {
        assert_eq!(
            synced["counts"][name],
            expected[name].len(),
            "§3.3: every imported {name} record arrives"
        );
    }
    let synced_text = std::fs::read_to_string(&synced_file).expect("the client wrote its catalog");
    assert_same_catalog(&expected, &read_dump(&synced_text).0);

    // The `changes` publication: one counter per catalog collection (§4.3).
    let changes = client.expect("changes");
    let counters: BTreeMap<&str, u64> = changes["docs"]
        .as_array()
        .expect("docs array")
        .iter()
        .map(|doc| {
            (
                doc["collection"].as_str().unwrap(),
                doc["changes"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        counters.keys().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from(COLLECTIONS),
        "§4.3: one `changes` document per catalog collection: {changes}"
    );

    // The daily stats file, parsed as consumers parse it (§7.2).
    let stats = client.expect("stats");
    let mut rows: Vec<Value> = stats["rows"].as_array().expect("rows array").clone();
    rows.sort_by_key(|row| row["name"].as_str().unwrap_or_default().to_owned());
    assert_eq!(
        rows,
        vec![
            json!({"name": "iron:router", "version": "1.0.7", "directAdds": 200, "totalAdds": 800}),
            json!({"name": "tracker", "version": "1.0.3", "directAdds": 250, "totalAdds": 1000}),
        ],
        "§7.2: GET /stats/v1/{DAY} has exactly that day's rows"
    );
    client.expect("ready");

    // Another process imports a new version while the client watches: `changes` must move
    // live (§4.3) and the client's next sync must bring the record (§3.3, §3.6).
    client.send("wait-change versions");
    let mut entry: Value = fixture_text
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("fixture line is JSON"))
        .find(|entry| entry["collection"] == "versions")
        .expect("the fixture has versions");
    entry["doc"]["_id"] = json!(NEW_VERSION_ID);
    entry["doc"]["version"] = json!("99.0.0");
    import_text(&data, &format!("{entry}\n"));

    let change = loop {
        let change = client.expect("change");
        if change["collection"] == "versions" {
            break change;
        }
    };
    assert!(
        change["changes"].as_u64() > Some(counters["versions"]),
        "§4.3: the versions counter must grow: {change}"
    );
    let (pages, resynced) = pages_until(&mut client, "resynced");
    assert_pages(&pages, "sync after the change");
    let new_versions = resynced["ids"]["versions"]
        .as_array()
        .expect("ids.versions");
    assert!(
        new_versions.iter().any(|id| id == NEW_VERSION_ID),
        "§3.6: a sync after the import returns the new version: {resynced}"
    );
    client.finish();
}

/// Runs `deflate.mjs` with one WebSocket `stack` against `url`: the server's
/// `Sec-WebSocket-Extensions` answer and every `result` frame of a full sync, as received.
fn sync_frames(
    url: &str,
    stack: &str,
    compress_collections: bool,
    dir: &Path,
) -> (String, Vec<u8>) {
    let out = dir.join(format!("{stack}-{}.frames", exosphere_ddp::random_id()));
    let mut command = Command::new("node");
    command
        .arg(interop_dir().join("deflate.mjs"))
        .args([url, stack])
        .arg(&out)
        .args(["--timeout", &NODE_TIMEOUT_SECS.to_string()]);
    if compress_collections {
        command.arg("--compress-collections");
    }
    let mut client = NodeScript::spawn(command, "the node WebSocket client", PATIENCE);
    let extensions = client.expect("open")["extensions"]
        .as_str()
        .expect("extensions")
        .to_owned();
    client.expect("synced");
    client.finish();
    (extensions, std::fs::read(&out).expect("the frames"))
}

#[test]
fn ws_and_the_tools_faye_stack_sync_compressed_and_get_the_same_frames() {
    require_npm_dependencies();
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    import(&data, &fixture());
    let server = Server::start(&data, &[]);
    let sockjs = format!("{}/sockjs/websocket", server.http.replace("http", "ws"));
    let answer = "permessage-deflate; server_no_context_takeover";
    for compress_collections in [false, true] {
        // A client that offers nothing still works, and is the reference.
        let (none, plain) = sync_frames(&server.ws, "plain", compress_collections, dir.path());
        assert_eq!(none, "");
        assert!(plain.len() > 1 << 20, "a whole sync");
        for url in [&server.ws, &sockjs] {
            for stack in ["ws", "faye"] {
                let (extensions, frames) =
                    sync_frames(url, stack, compress_collections, dir.path());
                assert_eq!(extensions, answer, "{stack} at {url}");
                assert!(
                    frames == plain,
                    "{stack} at {url} (compressed collections: {compress_collections}) got other frames"
                );
            }
        }
    }
    // With the extension off, both stacks sync without it.
    drop(server);
    let off = Server::start(&data, &["--websocket-compression", "false"]);
    let (_, plain) = sync_frames(&off.ws, "plain", false, dir.path());
    for stack in ["ws", "faye"] {
        let (extensions, frames) = sync_frames(&off.ws, stack, false, dir.path());
        assert_eq!(extensions, "", "{stack}");
        assert!(
            frames == plain,
            "{stack} without the extension got other frames"
        );
    }
}
