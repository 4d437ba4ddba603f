//! The ingest contract the sync client relies on: pages and tokens commit together, a
//! record without an `_id` fails its whole page while one of unexpected shape is kept
//! raw, `resetData` starts over, files that are not usable indexes are refused with the next step to take (spec §3.2–§3.3, §3.7, §3.8).

use std::path::Path;

use exosphere_index::{Index, IndexError, SCHEMA_VERSION, SyncPage};
use serde_json::value::RawValue;

fn raw(text: &str) -> Box<RawValue> {
    RawValue::from_string(text.to_owned()).expect("test JSON is valid")
}

/// Builds a page from `(collection, [record JSON])` pairs.
fn page<'a>(
    token: &'a RawValue,
    records: &'a [(&'a str, Vec<Box<RawValue>>)],
    reset_data: bool,
    up_to_date: bool,
) -> SyncPage<'a> {
    SyncPage {
        reset_data,
        up_to_date,
        sync_token: token,
        collections: records
            .iter()
            .map(|(name, docs)| (*name, docs.iter().map(AsRef::as_ref).collect()))
            .collect(),
    }
}

fn package(id: &str, name: &str) -> Box<RawValue> {
    raw(&format!(
        r#"{{"_id":"{id}","name":"{name}","maintainers":[{{"username":"ann","id":"u1"}}],"lastUpdated":{{"$date":1420070400000}}}}"#
    ))
}

fn version(id: &str, name: &str, version: &str) -> Box<RawValue> {
    raw(&format!(
        r#"{{"_id":"{id}","packageName":"{name}","version":"{version}","description":"{name} does things","dependencies":{{"meteor":{{"constraint":null,"references":[{{"arch":"os"}},{{"arch":"web.browser","weak":true}}]}}}},"published":{{"$date":1420070400000}},"lastUpdated":{{"$date":1420070400000}}}}"#
    ))
}

fn counts(index: &Index) -> Vec<(String, u64)> {
    index.counts().expect("counts")
}

fn count(index: &Index, collection: &str) -> u64 {
    counts(index)
        .into_iter()
        .find(|(name, _)| name == collection)
        .map(|(_, n)| n)
        .expect("every collection is counted")
}

#[test]
fn a_new_index_is_empty_and_never_synced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dirs/index.sqlite3");
    let index = Index::open(&path).expect("creates the file and its directories");
    assert!(path.exists());
    assert_eq!(index.sync_token().unwrap(), None);
    let names: Vec<String> = counts(&index)
        .into_iter()
        .map(|(name, n)| {
            assert_eq!(n, 0);
            name
        })
        .collect();
    assert_eq!(
        names,
        [
            "packages",
            "versions",
            "builds",
            "releaseTracks",
            "releaseVersions"
        ]
    );
}

