//! PostgreSQL errors as [`StoreError`]s, without exposing `postgres` types: contention
//! becomes [`StoreError::Busy`], a full disk [`StoreError::DiskFull`] and a read-only
//! server [`StoreError::ReadOnly`], each naming the database, so the operator reads what to
//! do next.

use exosphere_catalog::error::{Storage, StoreError};
use tokio_postgres::error::SqlState;

/// Conditions that go away when retried: another writer held a lock past `lock_timeout`, a
/// deadlock or serialization failure, or a statement cancelled by `statement_timeout`.
const BUSY: [SqlState; 4] = [
    SqlState::LOCK_NOT_AVAILABLE,
    SqlState::T_R_DEADLOCK_DETECTED,
    SqlState::T_R_SERIALIZATION_FAILURE,
    SqlState::QUERY_CANCELED,
];

/// Maps driver results to [`StoreError`].
pub(crate) trait Db<T> {
    /// The result with a driver error mapped ([`StoreError::Busy`] or
    /// [`StoreError::Database`]).
    fn db(self) -> Result<T, StoreError>;
}

impl<T> Db<T> for Result<T, tokio_postgres::Error> {
    fn db(self) -> Result<T, StoreError> {
        self.map_err(|error| match error.code() {
            Some(code) if BUSY.contains(code) => StoreError::Busy,
            _ => StoreError::Database(Box::new(error)),
        })
    }
}

/// Names a failure's storage trouble: PostgreSQL's `disk_full` (53100) becomes
/// [`StoreError::DiskFull`] and `read_only_sql_transaction` (25006: a standby, or
/// `default_transaction_read_only`) [`StoreError::ReadOnly`], both naming `database` (a
/// description of the database, see [`crate::PgStore`]); anything else is returned
/// unchanged.
pub(crate) fn name_storage_trouble(error: StoreError, database: &str) -> StoreError {
    let StoreError::Database(source) = &error else {
        return error;
    };
    let server = || Storage::Server(database.to_owned());
    match source
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(tokio_postgres::Error::code)
    {
        Some(&SqlState::DISK_FULL) => StoreError::DiskFull(server()),
        Some(&SqlState::READ_ONLY_SQL_TRANSACTION) => StoreError::ReadOnly(server()),
        _ => error,
    }
}

/// Names a bulk load's refusal: PostgreSQL's `unique_violation` (23505) becomes
/// [`StoreError::BulkRefused`] with the server's message and detail (which name the
/// constraint and the key); anything else is returned unchanged.
pub(crate) fn name_bulk_refusal(error: StoreError) -> StoreError {
    let StoreError::Database(source) = &error else {
        return error;
    };
    match source
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(tokio_postgres::Error::as_db_error)
    {
        Some(db) if *db.code() == SqlState::UNIQUE_VIOLATION => {
            StoreError::BulkRefused(match db.detail() {
                Some(detail) => format!("{} ({detail})", db.message()),
                None => db.message().to_owned(),
            })
        }
        _ => error,
    }
}

/// A refusal of the database's configuration or contents that names what to fix.
pub(crate) fn refusal(message: String) -> StoreError {
    StoreError::Database(message.into())
}

/// Whether `error` says that the connection it came from is gone or going: closed, failed
/// on its socket, a connection exception (SQLSTATE class 08) or the server ending the
/// session (57P01-57P05: shutdown, crash recovery, termination). Any other failure leaves
/// the connection usable (its transaction is rolled back when dropped), so only these make
/// the pool discard it.
pub(crate) fn connection_lost(error: &StoreError) -> bool {
    let StoreError::Database(source) = error else {
        return false;
    };
    let Some(error) = source.downcast_ref::<tokio_postgres::Error>() else {
        return false;
    };
    if error.is_closed() {
        return true;
    }
    match error.code() {
        Some(code) => {
            let code = code.code();
            code.starts_with("08") || code.starts_with("57P0")
        }
        None => {
            std::error::Error::source(error).is_some_and(|source| source.is::<std::io::Error>())
        }
    }
}
