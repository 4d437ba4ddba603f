//! One line of an NDJSON catalog dump, read as `exosphere import` reads it: a record it
//! yields is within the record size limit and is read again, from its stored text, as the
//! same record; a stats row names a real day; and a line read in one pass (the scan) is
//! read the same by the general path, with the same natural key and `name@version`.
#![no_main]

use exosphere_catalog::Record;
use exosphere_catalog::day::parse_day;
use exosphere_catalog::dump::{DumpLine, parse_line};
use exosphere_catalog::fuzzing::dump_line_paths_agree;
use exosphere_catalog::record::MAX_RECORD_SIZE;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    dump_line_paths_agree(data);
    match parse_line(data) {
        Ok(Some(DumpLine::Record(record))) => {
            assert!(record.json().len() <= MAX_RECORD_SIZE);
            let again = Record::from_json(record.collection(), record.json())
                .unwrap_or_else(|e| panic!("{} is refused when read again: {e}", record.json()));
            assert_eq!(again, record);
        }
        Ok(Some(DumpLine::Stats(row))) => {
            assert!(parse_day(row.date()).is_ok(), "{row:?}");
        }
        Ok(None) | Err(_) => {}
    }
});
