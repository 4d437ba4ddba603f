//! Applying `syncNewPackageData` pages to the index (spec §3.2–§3.3, record shapes §3.8).
//!
//! A page is applied in one transaction together with its sync token, so the index always
//! holds whole pages and an interrupted sync resumes after the last committed one. Each
//! record is parsed once, borrowing strings from the page text where it can; its raw text
//! is stored as given, next to the typed columns and derived rows (latest version,
//! dependency edges, maintainers, release membership). Statements are prepared once per
//! connection (rusqlite's statement cache).
//!
//! A first sync (into an empty index, or after `resetData`) appends versions and builds
//! without their random-key indexes and builds those once at the end (see
//! [`DEFERRED_INDEXES`]), and chooses every package's latest version then too, rather than
//! once per version; until then queries refuse the unfinished index.
//!
//! The full-text table and the dependents of each package's latest version are costly to
//! keep current record by record (a package's latest version may move several times in a
//! sync), so a page only notes which packages' latest version changed (`latest_dirty`) and
//! the page that brings the index up to date rewrites their rows, in its own transaction;
//! with a [`ReadmeTexts`], the full-text rows hold the start of each one's README too.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use exosphere_meteor::{Collection, MeteorVersion};
use rusqlite::{OptionalExtension as _, Transaction, params};
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::IndexError;
use crate::readme::ReadmeTexts;
use crate::schema::{DATA_TABLES, DEFERRED_INDEXES, LATEST_OF_UNMIGRATED_ONLY, refresh_latest};

/// One page of a `syncNewPackageData` result, borrowed from the frame text (no copies).
#[derive(Debug, Clone)]
pub struct SyncPage<'a> {
    /// The server said `resetData: true`: drop everything before applying this page.
    pub reset_data: bool,
    /// The server said `upToDate: true`.
    pub up_to_date: bool,
    /// The `syncToken` to store with this page, as raw JSON.
    pub sync_token: &'a RawValue,
    /// Records by collection name ("packages", "versions", "builds", "releaseTracks",
    /// "releaseVersions"; unknown names are ignored), each record's raw JSON text: EJSON as in
    /// `collections`, or the plain JSON of a decoded `collectionsCompressed` (spec §3.7).
    pub collections: Vec<(&'a str, Vec<&'a RawValue>)>,
}

/// What one page changed, so `sync` can report progress.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageApplied {
    /// Records stored (inserted or updated) from this page, over all collections.
    pub records: u64,
    /// Of those, records the index did not hold before.
    pub inserted: u64,
    /// Of those, records that replaced a stored record with the same `_id`.
    pub updated: u64,
    /// Records in collections this index does not know (ignored).
    pub ignored: u64,
    /// Packages whose derived rows (full text with README text, dependents, latest dates,
    /// search boost) the page rewrote: only a page that brings the index up to date does,
    /// for the packages whose latest version changed since (every package after an upgrade
    /// of the file). What is searched or listed can change without a new record only then.
    pub refreshed: u64,
    /// Records whose shape does not fit spec §3.8 (a version that does not parse, bad
    /// `references`, a missing or mistyped field), stored as sent without typed or derived
    /// rows so the sync goes on; not counted in `records`. `sync` warns about them.
    pub raw_only: u64,
}

/// The table holding a collection's typed rows.
fn table(collection: Collection) -> &'static str {
    match collection {
        Collection::Packages => "packages",
        Collection::Versions => "versions",
        Collection::Builds => "builds",
        Collection::ReleaseTracks => "release_tracks",
        Collection::ReleaseVersions => "release_versions",
    }
}

