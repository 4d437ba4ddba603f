//! [`write_or_refuse`](crate::transact::write_or_refuse) on the store: a value commits, a
//! refusal or a store error rolls everything back.

use super::NewStore;
use super::store::{all, record};
use crate::Collection;
use crate::error::StoreError;
use crate::transact::{Refusal, write_or_refuse};

/// Checks that a body's value is returned and what it wrote is committed.
pub fn write_or_refuse_commits_what_the_body_wrote(new_store: NewStore<'_>) {
    let store = new_store();
    let value = write_or_refuse::<_, String>(&*store, |w| {
        w.upsert(&record(Collection::Packages, "p", "1"))?;
        Ok(7)
    });
    assert!(matches!(value, Ok(7)), "{value:?}");
    assert_eq!(all(&*store).len(), 1);
    assert_eq!(store.state().unwrap().head_seq, 1);
}

/// Checks that a refusal rolls back everything the body wrote and reaches the caller as
/// the body's own reason.
pub fn write_or_refuse_rolls_back_a_refusal_and_returns_its_reason(new_store: NewStore<'_>) {
    let store = new_store();
    let before = store.state().unwrap();
    let mut runs = 0;
    let refused = write_or_refuse::<(), _>(&*store, |w| {
        runs += 1;
        w.upsert(&record(Collection::Packages, "p", "1"))?;
        Err(Refusal::Refused(("taken", 42)))
    });
    assert!(
        matches!(refused, Err(Refusal::Refused(("taken", 42)))),
        "{refused:?}"
    );
    assert_eq!(runs, 1, "the body runs exactly once");
    assert!(all(&*store).is_empty());
    assert_eq!(store.state().unwrap(), before);
}

/// Checks that a store error in the body rolls back and reaches the caller as that error.
pub fn write_or_refuse_rolls_back_a_store_error(new_store: NewStore<'_>) {
    let store = new_store();
    let failed = write_or_refuse::<(), String>(&*store, |w| {
        w.upsert(&record(Collection::Packages, "p", "1"))?;
        Err(StoreError::Corrupt("on purpose".into()))?
    });
    assert!(
        matches!(&failed, Err(Refusal::Store(StoreError::Corrupt(why))) if why == "on purpose"),
        "{failed:?}"
    );
    assert!(all(&*store).is_empty());
}
