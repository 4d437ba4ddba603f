//! The index file's SQL schema, its version, and the checks made when a file is opened.
//!
//! Every record is kept as the raw JSON text the server sent (`doc`), next to typed columns
//! for what queries filter, join and sort on. Derived tables (`latest`, `dependencies`,
//! `dependents`, `maintainers`, `release_packages`, the `search` full-text table) are filled by
//! [`crate::ingest`] in the same transaction as the records they come from.
//!
//! The file identifies itself with `PRAGMA application_id` and versions its schema with
//! `PRAGMA user_version`; a file from a newer Exosphere is refused with a clear message
//! rather than misread.

use std::path::Path;

use rusqlite::Connection;

use crate::IndexError;
use crate::readme::{ReadmeTexts, read_readmes};

/// `PRAGMA application_id` of an Exosphere index: "EXOI".
pub const APPLICATION_ID: i64 = 0x4558_4F49;

/// `PRAGMA user_version` this build reads and writes. Bump it (and say what changed) when
/// the schema changes; an index is a cache of the server, so older files are rebuilt.
/// 2: `versions.unmigrated` and the `raw_records` table.
/// 3: the `origin` table (added in place to a version 2 file).
/// 4: `latest.created`, `.published`, `.deprecated` and `.boost`, and the `adds` tables
///    (added in place to a version 2 or 3 file).
/// 5: `latest.unmigrated`, and a `latest` row for each package whose every version is
///    unmigrated, so search can include them when asked (added in place to a version 2, 3
///    or 4 file).
/// 6: the `readme` column of `search`, README texts from the writer's [`ReadmeTexts`]
///    (`search` is made again in place, without README texts until the next page that
///    brings the index up to date).
///
/// [`ReadmeTexts`]: crate::ReadmeTexts
pub const SCHEMA_VERSION: i64 = 6;

/// The server whose catalog the index copies (its DDP endpoint URL), one row, written by
/// the first sync. Not a data table: `resetData` from the same server keeps it.
const ORIGIN_TABLE: &str = "CREATE TABLE IF NOT EXISTS origin (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    server TEXT NOT NULL
);";

/// Recent usage per package, replaced whole by whoever knows it (the server's read model,
/// from its rolled-up stats; a client's index has none): what search boosts and the most
/// added and trending lists rank by. Not a data table: records do not feed it, so
/// `resetData` keeps it. `adds_state` says through which day it counts.
const ADDS_TABLES: &str = "CREATE TABLE IF NOT EXISTS adds (
    package TEXT PRIMARY KEY,
    direct_30d INTEGER NOT NULL,  -- direct adds over the 30 days through adds_state.through
    total_30d INTEGER NOT NULL,   -- direct and indirect adds over the same days
    direct_7d INTEGER NOT NULL,   -- direct adds over the last 7 of them
    direct_prior_28d INTEGER NOT NULL, -- direct adds over the 28 days before those 7
    popularity REAL NOT NULL      -- search's boost for direct_30d (search.rs, popularity)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS adds_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    through TEXT NOT NULL         -- the last day counted, YYYY-MM-DD
);";

/// `latest.boost` of the packages `latest` rows that `rows` (an SQL condition on `latest`)
/// selects, as an `UPDATE`: popularity, times `1 + 0.25 / (1 + years since the last
/// update)` for freshness, times ½ for a core package (no `owner:`), so that the core
/// packages every app adds do not bury the rest. Written when a package's latest version
/// changes (with the clock then) and for every package when the adds are replaced (the
/// server's read model does that hourly), so search orders by a column, not a formula.
pub(crate) fn update_boost(rows: &str) -> String {
    format!(
        "UPDATE latest SET boost =
             coalesce((SELECT popularity FROM adds WHERE adds.package = latest.package), 1.0)
             * (1.0 + 0.25 / (1.0 + max((julianday('now') - 2440587.5) * 86400000.0
                                        - coalesce(last_updated, 0), 0) / 31536000000.0))
             * CASE WHEN instr(package, ':') = 0 THEN 0.5 ELSE 1.0 END
         WHERE {rows}"
    )
}

