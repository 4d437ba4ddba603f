//! Tests of the generated catalog's bytes, shapes and references.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use serde_json::Value;

use super::*;
use crate::helpers::{order_key, tool_version};
use crate::params::{BLANK_HASH, EPOCH_END, EPOCH_START, ID_ALPHABET};

fn small(seed: u64) -> (Vec<u8>, SynthSummary) {
    let mut out = Vec::new();
    let summary = generate(Scale::Small, seed, &mut out).expect("writing to a Vec");
    (out, summary)
}

fn parse(bytes: &[u8]) -> Vec<Value> {
    std::str::from_utf8(bytes)
        .expect("UTF-8")
        .lines()
        .enumerate()
        .map(|(n, line)| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("line {}: {e}", n + 1))
        })
        .collect()
}

fn docs<'a>(lines: &'a [Value], collection: &'a str) -> impl Iterator<Item = &'a Value> {
    lines
        .iter()
        .filter(move |line| line["collection"] == collection)
        .map(|line| &line["doc"])
}

fn str_of<'a>(doc: &'a Value, field: &str) -> &'a str {
    doc[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} is not a string in {doc}"))
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'))
}

/// The Meteor package version grammar: semver `x.y.z`, optional `-pre`, optional
/// `_N` wrap, no `+build`.
fn is_meteor_version(version: &str) -> bool {
    let (body, wrap) = match version.rsplit_once('_') {
        Some((body, wrap)) => (body, Some(wrap)),
        None => (version, None),
    };
    if wrap.is_some_and(|w| !is_number(w)) || body.contains('+') {
        return false;
    }
    let (numbers, pre) = match body.split_once('-') {
        Some((numbers, pre)) => (numbers, Some(pre)),
        None => (body, None),
    };
    let parts: Vec<&str> = numbers.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| is_number(p))
        && pre.is_none_or(|pre| {
            pre.split('.').all(|id| {
                !id.is_empty()
                    && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && (!id.bytes().all(|b| b.is_ascii_digit()) || is_number(id))
            })
        })
}

#[test]
fn same_seed_gives_same_bytes_and_other_seeds_differ() {
    let (first, _) = small(42);
    let (again, _) = small(42);
    let (other, _) = small(43);
    assert!(first == again, "same seed, different output");
    assert!(first != other, "different seeds, same output");
}

#[test]
fn every_line_is_a_dump_record() {
    let (bytes, _) = small(1);
    assert!(bytes.ends_with(b"\n"));
    for line in parse(&bytes) {
        let collection = line["collection"].as_str().expect("collection");
        let object = line.as_object().expect("line is an object");
        let doc = line["doc"].as_object().expect("doc is an object");
        if collection == "stats" {
            assert_eq!(object.len(), 3, "{line}");
            let date = line["date"].as_str().expect("date");
            assert!(
                date.len() == 10 && date.starts_with("2025-12-"),
                "stats date {date}"
            );
            assert!(
                doc["name"].is_string() && doc["version"].is_string(),
                "{line}"
            );
            let direct = doc["directAdds"].as_u64().expect("directAdds");
            let total = doc["totalAdds"].as_u64().expect("totalAdds");
            assert!(direct <= total && total >= 1, "{line}");
            continue;
        }
        assert!(
            [
                "packages",
                "versions",
                "builds",
                "releaseTracks",
                "releaseVersions"
            ]
            .contains(&collection),
            "{collection}"
        );
        assert_eq!(object.len(), 2, "{line}");
        let id = str_of(&line["doc"], "_id");
        assert!(
            id.len() == 17 && id.bytes().all(|b| ID_ALPHABET.contains(&b)),
            "_id {id}"
        );
        for (field, value) in doc {
            if let Some(ms) = value.get("$date") {
                let ms = ms.as_i64().expect("$date is an integer");
                assert!((EPOCH_START..EPOCH_END).contains(&ms), "{field} {ms}");
            }
        }
    }
}

