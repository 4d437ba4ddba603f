//! The upstream mirror's rows: its state commits with the records of its transaction, the
//! staged catalog stays invisible to sync clients, and file keys map to upstream files.

use super::store::{all, by_count, record};
use super::{NewStore, with};
use crate::Collection;
use crate::error::StoreError;
use crate::mirror::{Claim, MirrorState, UpstreamFile};
use crate::store::Cursors;

fn state(upstream: &str) -> MirrorState {
    MirrorState {
        upstream: upstream.to_owned(),
        token: Some(r#"{"packages":5}"#.to_owned()),
        staging_token: None,
        held: Some("why".to_owned()),
        last_success_ms: Some(7),
        last_error: Some((8, "down".to_owned())),
        sync_requested_ms: Some(9),
    }
}

/// Checks that the state round-trips, is read outside transactions, and commits or rolls
/// back together with the records written beside it.
pub fn mirror_state_commits_with_the_records(new_store: NewStore<'_>) {
    let store = new_store();
    assert_eq!(store.mirror_state().unwrap(), None);
    with(&*store, |w| {
        assert_eq!(w.mirror().state()?, None);
        w.upsert(&record(Collection::Packages, "p1", "1"))?;
        w.mirror().put_state(&state("http://up"))
    });
    assert_eq!(store.mirror_state().unwrap(), Some(state("http://up")));
    let failed = store.write(&mut |w| {
        w.upsert(&record(Collection::Packages, "p2", "1"))?;
        w.mirror().put_state(&MirrorState {
            token: Some("{}".to_owned()),
            ..state("http://up")
        })?;
        Err(StoreError::Aborted)
    });
    assert!(matches!(failed, Err(StoreError::Aborted)));
    assert_eq!(store.mirror_state().unwrap(), Some(state("http://up")));
    assert_eq!(all(&*store).len(), 1);
    let cleared = MirrorState {
        staging_token: Some("{}".to_owned()),
        held: None,
        last_error: None,
        sync_requested_ms: None,
        ..state("http://other")
    };
    with(&*store, |w| w.mirror().put_state(&cleared));
    assert_eq!(store.mirror_state().unwrap(), Some(cleared));
}

/// Checks that staged records change no page, counter or sequence number, page through in
/// `_id` order, are counted, found and cleared.
pub fn staged_records_are_invisible_and_page_in_id_order(new_store: NewStore<'_>) {
    let store = new_store();
    with(&*store, |w| {
        w.upsert(&record(Collection::Versions, "served", "1"))
    });
    let before = store.state().unwrap();
    with(&*store, |w| {
        for id in ["c", "a", "b"] {
            w.mirror().stage(&record(Collection::Versions, id, "1"))?;
        }
        w.mirror().stage(&record(Collection::Builds, "x", "1"))?;
        // Staging again replaces.
        w.mirror().stage(&record(Collection::Versions, "a", "2"))
    });
    assert_eq!(store.state().unwrap(), before);
    let page = store
        .read_page(&Cursors::default(), &by_count(100))
        .unwrap();
    assert_eq!(page.records[Collection::Versions].len(), 1);
    assert!(page.records[Collection::Builds].is_empty());
    with(&*store, |w| {
        let ids = |batch: Vec<(String, String)>| -> Vec<String> {
            batch.into_iter().map(|(id, _)| id).collect()
        };
        assert_eq!(
            ids(w.mirror().staged(Collection::Versions, "", 2)?),
            ["a", "b"]
        );
        assert_eq!(ids(w.mirror().staged(Collection::Versions, "b", 2)?), ["c"]);
        assert!(w.mirror().staged(Collection::Versions, "c", 2)?.is_empty());
        let (_, text) = w.mirror().staged(Collection::Versions, "", 1)?.remove(0);
        assert!(text.contains(r#""v":2"#), "{text}");
        let staged = w.mirror().staged_counts()?;
        assert_eq!(
            (staged[Collection::Versions], staged[Collection::Builds]),
            (3, 1)
        );
        let served = w.mirror().served_counts()?;
        assert_eq!(
            (served[Collection::Versions], served[Collection::Builds]),
            (1, 0)
        );
        assert!(w.mirror().is_staged(Collection::Builds, "x")?);
        assert!(!w.mirror().is_staged(Collection::Versions, "x")?);
        // Staging still replaces after the stage was read, and after it was emptied.
        w.mirror().stage(&record(Collection::Versions, "a", "3"))?;
        w.mirror().clear_stage()?;
        assert_eq!(w.mirror().staged_counts()?[Collection::Versions], 0);
        w.mirror().stage(&record(Collection::Versions, "a", "4"))?;
        w.mirror().stage(&record(Collection::Versions, "a", "5"))?;
        let staged = w.mirror().staged(Collection::Versions, "", 5)?;
        assert_eq!(staged.len(), 1);
        assert!(staged[0].1.contains(r#""v":5"#), "{}", staged[0].1);
        w.mirror().stage(&record(Collection::Versions, "a", "6"))?;
        assert_eq!(w.mirror().staged_counts()?[Collection::Versions], 1);
        w.mirror().clear_stage()?;
        Ok(())
    });
    assert_eq!(store.state().unwrap(), before);
}

/// Checks that a staged catalog moves into a served catalog without records as upserting each
/// record in the order staged would, and that a served record or a shared natural key stops
/// it.
pub fn a_stage_moves_into_an_empty_catalog_as_upserts_would(new_store: NewStore<'_>) {
    let named = |c: Collection, id: &str, fields: &str| {
        crate::Record::from_json(
            c,
            &format!(r#"{{"_id":"{id}",{fields},"lastUpdated":{{"$date":7}}}}"#),
        )
        .unwrap()
    };
    let staged = [
        named(Collection::Packages, "p2", r#""name":"b""#),
        named(Collection::Packages, "p1", r#""name":"a""#),
        named(
            Collection::Versions,
            "v1",
            r#""packageName":"a","version":"1.0.0""#,
        ),
        named(
            Collection::Versions,
            "v2",
            r#""packageName":"a","version":"2.0.0""#,
        ),
        record(Collection::Builds, "b1", "1"),
        named(
            Collection::ReleaseVersions,
            "r1",
            r#""track":"T","version":"1""#,
        ),
    ];
    // The same records upserted one by one, collection by collection in the order staged.
    let expected = new_store();
    let mut sorted = staged.to_vec();
    sorted.sort_by_key(crate::Record::collection);
    with(&*expected, |w| {
        for r in &sorted {
            w.upsert(r)?;
        }
        Ok(())
    });
    let store = new_store();
    with(&*store, |w| {
        for r in &staged {
            w.mirror().stage(r)?;
        }
        assert_eq!(w.mirror().serve_stage()?, Some(6));
        assert_eq!(w.mirror().staged_counts()?[Collection::Packages], 0);
        Ok(())
    });
    assert_eq!(all(&*store), all(&*expected));
    let (moved, wanted) = (store.state().unwrap(), expected.state().unwrap());
    assert_eq!(
        (moved.head_seq, moved.change_counters),
        (wanted.head_seq, wanted.change_counters)
    );

    // A record staged twice moves once, where it was staged last.
    let store = new_store();
    let expected = new_store();
    let again = named(Collection::Packages, "p1", r#""name":"c""#);
    with(&*expected, |w| {
        w.upsert(&staged[0])?;
        w.upsert(&again)
    });
    with(&*store, |w| {
        for r in [&staged[1], &staged[0], &again] {
            w.mirror().stage(r)?;
        }
        assert_eq!(w.mirror().serve_stage()?, Some(2));
        Ok(())
    });
    assert_eq!(all(&*store), all(&*expected));
    assert_eq!(
        store.state().unwrap().change_counters,
        expected.state().unwrap().change_counters
    );

    // Not into a catalog that serves a record: the stage stays as it was.
    with(&*store, |w| {
        w.mirror().stage(&record(Collection::Builds, "b2", "1"))?;
        assert_eq!(w.mirror().serve_stage()?, None);
        assert_eq!(w.mirror().staged_counts()?[Collection::Builds], 1);
        Ok(())
    });
    // Not two records of one name: nothing moves, and nothing is counted.
    let store = new_store();
    let before = store.state().unwrap();
    with(&*store, |w| {
        w.mirror()
            .stage(&named(Collection::Packages, "p1", r#""name":"a""#))?;
        w.mirror()
            .stage(&named(Collection::Packages, "p2", r#""name":"a""#))?;
        assert_eq!(w.mirror().serve_stage()?, None);
        assert_eq!(w.mirror().staged_counts()?[Collection::Packages], 2);
        Ok(())
    });
    assert_eq!(store.state().unwrap(), before);
    assert!(all(&*store).is_empty());
}

/// Checks that file keys map to their upstream file, replaced by a later entry.
pub fn mirror_files_map_keys_to_upstream_files(new_store: NewStore<'_>) {
    let store = new_store();
    assert_eq!(store.mirror_file("mirror/a/b.tgz").unwrap(), None);
    let file = |url: &str, sha256: Option<&str>| UpstreamFile {
        url: url.to_owned(),
        sha256: sha256.map(str::to_owned),
    };
    with(&*store, |w| {
        w.mirror()
            .put_file("mirror/a/b.tgz", &file("http://up/b.tgz", Some("aGFzaA==")))
    });
    assert_eq!(
        store.mirror_file("mirror/a/b.tgz").unwrap(),
        Some(file("http://up/b.tgz", Some("aGFzaA==")))
    );
    // An entry with a hash never changes.
    with(&*store, |w| {
        w.mirror()
            .put_file("mirror/a/b.tgz", &file("http://up2/b.tgz", None))?;
        w.mirror()
            .put_file("mirror/a/b.tgz", &file("http://up/b.tgz", Some("b3RoZXI=")))
    });
    assert_eq!(
        store.mirror_file("mirror/a/b.tgz").unwrap(),
        Some(file("http://up/b.tgz", Some("aGFzaA==")))
    );
    with(&*store, |w| {
        w.mirror()
            .put_file("mirror/a/a.tgz", &file("http://up/a.tgz", None))?;
        w.mirror()
            .put_file("mirror/b/c.tgz", &file("http://up/c.tgz", None))
    });
    let keys = |after: &str| -> Vec<String> {
        store
            .mirror_files(after, 2)
            .unwrap()
            .into_iter()
            .map(|(key, _)| key)
            .collect()
    };
    assert_eq!(keys(""), ["mirror/a/a.tgz", "mirror/a/b.tgz"]);
    assert_eq!(store.mirror_cached().unwrap(), (0, 0));
    with(&*store, |w| {
        w.mirror().mark_cached("mirror/a/a.tgz", Some(10))?;
        w.mirror().mark_cached("mirror/b/c.tgz", Some(5))
    });
    assert_eq!(store.mirror_cached().unwrap(), (2, 15));
    with(&*store, |w| {
        // A key without a hash gets one: its cached file, never checked, is no longer
        // counted.
        w.mirror()
            .put_file("mirror/b/c.tgz", &file("http://up/c.tgz", Some("bmV3")))?;
        w.mirror().mark_cached("mirror/a/a.tgz", None)
    });
    assert_eq!(store.mirror_cached().unwrap(), (0, 0));
    assert_eq!(keys("mirror/a/b.tgz"), ["mirror/b/c.tgz"]);
    assert!(keys("mirror/b/c.tgz").is_empty());
}

/// Checks that staged file entries name no file until served, then are what `put_file` of
/// each in the order staged gives (the first hash of a key stays, a cached file whose hash
/// stays is still counted), and that clearing the stage drops them.
pub fn staged_files_take_effect_when_served(new_store: NewStore<'_>) {
    let store = new_store();
    let file = |url: &str, sha256: &str| UpstreamFile {
        url: url.to_owned(),
        sha256: Some(sha256.to_owned()),
    };
    with(&*store, |w| {
        w.mirror()
            .put_file("mirror/k/kept.tgz", &file("http://up/kept.tgz", "a2VwdA=="))?;
        w.mirror().mark_cached("mirror/k/kept.tgz", Some(4))?;
        w.mirror()
            .stage_file("mirror/k/kept.tgz", &file("http://up/kept.tgz", "a2VwdA=="))?;
        w.mirror()
            .stage_file("mirror/b/new.tgz", &file("http://up/old.tgz", "b2xk"))?;
        w.mirror()
            .stage_file("mirror/a/new.tgz", &file("http://up/a.tgz", "YQ=="))?;
        w.mirror()
            .stage_file("mirror/b/new.tgz", &file("http://up/new.tgz", "bmV3"))
    });
    assert_eq!(store.mirror_file("mirror/b/new.tgz").unwrap(), None);
    assert_eq!(store.mirror_files("", 10).unwrap().len(), 1);
    with(&*store, |w| w.mirror().serve_staged_files());
    assert_eq!(
        store.mirror_file("mirror/b/new.tgz").unwrap(),
        Some(file("http://up/old.tgz", "b2xk"))
    );
    assert_eq!(
        store.mirror_file("mirror/a/new.tgz").unwrap(),
        Some(file("http://up/a.tgz", "YQ=="))
    );
    assert_eq!(store.mirror_cached().unwrap(), (1, 4));
    // Served once: serving again changes nothing.
    with(&*store, |w| w.mirror().serve_staged_files());
    assert_eq!(
        store.mirror_file("mirror/a/new.tgz").unwrap(),
        Some(file("http://up/a.tgz", "YQ=="))
    );
    with(&*store, |w| {
        w.mirror()
            .stage_file("mirror/c/gone.tgz", &file("http://up/c.tgz", "Yw=="))?;
        w.mirror().clear_stage()?;
        w.mirror().serve_staged_files()
    });
    assert_eq!(store.mirror_file("mirror/c/gone.tgz").unwrap(), None);
}

/// Checks that claims are kept once, listed in order and told apart by kind.
pub fn claims_are_kept_by_kind_and_name(new_store: NewStore<'_>) {
    let store = new_store();
    with(&*store, |w| {
        assert!(w.mirror().claims()?.is_empty());
        w.mirror().claim(&Claim::Track("METEOR".to_owned()))?;
        w.mirror().claim(&Claim::Package("mongo".to_owned()))?;
        w.mirror().claim(&Claim::Package("mongo".to_owned()))?;
        assert!(w.mirror().is_claimed(&Claim::Package("mongo".to_owned()))?);
        assert!(!w.mirror().is_claimed(&Claim::Track("mongo".to_owned()))?);
        assert_eq!(
            w.mirror().claims()?,
            [
                Claim::Package("mongo".to_owned()),
                Claim::Track("METEOR".to_owned())
            ]
        );
        Ok(())
    });
}
