//! What the mirror is doing, as `/healthz` shows it: a snapshot the job updates as it goes.

use serde_json::{Value, json};

/// The mirror's phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MirrorPhase {
    /// Connecting to the upstream for the first time.
    Starting,
    /// A pass is running; `staging` when it fills a staged catalog beside the served one
    /// (the first mirror, or a resync after the upstream reset).
    Syncing {
        /// Whether the pages go to the staged catalog.
        staging: bool,
    },
    /// The last pass reached the upstream's `upToDate`; waiting for the next change.
    UpToDate,
    /// The upstream fails, or the mirror cannot run (its duty cannot be taken: the
    /// catalog's database is away); the served catalog stays as it was.
    Failing {
        /// When the failures began (ms since the Unix epoch).
        since_ms: i64,
        /// The last error.
        error: String,
    },
    /// Another server of the catalog runs the mirror; this one takes over if that one
    /// stops (several servers on one database, `Duty::Mirror`).
    Standby,
    /// A staged catalog waits for an operator (`exosphere mirror accept`).
    Held {
        /// Why it was not applied.
        reason: String,
    },
}

/// A snapshot of the mirror for `/healthz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorStatus {
    /// The upstream URL.
    pub upstream: String,
    /// What the mirror is doing.
    pub phase: MirrorPhase,
    /// When a pass last reached `upToDate` (ms since the Unix epoch).
    pub last_success_ms: Option<i64>,
    /// Upstream pages stored since the server started (pages of a staged catalog are stored
    /// a few at a time).
    pub pages: u64,
    /// Records received since the server started.
    pub records: u64,
    /// Upstream records refused (not a valid record) since the server started.
    pub rejected: u64,
    /// Upstream records not served because a local record holds their name.
    pub shadowed: u64,
    /// Full resyncs beside the served catalog since the server started (the upstream reset,
    /// or its token went backwards).
    pub resyncs: u64,
}

impl MirrorStatus {
    /// The status of a mirror that has not connected yet.
    pub fn new(upstream: &str) -> MirrorStatus {
        MirrorStatus {
            upstream: upstream.to_owned(),
            phase: MirrorPhase::Starting,
            last_success_ms: None,
            pages: 0,
            records: 0,
            rejected: 0,
            shadowed: 0,
            resyncs: 0,
        }
    }

    /// The status as `/healthz` reports it; `now_ms` dates the lag: none while up to date,
    /// else the time since the last pass that reached the upstream's `upToDate`.
    pub fn to_json(&self, now_ms: i64) -> Value {
        let (state, detail) = match &self.phase {
            MirrorPhase::Starting => ("starting", json!(null)),
            MirrorPhase::Syncing { staging: false } => ("syncing", json!(null)),
            MirrorPhase::Syncing { staging: true } => ("syncing a full catalog", json!(null)),
            MirrorPhase::UpToDate => ("up to date", json!(null)),
            MirrorPhase::Failing { since_ms, error } => {
                ("failing", json!({"since_ms": since_ms, "error": error}))
            }
            MirrorPhase::Held { reason } => ("held for an operator", json!({"reason": reason})),
            MirrorPhase::Standby => ("standby: another server runs the mirror", json!(null)),
        };
        json!({
            "upstream": self.upstream,
            "state": state,
            "detail": detail,
            "last_success_ms": self.last_success_ms,
            "lag_ms": match self.phase {
                MirrorPhase::UpToDate => Some(0),
                _ => self.last_success_ms.map(|at| now_ms.saturating_sub(at)),
            },
            "pages": self.pages,
            "records": self.records,
            "rejected": self.rejected,
            "shadowed": self.shadowed,
            "resyncs": self.resyncs,
        })
    }
}
