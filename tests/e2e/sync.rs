//! `syncNewPackageData` end to end (spec §3): a real server process, a real WebSocket, the
//! real 2015 catalog, and a client that applies pages exactly like the `meteor` tool.

use crate::common::{
    Backend, COLLECTIONS, Server, fixture, import, import_text, read_dump, serve_fixture,
    serve_fixture_on, sync_loop,
};
use serde_json::{Value, json};

fn fixture_catalog() -> std::collections::BTreeMap<String, std::collections::BTreeMap<String, Value>>
{
    read_dump(&std::fs::read_to_string(fixture()).expect("fixture is readable")).0
}

/// Checks the result shape every page must have (spec §3.2 and §3.6).
fn assert_page_shape(page: &Value, page_size: usize) {
    let collections = page["collections"].as_object().expect("collections object");
    for name in COLLECTIONS {
        let records = collections[name]
            .as_array()
            .unwrap_or_else(|| panic!("§3.2: `{name}` must always be an array"));
        assert!(
            records.len() <= page_size,
            "§3.6: {} {name} in one page",
            records.len()
        );
    }
    assert!(
        page["syncToken"].is_object(),
        "§3.2: syncToken is an object"
    );
    assert!(page["upToDate"].is_boolean(), "§3.2: upToDate is a boolean");
    assert!(
        page["resetData"].is_boolean(),
        "§3.2: resetData is always present"
    );
}

#[tokio::test]
async fn a_fresh_tool_receives_the_whole_2015_catalog() {
    a_fresh_tool_receives_the_whole_catalog_from(&Backend::Sqlite).await;
}

/// The same full sync served from a PostgreSQL catalog (`serve --database-url`, after
/// `import --database-url`) delivers the same records as from SQLite.
#[tokio::test]
async fn a_fresh_tool_receives_the_whole_2015_catalog_from_postgres() {
    a_fresh_tool_receives_the_whole_catalog_from(&Backend::postgres()).await;
}

/// Imports the 2015 fixture on `backend`, serves it and checks a full sync: its pages'
/// shape (spec §3.2, §3.5, §3.6) and every record unchanged.
async fn a_fresh_tool_receives_the_whole_catalog_from(backend: &Backend) {
    let (_dir, _data, server) = serve_fixture_on(backend);
    let mut ddp = server.ddp().await;

    let outcome = sync_loop(&mut ddp, json!({"format": "1.1"}), json!({})).await;

    assert!(
        outcome.pages.len() >= 9,
        "4,039 versions need at least 9 pages of 500"
    );
    for (index, page) in outcome.pages.iter().enumerate() {
        assert_page_shape(page, 500);
        assert_eq!(
            page["resetData"], false,
            "§3.5: the default token never gets resetData"
        );
        assert_eq!(
            page["syncToken"]["format"], "1.1",
            "§3.5: the token echoes format"
        );
        let last = index + 1 == outcome.pages.len();
        assert_eq!(
            page["upToDate"], last,
            "§3.6: upToDate only on the last page"
        );
    }
    assert_eq!(
        outcome.catalog,
        fixture_catalog(),
        "every record arrives unchanged"
    );
}

