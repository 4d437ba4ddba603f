//! Whole-file backups of a SQLite catalog, taken while a server writes to it, and the steps
//! of putting one back.
//!
//! A backup is one SQLite file: a copy of the catalog made with `VACUUM INTO` (one read
//! transaction, so a consistent snapshot that never blocks the server's writes; compacted),
//! plus two tables the catalog itself never has, added to the copy:
//!
//! * `backup_info`: one row saying what the file is (format version, when it was taken, by
//!   which Exosphere, the schema version, and the data epoch and head sequence it holds);
//! * `backup_files`: the manifest, every file the copied catalog refers to (its blob key,
//!   SHA-256 where the catalog knows it, and whether it was published here or mirrored), so
//!   the file store can be checked against it (`exosphere verify --backup`) and copied by it.
//!
//! Inside the file rather than beside it, the manifest is written in the same atomic rename,
//! cannot be separated from the catalog it describes, and is covered by `PRAGMA
//! integrity_check`. The file is left in rollback-journal mode, so it is complete on its own
//! (no `-wal` beside it). Restoring drops both tables again ([`prepare_restore`]).

use std::path::{Path, PathBuf};

use exosphere_catalog::error::StoreError;
use exosphere_catalog::files::{FileRef, Origin};
use rusqlite::{Connection, OpenFlags, OptionalExtension as _, params};

use crate::{APPLICATION_ID, DATABASE_FILE, Db as _, SCHEMA_VERSION, SqliteStore, open_connection};

/// The version of the backup format (`backup_info.format`); a later format bumps it.
const FORMAT: i64 = 1;

/// How many problems `PRAGMA integrity_check` reports at most.
const MAX_PROBLEMS: usize = 100;

/// What a backup file says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupInfo {
    /// When it was taken, in ms since the Unix epoch.
    pub taken_ms: i64,
    /// The Exosphere version that took it.
    pub exosphere: String,
    /// The catalog schema version inside (`PRAGMA user_version`).
    pub schema_version: i64,
    /// The data epoch of the copied catalog.
    pub epoch: String,
    /// Its head sequence number.
    pub head_seq: u64,
    /// How many file entries its manifest holds.
    pub files: u64,
}

impl SqliteStore {
    /// Writes a consistent copy of the catalog to `dest`, which must not exist: `VACUUM
    /// INTO` reads one snapshot, so writes committed meanwhile (by a server or an import)
    /// are wholly in or wholly out, and they are never blocked. Not fsynced: see
    /// [`Manifest::finish`].
    pub fn snapshot_into(&self, dest: &Path) -> Result<(), StoreError> {
        let conn = open_connection(&self.readers.path, self.readers.busy_timeout)?;
        let dest = dest.to_str().ok_or_else(|| StoreError::Io {
            path: dest.to_owned(),
            source: std::io::Error::other("the backup path is not valid UTF-8"),
        })?;
        conn.execute("VACUUM INTO ?1", [dest]).db()?;
        Ok(())
    }

    /// The problems `PRAGMA integrity_check` finds in the live catalog, read beside a
    /// running server; empty when the database is sound.
    pub fn integrity_problems(&self) -> Result<Vec<String>, StoreError> {
        let conn = open_connection(&self.readers.path, self.readers.busy_timeout)?;
        integrity_problems(&conn)
    }
}

/// The manifest being written into a fresh snapshot (from [`SqliteStore::snapshot_into`]).
pub struct Manifest {
    conn: Connection,
    path: PathBuf,
    files: u64,
}

impl Manifest {
    /// Starts the manifest tables in the snapshot at `path`, inside one transaction.
    pub fn create(path: &Path) -> Result<Manifest, StoreError> {
        let conn = Connection::open(path).db()?;
        conn.execute_batch(
            "BEGIN IMMEDIATE;
             CREATE TABLE backup_info (
                 id INTEGER PRIMARY KEY CHECK (id = 1),
                 format INTEGER NOT NULL,
                 taken_ms INTEGER NOT NULL,
                 exosphere TEXT NOT NULL,
                 schema_version INTEGER NOT NULL,
                 epoch TEXT NOT NULL,
                 head_seq INTEGER NOT NULL,
                 files INTEGER NOT NULL
             );
             CREATE TABLE backup_files (
                 key TEXT PRIMARY KEY,
                 sha256 TEXT,
                 origin TEXT NOT NULL
             ) WITHOUT ROWID;",
        )
        .db()?;
        Ok(Manifest {
            conn,
            path: path.to_owned(),
            files: 0,
        })
    }

