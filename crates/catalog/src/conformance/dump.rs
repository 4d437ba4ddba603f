//! NDJSON dumps into and out of the store: summaries, errors by line, and all-or-nothing imports.

use std::io::{Read, Write};

use super::NewStore;
use crate::Collection;
use crate::dump::{DumpError, ImportOptions, UpsertCounts, export, import, import_with};
use crate::store::CatalogStore;

fn export_text(store: &dyn CatalogStore) -> String {
    let mut out = Vec::new();
    export(store, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

const SMALL: &str = concat!(
    "{\"collection\":\"builds\",\"doc\":{\"_id\":\"b1\",\"versionId\":\"v1\"}}\n",
    "\n",
    "{\"collection\": \"versions\", \"doc\": {\"_id\": \"v1\", \"dependencies\": {\"a.b\": {}}}}\r\n",
    "{\"collection\":\"stats\",\"date\":\"2015-01-02\",\"doc\":{\"name\":\"a\",\"version\":\"1.0.0\",\"directAdds\":1,\"totalAdds\":2}}\n",
    "{\"collection\":\"packages\",\"doc\":{\"_id\":\"p1\",\"name\":\"a\"}}",
);

/// Checks that imports and exports a small dump.
pub fn imports_and_exports_a_small_dump(new_store: NewStore<'_>) {
    let store = new_store();
    let summary = import(&*store, SMALL.as_bytes()).unwrap();
    assert_eq!(summary.records[Collection::Builds].inserted, 1);
    assert_eq!(summary.records[Collection::Versions].inserted, 1);
    assert_eq!(summary.records[Collection::Packages].inserted, 1);
    assert_eq!(summary.stats_rows, 1);
    assert_eq!(
        summary.to_string(),
        "3 records (3 inserted, 0 updated, 0 unchanged: packages 1, versions 1, builds 1, \
         releaseTracks 0, releaseVersions 0) and 1 stats rows"
    );
    let exported = export(&*store, std::io::sink()).unwrap();
    assert_eq!(
        exported.to_string(),
        "3 records (packages 1, versions 1, builds 1, releaseTracks 0, releaseVersions 0) \
         and 1 stats rows"
    );
    assert_eq!(
        export_text(&*store),
        concat!(
            "{\"collection\":\"packages\",\"doc\":{\"_id\":\"p1\",\"name\":\"a\"}}\n",
            "{\"collection\":\"versions\",\"doc\":{\"_id\":\"v1\",\"dependencies\":{\"a.b\":{}}}}\n",
            "{\"collection\":\"builds\",\"doc\":{\"_id\":\"b1\",\"versionId\":\"v1\"}}\n",
            "{\"collection\":\"stats\",\"date\":\"2015-01-02\",\"doc\":{\"name\":\"a\",\"version\":\"1.0.0\",\"directAdds\":1,\"totalAdds\":2}}\n",
        )
    );
}

/// A good record line, which the dumps of [`BAD_LINES`] begin and end with.
pub(crate) const GOOD_LINE: &str = "{\"collection\":\"packages\",\"doc\":{\"_id\":\"p1\"}}\n";

/// Invalid dump lines (one without its newline ends the input) and a word of the reason an
/// import gives for each: every import, record by record or bulk, refuses them alike.
pub(crate) const BAD_LINES: [(&str, &str); 12] = [
    (
        "{\"collection\":\"packages\",\"doc\":{\"_id\":\"p2\"\n",
        "invalid",
    ),
    ("[1]\n", "not a JSON object"),
    (
        "{\"collection\":\"widgets\",\"doc\":{\"_id\":\"x\"}}\n",
        "unknown collection",
    ),
    (
        "{\"collection\":\"packages\",\"doc\":{\"name\":\"x\"}}\n",
        "no `_id`",
    ),
    (
        "{\"collection\":\"packages\",\"doc\":{\"_id\":7}}\n",
        "not a string",
    ),
    (
        "{\"collection\":\"packages\",\"doc\":[]}\n",
        "not a JSON object",
    ),
    ("{\"collection\":\"packages\"}\n", "missing field `doc`"),
    (
        "{\"collection\":\"stats\",\"doc\":{\"name\":\"a\",\"version\":\"1\",\"directAdds\":1,\"totalAdds\":1}}\n",
        "without a \"date\"",
    ),
    (
        "{\"collection\":\"stats\",\"date\":\"2015-02-30\",\"doc\":{\"name\":\"a\",\"version\":\"1\",\"directAdds\":1,\"totalAdds\":1}}\n",
        "invalid day",
    ),
    (
        "{\"collection\":\"stats\",\"date\":\"2015-02-03\",\"doc\":{\"name\":\"a\",\"version\":\"1\",\"directAdds\":-1,\"totalAdds\":1}}\n",
        "bad stats row",
    ),
    (
        "{\"collection\":\"packages\",\"doc\":{\"_id\":\"x\",\"t\":{\"$type\":\"a\",\"$value\":1}}}\n",
        "EJSON",
    ),
    (
        "{\"collection\":\"versions\",\"doc\":{\"_id\":\"v9\",\"pack",
        "truncated",
    ),
];

/// The dump of a bad line of [`BAD_LINES`]: a good line, a blank one, then `bad` (line 3)
/// and, when `bad` ends its line, a good one.
pub(crate) fn dump_with(bad: &str) -> String {
    if bad.ends_with('\n') {
        format!("{GOOD_LINE}\n{bad}{GOOD_LINE}")
    } else {
        format!("{GOOD_LINE}\n{bad}")
    }
}

/// Checks that errors name the line and store nothing.
pub fn errors_name_the_line_and_store_nothing(new_store: NewStore<'_>) {
    for (bad, expected) in BAD_LINES {
        let store = new_store();
        let before = store.state().unwrap();
        let err = import(&*store, dump_with(bad).as_bytes()).unwrap_err();
        let DumpError::Line { line, reason } = &err else {
            panic!("{bad}: {err}");
        };
        assert_eq!(*line, 3, "{bad}: {err}");
        assert!(reason.contains(expected), "{bad}: {err}");
        assert!(err.to_string().starts_with("line 3: "), "{err}");
        assert_eq!(store.state().unwrap(), before);
        assert_eq!(export_text(&*store), "");
    }
}

/// Checks that invalid utf8 and long lines are refused.
pub fn invalid_utf8_and_long_lines_are_refused(new_store: NewStore<'_>) {
    let store = new_store();
    let err = import(&*store, &b"\n\xff\n"[..]).unwrap_err();
    assert!(matches!(err, DumpError::Line { line: 2, .. }), "{err}");
    let options = ImportOptions { max_line_bytes: 40 };
    let long = format!(
        "{{\"collection\":\"packages\",\"doc\":{{\"_id\":\"{}\"}}}}\n",
        "x".repeat(50)
    );
    let err = import_with(&*store, long.as_bytes(), &options).unwrap_err();
    assert!(
        err.to_string().contains("longer than the limit of 40"),
        "{err}"
    );
    let fits = "{\"collection\":\"packages\",\"doc\":{\"_id\":\"x\"}}\n";
    // The limit counts the line without its newline.
    let options = ImportOptions {
        max_line_bytes: fits.len() - 2,
    };
    assert!(import_with(&*store, fits.as_bytes(), &options).is_err());
    let options = ImportOptions {
        max_line_bytes: fits.len() - 1,
    };
    assert!(import_with(&*store, fits.as_bytes(), &options).is_ok());
}

/// Checks that read errors store nothing.
pub fn read_errors_store_nothing(new_store: NewStore<'_>) {
    struct Failing(usize);
    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::other("disk on fire"));
            }
            let line = b"{\"collection\":\"packages\",\"doc\":{\"_id\":\"p\"}}\n";
            self.0 -= 1;
            buf[..line.len()].copy_from_slice(line);
            Ok(line.len())
        }
    }
    let store = new_store();
    let err = import(&*store, std::io::BufReader::new(Failing(2))).unwrap_err();
    assert!(matches!(err, DumpError::Read(_)), "{err}");
    assert_eq!(export_text(&*store), "");
}

