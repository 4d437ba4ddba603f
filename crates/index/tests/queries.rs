//! The query side on an index built through `apply_page` from the real-shaped 2015 catalog
//! (`shared/fixtures/meteor-2015-catalog.ndjson`), plus small hand-made catalogs for the
//! orderings the fixture cannot show. Record shapes: spec §3.8.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use exosphere_index::{DepNode, Index, IndexError, Releases, SyncPage};
use serde_json::value::RawValue;

/// The fixture, loaded once into an index file the tests open separately.
fn fixture_index() -> Index {
    static BUILT: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = BUILT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fixture.sqlite3");
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/fixtures/meteor-2015-catalog.ndjson");
        let dump = std::fs::read_to_string(fixture).expect("the 2015 fixture");
        Index::open(&path).unwrap().load_dump(&dump, 500).unwrap();
        (dir, path)
    });
    Index::open_existing(path).unwrap()
}

fn names(nodes: &[DepNode]) -> Vec<&str> {
    nodes.iter().map(|n| n.name.as_str()).collect()
}

#[test]
fn show_iron_router() {
    let info = fixture_index().show("iron:router", None).unwrap();
    assert_eq!(info.name, "iron:router");
    assert_eq!(info.latest, "1.0.6");
    assert_eq!(info.version.version, "1.0.6");
    assert_eq!(
        info.version.description.as_deref(),
        Some("iron:router 1.0.6")
    );
    assert_eq!(
        info.version.git.as_deref(),
        Some("https://github.com/iron/router")
    );
    assert_eq!(info.version.published_by.as_deref(), Some("iron"));
    assert_eq!(
        info.version.published.as_deref(),
        Some("2014-08-29T00:00:01.723Z")
    );
    assert_eq!(info.maintainers, ["iron"]);
    assert_eq!(info.homepage, None);
    // Every version, in Meteor version order: prereleases before their release.
    let versions: Vec<&str> = info.versions.iter().map(|v| v.version.as_str()).collect();
    assert_eq!(
        versions,
        [
            "0.9.0",
            "0.9.1",
            "0.9.2-rc0",
            "0.9.2-rc2",
            "0.9.3-rc0",
            "0.9.3",
            "0.9.4",
            "1.0.0-pre0",
            "1.0.0-pre1",
            "1.0.0-pre2",
            "1.0.0-pre3",
            "1.0.0-pre4",
            "1.0.0-pre5",
            "1.0.0-rc.0",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.0.2",
            "1.0.3",
            "1.0.4",
            "1.0.5",
            "1.0.6",
        ]
    );
    let builds: Vec<&str> = info
        .version
        .builds
        .iter()
        .map(|b| b.architectures.as_str())
        .collect();
    assert_eq!(builds, ["os+web.browser+web.cordova"]);
    let deps: Vec<(&str, Option<&str>)> = info
        .version
        .dependencies
        .iter()
        .map(|d| (d.name.as_str(), d.constraint.as_deref()))
        .collect();
    assert_eq!(deps.len(), 13);
    assert!(deps.contains(&("iron:core", Some("1.0.6"))));
    assert!(deps.contains(&("meteor", Some("1.1.0"))));
    let meteor = info
        .version
        .dependencies
        .iter()
        .find(|d| d.name == "meteor")
        .unwrap();
    let arches: Vec<&str> = meteor.references.iter().map(|r| r.arch.as_str()).collect();
    assert_eq!(arches, ["os", "web.browser", "web.cordova"]);
    assert!(
        info.releases.is_empty(),
        "METEOR@1.1-rc.0 does not pin iron:router"
    );
}

#[test]
fn show_one_version_and_its_releases() {
    let index = fixture_index();
    let old = index.show("iron:router", Some("0.9.4")).unwrap();
    assert_eq!(old.version.version, "0.9.4");
    assert_eq!(old.latest, "1.0.6");
    assert_eq!(
        old.version.description.as_deref(),
        Some("iron:router 0.9.4")
    );

    let base = index.show("accounts-base", None).unwrap();
    let releases: Vec<(&str, &str, &str)> = base
        .releases
        .iter()
        .map(|r| (r.track.as_str(), r.release.as_str(), r.version.as_str()))
        .collect();
    assert_eq!(releases, [("METEOR", "1.1-rc.0", "1.1.3")]);
    let pinned = index.show("accounts-base", Some("1.1.3")).unwrap();
    assert_eq!(pinned.releases.len(), 1);

    let missing = index.show("iron:router", Some("9.9.9")).unwrap_err();
    assert!(
        matches!(missing, IndexError::UnknownVersion { .. }),
        "{missing}"
    );
    assert!(missing.to_string().contains("9.9.9"));
    let unknown = index.show("no-such:package", None).unwrap_err();
    assert!(
        matches!(unknown, IndexError::UnknownPackage { .. }),
        "{unknown}"
    );
}

