//! `exosphere audit`: reads the audit log ([`exosphere_catalog::audit`]) of a data
//! directory, beside a running server; and the entries the command-line account commands
//! write, with the operating-system user as their actor.

use anyhow::{Context as _, bail};
use chrono::{DateTime, NaiveDate, Utc};
use exosphere_catalog::audit::{AuditEntry, AuditQuery};
use exosphere_catalog::{CatalogWriter, StoreError};
use serde_json::{Value, json};

use crate::cli::AuditArgs;
use crate::commands::{at, open_catalog};

/// `exosphere audit`: the matching entries, newest first, one per line (tab-separated
/// text, or one JSON object per line with `--json`).
pub fn run(args: AuditArgs) -> anyhow::Result<()> {
    let query = AuditQuery {
        actor: args.user,
        package: args.package,
        since: args.since.as_deref().map(moment).transpose()?,
        until: args.until.as_deref().map(moment).transpose()?,
        limit: usize::try_from(args.limit)?,
    };
    let store = open_catalog(&args.data_dir)?;
    let entries = store
        .audit_log(&query)
        .context("cannot read the audit log")?;
    for entry in &entries {
        if args.json {
            println!("{}", as_json(entry));
        } else {
            println!(
                "{}\t{}\t{}\t{}\t{}\t{}",
                at(entry.time),
                entry.actor,
                entry.address.as_deref().unwrap_or("-"),
                entry.action,
                entry.target,
                entry.detail
            );
        }
    }
    if entries.is_empty() && !args.json {
        eprintln!("no audit entries match");
    }
    Ok(())
}

/// One entry as `--json` prints it.
fn as_json(entry: &AuditEntry) -> Value {
    json!({
        "time": at(entry.time),
        "actor": entry.actor,
        "address": entry.address,
        "action": entry.action,
        "target": entry.target,
        "package": entry.package,
        "detail": entry.detail,
    })
}

/// `--since`/`--until`: a day (`2026-12-01`, its midnight UTC) or an RFC 3339 time, in ms
/// since the Unix epoch.
fn moment(text: &str) -> anyhow::Result<i64> {
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(day
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc()
            .timestamp_millis());
    }
    match DateTime::parse_from_rfc3339(text) {
        Ok(time) => Ok(time.with_timezone(&Utc).timestamp_millis()),
        Err(_) => bail!(
            "{text:?} is neither a day (2026-12-01) nor an RFC 3339 time \
             (2026-12-01T09:30:00Z); try `exosphere audit --since 2026-12-01`"
        ),
    }
}

/// Who the command line acts as in the audit log: `cli:` and the operating-system user
/// running it (`$USER`, else `$LOGNAME`), or just `cli` when neither is set.
fn operator() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|name| !name.is_empty())
        .map_or_else(|| "cli".to_owned(), |name| format!("cli:{name}"))
}

/// Records that the command line did `action` to `target` (about `package`, a package or
/// release track name, when there is one), in `writer`'s transaction.
pub(crate) fn record(
    writer: &mut dyn CatalogWriter,
    action: &str,
    target: &str,
    package: Option<&str>,
    detail: Value,
) -> Result<(), StoreError> {
    writer.audit(&AuditEntry {
        time: Utc::now().timestamp_millis(),
        actor: operator(),
        address: None,
        action: action.to_owned(),
        target: target.to_owned(),
        package: package.map(str::to_owned),
        detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_are_days_or_rfc3339_times() {
        assert_eq!(moment("1970-01-02").unwrap(), 86_400_000);
        assert_eq!(moment("1970-01-01T00:00:01+00:00").unwrap(), 1_000);
        assert_eq!(moment("1970-01-01T01:00:00+01:00").unwrap(), 0);
        let error = moment("yesterday").unwrap_err().to_string();
        assert!(error.contains("exosphere audit --since"), "{error}");
    }
}
