//! The [`Syncer`] page cache in front of the store: prefetched pages, invalidation and its bound.

use std::sync::Arc;

use serde_json::{Value, json};

use super::NewStore;
use crate::Collection;
use crate::page_cache::Syncer;
use crate::record::Record;
use crate::store::CatalogStore;
use crate::sync::{Paging, answer};

fn store_with(new_store: NewStore<'_>, n: usize) -> Arc<dyn CatalogStore> {
    let store = new_store();
    store
        .write(&mut |w| {
            for i in 0..n {
                let text = format!(r#"{{"_id":"p{i}","name":"pkg{i}"}}"#);
                w.upsert(&Record::from_json(Collection::Packages, &text).unwrap())?;
            }
            Ok(())
        })
        .unwrap();
    store
}

fn short() -> Value {
    json!({"shortPagesForTest": true})
}

/// Checks that a prefetched page is served, equals a fresh one, and is one page shared by
/// every client it is served to (what lets the server compress it once).
pub fn a_prefetched_page_is_served_and_equals_a_fresh_one(new_store: NewStore<'_>) {
    let store = store_with(new_store, 7);
    let syncer = Syncer::<Arc<str>>::new(Arc::clone(&store), Paging::default(), 1 << 20);
    let first = syncer.answer(&json!({"format": "1.1"}), &short()).unwrap();
    let next = first.next.clone().expect("more pages");
    syncer.prefetch(&next);
    assert!(syncer.cache_usage().1 > 0, "the next page is cached");

    // The tool sends the token back with its own `_id` (spec §3.4).
    let mut token = next.token.clone();
    token["_id"] = json!("1");
    let cached = syncer.answer(&token, &short()).unwrap();
    let fresh = answer(&*store, &next.token, &short(), &Paging::default()).unwrap();
    assert_eq!(*cached.text, *fresh.text);
    assert_eq!(cached.next.map(|n| n.token), fresh.next.map(|n| n.token));
    let another_client = syncer.answer(&next.token, &short()).unwrap();
    assert!(Arc::ptr_eq(&cached.text, &another_client.text));
}

/// Checks that a write invalidates cached pages.
pub fn a_write_invalidates_cached_pages(new_store: NewStore<'_>) {
    let store = store_with(new_store, 5);
    let syncer = Syncer::<String>::new(Arc::clone(&store), Paging::default(), 1 << 20);
    let first = syncer.answer(&json!({"format": "1.1"}), &short()).unwrap();
    let next = first.next.expect("more pages");
    syncer.prefetch(&next);
    store
        .write(&mut |w| {
            let text = r#"{"_id":"late","name":"late"}"#;
            w.upsert(&Record::from_json(Collection::Packages, text).unwrap())
                .map(|_| ())
        })
        .unwrap();

    let second = syncer.answer(&next.token, &short()).unwrap();
    let page: Value = serde_json::from_str(&second.text).unwrap();
    let names: Vec<&str> = page["collections"]["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["_id"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["p3", "p4", "late"], "read-your-writes (spec §3.6)");
}

/// Checks that the cache stays within its byte bound.
pub fn the_cache_stays_within_its_byte_bound(new_store: NewStore<'_>) {
    let store = store_with(new_store, 30);
    let first_len = answer(&*store, &json!({}), &short(), &Paging::default())
        .unwrap()
        .text
        .len();
    let bound = first_len * 2 + first_len / 2;
    let syncer = Syncer::<String>::new(Arc::clone(&store), Paging::default(), bound);
    let mut next = syncer.answer(&json!({}), &short()).unwrap().next;
    while let Some(call) = next {
        syncer.prefetch(&call);
        assert!(syncer.cache_usage().1 <= bound);
        next = syncer.answer(&call.token, &short()).unwrap().next;
    }
    assert!(syncer.cache_usage().0 <= 2);
}

/// Checks that caching can be turned off.
pub fn caching_can_be_turned_off(new_store: NewStore<'_>) {
    let store = store_with(new_store, 5);
    let syncer = Syncer::<String>::new(store, Paging::default(), 0);
    let first = syncer.answer(&json!({}), &short()).unwrap();
    syncer.prefetch(&first.next.unwrap());
    assert_eq!(syncer.cache_usage().0, 0);
}