#[test]
fn deps_of_iron_router_resolve_to_the_newest_admitted_version() {
    let report = fixture_index().deps("iron:router", None, false, 1).unwrap();
    assert_eq!(
        (report.name.as_str(), report.version.as_str()),
        ("iron:router", "1.0.6")
    );
    assert!(!report.reverse);
    assert_eq!(
        names(&report.nodes),
        [
            "deps",
            "ejson",
            "iron:controller",
            "iron:core",
            "iron:layout",
            "iron:location",
            "iron:middleware-stack",
            "iron:url",
            "meteor",
            "templating",
            "ui",
            "underscore",
            "webapp",
        ]
    );
    let core = report.nodes.iter().find(|n| n.name == "iron:core").unwrap();
    assert_eq!(core.constraint.as_deref(), Some("1.0.6"));
    assert_eq!(core.version.as_deref(), Some("1.0.6"));
    assert!(
        core.children.is_empty(),
        "depth 1 lists direct dependencies only"
    );
    // `meteor 1.1.0` admits the newest 1.x official version, not a 2.x or a prerelease.
    let meteor = report.nodes.iter().find(|n| n.name == "meteor").unwrap();
    let chosen = meteor.version.as_deref().unwrap();
    assert!(
        chosen.starts_with("1.") && !chosen.contains('-'),
        "{chosen}"
    );
}

#[test]
fn weak_dependencies_are_kept_and_not_expanded() {
    let report = fixture_index()
        .deps("iron:core", Some("1.0.6"), false, 3)
        .unwrap();
    let weak = report
        .nodes
        .iter()
        .find(|n| n.name == "cmather:iron-core")
        .unwrap();
    assert!(weak.weak);
    assert_eq!(weak.constraint.as_deref(), Some("0.2.0"));
    assert!(weak.references.iter().all(|r| r.weak));
    assert!(
        weak.children.is_empty(),
        "a weak dependency pulls nothing in"
    );
}

#[test]
fn deps_tree_expands_each_package_once() {
    let report = fixture_index()
        .deps("iron:router", None, false, u32::MAX)
        .unwrap();
    let mut expanded = std::collections::HashSet::new();
    let mut repeated = 0;
    fn walk(
        nodes: &[DepNode],
        expanded: &mut std::collections::HashSet<String>,
        repeated: &mut usize,
    ) {
        for node in nodes {
            if node.repeated {
                *repeated += 1;
                assert!(node.children.is_empty());
            }
            if !node.children.is_empty() {
                assert!(
                    expanded.insert(node.name.clone()),
                    "{} expanded twice",
                    node.name
                );
            }
            walk(&node.children, expanded, repeated);
        }
    }
    walk(&report.nodes, &mut expanded, &mut repeated);
    assert!(expanded.contains("iron:controller") && expanded.contains("meteor"));
    assert!(
        repeated > 0,
        "shared dependencies (meteor, underscore) are marked, not repeated"
    );

    let shallow = fixture_index().deps("iron:router", None, false, 2).unwrap();
    for node in &shallow.nodes {
        for child in &node.children {
            assert!(
                child.children.is_empty(),
                "depth 2 stops at the second level"
            );
        }
    }
}

#[test]
fn reverse_deps_list_the_packages_that_depend_on_it() {
    let index = fixture_index();
    let report = index.deps("iron:core", None, true, 1).unwrap();
    assert!(report.reverse);
    assert_eq!(
        names(&report.nodes),
        [
            "iron:controller",
            "iron:dynamic-template",
            "iron:layout",
            "iron:location",
            "iron:middleware-stack",
            "iron:router",
            "iron:url",
        ]
    );
    let router = report
        .nodes
        .iter()
        .find(|n| n.name == "iron:router")
        .unwrap();
    assert_eq!(router.version.as_deref(), Some("1.0.6"));
    assert_eq!(router.constraint.as_deref(), Some("1.0.6"));

    let users = index.deps("iron:router", None, true, 1).unwrap();
    assert_eq!(names(&users.nodes), ["splendido:accounts-templates-core"]);
    assert_eq!(users.nodes[0].constraint.as_deref(), Some("0.9.4"));
    // That constraint (0.9.4: >= 0.9.4, < 1.0.0) admits 0.9.4 but not 1.0.6.
    let admits = index.deps("iron:router", Some("0.9.4"), true, 1).unwrap();
    assert_eq!(names(&admits.nodes), ["splendido:accounts-templates-core"]);
    let rejects = index.deps("iron:router", Some("1.0.6"), true, 1).unwrap();
    assert!(rejects.nodes.is_empty());

    // Two levels: who depends on the dependents of iron:core.
    let tree = index.deps("iron:core", None, true, 2).unwrap();
    let router = tree.nodes.iter().find(|n| n.name == "iron:router").unwrap();
    assert_eq!(
        names(&router.children),
        ["splendido:accounts-templates-core"]
    );
}