#[test]
fn summary_counts_what_was_written_and_small_is_small() {
    let (bytes, summary) = small(7);
    let lines = parse(&bytes);
    let count = |c: &str| lines.iter().filter(|l| l["collection"] == c).count() as u64;
    assert_eq!(summary.packages, count("packages"));
    assert_eq!(summary.versions, count("versions"));
    assert_eq!(summary.builds, count("builds"));
    assert_eq!(summary.release_tracks, count("releaseTracks"));
    assert_eq!(summary.release_versions, count("releaseVersions"));
    assert_eq!(summary.stats_rows, count("stats"));
    assert_eq!(summary.bytes, bytes.len() as u64);
    assert_eq!(summary.packages, 200);
    assert!((1_000..=2_500).contains(&summary.versions), "{summary:?}");
    assert!(
        summary.builds > summary.versions && summary.builds < 2 * summary.versions,
        "{summary:?}"
    );
    assert_eq!(summary.release_tracks, 3);
    assert!((10..=40).contains(&summary.release_versions), "{summary:?}");
    assert!((100..=2_000).contains(&summary.stats_rows), "{summary:?}");
}

#[test]
fn references_point_at_emitted_records() {
    let (bytes, _) = small(3);
    let lines = parse(&bytes);
    let version_ids: BTreeSet<&str> = docs(&lines, "versions").map(|d| str_of(d, "_id")).collect();
    let versions: BTreeSet<(&str, &str)> = docs(&lines, "versions")
        .map(|d| (str_of(d, "packageName"), str_of(d, "version")))
        .collect();
    // Packages only depend on packages written before them, so the graph is acyclic.
    let position: BTreeMap<&str, usize> = docs(&lines, "packages")
        .enumerate()
        .map(|(n, d)| (str_of(d, "name"), n))
        .collect();
    for doc in docs(&lines, "versions") {
        let own = position[str_of(doc, "packageName")];
        for name in doc["dependencies"]
            .as_object()
            .expect("dependencies")
            .keys()
        {
            if !name.starts_with("isobuild:") {
                let dep = position.get(name.as_str());
                assert!(
                    dep.is_some_and(|&dep| dep < own),
                    "dependency {name} of {doc}"
                );
            }
        }
    }
    for doc in docs(&lines, "builds") {
        assert!(version_ids.contains(str_of(doc, "versionId")), "{doc}");
    }
    let tracks: BTreeSet<&str> = docs(&lines, "releaseTracks")
        .map(|d| str_of(d, "name"))
        .collect();
    for doc in docs(&lines, "releaseVersions") {
        assert!(tracks.contains(str_of(doc, "track")), "{doc}");
        let tool = str_of(doc, "tool")
            .strip_prefix("meteor-tool@")
            .expect("tool");
        assert!(versions.contains(&("meteor-tool", tool)), "{doc}");
        let packages = doc["packages"].as_object().expect("packages");
        assert!(!packages.is_empty(), "{doc}");
        for (name, version) in packages {
            let version = version.as_str().expect("package version");
            assert!(
                versions.contains(&(name.as_str(), version)),
                "{name}@{version}"
            );
        }
    }
    for doc in docs(&lines, "stats") {
        let key = (str_of(doc, "name"), str_of(doc, "version"));
        assert!(versions.contains(&key), "{doc}");
    }
}

#[test]
fn names_and_versions_follow_meteor_rules() {
    let (bytes, _) = small(5);
    let lines = parse(&bytes);
    let names: Vec<&str> = docs(&lines, "packages")
        .map(|d| str_of(d, "name"))
        .collect();
    assert!(
        names
            .iter()
            .all(|n| exosphere_meteor::names::is_package_name(n)),
        "{names:?}"
    );
    assert_eq!(names.iter().collect::<BTreeSet<_>>().len(), names.len());
    assert!(names.contains(&"meteor") && names.contains(&"ecmascript"));
    assert!(names.iter().filter(|n| n.contains(':')).count() > names.len() / 2);
    assert!(names.iter().any(|n| n.contains(':') && n.contains('.')));

    let mut seen = BTreeSet::new();
    let (mut pre, mut wrap) = (0, 0);
    for doc in docs(&lines, "versions") {
        let version = str_of(doc, "version");
        assert!(is_meteor_version(version), "{version}");
        assert!(
            seen.insert((str_of(doc, "packageName"), version)),
            "duplicate {doc}"
        );
        pre += usize::from(version.contains('-'));
        wrap += usize::from(version.contains('_'));
        assert!(str_of(doc, "description").len() <= 100);
        assert!(doc.get("releaseName").is_some(), "releaseName key missing");
        for field in ["source", "readme"] {
            assert!(str_of(&doc[field], "url").starts_with("https://example.invalid/"));
        }
        assert_eq!(str_of(&doc["source"], "tarballHash").len(), 44);
    }
    assert!(pre > 0 && wrap > 0, "pre-releases {pre}, wraps {wrap}");
    for doc in docs(&lines, "builds") {
        let arch = str_of(doc, "buildArchitectures");
        let parts: Vec<&str> = arch.split('+').collect();
        assert!(parts.is_sorted(), "{arch}");
        assert!(parts[0].starts_with("os"), "{arch}");
    }
}

