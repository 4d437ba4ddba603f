//! Validating `recordAppPackages` reports (spec §7.1): the app id and its non-local
//! packages, sorted and deduplicated, ready to be recorded by any store.

use std::hash::{DefaultHasher, Hash as _, Hasher as _};

use exosphere_ejson::Ejson;
use exosphere_meteor::{names::is_package_name, version::is_version};

/// The longest accepted app id, package name or version, in bytes.
pub const MAX_FIELD_BYTES: usize = 256;

/// Bounds on one report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageLimits {
    /// The most packages one report may list (local ones included). Real apps list a few
    /// dozen to a few hundred.
    pub max_packages: usize,
}

impl Default for UsageLimits {
    fn default() -> Self {
        UsageLimits { max_packages: 2000 }
    }
}

/// Why a report was refused; nothing of it is stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidReport {
    /// The app id is missing, empty, too long or holds control characters.
    #[error(
        "appId must be a non-empty string of at most {MAX_FIELD_BYTES} bytes without control characters"
    )]
    AppId,
    /// `packages` is not an array.
    #[error("packages must be an array")]
    NotAnArray,
    /// `packages` has more entries than allowed.
    #[error("packages lists {found} entries; at most {max} are accepted")]
    TooManyPackages {
        /// The number of entries sent.
        found: usize,
        /// The configured limit.
        max: usize,
    },
    /// One entry is malformed.
    #[error("packages[{index}]: {reason}")]
    Package {
        /// The entry's position in the array.
        index: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// One non-local package of a report.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UsedPackage {
    /// The package name, e.g. `iron:router`.
    pub name: String,
    /// The version, e.g. `1.0.0`.
    pub version: String,
    /// Whether the app lists the package directly (in `.meteor/packages`).
    pub direct: bool,
}

/// A validated report: an app id and its non-local packages, sorted and deduplicated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppReport {
    app_id: String,
    packages: Vec<UsedPackage>,
    list_hash: i64,
}

impl AppReport {
    /// Validates the first two `recordAppPackages` parameters as the tool sends them
    /// (spec §7.1): `appId` a string, `packages` an array of
    /// `{name, version, local, direct}` objects (`local` and `direct` default to false).
    /// Local packages are checked for shape only and then left out. Takes the decoded
    /// parameters by value so names and versions move into the report without a copy.
    pub fn from_params(
        app_id: Ejson,
        packages: Ejson,
        limits: &UsageLimits,
    ) -> Result<AppReport, InvalidReport> {
        let Ejson::String(app_id) = app_id else {
            return Err(InvalidReport::AppId);
        };
        let Ejson::Array(entries) = packages else {
            return Err(InvalidReport::NotAnArray);
        };
        if entries.len() > limits.max_packages {
            return Err(InvalidReport::TooManyPackages {
                found: entries.len(),
                max: limits.max_packages,
            });
        }
        let mut used = Vec::with_capacity(entries.len());
        for (index, entry) in entries.into_iter().enumerate() {
            let bad = |reason| InvalidReport::Package { index, reason };
            let Ejson::Object(mut entry) = entry else {
                return Err(bad("must be an object"));
            };
            let mut field = |key| match entry.swap_remove(key) {
                Some(Ejson::String(text)) => Some(text),
                _ => None,
            };
            let name = field("name").ok_or_else(|| bad("name must be a string"))?;
            let version = field("version").ok_or_else(|| bad("version must be a string"))?;
            let flag = |key| match entry.get(key) {
                None | Some(Ejson::Null) => Ok(false),
                Some(value) => value.as_bool().ok_or(()),
            };
            let local = flag("local").map_err(|()| bad("local must be a boolean"))?;
            let direct = flag("direct").map_err(|()| bad("direct must be a boolean"))?;
            if name.len() > MAX_FIELD_BYTES || version.len() > MAX_FIELD_BYTES {
                return Err(bad("name and version must be at most 256 bytes"));
            }
            if local {
                continue;
            }
            if !is_package_name(&name) {
                return Err(bad("name is not a Meteor package name"));
            }
            if !is_version(&version) {
                return Err(bad("version is not a Meteor package version"));
            }
            used.push(UsedPackage {
                name,
                version,
                direct,
            });
        }
        AppReport::new(app_id, used)
    }

    /// Builds a report from already-known packages (e.g. a benchmark's workload), with the
    /// same app id check, sorting and deduplication as [`AppReport::from_params`].
    pub fn new(
        app_id: impl Into<String>,
        mut packages: Vec<UsedPackage>,
    ) -> Result<AppReport, InvalidReport> {
        let app_id = app_id.into();
        if app_id.is_empty()
            || app_id.len() > MAX_FIELD_BYTES
            || app_id.chars().any(char::is_control)
        {
            return Err(InvalidReport::AppId);
        }
        packages.sort_unstable_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
        packages.dedup_by(|later, kept| {
            let same = later.name == kept.name && later.version == kept.version;
            if same {
                kept.direct |= later.direct;
            }
            same
        });
        Ok(AppReport {
            app_id,
            list_hash: list_hash(&packages),
            packages,
        })
    }

