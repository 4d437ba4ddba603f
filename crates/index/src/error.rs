//! [`IndexError`]: everything that can go wrong with a local index, worded for the person
//! who typed the command, with the next step to take where there is one.

use std::path::{Path, PathBuf};

/// An error from the local index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// A query ran before any sync created the index.
    #[error("there is no index at {}: run `exosphere sync` first", path.display())]
    Missing {
        /// Where the index was looked for.
        path: PathBuf,
    },
    /// The index exists but no sync has completed a page yet.
    #[error("the index at {} is empty: run `exosphere sync` first", path.display())]
    NotSynced {
        /// The index file.
        path: PathBuf,
    },
    /// A first sync into the index stopped before it was up to date.
    #[error(
        "the first sync into {} has not finished: run `exosphere sync` to complete it",
        path.display()
    )]
    Unfinished {
        /// The index file.
        path: PathBuf,
    },
    /// The file was written by a newer Exosphere with a schema this one cannot read.
    #[error(
        "the index at {} was written by a newer version of Exosphere (index schema {found}, \
         this version reads schema {supported}): upgrade Exosphere, or run \
         `exosphere sync --rebuild` to rebuild the index with this version",
        path.display()
    )]
    NewerSchema {
        /// The index file.
        path: PathBuf,
        /// The schema version found in the file.
        found: i64,
        /// The schema version this build reads and writes.
        supported: i64,
    },
    /// The file is not an index, is damaged, or has an older schema.
    #[error(
        "the index at {} cannot be used ({reason}): run `exosphere sync --rebuild` to build it again",
        path.display()
    )]
    Corrupt {
        /// The index file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A sync from one server into an index that holds another server's catalog: their
    /// tokens may look alike (packages.meteor.com's are timestamps), so carrying on would
    /// mix the two catalogs instead of resetting.
    #[error(
        "the index at {} holds the catalog of {holds}, not of {asked}: run `exosphere sync \
         --rebuild` to replace it with the catalog of {asked}, or choose another file with \
         --index",
        path.display()
    )]
    OtherServer {
        /// The index file.
        path: PathBuf,
        /// The server whose catalog the index holds.
        holds: String,
        /// The server the sync was asked to copy.
        asked: String,
    },
    /// A record of a sync page does not have the shape of spec §3.8; nothing of its page
    /// was applied.
    #[error("the server sent a malformed {collection} record `{id}`: {reason}")]
    MalformedRecord {
        /// The collection the record came in.
        collection: String,
        /// The record's `_id` (or `?` when even that is missing).
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A catalog dump given to [`crate::Index::load_dump`] has a bad line.
    #[error("line {line} of the catalog dump: {reason}")]
    MalformedDump {
        /// The 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A query named a package the index does not hold.
    #[error("no package `{name}` in the index (run `exosphere sync` to bring it up to date)")]
    UnknownPackage {
        /// The package name asked for.
        name: String,
    },
    /// A query named a version the index does not hold.
    #[error("`{name}` has no version `{version}` in the index")]
    UnknownVersion {
        /// The package name.
        name: String,
        /// The version asked for.
        version: String,
    },
    /// A query named a release track the index does not hold.
    #[error("no release track `{track}` in the index")]
    UnknownTrack {
        /// The track asked for.
        track: String,
    },
    /// A query named a release version its track does not have.
    #[error("release track `{track}` has no release `{version}` in the index")]
    UnknownRelease {
        /// The track.
        track: String,
        /// The release version asked for.
        version: String,
    },
    /// A search query has no words to look for.
    #[error(
        "the search query `{query}` has no letters or digits to look for: give a word, or \
         an empty query (\"\") to list every package"
    )]
    EmptyQuery {
        /// The query as given.
        query: String,
    },
    /// The platform has no per-user data directory (no home directory).
    #[error("cannot find this platform's data directory for the index: pass --index PATH")]
    NoDataDirectory,
    /// Creating directories or removing old index files failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Any other SQLite failure (disk full, locked by another process, …).
    #[error("index database error in {}: {source}", path.display())]
    Database {
        /// The index file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
}

impl IndexError {
    /// Classifies a SQLite error on the index at `path`: damage and "not a database" become
    /// [`IndexError::Corrupt`] (with the `--rebuild` hint), the rest [`IndexError::Database`].
    pub(crate) fn from_sqlite(path: &Path, source: rusqlite::Error) -> IndexError {
        use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
        match source.sqlite_error_code() {
            Some(DatabaseCorrupt | NotADatabase) => IndexError::Corrupt {
                path: path.to_owned(),
                reason: source.to_string(),
            },
            _ => IndexError::Database {
                path: path.to_owned(),
                source,
            },
        }
    }
}
