//! Meteor versions, as clients report and publishers send them: what parses displays as
//! text that parses to the same version, and two versions (split at the first newline)
//! order the same by `Ord`, by their sort keys (the index's SQL order) and after the
//! display round trip. Package and track names are checked on the same text.
#![no_main]

use exosphere_meteor::MeteorVersion;
use exosphere_meteor::names::{is_package_name, is_track_name};
use exosphere_meteor::version::is_version;
use libfuzzer_sys::fuzz_target;

/// `text` parsed, checked to survive display and parsing again.
fn checked(text: &str) -> Option<MeteorVersion> {
    let version = MeteorVersion::parse(text).ok()?;
    let shown = version.to_string();
    let again = MeteorVersion::parse(&shown)
        .unwrap_or_else(|e| panic!("{text:?} displays as {shown:?}, which does not parse: {e}"));
    assert_eq!(again, version, "{text:?} → {shown:?}");
    assert_eq!(again.sort_key(), version.sort_key());
    assert!(is_version(text));
    Some(version)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (first, second) = text.split_once('\n').unwrap_or((text, ""));
    let _ = (is_package_name(first), is_track_name(first));
    if let (Some(a), Some(b)) = (checked(first), checked(second)) {
        assert_eq!(a.cmp(&b), a.sort_key().cmp(&b.sort_key()));
        assert_eq!(a.cmp(&b).reverse(), b.cmp(&a));
        assert_eq!(
            a == b,
            a.sort_key() == b.sort_key(),
            "{first:?} vs {second:?}"
        );
    }
});
