//! Meteor's package versions: semver `x.y.z` with an optional `-pre.release` part, an
//! optional `_N` wrap number and an ignored `+build` suffix (spec §3.8, the `meteor` tool's
//! `package-version-parser.js`), parsed as strictly as the tool parses them, and ordered as
//! it orders them.
//!
//! Both sides need the same rule: the server checks the versions clients report or publish
//! (`exosphere-catalog`), and the local index sorts versions (`exosphere-index`); neither
//! may depend on the other, so the rule lives here.
//!
//! The index needs "the latest version of a package" without loading every version into
//! memory, so a parsed version is turned into a [`sort key`](MeteorVersion::sort_key): bytes
//! whose plain byte order is Meteor's version order. SQLite compares BLOBs with `memcmp`, so
//! `MAX(sort_key)` and `ORDER BY sort_key` in SQL agree with the `meteor` tool.

use std::cmp::Ordering;
use std::fmt;

/// A parsed Meteor version, kept as the parts the order depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeteorVersion {
    major: u64,
    minor: u64,
    patch: u64,
    prerelease: Vec<Identifier>,
    wrap: u64,
}

/// One dot-separated part of a prerelease (`rc.5` has `rc` and `5`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Identifier {
    Numeric(u64),
    Alphanumeric(String),
}

/// Why a version string is not a Meteor version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{version}` is not a Meteor version (x.y.z, optional -prerelease and _wrap): {reason}")]
pub struct VersionError {
    version: String,
    reason: &'static str,
}

/// Sort-key tag bytes. A prerelease sorts below the release of the same `x.y.z`, a numeric
/// identifier below an alphanumeric one, and the end of the prerelease below any further
/// identifier (semver §11).
const PRERELEASE: u8 = 0x01;
const RELEASE: u8 = 0x02;
const END_OF_PRERELEASE: u8 = 0x00;
const NUMERIC: u8 = 0x01;
const ALPHANUMERIC: u8 = 0x02;

impl MeteorVersion {
    /// Parses a version as the `meteor` tool does, rejecting what it rejects.
    pub fn parse(text: &str) -> Result<MeteorVersion, VersionError> {
        let fail = |reason| VersionError {
            version: text.to_owned(),
            reason,
        };
        if text.is_empty() {
            return Err(fail("it is empty"));
        }
        let (without_build, build) = match text.split_once('+') {
            Some((head, build)) => (head, Some(build)),
            None => (text, None),
        };
        if let Some(build) = build {
            if build.contains('+') {
                return Err(fail("it has two `+`"));
            }
            if build.split('.').any(|part| !is_identifier(part)) {
                return Err(fail(
                    "the build part (after +) must be dot-separated [0-9A-Za-z-]",
                ));
            }
        }
        let (semver, wrap) = match without_build.split_once('_') {
            Some((semver, wrap)) => {
                if wrap.contains('_') {
                    return Err(fail("it has two `_`"));
                }
                if wrap.is_empty() || !wrap.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(fail("a wrap number (after _) must be digits"));
                }
                if wrap.starts_with('0') {
                    return Err(fail("a wrap number must not have a leading zero"));
                }
                (
                    semver,
                    number(wrap).ok_or_else(|| fail("the wrap number is too large"))?,
                )
            }
            None => (without_build, 0),
        };
        let (core, prerelease) = match semver.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (semver, None),
        };
        let mut parts = core.split('.');
        let mut next = || -> Result<u64, VersionError> {
            let part = parts
                .next()
                .ok_or_else(|| fail("it needs major.minor.patch"))?;
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(fail("major, minor and patch must be numbers"));
            }
            if part.len() > 1 && part.starts_with('0') {
                return Err(fail("major, minor and patch must not have leading zeros"));
            }
            safe_number(part).ok_or_else(|| {
                fail("major, minor and patch must be at most 2^53 - 1 (9007199254740991)")
            })
        };
        let (major, minor, patch) = (next()?, next()?, next()?);
        if parts.next().is_some() {
            return Err(fail("it has more than major.minor.patch"));
        }
        let prerelease = match prerelease {
            None => Vec::new(),
            Some(pre) => pre
                .split('.')
                .map(|part| {
                    if !is_identifier(part) {
                        return Err(fail("a prerelease part must be [0-9A-Za-z-], not empty"));
                    }
                    if part.bytes().all(|b| b.is_ascii_digit()) {
                        if part.len() > 1 && part.starts_with('0') {
                            return Err(fail(
                                "a numeric prerelease part must not have a leading zero",
                            ));
                        }
                        // semver keeps a number it cannot hold exactly as text.
                        Ok(safe_number(part).map_or_else(
                            || Identifier::Alphanumeric(part.to_owned()),
                            Identifier::Numeric,
                        ))
                    } else {
                        Ok(Identifier::Alphanumeric(part.to_owned()))
                    }
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(MeteorVersion {
            major,
            minor,
            patch,
            prerelease,
            wrap,
        })
    }

    /// The major version: versions with the same one are compatible (`PackageVersion`).
    pub fn major(&self) -> u64 {
        self.major
    }

    /// Whether this is a prerelease (`1.0.0-rc.1`); `meteor show` prefers official versions.
    pub fn is_prerelease(&self) -> bool {
        !self.prerelease.is_empty()
    }

    /// Bytes whose byte order is Meteor's version order (see the module documentation).
    pub fn sort_key(&self) -> Vec<u8> {
        let mut key = Vec::with_capacity(34);
        key.extend_from_slice(&self.major.to_be_bytes());
        key.extend_from_slice(&self.minor.to_be_bytes());
        key.extend_from_slice(&self.patch.to_be_bytes());
        if self.prerelease.is_empty() {
            key.push(RELEASE);
        } else {
            key.push(PRERELEASE);
            for identifier in &self.prerelease {
                match identifier {
                    Identifier::Numeric(n) => {
                        key.push(NUMERIC);
                        key.extend_from_slice(&n.to_be_bytes());
                    }
                    Identifier::Alphanumeric(text) => {
                        // Identifiers are [0-9A-Za-z-], so a zero byte ends one unambiguously
                        // and sorts a prefix ("a") before its extensions ("ab").
                        key.push(ALPHANUMERIC);
                        key.extend_from_slice(text.as_bytes());
                        key.push(0);
                    }
                }
            }
            key.push(END_OF_PRERELEASE);
        }
        key.extend_from_slice(&self.wrap.to_be_bytes());
        key
    }
}

impl Ord for MeteorVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        self.sort_key().cmp(&other.sort_key())
    }
}

