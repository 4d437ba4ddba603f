//! Published versions and builds never change their content: the store refuses any write
//! that would, whoever makes it.
//!
//! A client that synced `name@version` once trusts that its tarball, hashes and
//! dependencies are what every later client gets (the tool caches them for good), so a
//! published version's files and dependencies are fixed. Only the metadata the publishing
//! methods may change stays writable ([`VERSION_METADATA`]: spec §5.9's `git`,
//! `description` and `longDescription`, §5.10's `readme`, and the `unmigrated` flag of
//! `_changeVersionMigrationStatus`), plus `lastUpdated`, which every change bumps. A
//! published build may change nothing but `lastUpdated`. Nor may either be deleted (a
//! deletion followed by an insert would change it all), nor may a new version record take a
//! published version's `name@version` under another `_id`. Backends call [`check_upsert`]
//! before they insert or replace a record and [`check_deletion`] before they delete one,
//! which refuse with [`StoreError::Immutable`], [`StoreError::PublishedVersionTaken`] or
//! [`StoreError::PublishedDeletion`]; which stored texts each decision reads is decided here
//! once, for every backend.

use std::borrow::Cow;

use exosphere_meteor::Collection;
use serde_json::{Map, Value};

use crate::error::StoreError;
use crate::record::Record;
use crate::store::{CatalogWriter, Lookup, Upsert, natural_key};

/// The fields of a published version that may still change.
pub const VERSION_METADATA: [&str; 6] = [
    "git",
    "description",
    "longDescription",
    "readme",
    "unmigrated",
    "lastUpdated",
];

/// The fields of a published build that may still change.
const BUILD_METADATA: [&str; 1] = ["lastUpdated"];

/// Whether a stored record is a published version or build, whose content is fixed: a
/// version with a `source` or a `published` date, a build with a `build` file or a
/// `buildPublished` date (how the publishing methods and the tool recognise them).
fn is_published(collection: Collection, record: &Map<String, Value>) -> bool {
    let has = |key: &str| record.get(key).is_some_and(|value| !value.is_null());
    match collection {
        Collection::Versions => has("source") || has("published"),
        Collection::Builds => has("build") || has("buildPublished"),
        _ => false,
    }
}

/// What an upsert of `record` does, given what is stored under its `_id` (`stored`: `None`
/// when nothing is, else whether the stored text equals the record's), refusing one that
/// would change a published version or build or take a published `name@version`. The
/// stored texts a decision needs are read through `writer`, the upsert's own transaction,
/// and only for the collections whose content may be fixed; the backend then carries out
/// the [`Upsert`] returned.
pub fn check_upsert(
    writer: &mut dyn CatalogWriter,
    record: &Record,
    stored: Option<bool>,
) -> Result<Upsert, StoreError> {
    let c = record.collection();
    match stored {
        Some(true) => Ok(Upsert::Unchanged),
        Some(false) => {
            if matches!(c, Collection::Versions | Collection::Builds) {
                let old = writer.get(c, record.id())?.unwrap_or_default();
                check_update(c, record.id(), &old, record.json())?;
            }
            Ok(Upsert::Updated)
        }
        None => {
            // The key as the stores index it (`natural_key`: the first of repeated fields,
            // strings only), so a record repeating `version` cannot slip past a published
            // one that lookups would find under the same key.
            if c == Collection::Versions
                && let [Some(package), Some(version)] = natural_key(c, record.json())
            {
                let same_key = writer.find(&Lookup::Version {
                    package: &package,
                    version: &version,
                })?;
                check_insert(record.id(), &package, &version, &same_key)?;
            }
            Ok(Upsert::Inserted)
        }
    }
}

/// Refuses deleting the record `id` of `collection` when it is a published version or
/// build, reading its text through `writer` (the deletion's own transaction) for those
/// collections only.
pub fn check_deletion(
    writer: &mut dyn CatalogWriter,
    collection: Collection,
    id: &str,
) -> Result<(), StoreError> {
    if matches!(collection, Collection::Versions | Collection::Builds)
        && let Some(old) = writer.get(collection, id)?
    {
        check_delete(collection, id, &old)?;
    }
    Ok(())
}

/// A version record's `packageName` and `version`, borrowed from its text where it has no
/// escapes.
pub type VersionKey<'a> = (Cow<'a, str>, Cow<'a, str>);

/// The `packageName` and `version` a version record's text names, read without building
/// the rest of the record (every imported version goes through it): `Some` when both are
/// strings, `None` when either is missing or null, and an error when the text names either
/// otherwise (a number, an object), repeats either, or is not an object: the bulk import's
/// check (`bulk::import_dump`), which leaves every such record to the upserts. The upserts'
/// own check keys a record as the stores index it ([`natural_key`]).
pub fn version_key(text: &str) -> Result<Option<VersionKey<'_>>, serde_json::Error> {
    #[derive(serde::Deserialize)]
    struct Key<'a> {
        #[serde(rename = "packageName", borrow, default)]
        package: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        version: Option<Cow<'a, str>>,
    }
    let key: Key<'_> = serde_json::from_str(text)?;
    Ok(key.package.zip(key.version))
}

/// Checks that a new version record `id` of `package@version` may be added beside `same_key`,
/// the stored texts of the version records of that name: none of them is published (a second
/// record would make clients see two versions of one name, one of them not the published
/// one).
fn check_insert(
    id: &str,
    package: &str,
    version: &str,
    same_key: &[String],
) -> Result<(), StoreError> {
    for text in same_key {
        let Ok(Value::Object(record)) = serde_json::from_str::<Value>(text) else {
            continue;
        };
        if is_published(Collection::Versions, &record) {
            let published = record
                .get("_id")
                .and_then(Value::as_str)
                .unwrap_or_default();
            return Err(StoreError::PublishedVersionTaken {
                id: id.to_owned(),
                name: format!("{package}@{version}"),
                published: published.to_owned(),
            });
        }
    }
    Ok(())
}