#[test]
fn search_ranks_names_first() {
    let index = fixture_index();
    let hits = index.search("router", None, 20).unwrap();
    let found: Vec<&str> = hits.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(found, ["iron:router", "cmather:iron-router"]);
    assert_eq!(hits[0].version, "1.0.6");
    assert_eq!(hits[0].maintainers, ["iron"]);
    assert_eq!(hits[0].description.as_deref(), Some("iron:router 1.0.6"));

    // The exact name comes first even when other names match as well.
    let exact = index.search("iron:router", None, 20).unwrap();
    assert_eq!(exact[0].name, "iron:router");
    // Prefixes match.
    let prefix = index.search("rout", None, 20).unwrap();
    let mut found: Vec<&str> = prefix.iter().map(|h| h.name.as_str()).collect();
    found.sort_unstable();
    assert_eq!(
        found,
        [
            "cmather:iron-router",
            "iron:router",
            "local-test:routepolicy",
            "routepolicy"
        ]
    );
    // --limit and --maintainer.
    assert_eq!(index.search("iron", None, 3).unwrap().len(), 3);
    let by_iron = index.search("iron", Some("iron"), 50).unwrap();
    assert!(!by_iron.is_empty());
    assert!(
        by_iron
            .iter()
            .all(|h| h.maintainers.contains(&"iron".to_owned()))
    );
    assert!(
        by_iron.iter().all(|h| h.name.starts_with("iron:")),
        "cmather's are not iron's"
    );
    let all_of_iron = index.search("", Some("iron"), 50).unwrap();
    assert_eq!(all_of_iron.len(), by_iron.len());
    assert!(index.search("zzzzzz", None, 20).unwrap().is_empty());
    let empty = index.search(" :: ", None, 20).unwrap_err();
    assert!(matches!(empty, IndexError::EmptyQuery { .. }));
}

#[test]
fn releases_of_the_fixture() {
    let index = fixture_index();
    let Releases::Tracks(tracks) = index.releases(None).unwrap() else {
        panic!("tracks expected");
    };
    assert_eq!(tracks.len(), 1);
    assert_eq!(tracks[0].track, "METEOR");
    assert_eq!(tracks[0].versions, 1);
    assert_eq!(tracks[0].recommended, None, "1.1-rc.0 is not recommended");
    assert_eq!(tracks[0].maintainers, ["mdg"]);
    let Releases::Track { track, versions } = index.releases(Some("METEOR")).unwrap() else {
        panic!("one track expected");
    };
    assert_eq!(track, "METEOR");
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].version, "1.1-rc.0");
    assert_eq!(versions[0].tool.as_deref(), Some("meteor-tool@1.1.3-rc.0"));
    assert_eq!(versions[0].order_key.as_deref(), Some("0001.0001-rc0000"));
    assert!(versions[0].packages > 100);
    assert!(!versions[0].recommended);
    let error = index.releases(Some("NOPE")).unwrap_err();
    assert!(matches!(error, IndexError::UnknownTrack { .. }), "{error}");
}

fn raw(text: String) -> Box<RawValue> {
    RawValue::from_string(text).unwrap()
}

fn version(id: &str, name: &str, version: &str, description: &str, updated: i64) -> Box<RawValue> {
    raw(format!(
        r#"{{"_id":"{id}","packageName":"{name}","version":"{version}","description":"{description}","dependencies":{{}},"lastUpdated":{{"$date":{updated}}}}}"#
    ))
}

fn apply(index: &mut Index, versions: Vec<Box<RawValue>>, up_to_date: bool) {
    let token = raw("{}".into());
    index
        .apply_page(&SyncPage {
            reset_data: false,
            up_to_date,
            sync_token: &token,
            collections: vec![("versions", versions.iter().map(AsRef::as_ref).collect())],
        })
        .unwrap();
}