#[tokio::test]
async fn short_pages_carry_at_most_three_records_per_collection() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let sample: String = std::fs::read_to_string(fixture())
        .unwrap()
        .lines()
        .filter(|line| line.contains(r#""collection":"packages""#))
        .take(10)
        .map(|line| format!("{line}\n"))
        .collect();
    import_text(&data, &sample);
    let server = Server::start(&data, &[]);
    let mut ddp = server.ddp().await;

    let outcome = sync_loop(
        &mut ddp,
        json!({"format": "1.1"}),
        json!({"shortPagesForTest": true}),
    )
    .await;

    for page in &outcome.pages {
        assert_page_shape(page, 3);
    }
    assert_eq!(outcome.pages.len(), 4, "10 packages in pages of 3");
    assert_eq!(outcome.catalog["packages"].len(), 10);
}

#[tokio::test]
async fn an_up_to_date_token_gets_five_empty_arrays_and_the_same_token() {
    let (_dir, _data, server) = serve_fixture();
    let mut ddp = server.ddp().await;
    let first = sync_loop(&mut ddp, json!({"format": "1.1"}), json!({})).await;

    // The tool stores the token with an `_id` it adds itself (spec §3.4); that must not matter.
    let mut stored = first.token.clone();
    stored["_id"] = json!("1");
    let again = ddp.call("syncNewPackageData", json!([stored, {}])).await;
    let result = &again["result"];

    assert_page_shape(result, 500);
    for name in COLLECTIONS {
        assert_eq!(
            result["collections"][name],
            json!([]),
            "§3.9: nothing new in {name}"
        );
    }
    assert_eq!(
        result["syncToken"], first.token,
        "§3.9: the same token comes back"
    );
    assert_eq!(result["upToDate"], true);
    assert_eq!(result["resetData"], false);
}

#[tokio::test]
async fn a_record_changed_by_another_process_syncs_again() {
    let (_dir, data, server) = serve_fixture();
    let mut ddp = server.ddp().await;
    let first = sync_loop(&mut ddp, json!({"format": "1.1"}), json!({})).await;

    let (_, mut version) = first.catalog["versions"]
        .iter()
        .next()
        .map(|(id, record)| (id.clone(), record.clone()))
        .unwrap();
    version["description"] = json!("A new description");
    import_text(
        &data,
        &format!("{}\n", json!({"collection": "versions", "doc": version})),
    );

    let second = sync_loop(&mut ddp, first.token, json!({})).await;
    let versions = &second.catalog["versions"];
    assert_eq!(
        versions.len(),
        1,
        "§3.6: only the changed record is sent again"
    );
    assert_eq!(versions.values().next().unwrap(), &version);
    assert!(second.pages.iter().all(|page| page["resetData"] == false));
}

/// With a memory cache far smaller than a full sync, the pages it evicts go to the data
/// directory's page files and the next full sync is served from them: the same pages, plain
/// or `collectionsCompressed`. A write by another process makes the files stale, so the
/// next sync carries it (read-your-writes, spec §3.6).
#[tokio::test]
async fn full_syncs_served_from_page_files_are_whole_and_see_writes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    import(&data, &fixture());
    let server = Server::start(&data, &["--sync-cache-size", "1500000"]);
    let mut ddp = server.ddp().await;
    for options in [json!({}), json!({"compressCollections": true})] {
        let first = sync_loop(&mut ddp, json!({"format": "1.1"}), options.clone()).await;
        let ids = |catalog: &crate::common::Catalog| {
            catalog
                .iter()
                .map(|(name, records)| (name.clone(), records.keys().cloned().collect()))
                .collect::<Vec<(String, Vec<String>)>>()
        };
        // Compressed pages carry dates as ISO strings (spec §3.7), so records are compared
        // by id.
        assert_eq!(ids(&first.catalog), ids(&fixture_catalog()));
        let files = std::fs::read_dir(data.join("sync-pages")).unwrap().count();
        assert!(files > 0, "evicted pages are kept as files");
        let second = sync_loop(&mut ddp, json!({"format": "1.1"}), options).await;
        assert_eq!(second.pages, first.pages);
    }

    let first = sync_loop(&mut ddp, json!({"format": "1.1"}), json!({})).await;
    let (id, mut version) = first.catalog["versions"]
        .iter()
        .next()
        .map(|(id, record)| (id.clone(), record.clone()))
        .unwrap();
    version["description"] = json!("Changed while pages were on disk");
    import_text(
        &data,
        &format!("{}\n", json!({"collection": "versions", "doc": version})),
    );
    let after = sync_loop(&mut ddp, json!({"format": "1.1"}), json!({})).await;
    assert_eq!(after.catalog["versions"][&id], version, "read-your-writes");
}

#[tokio::test]
async fn compressed_pages_are_gzip_base64_plain_json_with_iso_dates() {
    let (_dir, _data, server) = serve_fixture();
    let mut ddp = server.ddp().await;

    let outcome = sync_loop(
        &mut ddp,
        json!({"format": "1.1"}),
        json!({"compressCollections": true}),
    )
    .await;

    for page in &outcome.pages {
        assert!(page["collectionsCompressed"].is_string(), "§3.7");
        assert!(page["syncToken"].is_object());
    }
    let expected = fixture_catalog();
    for name in COLLECTIONS {
        assert_eq!(outcome.catalog[name].len(), expected[name].len(), "{name}");
        for (id, record) in &expected[name] {
            assert_eq!(
                outcome.catalog[name][id],
                lower_dates(record),
                "{name} {id}"
            );
        }
    }
}