/// Checks that the record `id`, whose stored text is `old`, may be deleted: not a published
/// version or build.
fn check_delete(collection: Collection, id: &str, old: &str) -> Result<(), StoreError> {
    let published = matches!(
        serde_json::from_str::<Value>(old),
        Ok(Value::Object(record)) if is_published(collection, &record)
    );
    if published {
        return Err(StoreError::PublishedDeletion {
            collection,
            id: id.to_owned(),
        });
    }
    Ok(())
}

/// Checks that replacing the stored text `old` of record `id` with `new` changes no fixed
/// field of a published version or build; any other record may change freely.
fn check_update(collection: Collection, id: &str, old: &str, new: &str) -> Result<(), StoreError> {
    let mutable: &[&str] = match collection {
        Collection::Versions => &VERSION_METADATA,
        Collection::Builds => &BUILD_METADATA,
        _ => return Ok(()),
    };
    let parse = |text: &str| match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(StoreError::Corrupt(format!(
            "the {collection} record {id} is not a JSON object"
        ))),
    };
    let (old, new) = (parse(old)?, parse(new)?);
    if !is_published(collection, &old) {
        return Ok(());
    }
    let changed = old
        .keys()
        .chain(new.keys())
        .filter(|key| !mutable.contains(&key.as_str()))
        .find(|key| old.get(*key) != new.get(*key));
    match changed {
        None => Ok(()),
        Some(field) => Err(StoreError::Immutable {
            collection,
            id: id.to_owned(),
            field: field.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERSION: &str = r#"{"_id":"v","packageName":"a:b","version":"1.0.0","source":{"url":"u","tarballHash":"h"},"dependencies":{},"description":"old"}"#;

    #[test]
    fn metadata_of_a_published_version_may_change_but_not_its_content() {
        let described = VERSION.replace(r#""old""#, r#""new""#);
        assert!(check_update(Collection::Versions, "v", VERSION, &described).is_ok());
        let readme = VERSION.replace(
            r#""dependencies""#,
            r#""readme":{"url":"r"},"dependencies""#,
        );
        assert!(check_update(Collection::Versions, "v", VERSION, &readme).is_ok());
        let moved = VERSION.replace(r#""h""#, r#""other""#);
        let refused = check_update(Collection::Versions, "v", VERSION, &moved).unwrap_err();
        assert!(
            matches!(&refused, StoreError::Immutable { field, .. } if field == "source"),
            "{refused}"
        );
        let depends = VERSION.replace(r#"{}"#, r#"{"x":{}}"#);
        assert!(check_update(Collection::Versions, "v", VERSION, &depends).is_err());
        let dropped = VERSION.replace(r#","dependencies":{}"#, "");
        assert!(check_update(Collection::Versions, "v", VERSION, &dropped).is_err());
    }

    #[test]
    fn unpublished_records_and_other_collections_change_freely() {
        let draft = r#"{"_id":"v","packageName":"a:b","version":"1.0.0"}"#;
        let changed = r#"{"_id":"v","packageName":"a:b","version":"2.0.0"}"#;
        assert!(check_update(Collection::Versions, "v", draft, changed).is_ok());
        assert!(check_update(Collection::Packages, "v", VERSION, changed).is_ok());
        let build = r#"{"_id":"b","build":{"url":"u"},"lastUpdated":1}"#;
        let bumped = r#"{"_id":"b","build":{"url":"u"},"lastUpdated":2}"#;
        assert!(check_update(Collection::Builds, "b", build, bumped).is_ok());
        let moved = r#"{"_id":"b","build":{"url":"x"},"lastUpdated":2}"#;
        assert!(check_update(Collection::Builds, "b", build, moved).is_err());
    }

    #[test]
    fn a_published_name_at_version_cannot_be_added_again() {
        assert_eq!(
            version_key(VERSION).unwrap(),
            Some((Cow::from("a:b"), Cow::from("1.0.0")))
        );
        assert_eq!(version_key(r#"{"packageName":"a:b"}"#).unwrap(), None);
        assert!(version_key(r#"{"packageName":"a:b","version":1}"#).is_err());
        let draft = r#"{"_id":"d","packageName":"a:b","version":"1.0.0"}"#.to_owned();
        assert!(check_insert("n", "a:b", "1.0.0", std::slice::from_ref(&draft)).is_ok());
        let refused = check_insert("n", "a:b", "1.0.0", &[draft, VERSION.to_owned()]).unwrap_err();
        assert!(
            matches!(&refused, StoreError::PublishedVersionTaken { published, .. } if published == "v"),
            "{refused}"
        );
    }

    #[test]
    fn published_versions_and_builds_cannot_be_deleted() {
        let refused = check_delete(Collection::Versions, "v", VERSION).unwrap_err();
        assert!(
            matches!(refused, StoreError::PublishedDeletion { .. }),
            "{refused}"
        );
        let build = r#"{"_id":"b","build":{"url":"u"}}"#;
        assert!(check_delete(Collection::Builds, "b", build).is_err());
        let draft = r#"{"_id":"v","packageName":"a:b","version":"1.0.0"}"#;
        assert!(check_delete(Collection::Versions, "v", draft).is_ok());
        assert!(check_delete(Collection::Packages, "p", VERSION).is_ok());
    }
}