/// Applies `page` in `tx` (see the module documentation), with the README texts of the
/// latest versions that changed from `readmes` when it brings the index up to date; the
/// caller commits.
pub(crate) fn apply(
    tx: &Transaction<'_>,
    page: &SyncPage<'_>,
    readmes: Option<&dyn ReadmeTexts>,
) -> Result<PageApplied, Failure> {
    if page.reset_data {
        for table in DATA_TABLES {
            tx.execute(&format!("DELETE FROM {table}"), [])?;
        }
    }
    let mut bulk = is_first_sync(tx)?;
    if !bulk && holds_no_versions_or_builds(tx)? {
        for (name, _, _) in DEFERRED_INDEXES {
            tx.execute(&format!("DROP INDEX {name}"), [])?;
        }
        bulk = true;
    }
    let mut applied = PageApplied::default();
    let mut any_raw = holds_raw_records(tx)?;
    for (name, records) in &page.collections {
        let Ok(collection) = name.parse::<Collection>() else {
            applied.ignored += records.len() as u64;
            continue;
        };
        let (mut inserted, mut raw_only) = (0, 0);
        for raw in records {
            if !is_object(raw.get()) {
                let reason = "a record must be a JSON object".to_owned();
                return Err(Failure::Record(reason).in_record(collection, raw.get()));
            }
            match apply_record(tx, collection, raw.get(), bulk) {
                Ok((was_inserted, id)) => {
                    if any_raw {
                        tx.prepare_cached(
                            "DELETE FROM raw_records WHERE collection = ?1 AND id = ?2",
                        )?
                        .execute([collection.as_str(), id.as_str()])?;
                    }
                    if was_inserted {
                        inserted += 1;
                    }
                }
                Err(Failure::Record(reason)) => {
                    let Some(id) = record_id(raw.get()) else {
                        return Err(Failure::Record(reason).in_record(collection, raw.get()));
                    };
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO raw_records (collection, id, reason, doc)
                         VALUES (?1, ?2, ?3, ?4)",
                    )?
                    .execute([
                        collection.as_str(),
                        &id,
                        &reason,
                        raw.get(),
                    ])?;
                    any_raw = true;
                    raw_only += 1;
                }
                Err(failure) => return Err(failure),
            }
        }
        let stored = records.len() as u64 - raw_only;
        applied.raw_only += raw_only;
        applied.records += stored;
        applied.inserted += inserted;
        applied.updated += stored - inserted;
        if inserted > 0 {
            tx.prepare_cached(
                "INSERT INTO counts (collection, records) VALUES (?1, ?2)
                 ON CONFLICT (collection) DO UPDATE SET records = records + excluded.records",
            )?
            .execute(params![collection.as_str(), inserted])?;
        }
    }
    if applied.raw_only > 0 && !bulk {
        drop_typed_rows_of_raw_records(tx, true)?;
    }
    if page.up_to_date {
        if bulk {
            finish_first_sync(tx)?;
        }
        applied.refreshed = refresh_latest(tx, readmes)?;
    }
    tx.prepare_cached(
        "INSERT INTO sync_state (id, token) VALUES (1, ?1)
         ON CONFLICT (id) DO UPDATE SET token = excluded.token",
    )?
    .execute([page.sync_token.get()])?;
    Ok(applied)
}

/// Whether a first sync is under way: its deferred indexes are not there
/// ([`DEFERRED_INDEXES`]).
pub(crate) fn is_first_sync(connection: &rusqlite::Connection) -> rusqlite::Result<bool> {
    let (first, _, _) = DEFERRED_INDEXES[0];
    connection
        .prepare_cached(
            "SELECT NOT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'index' AND name = ?1)",
        )?
        .query_row([first], |row| row.get(0))
}

/// Whether the big collections are empty, so this page starts a first sync.
fn holds_no_versions_or_builds(tx: &Transaction<'_>) -> rusqlite::Result<bool> {
    tx.prepare_cached(
        "SELECT NOT EXISTS (SELECT 1 FROM versions) AND NOT EXISTS (SELECT 1 FROM builds)",
    )?
    .query_row([], |row| row.get(0))
}

/// Whether any record is stored raw only, so typed records must clear their raw copy.
fn holds_raw_records(tx: &Transaction<'_>) -> rusqlite::Result<bool> {
    tx.prepare_cached("SELECT EXISTS (SELECT 1 FROM raw_records)")?
        .query_row([], |row| row.get(0))
}

