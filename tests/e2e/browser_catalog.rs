//! A person uses the web catalog in a real browser (issue 13, "Tests", the real-browser
//! bullet; "What to build" 1 and 6): headless Chromium (Debian's `chromium`, driven by
//! `playwright-core`, as in `browser.rs`) runs `tests/browser/catalog.mjs` against a real
//! `exosphere serve` over the 2015 fixture, with a README on `iron:router`'s latest version
//! and usage numbers from yesterday and from 50 days ago.
//!
//! With JavaScript on, the person searches from the home page's form, opens `iron:router`
//! from the results, reads its README, follows its dependency `iron:core` and comes back
//! through `iron:core`'s dependents, opens the usage chart's numbers and changes its range
//! to 90 days (the totals change), searches from the header, orders the results by most
//! added and leaves out core packages with the search page's form, and finds the package
//! again from a mistyped URL's 404 page. With JavaScript off the same journey (the 404 detour
//! aside) still finds and shows the package: the pages need no script (issue 13, 1).
//!
//! On every page: no console error, no Content-Security-Policy violation, no request to any
//! other host (those are aborted, so nothing leaves the machine even if a page is wrong), no
//! failed subresource, and, with JavaScript on, no axe-core violation of WCAG 2.1 A and AA
//! in the light and the dark colour scheme (issue 13, 6 and "Tests"). A first step plants a
//! violation and an off-host request to prove the watchers notice them.
//!
//! Screenshots of every step go to the test's temporary directory, or to
//! `$EXOSPHERE_SCREENSHOTS` when it is set, to be looked at. Needs `/usr/bin/chromium` and
//! `npm ci --prefix tests/browser` (both installed by `tests/setup.sh`, which `.ci/run`
//! runs): without them the test fails rather than skips, so CI cannot pass without it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{Days, Utc};
use serde_json::{Value, json};

use crate::browser::{assert_browser_ready, browser_dir};
use crate::common::{NodeScript, Server, fixture, http_get, import};

/// The journey gives up (with its own message) after this long; about 30 s on a quiet
/// machine.
const JOURNEY_TIMEOUT_SECS: u64 = 300;
/// How long this test waits for one line: longer than the journey's own limit.
const PATIENCE: Duration = Duration::from_secs(JOURNEY_TIMEOUT_SECS + 30);
/// The most the test waits for the read model's first build.
const READ_MODEL_PATIENCE: Duration = Duration::from_secs(60);

/// The README the test gives `iron:router` 1.0.6 (the fixture's versions have none); the
/// journey looks for its first sentence in the README section.
const README: &str = "# Iron Router\n\n\
A router that works on the server and the browser, designed specifically for Meteor.\n\n\
## Installation\n\n    meteor add iron:router\n\n\
## Routes\n\n```js\nRouter.route('/', function () {\n  this.render('Home');\n});\n```\n";

/// The steps with JavaScript on, in order: the watchers' self-check, then the journey.
const JS_STEPS: [&str; 13] = [
    "detectors",
    "home",
    "search",
    "package",
    "readme",
    "dependency",
    "dependent",
    "chart",
    "chart-range",
    "search-header",
    "search-filters",
    "not-found",
    "not-found-search",
];
/// The steps with JavaScript off: the same journey without its last two steps (the
/// mistyped address and the 404 page's search), which `catalog.mjs` takes with JavaScript
/// on only.
const NO_JS_STEPS: &[&str] = JS_STEPS.split_at(11).0;

/// The steps that stay on the page the step before loaded.
const IN_PAGE: [&str; 2] = ["readme", "chart"];

