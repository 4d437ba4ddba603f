//! Nobody can take the server down through its records (spec §1.1, §3.6, §3.8, §5.4,
//! §5.12, §5.13): the publishing methods refuse unknown fields, over-long values and
//! non-http homepages, sync pages are cut by bytes (`--sync-page-bytes`) without losing or
//! repeating a record, plain and compressed, and a database that already holds an
//! oversized record (written before records were bounded) still syncs, around it.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::common::{COLLECTIONS, Ddp, SyncOutcome, decompress, import, read_dump, sync_loop};
use crate::publish::{export, login, ok, publish_version, refused, serve, version_record, world};

/// The largest record a catalog may hold (`exosphere_catalog::record::MAX_RECORD_SIZE`).
const MAX_RECORD_SIZE: usize = 256 * 1024;

/// Junk far over every field limit, but within one DDP message (1 MiB).
fn junk() -> String {
    "x".repeat(900_000)
}

/// The `_id`s a sync delivered, page by page, per collection (repeats kept), and the bytes
/// of each page's collections (decompressed).
fn delivered(outcome: &SyncOutcome) -> (BTreeMap<String, Vec<String>>, Vec<usize>) {
    let mut ids: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut sizes = Vec::new();
    for page in &outcome.pages {
        let collections = match page.get("collectionsCompressed") {
            Some(packed) => decompress(packed.as_str().unwrap()),
            None => page["collections"].clone(),
        };
        sizes.push(collections.to_string().len());
        for name in COLLECTIONS {
            for record in collections[name].as_array().unwrap() {
                let id = record["_id"].as_str().unwrap().to_owned();
                ids.entry(name.to_owned()).or_default().push(id);
            }
        }
    }
    (ids, sizes)
}

/// The `_id`s of every record the store holds (`exosphere export`), per collection.
fn stored_ids(data: &std::path::Path) -> BTreeMap<String, Vec<String>> {
    let (catalog, _) = read_dump(&export(data));
    catalog
        .into_iter()
        .map(|(name, records)| (name, records.into_keys().collect()))
        .collect()
}

/// Full syncs, plain and compressed, each delivering every stored record exactly once in
/// pages of at most `budget` plus one record; returns the plain sync's last token.
async fn full_syncs_within(ddp: &mut Ddp, data: &std::path::Path, budget: usize) -> Value {
    let mut stored = stored_ids(data);
    stored.values_mut().for_each(|ids| ids.sort());
    let mut token = Value::Null;
    for options in [json!({}), json!({"compressCollections": true})] {
        let outcome = sync_loop(ddp, json!({"format": "1.1"}), options.clone()).await;
        let (mut ids, sizes) = delivered(&outcome);
        ids.values_mut().for_each(|ids| ids.sort());
        ids.retain(|_, ids| !ids.is_empty());
        assert_eq!(ids, stored, "every record exactly once ({options})");
        assert!(sizes.len() > 2, "the budget cuts the catalog into pages");
        for size in sizes {
            // Compressed pages carry ISO dates, a little longer than EJSON dates.
            assert!(
                size <= budget + 2 * 4096 + 200,
                "a page of {size} bytes ({options})"
            );
        }
        if token.is_null() {
            token = outcome.token;
        }
    }
    token
}

/// The attack of the issue, with a small page budget: 1 MB junk in version records,
/// homepages, orderKeys and banners is refused with an error naming the field and the
/// limit, a `javascript:` homepage too, a real tool's records are accepted, and an
/// honest client's full sync still works with every page within the budget.
#[tokio::test]
async fn oversized_fields_are_refused_and_every_page_stays_within_the_budget() {
    let world = world();
    let budget = 64 * 1024;
    let server = serve(&world.data, &["--sync-page-bytes", &budget.to_string()]);
    let mut ddp = login(&server, &world.alice).await;
    publish_version(&mut ddp, "acme:widget", "1.0.0", true).await;
    let before = export(&world.data);

    for i in 0..3 {
        let mut record = version_record("acme:widget", &format!("1.0.{}", i + 1));
        record["junk"] = json!(junk());
        let error = refused(&mut ddp, "createPackageVersion", json!([record])).await;
        assert_eq!(error["error"], 400, "{error}");
        let reason = error["reason"].as_str().unwrap();
        assert!(
            reason.contains("\"junk\" is not a field of a version record"),
            "{reason}"
        );
    }
    let mut record = version_record("acme:widget", "1.0.9");
    record["dependencies"]["meteor"]["constraint"] = json!(junk());
    let error = refused(&mut ddp, "createPackageVersion", json!([record])).await;
    assert!(
        error["reason"]
            .as_str()
            .unwrap()
            .contains("this server accepts at most 1024"),
        "{error}"
    );

    for homepage in [
        format!("https://acme.example/{}", junk()),
        "javascript:alert(1)".into(),
    ] {
        let error = refused(
            &mut ddp,
            "_changePackageHomepage",
            json!(["acme:widget", homepage]),
        )
        .await;
        assert_eq!(error["error"], 400);
        assert!(
            error["reason"]
                .as_str()
                .unwrap()
                .contains("`homepage` must be a well-formed http/https URL of at most 1024 bytes"),
            "{error}"
        );
    }

    ok(
        &mut ddp,
        "createReleaseTrack",
        json!([{"name": "acme:RELEASE"}]),
    )
    .await;
    let release = |order_key: Value| {
        json!([{
            "track": "acme:RELEASE", "version": "1.0", "orderKey": order_key,
            "description": "Widgets", "recommended": true,
            "tool": "acme:widget@1.0.0", "packages": {"acme:widget": "1.0.0"}
        }])
    };
    let error = refused(&mut ddp, "createReleaseVersion", release(json!(junk()))).await;
    assert!(
        error["reason"]
            .as_str()
            .unwrap()
            .contains("`orderKey` is 900000 bytes long; this server accepts at most 256"),
        "{error}"
    );
    ok(
        &mut ddp,
        "createReleaseVersion",
        release(json!("0001.0000$")),
    )
    .await;
    let banners =
        |text: String| json!(["acme:RELEASE", [{"versions": ["1.0"], "banner": {"text": text}}]]);
    let error = refused(&mut ddp, "setBannersOnReleases", banners(junk())).await;
    assert!(
        error["reason"]
            .as_str()
            .unwrap()
            .contains("`banner.text` is 900000 characters long; this server accepts at most 1000"),
        "{error}"
    );

    // What a real tool sends is accepted: a homepage, a banner, metadata with an ssh git URL.
    ok(
        &mut ddp,
        "_changePackageHomepage",
        json!(["acme:widget", "https://acme.example/widget"]),
    )
    .await;
    ok(
        &mut ddp,
        "setBannersOnReleases",
        banners("=> Widgets 1.0.1 fixes a bug.".into()),
    )
    .await;
    ok(
        &mut ddp,
        "changeVersionMetadata",
        json!([{"packageName": "acme:widget", "version": "1.0.0"},
               {"git": "git@github.com:acme/widget.git", "description": "A widget", "longDescription": ""}]),
    )
    .await;
    assert_ne!(export(&world.data), before);
    assert!(
        !export(&world.data).contains("xxxxxxxxxx"),
        "no junk was stored"
    );

    let mut honest = server.ddp().await;
    full_syncs_within(&mut honest, &world.data, budget).await;
}