/// Deletes the typed and derived rows of records now stored raw only (a record that
/// changed into a shape the index does not know), and with `repick` chooses a new latest
/// version for the packages whose latest one went. A first sync calls it once at its end
/// (with the deferred indexes built) and chooses every latest version after it.
fn drop_typed_rows_of_raw_records(tx: &Transaction<'_>, repick: bool) -> rusqlite::Result<()> {
    let orphaned: Vec<String> = if repick {
        tx.prepare_cached(
            "SELECT DISTINCT v.package FROM raw_records r
             JOIN versions v ON v.id = r.id
             JOIN latest l ON l.version_rowid = v.rowid
             WHERE r.collection = 'versions'",
        )?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?
    } else {
        Vec::new()
    };
    let derived = [
        "DELETE FROM maintainers WHERE package_id IN
             (SELECT id FROM raw_records WHERE collection = 'packages')",
        "DELETE FROM dependencies WHERE version_rowid IN
             (SELECT v.rowid FROM raw_records r JOIN versions v ON v.id = r.id
              WHERE r.collection = 'versions')",
        "DELETE FROM release_packages WHERE release_rowid IN
             (SELECT v.rowid FROM raw_records r JOIN release_versions v ON v.id = r.id
              WHERE r.collection = 'releaseVersions')",
    ];
    for statement in derived {
        tx.prepare_cached(statement)?.execute([])?;
    }
    for collection in Collection::ALL {
        let table = table(collection);
        let dropped = tx
            .prepare_cached(&format!(
                "DELETE FROM {table} WHERE id IN (SELECT id FROM raw_records WHERE collection = ?1)"
            ))?
            .execute([collection.as_str()])?;
        if dropped > 0 {
            tx.prepare_cached(&format!(
                "UPDATE counts SET records = (SELECT count(*) FROM {table}) WHERE collection = ?1"
            ))?
            .execute([collection.as_str()])?;
        }
    }
    for package in orphaned {
        repick_latest(tx, &package)?;
    }
    Ok(())
}

/// Chooses `package`'s latest version again, from all of its versions: after its latest
/// one went or became `unmigrated`, or when the package has no migrated version (its
/// latest is then among the unmigrated ones, marked so). The greatest rank among the
/// migrated versions, else among the unmigrated ones, the last stored among equal ranks;
/// its dates are those of the versions of its kind. With no version left the package
/// leaves `latest`, `search` and `dependents`.
fn repick_latest(tx: &Transaction<'_>, package: &str) -> rusqlite::Result<()> {
    let best: Option<(i64, Vec<u8>, bool)> = tx
        .prepare_cached(
            "SELECT rowid, rank, unmigrated FROM versions WHERE package = ?1
             ORDER BY unmigrated, rank DESC, rowid DESC LIMIT 1",
        )?
        .query_row([package], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .optional()?;
    if let Some((rowid, rank, unmigrated)) = best {
        let latest_id: i64 = tx
            .prepare_cached(
                "INSERT INTO latest (package, version_rowid, rank, unmigrated, last_updated,
                                     created)
                 SELECT ?1, ?2, ?3, ?4, max(last_updated), min(published) FROM versions
                 WHERE package = ?1 AND unmigrated = ?4
                 ON CONFLICT (package) DO UPDATE SET
                     version_rowid = excluded.version_rowid, rank = excluded.rank,
                     unmigrated = excluded.unmigrated, last_updated = excluded.last_updated,
                     created = excluded.created
                 RETURNING id",
            )?
            .query_row(params![package, rowid, rank, unmigrated], |row| row.get(0))?;
        tx.prepare_cached("INSERT OR IGNORE INTO latest_dirty (latest_id) VALUES (?1)")?
            .execute([latest_id])?;
        return Ok(());
    }
    let latest_id: Option<i64> = tx
        .prepare_cached("DELETE FROM latest WHERE package = ?1 RETURNING id")?
        .query_row([package], |row| row.get(0))
        .optional()?;
    if let Some(latest_id) = latest_id {
        tx.prepare_cached("DELETE FROM search WHERE rowid = ?1")?
            .execute([latest_id])?;
        tx.prepare_cached("DELETE FROM latest_dirty WHERE latest_id = ?1")?
            .execute([latest_id])?;
    }
    tx.prepare_cached("DELETE FROM dependents WHERE package = ?1")?
        .execute([package])?;
    Ok(())
}