/// What JavaScript's `JSON.stringify` of an EJSON-decoded record gives: dates as ISO strings.
fn lower_dates(value: &Value) -> Value {
    match value {
        Value::Object(map) if map.len() == 1 && map.contains_key("$date") => {
            let ms = map["$date"].as_i64().expect("integer ms");
            let date = chrono::DateTime::from_timestamp_millis(ms).expect("valid date");
            json!(date.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| (key.clone(), lower_dates(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(lower_dates).collect()),
        other => other.clone(),
    }
}

#[tokio::test]
async fn a_token_from_another_server_gets_reset_data_exactly_once() {
    let (_dir, _data, server) = serve_fixture();
    let mut ddp = server.ddp().await;
    let foreign = json!({
        "format": "1.1", "packages": 1729166400000_i64, "versions": 1729166400123_i64,
        "builds": 1729166400456_i64, "releaseTracks": 1700000000000_i64,
        "releaseVersions": 1729100000000_i64, "epoch": "somebody-else"
    });

    let outcome = sync_loop(&mut ddp, foreign, json!({})).await;

    assert_eq!(
        outcome.pages[0]["resetData"], true,
        "§3.5: unknown epoch resets"
    );
    assert!(
        outcome.pages[1..]
            .iter()
            .all(|page| page["resetData"] == false),
        "§3.6: never resetData on two pages"
    );
    assert_eq!(outcome.catalog, fixture_catalog());
}

#[tokio::test]
async fn a_deletion_makes_older_tokens_reset_once_and_drops_the_record() {
    let (_dir, data, server) = serve_fixture();
    let mut ddp = server.ddp().await;
    let first = sync_loop(&mut ddp, json!({"format": "1.1"}), json!({})).await;
    let doomed = first.catalog["packages"].keys().next().unwrap().clone();

    // Another process deletes a record: the only way out of a client's catalog is a reset.
    let store = exosphere_catalog_sqlite::open_sqlite(&data).unwrap();
    exosphere_catalog::CatalogStore::write(&store, &mut |writer| {
        writer
            .delete(exosphere_catalog::Collection::Packages, &doomed)
            .map(|_| ())
    })
    .unwrap();
    drop(store);

    let second = sync_loop(&mut ddp, first.token, json!({})).await;
    assert_eq!(
        second.pages[0]["resetData"], true,
        "§3.5: an older epoch resets"
    );
    assert!(
        second.pages[1..]
            .iter()
            .all(|page| page["resetData"] == false)
    );
    let mut expected = fixture_catalog();
    expected.get_mut("packages").unwrap().remove(&doomed);
    assert_eq!(second.catalog, expected);
    let third = sync_loop(&mut ddp, second.token, json!({})).await;
    assert_eq!(
        third.pages.len(),
        1,
        "after the reset the client is up to date"
    );
    assert_eq!(third.pages[0]["resetData"], false);
}

#[tokio::test]
async fn legacy_calls_are_answered() {
    let (_dir, _data, server) = serve_fixture();
    let mut ddp = server.ddp().await;

    // Pre-0.9.3 tools sent `{}` and very old tools only one parameter (spec §3.1).
    let reply = ddp.call("syncNewPackageData", json!([{}])).await;
    let result = &reply["result"];
    assert_page_shape(result, 500);
    assert_eq!(
        result["resetData"], false,
        "an empty token is a fresh start, not a reset"
    );
    assert!(
        result["syncToken"].get("format").is_none(),
        "no format to echo"
    );
    assert!(
        !result["collections"]["versions"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_token_that_is_not_an_object_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let mut ddp = server.ddp().await;

    for token in [json!("garbage"), json!(42), json!([1, 2])] {
        let reply = ddp.call("syncNewPackageData", json!([token, {}])).await;
        let error = &reply["error"];
        assert_eq!(error["error"], 400, "{reply}");
        assert!(
            error["reason"].as_str().unwrap().contains("sync token"),
            "the reason names the bad parameter: {reply}"
        );
    }
    // The session survives bad input.
    let reply = ddp
        .call("syncNewPackageData", json!([{"format": "1.1"}, {}]))
        .await;
    assert_eq!(reply["result"]["upToDate"], true);
}

#[tokio::test]
async fn writes_between_pages_are_never_lost() {
    let (_dir, data, server) = serve_fixture();
    let mut ddp = server.ddp().await;
    let dump = std::fs::read_to_string(fixture()).unwrap();
    let versions: Vec<Value> = dump
        .lines()
        .filter(|line| line.contains(r#""collection":"versions""#))
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["doc"].clone())
        .collect();

    // Page through with short pages while another process rewrites records the client has
    // already seen, records it has not reached yet, and adds new ones with a shared lastUpdated.
    let mut token = json!({"format": "1.1"});
    let mut local: std::collections::BTreeMap<String, Value> = Default::default();
    let mut pages = 0;
    loop {
        let reply = ddp
            .call(
                "syncNewPackageData",
                json!([token, {"shortPagesForTest": true}]),
            )
            .await;
        let result = &reply["result"];
        for record in result["collections"]["versions"].as_array().unwrap() {
            local.insert(record["_id"].as_str().unwrap().to_owned(), record.clone());
        }
        token = result["syncToken"].clone();
        pages += 1;
        if pages % 40 == 1 && pages < 400 {
            let mut changed_old = versions[pages % versions.len()].clone();
            changed_old["description"] = json!(format!("rewritten at page {pages}"));
            let mut changed_late = versions[versions.len() - 1 - pages].clone();
            changed_late["description"] = json!(format!("rewritten early at page {pages}"));
            let mut added = versions[0].clone();
            added["_id"] = json!(format!("addedAtPage{pages}"));
            added["version"] = json!(format!("9.9.{pages}"));
            let lines: String = [changed_old, changed_late, added]
                .into_iter()
                .map(|doc| format!("{}\n", json!({"collection": "versions", "doc": doc})))
                .collect();
            import_text(&data, &lines);
        }
        if result["upToDate"] == true {
            break;
        }
    }

    let export = crate::common::run(&["export", "--data-dir", data.to_str().unwrap()]);
    assert!(export.status.success());
    let (stored, _) = read_dump(&String::from_utf8(export.stdout).unwrap());
    assert_eq!(
        local, stored["versions"],
        "the client ends with exactly the stored versions"
    );
}