#[test]
fn the_awkward_shapes_of_real_data_are_present() {
    let (bytes, _) = small(1);
    let lines = parse(&bytes);
    let mut dependency_constraints = Vec::new();
    let mut flags = BTreeSet::new();
    for doc in docs(&lines, "versions") {
        for (name, dep) in doc["dependencies"].as_object().expect("dependencies") {
            let constraint = dep["constraint"].as_str();
            assert!(constraint.is_some() || name == "meteor", "{name}: {dep}");
            for reference in dep["references"].as_array().expect("references") {
                let arch = str_of(reference, "arch");
                assert!(
                    [
                        "os",
                        "web.browser",
                        "web.browser.legacy",
                        "web.cordova",
                        "plugin"
                    ]
                    .contains(&arch),
                    "{arch}"
                );
                for flag in ["weak", "unordered", "implied"] {
                    if reference.get(flag).is_some() {
                        assert_eq!(reference[flag], true);
                        flags.insert(flag);
                    }
                }
            }
            dependency_constraints.push((name.as_str(), constraint));
        }
    }
    let any = |pred: &dyn Fn(&str, Option<&str>) -> bool| {
        dependency_constraints.iter().any(|&(n, c)| pred(n, c))
    };
    assert!(
        any(&|n, c| n == "meteor" && c.is_none()),
        "null meteor constraint"
    );
    assert!(
        any(&|n, _| n == "isobuild:isopack-2"),
        "isobuild pseudo-package"
    );
    assert!(
        any(&|n, _| !n.starts_with("isobuild:") && n.contains('.')),
        "dotted key"
    );
    assert!(
        any(&|_, c| c.is_some_and(|c| c.starts_with('='))),
        "exact constraint"
    );
    assert!(
        any(&|_, c| c.is_some_and(|c| c.contains(" || "))),
        "either constraint"
    );
    assert_eq!(flags.len(), 3, "{flags:?}");
    assert!(docs(&lines, "versions").any(|d| d["dependencies"] == serde_json::json!({})));

    let architectures: BTreeSet<&str> = docs(&lines, "builds")
        .flat_map(|d| str_of(d, "buildArchitectures").split('+'))
        .collect();
    for arch in [
        "os",
        "os.linux.x86_64",
        "os.osx.x86_64",
        "os.osx.arm64",
        "os.windows.x86_64",
        "web.browser.legacy",
    ] {
        assert!(
            architectures.contains(arch),
            "no {arch} build in {architectures:?}"
        );
    }
    assert!(docs(&lines, "versions").any(|d| d["source"]["treeHash"] == BLANK_HASH));
    assert!(docs(&lines, "packages").any(|d| d.get("homepage").is_none()));
    assert!(docs(&lines, "packages").any(|d| d["homepage"].is_null()));
}

#[test]
fn many_records_share_a_last_updated_millisecond() {
    let (bytes, _) = small(1);
    let lines = parse(&bytes);
    for collection in ["versions", "builds"] {
        let mut ties: BTreeMap<i64, usize> = BTreeMap::new();
        for doc in docs(&lines, collection) {
            *ties
                .entry(doc["lastUpdated"]["$date"].as_i64().expect("date"))
                .or_default() += 1;
        }
        let biggest = ties.values().max().copied().unwrap_or(0);
        let tied: usize = ties.values().filter(|&&n| n > 1).sum();
        assert!(
            biggest >= 20 && tied >= 100,
            "{collection}: biggest {biggest}, tied {tied}"
        );
    }
}