/// Ends a first sync: a record sent twice (it changed while the sync ran) keeps its last
/// copy, the deferred indexes are built from sorted keys, and every package's latest
/// version is chosen at once (the page that ends the sync then writes `search` and
/// `dependents` for all of them): the greatest rank, the last stored among equal ranks, as
/// version by version, among the migrated versions, and for the packages that have none
/// among the unmigrated ones ([`LATEST_OF_UNMIGRATED_ONLY`]). Grouping along
/// `versions_by_package` and looking the winner up there costs a third of ranking every
/// version with a window function.
fn finish_first_sync(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    for (_, table, create) in DEFERRED_INDEXES {
        if !create.starts_with("CREATE UNIQUE INDEX") {
            tx.execute_batch(create)?;
        } else if !create_unique(tx, create)? {
            drop_older_copies(tx, table)?;
            tx.execute_batch(create)?;
        }
    }
    if holds_raw_records(tx)? {
        drop_typed_rows_of_raw_records(tx, false)?;
    }
    tx.execute_batch(
        "DELETE FROM search;
         DELETE FROM dependents;
         DELETE FROM latest;
         INSERT INTO latest (package, version_rowid, rank, last_updated, created)
             SELECT package,
                    (SELECT max(rowid) FROM versions v
                     WHERE v.package = m.package AND v.rank = m.rank AND NOT v.unmigrated),
                    rank, last_updated, created
             FROM (SELECT package, max(rank) AS rank, max(last_updated) AS last_updated,
                          min(published) AS created
                   FROM versions WHERE NOT unmigrated GROUP BY package) m;",
    )?;
    tx.execute_batch(LATEST_OF_UNMIGRATED_ONLY)?;
    tx.execute_batch("INSERT OR IGNORE INTO latest_dirty (latest_id) SELECT id FROM latest;")
}

/// Builds a unique index; `false` if a key is duplicated (the index is then not built).
/// Trying it first spares the common case, a sync in which no record changed while it ran,
/// a scan of the table to look for duplicates.
fn create_unique(tx: &Transaction<'_>, create: &str) -> rusqlite::Result<bool> {
    match tx.execute_batch(create) {
        Ok(()) => Ok(true),
        Err(rusqlite::Error::SqliteFailure(error, _))
            if error.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Ok(false)
        }
        Err(error) => Err(error),
    }
}

/// Keeps the last copy of each record of `table` (versions or builds) sent twice in a
/// first sync, and what is derived from the others.
fn drop_older_copies(tx: &Transaction<'_>, table: &str) -> rusqlite::Result<()> {
    tx.execute(
        &format!(
            "DELETE FROM {table} WHERE rowid NOT IN (SELECT max(rowid) FROM {table} GROUP BY id)"
        ),
        [],
    )?;
    if table == "versions" {
        tx.execute(
            "DELETE FROM dependencies WHERE version_rowid NOT IN (SELECT rowid FROM versions)",
            [],
        )?;
    }
    tx.execute(
        &format!(
            "UPDATE counts SET records = (SELECT count(*) FROM {table}) WHERE collection = ?1"
        ),
        [table],
    )?;
    Ok(())
}

/// Why applying a page stopped: a malformed record or a database error.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The record does not have the shape of spec §3.8 (the reason).
    Record(String),
    /// SQLite failed.
    Sqlite(rusqlite::Error),
    /// A malformed record, already named.
    Named(IndexError),
}

impl From<rusqlite::Error> for Failure {
    fn from(error: rusqlite::Error) -> Failure {
        Failure::Sqlite(error)
    }
}

impl From<serde_json::Error> for Failure {
    fn from(error: serde_json::Error) -> Failure {
        Failure::Record(error.to_string())
    }
}

impl Failure {
    /// Names the record a [`Failure::Record`] is about, by its `_id` where it has one.
    fn in_record(self, collection: Collection, text: &str) -> Failure {
        let Failure::Record(reason) = self else {
            return self;
        };
        let id = record_id(text).unwrap_or_else(|| "?".to_owned());
        Failure::Named(IndexError::MalformedRecord {
            collection: collection.as_str().to_owned(),
            id,
            reason,
        })
    }
}

/// The `_id` of a record that is a JSON object with a string `_id`: what a record needs to
/// be stored at all (raw only, when the rest of it does not fit spec §3.8).
fn record_id(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct IdOnly<'a> {
        #[serde(rename = "_id", borrow)]
        id: Text<'a>,
    }
    if !is_object(text) {
        return None;
    }
    serde_json::from_str::<IdOnly<'_>>(text)
        .ok()
        .map(|record| record.id.0.into_owned())
}

/// Whether a record's text is a JSON object (serde would read a struct from an array too).
fn is_object(text: &str) -> bool {
    text.trim_start().starts_with('{')
}

