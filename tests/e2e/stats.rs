//! Package usage statistics end to end (spec §7.1, §7.2, §4.4): real `recordAppPackages`
//! calls over DDP, `exosphere stats rollup`, the rollup job catching up after a restart, and
//! the `/stats/v1` files and `/api/v1/stats` range answering from the same data. Every
//! expected number is computed by hand from the counting rules (docs/STATS.md).

use std::path::Path;
use std::time::Duration;

use crate::common::{Backend, Ddp, Server, assert_success, http_get, run};
use chrono::{Days, NaiveDate, Utc};
use exosphere_catalog::CatalogStore;
use exosphere_catalog::usage::{AppReport, UsedPackage};
use exosphere_catalog_sqlite::open_sqlite;
use serde_json::{Value, json};

/// `{name, version, local, direct}` entries as the tool sends them.
pub(crate) fn packages(list: &[(&str, &str, bool, bool)]) -> Value {
    list.iter()
        .map(|(name, version, local, direct)| {
            json!({"name": name, "version": version, "local": local, "direct": direct})
        })
        .collect()
}

/// The parsed lines of `/stats/v1/<day>`, sorted by name and version, or the status.
pub(crate) fn stats_file(server: &Server, day: NaiveDate) -> Result<Vec<Value>, u16> {
    let (status, body, _) = http_get(&format!("{}/stats/v1/{day}", server.http));
    if status != 200 {
        return Err(status);
    }
    let mut lines: Vec<Value> = body
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    lines.sort_by_key(|line| format!("{}@{}", line["name"], line["version"]));
    Ok(lines)
}

fn row(name: &str, version: &str, direct: u64, total: u64) -> Value {
    json!({"name": name, "version": version, "directAdds": direct, "totalAdds": total})
}

/// Runs `exosphere stats rollup --data-dir DIR [extra]` and returns its standard output.
pub(crate) fn rollup(data: &Path, extra: &[&str]) -> String {
    let mut args = vec!["stats", "rollup", "--data-dir", data.to_str().unwrap()];
    args.extend_from_slice(extra);
    let output = run(&args);
    assert_success(&output);
    String::from_utf8(output.stdout).unwrap()
}

/// One app's report: its id and `(name, version, direct)` of each package.
pub(crate) type Report<'a> = (&'a str, &'a [(&'a str, &'a str, bool)]);