#[test]
fn pages_and_their_tokens_commit_together_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.sqlite3");
    let mut index = Index::open(&path).unwrap();

    let token = raw(r#"{"format":"1.1","packages":1}"#);
    let records = [
        (
            "packages",
            vec![package("p1", "ann:one"), package("p2", "ann:two")],
        ),
        ("versions", vec![version("v1", "ann:one", "1.0.0")]),
        ("somethingNew", vec![raw(r#"{"_id":"x"}"#)]),
    ];
    let applied = index
        .apply_page(&page(&token, &records, false, false))
        .unwrap();
    assert_eq!(
        (
            applied.records,
            applied.inserted,
            applied.updated,
            applied.ignored
        ),
        (3, 3, 0, 1)
    );
    assert_eq!(
        index.sync_token().unwrap().as_deref(),
        Some(r#"{"format":"1.1","packages":1}"#)
    );
    drop(index);

    // A second process (the resumed sync) sees the committed page and continues.
    let mut index = Index::open(&path).unwrap();
    assert_eq!(count(&index, "packages"), 2);
    assert_eq!(count(&index, "versions"), 1);
    let token = raw(r#"{"format":"1.1","packages":2}"#);
    let records = [(
        "versions",
        vec![
            version("v1", "ann:one", "1.0.0"),
            version("v2", "ann:one", "1.1.0"),
        ],
    )];
    let applied = index
        .apply_page(&page(&token, &records, false, true))
        .unwrap();
    // A first sync appends and keeps the last copy of a record sent twice at its end.
    assert_eq!(applied.records, 2);
    assert_eq!(count(&index, "versions"), 2, "v1 sent twice is one record");
    assert_eq!(
        index.sync_token().unwrap().as_deref(),
        Some(r#"{"format":"1.1","packages":2}"#)
    );

    // Once up to date, pages update records in place.
    let token = raw(r#"{"format":"1.1","packages":3}"#);
    let records = [(
        "versions",
        vec![
            version("v2", "ann:one", "1.1.0"),
            version("v3", "ann:one", "1.2.0"),
        ],
    )];
    let applied = index
        .apply_page(&page(&token, &records, false, true))
        .unwrap();
    assert_eq!(
        (applied.records, applied.inserted, applied.updated),
        (2, 1, 1)
    );
    assert_eq!(count(&index, "versions"), 3);
}

/// The first sync defers the big indexes; queries wait for its end, and a record sent twice
/// (it changed during the sync) ends with its last copy.
#[test]
fn an_unfinished_first_sync_is_refused_by_queries_until_it_completes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.sqlite3");
    let mut index = Index::open(&path).unwrap();
    let build = |id: &str, version_id: &str, arch: &str| {
        raw(&format!(
            r#"{{"_id":"{id}","versionId":"{version_id}","buildArchitectures":"{arch}","build":{{"url":"u"}}}}"#
        ))
    };
    let token = raw(r#"{"n":1}"#);
    let records = [
        ("packages", vec![package("p1", "ann:one")]),
        (
            "versions",
            vec![
                version("v1", "ann:one", "1.0.0"),
                version("v2", "ann:one", "2.0.0"),
            ],
        ),
        (
            "builds",
            vec![build("b1", "v1", "os"), build("b2", "v2", "os")],
        ),
    ];
    index
        .apply_page(&page(&token, &records, false, false))
        .unwrap();
    let error = index.show("ann:one", None).unwrap_err();
    assert!(matches!(error, IndexError::Unfinished { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains("run `exosphere sync` to complete it"),
        "{error}"
    );
    drop(index);

    // The resumed sync sends v2 and b2 again, changed, and ends.
    let mut index = Index::open(&path).unwrap();
    let token = raw(r#"{"n":2}"#);
    let changed = raw(
        r#"{"_id":"v2","packageName":"ann:one","version":"2.0.0","description":"changed","dependencies":{"b":{"constraint":"1.0.0","references":[{"arch":"os"}]}}}"#,
    );
    let records = [
        ("versions", vec![changed]),
        ("builds", vec![build("b2", "v2", "os+web.browser")]),
    ];
    index
        .apply_page(&page(&token, &records, false, true))
        .unwrap();
    assert_eq!(count(&index, "versions"), 2);
    assert_eq!(count(&index, "builds"), 2);
    let info = index.show("ann:one", None).unwrap();
    assert_eq!(info.latest, "2.0.0");
    assert_eq!(info.version.description.as_deref(), Some("changed"));
    let deps: Vec<&str> = info
        .version
        .dependencies
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(deps, ["b"], "the dropped copy's dependencies are gone");
    let builds: Vec<&str> = info
        .version
        .builds
        .iter()
        .map(|b| b.architectures.as_str())
        .collect();
    assert_eq!(builds, ["os+web.browser"]);
    assert_eq!(index.search("changed", None, 5).unwrap().len(), 1);
    let deps = index.deps("ann:one", None, false, 1).unwrap();
    assert_eq!(deps.nodes.len(), 1);
    assert_eq!(deps.nodes[0].version, None, "`b` is not in the index");
}

/// Only a record that cannot be stored at all (not an object, or without a string `_id`)
/// fails its page, naming itself; nothing of that page is applied.
#[test]
fn a_record_without_an_id_fails_the_whole_page_and_names_itself() {
    let dir = tempfile::tempdir().unwrap();
    let mut index = Index::open(&dir.path().join("index.sqlite3")).unwrap();
    let first = raw(r#"{"n":1}"#);
    let records = [("packages", vec![package("p1", "ann:one")])];
    index
        .apply_page(&page(&first, &records, false, false))
        .unwrap();

    let cases: [(&str, Box<RawValue>, &str, &str); 4] = [
        ("builds", raw(r#"{"name":"no id"}"#), "?", "_id"),
        (
            "versions",
            raw(r#"{"_id":7,"version":"1.0.0"}"#),
            "?",
            "string",
        ),
        ("packages", raw(r#"["p3","ann:three"]"#), "?", "object"),
        ("releaseTracks", raw(r#""METEOR""#), "?", "object"),
    ];
    for (collection, bad, id, reason) in cases {
        let second = raw(r#"{"n":2}"#);
        let records = [
            ("packages", vec![package("p2", "ann:two")]),
            ("versions", vec![version("v9", "ann:two", "1.0.0")]),
            (collection, vec![bad]),
        ];
        let error = index
            .apply_page(&page(&second, &records, false, true))
            .expect_err("a record without an _id fails the page");
        let message = error.to_string();
        assert!(
            matches!(&error, IndexError::MalformedRecord { collection: c, id: i, .. } if c == collection && i == id),
            "{message}"
        );
        assert!(message.contains(reason), "{message}");
        // Nothing of that page was applied, and the token is still the first page's.
        assert_eq!(count(&index, "packages"), 1, "{message}");
        assert_eq!(count(&index, "versions"), 0);
        assert_eq!(index.sync_token().unwrap().as_deref(), Some(r#"{"n":1}"#));
    }
}

/// The rows `raw_records` holds, as (collection, id, reason).
fn raw_records(path: &Path) -> Vec<(String, String, String)> {
    let connection = rusqlite::Connection::open(path).unwrap();
    let mut statement = connection
        .prepare("SELECT collection, id, reason FROM raw_records ORDER BY collection, id")
        .unwrap();
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// A record with an `_id` but of a shape spec §3.8 does not describe (2014-era records of
/// packages.meteor.com may not all fit) is kept raw only and counted, and the sync goes
/// on: its page applies and the token moves past it, in a first sync and after.
#[test]
fn a_record_of_unexpected_shape_is_kept_raw_and_the_sync_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.sqlite3");
    let mut index = Index::open(&path).unwrap();
    let odd = [
        (
            "versions",
            raw(r#"{"_id":"bad1","packageName":"ann:one","version":"1.0"}"#),
            "major.minor.patch",
        ),
        (
            "versions",
            raw(r#"{"_id":"bad2","packageName":"ann:one"}"#),
            "version",
        ),
        ("packages", raw(r#"{"_id":"bad3","name":7}"#), "string"),
        (
            "versions",
            raw(
                r#"{"_id":"bad4","packageName":"ann:one","version":"3.0.0","dependencies":{"b":{"references":[{"weak":true}]}}}"#,
            ),
            "arch",
        ),
        (
            "builds",
            raw(r#"{"_id":"bad5","versionId":"v1"}"#),
            "buildArchitectures",
        ),
    ];
    for (number, first_sync) in [(1, true), (2, false)] {
        for (collection, bad, reason) in &odd {
            let token = raw(&format!(r#"{{"n":{number},"c":"{collection}"}}"#));
            let records = [
                ("packages", vec![package("p1", "ann:one")]),
                ("versions", vec![version("v1", "ann:one", "1.0.0")]),
                (*collection, vec![bad.clone()]),
            ];
            let applied = index
                .apply_page(&page(&token, &records, false, !first_sync))
                .expect("an odd record does not fail its page");
            assert_eq!((applied.records, applied.raw_only), (2, 1), "{bad}");
            assert_eq!(index.sync_token().unwrap().as_deref(), Some(token.get()));
            let stored = raw_records(&path);
            assert!(
                stored.iter().any(|(c, id, r)| c == collection
                    && bad.get().contains(id.as_str())
                    && r.contains(reason)),
                "{stored:?}"
            );
        }
    }
    assert_eq!(raw_records(&path).len(), 5);
    // No typed or derived rows: 3.0.0 (bad references) is neither a version nor latest.
    assert_eq!(count(&index, "versions"), 1);
    assert_eq!(count(&index, "builds"), 0);
    let info = index.show("ann:one", None).unwrap();
    assert_eq!(info.latest, "1.0.0");
    assert_eq!(info.versions.len(), 1);
}

/// A record is raw or typed, never both: a fixed copy replaces the raw one, and a copy that
/// no longer fits takes the typed rows away (and a latest version with them).
#[test]
fn a_record_moves_between_raw_and_typed_as_its_copies_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.sqlite3");
    let mut index = Index::open(&path).unwrap();
    let token = raw("{}");
    let first = [
        ("packages", vec![package("p1", "ann:one")]),
        (
            "versions",
            vec![
                version("v1", "ann:one", "1.0.0"),
                version("v2", "ann:one", "2.0.0"),
                raw(r#"{"_id":"v3","packageName":"ann:one","version":"3.0"}"#),
            ],
        ),
    ];
    index
        .apply_page(&page(&token, &first, false, true))
        .unwrap();
    assert_eq!(index.show("ann:one", None).unwrap().latest, "2.0.0");

    // v2 changes into an odd shape: it leaves the typed tables, 1.0.0 becomes latest.
    let second = [(
        "versions",
        vec![raw(
            r#"{"_id":"v2","packageName":"ann:one","version":"2.0"}"#,
        )],
    )];
    let applied = index
        .apply_page(&page(&token, &second, false, true))
        .unwrap();
    assert_eq!((applied.records, applied.raw_only), (0, 1));
    assert_eq!(count(&index, "versions"), 1);
    assert_eq!(index.show("ann:one", None).unwrap().latest, "1.0.0");
    assert_eq!(index.search("ann", None, 5).unwrap()[0].version, "1.0.0");
    let ids: Vec<String> = raw_records(&path)
        .into_iter()
        .map(|(_, id, _)| id)
        .collect();
    assert_eq!(ids, ["v2", "v3"]);

    // v3 is fixed: it is typed now, and latest.
    let third = [("versions", vec![version("v3", "ann:one", "3.0.0")])];
    index
        .apply_page(&page(&token, &third, false, true))
        .unwrap();
    assert_eq!(count(&index, "versions"), 2);
    assert_eq!(index.show("ann:one", None).unwrap().latest, "3.0.0");
    let ids: Vec<String> = raw_records(&path)
        .into_iter()
        .map(|(_, id, _)| id)
        .collect();
    assert_eq!(ids, ["v2"]);

    // The only package record goes odd: the package and its maintainers go.
    let fourth = [("packages", vec![raw(r#"{"_id":"p1","name":null}"#)])];
    index
        .apply_page(&page(&token, &fourth, false, true))
        .unwrap();
    assert_eq!(count(&index, "packages"), 0);
    assert!(index.show("ann:one", None).unwrap().maintainers.is_empty());
}

/// A version sent twice in a first sync whose last copy is odd keeps no typed row.
#[test]
fn a_first_sync_drops_the_typed_copy_of_a_record_that_went_odd() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.sqlite3");
    let mut index = Index::open(&path).unwrap();
    let token = raw("{}");
    let first = [(
        "versions",
        vec![
            version("v1", "ann:one", "1.0.0"),
            version("v2", "ann:one", "2.0.0"),
        ],
    )];
    index
        .apply_page(&page(&token, &first, false, false))
        .unwrap();
    let second = [(
        "versions",
        vec![raw(r#"{"_id":"v2","packageName":"ann:one","version":"2"}"#)],
    )];
    index
        .apply_page(&page(&token, &second, false, true))
        .unwrap();
    assert_eq!(count(&index, "versions"), 1);
    let info = index.show("ann:one", None).unwrap();
    assert_eq!(info.latest, "1.0.0");
    assert_eq!(info.version.dependencies.len(), 1);
}

#[test]
fn reset_data_replaces_everything_in_the_same_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let mut index = Index::open(&dir.path().join("index.sqlite3")).unwrap();
    let token = raw(r#"{"epoch":"a"}"#);
    let records = [
        (
            "packages",
            vec![package("p1", "ann:one"), package("p2", "ann:two")],
        ),
        ("versions", vec![version("v1", "ann:one", "1.0.0")]),
    ];
    index
        .apply_page(&page(&token, &records, false, true))
        .unwrap();

    // A reset page that fails leaves the old index in place.
    let token = raw(r#"{"epoch":"b"}"#);
    let records = [("packages", vec![raw(r#"{"name":"no id"}"#)])];
    index
        .apply_page(&page(&token, &records, true, true))
        .unwrap_err();
    assert_eq!(count(&index, "packages"), 2);

    let records = [("packages", vec![package("p3", "bob:three")])];
    let applied = index
        .apply_page(&page(&token, &records, true, true))
        .unwrap();
    assert_eq!(applied.inserted, 1);
    assert_eq!(count(&index, "packages"), 1);
    assert_eq!(count(&index, "versions"), 0);
    assert_eq!(
        index.sync_token().unwrap().as_deref(),
        Some(r#"{"epoch":"b"}"#)
    );
}

/// `collectionsCompressed` pages are plain JSON: dates are ISO strings or numbers (§3.7).
#[test]
fn plain_json_dates_from_compressed_pages_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.sqlite3");
    let mut index = Index::open(&path).unwrap();
    let token = raw("{}");
    let records = [
        (
            "packages",
            vec![
                raw(r#"{"_id":"p1","name":"a","lastUpdated":"2015-01-01T00:00:00.000Z"}"#),
                raw(r#"{"_id":"p2","name":"b","lastUpdated":1420070400000}"#),
                raw(
                    r#"{"_id":"p3","name":"c","lastUpdated":null,"maintainers":null,"homepage":null}"#,
                ),
            ],
        ),
        (
            "releaseVersions",
            vec![raw(
                r#"{"_id":"r1","track":"METEOR","version":"1.0","published":"2014-10-28T00:00:00Z","packages":{"a":"1.0.0"}}"#,
            )],
        ),
    ];
    index
        .apply_page(&page(&token, &records, false, true))
        .unwrap();
    assert_eq!(count(&index, "packages"), 3);
    assert_eq!(count(&index, "releaseVersions"), 1);

    let bad = [(
        "packages",
        vec![raw(r#"{"_id":"p4","name":"d","lastUpdated":"yesterday"}"#)],
    )];
    // A date that is none of those keeps its record raw only, with the reason.
    let applied = index.apply_page(&page(&token, &bad, false, true)).unwrap();
    assert_eq!(applied.raw_only, 1);
    let stored = raw_records(&path);
    assert!(
        stored[0].1 == "p4" && stored[0].2.contains("ISO-8601"),
        "{stored:?}"
    );
}

#[test]
fn rebuild_starts_from_an_empty_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.sqlite3");
    let mut index = Index::open(&path).unwrap();
    let token = raw("{}");
    let records = [("packages", vec![package("p1", "ann:one")])];
    index
        .apply_page(&page(&token, &records, false, true))
        .unwrap();
    drop(index);
    let index = Index::rebuild(&path).unwrap();
    assert_eq!(index.sync_token().unwrap(), None);
    assert_eq!(count(&index, "packages"), 0);
}

fn assert_refused(path: &Path, expected: &str) -> IndexError {
    let error = Index::open(path).expect_err("the file is refused");
    let message = error.to_string();
    assert!(message.contains(expected), "{message}");
    error
}

#[test]
fn a_file_that_is_not_an_index_asks_for_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.sqlite3");
    std::fs::write(
        &path,
        "this is not a database, it is a shopping list\n".repeat(200),
    )
    .unwrap();
    let error = assert_refused(&path, "exosphere sync --rebuild");
    assert!(matches!(error, IndexError::Corrupt { .. }), "{error}");

    // Rebuild fixes it.
    Index::rebuild(&path).unwrap();
    Index::open(&path).unwrap();

    // Another application's SQLite database is refused, not modified.
    let other = dir.path().join("other.sqlite3");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE mine (x); INSERT INTO mine VALUES (1);")
        .unwrap();
    assert_refused(&other, "not an Exosphere index");
    let still: i64 = rusqlite::Connection::open(&other)
        .unwrap()
        .query_row("SELECT x FROM mine", [], |row| row.get(0))
        .unwrap();
    assert_eq!(still, 1);
}

#[test]
fn a_damaged_index_asks_for_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.sqlite3");
    let dump = std::fs::read_to_string(fixture()).unwrap();
    let mut index = Index::open(&path).unwrap();
    index.load_dump(&dump, 500).unwrap();
    drop(index);
    // Overwrite the middle of the file (b-tree pages) with garbage.
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 64 * 1024);
    let middle = bytes.len() / 2;
    for byte in &mut bytes[middle - 16 * 1024..middle + 16 * 1024] {
        *byte = 0xA5;
    }
    std::fs::write(&path, bytes).unwrap();
    let outcome = Index::open(&path).and_then(|mut index| index.load_dump(&dump, 500).map(|_| ()));
    let error = outcome.expect_err("a damaged index is detected");
    assert!(matches!(error, IndexError::Corrupt { .. }), "{error}");
    assert!(
        error.to_string().contains("exosphere sync --rebuild"),
        "{error}"
    );
}

#[test]
fn an_index_from_a_newer_exosphere_asks_for_an_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.sqlite3");
    drop(Index::open(&path).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    let error = assert_refused(&path, "newer version of Exosphere");
    assert!(error.to_string().contains("upgrade Exosphere"), "{error}");
    assert!(
        matches!(error, IndexError::NewerSchema { found, supported, .. } if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION)
    );
}

#[test]
fn an_index_belongs_to_the_server_it_was_synced_from() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.sqlite3");
    let mut index = Index::open(&path).unwrap();
    assert_eq!(index.server().unwrap(), None);
    // Before any page, an index may change hands.
    index.claim("ws://a.example/websocket").unwrap();
    index.claim("ws://b.example/websocket").unwrap();
    let token = raw("{}");
    let records = [("packages", vec![package("p1", "ann:one")])];
    index
        .apply_page(&page(&token, &records, false, true))
        .unwrap();
    index.claim("ws://b.example/websocket").unwrap();
    let error = index
        .claim("ws://a.example/websocket")
        .expect_err("another server's pages are not mixed in");
    assert!(
        matches!(&error, IndexError::OtherServer { holds, asked, .. }
            if holds == "ws://b.example/websocket" && asked == "ws://a.example/websocket"),
        "{error}"
    );
    assert!(error.to_string().contains("--rebuild"), "{error}");
    drop(index);
    // The owner survives reopening; a rebuild forgets it.
    let index = Index::open(&path).unwrap();
    assert_eq!(
        index.server().unwrap().as_deref(),
        Some("ws://b.example/websocket")
    );
    drop(index);
    assert_eq!(Index::rebuild(&path).unwrap().server().unwrap(), None);
}

#[test]
fn a_schema_2_index_is_upgraded_in_place_and_adopted_by_its_next_sync() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.sqlite3");
    let mut index = Index::open(&path).unwrap();
    let token = raw(r#"{"n":1}"#);
    let records = [
        ("packages", vec![package("p1", "ann:one")]),
        (
            "versions",
            vec![
                version("v1", "ann:one", "1.0.0"),
                raw(r#"{"_id":"v2","packageName":"ann:two","version":"1.0.0","deprecated":true}"#),
                raw(
                    r#"{"_id":"v3","packageName":"ann:old","version":"0.8.0","unmigrated":true,"description":"From before 0.9"}"#,
                ),
            ],
        ),
    ];
    index
        .apply_page(&page(&token, &records, false, true))
        .unwrap();
    drop(index);
    // What schema 2 had: everything but the `origin` table, `latest.created` and the
    // `adds` tables (version 4), `latest.unmigrated` and the `latest` rows of packages
    // whose every version is unmigrated (version 5), with `search` lacking its `readme`
    // column (version 6).
    let connection = rusqlite::Connection::open(&path).unwrap();
    connection
        .execute_batch(
            "DROP TABLE search;
             CREATE VIRTUAL TABLE search USING fts5 (name, description, long_description);
             DROP TABLE origin; DROP TABLE adds; DROP TABLE adds_state;
             DROP INDEX latest_by_published; DROP INDEX latest_by_created;
             DELETE FROM search WHERE rowid IN (SELECT id FROM latest WHERE unmigrated);
             DELETE FROM latest WHERE unmigrated;
             ALTER TABLE latest DROP COLUMN created; ALTER TABLE latest DROP COLUMN published;
             ALTER TABLE latest DROP COLUMN deprecated; ALTER TABLE latest DROP COLUMN boost;
             ALTER TABLE latest DROP COLUMN unmigrated;
             PRAGMA user_version = 2;",
        )
        .unwrap();
    drop(connection);

    let mut index = Index::open(&path).expect("a schema 2 index opens");
    assert_eq!(index.sync_token().unwrap().as_deref(), Some(r#"{"n":1}"#));
    let found = index.search("things", None, 10).unwrap();
    assert_eq!(found.len(), 1, "search is filled again at once: {found:?}");
    assert_eq!(count(&index, "packages"), 1);
    assert_eq!(index.adds_through().unwrap(), None);
    assert_eq!(index.server().unwrap(), None);
    index.claim("ws://a.example/websocket").unwrap();
    assert_eq!(
        index.server().unwrap().as_deref(),
        Some("ws://a.example/websocket")
    );
    drop(index);
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    // `created` was filled from the versions, so the newest-first order works at once.
    let created: Option<i64> = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row(
            "SELECT created FROM latest WHERE package = 'ann:one'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(created, Some(1_420_070_400_000));
    let deprecated: Vec<String> = rusqlite::Connection::open(&path)
        .unwrap()
        .prepare("SELECT package FROM latest WHERE deprecated")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(deprecated, ["ann:two"]);
    // The package whose every version is unmigrated got its latest row and search row.
    let index = Index::open(&path).unwrap();
    let search = |include_unmigrated| {
        index
            .find(&exosphere_index::Search {
                text: "before".into(),
                include_unmigrated,
                limit: 10,
                ..exosphere_index::Search::default()
            })
            .unwrap()
            .into_iter()
            .map(|hit| hit.name)
            .collect::<Vec<_>>()
    };
    assert_eq!(search(true), ["ann:old"]);
    assert!(search(false).is_empty());
}

#[test]
fn queries_on_a_missing_index_say_to_sync_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("never-synced.sqlite3");
    let error = Index::open_existing(&path).expect_err("missing");
    assert!(
        error.to_string().contains("run `exosphere sync` first"),
        "{error}"
    );
    assert!(!path.exists(), "a query does not create an index");
}

fn fixture() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/meteor-2015-catalog.ndjson")
}

/// The 2015 fixture through pages of 500 and of 7 records per collection gives the same
/// counts as the dump has lines.
#[test]
fn the_2015_catalog_loads_in_pages_of_any_size() {
    let dump = std::fs::read_to_string(fixture()).expect("the 2015 fixture (../shared/fixtures)");
    for per_page in [500, 7] {
        let dir = tempfile::tempdir().unwrap();
        let mut index = Index::open(&dir.path().join("index.sqlite3")).unwrap();
        let applied = index.load_dump(&dump, per_page).unwrap();
        assert_eq!(applied.records, 8290);
        assert_eq!(applied.inserted, 8290);
        assert_eq!(
            counts(&index),
            [
                ("packages".to_owned(), 210),
                ("versions".to_owned(), 4039),
                ("builds".to_owned(), 4039),
                ("releaseTracks".to_owned(), 1),
                ("releaseVersions".to_owned(), 1),
            ]
        );
        // Loading it again starts over (the first page resets) and ends with the same index.
        let again = index.load_dump(&dump, per_page).unwrap();
        assert_eq!((again.inserted, again.updated), (8290, 0));
        assert_eq!(count(&index, "versions"), 4039);
    }
}

#[test]
fn a_bad_dump_line_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut index = Index::open(&dir.path().join("index.sqlite3")).unwrap();
    let dump = "{\"collection\":\"packages\",\"doc\":{\"_id\":\"a\",\"name\":\"a\"}}\n\n{\"collection\":\"widgets\",\"doc\":{}}\n";
    let error = index.load_dump(dump, 500).unwrap_err().to_string();
    assert!(
        error.contains("line 3") && error.contains("widgets"),
        "{error}"
    );
}

/// If the copy of a record that a first sync drops was some package's latest version, the
/// latest version is chosen again from what is left.
#[test]
fn a_dropped_copy_that_was_latest_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let mut index = Index::open(&dir.path().join("index.sqlite3")).unwrap();
    let token = raw("{}");
    let first = [(
        "versions",
        vec![
            version("x", "ann:one", "1.0.0"),
            version("y", "ann:one", "0.9.0"),
        ],
    )];
    index
        .apply_page(&page(&token, &first, false, false))
        .unwrap();
    let second = [("versions", vec![version("x", "ann:one", "0.5.0")])];
    index
        .apply_page(&page(&token, &second, false, true))
        .unwrap();
    assert_eq!(count(&index, "versions"), 2);
    let info = index.show("ann:one", None).unwrap();
    assert_eq!(info.latest, "0.9.0");
    let versions: Vec<&str> = info.versions.iter().map(|v| v.version.as_str()).collect();
    assert_eq!(versions, ["0.5.0", "0.9.0"]);
    assert_eq!(index.search("ann", None, 5).unwrap()[0].version, "0.9.0");
}

/// A build sent twice in a first sync (it changed while the sync ran) keeps its last copy.
#[test]
fn a_build_sent_twice_keeps_its_last_copy() {
    let dir = tempfile::tempdir().unwrap();
    let mut index = Index::open(&dir.path().join("index.sqlite3")).unwrap();
    let token = raw("{}");
    let build = |architectures: &str| {
        raw(&format!(
            r#"{{"_id":"b","versionId":"x","buildArchitectures":"{architectures}","buildPublished":{{"$date":1420070400000}}}}"#
        ))
    };
    let first = [
        ("versions", vec![version("x", "ann:one", "1.0.0")]),
        ("builds", vec![build("os")]),
    ];
    index
        .apply_page(&page(&token, &first, false, false))
        .unwrap();
    let second = [("builds", vec![build("os+web.browser")])];
    index
        .apply_page(&page(&token, &second, false, true))
        .unwrap();
    assert_eq!(count(&index, "builds"), 1);
    let builds = index.show("ann:one", None).unwrap().version.builds;
    let architectures: Vec<&str> = builds.iter().map(|b| b.architectures.as_str()).collect();
    assert_eq!(architectures, ["os+web.browser"]);
}

/// Versions that rank equal (they differ only in `+build`) leave the last one stored as
/// the latest, whether a first sync ranks them all at its end or a later page adds one.
#[test]
fn among_equal_versions_the_last_stored_is_latest() {
    let dir = tempfile::tempdir().unwrap();
    let mut index = Index::open(&dir.path().join("index.sqlite3")).unwrap();
    let token = raw("{}");
    let first = [(
        "versions",
        vec![
            version("a", "ann:one", "1.2.3+first"),
            version("b", "ann:one", "1.2.3"),
            version("c", "ann:one", "1.2.3-rc.1"),
        ],
    )];
    index
        .apply_page(&page(&token, &first, false, true))
        .unwrap();
    assert_eq!(index.show("ann:one", None).unwrap().latest, "1.2.3");
    let later = [("versions", vec![version("d", "ann:one", "1.2.3+later")])];
    index
        .apply_page(&page(&token, &later, false, true))
        .unwrap();
    assert_eq!(index.show("ann:one", None).unwrap().latest, "1.2.3+later");
}