/// Stores one record; returns whether it was new (`false`: it replaced a stored one) and
/// its `_id`.
fn apply_record<'t>(
    tx: &Transaction<'_>,
    collection: Collection,
    text: &'t str,
    first_sync: bool,
) -> Result<(bool, Text<'t>), Failure> {
    match collection {
        Collection::Packages => apply_package(tx, text),
        Collection::Versions => apply_version(tx, text, first_sync),
        Collection::Builds => apply_build(tx, text),
        Collection::ReleaseTracks => apply_track(tx, text),
        Collection::ReleaseVersions => apply_release(tx, text),
    }
}

/// Inserts a row, or updates the row with the same `_id` (`?1`) with the same parameters;
/// returns the row's rowid and whether it was inserted. `INSERT OR IGNORE` first because in
/// a sync almost every record is new, and it tells new from replaced without a lookup.
fn upsert(
    tx: &Transaction<'_>,
    insert: &str,
    update: &str,
    values: &[&dyn rusqlite::ToSql],
) -> Result<(i64, bool), Failure> {
    if tx.prepare_cached(insert)?.execute(values)? == 1 {
        return Ok((tx.last_insert_rowid(), true));
    }
    let rowid = tx
        .prepare_cached(update)?
        .query_row(values, |row| row.get(0))?;
    Ok((rowid, false))
}

#[derive(Deserialize)]
struct PackageRecord<'a> {
    #[serde(rename = "_id", borrow)]
    id: Text<'a>,
    #[serde(borrow)]
    name: Text<'a>,
    #[serde(default, borrow)]
    maintainers: Option<Vec<User<'a>>>,
    #[serde(default, rename = "lastUpdated")]
    last_updated: Option<Millis>,
}

#[derive(Deserialize)]
struct User<'a> {
    #[serde(default, borrow)]
    username: Option<Text<'a>>,
}

fn apply_package<'t>(tx: &Transaction<'_>, text: &'t str) -> Result<(bool, Text<'t>), Failure> {
    let record: PackageRecord<'t> = serde_json::from_str(text)?;
    let (id, name) = (record.id.as_str(), record.name.as_str());
    let (_, inserted) = upsert(
        tx,
        "INSERT OR IGNORE INTO packages (id, name, last_updated, doc) VALUES (?1, ?2, ?3, ?4)",
        "UPDATE packages SET name = ?2, last_updated = ?3, doc = ?4 WHERE id = ?1 RETURNING rowid",
        &[&id, &name, &record.last_updated.map(|m| m.0), &text],
    )?;
    if !inserted {
        tx.prepare_cached("DELETE FROM maintainers WHERE package_id = ?1")?
            .execute([id])?;
    }
    let mut add = tx.prepare_cached(
        "INSERT OR IGNORE INTO maintainers (package_id, username, package) VALUES (?1, ?2, ?3)",
    )?;
    for user in record.maintainers.iter().flatten() {
        if let Some(username) = &user.username {
            add.execute([id, username.as_str(), name])?;
        }
    }
    Ok((inserted, record.id))
}

#[derive(Deserialize)]
struct VersionRecord<'a> {
    #[serde(rename = "_id", borrow)]
    id: Text<'a>,
    #[serde(rename = "packageName", borrow)]
    package: Text<'a>,
    #[serde(borrow)]
    version: Text<'a>,
    #[serde(default, borrow)]
    description: Option<Text<'a>>,
    #[serde(default, borrow)]
    dependencies: Option<Entries<Text<'a>, Dependency<'a>>>,
    #[serde(default)]
    published: Option<Millis>,
    #[serde(default, rename = "lastUpdated")]
    last_updated: Option<Millis>,
    #[serde(default)]
    unmigrated: Option<bool>,
}

#[derive(Deserialize)]
struct Dependency<'a> {
    #[serde(default, borrow)]
    constraint: Option<Text<'a>>,
    #[serde(default, borrow)]
    references: Option<&'a RawValue>,
}

/// One entry of a dependency's `references`, parsed to check its shape (the array itself is
/// stored as sent).
#[derive(Deserialize)]
struct Reference<'a> {
    #[serde(rename = "arch", borrow)]
    _arch: Text<'a>,
    #[serde(default)]
    weak: Option<bool>,
    #[serde(default, rename = "unordered")]
    _unordered: Option<bool>,
    #[serde(default, rename = "implied")]
    _implied: Option<bool>,
}

