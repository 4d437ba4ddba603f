//! Sync convergence against a real SQLite file: a client that applies pages the way the
//! tool does (spec §3.3: wipe on `resetData`, upsert by `_id`) always ends with exactly
//! the store's contents once it reaches `upToDate`, and gets there in bounded calls —
//! under random interleavings of writes, deletions and page fetches, and with writers on
//! other threads and another store handle while it pages.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use exosphere_catalog::store::ExportItem;
use exosphere_catalog::{CatalogStore, Collection, Paging, Record, sync_new_package_data};
use exosphere_catalog_sqlite::open_sqlite;
use proptest::prelude::*;
use serde_json::{Value, json};

type Contents = BTreeMap<(Collection, String), Value>;

/// The tool's side of the protocol, reduced to what matters for convergence.
struct Client {
    token: Value,
    data: Contents,
    paging: Paging,
    short: bool,
}

/// What one call returned.
struct Fetched {
    up_to_date: bool,
    reset: bool,
}

impl Client {
    fn new(paging: Paging, short: bool) -> Client {
        Client {
            token: json!({"format": "1.1"}),
            data: Contents::new(),
            paging,
            short,
        }
    }

    fn fetch(&mut self, store: &dyn CatalogStore) -> Fetched {
        let options = json!({"shortPagesForTest": self.short});
        let text = sync_new_package_data(store, &self.token, &options, &self.paging).unwrap();
        let result: Value = serde_json::from_str(&text).unwrap();
        let reset = result["resetData"].as_bool().unwrap();
        if reset {
            self.data.clear();
        }
        for c in Collection::ALL {
            for record in result["collections"][c.as_str()].as_array().unwrap() {
                let id = record["_id"].as_str().unwrap().to_owned();
                self.data.insert((c, id), record.clone());
            }
        }
        // The tool stores the token with `_id: "1"` and may send that back.
        self.token = result["syncToken"].clone();
        self.token["_id"] = json!("1");
        Fetched {
            up_to_date: result["upToDate"].as_bool().unwrap(),
            reset,
        }
    }

    /// Fetches until `upToDate`, failing if that takes more than `max_calls`.
    fn catch_up(&mut self, store: &dyn CatalogStore, max_calls: usize) {
        for _ in 0..max_calls {
            if self.fetch(store).up_to_date {
                return;
            }
        }
        panic!("not up to date after {max_calls} calls");
    }
}

fn contents(store: &dyn CatalogStore) -> Contents {
    let mut out = Contents::new();
    store
        .export(&mut |item| {
            if let ExportItem::Record { collection, json } = item {
                let value: Value = serde_json::from_str(json).unwrap();
                let id = value["_id"].as_str().unwrap().to_owned();
                out.insert((collection, id), value);
            }
            Ok(())
        })
        .unwrap();
    out
}

fn record(c: Collection, id: u32, body: u32, ms: u32) -> Record {
    let text = format!(
        r#"{{"_id":"id{id}","body":{body},"lastUpdated":{{"$date":{}}}}}"#,
        1_000_000 + u64::from(ms)
    );
    Record::from_json(c, &text).unwrap()
}

#[derive(Debug, Clone)]
enum Op {
    /// Insert or change a record; few ids, bodies and timestamps so that updates, no-op
    /// updates and `lastUpdated` collisions are frequent.
    Upsert {
        c: usize,
        id: u32,
        body: u32,
        ms: u32,
    },
    Delete {
        c: usize,
        id: u32,
    },
    Fetch,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..5usize, 0..6u32, 0..3u32, 0..2u32)
            .prop_map(|(c, id, body, ms)| Op::Upsert { c, id, body, ms }),
        1 => (0..5usize, 0..6u32).prop_map(|(c, id)| Op::Delete { c, id }),
        4 => Just(Op::Fetch),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn paging_client_converges_to_store_contents(
        ops in proptest::collection::vec(op(), 1..60),
        page_size in 1..4usize,
        page_bytes in prop_oneof![Just(usize::MAX), 0..200usize],
        short in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = open_sqlite(dir.path()).unwrap();
        let mut client = Client::new(Paging { page_size, short_page_size: page_size, page_bytes }, short);
        let mut deleted_since_fetch = false;
        for op in ops {
            match op {
                Op::Upsert { c, id, body, ms } => {
                    let r = record(Collection::ALL[c], id, body, ms);
                    store.write(&mut |w| w.upsert(&r).map(|_| ())).unwrap();
                }
                Op::Delete { c, id } => {
                    store
                        .write(&mut |w| {
                            deleted_since_fetch |= w.delete(Collection::ALL[c], &format!("id{id}"))?;
                            Ok(())
                        })
                        .unwrap();
                }
                Op::Fetch => {
                    let fetched = client.fetch(&store);
                    // A reset is only ever caused by a deletion since the last call.
                    prop_assert!(!fetched.reset || deleted_since_fetch);
                    deleted_since_fetch = false;
                    if fetched.up_to_date {
                        prop_assert_eq!(&client.data, &contents(&store));
                    }
                }
            }
        }
        // At most 30 records exist; every call moves at least one cursor forward.
        client.catch_up(&store, 40);
        prop_assert_eq!(&client.data, &contents(&store));
        // Once up to date, nothing new gives the same token back.
        let token = client.token.clone();
        prop_assert!(client.fetch(&store).up_to_date);
        prop_assert_eq!(client.token, token);
    }
}

#[test]
fn client_converges_while_other_threads_and_handles_write() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn CatalogStore> = Arc::new(open_sqlite(dir.path()).unwrap());
    let other: Arc<dyn CatalogStore> = Arc::new(open_sqlite(dir.path()).unwrap());
    let done = Arc::new(AtomicBool::new(false));

    let writers: Vec<_> = [(Arc::clone(&store), 0u32), (other, 1u32)]
        .into_iter()
        .map(|(handle, seed)| {
            std::thread::spawn(move || {
                let mut state = 0x9E37_79B9u32.wrapping_mul(seed + 1);
                let mut next = move |n: u32| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    state % n
                };
                for round in 0..300u32 {
                    let (c, id, body) = (next(5) as usize, next(40), next(4));
                    let r = record(Collection::ALL[c], id, body, round % 3);
                    handle
                        .write(&mut |w| {
                            w.upsert(&r)?;
                            if seed == 1 && round % 97 == 0 {
                                w.delete(Collection::ALL[c], &format!("id{}", next(40)))?;
                            }
                            Ok(())
                        })
                        .unwrap();
                }
            })
        })
        .collect();

    let reader = {
        let store = Arc::clone(&store);
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut client = Client::new(
                Paging {
                    page_size: 2,
                    short_page_size: 2,
                    page_bytes: 100,
                },
                false,
            );
            let mut calls = 0u32;
            while !done.load(Ordering::SeqCst) {
                client.fetch(store.as_ref());
                calls += 1;
            }
            client.catch_up(store.as_ref(), 500);
            (client.data, calls)
        })
    };

    for writer in writers {
        writer.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let (data, calls) = reader.join().unwrap();
    assert!(calls > 0);
    assert_eq!(data, contents(store.as_ref()));
}
