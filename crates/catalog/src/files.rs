//! The files a catalog refers to: which record fields name a file (and its hash), which of
//! those URLs are files published here, and the list of every file a backup of the catalog
//! needs beside it (`exosphere backup`, `exosphere verify`).
//!
//! Records name files by URL. A file published here is served at
//! `<public URL>/packages/<key>` and kept in the blob store under `packages/<key>`; a
//! mirrored file is served at `<public URL>/mirror/files/<key>` and kept (once fetched) under
//! `<key>`, with its upstream URL and hash in the mirror's rows. Any other URL (a catalog
//! imported from packages.meteor.com without mirroring it) points elsewhere and is not this
//! server's to keep.

use crate::Collection;
use crate::error::StoreError;
use crate::store::{CatalogStore, ExportItem};

/// The blob key prefix, and URL path segment, of files published here.
pub const PUBLISHED_PREFIX: &str = "packages/";

/// How many mirrored file keys [`for_each_file`] reads per call to the store.
const MIRROR_PAGE: usize = 1000;

/// The fields that hold a file of a record of `collection` (an object with a `url`), and the
/// key of each field's SHA-256 (standard base64, spec §8.2) inside that object.
pub fn file_fields(collection: Collection) -> &'static [(&'static str, &'static str)] {
    match collection {
        Collection::Versions => &[("source", "tarballHash"), ("readme", "hash")],
        Collection::Builds => &[("build", "tarballHash")],
        _ => &[],
    }
}

/// The blob key of a file published here, from the URL a record names it by
/// (`<public URL>/packages/<key>`), whatever the public URL was when it was published; `None`
/// for any other URL. A key is `packages/<name>/<version>/<upload>/<file>` (before uploads
/// had their own directory, `packages/<name>/<version>/<file>`), so a public URL whose own
/// path holds `/packages/` is passed over: the key starts at the first `packages/` followed
/// by that many segments.
pub fn published_key(url: &str) -> Option<&str> {
    let marker = format!("/{PUBLISHED_PREFIX}");
    // Every place a key may start, overlapping ones included (`/packages/packages/...`).
    let starts = url
        .char_indices()
        .filter(|(at, _)| url[*at..].starts_with(&marker));
    starts.map(|(at, _)| &url[at + 1..]).find(|key| {
        let segments: Vec<&str> = key.split('/').collect();
        matches!(segments.len(), 4 | 5) && segments.iter().all(|segment| !segment.is_empty())
    })
}

/// Where a referenced file comes from, which decides whether its absence is a loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// Published here: the blob store holds the only copy, so it must be present.
    Published,
    /// Mirrored from an upstream: a cache, fetched again when absent.
    Mirrored,
}

impl Origin {
    /// The word stored in manifests and printed in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Published => "published",
            Origin::Mirrored => "mirrored",
        }
    }

    /// The origin a word from [`Origin::as_str`] names.
    pub fn parse(word: &str) -> Option<Origin> {
        match word {
            "published" => Some(Origin::Published),
            "mirrored" => Some(Origin::Mirrored),
            _ => None,
        }
    }
}

/// One file the catalog refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    /// Its key in the blob store.
    pub key: String,
    /// Its SHA-256 (standard base64), when the catalog knows it.
    pub sha256: Option<String>,
    /// Published here, or mirrored.
    pub origin: Origin,
}

/// Calls `f` with every file the catalog refers to: the files of records published here (from
/// one snapshot of the records, in collection and `seq` order, a file named twice given twice)
/// and then every mirrored file key, in key order. An `Err` from `f` stops the walk and is
/// returned.
pub fn for_each_file(
    store: &dyn CatalogStore,
    f: &mut dyn FnMut(FileRef) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    store.export(&mut |item| {
        let ExportItem::Record { collection, json } = item else {
            return Ok(());
        };
        for file in record_files(collection, json)? {
            f(file)?;
        }
        Ok(())
    })?;
    let mut after = String::new();
    loop {
        let page = store.mirror_files(&after, MIRROR_PAGE)?;
        let Some((last, _)) = page.last() else {
            return Ok(());
        };
        after = last.clone();
        for (key, upstream) in page {
            f(FileRef {
                key,
                sha256: upstream.sha256,
                origin: Origin::Mirrored,
            })?;
        }
    }
}