    /// Adds one file; a key given twice is listed once (the first hash is kept).
    pub fn add(&mut self, file: &FileRef) -> Result<(), StoreError> {
        let added = self
            .conn
            .prepare_cached(
                "INSERT OR IGNORE INTO backup_files (key, sha256, origin) VALUES (?1, ?2, ?3)",
            )
            .db()?
            .execute(params![file.key, file.sha256, file.origin.as_str()])
            .db()?;
        self.files += added as u64;
        Ok(())
    }

    /// Writes the info row (its `files` and `schema_version` taken from the file itself),
    /// commits, leaves WAL mode so the file stands alone, and fsyncs it. Returns the info.
    pub fn finish(self, mut info: BackupInfo) -> Result<BackupInfo, StoreError> {
        info.files = self.files;
        info.schema_version = self
            .conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .db()?;
        self.conn
            .execute(
                "INSERT INTO backup_info (id, format, taken_ms, exosphere, schema_version, \
                 epoch, head_seq, files) VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    FORMAT,
                    info.taken_ms,
                    info.exosphere,
                    info.schema_version,
                    info.epoch,
                    i64::try_from(info.head_seq).unwrap_or(i64::MAX),
                    i64::try_from(info.files).unwrap_or(i64::MAX)
                ],
            )
            .db()?;
        self.conn.execute_batch("COMMIT").db()?;
        stand_alone(self.conn, &self.path)?;
        Ok(info)
    }
}

/// A backup file as read back: what it says about itself and what `PRAGMA integrity_check`
/// found in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// Its info row.
    pub info: BackupInfo,
    /// The problems found; empty when the file is sound.
    pub problems: Vec<String>,
}

/// Opens the backup at `path` read-only and checks it: an Exosphere catalog with a backup's
/// info row, of a format and schema this build reads, and what `PRAGMA integrity_check` says. A file that is not a backup at all (or
/// so damaged that it cannot be read) is an error; a readable one with problems is returned
/// with them.
pub fn check_backup(path: &Path) -> Result<Checked, StoreError> {
    let conn = open_read_only(path)?;
    let app_id: i64 = conn
        .query_row("PRAGMA application_id", [], |row| row.get(0))
        .db()?;
    if app_id != APPLICATION_ID {
        return Err(StoreError::NotACatalog(path.to_owned()));
    }
    let problems = integrity_problems(&conn)?;
    let info = conn
        .query_row(
            "SELECT format, taken_ms, exosphere, schema_version, epoch, head_seq, files \
             FROM backup_info WHERE id = 1",
            [],
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    BackupInfo {
                        taken_ms: row.get(1)?,
                        exosphere: row.get(2)?,
                        schema_version: row.get(3)?,
                        epoch: row.get(4)?,
                        head_seq: u64::try_from(row.get::<_, i64>(5)?).unwrap_or(0),
                        files: u64::try_from(row.get::<_, i64>(6)?).unwrap_or(0),
                    },
                ))
            },
        )
        .optional()
        .map_err(|error| not_a_backup(path, &error.to_string()))?;
    let Some((format, info)) = info else {
        return Err(not_a_backup(path, "it has no backup_info row"));
    };
    if info.schema_version > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found: info.schema_version,
            supported: SCHEMA_VERSION,
        });
    }
    if format > FORMAT {
        return Err(not_a_backup(
            path,
            &format!("its format {format} is newer than this Exosphere's ({FORMAT}); upgrade"),
        ));
    }
    Ok(Checked { info, problems })
}

/// Calls `f` with every file in the manifest of the backup at `path`, in key order.
pub fn manifest_files(
    path: &Path,
    f: &mut dyn FnMut(FileRef) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let conn = open_read_only(path)?;
    let mut stmt = conn
        .prepare("SELECT key, sha256, origin FROM backup_files ORDER BY key")
        .db()?;
    let mut rows = stmt.query([]).db()?;
    while let Some(row) = rows.next().db()? {
        let origin: String = row.get(2).db()?;
        let origin = Origin::parse(&origin)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown file origin {origin:?}")))?;
        f(FileRef {
            key: row.get(0).db()?,
            sha256: row.get(1).db()?,
            origin,
        })?;
    }
    Ok(())
}

/// Turns a copy of a checked backup at `path` back into a plain catalog file: drops the
/// backup's own tables. The caller then opens it as a store (which upgrades an older schema)
/// and starts a new data epoch, before [`install`].
pub fn prepare_restore(path: &Path) -> Result<(), StoreError> {
    let conn = Connection::open(path).db()?;
    conn.execute_batch("BEGIN IMMEDIATE; DROP TABLE backup_files; DROP TABLE backup_info; COMMIT;")
        .db()?;
    Ok(())
}