/// The fixture with [`README`] on `iron:router` 1.0.6, and usage rows: yesterday
/// `iron:router` (45 direct of 100 adds), `iron:core` and the core package `reactive-dict`;
/// 50 days ago `iron:router` 1.0.5 again (8 of 20), seen in the 90-day range only.
fn catalog(dir: &Path) -> PathBuf {
    let fixture = std::fs::read_to_string(fixture()).expect("fixture");
    let mut dump = String::with_capacity(fixture.len() + 4096);
    for line in fixture.lines().filter(|line| !line.trim().is_empty()) {
        let mut entry: Value = serde_json::from_str(line).expect("a fixture line");
        if entry["collection"] == "versions"
            && entry["doc"]["packageName"] == "iron:router"
            && entry["doc"]["version"] == "1.0.6"
        {
            entry["doc"]["longDescription"] = json!(README);
        }
        dump.push_str(&format!("{entry}\n"));
    }
    assert!(
        dump.contains("designed specifically for Meteor"),
        "README placed"
    );
    let today = Utc::now().date_naive();
    for (days_ago, name, version, direct, total) in [
        (1, "iron:router", "1.0.6", 40, 90),
        (1, "iron:router", "1.0.5", 5, 10),
        (1, "iron:core", "1.0.6", 2, 95),
        (1, "reactive-dict", "1.0.4", 30, 200),
        (50, "iron:router", "1.0.5", 8, 20),
    ] {
        let day = today - Days::new(days_ago);
        let line = json!({"collection": "stats", "date": day.to_string(), "doc": {
            "name": name, "version": version, "directAdds": direct, "totalAdds": total}});
        dump.push_str(&format!("{line}\n"));
    }
    let file = dir.join("catalog.ndjson");
    std::fs::write(&file, dump).expect("write the dump");
    file
}