/// Stores a version and its dependency edges, and, outside a first sync (which ranks all
/// versions at its end), makes it its package's latest version if it ranks highest.
fn apply_version<'t>(
    tx: &Transaction<'_>,
    text: &'t str,
    first_sync: bool,
) -> Result<(bool, Text<'t>), Failure> {
    let record: VersionRecord<'t> = serde_json::from_str(text)?;
    let version = MeteorVersion::parse(record.version.as_str())
        .map_err(|e| Failure::Record(e.to_string()))?;
    // Every edge is checked before anything is written, so a record that does not fit is
    // stored raw only, with no half of its rows.
    let mut edges = Vec::new();
    for (name, dependency) in record.dependencies.iter().flat_map(|d| &d.0) {
        let refs = dependency.references.map_or("[]", RawValue::get);
        let references: Vec<Reference<'_>> = serde_json::from_str(refs).map_err(|e| {
            Failure::Record(format!(
                "dependency `{}` has bad references: {e}",
                name.as_str()
            ))
        })?;
        let weak = !references.is_empty() && references.iter().all(|r| r.weak == Some(true));
        edges.push((name, dependency, refs, weak));
    }
    let sort_key = version.sort_key();
    // Official versions rank above prereleases, so "latest" is what `meteor add` would pick.
    let mut rank = Vec::with_capacity(sort_key.len() + 1);
    rank.push(u8::from(!version.is_prerelease()));
    rank.extend_from_slice(&sort_key);
    let (id, package) = (record.id.as_str(), record.package.as_str());
    let last_updated = record.last_updated.map(|m| m.0);
    let published = record.published.map(|m| m.0);
    let unmigrated = record.unmigrated.unwrap_or(false);
    let (rowid, inserted) = upsert(
        tx,
        "INSERT OR IGNORE INTO versions
             (id, package, version, sort_key, description, published, last_updated, doc, rank,
              unmigrated)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        "UPDATE versions SET package = ?2, version = ?3, sort_key = ?4, description = ?5,
             published = ?6, last_updated = ?7, doc = ?8, rank = ?9, unmigrated = ?10
         WHERE id = ?1 RETURNING rowid",
        &[
            &id,
            &package,
            &record.version.as_str(),
            &sort_key,
            &record.description.as_ref().map(Text::as_str),
            &published,
            &last_updated,
            &text,
            &rank,
            &unmigrated,
        ],
    )?;
    if !inserted {
        tx.prepare_cached("DELETE FROM dependencies WHERE version_rowid = ?1")?
            .execute([rowid])?;
    }
    let mut add = tx.prepare_cached(
        "INSERT OR REPLACE INTO dependencies (version_rowid, name, constraint_text, refs, weak)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for (name, dependency, refs, weak) in edges {
        add.execute(params![
            rowid,
            name.as_str(),
            dependency.constraint.as_ref().map(Text::as_str),
            refs,
            weak
        ])?;
    }
    if first_sync {
        return Ok((inserted, record.id));
    }
    // Spec §3.8: an unmigrated version is latest only while the package has no migrated
    // one. The latest is chosen again from every version when this one may change which
    // kind it is among: the package has none yet and this one is unmigrated, its latest is
    // unmigrated, or this one was its latest and is unmigrated now.
    let latest: Option<(bool, i64)> = tx
        .prepare_cached("SELECT unmigrated, version_rowid FROM latest WHERE package = ?1")?
        .query_row([package], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    let choose_again = match latest {
        None => unmigrated,
        Some((latest_unmigrated, latest_rowid)) => {
            latest_unmigrated || (unmigrated && latest_rowid == rowid)
        }
    };
    if choose_again {
        repick_latest(tx, package)?;
        return Ok((inserted, record.id));
    }
    if unmigrated {
        return Ok((inserted, record.id));
    }
    let (latest_id, latest_version): (i64, i64) = tx
        .prepare_cached(
            "INSERT INTO latest (package, version_rowid, rank, last_updated, created)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (package) DO UPDATE SET
                 version_rowid = CASE WHEN excluded.rank >= latest.rank
                                      THEN excluded.version_rowid ELSE latest.version_rowid END,
                 rank = max(latest.rank, excluded.rank),
                 last_updated = max(coalesce(latest.last_updated, excluded.last_updated),
                                    coalesce(excluded.last_updated, latest.last_updated)),
                 created = min(coalesce(latest.created, excluded.created),
                               coalesce(excluded.created, latest.created))
             RETURNING id, version_rowid",
        )?
        .query_row(
            params![package, rowid, rank, last_updated, published],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
    if latest_version == rowid {
        tx.prepare_cached("INSERT OR IGNORE INTO latest_dirty (latest_id) VALUES (?1)")?
            .execute([latest_id])?;
    }
    Ok((inserted, record.id))
}

#[derive(Deserialize)]
struct BuildRecord<'a> {
    #[serde(rename = "_id", borrow)]
    id: Text<'a>,
    #[serde(rename = "versionId", borrow)]
    version_id: Text<'a>,
    #[serde(rename = "buildArchitectures", borrow)]
    architectures: Text<'a>,
    #[serde(default, rename = "buildPublished")]
    published: Option<Millis>,
}

