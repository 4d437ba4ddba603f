//! The command line as a user runs it: import, export, gen-catalog and the help texts, and the
//! process `serve` runs as.

use crate::common::{
    Backend, Server, assert_success, exosphere, fixture, import, import_on, read_dump, run,
};

fn export(data: &std::path::Path) -> String {
    export_on(&Backend::Sqlite, data)
}

/// `exosphere export` of the catalog on `backend`, as text.
fn export_on(backend: &Backend, data: &std::path::Path) -> String {
    let output = run(&[
        &["export", "--data-dir", data.to_str().unwrap()][..],
        &backend.flags(),
    ]
    .concat());
    assert_success(&output);
    String::from_utf8(output.stdout).expect("UTF-8 dump")
}

#[test]
fn export_then_import_gives_an_identical_catalog() {
    export_then_import(&Backend::Sqlite, &Backend::Sqlite);
}

/// A dump exported from PostgreSQL imports into SQLite and back, byte-identical both ways
/// (docs/catalog-dump.md): the way a catalog moves between backends today.
#[test]
fn export_then_import_moves_a_catalog_between_postgres_and_sqlite() {
    export_then_import(&Backend::postgres(), &Backend::Sqlite);
    export_then_import(&Backend::Sqlite, &Backend::postgres());
}

/// Imports the 2015 fixture on `first`, exports it, imports that dump on `second` and
/// exports again: every record once, and the two dumps byte-identical.
fn export_then_import(first: &Backend, second: &Backend) {
    let dir = tempfile::tempdir().unwrap();
    let first_data = dir.path().join("first");
    import_on(first, &first_data, &fixture());
    let dump = export_on(first, &first_data);
    let original = std::fs::read_to_string(fixture()).unwrap();
    assert_eq!(
        read_dump(&dump),
        read_dump(&original),
        "export holds every record once"
    );

    let second_data = dir.path().join("second");
    let dump_file = dir.path().join("dump.ndjson");
    std::fs::write(&dump_file, &dump).unwrap();
    import_on(second, &second_data, &dump_file);
    assert_eq!(
        export_on(second, &second_data),
        dump,
        "export | import | export is byte-identical"
    );
}

#[test]
fn import_from_standard_input() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let output = exosphere()
        .args(["import", "--data-dir", data.to_str().unwrap(), "-"])
        .stdin(std::fs::File::open(fixture()).unwrap())
        .output()
        .unwrap();
    assert_success(&output);
    assert_eq!(read_dump(&export(&data)).0["versions"].len(), 4039);
}

#[test]
fn a_bad_line_names_its_number_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    import(&data, &fixture());
    let before = export(&data);

    let cases = [
        ("not json", "line 3"),
        (r#"{"collection":"widgets","doc":{"_id":"a"}}"#, "line 3"),
        (
            r#"{"collection":"packages","doc":{"name":"no-id"}}"#,
            "line 3",
        ),
        (
            r#"{"collection":"packages","doc":{"_id":"half-writ"#,
            "line 3",
        ),
    ];
    for (bad, expected) in cases {
        let file = dir.path().join("bad.ndjson");
        let good =
            r#"{"collection":"packages","doc":{"_id":"newPkg0000000001","name":"acme:new"}}"#;
        std::fs::write(&file, format!("{good}\n\n{bad}\n{good}\n")).unwrap();
        let output = run(&[
            "import",
            "--data-dir",
            data.to_str().unwrap(),
            file.to_str().unwrap(),
        ]);
        assert!(!output.status.success(), "{bad} must be refused");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(expected),
            "{bad}: error should name {expected}: {stderr}"
        );
        assert_eq!(
            export(&data),
            before,
            "{bad}: nothing from the file is stored"
        );
    }
}