/// Moves the catalog file `staged` (closed, not in use) into `data_dir` as its catalog. The
/// catalog already there, if any, is checkpointed into its one file and moved aside first to
/// `catalog.sqlite3.replaced-<suffix>` (returned), never deleted: if anything fails, it is
/// still whole, under its own name or that one. Nothing may use the catalog meanwhile.
pub fn install(
    staged: &Path,
    data_dir: &Path,
    suffix: &str,
) -> Result<Option<PathBuf>, StoreError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| StoreError::Io { path, source }
    };
    stand_alone(Connection::open(staged).db()?, staged)?;
    let live = data_dir.join(DATABASE_FILE);
    let aside = data_dir.join(format!("{DATABASE_FILE}.replaced-{suffix}"));
    let replaced = live.exists();
    if replaced {
        // The live catalog is first made whole in its one file (its WAL checkpointed into
        // it), so that no crash below can part it from commits still in its WAL. A catalog
        // too damaged to open (what a restore is often for) is moved as it is, its WAL
        // first: the main file must never be found beside a WAL that is not its own.
        let whole = Connection::open(&live)
            .db()
            .and_then(|conn| stand_alone(conn, &live));
        if let Err(error) = whole {
            tracing::warn!(%error, catalog = %live.display(), "cannot checkpoint the replaced catalog; moving it aside with its WAL");
        }
        for side in ["-wal", "-shm"] {
            let from = sibling(&live, side);
            if from.exists() {
                std::fs::rename(&from, sibling(&aside, side)).map_err(io(&from))?;
            }
        }
        std::fs::rename(&live, &aside).map_err(io(&live))?;
    }
    std::fs::rename(staged, &live).map_err(io(&live))?;
    std::fs::File::open(data_dir)
        .and_then(|dir| dir.sync_all())
        .map_err(io(data_dir))?;
    Ok(replaced.then_some(aside))
}

/// `path` with `suffix` appended to its file name (`catalog.sqlite3` → `catalog.sqlite3-wal`).
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Leaves WAL mode (checkpointing the WAL into the file) on the only connection to `path`,
/// closes it and fsyncs the file, so the file is complete and durable on its own.
fn stand_alone(conn: Connection, path: &Path) -> Result<(), StoreError> {
    let mode: String = conn
        .query_row("PRAGMA journal_mode = DELETE", [], |row| row.get(0))
        .db()?;
    if !mode.eq_ignore_ascii_case("delete") {
        return Err(StoreError::Database(
            format!("{} stayed in {mode} journal mode", path.display()).into(),
        ));
    }
    conn.close().map_err(|(_, error)| error).db()?;
    std::fs::File::open(path)
        .and_then(|file| file.sync_all())
        .map_err(|source| StoreError::Io {
            path: path.to_owned(),
            source,
        })
}

