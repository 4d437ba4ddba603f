//! The account and publishing rows of a write transaction, and upload tickets read outside one.

use super::{NewStore, with};
use crate::accounts::{Org, Pending, PendingKind, Token, Upload, UploadState, User};

/// Checks that accounts tokens uploads and pending publishes round trip.
pub fn accounts_tokens_uploads_and_pending_publishes_round_trip(new_store: NewStore<'_>) {
    let store = new_store();
    let alice = User {
        id: "u1".into(),
        username: "alice".into(),
        admin: false,
    };
    let org = Org {
        id: "o1".into(),
        name: "acme".into(),
    };
    let upload = Upload {
        staging: "uploads/x".into(),
        destination: "packages/a/1.0.0/s.tgz".into(),
        max_size: 10,
        expires: 1_000,
        state: UploadState::Received {
            size: 3,
            sha256: "h".into(),
        },
    };
    let pending = Pending {
        kind: PendingKind::Build,
        subject: "a@1.0.0 os".into(),
        user_id: "u1".into(),
        record: "{}".into(),
        uploads: vec!["t1".into(), "t2".into()],
        expires: 1_000,
    };
    with(&*store, |w| {
        let a = w.accounts();
        a.insert_user(&alice)?;
        a.insert_org(&org)?;
        a.add_org_member("o1", "u1")?;
        a.add_org_member("o1", "u1")?;
        a.insert_token(&Token {
            id: "k1".into(),
            hash: "hash".into(),
            user_id: "u1".into(),
            created: 1,
            expires: 2,
        })?;
        a.put_upload("t1", &upload)?;
        a.put_pending("p1", &pending)?;
        Ok(())
    });
    with(&*store, |w| {
        let a = w.accounts();
        assert_eq!(a.user_by_name("alice")?, Some(alice.clone()));
        assert_eq!(a.user_by_id("u1")?, Some(alice.clone()));
        assert_eq!(a.org_by_name("acme")?, Some(org.clone()));
        assert!(a.is_org_member("o1", "u1")?);
        assert!(!a.is_org_member("o1", "u2")?);
        assert_eq!(a.org_members("o1")?, ["alice"]);
        assert_eq!(
            a.token_by_hash("hash")?.map(|t| t.id),
            Some("k1".to_owned())
        );
        assert_eq!(a.tokens(Some("u2"))?, []);
        assert_eq!(a.upload("t1")?, Some(upload.clone()));
        assert_eq!(a.pending("p1")?, Some(pending.clone()));
        assert_eq!(a.pending_for(PendingKind::Build, "a@1.0.0 os")?, ["p1"]);
        assert_eq!(
            a.pending_for(PendingKind::Version, "a@1.0.0 os")?,
            Vec::<String>::new()
        );
        assert_eq!(a.open_pending_of("u1", 999)?, 1);
        assert_eq!(a.open_pending_of("u1", 1_000)?, 0, "expired at 1000");
        assert_eq!(a.open_pending_of("u2", 999)?, 0);
        a.delete_expired_pending(999)?;
        assert_eq!(a.expired_uploads(999, 10)?, []);
        assert!(a.pending("p1")?.is_some());
        a.delete_expired_pending(1_001)?;
        assert_eq!(a.pending("p1")?, None);
        assert_eq!(
            a.expired_uploads(2, 10)?,
            [("t1".into(), "uploads/x".into())]
        );
        a.delete_upload("t1")?;
        assert_eq!(a.upload("t1")?, None);
        a.put_upload("t2", &upload)?;
        a.retire_upload("t2")?;
        assert_eq!(
            a.expired_uploads(1, 10)?,
            [("t2".into(), "uploads/x".into())]
        );
        assert_eq!(a.expired_uploads(1, 0)?, []);
        Ok(())
    });
    // Revoking a token withdraws its user's unfinished publishes, not other users'.
    with(&*store, |w| {
        let a = w.accounts();
        a.put_upload(
            "t3",
            &Upload {
                expires: 5_000,
                ..upload.clone()
            },
        )?;
        a.put_pending(
            "p3",
            &Pending {
                uploads: vec!["t3".into()],
                expires: 5_000,
                ..pending.clone()
            },
        )?;
        a.put_pending(
            "p4",
            &Pending {
                user_id: "u2".into(),
                uploads: vec![],
                expires: 5_000,
                ..pending.clone()
            },
        )?;
        assert_eq!(a.revoke_token("k1")?, Some(1));
        assert_eq!(a.revoke_token("k1")?, None);
        assert_eq!(a.token_by_hash("hash")?, None);
        assert_eq!(a.pending("p3")?, None);
        assert!(a.pending("p4")?.is_some());
        assert!(
            a.expired_uploads(1, 10)?
                .contains(&("t3".into(), "uploads/x".into())),
            "the withdrawn publish's ticket is retired"
        );
        Ok(())
    });
    // Account rows are not records: nothing was synced.
    assert_eq!(store.state().unwrap().head_seq, 0);
}

/// A pending publish of `user`'s version 1.0.0 listing the upload tickets `uploads`,
/// expiring at `expires` (ms); shared with backends' own tests.
pub fn pending_publish(user: &str, uploads: &[&str], expires: i64) -> Pending {
    Pending {
        kind: PendingKind::Version,
        subject: format!("{user}@1.0.0"),
        user_id: user.into(),
        record: "{}".into(),
        uploads: uploads.iter().map(|&hash| hash.to_owned()).collect(),
        expires,
    }
}