#[test]
fn latest_prefers_official_versions_and_equal_matches_rank_by_recency() {
    let dir = tempfile::tempdir().unwrap();
    let mut index = Index::open(&dir.path().join("index.sqlite3")).unwrap();
    apply(
        &mut index,
        vec![
            version("a1", "alpha:widget", "1.0.0", "Makes widgets", 1000),
            version("a2", "alpha:widget", "1.1.0-rc.1", "Makes widgets", 1000),
            version("b1", "bravo:widget", "2.0.0-beta.1", "Makes widgets", 3000),
            version("b2", "bravo:widget", "2.0.0-beta.2", "Makes widgets", 3000),
            version("c1", "charl:widget", "0.1.0", "Makes widgets", 2000),
        ],
        true,
    );
    assert_eq!(index.show("alpha:widget", None).unwrap().latest, "1.0.0");
    assert_eq!(
        index.show("bravo:widget", None).unwrap().latest,
        "2.0.0-beta.2"
    );
    let hits = index.search("widget", None, 10).unwrap();
    let found: Vec<&str> = hits.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(
        found,
        ["bravo:widget", "charl:widget", "alpha:widget"],
        "newest first"
    );
}

#[test]
fn search_follows_updates_once_the_sync_is_up_to_date() {
    let dir = tempfile::tempdir().unwrap();
    let mut index = Index::open(&dir.path().join("index.sqlite3")).unwrap();
    apply(
        &mut index,
        vec![version("a1", "alpha:thing", "1.0.0", "Parses turnips", 1)],
        true,
    );
    assert_eq!(index.search("turnips", None, 10).unwrap().len(), 1);
    // A newer version with another summary: the page that is not yet up to date leaves
    // search as it was, the last page brings it up to date.
    apply(
        &mut index,
        vec![version("a2", "alpha:thing", "1.1.0", "Parses carrots", 2)],
        false,
    );
    apply(&mut index, vec![], true);
    assert!(index.search("turnips", None, 10).unwrap().is_empty());
    let hits = index.search("carrots", None, 10).unwrap();
    assert_eq!((hits.len(), hits[0].version.as_str()), (1, "1.1.0"));
    // An older version arriving later changes nothing.
    apply(
        &mut index,
        vec![version("a0", "alpha:thing", "0.9.0", "Parses beets", 3)],
        true,
    );
    assert!(index.search("beets", None, 10).unwrap().is_empty());
    assert_eq!(index.show("alpha:thing", None).unwrap().latest, "1.1.0");
}

#[test]
fn queries_on_a_never_synced_index_say_to_sync() {
    let dir = tempfile::tempdir().unwrap();
    let index = Index::open(&dir.path().join("index.sqlite3")).unwrap();
    let error = index.search("x", None, 1).unwrap_err();
    assert!(matches!(error, IndexError::NotSynced { .. }), "{error}");
    assert!(error.to_string().contains("exosphere sync"));
    assert!(index.show("x", None).is_err());
    assert!(index.releases(None).is_err());
}

/// A version of `name` with the given JSON fields after the required ones.
fn version_with(id: &str, name: &str, version: &str, extra: &str) -> Box<RawValue> {
    raw(format!(
        r#"{{"_id":"{id}","packageName":"{name}","version":"{version}","description":"Makes gadgets","lastUpdated":{{"$date":1000}}{extra}}}"#
    ))
}

