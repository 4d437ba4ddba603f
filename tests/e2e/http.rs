//! The HTTP routes: `/stats/v1/<day>` (spec §7.2), `/healthz` and the home page.

use crate::common::{Server, exosphere, http_get, import_text, run};
use serde_json::{Value, json};
use std::process::Stdio;

#[test]
fn stats_files_have_one_json_object_per_line_and_missing_days_are_not_200() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let rows = [
        ("2024-10-01", "tracker", "1.0.1", 250, 1000),
        ("2024-10-01", "iron:router", "1.0.0", 200, 800),
        ("2024-10-02", "tracker", "1.0.1", 3, 4),
    ];
    let dump: String = rows
        .iter()
        .map(|(date, name, version, direct, total)| {
            format!(
                "{}\n",
                json!({"collection": "stats", "date": date,
                       "doc": {"name": name, "version": version, "directAdds": direct, "totalAdds": total}})
            )
        })
        .collect();
    import_text(&data, &dump);
    let server = Server::start(&data, &[]);

    let (status, body, _) = http_get(&format!("{}/stats/v1/2024-10-01", server.http));
    assert_eq!(status, 200);
    // Consumers trim the body, split on \n and JSON.parse each line (spec §7.2).
    let mut lines: Vec<Value> = body
        .trim()
        .split('\n')
        .map(|line| serde_json::from_str(line).expect("each line is one JSON object"))
        .collect();
    lines.sort_by_key(|line| line["name"].as_str().unwrap().to_owned());
    assert_eq!(
        lines,
        vec![
            json!({"name": "iron:router", "version": "1.0.0", "directAdds": 200, "totalAdds": 800}),
            json!({"name": "tracker", "version": "1.0.1", "directAdds": 250, "totalAdds": 1000}),
        ]
    );

    let (status, _, _) = http_get(&format!("{}/stats/v1/2024-10-05", server.http));
    assert_eq!(status, 404, "§7.2: a day without data is not a 200");
    for bad in ["2024-13-01", "yesterday", "2024-02-30"] {
        let (status, body, _) = http_get(&format!("{}/stats/v1/{bad}", server.http));
        assert_eq!(status, 400, "{bad}: {body}");
    }
}

#[test]
fn healthz_reports_ok() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);

    let (status, body, content_type) = http_get(&format!("{}/healthz", server.http));

    assert_eq!(status, 200);
    assert_eq!(content_type.as_deref(), Some("application/json"));
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok");
}

#[test]
fn the_home_page_says_how_to_point_the_meteor_tool_here() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);

    let (status, body, _) = http_get(&format!("{}/", server.http));

    assert_eq!(status, 200);
    let address = server.http.trim_start_matches("http://");
    assert!(
        body.contains(&format!("METEOR_PACKAGE_SERVER_URL=http://{address}")),
        "{body}"
    );
}

/// One `serve` per data directory: a second one (a blue-green overlap) would reopen the
/// upload tickets the first is receiving. It exits at once naming the first one's pid,
/// while the first keeps serving and `export` still runs beside it.
#[test]
fn a_second_server_on_one_data_directory_exits_and_the_first_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = Server::start(&data, &[]);
    let mut child = exosphere()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("exosphere serve starts");
    // A second server that did start would never exit: stop it instead of hanging.
    let deadline = std::time::Instant::now() + crate::common::PATIENCE;
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let second = child.wait_with_output().unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    let expected = format!(
        "another exosphere serve is using {} (pid {})",
        data.display(),
        first.pid()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(
        second.stdout.is_empty(),
        "the second server listened: {:?}",
        String::from_utf8_lossy(&second.stdout)
    );
    let (status, body, _) = http_get(&format!("{}/healthz", first.http));
    assert_eq!(status, 200, "{body}");
    let export = run(&["export", "--data-dir", data.to_str().unwrap()]);
    assert!(export.status.success(), "{export:?}");
}