/// The published files one stored record names.
fn record_files(collection: Collection, json: &str) -> Result<Vec<FileRef>, StoreError> {
    let fields = file_fields(collection);
    if fields.is_empty() {
        return Ok(Vec::new());
    }
    let doc: serde_json::Value = serde_json::from_str(json).map_err(|error| {
        StoreError::Corrupt(format!(
            "a stored {collection:?} record is not JSON: {error}"
        ))
    })?;
    let mut files = Vec::new();
    for (field, hash) in fields {
        let file = &doc[*field];
        let Some(key) = file["url"].as_str().and_then(published_key) else {
            continue;
        };
        files.push(FileRef {
            key: key.to_owned(),
            sha256: file[*hash].as_str().map(str::to_owned),
            origin: Origin::Published,
        });
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_keys_are_found_under_any_public_url() {
        assert_eq!(
            published_key("http://127.0.0.1:3000/packages/a:b/1.0.0/x/a_b.tgz"),
            Some("packages/a:b/1.0.0/x/a_b.tgz")
        );
        assert_eq!(
            published_key("https://example.com/meteor/packages/p/1/r/README.md"),
            Some("packages/p/1/r/README.md")
        );
        assert_eq!(
            published_key("https://h/packages/packages/a_b/1.0.0/x/a_b.tgz"),
            Some("packages/a_b/1.0.0/x/a_b.tgz"),
            "a public URL whose path ends in /packages"
        );
        assert_eq!(
            published_key("https://h/packages/packages/1.0.0/x/packages.tgz"),
            Some("packages/packages/1.0.0/x/packages.tgz"),
            "a package named packages"
        );
        assert_eq!(
            published_key("https://h/packages/a_b/1.0.0/README-x.md"),
            Some("packages/a_b/1.0.0/README-x.md"),
            "a file published before uploads had their own directory"
        );
        assert_eq!(published_key("https://h/packages/"), None);
        assert_eq!(published_key("https://h/packages/a//1.0.0/f"), None);
        assert_eq!(
            published_key("https://h/mirror/files/mirror/ab/x.tgz"),
            None
        );
        assert_eq!(
            published_key("https://warehouse.meteor.com/builds/x/1/y/p.tgz"),
            None
        );
    }

    #[test]
    fn records_name_their_published_files_with_hashes() {
        let version = r#"{"_id":"v","source":{"url":"http://h/packages/p/1/s/p.tgz","tarballHash":"T"},
            "readme":{"url":"http://h/packages/p/1/r/README.md","hash":"R"}}"#;
        assert_eq!(
            record_files(Collection::Versions, version).unwrap(),
            [
                FileRef {
                    key: "packages/p/1/s/p.tgz".into(),
                    sha256: Some("T".into()),
                    origin: Origin::Published
                },
                FileRef {
                    key: "packages/p/1/r/README.md".into(),
                    sha256: Some("R".into()),
                    origin: Origin::Published
                },
            ]
        );
        let foreign =
            r#"{"_id":"b","build":{"url":"https://warehouse.meteor.com/b.tgz","tarballHash":"T"}}"#;
        assert!(
            record_files(Collection::Builds, foreign)
                .unwrap()
                .is_empty()
        );
        let no_file = r#"{"_id":"b","buildArchitectures":"os"}"#;
        assert!(
            record_files(Collection::Builds, no_file)
                .unwrap()
                .is_empty()
        );
        assert!(
            record_files(Collection::Packages, r#"{"_id":"p"}"#)
                .unwrap()
                .is_empty()
        );
        for origin in [Origin::Published, Origin::Mirrored] {
            assert_eq!(Origin::parse(origin.as_str()), Some(origin));
        }
        assert_eq!(Origin::parse("other"), None);
    }
}
