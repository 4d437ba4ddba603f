//! Property checks over the catalog's private dump-line readers, for the `dump_line` fuzz
//! target in `fuzz/` (compiled only with the `fuzzing` feature, which nothing but `fuzz/`
//! turns on) and for the scan's own property test, which share them.
//!
//! An import reads a line the exports' way in one pass (`scan.rs`) and every other line the
//! general way (`dump::read_in_general`); the two must never disagree on a line both read,
//! or an import would store what a record-by-record import would not. Each check panics
//! when they do, which is what the fuzzer reports as a finding.

use exosphere_meteor::Collection;

use crate::dump::{DumpLine, read_in_general, read_line, trim_line};
use crate::immutable::version_key;
use crate::scan::scan_record_line;
use crate::store::natural_key;

/// Reads `bytes` as `exosphere import` reads a dump line and, when it was read in one pass,
/// checks that the general path reads the same record with the same natural key (the key
/// the bulk import takes from the scan instead of reading the record's text again) and the
/// same `name@version` ([`version_key`], the bulk import's check of version records).
/// Lines read the general way have nothing to compare and pass.
pub fn dump_line_paths_agree(bytes: &[u8]) {
    let Ok(Some(read)) = read_line(bytes) else {
        return;
    };
    let Some(key) = read.key else {
        return;
    };
    let DumpLine::Record(record) = &read.line else {
        panic!("a line read in one pass is a stats row: {:?}", read.line);
    };
    assert_eq!(
        natural_key(record.collection(), record.json()),
        key,
        "{}",
        record.json()
    );
    let text = std::str::from_utf8(bytes).expect("a line read is UTF-8");
    assert!(
        scanned_line_agrees(trim_line(text)),
        "read in one pass, then not: {text}"
    );
}

/// Checks the scan's contract on a trimmed line: a line the scan reads is read by the
/// general path as the same record, with the same natural key and `name@version`. Returns
/// whether the scan read it, for tests that say which lines must take which path.
pub fn scanned_line_agrees(line: &str) -> bool {
    let Some(scanned) = scan_record_line(line) else {
        return false;
    };
    let general = match read_in_general(line) {
        Ok(DumpLine::Record(record)) => record,
        other => panic!("{line}: scanned, but read in general as {other:?}"),
    };
    let key = scanned.key.map(|field| field.map(str::to_owned));
    assert_eq!(
        natural_key(general.collection(), general.json()),
        key,
        "{line}"
    );
    if general.collection() == Collection::Versions {
        let named = version_key(general.json())
            .unwrap_or_else(|e| panic!("{line}: {e}"))
            .map(|(package, version)| (package.into_owned(), version.into_owned()));
        let [package, version] = key;
        assert_eq!(named, package.zip(version), "{line}");
    }
    assert_eq!(scanned.into_record(), general, "{line}");
    true
}
