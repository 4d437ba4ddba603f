//! A local index of a Meteor package server's catalog: filled page by page from
//! `syncNewPackageData` results, queried offline (`search`, `show`, `deps`, `releases`).
//!
//! This crate knows nothing about DDP or WebSockets: the sync client hands it each page as
//! borrowed raw JSON ([`SyncPage`]) and it stores the page and its token in one SQLite
//! transaction, so an interrupted sync resumes after the last whole page.
//!
//! * [`Index`]: opening, rebuilding, applying pages, counts.
//! * `query`: [`Index::search`], [`Index::show`], [`Index::deps`], [`Index::releases`] and
//!   their typed, serializable results.
//! * [`version`]: Meteor version order (semver, `-pre`, `_N` wrap numbers).
//! * `ingest`: parsing records and filling the typed and derived tables.
//! * `schema`: the tables, `PRAGMA user_version` and what is checked on open.

mod error;
mod ingest;
mod query;
mod schema;
pub mod version;

use std::path::{Path, PathBuf};

use rusqlite::Connection;
use serde_json::value::RawValue;

pub use error::IndexError;
pub use ingest::{PageApplied, SyncPage};
pub use query::{
    Build, DepNode, Dependency, DepsReport, Export, PackageInfo, Reference, ReleaseMembership,
    ReleaseSummary, Releases, SearchHit, TrackSummary, VersionInfo, VersionSummary,
    constraint_admits,
};
pub use schema::SCHEMA_VERSION;
pub use version::MeteorVersion;

use ingest::{Collection, Failure};

/// A local index file, open for reading and writing.
#[derive(Debug)]
pub struct Index {
    connection: Connection,
    path: PathBuf,
}

