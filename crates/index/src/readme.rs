//! README files: the file a version record names (`readme: {url, hash}`, spec §3.8, §5.5,
//! §5.10), and [`ReadmeTexts`], through which a writer that can read those files (the
//! server's read model, over its file store) hands the index their text for full-text
//! search. The index never reads a file itself: a client's index (`exosphere sync`) has no
//! file store, and searches names, summaries and README excerpts only.

use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The most bytes of a README's text full-text search keeps, from its start (cut at a
/// character). A Meteor README is a few KiB; the words that say what a package does come
/// first, and the bound keeps a catalog of 15,000 packages within about 500 MB of README
/// text even if every README were this long. The server reads no more than
/// `--readme-max-bytes` of a file in the first place, so the smaller of the two applies.
pub const README_SEARCH_BYTES: usize = 32 * 1024;

/// The README file a version record names: uploaded with the version
/// (`publishPackageVersion`) or later (`publishReadme`), its bytes the README's text in
/// UTF-8 and its `hash` their SHA-256 in standard base64 (spec §8.2), so whoever reads the
/// file can tell whether it holds what the record promises.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReadmeFile {
    /// Where the file is served (a URL of this server, of the upstream it mirrors, or of
    /// another host, as the record holds it).
    pub url: String,
    /// The base64 SHA-256 of its bytes.
    pub hash: String,
}

impl ReadmeFile {
    /// The file a record's `readme` value names, when it is an object with a string `url`
    /// and a string `hash`: without a hash nothing could check the file, so it is none.
    pub(crate) fn from_value(readme: &Value) -> Option<ReadmeFile> {
        Some(ReadmeFile {
            url: readme.get("url")?.as_str()?.to_owned(),
            hash: readme.get("hash")?.as_str()?.to_owned(),
        })
    }
}

/// Where an index gets the text of README files, so that full-text search finds words
/// that only a package's README holds. The server's read model implements it over its
/// file store; an index applied without one (`Index::apply_page`) keeps no README text.
///
/// Its contract, which every implementation MUST keep:
///
/// * `texts` is called inside the write transaction of the page that brings the index up
///   to date, with the README files of every package whose latest version changed since
///   the last such page (after a first sync or a schema upgrade, every package's), a few
///   hundred per call, so it MUST NOT wait on another host: it reads what the writer
///   holds itself, and a file only another host has is `None`. It may read the files
///   concurrently.
/// * It answers one entry per file, in the order given; an entry may hold only the
///   start of the text that is searched ([`searched`]).
/// * An entry is `Some` only for the text of bytes whose SHA-256 is the file's `hash`
///   (bytes that are not UTF-8 may be decoded lossily); a file it cannot read, does not
///   hold, that is too large for it or does not match is `None`, and the index then
///   searches that package without its README until its latest version changes again.
/// * It is blocking: the index runs on the caller's thread (the server's read model runs
///   on the blocking pool).
pub trait ReadmeTexts {
    /// The text of each of `files`, in order; `None` for each it does not have.
    fn texts(&self, files: &[ReadmeFile]) -> Vec<Option<String>>;
}

/// README files asked of a [`ReadmeTexts`] at once.
const READ_AT_ONCE: usize = 256;

/// The start of `text` that full-text search keeps: at most [`README_SEARCH_BYTES`],
/// cut before a character that would cross the bound. A [`ReadmeTexts`] may give only this
/// much of each file.
pub fn searched(text: &str) -> &str {
    let mut end = text.len().min(README_SEARCH_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Asks `readmes` for the README texts of the latest versions in `latest_dirty` whose
/// records name a README file, [`READ_AT_ONCE`] at a time, and puts the start of each it has
/// ([`searched`]) into `temp.readme_texts`, for the writer of the `search` rows
/// (`schema::WRITE_SEARCH`).
pub(crate) fn read_readmes(tx: &Connection, readmes: &dyn ReadmeTexts) -> rusqlite::Result<()> {
    /// The one field of a version record read here.
    #[derive(Deserialize)]
    struct Named {
        #[serde(default)]
        readme: Option<serde_json::Value>,
    }
    let mut ids = Vec::new();
    let mut files = Vec::new();
    let mut dirty = tx.prepare(
        "SELECT d.latest_id, v.doc FROM latest_dirty d
         JOIN latest l ON l.id = d.latest_id
         JOIN versions v ON v.rowid = l.version_rowid",
    )?;
    let mut rows = dirty.query([])?;
    while let Some(row) = rows.next()? {
        let doc: String = row.get(1)?;
        let file = serde_json::from_str::<Named>(&doc)
            .ok()
            .and_then(|named| named.readme)
            .and_then(|readme| ReadmeFile::from_value(&readme));
        if let Some(file) = file {
            ids.push(row.get::<_, i64>(0)?);
            files.push(file);
        }
    }
    if files.is_empty() {
        return Ok(());
    }
    let mut keep =
        tx.prepare_cached("INSERT INTO temp.readme_texts (latest_id, text) VALUES (?1, ?2)")?;
    // A few hundred at a time: however many packages changed (all of them after a first
    // sync), no more texts are held at once.
    for (ids, files) in ids.chunks(READ_AT_ONCE).zip(files.chunks(READ_AT_ONCE)) {
        for (id, text) in ids.iter().zip(readmes.texts(files)) {
            if let Some(text) = text {
                keep.execute(params![id, searched(&text)])?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_readme_names_its_file_only_with_a_url_and_a_hash() {
        let file =
            ReadmeFile::from_value(&serde_json::json!({"url": "http://h/r.md", "hash": "H"}));
        assert_eq!(
            file,
            Some(ReadmeFile {
                url: "http://h/r.md".into(),
                hash: "H".into()
            })
        );
        for readme in [
            serde_json::json!({"url": "http://h/r.md"}),
            serde_json::json!({"url": 1, "hash": "H"}),
            serde_json::json!("http://h/r.md"),
        ] {
            assert_eq!(ReadmeFile::from_value(&readme), None, "{readme}");
        }
    }

    #[test]
    fn search_keeps_the_start_of_a_long_readme_at_a_character() {
        assert_eq!(searched("short"), "short");
        let long = format!("{}é", "a".repeat(README_SEARCH_BYTES - 1));
        assert_eq!(searched(&long).len(), README_SEARCH_BYTES - 1);
    }
}
