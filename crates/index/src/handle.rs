//! The [`Index`] handle: opening an index file, rebuilding it, applying sync pages in one
//! transaction each, counts; and where an index file lives by default.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension as _};
use serde_json::value::RawValue;

use exosphere_meteor::Collection;

use crate::error::IndexError;
use crate::ingest::{self, Failure, PageApplied, SyncPage};
use crate::readme::ReadmeTexts;
use crate::schema;

/// A local index file, open for reading and writing.
#[derive(Debug)]
pub struct Index {
    pub(crate) connection: Connection,
    pub(crate) path: PathBuf,
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

    /// Opens the index at `path` for queries only, in SQLite's read-only mode: it never
    /// creates the file, its schema or its directory and never upgrades it, so a reader
    /// racing the file's removal (a server replacing a generation) gets
    /// [`IndexError::Missing`] instead of leaving an empty file behind. A file of another
    /// schema is refused as [`Index::open`] would ([`IndexError::NewerSchema`],
    /// [`IndexError::Corrupt`]).
    pub fn open_read_only(path: &Path) -> Result<Index, IndexError> {
        let sqlite = |e| IndexError::from_sqlite(path, e);
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let connection = match Connection::open_with_flags(path, flags) {
            Ok(connection) => connection,
            Err(error)
                if error.sqlite_error_code() == Some(ErrorCode::CannotOpen) && !path.exists() =>
            {
                return Err(IndexError::Missing {
                    path: path.to_owned(),
                });
            }
            Err(error) => return Err(sqlite(error)),
        };
        schema::configure_reader(&connection).map_err(sqlite)?;
        schema::check(&connection, path)?;
        connection.set_prepared_statement_cache_capacity(64);
        Ok(Index {
            connection,
            path: path.to_owned(),
        })
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

    /// The server whose catalog the index holds (as given to [`Index::claim`]); `None`
    /// before the first sync, or for a file from before the index recorded it.
    pub fn server(&self) -> Result<Option<String>, IndexError> {
        self.connection
            .query_row("SELECT server FROM origin", [], |row| row.get(0))
            .optional()
            .map_err(|e| self.sqlite(e))
    }

    /// Makes this the index of `server` (a DDP endpoint URL, the same string for the same
    /// server) before a sync applies its pages. An index that holds pages of another server
    /// is refused with [`IndexError::OtherServer`], since that server's tokens could
    /// resume where the other's left off and mix the catalogs. An index without pages, or
    /// one written before the index recorded its server, is taken over.
    pub fn claim(&mut self, server: &str) -> Result<(), IndexError> {
        match self.server()? {
            Some(holds) if holds == server => return Ok(()),
            Some(holds) if self.sync_token()?.is_some() => {
                return Err(IndexError::OtherServer {
                    path: self.path.clone(),
                    holds,
                    asked: server.to_owned(),
                });
            }
            _ => {}
        }
        self.connection
            .execute(
                "INSERT INTO origin (id, server) VALUES (1, ?1) \
                 ON CONFLICT (id) DO UPDATE SET server = excluded.server",
                [server],
            )
            .map_err(|e| self.sqlite(e))?;
        Ok(())
    }

    /// The token stored with the last applied page, as JSON text; None if never synced.
    pub fn sync_token(&self) -> Result<Option<String>, IndexError> {
        ingest::stored_token(&self.connection).map_err(|e| self.sqlite(e))
    }

    /// Applies one page and stores its token in ONE transaction (all or nothing), so an
    /// interrupted sync resumes after the last committed page. `reset_data` clears the
    /// index inside that same transaction. A record that is not an object or has no string
    /// `_id` fails the whole page with an error naming the collection; one of another
    /// unexpected shape is kept raw only and counted in [`PageApplied::raw_only`]. Full-text
    /// search holds no README text: see [`Index::apply_page_with_readmes`].
    pub fn apply_page(&mut self, page: &SyncPage<'_>) -> Result<PageApplied, IndexError> {
        self.apply(page, None)
    }

    /// [`Index::apply_page`] for a writer that can read README files (the server's read
    /// model): the page that brings the index up to date asks `readmes` for the README
    /// texts of the packages whose latest version changed, inside its transaction, and
    /// full-text search keeps the start of each ([`crate::README_SEARCH_BYTES`]).
    pub fn apply_page_with_readmes(
        &mut self,
        page: &SyncPage<'_>,
        readmes: &dyn ReadmeTexts,
    ) -> Result<PageApplied, IndexError> {
        self.apply(page, Some(readmes))
    }

    /// Applies `page` in one transaction, with README texts from `readmes` when given.
    fn apply(
        &mut self,
        page: &SyncPage<'_>,
        readmes: Option<&dyn ReadmeTexts>,
    ) -> Result<PageApplied, IndexError> {
        let path = &self.path;
        let sqlite = |e| IndexError::from_sqlite(path, e);
        let tx = self.connection.transaction().map_err(sqlite)?;
        match ingest::apply(&tx, page, readmes) {
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
            total.refreshed += applied.refreshed;
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
                    .query_row([collection.as_str()], |row| row.get(0))
                    .or_else(|e| match e {
                        rusqlite::Error::QueryReturnedNoRows => Ok(None),
                        e => Err(e),
                    })
                    .map_err(|e| self.sqlite(e))?;
                let records = u64::try_from(records.unwrap_or(0)).unwrap_or(0);
                Ok((collection.as_str().to_owned(), records))
            })
            .collect()
    }