/// Rewrites the derived rows of the packages whose latest version changed
/// (`latest_dirty`): their full-text row (with the start of its README file from
/// `readmes`, when given), the dependents of their latest version (none for a package whose
/// every version is unmigrated: no app can use it), the latest version's date and
/// deprecated flag, and the search boost. The page that brings a sync up to date runs it,
/// and so does an upgrade that adds `latest` rows. Returns how many packages it rewrote.
pub(crate) fn refresh_latest(
    connection: &Connection,
    readmes: Option<&dyn ReadmeTexts>,
) -> rusqlite::Result<u64> {
    let dirty: u64 =
        connection.query_row("SELECT count(*) FROM latest_dirty", [], |row| row.get(0))?;
    if dirty == 0 {
        return Ok(0);
    }
    connection.execute_batch(README_TEXTS)?;
    if let Some(readmes) = readmes {
        read_readmes(connection, readmes)?;
    }
    connection.execute_batch(&format!(
        "DELETE FROM search WHERE rowid IN (SELECT latest_id FROM latest_dirty);
         {WRITE_SEARCH}
         DELETE FROM temp.readme_texts;
         DELETE FROM dependents WHERE package IN
             (SELECT l.package FROM latest_dirty d JOIN latest l ON l.id = d.latest_id);
         INSERT OR REPLACE INTO dependents (name, package, version, constraint_text, refs, weak)
             SELECT e.name, l.package, v.version, e.constraint_text, e.refs, e.weak
             FROM latest_dirty d
             JOIN latest l ON l.id = d.latest_id
             JOIN versions v ON v.rowid = l.version_rowid
             JOIN dependencies e ON e.version_rowid = l.version_rowid
             WHERE NOT l.unmigrated;
         UPDATE latest SET
             published = (SELECT published FROM versions WHERE rowid = latest.version_rowid),
             deprecated = (SELECT json_type(doc, '$.deprecated') IS 'true' FROM versions
                           WHERE rowid = latest.version_rowid)
         WHERE id IN (SELECT latest_id FROM latest_dirty);",
    ))?;
    connection.execute_batch(&update_boost("id IN (SELECT latest_id FROM latest_dirty)"))?;
    connection.execute_batch("DELETE FROM latest_dirty;")?;
    Ok(dirty)
}

/// The indexes of `latest` by date, for the newest-first lists (version 4).
const LATEST_BY_DATE: &str = "
CREATE INDEX IF NOT EXISTS latest_by_published ON latest (published);
CREATE INDEX IF NOT EXISTS latest_by_created ON latest (created);";

/// Adds and fills the columns of version 4 from what the file holds.
const VERSION_4_COLUMNS: &str = "
ALTER TABLE latest ADD COLUMN created INTEGER;
ALTER TABLE latest ADD COLUMN published INTEGER;
ALTER TABLE latest ADD COLUMN deprecated INTEGER NOT NULL DEFAULT 0;
ALTER TABLE latest ADD COLUMN boost REAL NOT NULL DEFAULT 1.0;
UPDATE latest SET
    created = (SELECT min(published) FROM versions v
               WHERE v.package = latest.package AND NOT v.unmigrated),
    published = (SELECT published FROM versions WHERE rowid = latest.version_rowid),
    deprecated = (SELECT json_type(doc, '$.deprecated') IS 'true' FROM versions
                  WHERE rowid = latest.version_rowid);";

/// Adds `latest.unmigrated` (version 5); the rows it marks come from
/// [`LATEST_OF_UNMIGRATED_ONLY`].
const VERSION_5_COLUMN: &str =
    "ALTER TABLE latest ADD COLUMN unmigrated INTEGER NOT NULL DEFAULT 0;";

/// Gives each package whose every version is unmigrated (spec §3.8) a `latest` row marked
/// `unmigrated`: its greatest rank among them, the last stored among equal ranks, with their
/// dates, as packages with a migrated version get theirs. Run where `latest` already holds
/// every package that has a migrated version (the end of a first sync, the upgrade to
/// version 5); afterwards each version keeps it current (`ingest`).
pub(crate) const LATEST_OF_UNMIGRATED_ONLY: &str = "
INSERT INTO latest (package, version_rowid, rank, last_updated, created, unmigrated)
    SELECT package,
           (SELECT max(rowid) FROM versions v
            WHERE v.package = m.package AND v.rank = m.rank AND v.unmigrated),
           rank, last_updated, created, 1
    FROM (SELECT package, max(rank) AS rank, max(last_updated) AS last_updated,
                 min(published) AS created
          FROM versions WHERE unmigrated GROUP BY package) m
    WHERE NOT EXISTS (SELECT 1 FROM latest l WHERE l.package = m.package);";