#[test]
fn browser_catalog_journey_with_and_without_javascript() {
    assert_browser_ready(&["playwright-core/package.json", "axe-core/axe.min.js"]);
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    import(&data, &catalog(dir.path()));
    let server = Server::start(&data, &[]);
    let deadline = Instant::now() + READ_MODEL_PATIENCE;
    loop {
        let (status, body, _) = http_get(&format!("{}/package/iron:router", server.http));
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(Instant::now() < deadline, "the read model never finished");
        std::thread::sleep(Duration::from_millis(100));
    }

    let shots = std::env::var_os("EXOSPHERE_SCREENSHOTS")
        .map_or_else(|| dir.path().join("screenshots"), PathBuf::from);
    let mut command = Command::new("node");
    command
        .arg(browser_dir().join("catalog.mjs"))
        .arg(&server.http)
        .arg(&shots)
        .args(["--timeout", &JOURNEY_TIMEOUT_SECS.to_string()]);
    let started = Instant::now();
    let mut journey = NodeScript::spawn(command, "the catalog journey", PATIENCE);
    let mut steps = Vec::new();
    let summary = loop {
        let line = journey.next();
        match line["event"].as_str() {
            Some("step") => steps.push(line),
            Some("summary") => break line,
            _ => panic!("unexpected line from the catalog journey: {line}"),
        }
    };
    // It exited 0, or the failure is its stderr's list of every failed step and problem.
    journey.finish();
    eprintln!(
        "the catalog journey took {:.1} s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        shots.display()
    );

    // Every step passed its checks; the problems of those that did not, all at once.
    let failed: Vec<String> = steps
        .iter()
        .filter(|step| step["ok"] != true)
        .map(|step| format!("{} {}: {}", step["pass"], step["step"], step["problems"]))
        .collect();
    assert!(failed.is_empty(), "failed steps:\n{}", failed.join("\n"));
    let names = |pass: &str| -> Vec<&str> {
        steps
            .iter()
            .filter(|step| step["pass"] == pass)
            .filter_map(|step| step["step"].as_str())
            .collect()
    };
    assert_eq!(names("js"), JS_STEPS);
    assert_eq!(names("no-js"), NO_JS_STEPS);
    let step = |pass: &str, name: &str| -> &Value {
        steps
            .iter()
            .find(|step| step["pass"] == pass && step["step"] == name)
            .expect("the step ran")
    };

    for (pass, scripting) in [("js", "on"), ("no-js", "off")] {
        // The watchers notice a planted CSP violation and an off-host request; with
        // scripting off, the violation through the console only (no listener runs).
        assert_eq!(
            step(pass, "detectors")["noticed"],
            json!({"csp_event": pass == "js", "csp_console": true, "off_host_request": true})
        );
        // Each page ran with scripting as the pass says.
        for step in steps.iter().filter(|step| step["pass"] == pass) {
            assert_eq!(step["scripting"], scripting, "{step}");
        }
        let home = step(pass, "home");
        assert_eq!(home["most_added"][0], "iron:router", "{home}");
        let search = step(pass, "search");
        assert!(
            search["results"]
                .as_array()
                .is_some_and(|names| names.contains(&json!("iron:router"))),
            "{search}"
        );
        assert_eq!(step(pass, "package")["install"], "meteor add iron:router");
        assert_eq!(step(pass, "readme")["readme_heading"], "README");
        // 30 days: yesterday's 100 adds, 45 direct; 90 days adds the 20 (8 direct) of 50
        // days ago.
        let range = step(pass, "chart-range");
        assert_eq!(range["before"], json!(["100", "45"]), "{range}");
        assert_eq!(range["totals"], json!(["120", "53"]), "{range}");
        // The word finds core packages too; most added without them puts iron:router first.
        let before = step(pass, "search-header")["results"].clone();
        assert!(
            before.as_array().is_some_and(|names| names
                .iter()
                .any(|name| !name.as_str().unwrap_or_default().contains(':'))),
            "{before}"
        );
        let filtered = step(pass, "search-filters");
        assert_eq!(filtered["results"][0], "iron:router", "{filtered}");
        assert_eq!(
            filtered["form"],
            json!({"sort": "most-added", "exclude_core": true})
        );
    }
    assert_eq!(step("js", "not-found")["status"], 404);
    assert_eq!(step("js", "not-found-search")["results"][0], "iron:router");

    // axe ran on every page of the journey with JavaScript on, in both colour schemes.
    for name in &JS_STEPS[1..] {
        let audited = &step("js", name)["axe"];
        for scheme in ["light", "dark"] {
            assert_eq!(audited[scheme]["violations"], 0, "{name}: {audited}");
            assert!(
                audited[scheme]["passes"].as_u64() > Some(10),
                "{name}: axe checked something: {audited}"
            );
        }
    }
    assert!(
        NO_JS_STEPS
            .iter()
            .all(|name| step("no-js", name)["axe"].is_null())
    );

    let all_steps = JS_STEPS.len() + NO_JS_STEPS.len();
    assert_eq!(summary["ok"], true, "{summary}");
    assert_eq!(summary["steps"], all_steps, "{summary}");
    assert_eq!(summary["failed"], 0);
    assert_eq!(summary["journeys"], 2);
    assert_eq!(summary["axe_checks"], 2 * (JS_STEPS.len() - 1), "{summary}");
    for zero in [
        "axe_violations",
        "off_host_requests",
        "csp_violations",
        "console_errors",
    ] {
        assert_eq!(summary[zero], 0, "{zero}: {summary}");
    }
    // Each step that loads a page loads at least its stylesheet too (and the off-host
    // requests above were none of them).
    for step in steps
        .iter()
        .filter(|step| !IN_PAGE.contains(&step["step"].as_str().unwrap_or_default()))
    {
        assert!(step["requests"].as_u64() >= Some(2), "{step}");
    }
    let files: Vec<&str> = steps
        .iter()
        .flat_map(|step| [&step["screenshot"], &step["screenshot_dark"]])
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(summary["screenshots"], files.len());
    assert_eq!(
        files.len(),
        all_steps + 2,
        "a dark one of the package page and the chart"
    );
    for file in files {
        let png = std::fs::read(shots.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{file}");
    }
}
