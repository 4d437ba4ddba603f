//! DDP protocol versions and the `connect` negotiation (spec §1.2).
//!
//! The server supports `1`, `pre2`, `pre1` in that order of preference. The answer to a
//! `connect` is one of: accept it, suggest another version with `failed`, or — where
//! Meteor's algorithm would answer `failed` with the very version the client proposed,
//! which makes clients re-dial forever — reject it outright.

use std::fmt;

/// A DDP protocol version this server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DdpVersion {
    /// `"1"`, the current protocol.
    V1,
    /// `"pre2"`: like `1` (heartbeats included).
    Pre2,
    /// `"pre1"`: no heartbeats; `ping`/`pong` are bad requests.
    Pre1,
}

impl DdpVersion {
    /// Supported versions, most preferred first.
    pub(crate) const SUPPORTED: [DdpVersion; 3] = [Self::V1, Self::Pre2, Self::Pre1];

    /// The wire name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "1",
            Self::Pre2 => "pre2",
            Self::Pre1 => "pre1",
        }
    }

    /// Whether this version has `ping`/`pong` heartbeats (all but `pre1`).
    pub(crate) fn has_heartbeats(self) -> bool {
        self != Self::Pre1
    }

    pub(crate) fn from_wire(name: &str) -> Option<Self> {
        Self::SUPPORTED.into_iter().find(|v| v.as_str() == name)
    }
}

impl fmt::Display for DdpVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of a client's `connect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Negotiation {
    /// Create the session with this version and send `connected`.
    Accept(DdpVersion),
    /// Send `failed` with this version (never the one proposed), then close.
    Suggest(DdpVersion),
    /// A malformed `connect` whose only possible suggestion is the proposal itself:
    /// answer with a protocol error and close instead of looping the client.
    Reject,
}

/// Meteor's `_handleConnect` + `calculateVersion`.
///
/// `version` is the proposal if it was a string; `support` the client's list if it was
/// an array of strings.
pub(crate) fn negotiate(version: Option<&str>, support: Option<&[String]>) -> Negotiation {
    let well_formed = match (version, support) {
        (Some(v), Some(list)) => list.iter().any(|s| s == v),
        _ => false,
    };
    let chosen = support
        .and_then(|list| list.iter().find_map(|s| DdpVersion::from_wire(s)))
        .unwrap_or(DdpVersion::SUPPORTED[0]);
    let proposes_chosen = version == Some(chosen.as_str());
    match (well_formed, proposes_chosen) {
        (true, true) => Negotiation::Accept(chosen),
        (false, true) => Negotiation::Reject,
        (_, false) => Negotiation::Suggest(chosen),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(version: Option<&str>, support: Option<&[&str]>) -> Negotiation {
        let support: Option<Vec<String>> =
            support.map(|list| list.iter().map(|s| (*s).to_owned()).collect());
        negotiate(version, support.as_deref())
    }

    #[test]
    fn accepts_each_supported_version() {
        use Negotiation::Accept;
        assert_eq!(
            run(Some("1"), Some(&["1", "pre2", "pre1"])),
            Accept(DdpVersion::V1)
        );
        assert_eq!(
            run(Some("pre2"), Some(&["pre2", "pre1"])),
            Accept(DdpVersion::Pre2)
        );
        assert_eq!(run(Some("pre1"), Some(&["pre1"])), Accept(DdpVersion::Pre1));
    }

    #[test]
    fn suggests_the_clients_first_supported_version() {
        use Negotiation::Suggest;
        assert_eq!(
            run(Some("pre2"), Some(&["1", "pre2"])),
            Suggest(DdpVersion::V1)
        );
        assert_eq!(
            run(Some("2"), Some(&["2", "pre1"])),
            Suggest(DdpVersion::Pre1)
        );
        assert_eq!(run(Some("2"), Some(&["2"])), Suggest(DdpVersion::V1));
        // Proposal missing from the support list.
        assert_eq!(run(Some("1"), Some(&["pre1"])), Suggest(DdpVersion::Pre1));
        assert_eq!(run(Some("pre2"), None), Suggest(DdpVersion::V1));
        assert_eq!(run(None, Some(&["1"])), Suggest(DdpVersion::V1));
    }

    #[test]
    fn never_suggests_the_proposed_version() {
        assert_eq!(run(Some("1"), None), Negotiation::Reject);
        assert_eq!(run(Some("1"), Some(&["2"])), Negotiation::Reject);
    }

    #[test]
    fn heartbeats() {
        assert!(DdpVersion::V1.has_heartbeats());
        assert!(DdpVersion::Pre2.has_heartbeats());
        assert!(!DdpVersion::Pre1.has_heartbeats());
        assert_eq!(DdpVersion::Pre2.to_string(), "pre2");
    }
}
