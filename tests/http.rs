//! The HTTP routes: `/stats/v1/<day>` (spec §7.2), `/healthz` and the home page.

mod common;

use common::{Server, http_get, import_text};
use serde_json::{Value, json};

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
