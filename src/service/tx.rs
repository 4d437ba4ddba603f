//! What a publishing method's transaction body returns: a value, a refusal the client sees,
//! or a storage failure. Every helper that runs inside a transaction returns [`Tx`], so `?`
//! carries both kinds of failure out of the body; the catalog's
//! [`write_or_refuse`](exosphere_catalog::write_or_refuse) runs the transaction.

use exosphere_catalog::error::Storage;
use exosphere_catalog::{Refusal, StoreError};
use exosphere_ddp::DdpError;

/// Why a method's transaction stopped: a refusal the client sees, or a storage failure.
pub enum Fail {
    /// Roll back and answer this error.
    Client(DdpError),
    /// Roll back and answer 500 (or 503 when the store is busy).
    Store(StoreError),
}

impl From<DdpError> for Fail {
    fn from(error: DdpError) -> Self {
        Fail::Client(error)
    }
}

impl From<StoreError> for Fail {
    fn from(error: StoreError) -> Self {
        Fail::Store(error)
    }
}

impl From<Fail> for Refusal<DdpError> {
    fn from(fail: Fail) -> Self {
        match fail {
            Fail::Client(error) => Refusal::Refused(error),
            Fail::Store(error) => Refusal::Store(error),
        }
    }
}

/// The result type of transaction bodies.
pub type Tx<T> = Result<T, Fail>;

/// The answer to a write the catalog's storage could not take, full (507) or read-only
/// (503): the client is told plainly that nothing was saved and to try again later, in
/// words true of the backend (the server's own disk for SQLite, its database for
/// PostgreSQL), and the operator's log gets the store's message, which names the data
/// directory or database and what to do. `None` for any other failure.
pub fn disk_refusal(error: &StoreError) -> Option<DdpError> {
    let (code, what) = match error {
        StoreError::DiskFull(Storage::Directory(_)) => (507, "its disk is full"),
        StoreError::DiskFull(Storage::Server(_)) => (507, "its database's disk is full"),
        StoreError::ReadOnly(Storage::Directory(_)) => (503, "its disk is read-only"),
        StoreError::ReadOnly(Storage::Server(_)) => (503, "its database accepts no writes"),
        _ => return None,
    };
    tracing::error!(%error, "a write failed: the catalog's storage (its disk, or its database) accepts no writes");
    Some(DdpError::new(
        code,
        format!(
            "The package server cannot save anything right now: {what}. Nothing was saved; \
             try again later"
        ),
    ))
}