    /// The same app with only `packages` (a subset of this report's, so still sorted and
    /// deduplicated), hashed again.
    pub(crate) fn with_packages(&self, packages: Vec<UsedPackage>) -> AppReport {
        AppReport {
            app_id: self.app_id.clone(),
            list_hash: list_hash(&packages),
            packages,
        }
    }

    /// The app id from the app's `.meteor/.id`.
    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    /// The non-local packages, sorted by name and version, each listed once.
    pub fn packages(&self) -> &[UsedPackage] {
        &self.packages
    }

    /// A hash of the package list: a store that finds the same hash as the app's previous
    /// report may skip the list, since nothing in it can be new. Only a shortcut: a hash
    /// that differs (e.g. after a Rust upgrade changes the hasher) just means the list is
    /// checked package by package, which records the same.
    pub fn list_hash(&self) -> i64 {
        self.list_hash
    }
}

/// The hash [`AppReport::list_hash`] answers for a package list.
fn list_hash(packages: &[UsedPackage]) -> i64 {
    let mut hasher = DefaultHasher::new();
    packages.hash(&mut hasher);
    hasher.finish().cast_signed()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ejson(value: serde_json::Value) -> Ejson {
        Ejson::from_json(value).unwrap()
    }

    fn report(value: serde_json::Value) -> Result<AppReport, InvalidReport> {
        AppReport::from_params(ejson(json!("app1")), ejson(value), &UsageLimits::default())
    }

    #[test]
    fn reports_drop_local_packages_sort_and_merge_duplicates() {
        let r = report(json!([
            {"name": "tracker", "version": "1.0.0", "local": false, "direct": false},
            {"name": "my-app-pkg", "version": "0.0.1", "local": true, "direct": true},
            {"name": "Weird Local", "version": "x", "local": true, "direct": true},
            {"name": "iron:router", "version": "1.0.0_2", "local": false, "direct": true},
            {"name": "tracker", "version": "1.0.0", "direct": true},
        ]))
        .unwrap();
        let listed: Vec<(&str, &str, bool)> = r
            .packages()
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str(), p.direct))
            .collect();
        assert_eq!(
            listed,
            [("iron:router", "1.0.0_2", true), ("tracker", "1.0.0", true)]
        );
        let same = report(json!([
            {"name": "tracker", "version": "1.0.0", "direct": true},
            {"name": "iron:router", "version": "1.0.0_2", "direct": true},
        ]))
        .unwrap();
        assert_eq!(r.list_hash(), same.list_hash());
        let other = report(json!([
            {"name": "tracker", "version": "1.0.0", "direct": false},
            {"name": "iron:router", "version": "1.0.0_2", "direct": true},
        ]))
        .unwrap();
        assert_ne!(r.list_hash(), other.list_hash());
    }

    #[test]
    fn bad_reports_are_refused_with_the_reason() {
        let limits = UsageLimits { max_packages: 2 };
        let app = ejson(json!("app"));
        let check = |app: &Ejson, packages: serde_json::Value| {
            AppReport::from_params(app.clone(), ejson(packages), &limits).unwrap_err()
        };
        assert_eq!(check(&ejson(json!(5)), json!([])), InvalidReport::AppId);
        assert_eq!(check(&ejson(json!("")), json!([])), InvalidReport::AppId);
        assert_eq!(
            check(&ejson(json!("a\nb")), json!([])),
            InvalidReport::AppId
        );
        assert_eq!(
            check(&ejson(json!("x".repeat(257))), json!([])),
            InvalidReport::AppId
        );
        assert_eq!(check(&app, json!({})), InvalidReport::NotAnArray);
        assert_eq!(
            check(&app, json!([{}, {}, {}])),
            InvalidReport::TooManyPackages { found: 3, max: 2 }
        );
        for (entry, reason) in [
            (json!(1), "must be an object"),
            (json!({"version": "1.0.0"}), "name must be a string"),
            (json!({"name": "a"}), "version must be a string"),
            (
                json!({"name": "a", "version": "1.0.0", "local": "no"}),
                "local must be a boolean",
            ),
            (
                json!({"name": "a", "version": "1.0.0", "direct": 1}),
                "direct must be a boolean",
            ),
            (
                json!({"name": "Abc", "version": "1.0.0"}),
                "name is not a Meteor package name",
            ),
            (
                json!({"name": "a", "version": "1.0"}),
                "version is not a Meteor package version",
            ),
            (
                json!({"name": "a", "version": "x".repeat(300)}),
                "name and version must be at most 256 bytes",
            ),
        ] {
            assert_eq!(
                check(&app, json!([entry])),
                InvalidReport::Package { index: 0, reason },
                "{entry}"
            );
        }
    }
}
