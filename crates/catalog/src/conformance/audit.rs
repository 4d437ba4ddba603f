//! The audit log: entries commit with the transaction that wrote them, and read back
//! filtered, newest first.

use serde_json::json;

use super::{NewStore, with};
use crate::audit::{AuditEntry, AuditQuery};
use crate::error::StoreError;

fn entry(time: i64, actor: &str, action: &str, package: Option<&str>) -> AuditEntry {
    AuditEntry {
        time,
        actor: actor.into(),
        address: Some("192.0.2.1".into()),
        action: action.into(),
        target: package.unwrap_or(actor).into(),
        package: package.map(str::to_owned),
        detail: json!({"n": time}),
    }
}

/// Entries of a committed transaction are read back whole, newest first and filtered by
/// actor, package and time range, within the limit; a rolled-back transaction's are not.
pub fn audit_entries_commit_with_their_write_and_read_back_filtered(new_store: NewStore<'_>) {
    let store = new_store();
    assert!(store.audit_log(&AuditQuery::default()).unwrap().is_empty());
    let entries = [
        entry(10, "ada", "package.create", Some("ada:a")),
        entry(20, "bob", "login", None),
        entry(20, "ada", "version.publish", Some("ada:a")),
        entry(30, "ada", "package.create", Some("ada:b")),
    ];
    with(&*store, |w| entries.iter().try_for_each(|e| w.audit(e)));
    let rolled_back = store.write(&mut |w| {
        w.audit(&entry(40, "eve", "login", None))?;
        Err(StoreError::Aborted)
    });
    assert!(matches!(rolled_back, Err(StoreError::Aborted)));

    let read = |query: AuditQuery| store.audit_log(&query).unwrap();
    let all = read(AuditQuery::default());
    let expected: Vec<AuditEntry> = entries.iter().rev().cloned().collect();
    assert_eq!(
        all, expected,
        "newest first, same time in reverse write order"
    );
    let ada = read(AuditQuery {
        actor: Some("ada".into()),
        ..AuditQuery::default()
    });
    assert_eq!(ada.len(), 3);
    let package = read(AuditQuery {
        package: Some("ada:a".into()),
        ..AuditQuery::default()
    });
    assert_eq!(package, [entries[2].clone(), entries[0].clone()]);
    let range = read(AuditQuery {
        since: Some(20),
        until: Some(30),
        ..AuditQuery::default()
    });
    assert_eq!(range, [entries[2].clone(), entries[1].clone()]);
    let limited = read(AuditQuery {
        limit: 1,
        ..AuditQuery::default()
    });
    assert_eq!(limited, [entries[3].clone()]);
    let query = AuditQuery {
        actor: Some("ada".into()),
        since: Some(15),
        ..AuditQuery::default()
    };
    assert!(read(query.clone()).iter().all(|e| query.matches(e)));
}
