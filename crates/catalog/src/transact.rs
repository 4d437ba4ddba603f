//! One write transaction whose body may refuse, for a reason of the caller's own, instead
//! of committing: [`write_or_refuse`].
//!
//! Commands and publishing methods check and write in one transaction (is the name free?
//! then insert the user), and a failed check must undo what the body already wrote and
//! reach the caller as that check's reason (a message, a DDP error), not as a storage
//! failure. [`CatalogStore::write`] only knows [`StoreError`], so this is the one place that
//! carries a reason of any type `R` through [`StoreError::Aborted`] and back.
//!
//! # The contract
//!
//! * The body runs exactly once, inside one write transaction (see [`CatalogStore::write`]).
//! * `Ok(value)`: everything the body wrote commits, and the caller gets `value` once the
//!   commit is durable; a failed commit is [`Refusal::Store`] and nothing is written.
//! * `Err(Refusal::Refused(reason))`: everything the body wrote is rolled back and the
//!   caller gets `reason`.
//! * `Err(Refusal::Store(error))` (what `?` makes of a [`StoreError`] in the body): rolled
//!   back, and the caller gets `error`.

use crate::error::StoreError;
use crate::store::{CatalogStore, CatalogWriter};

/// How a [`write_or_refuse`] body (and so the call) ends without committing: refused for
/// the caller's reason, or failed in the store. `?` turns a [`StoreError`] into the latter.
#[derive(Debug, thiserror::Error)]
pub enum Refusal<R> {
    /// The body refused; nothing it wrote was kept. The reason is the caller's to report.
    #[error("{0}")]
    Refused(R),
    /// The store failed (in the body or at commit); nothing was written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Runs `body` in one write transaction of `store`: commits what it wrote and returns its
/// value, or rolls everything back and returns its refusal or the store's error (see the
/// module documentation). Blocking, like every [`CatalogStore`] call.
pub fn write_or_refuse<T, R>(
    store: &dyn CatalogStore,
    mut body: impl FnMut(&mut dyn CatalogWriter) -> Result<T, Refusal<R>>,
) -> Result<T, Refusal<R>> {
    let mut outcome = None;
    let written = store.write(&mut |writer| match body(writer) {
        Ok(value) => {
            outcome = Some(Ok(value));
            Ok(())
        }
        Err(Refusal::Refused(reason)) => {
            outcome = Some(Err(reason));
            Err(StoreError::Aborted)
        }
        Err(Refusal::Store(error)) => Err(error),
    });
    match (written, outcome) {
        (Ok(()), Some(Ok(value))) => Ok(value),
        (Err(StoreError::Aborted), Some(Err(reason))) => Err(Refusal::Refused(reason)),
        (Err(error), _) => Err(Refusal::Store(error)),
        (Ok(()), _) => Err(Refusal::Store(StoreError::Database(
            "the store committed a write whose body it did not run or that refused".into(),
        ))),
    }
}
