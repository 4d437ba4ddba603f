//! The query commands as a user runs them (`search`, `show`, `deps`, `releases`), against an
//! index file built through `apply_page` from the 2015 catalog fixture, and their errors:
//! missing, damaged and newer-schema indexes.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::{exosphere, fixture};
use serde_json::Value;

/// An index of the 2015 fixture in a temporary directory.
fn fixture_index(dir: &Path) -> PathBuf {
    index_of(dir, "")
}

/// An index of the 2015 fixture and the dump lines `more` in a temporary directory.
fn index_of(dir: &Path, more: &str) -> PathBuf {
    let path = dir.join("index.sqlite3");
    let dump = std::fs::read_to_string(fixture()).expect("the 2015 fixture") + "\n" + more;
    exosphere_index::Index::open(&path)
        .unwrap()
        .load_dump(&dump, 500)
        .unwrap();
    path
}

fn query(index: &Path, args: &[&str]) -> Output {
    exosphere()
        .args(args)
        .arg("--index")
        .arg(index)
        .output()
        .expect("exosphere runs")
}

/// Runs a query that must succeed and returns its standard output.
fn stdout(index: &Path, args: &[&str]) -> String {
    let output = query(index, args);
    assert!(
        output.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

fn json(index: &Path, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    serde_json::from_str(&stdout(index, &args)).expect("--json prints JSON")
}

/// Runs a query that must fail and returns its standard error.
fn failure(index: &Path, args: &[&str]) -> String {
    let output = query(index, args);
    assert!(!output.status.success(), "{args:?} should fail");
    String::from_utf8(output.stderr).expect("UTF-8 errors")
}

#[test]
fn search_show_deps_and_releases_answer_from_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let index = fixture_index(dir.path());

    let table = stdout(&index, &["search", "router"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("SUMMARY"),
        "{table}"
    );
    assert!(lines[1].starts_with("iron:router "), "{table}");
    let hits = json(&index, &["search", "router", "--limit", "1"]);
    assert_eq!(hits.as_array().unwrap().len(), 1);
    assert_eq!(hits[0]["name"], "iron:router");
    assert_eq!(hits[0]["version"], "1.0.6");
    let mine = json(&index, &["search", "", "--maintainer", "iron"]);
    assert!(mine.as_array().unwrap().len() > 5);

    let text = stdout(&index, &["show", "iron:router"]);
    assert!(text.starts_with("iron:router@1.0.6\n"), "{text}");
    for expected in [
        "Maintainers:  iron",
        "Git:          https://github.com/iron/router",
        "os+web.browser+web.cordova",
        "  iron:core 1.0.6\n",
        "Versions (22): 0.9.0, 0.9.1, 0.9.2-rc0",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    let old = json(&index, &["show", "iron:router@0.9.4"]);
    assert_eq!(old["version"]["version"], "0.9.4");
    assert_eq!(old["latest"], "1.0.6");
    let base = json(&index, &["show", "accounts-base"]);
    assert_eq!(base["releases"][0]["track"], "METEOR");
    assert_eq!(base["releases"][0]["release"], "1.1-rc.0");

    let deps = stdout(&index, &["deps", "iron:router"]);
    assert!(
        deps.lines().next().unwrap().starts_with("DEPENDENCY"),
        "{deps}"
    );
    assert!(
        deps.lines()
            .any(|l| l.starts_with("iron:core ") && l.contains("1.0.6")),
        "{deps}"
    );
    let weak = stdout(&index, &["deps", "iron:core@1.0.6"]);
    assert!(
        weak.lines()
            .any(|l| l.starts_with("cmather:iron-core") && l.ends_with("weak")),
        "{weak}"
    );
    let reverse = json(&index, &["deps", "iron:core", "--reverse"]);
    assert_eq!(reverse["reverse"], true);
    assert_eq!(reverse["nodes"].as_array().unwrap().len(), 7);
    let tree = stdout(&index, &["deps", "iron:router", "--tree", "--depth", "2"]);
    assert!(tree.starts_with("iron:router@1.0.6\n"), "{tree}");
    assert!(tree.contains("├── iron:controller@1.0.6 (1.0.6)"), "{tree}");
    assert!(tree.contains("│   ├── "), "two levels:\n{tree}");
    assert!(!tree.contains("│   │   "), "no third level:\n{tree}");

    let tracks = stdout(&index, &["releases"]);
    assert!(
        tracks.lines().nth(1).unwrap().starts_with("METEOR "),
        "{tracks}"
    );
    let meteor = json(&index, &["releases", "METEOR"]);
    assert_eq!(meteor["track"], "METEOR");
    assert_eq!(meteor["versions"][0]["version"], "1.1-rc.0");
}

/// `search --include-unmigrated` also lists a package whose every version is unmigrated
/// (published before Meteor 0.9), which `search` leaves out by default.
#[test]
fn search_includes_unmigrated_packages_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let version = serde_json::json!({"collection": "versions", "doc": {
        "_id": "classicVersion", "packageName": "old:classic-router", "version": "0.7.1",
        "description": "Routes for Meteor 0.8", "unmigrated": true,
        "published": {"$date": 1_380_000_000_000_i64}}});
    let index = index_of(dir.path(), &format!("{version}\n"));
    let names = |hits: Value| -> Vec<String> {
        hits.as_array()
            .unwrap()
            .iter()
            .map(|hit| hit["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let plain = names(json(&index, &["search", "classic-router"]));
    assert!(plain.is_empty(), "{plain:?}");
    let asked = json(
        &index,
        &["search", "classic-router", "--include-unmigrated"],
    );
    assert_eq!(names(asked.clone()), ["old:classic-router"]);
    assert_eq!(asked[0]["version"], "0.7.1");
    let shown = json(&index, &["show", "old:classic-router"]);
    assert_eq!(shown["version"]["unmigrated"], true);
}

#[test]
fn queries_explain_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let index = fixture_index(dir.path());
    assert!(failure(&index, &["show", "no-such:package"]).contains("no package `no-such:package`"));
    assert!(failure(&index, &["show", "iron:router@9.9.9"]).contains("no version `9.9.9`"));
    assert!(failure(&index, &["releases", "NOPE"]).contains("no release track `NOPE`"));
    assert!(failure(&index, &["search", "::"]).contains("no letters or digits"));
    assert!(failure(&index, &["deps", "iron:router", "--depth", "2"]).contains("--tree"));

    let missing = dir.path().join("missing.sqlite3");
    let error = failure(&missing, &["search", "router"]);
    assert!(error.contains("run `exosphere sync` first"), "{error}");
    assert!(!missing.exists(), "a query creates no index");

    let corrupt = dir.path().join("corrupt.sqlite3");
    std::fs::write(&corrupt, vec![0x42; 64 * 1024]).unwrap();
    let error = failure(&corrupt, &["show", "iron:router"]);
    assert!(error.contains("exosphere sync --rebuild"), "{error}");

    let newer = dir.path().join("newer.sqlite3");
    std::fs::copy(&index, &newer).unwrap();
    rusqlite::Connection::open(&newer)
        .unwrap()
        .pragma_update(None, "user_version", exosphere_index::SCHEMA_VERSION + 1)
        .unwrap();
    let error = failure(&newer, &["releases"]);
    assert!(
        error.contains("newer version of Exosphere") && error.contains("upgrade"),
        "{error}"
    );
}

/// Without --index, each server has its own file under the platform's data directory.
#[test]
fn the_server_url_picks_the_index_file() {
    let dir = tempfile::tempdir().unwrap();
    let data_home = dir.path().join("data-home");
    let path = data_home.join("exosphere/indexes/127.0.0.1-3999.sqlite3");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::rename(fixture_index(dir.path()), &path).unwrap();

    let run = |server: &str| {
        exosphere()
            .args(["show", "iron:router", "--server", server])
            .env("XDG_DATA_HOME", &data_home)
            .env_remove("EXOSPHERE_INDEX")
            .env_remove("METEOR_PACKAGE_SERVER_URL")
            .output()
            .unwrap()
    };
    let found = run("http://127.0.0.1:3999");
    assert!(
        found.status.success(),
        "{}",
        String::from_utf8_lossy(&found.stderr)
    );
    let other = run("http://127.0.0.1:4000");
    let error = String::from_utf8_lossy(&other.stderr);
    assert!(
        error.contains("127.0.0.1-4000.sqlite3") && error.contains("exosphere sync"),
        "{error}"
    );

    let by_env = exosphere()
        .args(["releases", "--json"])
        .env("EXOSPHERE_INDEX", &path)
        .output()
        .unwrap();
    assert!(
        by_env.status.success(),
        "{}",
        String::from_utf8_lossy(&by_env.stderr)
    );
}