/// Checks that write errors are reported.
pub fn write_errors_are_reported(new_store: NewStore<'_>) {
    struct Full;
    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk full"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let store = new_store();
    import(&*store, SMALL.as_bytes()).unwrap();
    assert!(matches!(export(&*store, Full), Err(DumpError::Write(_))));
}

/// Checks that reimport is unchanged and later lines win.
pub fn reimport_is_unchanged_and_later_lines_win(new_store: NewStore<'_>) {
    let store = new_store();
    import(&*store, SMALL.as_bytes()).unwrap();
    let before = store.state().unwrap();
    let again = import(&*store, SMALL.as_bytes()).unwrap();
    assert_eq!(again.records[Collection::Builds].unchanged, 1);
    assert_eq!(again.records[Collection::Builds].inserted, 0);
    assert_eq!(store.state().unwrap(), before);

    let twice = "{\"collection\":\"packages\",\"doc\":{\"_id\":\"p1\",\"n\":1}}\n\
                 {\"collection\":\"packages\",\"doc\":{\"_id\":\"p1\",\"n\":2}}\n";
    let summary = import(&*store, twice.as_bytes()).unwrap();
    assert_eq!(
        summary.records[Collection::Packages],
        UpsertCounts {
            inserted: 0,
            updated: 2,
            unchanged: 0
        }
    );
    assert!(export_text(&*store).contains("\"n\":2"));
}