/// Opens `path` read-only, without creating it.
fn open_read_only(path: &Path) -> Result<Connection, StoreError> {
    if !path.is_file() {
        return Err(StoreError::Io {
            path: path.to_owned(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .db()
}

/// What `PRAGMA integrity_check` reports, without its `ok`.
fn integrity_problems(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn
        .prepare(&format!("PRAGMA integrity_check({MAX_PROBLEMS})"))
        .db()?;
    let lines = stmt
        .query_map([], |row| row.get::<_, String>(0))
        .db()?
        .collect::<Result<Vec<_>, _>>()
        .db()?;
    Ok(lines.into_iter().filter(|line| line != "ok").collect())
}

/// The error for a file that is a catalog but not a backup this build can read.
fn not_a_backup(path: &Path, why: &str) -> StoreError {
    StoreError::Corrupt(format!(
        "{} is not an Exosphere backup: {why}",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use exosphere_catalog::conformance::store::{all, upsert};
    use exosphere_catalog::files::for_each_file;
    use exosphere_catalog::mirror::UpstreamFile;
    use exosphere_catalog::record::Record;
    use exosphere_catalog::{CatalogStore as _, Collection};

    use super::*;
    use crate::open_sqlite;

    const VERSION: &str = r#"{"_id":"v1","packageName":"p","version":"1.0.0","source":{"url":"http://h/packages/p/1.0.0/s/p.tgz","tarballHash":"SHA"},"lastUpdated":{"$date":7}}"#;

    /// A catalog with one published file and one mirrored one, and its backup at `path`.
    fn backed_up(data_dir: &Path, path: &Path) -> (SqliteStore, BackupInfo) {
        let store = open_sqlite(data_dir).unwrap();
        upsert(
            &store,
            &Record::from_json(Collection::Versions, VERSION).unwrap(),
        );
        store
            .write(&mut |w| {
                w.mirror().put_file(
                    "mirror/ab/q.tgz",
                    &UpstreamFile {
                        url: "https://up/q.tgz".into(),
                        sha256: Some("UP".into()),
                    },
                )
            })
            .unwrap();
        store.snapshot_into(path).unwrap();
        let mut manifest = Manifest::create(path).unwrap();
        // The manifest is listed from the live store here; the command lists it from the copy.
        for_each_file(&store, &mut |file| manifest.add(&file)).unwrap();
        let state = store.state().unwrap();
        let info = manifest
            .finish(BackupInfo {
                taken_ms: 42,
                exosphere: "test".into(),
                schema_version: 0,
                epoch: state.epoch,
                head_seq: state.head_seq,
                files: 0,
            })
            .unwrap();
        (store, info)
    }

    #[test]
    fn a_backup_carries_its_manifest_and_restores_as_a_plain_catalog() {
        let live = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let path = out.path().join("backup.sqlite3");
        let (store, info) = backed_up(live.path(), &path);
        assert_eq!((info.files, info.head_seq), (2, 1));
        assert!(!sibling(&path, "-wal").exists());
        let checked = check_backup(&path).unwrap();
        assert_eq!(
            checked,
            Checked {
                info,
                problems: Vec::new()
            }
        );
        let mut files = Vec::new();
        manifest_files(&path, &mut |file| {
            files.push(file);
            Ok(())
        })
        .unwrap();
        assert_eq!(
            files,
            [
                FileRef {
                    key: "mirror/ab/q.tgz".into(),
                    sha256: Some("UP".into()),
                    origin: Origin::Mirrored
                },
                FileRef {
                    key: "packages/p/1.0.0/s/p.tgz".into(),
                    sha256: Some("SHA".into()),
                    origin: Origin::Published
                },
            ]
        );

        // The live catalog moves on; the restore brings the backup's back, in a new epoch,
        // and keeps the replaced catalog aside.
        upsert(
            &store,
            &Record::from_json(Collection::Packages, r#"{"_id":"later"}"#).unwrap(),
        );
        let before = all(&store);
        drop(store);
        let staging = tempfile::tempdir_in(live.path()).unwrap();
        let staged = staging.path().join(DATABASE_FILE);
        std::fs::copy(&path, &staged).unwrap();
        prepare_restore(&staged).unwrap();
        let restored = open_sqlite(staging.path()).unwrap();
        restored.write(&mut |w| w.start_epoch()).unwrap();
        drop(restored);
        let aside = install(&staged, live.path(), "test").unwrap().unwrap();
        let store = open_sqlite(live.path()).unwrap();
        assert_eq!(all(&store), [(Collection::Versions, VERSION.to_owned())]);
        assert_eq!(all(&open_sqlite(&aside_dir(&aside)).unwrap()), before);
        assert!(check_backup(&live.path().join(DATABASE_FILE)).is_err());
    }

    /// A directory holding the catalog moved aside to `aside`, as its `catalog.sqlite3`.
    fn aside_dir(aside: &Path) -> PathBuf {
        let dir = aside.parent().unwrap().join("aside");
        std::fs::create_dir(&dir).unwrap();
        std::fs::copy(aside, dir.join(DATABASE_FILE)).unwrap();
        dir
    }

    #[test]
    fn damaged_files_and_plain_catalogs_are_not_sound_backups() {
        let live = tempfile::tempdir().unwrap();
        let path = live.path().join("backup.sqlite3");
        let (_store, _) = backed_up(live.path(), &path);
        let error = check_backup(&live.path().join(DATABASE_FILE)).unwrap_err();
        assert!(
            error.to_string().contains("is not an Exosphere backup"),
            "{error}"
        );
        assert!(check_backup(&live.path().join("missing")).is_err());

        // A backup from a newer Exosphere is refused before anything reads its catalog.
        let newer = live.path().join("newer.sqlite3");
        std::fs::copy(&path, &newer).unwrap();
        let conn = Connection::open(&newer).unwrap();
        conn.execute(
            "UPDATE backup_info SET schema_version = ?1",
            [SCHEMA_VERSION + 1],
        )
        .unwrap();
        drop(conn);
        assert!(matches!(
            check_backup(&newer),
            Err(StoreError::SchemaTooNew { .. })
        ));
        let conn = Connection::open(&newer).unwrap();
        conn.execute(
            "UPDATE backup_info SET schema_version = 1, format = ?1",
            [FORMAT + 1],
        )
        .unwrap();
        drop(conn);
        let error = check_backup(&newer).unwrap_err().to_string();
        assert!(error.contains("is newer than this Exosphere's"), "{error}");

        let mut bytes = std::fs::read(&path).unwrap();
        let page = 4096;
        assert!(bytes.len() > 2 * page);
        for byte in &mut bytes[page + 100..2 * page] {
            *byte = 0x5A;
        }
        std::fs::write(&path, &bytes).unwrap();
        // Unreadable, or readable with problems: either way not sound.
        let sound = check_backup(&path).is_ok_and(|checked| checked.problems.is_empty());
        assert!(!sound);
    }
}