/// Checks that upload tickets are read with their owner and receiving ones reopen.
pub fn upload_tickets_are_read_with_their_owner_and_receiving_ones_reopen(new_store: NewStore<'_>) {
    let store = new_store();
    let ticket = |state| Upload {
        staging: "uploads/x".into(),
        destination: "packages/a/1.0.0/s.tgz".into(),
        max_size: 10,
        expires: 1_000,
        state,
    };
    let pending = |user: &str, uploads: &[&str]| pending_publish(user, uploads, 1_000);
    with(&*store, |w| {
        let a = w.accounts();
        a.put_upload("t1", &ticket(UploadState::Receiving))?;
        a.put_upload("t11", &ticket(UploadState::Open))?;
        a.put_upload("t2", &ticket(UploadState::Receiving))?;
        a.put_upload("orphan", &ticket(UploadState::Open))?;
        a.put_pending("p1", &pending("u1", &["t0", "t1"]))?;
        a.put_pending("p2", &pending("u2", &["t11", "t2"]))?;
        Ok(())
    });
    let owner = |hash: &str| {
        store
            .upload_ticket(hash)
            .unwrap()
            .map(|found| (found.user_id, found.upload.state))
    };
    // A ticket's hash must match a whole entry of the list, not a part of one.
    assert_eq!(owner("t1"), Some(("u1".into(), UploadState::Receiving)));
    assert_eq!(owner("t11"), Some(("u2".into(), UploadState::Open)));
    assert_eq!(owner("t2"), Some(("u2".into(), UploadState::Receiving)));
    assert_eq!(owner("orphan"), None, "no pending publish lists it");
    assert_eq!(owner("missing"), None);
    let reopened = with(&*store, |w| w.accounts().reopen_abandoned_uploads());
    assert_eq!(reopened, 2);
    assert_eq!(owner("t1"), Some(("u1".into(), UploadState::Open)));
    assert_eq!(owner("t2"), Some(("u2".into(), UploadState::Open)));
}

/// Checks that a put ends only the ticket it claimed.
pub fn a_put_ends_only_the_ticket_it_claimed(new_store: NewStore<'_>) {
    let store = new_store();
    let ticket = |state| Upload {
        staging: "uploads/x".into(),
        destination: "packages/a/1.0.0/s.tgz".into(),
        max_size: 10,
        expires: 1_000,
        state,
    };
    let received = UploadState::Received {
        size: 3,
        sha256: "h".into(),
    };
    with(&*store, |w| {
        let a = w.accounts();
        for hash in ["claimed", "retired", "late"] {
            a.put_upload(hash, &ticket(UploadState::Open))?;
            a.start_receiving(hash, "s1")?;
        }
        a.retire_upload("retired")?;
        a.put_upload("open", &ticket(UploadState::Open))?;
        assert!(a.end_receiving("claimed", "s1", &received, 999)?);
        assert_eq!(a.upload("claimed")?, Some(ticket(received.clone())));
        assert!(!a.end_receiving("retired", "s1", &received, 999)?);
        assert!(!a.end_receiving("retired", "s1", &UploadState::Open, 999)?);
        let retired = a.upload("retired")?.unwrap();
        assert_eq!(
            (retired.expires, retired.state),
            (0, UploadState::Receiving),
            "a retired ticket stays retired"
        );
        assert!(
            !a.end_receiving("late", "s1", &received, 1_000)?,
            "expired at 1000"
        );
        assert!(!a.end_receiving("open", "s1", &received, 999)?);
        assert_eq!(a.upload("open")?, Some(ticket(UploadState::Open)));
        assert!(!a.end_receiving("swept", "s1", &received, 999)?);
        assert_eq!(
            a.upload("swept")?,
            None,
            "a deleted ticket is not re-created"
        );
        Ok(())
    });
}

/// Checks that a server reopens its receiving marks whose bodies it no longer receives,
/// and only those.
pub fn a_server_reopens_its_receiving_marks_it_holds_no_slot_for(new_store: NewStore<'_>) {
    let store = new_store();
    let ticket = Upload {
        staging: "uploads/x".into(),
        destination: "packages/a/1.0.0/s.tgz".into(),
        max_size: 10,
        expires: 1_000,
        state: UploadState::Open,
    };
    with(&*store, |w| {
        let a = w.accounts();
        for hash in ["arriving", "stale", "open"] {
            a.put_upload(hash, &ticket)?;
        }
        a.start_receiving("arriving", "s1")?;
        a.start_receiving("stale", "s1")?;
        assert_eq!(a.reopen_unheld_uploads("s1", &["arriving".to_owned()])?, 1);
        for (hash, state) in [
            ("arriving", UploadState::Receiving),
            ("stale", UploadState::Open),
            ("open", UploadState::Open),
        ] {
            assert_eq!(
                a.upload(hash)?.map(|found| found.state),
                Some(state),
                "{hash}"
            );
        }
        a.start_receiving("stale", "s1")?;
        assert!(
            a.end_receiving("stale", "s1", &UploadState::Open, 999)?,
            "a reopened URL takes a body again"
        );
        Ok(())
    });
}