#[test]
fn releases_carry_meteor_order_keys() {
    let (bytes, _) = small(2);
    let lines = parse(&bytes);
    let mut previous: Option<String> = None;
    for doc in docs(&lines, "releaseVersions") {
        let version = str_of(doc, "version");
        let key = str_of(doc, "orderKey");
        assert_eq!(Some(key.to_string()), order_key(version));
        assert_eq!(doc["recommended"], !version.contains('-'), "{doc}");
        if doc["track"] == "METEOR" {
            assert!(
                previous.as_deref().is_none_or(|p| p < key),
                "{key} after {previous:?}"
            );
            previous = Some(key.to_string());
        }
        assert_eq!(str_of(&doc["publishedBy"], "username"), "mdg");
    }
    assert!(previous.is_some());
}

#[test]
fn order_key_matches_meteor() {
    // Cases from Meteor's tools/tests/utils-tests.js.
    let cases = [
        ("1", Some("0001$")),
        ("0", Some("0000$")),
        ("01", None),
        ("", None),
        ("1.2.3", Some("0001.0002.0003$")),
        ("42.123", Some("0042.0123$")),
        ("1234", Some("1234$")),
        ("12345", None),
        ("123.012", None),
        ("1.2.3-preview", Some("0001.0002.0003!preview!!!!!!!!$")),
        (
            "1.2.3.4-AbCdEfG-HiJkLmO",
            Some("0001.0002.0003.0004!AbCdEfG-HiJkLmO$"),
        ),
        ("1.2.3.4-AbCdEfG-HiJkLmOp", None),
        (
            "1.2.3.4-AbCdEfG-HiJkLmO0",
            Some("0001.0002.0003.0004!AbCdEfG-HiJkLmO0000$"),
        ),
        ("1.2.3.4-AbCdEfG-HiJkLmO01", None),
        ("1.2.3.4-AbCdEfG-HiJkLmO12345", None),
        (
            "1.2.3.4-AbCdEfG-HiJkLmO15",
            Some("0001.0002.0003.0004!AbCdEfG-HiJkLmO0015$"),
        ),
        (
            "1.2.3.4-rc2",
            Some("0001.0002.0003.0004!rc!!!!!!!!!!!!!0002$"),
        ),
        ("1.2.3.4-2rc", None),
        ("1.2.3.4r", None),
        ("3.0.4", Some("0003.0000.0004$")),
        ("2.8-rc.0", Some("0002.0008!rc.!!!!!!!!!!!!0000$")),
    ];
    for (version, expected) in cases {
        assert_eq!(order_key(version).as_deref(), expected, "{version}");
    }
}

#[test]
fn tool_versions_are_package_versions() {
    assert_eq!(tool_version("3.0"), "3.0.0");
    assert_eq!(tool_version("3.0.4"), "3.0.4");
    assert_eq!(tool_version("2.8-rc.0"), "2.8.0-rc.0");
    assert_eq!(tool_version("1.4.0.1"), "1.4.0_1");
    assert_eq!(tool_version("0.9-rc1"), "0.9.0-rc1");
}

#[test]
fn scale_round_trips_through_text() {
    for scale in [Scale::Atmosphere, Scale::Small] {
        assert_eq!(scale.to_string().parse::<Scale>(), Ok(scale));
    }
    assert!("huge".parse::<Scale>().is_err());
}

/// Counts lines and bytes without keeping them.
struct Counter {
    bytes: u64,
    lines: u64,
}

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bytes += buf.len() as u64;
        self.lines += buf.iter().filter(|&&b| b == b'\n').count() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Slow in debug builds; run with `cargo test --release -- --ignored atmosphere`.
#[test]
#[ignore]
fn atmosphere_scale_has_the_real_shape() {
    let mut counter = Counter { bytes: 0, lines: 0 };
    let started = Instant::now();
    let s = generate(Scale::Atmosphere, 1, &mut counter).expect("counting");
    eprintln!("atmosphere: {s:?} in {:.2?}", started.elapsed());
    assert_eq!(s.bytes, counter.bytes);
    let records = s.packages + s.versions + s.builds + s.release_tracks + s.release_versions;
    assert_eq!(records + s.stats_rows, counter.lines);
    assert_eq!(s.packages, 15_000);
    assert!((130_000..=170_000).contains(&s.versions), "{s:?}");
    assert!((170_000..=230_000).contains(&s.builds), "{s:?}");
    assert!((1_300..=1_700).contains(&s.release_versions), "{s:?}");
}
