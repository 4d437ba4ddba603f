//! Published versions and builds keep their content: the store refuses a write that would
//! change it ([`crate::immutable`]) and keeps what it held.

use super::{NewStore, with};
use crate::Collection;
use crate::error::StoreError;
use crate::record::Record;
use crate::store::Upsert;

const PUBLISHED: &str = r#"{"_id":"v","packageName":"a:b","version":"1.0.0","description":"old","source":{"url":"https://h/a.tgz","tarballHash":"h1","treeHash":"t1"},"dependencies":{"meteor":{"constraint":null}},"published":{"$date":1}}"#;
const BUILD: &str = r#"{"_id":"b","versionId":"v","buildArchitectures":"os","build":{"url":"https://h/b.tgz","tarballHash":"h2"},"lastUpdated":{"$date":1}}"#;

fn rec(c: Collection, json: &str) -> Record {
    Record::from_json(c, json).unwrap()
}

/// A published version's metadata changes; its source, hashes and dependencies, and a
/// published build's file, are refused with [`StoreError::Immutable`], deleting either
/// with [`StoreError::PublishedDeletion`], a second record of its `name@version` with
/// [`StoreError::PublishedVersionTaken`], and a refused transaction leaves the store as it
/// was.
pub fn published_versions_and_builds_keep_their_content(new_store: NewStore<'_>) {
    let store = new_store();
    with(&*store, |w| {
        w.upsert(&rec(Collection::Versions, PUBLISHED))?;
        w.upsert(&rec(Collection::Builds, BUILD))
    });
    let described = PUBLISHED.replace(r#""old""#, r#""new""#);
    let upsert = with(&*store, |w| {
        w.upsert(&rec(Collection::Versions, &described))
    });
    assert_eq!(
        upsert,
        Upsert::Updated,
        "description is metadata (spec §5.9)"
    );
    let head = store.state().unwrap().head_seq;

    let changes = [
        (
            Collection::Versions,
            described.replace("h1", "h9"),
            "source",
        ),
        (
            Collection::Versions,
            described.replace(r#""meteor""#, r#""evil""#),
            "dependencies",
        ),
        (
            Collection::Versions,
            described.replace(r#""a:b""#, r#""a:c""#),
            "packageName",
        ),
        (Collection::Builds, BUILD.replace("h2", "h9"), "build"),
        (
            Collection::Builds,
            BUILD.replace(r#""os""#, r#""web.browser""#),
            "buildArchitectures",
        ),
    ];
    for (collection, json, expected) in changes {
        let refused = store
            .write(&mut |w| {
                w.upsert(&rec(Collection::Packages, r#"{"_id":"p","name":"a:b"}"#))?;
                w.upsert(&rec(collection, &json)).map(|_| ())
            })
            .unwrap_err();
        match refused {
            StoreError::Immutable { field, .. } => assert_eq!(field, expected),
            other => panic!("{expected}: expected Immutable, got {other}"),
        }
        assert_eq!(store.state().unwrap().head_seq, head, "nothing was written");
    }
    let kept = with(&*store, |w| w.get(Collection::Versions, "v"));
    assert_eq!(kept.as_deref(), Some(described.as_str()));
    let kept = with(&*store, |w| w.get(Collection::Builds, "b"));
    assert_eq!(kept.as_deref(), Some(BUILD));

    for (collection, id) in [(Collection::Versions, "v"), (Collection::Builds, "b")] {
        let refused = store
            .write(&mut |w| w.delete(collection, id).map(|_| ()))
            .unwrap_err();
        assert!(
            matches!(refused, StoreError::PublishedDeletion { .. }),
            "{refused}"
        );
    }
    let state = store.state().unwrap();
    assert_eq!(state.head_seq, head, "nothing was deleted");
    assert!(with(&*store, |w| w.get(Collection::Versions, "v")).is_some());

    // Nor does a second record take the published `a:b@1.0.0` under another `_id`.
    let twin = PUBLISHED.replace(r#""_id":"v""#, r#""_id":"twin""#);
    let refused = store
        .write(&mut |w| w.upsert(&rec(Collection::Versions, &twin)).map(|_| ()))
        .unwrap_err();
    assert!(
        matches!(&refused, StoreError::PublishedVersionTaken { published, .. } if published == "v"),
        "{refused}"
    );
    assert_eq!(store.state().unwrap().head_seq, head, "nothing was added");
    // Not even with `version` named twice: the stores index the first of repeated fields.
    let repeated = twin.replace(
        r#""version":"1.0.0""#,
        r#""version":"1.0.0","version":"9.9.9""#,
    );
    let refused = store
        .write(&mut |w| w.upsert(&rec(Collection::Versions, &repeated)).map(|_| ()))
        .unwrap_err();
    assert!(
        matches!(&refused, StoreError::PublishedVersionTaken { published, .. } if published == "v"),
        "{refused}"
    );
    assert_eq!(store.state().unwrap().head_seq, head, "nothing was added");
    // Another version of the package is a new version.
    let next = twin.replace(r#""1.0.0""#, r#""1.0.1""#);
    with(&*store, |w| w.upsert(&rec(Collection::Versions, &next)));
}