/// Full text over the latest version of each package (rowid = `latest.id`): its name,
/// summary, README excerpt and, when the writer reads README files, the start of its
/// README (`readme::searched`; empty otherwise). Written by [`WRITE_SEARCH`].
const SEARCH_TABLE: &str = "CREATE VIRTUAL TABLE search USING fts5 (
    name, description, long_description, readme,
    tokenize = 'unicode61 remove_diacritics 2',
    prefix = '2 3'
);";

/// The README texts of the packages in `latest_dirty` that [`WRITE_SEARCH`] writes, read
/// for one page and emptied after it; a temporary table of the writer's connection.
const README_TEXTS: &str = "CREATE TEMP TABLE IF NOT EXISTS readme_texts (
    latest_id INTEGER PRIMARY KEY,
    text TEXT NOT NULL
);";

/// Writes the `search` rows of the packages in `latest_dirty` (whose old rows are gone)
/// from their latest version, with their README text from `temp.readme_texts`.
const WRITE_SEARCH: &str = "
INSERT INTO search (rowid, name, description, long_description, readme)
    SELECT l.id, l.package, coalesce(v.description, ''),
           coalesce(json_extract(v.doc, '$.longDescription'), ''),
           coalesce((SELECT text FROM temp.readme_texts r WHERE r.latest_id = l.id), '')
    FROM latest_dirty d
    JOIN latest l ON l.id = d.latest_id
    JOIN versions v ON v.rowid = l.version_rowid;";

/// Version 6's step in place: the old `search` goes; then `search` is made again with its
/// `readme` column ([`SEARCH_TABLE`]), every package is marked, and
/// `refresh_latest` fills it from every package's latest version without README texts, so
/// searches go on answering; every package is marked again ([`MARK_EVERY_PACKAGE`]), so
/// the next page that brings the index up to date writes each row again with its README
/// text when the writer reads README files.
const VERSION_6_SEARCH: &str = "DROP TABLE search;";

/// Marks every package for the next page that brings the index up to date.
const MARK_EVERY_PACKAGE: &str =
    "INSERT OR IGNORE INTO latest_dirty (latest_id) SELECT id FROM latest;";