impl PartialOrd for MeteorVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for MeteorVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        for (i, identifier) in self.prerelease.iter().enumerate() {
            f.write_str(if i == 0 { "-" } else { "." })?;
            match identifier {
                Identifier::Numeric(n) => write!(f, "{n}")?,
                Identifier::Alphanumeric(text) => f.write_str(text)?,
            }
        }
        if self.wrap > 0 {
            write!(f, "_{}", self.wrap)?;
        }
        Ok(())
    }
}

/// A semver identifier: non-empty, ASCII alphanumerics and `-`.
fn is_identifier(part: &str) -> bool {
    !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// JavaScript's `Number.MAX_SAFE_INTEGER`: the npm `semver` package the tool parses
/// versions with refuses a larger major, minor or patch, and keeps a larger numeric
/// prerelease part as text.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Digits as a number, or `None` when they do not fit in 64 bits (a wrap number, which
/// the tool reads with `parseInt`, has no other limit).
fn number(digits: &str) -> Option<u64> {
    digits.parse().ok()
}

/// Digits as a number semver takes as one: at most [`MAX_SAFE_INTEGER`].
fn safe_number(digits: &str) -> Option<u64> {
    number(digits).filter(|n| *n <= MAX_SAFE_INTEGER)
}

/// Whether `version` is a version the `meteor` tool could have written: it parses it as
/// strictly as the tool does (no leading zeros, a wrap number above zero; an optional
/// `+build` is kept as part of the string, so stats rows name the version as reported).
pub fn is_version(version: &str) -> bool {
    MeteorVersion::parse(version).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> MeteorVersion {
        MeteorVersion::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn parses_every_part() {
        let parsed = v("1.2.3-rc.5_1+12345");
        assert_eq!((parsed.major, parsed.minor, parsed.patch), (1, 2, 3));
        assert_eq!(
            parsed.prerelease,
            vec![
                Identifier::Alphanumeric("rc".into()),
                Identifier::Numeric(5)
            ]
        );
        assert_eq!(parsed.wrap, 1);
        assert!(parsed.is_prerelease());
        assert_eq!(parsed.to_string(), "1.2.3-rc.5_1");
        assert!(!v("0.9.4").is_prerelease());
        assert_eq!(
            v("10.0.0-glasser.isopacket.0").to_string(),
            "10.0.0-glasser.isopacket.0"
        );
    }

    #[test]
    fn rejects_what_the_tool_rejects() {
        for bad in [
            "",
            "1",
            "1.2",
            "1.2.3.4",
            "v1.2.3",
            "01.2.3",
            "1.02.3",
            "1.2.03",
            "1.2.3_",
            "1.2.3_0",
            "1.2.3_01",
            "1.2.3_1_2",
            "1.2.3_x",
            "1.2.3-",
            "1.2.3-a..b",
            "1.2.3-01",
            "1.2.3-a_b",
            "1.2.3+a+b",
            "1.2.3+",
            "1.2.3-é",
            "a.b.c",
            "1.2.x",
            " 1.2.3",
            "99999999999999999999.0.0",
        ] {
            assert!(
                MeteorVersion::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
        let error = MeteorVersion::parse("1.2").unwrap_err().to_string();
        assert!(
            error.contains("`1.2`") && error.contains("major.minor.patch"),
            "{error}"
        );
    }

    /// Each version is strictly below the next, as `PackageVersion.compare` orders them.
    #[test]
    fn orders_as_the_meteor_tool() {
        let ascending = [
            "0.0.0-glasser-isopacket.0",
            "0.0.1",
            "0.9.0-rc.1",
            "0.9.0-rc.2",
            "0.9.0-rc.10",
            "0.9.0-rc.10_1",
            "0.9.0",
            "0.9.0_1",
            "0.9.0_2",
            "0.9.0_10",
            "0.9.1",
            "0.10.0",
            "1.0.0-0",
            "1.0.0-1",
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0-rc1",
            "1.0.0",
            "1.0.1",
            "1.2.3",
            "1.10.0",
            "2.0.0",
            "10.0.0-glasser.isopacket.0",
            "10.0.0",
        ];
        for pair in ascending.windows(2) {
            let (low, high) = (v(pair[0]), v(pair[1]));
            assert!(low < high, "{} < {}", pair[0], pair[1]);
            assert!(low.sort_key() < high.sort_key());
        }
        let mut shuffled: Vec<MeteorVersion> = ascending.iter().rev().map(|s| v(s)).collect();
        shuffled.sort();
        let sorted: Vec<String> = shuffled.iter().map(ToString::to_string).collect();
        assert_eq!(sorted, ascending);
    }

    #[test]
    fn build_ids_do_not_change_the_order() {
        assert_eq!(v("1.2.3+build.1").cmp(&v("1.2.3")), Ordering::Equal);
        assert_eq!(v("1.2.3_1+b").cmp(&v("1.2.3_1")), Ordering::Equal);
        assert!(v("1.2.3+zzz") < v("1.2.4+aaa"));
    }

    #[test]
    fn numbers_compare_numerically_not_as_text() {
        assert!(v("1.9.0") < v("1.10.0"));
        assert!(v("1.0.0-rc.9") < v("1.0.0-rc.10"));
        assert!(v("1.0.0_9") < v("1.0.0_10"));
        assert!(v("9007199254740991.0.0") > v("9007199254740990.99.99"));
    }

    #[test]
    fn numbers_beyond_javascripts_safe_integers_follow_semver() {
        // A major, minor or patch semver cannot hold exactly is refused…
        for text in [
            "9007199254740992.0.0",
            "1.9007199254740992.0",
            "1.0.9007199254740992",
        ] {
            assert!(MeteorVersion::parse(text).is_err(), "{text}");
        }
        // …a prerelease part that large is kept as text, so it sorts after every number…
        let stamp = v("1.0.0-rc.20251121223344556");
        assert!(stamp > v("1.0.0-rc.9007199254740991"));
        assert!(stamp < v("1.0.0"));
        // …and a wrap number (read with `parseInt`) has no such limit.
        assert!(v("1.0.0_9007199254740993") > v("1.0.0_9007199254740992"));
    }

    #[test]
    fn is_version_follows_meteor() {
        for ok in [
            "1.0.0",
            "0.10.2_3",
            "1.0.0-rc.1",
            "2.0.0-beta.1_2",
            "1.2.3+build.7",
        ] {
            assert!(is_version(ok), "{ok}");
        }
        for bad in [
            "",
            "1.0",
            "1.0.0.0",
            "a.b.c",
            "1.0.0-",
            "1.0.0_",
            "1.0.0_x",
            "1.0.0+",
            "1..0",
            "01.0.0",
            "1.0.0_0",
            "1.0.0-rc.01",
            "1.0.0+a+b",
        ] {
            assert!(!is_version(bad), "{bad}");
        }
    }
}
