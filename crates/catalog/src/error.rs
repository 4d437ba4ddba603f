//! [`StoreError`], the one error type of every storage operation: its own module, so
//! the storage interface, the records and the modules built on the store (accounts,
//! stats, usage) can all name it without importing each other.

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory could not be created or accessed.
    #[error("catalog data directory {path}: {source}")]
    Io {
        /// The directory or file concerned.
        path: std::path::PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Another writer (possibly another process on the same data directory) held the
    /// catalog longer than the configured busy timeout.
    #[error("the catalog is locked by another writer (waited for the busy timeout); try again")]
    Busy,
    /// The database was written by a newer Exosphere whose schema this build cannot read.
    #[error(
        "the catalog database uses schema version {found}, but this Exosphere only knows \
         versions up to {supported}; upgrade Exosphere to open it"
    )]
    SchemaTooNew {
        /// The schema version found in the database.
        found: i64,
        /// The newest schema version this build knows.
        supported: i64,
    },
    /// The database file belongs to some other application.
    #[error("{0} is not an Exosphere catalog database")]
    NotACatalog(std::path::PathBuf),
    /// Stored data violates an invariant (e.g. a missing metadata row).
    #[error("the catalog database is corrupt: {0}")]
    Corrupt(String),
    /// Any other backend failure; the source names the backend's own error.
    #[error("catalog database error: {0}")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A write callback returned this to roll its transaction back on purpose; the caller
    /// reports its own reason.
    #[error("the write was aborted by its caller")]
    Aborted,
    /// A write would change the content of a published version or build (its files,
    /// hashes, dependencies…), which never changes once published; nothing was written.
    #[error(
        "refused to change `{field}` of the published {collection} record {id}: a published \
         version's files, hashes and dependencies never change; publish a new version \
         (`meteor publish` after raising the version number) instead"
    )]
    Immutable {
        /// The record's collection.
        collection: exosphere_meteor::Collection,
        /// The record's `_id`.
        id: String,
        /// The first fixed field the write would change.
        field: String,
    },
    /// A new version record would stand for a `name@version` already published under
    /// another `_id`: clients would see two different versions of one name; nothing was
    /// written.
    #[error(
        "refused to add the version record {id}: {name} is already published as {published}, \
         and a published version never changes; publish a new version (`meteor publish` after \
         raising the version number) instead"
    )]
    PublishedVersionTaken {
        /// The new record's `_id`.
        id: String,
        /// `package@version`.
        name: String,
        /// The `_id` of the published record of that name.
        published: String,
    },
    /// A delete would remove a published version or build, which stays for good; nothing
    /// was written.
    #[error(
        "refused to delete the published {collection} record {id}: a published version stays \
         installable for every client that synced it; publish a new version instead"
    )]
    PublishedDeletion {
        /// The record's collection.
        collection: exosphere_meteor::Collection,
        /// The record's `_id`.
        id: String,
    },
    /// The disk holding the catalog is full, so a write could not be kept; nothing of it
    /// was written. Named apart from [`StoreError::Database`] because the operator has to
    /// free space there, and clients should be told the server cannot save right now.
    #[error("{}", .0.disk_full())]
    DiskFull(Storage),
    /// The storage holding the catalog accepts no writes (a file system mounted read-only
    /// or turned so by the kernel after disk errors; a database server that is a standby or
    /// read-only), so a write could not be kept; nothing of it was written. Named for the
    /// same reason as [`StoreError::DiskFull`].
    #[error("{}", .0.read_only())]
    ReadOnly(Storage),
    /// A background task that accessed the store failed (e.g. panicked).
    #[error("catalog background task failed: {0}")]
    TaskFailed(String),
    /// A bulk load ([`crate::bulk::BulkStore::load_rows`]) found the store holding a
    /// catalog already (what it holds, e.g. `rec_packages 210, users 2`); nothing was
    /// written. A whole catalog is only ever copied into an empty store, so that no row of
    /// either is silently merged or lost.
    #[error(
        "the target catalog is not empty (it holds {0}); nothing was written. Copy into a new, \
         empty PostgreSQL database (createdb NAME) or a new data directory instead"
    )]
    NotEmpty(String),
    /// A bulk load ([`crate::bulk::BulkStore::load_rows`], [`crate::bulk::import_dump`])
    /// refused its rows (why, naming the key or record), though the store's own writes may
    /// still take them one by one; nothing was written. Two rows share a key (a record's
    /// `_id`, a stats row's day, name and version; in an import, two version records'
    /// `packageName` and `version`), or a version record does not name them as strings.
    /// `exosphere import` then imports the dump record by record, whose upserts decide
    /// each case; any other error of a load is not this one.
    #[error("the rows cannot be bulk loaded: {0}; nothing was written")]
    BulkRefused(String),
}

/// Where the catalog is stored, as [`StoreError::DiskFull`] and [`StoreError::ReadOnly`]
/// name it: each backend's storage needs its own next step from the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// A data directory on a local file system (SQLite).
    Directory(std::path::PathBuf),
    /// A database server, as its backend describes it ("the PostgreSQL database NAME on
    /// HOST:PORT").
    Server(String),
}

impl Storage {
    /// The message of [`StoreError::DiskFull`] for this storage.
    fn disk_full(&self) -> String {
        match self {
            Storage::Directory(dir) => format!(
                "the disk holding the catalog in {} is full; nothing was written. Free space \
                 there and try again",
                dir.display()
            ),
            Storage::Server(server) => format!(
                "the disk of {server} is full; nothing was written. Free space on the \
                 database server's disk (or grow its volume) and try again"
            ),
        }
    }

    /// The message of [`StoreError::ReadOnly`] for this storage.
    fn read_only(&self) -> String {
        match self {
            Storage::Directory(dir) => format!(
                "the file system holding the catalog in {} is read-only; nothing was written. \
                 Make it writable again (check the disk, remount it read-write) and try again",
                dir.display()
            ),
            Storage::Server(server) => format!(
                "{server} accepts no writes (a hot standby, or default_transaction_read_only \
                 is on); nothing was written. Point the database URL at the primary, or turn \
                 default_transaction_read_only off, and try again"
            ),
        }
    }
}