/// The tables, in one batch. Column comments say where each value comes from (spec §3.8).
const SCHEMA: &str = r#"
-- The last applied page's syncToken (raw JSON), one row.
CREATE TABLE sync_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    token TEXT NOT NULL
);
-- Records per collection, kept up to date by every page so progress reads are O(1).
CREATE TABLE counts (
    collection TEXT PRIMARY KEY,
    records INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE packages (
    id TEXT PRIMARY KEY,          -- _id
    name TEXT NOT NULL,           -- name
    last_updated INTEGER,         -- lastUpdated, ms since the epoch
    doc TEXT NOT NULL
);
CREATE INDEX packages_by_name ON packages (name);
-- packages.maintainers[].username, for `search --maintainer`.
CREATE TABLE maintainers (
    package_id TEXT NOT NULL,     -- packages._id
    username TEXT NOT NULL,
    package TEXT NOT NULL,        -- packages.name
    PRIMARY KEY (package_id, username)
) WITHOUT ROWID;
CREATE INDEX maintainers_by_username ON maintainers (username, package);
CREATE INDEX maintainers_by_package ON maintainers (package);

CREATE TABLE versions (
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL,             -- _id (unique: versions_by_id)
    package TEXT NOT NULL,        -- packageName
    version TEXT NOT NULL,        -- version
    sort_key BLOB NOT NULL,       -- Meteor version order as bytes (version.rs)
    rank BLOB NOT NULL,           -- 1 for official versions, 0 for prereleases, then sort_key
    description TEXT,             -- description
    published INTEGER,            -- published, ms
    last_updated INTEGER,         -- lastUpdated, ms
    unmigrated INTEGER NOT NULL,  -- unmigrated: latest only when every version is, never deps'
    doc TEXT NOT NULL
);
-- One edge per (version, dependency): dependencies.<name>.{constraint, references}.
-- `refs` is the references array as sent (arch, weak, unordered, implied);
-- `weak` is 1 when every reference is weak.
CREATE TABLE dependencies (
    version_rowid INTEGER NOT NULL,
    name TEXT NOT NULL,
    constraint_text TEXT,
    refs TEXT NOT NULL,
    weak INTEGER NOT NULL,
    PRIMARY KEY (version_rowid, name)
) WITHOUT ROWID;
-- The dependency edges of each package's latest version, by dependency: who depends on a
-- package. Rewritten with `search` for the packages in `latest_dirty`.
CREATE TABLE dependents (
    name TEXT NOT NULL,           -- the package depended on
    package TEXT NOT NULL,        -- the package whose latest version depends on it
    version TEXT NOT NULL,        -- that latest version
    constraint_text TEXT,
    refs TEXT NOT NULL,
    weak INTEGER NOT NULL,
    PRIMARY KEY (name, package)
) WITHOUT ROWID;
CREATE INDEX dependents_by_package ON dependents (package);
-- The latest version of each package: the greatest `rank` (official versions above
-- prereleases, then Meteor version order) among its migrated versions, or, when every
-- version is unmigrated, among those (`unmigrated`: lists and search leave such packages
-- out unless asked). The rowid keys the `search` table.
CREATE TABLE latest (
    id INTEGER PRIMARY KEY,
    package TEXT NOT NULL UNIQUE,
    version_rowid INTEGER NOT NULL,
    rank BLOB NOT NULL,
    unmigrated INTEGER NOT NULL DEFAULT 0, -- every version of the package is unmigrated
    last_updated INTEGER,         -- the greatest lastUpdated of any version
    created INTEGER,              -- the earliest published of any version, ms
    -- Of the latest version, rewritten with `search` (search filters on them without
    -- reading its record):
    published INTEGER,            -- published, ms
    deprecated INTEGER NOT NULL DEFAULT 0, -- deprecated is true
    -- What search orders a tier by (update_boost, above):
    boost REAL NOT NULL DEFAULT 1.0
);
-- Packages whose latest version changed since the `search` and `dependents` rows were
-- written; they are rewritten by the page that brings the index up to date.
CREATE TABLE latest_dirty (
    latest_id INTEGER PRIMARY KEY
);
CREATE TABLE builds (
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL,             -- _id (unique: builds_by_id)
    version_id TEXT NOT NULL,     -- versionId (= versions.id)
    architectures TEXT NOT NULL,  -- buildArchitectures, e.g. os+web.browser
    published INTEGER,            -- buildPublished, ms
    doc TEXT NOT NULL
);

CREATE TABLE release_tracks (
    id TEXT PRIMARY KEY,          -- _id
    name TEXT NOT NULL,           -- name
    doc TEXT NOT NULL
);
CREATE INDEX release_tracks_by_name ON release_tracks (name);

CREATE TABLE release_versions (
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,      -- _id
    track TEXT NOT NULL,          -- track
    version TEXT NOT NULL,        -- version
    order_key TEXT,               -- orderKey (compared as plain text, as the tool does)
    recommended INTEGER NOT NULL, -- recommended
    packages INTEGER NOT NULL,    -- how many packages it pins (entries of `packages`)
    published INTEGER,            -- published, ms
    doc TEXT NOT NULL
);
CREATE INDEX release_versions_by_track ON release_versions (track, order_key);
-- releaseVersions.packages: which release pins which package version.
CREATE TABLE release_packages (
    package TEXT NOT NULL,
    release_rowid INTEGER NOT NULL,
    version TEXT NOT NULL,
    PRIMARY KEY (package, release_rowid)
) WITHOUT ROWID;
CREATE INDEX release_packages_by_release ON release_packages (release_rowid);
-- Records whose shape does not fit spec §3.8 (a version string that does not parse, bad
-- `references`, a missing required field), kept as sent without typed or derived rows so
-- one odd record does not stop a sync. A record is here or in its typed table, never both.
CREATE TABLE raw_records (
    collection TEXT NOT NULL,     -- the wire name, e.g. versions
    id TEXT NOT NULL,             -- _id
    reason TEXT NOT NULL,         -- why it was not typed
    doc TEXT NOT NULL,
    PRIMARY KEY (collection, id)
) WITHOUT ROWID;
"#;

/// The indexes of the two big collections, whose keys (`_id`s, package names) arrive in
/// random order. Kept current record by record they would dirty hundreds of scattered
/// pages in every page's transaction, so a first sync (or one after `resetData`) drops
/// them, appends, and builds them once sorted when the index is up to date
/// ([`crate::ingest`]). Their absence marks an unfinished first sync. Each is (name,
/// table, statement).
pub const DEFERRED_INDEXES: [(&str, &str, &str); 4] = [
    (
        "versions_by_id",
        "versions",
        "CREATE UNIQUE INDEX versions_by_id ON versions (id)",
    ),
    (
        "versions_by_package",
        "versions",
        "CREATE INDEX versions_by_package ON versions (package, sort_key)",
    ),
    (
        "builds_by_id",
        "builds",
        "CREATE UNIQUE INDEX builds_by_id ON builds (id)",
    ),
    (
        "builds_by_version",
        "builds",
        "CREATE INDEX builds_by_version ON builds (version_id)",
    ),
];

/// Tables whose rows are records or derived from them: emptied by `resetData`.
pub const DATA_TABLES: [&str; 15] = [
    "sync_state",
    "counts",
    "packages",
    "maintainers",
    "versions",
    "dependencies",
    "latest",
    "latest_dirty",
    "dependents",
    "search",
    "builds",
    "release_tracks",
    "release_versions",
    "release_packages",
    "raw_records",
];

/// Connection settings for an index: WAL so queries can read while a sync writes, and
/// `synchronous=NORMAL` because a page and its token commit together, so a power loss can
/// only lose whole pages, which the next sync fetches again. 8 KiB pages (set before the
/// file is first written) hold several ~1.5 KB version records each where 4 KiB pages
/// wasted a quarter of their space; a checkpoint every 8,192 pages (64 MiB of WAL) rather
/// than SQLite's 1,000 copies each page fewer times during a sync. Reads go through a
/// memory map of up to 1 GiB (an atmosphere-scale index is about half that) rather than a
/// `pread` copy per page: the scans that end a first sync and the checkpoints read much.
/// After a checkpoint the log is cut back to at most 64 MiB (`journal_size_limit`), so a
/// long-lived writer (the server's read model) does not keep the disk space of its largest
/// transaction.
pub fn configure(connection: &Connection) -> rusqlite::Result<()> {
    configure_reader(connection)?;
    connection.execute_batch(
        "PRAGMA page_size = 8192;
         PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = OFF;
         PRAGMA cache_size = -65536;
         PRAGMA wal_autocheckpoint = 8192;
         PRAGMA journal_size_limit = 67108864;",
    )
}

/// The settings of a read-only connection: none of them writes to the file, and its page
/// cache is small (8 MB, against a writer's 64 MB) since a server keeps several readers.
pub fn configure_reader(connection: &Connection) -> rusqlite::Result<()> {
    connection.busy_timeout(std::time::Duration::from_secs(5))?;
    connection.execute_batch(
        "PRAGMA cache_size = -8192;
         PRAGMA temp_store = MEMORY;
         PRAGMA mmap_size = 1073741824;",
    )
}

/// Checks, without writing, that `connection` holds an index of exactly this build's
/// schema: a read-only reader can neither create nor upgrade one.
pub fn check(connection: &Connection, path: &Path) -> Result<(), IndexError> {
    let (application_id, user_version) = identity(connection, path)?;
    check_version(application_id, user_version, SCHEMA_VERSION, path)
}

/// The file's `application_id` and `user_version`.
fn identity(connection: &Connection, path: &Path) -> Result<(i64, i64), IndexError> {
    let sqlite = |e| IndexError::from_sqlite(path, e);
    let application_id = connection
        .pragma_query_value(None, "application_id", |row| row.get(0))
        .map_err(sqlite)?;
    let user_version = connection
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(sqlite)?;
    Ok((application_id, user_version))
}

/// Refuses a file that is not an index ([`IndexError::Corrupt`]), of a newer schema
/// ([`IndexError::NewerSchema`]), or older than `oldest` ([`IndexError::Corrupt`]: rebuild).
fn check_version(
    application_id: i64,
    user_version: i64,
    oldest: i64,
    path: &Path,
) -> Result<(), IndexError> {
    if application_id != APPLICATION_ID {
        return Err(IndexError::Corrupt {
            path: path.to_owned(),
            reason: "it is an SQLite database, but not an Exosphere index".into(),
        });
    }
    if user_version > SCHEMA_VERSION {
        return Err(IndexError::NewerSchema {
            path: path.to_owned(),
            found: user_version,
            supported: SCHEMA_VERSION,
        });
    }
    if user_version < oldest {
        return Err(IndexError::Corrupt {
            path: path.to_owned(),
            reason: format!(
                "it has index schema {user_version}, from an older Exosphere; this version uses {SCHEMA_VERSION}"
            ),
        });
    }
    Ok(())
}

/// Checks that `connection` holds an index this build can use, creating the schema in an
/// empty file.
pub fn prepare(connection: &mut Connection, path: &Path) -> Result<(), IndexError> {
    let sqlite = |e| IndexError::from_sqlite(path, e);
    let (application_id, user_version) = identity(connection, path)?;
    if application_id == 0 && user_version == 0 {
        let objects: i64 = connection
            .query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))
            .map_err(sqlite)?;
        if objects != 0 {
            return Err(IndexError::Corrupt {
                path: path.to_owned(),
                reason: "it is an SQLite database, but not an Exosphere index".into(),
            });
        }
        let tx = connection.transaction().map_err(sqlite)?;
        tx.execute_batch(SCHEMA).map_err(sqlite)?;
        tx.execute_batch(SEARCH_TABLE).map_err(sqlite)?;
        tx.execute_batch(ORIGIN_TABLE).map_err(sqlite)?;
        tx.execute_batch(ADDS_TABLES).map_err(sqlite)?;
        tx.execute_batch(LATEST_BY_DATE).map_err(sqlite)?;
        for (_, _, create) in DEFERRED_INDEXES {
            tx.execute_batch(create).map_err(sqlite)?;
        }
        tx.pragma_update(None, "application_id", APPLICATION_ID)
            .map_err(sqlite)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(sqlite)?;
        return tx.commit().map_err(sqlite);
    }
    check_version(application_id, user_version, 2, path)?;
    if user_version < SCHEMA_VERSION {
        // One step per version, in order, in one transaction. Two processes may upgrade
        // the same file at once: the first commits, the second sees the new version and
        // stops.
        let tx = connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sqlite)?;
        let (_, now) = identity(&tx, path)?;
        if now < 4 {
            // Versions 3 and 4 only add: `origin` (the file's server is learnt at its next
            // sync), four columns of `latest` and the `adds` tables.
            tx.execute_batch(ORIGIN_TABLE).map_err(sqlite)?;
            tx.execute_batch(ADDS_TABLES).map_err(sqlite)?;
            tx.execute_batch(VERSION_4_COLUMNS).map_err(sqlite)?;
            tx.execute_batch(&update_boost("1")).map_err(sqlite)?;
            tx.execute_batch(LATEST_BY_DATE).map_err(sqlite)?;
        }
        if now < 5 {
            // Version 5: the `latest` rows of packages whose every version is unmigrated,
            // their derived rows written below.
            tx.execute_batch(VERSION_5_COLUMN).map_err(sqlite)?;
            tx.execute_batch(LATEST_OF_UNMIGRATED_ONLY)
                .map_err(sqlite)?;
            tx.execute_batch(
                "INSERT OR IGNORE INTO latest_dirty (latest_id)
                     SELECT id FROM latest WHERE unmigrated",
            )
            .map_err(sqlite)?;
        }
        if now < 6 {
            tx.execute_batch(VERSION_6_SEARCH).map_err(sqlite)?;
            tx.execute_batch(SEARCH_TABLE).map_err(sqlite)?;
            tx.execute_batch(MARK_EVERY_PACKAGE).map_err(sqlite)?;
        }
        if now < SCHEMA_VERSION {
            // The derived rows of every package marked above, in the shape of this
            // version (not when another process upgraded the file while this one waited).
            refresh_latest(&tx, None).map_err(sqlite)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(sqlite)?;
        }
        if now < 6 {
            // Their README texts at the next page that brings the index up to date.
            tx.execute_batch(MARK_EVERY_PACKAGE).map_err(sqlite)?;
        }
        return tx.commit().map_err(sqlite);
    }
    Ok(())
}