/// Records reports of past days straight into the data directory, as a server that was
/// running then would have (the library takes the day explicitly).
pub(crate) fn record_past(data: &Path, day: NaiveDate, reports: &[Report<'_>]) {
    record_past_on(&Backend::Sqlite, data, &[day], reports);
}

/// [`record_past`] into a catalog on `backend`, the same reports on each of `days`.
pub(crate) fn record_past_on(
    backend: &Backend,
    data: &Path,
    days: &[NaiveDate],
    reports: &[Report<'_>],
) {
    let store = backend.open(data);
    let reports: Vec<AppReport> = reports
        .iter()
        .map(|(app, list)| {
            let list = list
                .iter()
                .map(|(name, version, direct)| UsedPackage {
                    name: (*name).into(),
                    version: (*version).into(),
                    direct: *direct,
                })
                .collect();
            AppReport::new(*app, list).unwrap()
        })
        .collect();
    for &day in days {
        store
            .write(&mut |w| reports.iter().try_for_each(|r| w.record_usage(day, r)))
            .unwrap();
    }
}

/// The UTC day the server recorded on, read from its rows (the newest day with recordings
/// not rolled up yet), so a test crossing UTC midnight still looks at the right day.
pub(crate) fn recorded_day(data: &Path) -> NaiveDate {
    recorded_day_on(&Backend::Sqlite, data)
}

/// [`recorded_day`] of a catalog on `backend`.
fn recorded_day_on(backend: &Backend, data: &Path) -> NaiveDate {
    let store = backend.open(data);
    let pending = store
        .pending_usage_days(Utc::now().date_naive() + Days::new(2))
        .unwrap();
    *pending.last().expect("the server recorded something")
}

/// `GET url`'s `Cache-Control` header.
fn cache_control(url: &str) -> Option<String> {
    let response = ureq::get(url).call().expect("HTTP request");
    response
        .headers()
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn record(ddp: &mut Ddp, app: &str, list: Value, details: Value) -> Value {
    ddp.call("recordAppPackages", json!([app, list, details]))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_days_roll_up_live_catch_up_after_a_restart_and_the_range_api_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (today, today_rows) = record_and_roll_up_today(&Backend::Sqlite, &data).await;
    let days_ago = |n: u64| today - Days::new(n);

    // While the server is down, days before today hold recordings nobody rolled up.
    record_past(
        &data,
        days_ago(3),
        &[
            ("app-c", &[("tracker", "1.0.0", true)]),
            (
                "app-d",
                &[("tracker", "0.9.0", false), ("ddp", "1.0.0", true)],
            ),
        ],
    );
    record_past(
        &data,
        days_ago(2),
        &[
            ("app-c", &[("tracker", "1.1.0", true)]),
            (
                "app-d",
                &[("tracker", "0.9.0", false), ("ddp", "1.0.0", true)],
            ),
        ],
    );

    // The restarted server's job catches up on both days; today keeps its manual rollup.
    // It also runs every 100 ms here (`--stats-rollup-every`), for the late report below.
    let server = Server::start(
        &data,
        &[
            "--stats-rollup-every",
            "100ms",
            "--stats-count-unknown-packages",
        ],
    );
    let mut waited = 0;
    while stats_file(&server, days_ago(2)).is_err() {
        assert!(
            waited < 200,
            "the missed days were not rolled up after a restart"
        );
        std::thread::sleep(Duration::from_millis(50));
        waited += 1;
    }
    assert_eq!(
        stats_file(&server, days_ago(3)),
        Ok(vec![
            row("ddp", "1.0.0", 1, 1),
            row("tracker", "0.9.0", 0, 1),
            row("tracker", "1.0.0", 1, 1),
        ])
    );
    assert_eq!(
        stats_file(&server, days_ago(2)),
        Ok(vec![row("tracker", "1.1.0", 1, 1)])
    );
    assert_eq!(
        stats_file(&server, days_ago(1)),
        Err(404),
        "no recordings, no file"
    );
    assert_eq!(stats_file(&server, today), Ok(today_rows));
    assert_eq!(
        cache_control(&format!("{}/stats/v1/{}", server.http, days_ago(3))).as_deref(),
        Some("public, max-age=300"),
        "a finished day is cacheable"
    );
    let mut ddp = server.ddp().await;
    let (stats_docs, _) = ddp.subscribe("s", "stats").await;
    // The watcher may not have polled since the job wrote; then `changed`s follow.
    let mut fields = stats_docs[0]["fields"].clone();
    while fields["earliest"] != days_ago(3).to_string().as_str() {
        let changed = ddp
            .wait_for(|m| m["msg"] == "changed" && m["collection"] == "stats")
            .await;
        for (key, value) in changed["fields"].as_object().unwrap() {
            fields[key] = value.clone();
        }
    }
    // The latest finished day; today's manual rollup is not advertised.
    if Utc::now().date_naive() == today {
        assert_eq!(fields["latest"], days_ago(2).to_string(), "{fields}");
    }

    // A late report for a day already rolled up re-opens it; the periodic run rolls it
    // up again while the server keeps serving.
    record_past(
        &data,
        days_ago(2),
        &[("app-e", &[("tracker", "1.0.0", true)])],
    );
    let reopened = vec![row("tracker", "1.0.0", 1, 1), row("tracker", "1.1.0", 1, 1)];
    let mut waited = 0;
    while stats_file(&server, days_ago(2)) != Ok(reopened.clone()) {
        assert!(waited < 200, "the late report was not rolled up");
        std::thread::sleep(Duration::from_millis(50));
        waited += 1;
    }
    // Nothing is pending any more: a manual catch-up finds nothing to do.
    assert!(
        rollup(&data, &[]).contains("nothing to roll up"),
        "idempotent"
    );

    // The range API answers from the same rows: tracker over the last four days.
    let (status, body, content_type) = http_get(&format!(
        "{}/api/v1/stats/packages/tracker?from={}&to={today}&interval=day",
        server.http,
        days_ago(3)
    ));
    assert_eq!(status, 200, "{body}");
    assert_eq!(content_type.as_deref(), Some("application/json"));
    let range: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(range["name"], "tracker");
    assert_eq!(
        (&range["directAdds"], &range["totalAdds"]),
        (&json!(5), &json!(7))
    );
    assert_eq!(
        range["versions"],
        json!([
            {"version": "1.0.0", "directAdds": 3, "totalAdds": 4},
            {"version": "1.1.0", "directAdds": 2, "totalAdds": 2},
            {"version": "0.9.0", "directAdds": 0, "totalAdds": 1},
        ])
    );
    let per_day: Vec<(Value, Value)> = range["periods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["from"].clone(), p["totalAdds"].clone()))
        .collect();
    assert_eq!(
        per_day,
        [
            (json!(days_ago(3).to_string()), json!(2)),
            (json!(days_ago(2).to_string()), json!(2)),
            (json!(days_ago(1).to_string()), json!(0)),
            (json!(today.to_string()), json!(3)),
        ]
    );
    assert_eq!(
        range["trend"]["previous"],
        json!({"directAdds": 0, "totalAdds": 0})
    );
    assert_eq!(range["trend"]["totalAddsChange"], Value::Null);

    // The last two days against the two before: 3 total adds against 4, 2 direct against 3.
    let (status, body, _) = http_get(&format!(
        "{}/api/v1/stats/packages/tracker?from={}&to={today}",
        server.http,
        days_ago(1)
    ));
    assert_eq!(status, 200, "{body}");
    let trend: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        trend["trend"]["previous"],
        json!({"directAdds": 3, "totalAdds": 4})
    );
    assert_eq!(trend["trend"]["totalAddsChange"], json!(-0.25));
    let direct = trend["trend"]["directAddsChange"].as_f64().unwrap();
    assert!((direct + 1.0 / 3.0).abs() < 1e-9, "{trend}");

    for bad in [
        "tracker?from=2024-02-30",
        "tracker?interval=year",
        "tracker?from=2024-10-02&to=2024-10-01",
        "tracker?from=1900-01-01&to=2024-10-01",
        "Not%20A%20Package",
    ] {
        let (status, body, _) = http_get(&format!("{}/api/v1/stats/packages/{bad}", server.http));
        assert_eq!(status, 400, "{bad}: {body}");
    }
}

/// Usage recorded through `serve --database-url` into PostgreSQL, rolled up with
/// `exosphere stats rollup --database-url` and served at `/stats/v1/<day>` as from SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_recorded_into_postgres_rolls_up_and_is_served() {
    let dir = tempfile::tempdir().unwrap();
    record_and_roll_up_today(&Backend::postgres(), &dir.path().join("data")).await;
}

/// Records reports through a server whose catalog is on `backend` (spec §7.1), rolls today
/// up with `exosphere stats rollup --date` twice, checking `/stats/v1/<today>` each time,
/// then stops the server; returns today (the day the server recorded on) and its rows.
async fn record_and_roll_up_today(backend: &Backend, data: &Path) -> (NaiveDate, Vec<Value>) {
    let flags = backend.flags();
    // The stats server role (spec §7.1): the tool subscribes first, then records. These
    // made-up packages are in no catalog here, so they count only on request.
    let server = Server::start(
        data,
        &[&["--stats-count-unknown-packages"], &flags[..]].concat(),
    );
    let mut ddp = server.ddp().await;
    let (config, ready) = ddp
        .subscribe("cfg", "meteor.loginServiceConfiguration")
        .await;
    assert_eq!(ready["msg"], "ready");
    assert_eq!(config[0]["fields"]["service"], "meteor-developer");
    let (stats_docs, _) = ddp.subscribe("s", "stats").await;
    assert!(
        stats_docs[0]["fields"].get("latest").is_none(),
        "no stats yet: {stats_docs:?}"
    );

    let a = packages(&[
        ("tracker", "1.0.0", false, true),
        ("ddp", "1.0.0", false, false),
        ("a-local", "0.0.1", true, true),
    ]);
    let answer = record(&mut ddp, "app-a", a.clone(), json!({"what": "sdk.run"})).await;
    assert!(answer.get("error").is_none(), "{answer}");
    let session = answer["result"]["newSessionId"]
        .as_str()
        .expect("§7.1: a new session id");
    assert!(!session.is_empty());
    let b = packages(&[
        ("tracker", "1.0.0", false, false),
        ("ddp", "1.0.0", false, true),
        ("mongo", "1.0.0", false, false),
    ]);
    let answer = record(
        &mut ddp,
        "app-b",
        b,
        json!({"what": "sdk.bundle", "sessionId": session}),
    )
    .await;
    assert_eq!(
        answer["result"],
        json!({}),
        "a caller with a session gets none: {answer}"
    );
    // The same list again adds nothing.
    record(&mut ddp, "app-a", a, json!({"sessionId": session})).await;

    let today = recorded_day_on(backend, data);

    // Nothing is published before a rollup; `stats rollup --date today` publishes what
    // was recorded so far, as an unfinished day: not cached, and not advertised by the
    // `stats` publication, whose consumers fetch each advertised day once (§4.4, §7.2).
    assert_eq!(stats_file(&server, today), Err(404));
    assert!(
        rollup(
            data,
            &[&["--date", &today.to_string()][..], &flags].concat()
        )
        .contains("3 rows")
    );
    let before = Utc::now().date_naive();
    let caching = cache_control(&format!("{}/stats/v1/{today}", server.http));
    if before == today && Utc::now().date_naive() == today {
        assert_eq!(caching.as_deref(), Some("no-store"));
    }
    assert_eq!(
        stats_file(&server, today),
        Ok(vec![
            row("ddp", "1.0.0", 1, 2),
            row("mongo", "1.0.0", 0, 1),
            row("tracker", "1.0.0", 1, 2),
        ])
    );

    // An upgrade adds the new version; a later rollup of today replaces the file.
    let upgraded = packages(&[
        ("tracker", "1.1.0", false, true),
        ("ddp", "1.0.0", false, false),
    ]);
    record(&mut ddp, "app-a", upgraded, json!({"sessionId": session})).await;
    rollup(
        data,
        &[&["--date", &today.to_string()][..], &flags].concat(),
    );
    let today_rows = vec![
        row("ddp", "1.0.0", 1, 2),
        row("mongo", "1.0.0", 0, 1),
        row("tracker", "1.0.0", 1, 2),
        row("tracker", "1.1.0", 1, 1),
    ];
    assert_eq!(stats_file(&server, today), Ok(today_rows.clone()));
    drop(ddp);
    drop(server);
    (today, today_rows)
}

#[tokio::test]
async fn bad_reports_get_a_clear_error_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(
        &data,
        &[
            "--stats-max-packages",
            "2",
            "--stats-count-unknown-packages",
        ],
    );
    let mut ddp = server.ddp().await;
    let too_many = packages(&[
        ("a", "1.0.0", false, true),
        ("b", "1.0.0", false, true),
        ("c", "1.0.0", false, true),
    ]);
    for (params, reason) in [
        (json!([]), "expects (appId, packages, details)"),
        (json!([7, [], {}]), "appId"),
        (json!(["app", "tracker", {}]), "packages must be an array"),
        (json!(["app", too_many, {}]), "at most 2"),
        (
            json!(["app", [{"name": "Bad Name", "version": "1.0.0"}], {}]),
            "packages[0]",
        ),
        (
            json!(["app", [{"name": "ok", "version": "one"}], {}]),
            "version",
        ),
        (json!(["app", [], "details"]), "details must be an object"),
    ] {
        let answer = ddp.call("recordAppPackages", params.clone()).await;
        assert_eq!(answer["error"]["error"], 400, "{params}: {answer}");
        let message = answer["error"]["reason"].as_str().unwrap_or_default();
        assert!(message.contains(reason), "{params}: {answer}");
    }
    // The session survives, and a good call still works.
    let answer = ddp
        .call(
            "recordAppPackages",
            json!(["app", packages(&[("ok", "1.0.0", false, true)]), {}]),
        )
        .await;
    assert!(answer["result"]["newSessionId"].is_string(), "{answer}");
    let today = recorded_day(&data).to_string();
    assert!(rollup(&data, &["--date", &today]).contains("1 rows"));
    let tomorrow = (Utc::now().date_naive() + Days::new(1)).to_string();
    let output = run(&[
        "stats",
        "rollup",
        "--data-dir",
        data.to_str().unwrap(),
        "--date",
        &tomorrow,
    ]);
    assert!(
        !output.status.success(),
        "a day that has not begun cannot be rolled up"
    );
}

/// The report-flooding attack (issue 17, finding 5): connections sending thousands of
/// made-up package names per call. Only versions the catalog holds are recorded, so the
/// invented names never reach the day's file; each address has a budget of package entries
/// per interval, so a flood is refused with Meteor's `too-many-requests` (spec §7.1: the
/// tool swallows it) while a client at another address still records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooding_reports_are_refused_and_made_up_names_never_reach_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    crate::common::import(&data, &crate::common::fixture());
    let server = Server::start(
        &data,
        &[
            "--stats-rate-per-address",
            "5000",
            "--stats-rate-global",
            "8000",
            "--stats-rate-interval",
            "1h",
        ],
    );
    let invented = |call: usize| {
        let list: Vec<(String, String)> = (0..2000)
            .map(|i| (format!("made-up-{call}-{i}"), "1.0.0".to_owned()))
            .collect();
        Value::Array(
            list.into_iter()
                .map(|(name, version)| {
                    json!({"name": name, "version": version, "local": false, "direct": true})
                })
                .collect(),
        )
    };
    // Four connections from one address: two calls of 2000 entries fit its budget of
    // 5000, every later one is refused.
    let mut flooders = Vec::new();
    for _ in 0..4 {
        flooders.push(server.ddp().await);
    }
    let (mut accepted, mut refused) = (0, 0);
    for round in 0..3 {
        for (n, ddp) in flooders.iter_mut().enumerate() {
            let answer = record(
                ddp,
                &format!("flood-{n}-{round}"),
                invented(round * 4 + n),
                json!({}),
            )
            .await;
            if answer.get("result").is_some() {
                accepted += 1;
            } else {
                assert_eq!(answer["error"]["error"], "too-many-requests", "{answer}");
                assert!(answer["error"]["details"]["timeToReset"].as_u64().unwrap() > 0);
                refused += 1;
            }
        }
    }
    assert_eq!((accepted, refused), (2, 10), "5000 entries per address");
    // An honest app from another address still records, real packages and all.
    let honest_url = server.ws.clone();
    let mut honest =
        crate::common::Ddp::connect_from(&honest_url, "127.0.0.2".parse().unwrap()).await;
    let real = packages(&[
        ("accounts-base", "1.0.0", false, true),
        ("not-in-this-catalog", "1.0.0", false, false),
        ("my-own", "0.0.1", true, true),
    ]);
    let answer = record(&mut honest, "honest-app", real, json!({})).await;
    assert!(answer.get("result").is_some(), "{answer}");
    // The global budget (8000) is shared by everyone: 4000 flooded + 3 honest entries
    // leave room for one more call of 2000 from a third address, not two.
    let mut third =
        crate::common::Ddp::connect_from(&honest_url, "127.0.0.3".parse().unwrap()).await;
    let answer = record(&mut third, "third", invented(99), json!({})).await;
    assert!(answer.get("result").is_some(), "{answer}");
    let answer = record(&mut third, "third-2", invented(100), json!({})).await;
    assert_eq!(
        answer["error"]["error"], "too-many-requests",
        "over the global budget: {answer}"
    );

    // Of everything accepted, only the catalog's version was recorded.
    let today = recorded_day(&data);
    assert!(rollup(&data, &["--date", &today.to_string()]).contains("1 rows"));
    assert_eq!(
        stats_file(&server, today),
        Ok(vec![row("accounts-base", "1.0.0", 1, 1)])
    );
}

