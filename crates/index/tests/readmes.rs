//! README texts in full-text search: a writer that reads README files
//! (`Index::apply_page_with_readmes`, the server's read model) makes words that only a
//! package's README holds findable, for the latest version and no other, kept to its
//! first `README_SEARCH_BYTES`; an index applied without one (a client's) searches
//! without them; and a schema 4 file gets its README texts at its next page.

use std::cell::RefCell;
use std::collections::HashMap;

use exosphere_index::{
    Index, README_SEARCH_BYTES, ReadmeFile, ReadmeTexts, SCHEMA_VERSION, SyncPage,
};
use serde_json::value::RawValue;

fn raw(text: &str) -> Box<RawValue> {
    RawValue::from_string(text.to_owned()).expect("test JSON is valid")
}

/// An up-to-date page of `records` (none: nothing changed).
fn apply(index: &mut Index, records: Vec<Box<RawValue>>, readmes: Option<&Files>) -> u64 {
    let token = raw(&format!(r#"{{"n":{}}}"#, records.len()));
    let collections = vec![("versions", records.iter().map(AsRef::as_ref).collect())];
    let page = SyncPage {
        reset_data: false,
        up_to_date: true,
        sync_token: &token,
        collections,
    };
    match readmes {
        Some(readmes) => index.apply_page_with_readmes(&page, readmes),
        None => index.apply_page(&page),
    }
    .expect("the page applies")
    .refreshed
}

/// A version of `name` whose README file is at `url` (none without one).
fn version(id: &str, name: &str, version: &str, url: Option<&str>) -> Box<RawValue> {
    let readme = url.map_or(String::new(), |url| {
        format!(r#","readme":{{"url":"{url}","hash":"hash of {url}"}}"#)
    });
    raw(&format!(
        r#"{{"_id":"{id}","packageName":"{name}","version":"{version}","description":"{name} does things","longDescription":"An excerpt.","dependencies":{{}}{readme}}}"#
    ))
}

/// README files by URL, and the files each call asked for.
#[derive(Default)]
struct Files {
    texts: HashMap<String, String>,
    asked: RefCell<Vec<Vec<String>>>,
}

impl ReadmeTexts for Files {
    fn texts(&self, files: &[ReadmeFile]) -> Vec<Option<String>> {
        self.asked
            .borrow_mut()
            .push(files.iter().map(|file| file.url.clone()).collect());
        files
            .iter()
            .map(|file| {
                assert_eq!(file.hash, format!("hash of {}", file.url));
                self.texts.get(&file.url).cloned()
            })
            .collect()
    }
}

fn found(index: &Index, words: &str) -> Vec<String> {
    index
        .search(words, None, 10)
        .expect("search")
        .into_iter()
        .map(|hit| hit.name)
        .collect()
}

#[test]
fn words_only_a_readme_holds_are_found_for_the_latest_version() {
    let dir = tempfile::tempdir().unwrap();
    let mut index = Index::open(&dir.path().join("index.sqlite3")).unwrap();
    let long = format!(
        "Quasiquoted widgets.\n{}\nfarfetched",
        "filler ".repeat(README_SEARCH_BYTES / 7)
    );
    let files = Files {
        texts: HashMap::from([
            (
                "http://h/one/1".into(),
                "# One\n\nZanzibarium inside.".into(),
            ),
            (
                "http://h/one/2".into(),
                "# One\n\nNow with tesseracts.".into(),
            ),
            ("http://h/two/1".into(), long),
        ]),
        ..Files::default()
    };
    apply(
        &mut index,
        vec![
            version("a1", "ann:one", "1.0.0", Some("http://h/one/1")),
            version("b1", "bob:two", "1.0.0", Some("http://h/two/1")),
            version("c1", "cat:three", "1.0.0", None),
            version("d1", "dan:four", "1.0.0", Some("http://h/missing")),
        ],
        Some(&files),
    );
    assert_eq!(
        files.asked.borrow().iter().flatten().count(),
        3,
        "only versions naming a README file are asked for, all at once: {:?}",
        files.asked.borrow()
    );
    assert_eq!(found(&index, "zanzibarium"), ["ann:one"]);
    assert_eq!(found(&index, "quasiquoted"), ["bob:two"]);
    assert!(
        found(&index, "farfetched").is_empty(),
        "words past README_SEARCH_BYTES are not kept"
    );
    assert_eq!(
        found(&index, "excerpt").len(),
        4,
        "the excerpts stay searched"
    );

    // A page that changes no latest version reads no README again.
    apply(&mut index, Vec::new(), Some(&files));
    assert_eq!(files.asked.borrow().len(), 1);

    // A new latest version brings its own README; the old one's words go.
    apply(
        &mut index,
        vec![version("a2", "ann:one", "2.0.0", Some("http://h/one/2"))],
        Some(&files),
    );
    assert_eq!(files.asked.borrow().last().unwrap(), &["http://h/one/2"]);
    assert_eq!(found(&index, "tesseracts"), ["ann:one"]);
    assert!(found(&index, "zanzibarium").is_empty());

    // Applied without README files (a client's sync), a changed package has none.
    apply(
        &mut index,
        vec![version("b2", "bob:two", "2.0.0", Some("http://h/two/1"))],
        None,
    );
    assert!(found(&index, "quasiquoted").is_empty());
    assert_eq!(found(&index, "tesseracts"), ["ann:one"]);
}

#[test]
fn a_schema_4_index_searches_at_once_and_reads_readmes_at_its_next_page() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.sqlite3");
    let mut index = Index::open(&path).unwrap();
    apply(
        &mut index,
        vec![version("a1", "ann:one", "1.0.0", Some("http://h/one/1"))],
        None,
    );
    drop(index);
    // What schema 4 had: `search` without its `readme` column, `latest` without
    // `unmigrated` (version 5).
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(
            "DROP TABLE search;
             CREATE VIRTUAL TABLE search USING fts5 (
                 name, description, long_description,
                 tokenize = 'unicode61 remove_diacritics 2', prefix = '2 3');
             INSERT INTO search (rowid, name, description, long_description)
                 SELECT id, package, 'ann:one does things', 'An excerpt.' FROM latest;
             ALTER TABLE latest DROP COLUMN unmigrated;
             PRAGMA user_version = 4;",
        )
        .unwrap();

    let mut index = Index::open(&path).expect("a schema 4 index opens");
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    assert_eq!(
        found(&index, "things"),
        ["ann:one"],
        "searched before any page"
    );
    assert!(found(&index, "zanzibarium").is_empty());
    let files = Files {
        texts: HashMap::from([("http://h/one/1".into(), "Zanzibarium inside.".into())]),
        ..Files::default()
    };
    assert_eq!(
        apply(&mut index, Vec::new(), Some(&files)),
        1,
        "a page without records rewrites what the upgrade marked"
    );
    assert_eq!(found(&index, "zanzibarium"), ["ann:one"]);
    assert_eq!(
        apply(&mut index, Vec::new(), Some(&files)),
        0,
        "then nothing"
    );
}
