//! `syncNewPackageData` paging on the store: tokens, resets, short pages and compression.

use std::io::Read;

use base64::Engine;
use serde_json::{Value, json};

use super::NewStore;
use crate::Collection;
use crate::record::Record;
use crate::store::CatalogStore;
use crate::sync::{Paging, SyncError, sync_new_package_data};

fn put(store: &dyn CatalogStore, c: Collection, docs: &[String]) {
    store
        .write(&mut |w| {
            for doc in docs {
                w.upsert(&Record::from_json(c, doc).unwrap())?;
            }
            Ok(())
        })
        .unwrap();
}

fn versions(n: usize, ms: i64) -> Vec<String> {
    (0..n)
        .map(|i| format!(r#"{{"_id":"v{i}","version":"1.0.{i}","lastUpdated":{{"$date":{ms}}}}}"#))
        .collect()
}

fn call(store: &dyn CatalogStore, token: &Value, options: &Value) -> Value {
    let text = sync_new_package_data(store, token, options, &Paging::default()).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The collections object of a result, plain or compressed (spec §3.7).
fn collections(result: &Value) -> Value {
    let Some(compressed) = result.get("collectionsCompressed") else {
        return result["collections"].clone();
    };
    let gz = base64::engine::general_purpose::STANDARD
        .decode(compressed.as_str().unwrap())
        .unwrap();
    let mut plain = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut plain)
        .unwrap();
    serde_json::from_str(&plain).unwrap()
}

fn ids(result: &Value, c: Collection) -> Vec<String> {
    result["collections"][c.as_str()]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Checks that empty store answers all five arrays and a token.
pub fn empty_store_answers_all_five_arrays_and_a_token(new_store: NewStore<'_>) {
    let store = new_store();
    let text = sync_new_package_data(
        &*store,
        &json!({"format":"1.1"}),
        &json!({}),
        &Paging::default(),
    )
    .unwrap();
    let epoch = store.state().unwrap().epoch;
    assert_eq!(
        text,
        format!(
            "{{\"syncToken\":{{\"format\":\"1.1\",\
             \"epoch\":\"{epoch}\",\"packages\":0,\"packagesSeq\":0,\"versions\":0,\"versionsSeq\":0,\
             \"builds\":0,\"buildsSeq\":0,\"releaseTracks\":0,\"releaseTracksSeq\":0,\
             \"releaseVersions\":0,\"releaseVersionsSeq\":0}},\"upToDate\":true,\"resetData\":false,\
             \"collections\":{{\"packages\":[],\"versions\":[],\"builds\":[],\
             \"releaseTracks\":[],\"releaseVersions\":[]}}}}"
        )
    );
}

/// Checks that default tokens start from zero without reset.
pub fn default_tokens_start_from_zero_without_reset(new_store: NewStore<'_>) {
    let store = new_store();
    put(&*store, Collection::Versions, &versions(2, 5));
    for token in [
        json!({"format":"1.1"}),
        json!({}),
        json!({"format":"1.1","_id":"1"}),
        json!({"_id":"1"}),
    ] {
        let result = call(&*store, &token, &Value::Null);
        assert_eq!(result["resetData"], false, "{token}");
        assert_eq!(result["upToDate"], true);
        assert_eq!(ids(&result, Collection::Versions), ["v0", "v1"]);
        assert_eq!(result["syncToken"].get("format"), token.get("format"));
    }
}

/// Checks that non object tokens are refused.
pub fn non_object_tokens_are_refused(new_store: NewStore<'_>) {
    let store = new_store();
    for token in [Value::Null, json!([]), json!("1.1"), json!(3)] {
        let err =
            sync_new_package_data(&*store, &token, &json!({}), &Paging::default()).unwrap_err();
        assert!(matches!(err, SyncError::BadToken(_)), "{token}");
        assert!(err.to_string().contains("must be an object"), "{err}");
    }
}

/// Checks that short pages resume and settle on the same token.
pub fn short_pages_resume_and_settle_on_the_same_token(new_store: NewStore<'_>) {
    let store = new_store();
    put(&*store, Collection::Versions, &versions(5, 1000));
    let short = json!({"shortPagesForTest": true});
    let first = call(&*store, &json!({"format":"1.1"}), &short);
    assert_eq!(ids(&first, Collection::Versions), ["v0", "v1", "v2"]);
    assert_eq!(first["upToDate"], false);
    assert_eq!(first["syncToken"]["versionsSeq"], 3);
    assert_eq!(first["syncToken"]["versions"], 1000);
    // The tool stores the token with `_id: "1"`; it may come back.
    let mut token = first["syncToken"].clone();
    token["_id"] = json!("1");
    let second = call(&*store, &token, &short);
    assert_eq!(ids(&second, Collection::Versions), ["v3", "v4"]);
    assert_eq!(
        (second["upToDate"].clone(), second["resetData"].clone()),
        (json!(true), json!(false))
    );
    let third = call(&*store, &second["syncToken"], &short);
    assert_eq!(third["syncToken"], second["syncToken"]);
    assert_eq!(third["upToDate"], true);
    assert!(Collection::ALL.iter().all(|c| ids(&third, *c).is_empty()));
}

/// Checks that changed records are sent again.
pub fn changed_records_are_sent_again(new_store: NewStore<'_>) {
    let store = new_store();
    put(
        &*store,
        Collection::Packages,
        &[r#"{"_id":"p","n":1}"#.into()],
    );
    let first = call(&*store, &json!({}), &json!({}));
    put(
        &*store,
        Collection::Packages,
        &[r#"{"_id":"p","n":2}"#.into()],
    );
    let second = call(&*store, &first["syncToken"], &json!({}));
    assert_eq!(
        second["collections"]["packages"],
        json!([{"_id":"p","n":2}])
    );
    // A record without lastUpdated keeps the previous progress value.
    assert_eq!(second["syncToken"]["packages"], 0);
}

/// Checks that foreign or stale tokens reset exactly once.
pub fn foreign_or_stale_tokens_reset_exactly_once(new_store: NewStore<'_>) {
    let store = new_store();
    put(&*store, Collection::Builds, &versions(2, 9));
    let good = call(&*store, &json!({"format":"1.1"}), &json!({}))["syncToken"].clone();
    let mut tokens = vec![
        json!({"format":"1.1","packages":5,"versions":7}),
        json!({"format":"1.1","epoch":"other"}),
    ];
    for (key, bad) in [
        ("epoch", json!("someone-else")),
        ("epoch", json!(5)),
        ("buildsSeq", json!(-1)),
        ("buildsSeq", json!("2")),
        ("buildsSeq", json!(1.5)),
        ("buildsSeq", json!(3)), // beyond the head: e.g. a restored backup
    ] {
        let mut token = good.clone();
        token[key] = bad;
        tokens.push(token);
    }
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("releaseTracksSeq");
    tokens.push(missing);
    for token in tokens {
        let result = call(&*store, &token, &json!({}));
        assert_eq!(result["resetData"], true, "{token}");
        assert_eq!(ids(&result, Collection::Builds), ["v0", "v1"]);
        assert_eq!(result["syncToken"], good, "{token}");
        let again = call(&*store, &result["syncToken"], &json!({}));
        assert_eq!(again["resetData"], false);
    }
}

/// Checks that deletion resets clients once.
pub fn deletion_resets_clients_once(new_store: NewStore<'_>) {
    let store = new_store();
    put(&*store, Collection::Versions, &versions(3, 1));
    let first = call(&*store, &json!({"format":"1.1"}), &json!({}));
    store
        .write(&mut |w| w.delete(Collection::Versions, "v1").map(|_| ()))
        .unwrap();
    let second = call(&*store, &first["syncToken"], &json!({}));
    assert_eq!(second["resetData"], true);
    assert_eq!(ids(&second, Collection::Versions), ["v0", "v2"]);
    assert_ne!(second["syncToken"]["epoch"], first["syncToken"]["epoch"]);
    let third = call(&*store, &second["syncToken"], &json!({}));
    assert_eq!(third["resetData"], false);
}

/// Checks that a new epoch (as after a restore) resets a client once, changing no record,
/// sequence number or counter, and that a write with nothing but it still takes effect.
pub fn a_new_epoch_resets_clients_once(new_store: NewStore<'_>) {
    let store = new_store();
    put(&*store, Collection::Versions, &versions(3, 1));
    let first = call(&*store, &json!({"format":"1.1"}), &json!({}));
    let before = store.state().unwrap();
    store.write(&mut |w| w.start_epoch()).unwrap();
    let after = store.state().unwrap();
    assert_ne!(after.epoch, before.epoch);
    assert_eq!(after.head_seq, before.head_seq);
    assert_eq!(after.change_counters, before.change_counters);
    let second = call(&*store, &first["syncToken"], &json!({}));
    assert_eq!(second["resetData"], true);
    assert_eq!(ids(&second, Collection::Versions), ["v0", "v1", "v2"]);
    assert_eq!(second["syncToken"]["epoch"], after.epoch);
    let third = call(&*store, &second["syncToken"], &json!({}));
    assert_eq!(third["resetData"], false);
    assert!(ids(&third, Collection::Versions).is_empty());
}

/// Checks that records are spliced verbatim.
pub fn records_are_spliced_verbatim(new_store: NewStore<'_>) {
    let store = new_store();
    let doc =
        r#"{"_id":"r","z":1.50,"a":{"$date":1},"deps":{"a.b":{"constraint":null}},"s":"\u00e9"}"#;
    put(&*store, Collection::ReleaseVersions, &[doc.into()]);
    let text = sync_new_package_data(&*store, &json!({}), &json!({}), &Paging::default()).unwrap();
    assert!(
        text.contains(&format!("\"releaseVersions\":[{doc}]")),
        "{text}"
    );
}

/// Checks that compressed collections are plain json with iso dates.
pub fn compressed_collections_are_plain_json_with_iso_dates(new_store: NewStore<'_>) {
    let store = new_store();
    put(
        &*store,
        Collection::Versions,
        &versions(1, 1_421_971_200_000),
    );
    for compress in [json!(true), json!(1), json!("yes"), json!({})] {
        let result = call(
            &*store,
            &json!({}),
            &json!({"compressCollections": compress}),
        );
        assert!(result.get("collections").is_none());
        let collections = collections(&result);
        assert_eq!(collections.as_object().unwrap().len(), 5);
        assert_eq!(
            collections["versions"][0]["lastUpdated"],
            "2015-01-23T00:00:00.000Z"
        );
        assert_eq!(result["upToDate"], true);
    }
}

/// Checks that zero page sizes still make progress.
pub fn zero_page_sizes_still_make_progress(new_store: NewStore<'_>) {
    let store = new_store();
    put(&*store, Collection::Packages, &versions(2, 1));
    let paging = Paging {
        page_size: 0,
        short_page_size: 0,
        page_bytes: 0,
    };
    let text = sync_new_package_data(&*store, &json!({}), &json!({}), &paging).unwrap();
    let result: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(ids(&result, Collection::Packages), ["v0"]);
    assert_eq!(result["upToDate"], false);
}

/// Checks that pages cut by bytes (spec §1.1) keep the paging contract of spec §3.5/§3.6:
/// a full sync, plain and compressed, sends every record exactly once, every page holds at
/// least one record and stays within the budget plus one record, and an incremental sync
/// from the last token sends exactly what was written since.
pub fn byte_cut_pages_send_every_record_exactly_once(new_store: NewStore<'_>) {
    let store = new_store();
    let doc = |c: Collection, i: usize| {
        let pad = "x".repeat((i * 37) % 300);
        format!(
            r#"{{"_id":"{}{i}","pad":"{pad}","lastUpdated":{{"$date":{i}}}}}"#,
            c.as_str()
        )
    };
    let fill = |store: &dyn CatalogStore, range: std::ops::Range<usize>| {
        for c in Collection::ALL {
            let docs: Vec<String> = range.clone().map(|i| doc(c, i)).collect();
            put(store, c, &docs);
        }
    };
    fill(&*store, 0..40);
    let budget = 1000;
    let paging = Paging {
        page_size: 500,
        short_page_size: 3,
        page_bytes: budget,
    };
    let largest = super::store::all(&*store)
        .iter()
        .map(|(_, text)| text.len())
        .max()
        .unwrap();
    for options in [json!({}), json!({"compressCollections": true})] {
        let sync = |token: &Value| -> (Vec<(Collection, String)>, Value, usize) {
            let mut token = token.clone();
            let mut seen = Vec::new();
            let mut pages = 0;
            loop {
                let text = sync_new_package_data(&*store, &token, &options, &paging).unwrap();
                let result: Value = serde_json::from_str(&text).unwrap();
                let collections = collections(&result);
                let mut bytes = 0;
                let mut count = 0;
                for c in Collection::ALL {
                    for record in collections[c.as_str()].as_array().unwrap() {
                        bytes += record.to_string().len();
                        count += 1;
                        seen.push((c, record["_id"].as_str().unwrap().to_owned()));
                    }
                }
                pages += 1;
                token = result["syncToken"].clone();
                if result["upToDate"] == true {
                    return (seen, token, pages);
                }
                assert!(count >= 1, "a page that is not the last holds a record");
                // Compressed pages carry ISO dates, a few bytes longer than EJSON dates.
                assert!(
                    bytes <= budget + largest + count * 8,
                    "{bytes} bytes in a page"
                );
            }
        };
        let (seen, token, pages) = sync(&json!({"format": "1.1"}));
        assert!(
            pages > 10,
            "the budget cuts the catalog into many pages ({pages})"
        );
        let mut expected: Vec<(Collection, String)> = super::store::all(&*store)
            .into_iter()
            .map(|(c, text)| {
                let record: Value = serde_json::from_str(&text).unwrap();
                (c, record["_id"].as_str().unwrap().to_owned())
            })
            .collect();
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), seen.len(), "a record was sent twice");
        expected.sort();
        assert_eq!(sorted, expected);

        let before = super::store::all(&*store).len();
        fill(&*store, before..before + 4);
        let (new, _, _) = sync(&token);
        let mut new_ids: Vec<String> = new.into_iter().map(|(_, id)| id).collect();
        new_ids.sort();
        let mut want: Vec<String> = Collection::ALL
            .iter()
            .flat_map(|c| (before..before + 4).map(move |i| format!("{}{i}", c.as_str())))
            .collect();
        want.sort();
        assert_eq!(new_ids, want);
    }
}