fn apply_build<'t>(tx: &Transaction<'_>, text: &'t str) -> Result<(bool, Text<'t>), Failure> {
    let record: BuildRecord<'t> = serde_json::from_str(text)?;
    let (_, inserted) = upsert(
        tx,
        "INSERT OR IGNORE INTO builds (id, version_id, architectures, published, doc)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        "UPDATE builds SET version_id = ?2, architectures = ?3, published = ?4, doc = ?5
         WHERE id = ?1 RETURNING rowid",
        &[
            &record.id.as_str(),
            &record.version_id.as_str(),
            &record.architectures.as_str(),
            &record.published.map(|m| m.0),
            &text,
        ],
    )?;
    Ok((inserted, record.id))
}

#[derive(Deserialize)]
struct TrackRecord<'a> {
    #[serde(rename = "_id", borrow)]
    id: Text<'a>,
    #[serde(borrow)]
    name: Text<'a>,
}

fn apply_track<'t>(tx: &Transaction<'_>, text: &'t str) -> Result<(bool, Text<'t>), Failure> {
    let record: TrackRecord<'t> = serde_json::from_str(text)?;
    let (_, inserted) = upsert(
        tx,
        "INSERT OR IGNORE INTO release_tracks (id, name, doc) VALUES (?1, ?2, ?3)",
        "UPDATE release_tracks SET name = ?2, doc = ?3 WHERE id = ?1 RETURNING rowid",
        &[&record.id.as_str(), &record.name.as_str(), &text],
    )?;
    Ok((inserted, record.id))
}

#[derive(Deserialize)]
struct ReleaseRecord<'a> {
    #[serde(rename = "_id", borrow)]
    id: Text<'a>,
    #[serde(borrow)]
    track: Text<'a>,
    #[serde(borrow)]
    version: Text<'a>,
    #[serde(default, rename = "orderKey", borrow)]
    order_key: Option<Text<'a>>,
    #[serde(default)]
    recommended: Option<bool>,
    #[serde(default)]
    published: Option<Millis>,
    #[serde(default, borrow)]
    packages: Option<Entries<Text<'a>, Text<'a>>>,
}

fn apply_release<'t>(tx: &Transaction<'_>, text: &'t str) -> Result<(bool, Text<'t>), Failure> {
    let record: ReleaseRecord<'t> = serde_json::from_str(text)?;
    let (rowid, inserted) = upsert(
        tx,
        "INSERT OR IGNORE INTO release_versions
             (id, track, version, order_key, recommended, published, doc, packages)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        "UPDATE release_versions SET track = ?2, version = ?3, order_key = ?4,
             recommended = ?5, published = ?6, doc = ?7, packages = ?8
         WHERE id = ?1 RETURNING rowid",
        &[
            &record.id.as_str(),
            &record.track.as_str(),
            &record.version.as_str(),
            &record.order_key.as_ref().map(Text::as_str),
            &record.recommended.unwrap_or(false),
            &record.published.map(|m| m.0),
            &text,
            &record.packages.as_ref().map_or(0, |p| p.0.len()),
        ],
    )?;
    if !inserted {
        tx.prepare_cached("DELETE FROM release_packages WHERE release_rowid = ?1")?
            .execute([rowid])?;
    }
    let mut add = tx.prepare_cached(
        "INSERT OR REPLACE INTO release_packages (package, release_rowid, version)
         VALUES (?1, ?2, ?3)",
    )?;
    for (package, version) in record.packages.iter().flat_map(|p| &p.0) {
        add.execute(params![package.as_str(), rowid, version.as_str()])?;
    }
    Ok((inserted, record.id))
}