/// `GET url` read whole, however large (`http_get` stops at ureq's 10 MB default): the
/// status and the body.
fn get_whole(url: &str) -> (u16, String) {
    let agent = ureq::Agent::config_builder().build().new_agent();
    let mut response = agent.get(url).call().unwrap();
    let body = response
        .body_mut()
        .with_config()
        .limit(u64::MAX)
        .read_to_string()
        .unwrap();
    (response.status().as_u16(), body)
}

/// The server's anonymous resident memory (heap and stacks), in KiB, from `/proc`: where a
/// day held in memory would be. Not `VmRSS`, which also counts the database pages each
/// read connection maps (`mmap_size`), however many readers a render happens to open.
fn resident_kib(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("RssAnon:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("RssAnon in /proc/<pid>/status")
}

/// The slow-reader attack on a large day (issue 17, finding 6: sixteen slow readers of an
/// 87 MB day took the server to 4.6 GB). A day is rendered from the store into a temporary
/// file and streamed from there, so readers that stop reading hold a chunk each, not the
/// day; finished days are kept rendered, and honest readers still get the whole file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_readers_of_a_large_day_hold_chunks_not_the_day() {
    use std::io::{Read as _, Write as _};

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let day = Utc::now().date_naive() - Days::new(3);
    let rows = 300_000;
    {
        let store = open_sqlite(&data).unwrap();
        store
            .write(&mut |w| {
                for i in 0..rows {
                    let row = exosphere_catalog::StatsRow::new(
                        day.to_string(),
                        format!("package-number-{i:07}"),
                        "1.0.0",
                        i % 7,
                        i % 7 + 1,
                    )
                    .unwrap();
                    w.upsert_stats(&row)?;
                }
                Ok(())
            })
            .unwrap();
    }
    // No cache: every reader's request renders the day, two at a time.
    let server = Server::start(
        &data,
        &["--stats-max-renders", "2", "--stats-cache-size", "0"],
    );
    let url = format!("{}/stats/v1/{day}", server.http);
    let address = server.http.strip_prefix("http://").unwrap().to_owned();
    let read_whole = || {
        let (status, body) = get_whole(&url);
        assert_eq!(status, 200);
        body
    };
    // A first reader warms what any read warms (the database's pages).
    let body = read_whole();
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines.len(), rows as usize);
    assert_eq!(
        lines[12345],
        r#"{"name":"package-number-0012345","version":"1.0.0","directAdds":4,"totalAdds":5}"#
    );
    let day_mib = body.len() as u64 >> 20;
    assert!(day_mib >= 20, "the day is large: {day_mib} MiB");
    let before = resident_kib(&server);

    // Sixteen readers ask for the day and stop after its first kilobyte.
    let mut stalled = Vec::new();
    for _ in 0..16 {
        let mut tcp = std::net::TcpStream::connect(&address).unwrap();
        write!(tcp, "GET /stats/v1/{day} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut first = [0; 1024];
        tcp.read_exact(&mut first).unwrap();
        assert!(first.starts_with(b"HTTP/1.1 200"));
        stalled.push(tcp);
    }
    // An honest reader meanwhile still gets the whole day.
    assert_eq!(read_whole(), body);
    let grown_mib = resident_kib(&server).saturating_sub(before) / 1024;
    assert!(
        grown_mib < day_mib,
        "16 stalled readers of a {day_mib} MiB day grew the server by {grown_mib} MiB"
    );
    drop(stalled);
    drop(server);

    // With the cache (the default), a finished day is rendered once and kept.
    let server = Server::start(&data, &[]);
    let url = format!("{}/stats/v1/{day}", server.http);
    for _ in 0..2 {
        let (status, again) = get_whole(&url);
        assert_eq!((status, again.len()), (200, body.len()));
    }
    let (_, health, _) = http_get(&format!("{}/healthz", server.http));
    let health: Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["stats_files"]["rendering"], 0, "{health}");
    assert_eq!(health["stats_files"]["cached"], 1, "{health}");
    assert_eq!(
        health["stats_files"]["cached_bytes"],
        body.len(),
        "{health}"
    );
}
