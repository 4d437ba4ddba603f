//! The audit log: who did what to the catalog and its accounts, when, and from which
//! address.
//!
//! Every publishing method, login and account command writes its [`AuditEntry`] with
//! [`crate::CatalogWriter::audit`] in the same transaction as the change it records, so the
//! log and the catalog can never disagree: a change that rolled back left no entry, and
//! an entry names a change that committed. Entries name targets (packages, versions, users,
//! token ids), never a token or another secret. `exosphere audit` reads them with
//! [`crate::CatalogStore::audit_log`], newest first.
//!
//! The log is never trimmed by the server: it grows with publishing and administration,
//! which people do at human pace, plus one entry per failed login, which the server rate
//! limits per address and per account.

use serde_json::Value;

/// One recorded action.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// When it happened, ms since the Unix epoch.
    pub time: i64,
    /// Who did it: a username for DDP methods (`anonymous` for a login with an unknown
    /// token), `cli:<OS user>` for the command line.
    pub actor: String,
    /// The client address of a DDP call; `None` for the command line.
    pub address: Option<String>,
    /// What was done, dotted (`package.create`, `version.publish`, `login.failed`, …).
    pub action: String,
    /// What it was done to: a package, `name@version`, a release, a user, an org or a
    /// token id.
    pub target: String,
    /// The package (or release track) concerned, so `exosphere audit --package` finds
    /// every action on it, whatever the target's form.
    pub package: Option<String>,
    /// A small JSON object with the particulars (a maintainer added, a build's
    /// architectures, why a login failed).
    pub detail: Value,
}

/// An entry's `detail` read back from the text column every SQL backend stores it in (its
/// JSON text): one rule for all backends. Text that is not JSON is kept as a JSON string
/// rather than failing the whole log.
pub fn detail_from_text(text: String) -> Value {
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

/// Which entries [`crate::CatalogStore::audit_log`] returns: every filter set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only entries whose actor is this.
    pub actor: Option<String>,
    /// Only entries about this package or release track.
    pub package: Option<String>,
    /// Only entries at or after this time (ms since the Unix epoch).
    pub since: Option<i64>,
    /// Only entries before this time (ms since the Unix epoch).
    pub until: Option<i64>,
    /// At most this many entries, the newest ones; 0 means no limit.
    pub limit: usize,
}

impl AuditQuery {
    /// Whether `entry` passes every filter of this query (not the limit), so backends and
    /// tests agree on what a filter means.
    pub fn matches(&self, entry: &AuditEntry) -> bool {
        self.actor
            .as_ref()
            .is_none_or(|actor| *actor == entry.actor)
            && self
                .package
                .as_ref()
                .is_none_or(|package| entry.package.as_ref() == Some(package))
            && self.since.is_none_or(|since| entry.time >= since)
            && self.until.is_none_or(|until| entry.time < until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_filter_must_match() {
        let entry = AuditEntry {
            time: 1_000,
            actor: "ada".into(),
            address: None,
            action: "package.create".into(),
            target: "ada:widget".into(),
            package: Some("ada:widget".into()),
            detail: Value::Null,
        };
        assert!(AuditQuery::default().matches(&entry));
        let query = AuditQuery {
            actor: Some("ada".into()),
            package: Some("ada:widget".into()),
            since: Some(1_000),
            until: Some(1_001),
            limit: 1,
        };
        assert!(query.matches(&entry));
        for other in [
            AuditQuery {
                actor: Some("bob".into()),
                ..query.clone()
            },
            AuditQuery {
                package: Some("ada:other".into()),
                ..query.clone()
            },
            AuditQuery {
                since: Some(1_001),
                ..query.clone()
            },
            AuditQuery {
                until: Some(1_000),
                ..query.clone()
            },
        ] {
            assert!(!other.matches(&entry), "{other:?}");
        }
    }
}