    /// Moves the write-ahead log into the file and empties it (`wal_checkpoint(TRUNCATE)`),
    /// so a long-lived writer's log does not keep the disk space of a whole build. Readers
    /// in the middle of a query may keep part of it until the next checkpoint.
    pub fn checkpoint(&self) -> Result<(), IndexError> {
        self.connection
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(|e| self.sqlite(e))
    }

    /// A SQLite error of this index file, named with its path.
    pub(crate) fn sqlite(&self, error: rusqlite::Error) -> IndexError {
        IndexError::from_sqlite(&self.path, error)
    }
}

/// Where the index of a server lives by default: under the platform's data directory
/// (e.g. `~/.local/share/exosphere/indexes/packages.meteor.com-443.sqlite3` on Linux), one
/// file per server. The caller passes the server's host, port and DDP endpoint path as the
/// DDP client parsed them from the URL, so the index and the connection never disagree on
/// what a URL means.
pub fn default_index_path(
    host: &str,
    port: u16,
    endpoint_path: &str,
) -> Result<PathBuf, IndexError> {
    let data = dirs::data_dir().ok_or(IndexError::NoDataDirectory)?;
    Ok(data
        .join("exosphere")
        .join("indexes")
        .join(index_file_name(host, port, endpoint_path)))
}

/// `<host>-<port>[-<path>].sqlite3`: the path is the server's (the endpoint path without its
/// final `websocket`, so `http://h` and `ws://h/websocket` share a file), and every
/// character that is not safe in a file name becomes `_`.
fn index_file_name(host: &str, port: u16, endpoint_path: &str) -> String {
    let path = endpoint_path
        .strip_suffix("websocket")
        .unwrap_or(endpoint_path)
        .trim_matches('/');
    let mut name = format!("{}-{port}", host.to_ascii_lowercase());
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
    format!("{name}.sqlite3")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_file_names_follow_the_server() {
        assert_eq!(
            index_file_name("packages.meteor.com", 443, "/websocket"),
            "packages.meteor.com-443.sqlite3"
        );
        assert_eq!(
            index_file_name("Packages.Meteor.com", 80, "/websocket"),
            "packages.meteor.com-80.sqlite3"
        );
        assert_eq!(
            index_file_name("::1", 3000, "/websocket"),
            "__1-3000.sqlite3"
        );
        assert_eq!(index_file_name("host", 9, "/"), "host-9.sqlite3");
        assert_eq!(
            index_file_name("host", 443, "/mirror/a/websocket"),
            "host-443-mirror_a.sqlite3"
        );
    }

    #[test]
    fn read_only_opens_never_create_or_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite3");
        assert!(matches!(
            Index::open_read_only(&path),
            Err(IndexError::Missing { .. })
        ));
        assert!(!path.exists(), "a read-only open created the file");

        let dump =
            r#"{"collection":"packages","doc":{"_id":"p1","name":"a","lastUpdated":{"$date":1}}}"#;
        Index::open(&path).unwrap().load_dump(dump, 10).unwrap();
        let reader = Index::open_read_only(&path).unwrap();
        assert!(reader.is_ready().unwrap());
        assert!(reader.sync_token().unwrap().is_some());
        assert!(
            reader.connection.execute("DELETE FROM origin", []).is_err(),
            "a read-only connection wrote"
        );
        drop(reader);

        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        assert!(matches!(
            Index::open_read_only(&path),
            Err(IndexError::NewerSchema { found: 99, .. })
        ));
    }

    #[test]
    fn a_checkpoint_empties_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite3");
        let dump =
            r#"{"collection":"packages","doc":{"_id":"p1","name":"a","lastUpdated":{"$date":1}}}"#;
        let mut index = Index::open(&path).unwrap();
        index.load_dump(dump, 10).unwrap();
        let wal = dir.path().join("index.sqlite3-wal");
        assert!(std::fs::metadata(&wal).unwrap().len() > 0);
        index.checkpoint().unwrap();
        assert_eq!(std::fs::metadata(&wal).unwrap().len(), 0);
        assert!(index.is_ready().unwrap());
    }

    #[test]
    fn default_path_is_under_the_data_directory() {
        let path = default_index_path("127.0.0.1", 3000, "/websocket").unwrap();
        assert!(
            path.ends_with("exosphere/indexes/127.0.0.1-3000.sqlite3"),
            "{path:?}"
        );
    }
}