#[test]
fn gen_catalog_is_deterministic_and_importable() {
    let dir = tempfile::tempdir().unwrap();
    let once = run(&["gen-catalog", "--scale", "small", "--seed", "7"]);
    let twice = run(&["gen-catalog", "--scale", "small", "--seed", "7"]);
    let other = run(&["gen-catalog", "--scale", "small", "--seed", "8"]);
    assert!(once.status.success());
    assert_eq!(once.stdout, twice.stdout, "same seed, same bytes");
    assert_ne!(once.stdout, other.stdout, "another seed, another catalog");

    let file = dir.path().join("small.ndjson");
    std::fs::write(&file, &once.stdout).unwrap();
    let data = dir.path().join("data");
    import(&data, &file);
    let (catalog, stats) = read_dump(&export(&data));
    assert!(catalog["packages"].len() >= 100, "a useful demo catalog");
    assert!(catalog["versions"].len() > catalog["packages"].len());
    assert!(!stats.is_empty(), "stats days for /stats/v1");
}

#[test]
fn help_teaches_commands_and_environment_variables() {
    let output = run(&["--help"]);
    let help = String::from_utf8(output.stdout).unwrap();
    for command in ["serve", "import", "export", "gen-catalog", "bench"] {
        assert!(help.contains(command), "--help lists {command}");
    }
    let output = run(&["serve", "--help"]);
    let help = String::from_utf8(output.stdout).unwrap();
    for needle in [
        "EXOSPHERE_LISTEN",
        "EXOSPHERE_DATA_DIR",
        "METEOR_PACKAGE_SERVER_URL",
        "--demo",
    ] {
        assert!(help.contains(needle), "serve --help mentions {needle}");
    }
}

#[test]
fn flags_can_come_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("from-env");
    let output = exosphere()
        .args(["import", &fixture().to_string_lossy()])
        .env("EXOSPHERE_DATA_DIR", &data)
        .output()
        .unwrap();
    assert_success(&output);
    assert!(
        data.join("catalog.sqlite3").exists(),
        "EXOSPHERE_DATA_DIR chose the directory"
    );
}

#[test]
fn a_sockjs_client_url_that_could_break_the_iframe_page_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for bad in [
        "javascript:alert(1)",
        "sockjs.min.js",
        "/a\"onload=\"x",
        "/a b",
    ] {
        let output = exosphere()
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--sockjs-client-url",
                bad,
            ])
            .arg("--data-dir")
            .arg(&data)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{bad} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("--sockjs-client-url"),
            "the error names the flag: {stderr}"
        );
    }
    assert!(!data.exists(), "nothing was served or created");
}

/// The web catalog's bounds are checked when `serve` starts: nonsense values are refused
/// with an error naming the flag and its range, before anything is served or created.
#[test]
fn web_bounds_that_make_no_sense_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for (flag, bad, range) in [
        ("--web-max-query-chars", "0", "1..=4096"),
        ("--web-max-query-chars", "100000", "1..=4096"),
        ("--web-max-page-depth", "0", "1..=1000000"),
        ("--web-max-page-depth", "99999999999", "1..=1000000"),
        ("--api-max-limit", "0", "1..=10000"),
    ] {
        let output = exosphere()
            .args(["serve", "--listen", "127.0.0.1:0", flag, bad])
            .arg("--data-dir")
            .arg(&data)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{flag} {bad} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(flag) && stderr.contains(range),
            "the error names the flag and its range: {stderr}"
        );
    }
    assert!(!data.exists(), "nothing was served or created");
    let help = String::from_utf8(run(&["serve", "--help"]).stdout).unwrap();
    for needle in [
        "EXOSPHERE_WEB_MAX_QUERY_CHARS",
        "EXOSPHERE_WEB_MAX_PAGE_DEPTH",
        "[default: 200]",
        "[default: 50000]",
    ] {
        assert!(help.contains(needle), "serve --help mentions {needle}");
    }
}

/// The executable allocates with jemalloc and the settings compiled into it (`src/main.rs`):
/// the background thread that returns freed pages on time, which is part of how the server's
/// memory stays flat (docs/RELIABILITY.md, the soak), runs in `serve`.
#[test]
fn serve_runs_jemalloc_with_its_background_thread() {
    let data = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(data.path(), &[]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let threads: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", server.pid()))
            .expect("the server's threads are listed")
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .map(|name| name.trim().to_owned())
            .collect();
        if threads.iter().any(|name| name == "jemalloc_bg_thd") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no jemalloc background thread among {threads:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