/// Spec §3.8: an `unmigrated: true` version is hidden from `show` and `search`, so it is
/// never the latest version of a package that has a migrated one, nor what `deps` resolves
/// a constraint to; in a first sync, and when a later page marks the latest version
/// unmigrated. A package whose every version is unmigrated has its greatest one as latest,
/// which `show` shows and search finds only when asked.
#[test]
fn unmigrated_versions_are_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let mut index = Index::open(&dir.path().join("index.sqlite3")).unwrap();
    let user =
        r#","dependencies":{"alpha:gadget":{"constraint":"1.0.0","references":[{"arch":"os"}]}}"#;
    apply(
        &mut index,
        vec![
            version_with("a1", "alpha:gadget", "1.0.0", ""),
            version_with("a2", "alpha:gadget", "1.5.0", r#","unmigrated":true"#),
            version_with("a3", "alpha:gadget", "1.2.0", r#","unmigrated":false"#),
            version_with(
                "o1",
                "only:unmigrated",
                "1.0.0",
                &format!(r#","unmigrated":true{user}"#),
            ),
            version_with("u1", "bravo:user", "1.0.0", user),
        ],
        true,
    );
    let info = index.show("alpha:gadget", None).unwrap();
    assert_eq!(info.latest, "1.2.0");
    let versions: Vec<&str> = info.versions.iter().map(|v| v.version.as_str()).collect();
    assert_eq!(versions, ["1.0.0", "1.2.0"]);
    let hits = index.search("gadget", None, 10).unwrap();
    let found: Vec<(&str, &str)> = hits
        .iter()
        .map(|h| (h.name.as_str(), h.version.as_str()))
        .collect();
    assert_eq!(found, [("alpha:gadget", "1.2.0"), ("bravo:user", "1.0.0")]);
    let only = index.show("only:unmigrated", None).unwrap();
    assert_eq!(only.latest, "1.0.0");
    assert!(only.version.unmigrated);
    // No app can use it, so it depends on nothing as far as dependents go.
    let dependents = index.dependents("alpha:gadget", 0, 10).unwrap();
    assert_eq!(names(&dependents.items), ["bravo:user"]);
    let deps = index.deps("bravo:user", None, false, 1).unwrap();
    assert_eq!(deps.nodes[0].version.as_deref(), Some("1.2.0"));

    // A later page marks the latest version unmigrated: the next one takes its place.
    apply(
        &mut index,
        vec![version_with(
            "a3",
            "alpha:gadget",
            "1.2.0",
            r#","unmigrated":true"#,
        )],
        true,
    );
    assert_eq!(index.show("alpha:gadget", None).unwrap().latest, "1.0.0");
    assert_eq!(index.search("alpha", None, 10).unwrap()[0].version, "1.0.0");
    let deps = index.deps("bravo:user", None, false, 1).unwrap();
    assert_eq!(deps.nodes[0].version.as_deref(), Some("1.0.0"));

    // Every version of alpha:gadget unmigrated: its greatest is latest, and search leaves
    // it out unless asked; bravo:user's dependency resolves to none of them.
    apply(
        &mut index,
        vec![version_with(
            "a1",
            "alpha:gadget",
            "1.0.0",
            r#","unmigrated":true"#,
        )],
        true,
    );
    let info = index.show("alpha:gadget", None).unwrap();
    assert_eq!(
        (info.latest.as_str(), info.version.unmigrated),
        ("1.5.0", true)
    );
    let versions: Vec<&str> = info.versions.iter().map(|v| v.version.as_str()).collect();
    assert_eq!(versions, ["1.0.0", "1.2.0", "1.5.0"]);
    assert!(
        index
            .search("gadget", None, 10)
            .unwrap()
            .iter()
            .all(|h| h.name != "alpha:gadget")
    );
    let asked = index
        .find(&exosphere_index::Search {
            text: "alpha".into(),
            include_unmigrated: true,
            limit: 10,
            ..exosphere_index::Search::default()
        })
        .unwrap();
    assert_eq!(
        (asked[0].name.as_str(), asked[0].version.as_str()),
        ("alpha:gadget", "1.5.0")
    );
    let deps = index.deps("bravo:user", None, false, 1).unwrap();
    assert_eq!(deps.nodes[0].version, None);

    // A migrated version again: it is latest at once, whatever the unmigrated ones rank.
    apply(
        &mut index,
        vec![version_with("a4", "alpha:gadget", "0.9.0", "")],
        true,
    );
    let info = index.show("alpha:gadget", None).unwrap();
    assert_eq!(
        (info.latest.as_str(), info.version.unmigrated),
        ("0.9.0", false)
    );
    assert_eq!(info.versions.len(), 1);
    assert_eq!(
        index.search("gadget", None, 10).unwrap()[0].name,
        "alpha:gadget"
    );
}

/// `deps --tree` expands at most 256 levels (`MAX_TREE_DEPTH`, documented in the README),
/// whatever `--depth` asks, so a crafted long dependency chain cannot exhaust the stack.
#[test]
fn deps_tree_depth_is_capped() {
    const MAX_TREE_DEPTH: u32 = 256;
    let dir = tempfile::tempdir().unwrap();
    let mut index = Index::open(&dir.path().join("index.sqlite3")).unwrap();
    let chain = MAX_TREE_DEPTH as usize + 50;
    let versions = (0..chain)
        .map(|n| {
            let next = format!(
                r#","dependencies":{{"chain:p{}":{{"constraint":null,"references":[{{"arch":"os"}}]}}}}"#,
                n + 1
            );
            version_with(&format!("c{n}"), &format!("chain:p{n}"), "1.0.0", &next)
        })
        .collect();
    apply(&mut index, versions, true);
    for reverse in [false, true] {
        let start = if reverse {
            format!("chain:p{}", chain - 1)
        } else {
            "chain:p0".to_owned()
        };
        let report = index.deps(&start, None, reverse, u32::MAX).unwrap();
        let mut levels = 0;
        let mut nodes = &report.nodes;
        while let Some(node) = nodes.first() {
            levels += 1;
            nodes = &node.children;
        }
        assert_eq!(levels, MAX_TREE_DEPTH, "reverse: {reverse}");
    }
}