/// With a small budget, full syncs (plain and compressed) deliver every record exactly
/// once, and an incremental sync after new publishes continues from the last token and
/// delivers exactly the records written since.
#[tokio::test]
async fn byte_cut_pages_lose_and_repeat_nothing_and_resume_after_publishes() {
    let world = world();
    let budget = 20_000;
    let server = serve(&world.data, &["--sync-page-bytes", &budget.to_string()]);
    let mut ddp = server.ddp().await;
    let token = full_syncs_within(&mut ddp, &world.data, budget).await;
    let before = read_dump(&export(&world.data)).0;

    let mut alice = login(&server, &world.alice).await;
    publish_version(&mut alice, "acme:widget", "1.0.0", true).await;
    publish_version(&mut alice, "acme:widget", "1.1.0", false).await;
    let after = read_dump(&export(&world.data)).0;

    let outcome = sync_loop(&mut ddp, token, json!({})).await;
    assert!(outcome.pages.iter().all(|page| page["resetData"] == false));
    for name in COLLECTIONS {
        let empty = BTreeMap::new();
        let sent = outcome.catalog.get(name).unwrap_or(&empty);
        let changed: BTreeMap<_, _> = after
            .get(name)
            .unwrap_or(&empty)
            .iter()
            .filter(|(id, record)| before.get(name).and_then(|old| old.get(*id)) != Some(*record))
            .map(|(id, record)| (id.clone(), record.clone()))
            .collect();
        assert_eq!(sent, &changed, "{name}: exactly what was written since");
    }
    assert_eq!(outcome.catalog["versions"].len(), 2);
}

/// A database written before records were bounded, holding a 1 MB record (the attack as
/// it was stored), is served after the upgrade: every page stays small and every other
/// record arrives, plain and compressed, and `exosphere sync` completes.
#[tokio::test]
async fn a_database_holding_an_oversized_record_still_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    import(&data, &crate::common::fixture());
    let victim: String = {
        let conn = rusqlite::Connection::open(data.join("catalog.sqlite3")).unwrap();
        let id: String = conn
            .query_row(
                "SELECT id FROM rec_versions ORDER BY seq LIMIT 1 OFFSET 100",
                [],
                |row| row.get(0),
            )
            .unwrap();
        let huge = json!({"_id": id, "packageName": "acme:junk", "version": "1.0.0", "junk": junk(), "more": junk()});
        conn.execute(
            "UPDATE rec_versions SET json = ?1 WHERE id = ?2",
            rusqlite::params![huge.to_string(), id],
        )
        .unwrap();
        id
    };
    let server = crate::common::Server::start(&data, &["--sync-page-bytes", "200000"]);
    let mut ddp = server.ddp().await;
    let stored = stored_ids(&data);
    for options in [json!({}), json!({"compressCollections": true})] {
        let outcome = sync_loop(&mut ddp, json!({"format": "1.1"}), options.clone()).await;
        let (ids, sizes) = delivered(&outcome);
        assert!(
            sizes.iter().all(|size| *size < 200_000 + MAX_RECORD_SIZE),
            "{sizes:?}"
        );
        let versions = &ids["versions"];
        assert!(!versions.contains(&victim), "the oversized record was sent");
        let expected = stored["versions"].len() - 1;
        assert_eq!(
            versions.len(),
            expected,
            "every other version, once ({options})"
        );
    }
    let index = dir.path().join("index.sqlite3");
    let output = crate::common::exosphere()
        .args([
            "sync",
            "--server",
            &server.http,
            "--index",
            index.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    crate::common::assert_success(&output);
}