/// The catalog records of a dump (`docs/catalog-dump.md`) by collection, in sync order,
/// borrowed from the dump text; stats lines are skipped.
pub(crate) fn dump_records(dump: &str) -> Result<Vec<(&str, Vec<&RawValue>)>, IndexError> {
    #[derive(Deserialize)]
    struct Line<'a> {
        #[serde(borrow)]
        collection: Text<'a>,
        #[serde(borrow)]
        doc: &'a RawValue,
    }
    let mut by_collection: Vec<(&str, Vec<&RawValue>)> = Collection::ALL
        .iter()
        .map(|c| (c.as_str(), Vec::new()))
        .collect();
    for (number, line) in dump.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fail = |reason: String| IndexError::MalformedDump {
            line: number + 1,
            reason,
        };
        let line: Line<'_> = serde_json::from_str(line).map_err(|e| fail(e.to_string()))?;
        if line.collection.as_str() == "stats" {
            continue;
        }
        let collection = line
            .collection
            .as_str()
            .parse::<Collection>()
            .map_err(|_| fail(format!("unknown collection `{}`", line.collection.as_str())))?;
        by_collection[collection as usize].1.push(line.doc);
    }
    Ok(by_collection)
}

/// Reads the stored sync token.
pub(crate) fn stored_token(connection: &rusqlite::Connection) -> rusqlite::Result<Option<String>> {
    connection
        .query_row("SELECT token FROM sync_state WHERE id = 1", [], |row| {
            row.get(0)
        })
        .optional()
}

/// A JSON string borrowed from the page text when it has no escapes, owned otherwise
/// (serde's own `Cow<str>` is always owned when nested in an `Option` or a map).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Text<'a>(pub(crate) Cow<'a, str>);

impl Text<'_> {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(text)))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(text.to_owned())))
            }
            fn visit_string<E: de::Error>(self, text: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(text)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

/// A JSON object's entries in their order, without hashing (dependency and package maps).
pub(crate) struct Entries<K, V>(pub(crate) Vec<(K, V)>);

impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Deserialize<'de> for Entries<K, V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor<K, V>(PhantomData<(K, V)>);
        impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Visitor<'de> for EntriesVisitor<K, V> {
            type Value = Entries<K, V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_map(EntriesVisitor(PhantomData))
    }
}

/// A date as milliseconds since the epoch, from EJSON `{"$date": ms}` (`collections`), an
/// ISO-8601 string or a number (plain JSON of `collectionsCompressed`, spec §3.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Millis(pub(crate) i64);

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MillisVisitor;
        impl<'de> Visitor<'de> for MillisVisitor {
            type Value = Millis;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a date ({"$date": ms}, an ISO-8601 string or ms)"#)
            }
            fn visit_i64<E: de::Error>(self, ms: i64) -> Result<Millis, E> {
                Ok(Millis(ms))
            }
            fn visit_u64<E: de::Error>(self, ms: u64) -> Result<Millis, E> {
                i64::try_from(ms)
                    .map(Millis)
                    .map_err(|_| E::custom("date out of range"))
            }
            fn visit_f64<E: de::Error>(self, ms: f64) -> Result<Millis, E> {
                if ms.is_finite() && ms.abs() < 9.0e15 {
                    Ok(Millis(ms.trunc() as i64))
                } else {
                    Err(E::custom("date out of range"))
                }
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Millis, E> {
                chrono::DateTime::parse_from_rfc3339(text)
                    .map(|date| Millis(date.timestamp_millis()))
                    .map_err(|e| E::custom(format!("`{text}` is not an ISO-8601 date: {e}")))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Millis, A::Error> {
                let mut millis = None;
                while let Some(key) = map.next_key::<Text<'de>>()? {
                    if key.as_str() == "$date" {
                        millis = Some(map.next_value::<Millis>()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                millis.ok_or_else(|| de::Error::custom(r#"a date object needs "$date""#))
            }
        }
        deserializer.deserialize_any(MillisVisitor)
    }
}