impl Index {
    /// Opens the index at `path`, creating it (and its parent directories) if missing.
    /// Errors: newer schema (tell the user to upgrade Exosphere), not an index / corrupt
    /// (tell the user to run `exosphere sync --rebuild`).
    pub fn open(path: &Path) -> Result<Index, IndexError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| IndexError::Io {
                action: "create the directory",
                path: parent.to_owned(),
                source,
            })?;
        }
        let sqlite = |e| IndexError::from_sqlite(path, e);
        let mut connection = Connection::open(path).map_err(sqlite)?;
        schema::configure(&connection).map_err(sqlite)?;
        schema::prepare(&mut connection, path)?;
        connection.set_prepared_statement_cache_capacity(64);
        Ok(Index {
            connection,
            path: path.to_owned(),
        })
    }

    /// Opens the index at `path` for queries: like [`Index::open`], but a missing file is
    /// [`IndexError::Missing`] (run `exosphere sync` first) rather than a new empty index.
    pub fn open_existing(path: &Path) -> Result<Index, IndexError> {
        if !path.exists() {
            return Err(IndexError::Missing {
                path: path.to_owned(),
            });
        }
        Index::open(path)
    }

    /// Deletes whatever is at `path` (index file and its -wal/-shm) and creates an empty index.
    pub fn rebuild(path: &Path) -> Result<Index, IndexError> {
        for suffix in ["", "-wal", "-shm"] {
            let mut file = path.as_os_str().to_owned();
            file.push(suffix);
            let file = PathBuf::from(file);
            match std::fs::remove_file(&file) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(IndexError::Io {
                        action: "remove",
                        path: file,
                        source,
                    });
                }
            }
        }
        Index::open(path)
    }

    /// The index file's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The token stored with the last applied page, as JSON text; None if never synced.
    pub fn sync_token(&self) -> Result<Option<String>, IndexError> {
        ingest::stored_token(&self.connection).map_err(|e| self.sqlite(e))
    }

    /// Applies one page and stores its token in ONE transaction (all or nothing), so an
    /// interrupted sync resumes after the last committed page. `reset_data` clears the
    /// index inside that same transaction. A record that is not an object or has no string
    /// `_id` fails the whole page with an error naming the collection; one of another
    /// unexpected shape is kept raw only and counted in [`PageApplied::raw_only`].
    pub fn apply_page(&mut self, page: &SyncPage<'_>) -> Result<PageApplied, IndexError> {
        let path = &self.path;
        let sqlite = |e| IndexError::from_sqlite(path, e);
        let tx = self.connection.transaction().map_err(sqlite)?;
        match ingest::apply(&tx, page) {
            Ok(applied) => {
                tx.commit().map_err(sqlite)?;
                Ok(applied)
            }
            // Dropping `tx` rolls the page back.
            Err(Failure::Sqlite(e)) => Err(sqlite(e)),
            Err(Failure::Named(e)) => Err(e),
            Err(Failure::Record(reason)) => Err(IndexError::MalformedRecord {
                collection: "?".into(),
                id: "?".into(),
                reason,
            }),
        }
    }

    /// Applies a catalog dump (NDJSON, `docs/catalog-dump.md`) as a sync from a server
    /// holding it would: in pages of `records_per_page` records per collection, each with
    /// its own transaction, the first one resetting the index, the last one up to date.
    /// Stats lines are skipped. Tests and
    /// `exosphere bench` build indexes this way without a server.
    pub fn load_dump(
        &mut self,
        dump: &str,
        records_per_page: usize,
    ) -> Result<PageApplied, IndexError> {
        let by_collection = ingest::dump_records(dump)?;
        let pages = by_collection
            .iter()
            .map(|(_, records)| records.len().div_ceil(records_per_page.max(1)))
            .max()
            .unwrap_or(0)
            .max(1);
        let mut total = PageApplied::default();
        for number in 0..pages {
            let token =
                RawValue::from_string(format!(r#"{{"format":"exosphere-dump","page":{number}}}"#))
                    .expect("an object with a number is valid JSON");
            let collections = by_collection
                .iter()
                .map(|(name, records)| {
                    let start = (number * records_per_page).min(records.len());
                    let end = (start + records_per_page).min(records.len());
                    (*name, records[start..end].to_vec())
                })
                .collect();
            let applied = self.apply_page(&SyncPage {
                reset_data: number == 0,
                up_to_date: number + 1 == pages,
                sync_token: &token,
                collections,
            })?;
            total.records += applied.records;
            total.inserted += applied.inserted;
            total.updated += applied.updated;
            total.ignored += applied.ignored;
        }
        Ok(total)
    }

    /// Records per collection currently in the index (for progress and `sync`'s summary),
    /// every collection listed, in sync order.
    pub fn counts(&self) -> Result<Vec<(String, u64)>, IndexError> {
        let mut statement = self
            .connection
            .prepare_cached("SELECT records FROM counts WHERE collection = ?1")
            .map_err(|e| self.sqlite(e))?;
        Collection::ALL
            .iter()
            .map(|collection| {
                let records: Option<i64> = statement
                    .query_row([collection.name()], |row| row.get(0))
                    .or_else(|e| match e {
                        rusqlite::Error::QueryReturnedNoRows => Ok(None),
                        e => Err(e),
                    })
                    .map_err(|e| self.sqlite(e))?;
                let records = u64::try_from(records.unwrap_or(0)).unwrap_or(0);
                Ok((collection.name().to_owned(), records))
            })
            .collect()
    }

    fn sqlite(&self, error: rusqlite::Error) -> IndexError {
        IndexError::from_sqlite(&self.path, error)
    }
}

/// Where the index of `server` lives by default: under the platform's data directory
/// (e.g. `~/.local/share/exosphere/indexes/packages.meteor.com-443.sqlite3` on Linux), one
/// file per server URL.
pub fn default_index_path(server: &str) -> Result<PathBuf, IndexError> {
    let name = index_file_name(server)?;
    let data = dirs::data_dir().ok_or(IndexError::NoDataDirectory)?;
    Ok(data.join("exosphere").join("indexes").join(name))
}

/// `<host>-<port>[-<path>].sqlite3` for a server URL: the scheme decides the default port,
/// and every character that is not safe in a file name becomes `_`.
fn index_file_name(server: &str) -> Result<String, IndexError> {
    let bad = || IndexError::BadServerUrl {
        url: server.to_owned(),
    };
    let lower = server.to_ascii_lowercase();
    let (rest, default_port) = if let Some(rest) = lower.strip_prefix("https://") {
        (rest, 443)
    } else if let Some(rest) = lower.strip_prefix("http://") {
        (rest, 80)
    } else {
        return Err(bad());
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => {
            let port: u16 = port.parse().map_err(|_| bad())?;
            (host, port)
        }
        _ => (authority, default_port),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad());
    }
    let path = path
        .split(['?', '#'])
        .next()
        .unwrap_or("")
        .trim_matches('/');
    let mut name = format!("{host}-{port}");
    if !path.is_empty() {
        name.push('-');
        name.push_str(path);
    }
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok(format!("{name}.sqlite3"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_file_names_follow_the_server() {
        let name = |url| index_file_name(url).unwrap();
        assert_eq!(
            name("https://packages.meteor.com"),
            "packages.meteor.com-443.sqlite3"
        );
        assert_eq!(
            name("https://packages.meteor.com/"),
            "packages.meteor.com-443.sqlite3"
        );
        assert_eq!(
            name("HTTPS://Packages.Meteor.com"),
            "packages.meteor.com-443.sqlite3"
        );
        assert_eq!(
            name("http://packages.meteor.com"),
            "packages.meteor.com-80.sqlite3"
        );
        assert_eq!(name("http://127.0.0.1:3000"), "127.0.0.1-3000.sqlite3");
        assert_eq!(name("http://[::1]:3000/"), "__1-3000.sqlite3");
        assert_eq!(name("http://[::1]"), "__1-80.sqlite3");
        assert_eq!(name("https://host/mirror/a"), "host-443-mirror_a.sqlite3");
        assert_eq!(name("https://user:pw@host:8443"), "host-8443.sqlite3");
        for bad in [
            "packages.meteor.com",
            "ftp://host",
            "http://",
            "http://host:port",
            "http://:80",
        ] {
            assert!(index_file_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn default_path_is_under_the_data_directory() {
        let path = default_index_path("http://127.0.0.1:3000").unwrap();
        assert!(
            path.ends_with("exosphere/indexes/127.0.0.1-3000.sqlite3"),
            "{path:?}"
        );
        assert!(default_index_path("127.0.0.1:3000").is_err());
    }
}
