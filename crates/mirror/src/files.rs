//! The file URLs of mirrored records (`source.url` and `readme.url` of versions, `build.url`
//! of builds), rewritten to Exosphere's own, so the `meteor` tool downloads through Exosphere
//! and keeps working while the upstream is down.
//!
//! Each upstream URL gets a served key derived from the URL alone, so the same upstream record
//! always rewrites to the same text (a record re-sent unchanged stays unchanged). The store
//! keeps, per key, the upstream URL and the hash the record promises: only URLs that mirrored
//! records name can be fetched through Exosphere.

use std::borrow::Cow;

use exosphere_catalog::Collection;
use exosphere_catalog::files::file_fields;
use exosphere_catalog::mirror::UpstreamFile;
use indexmap::IndexMap;
use serde_json::value::RawValue;
use sha2::{Digest as _, Sha256};

/// The path under which mirrored files are served: `<public URL>/mirror/files/<key>`.
pub const FILES_PATH: &str = "/mirror/files";

/// The longest file name kept at the end of a key (the blob store's segment limit is larger).
const MAX_FILE_NAME: usize = 100;

/// The served key of an upstream file URL: `mirror/<32 hex digits of the URL's SHA-256>/<its
/// file name>`, the name made safe for the blob store (`_` for other characters).
pub fn file_key(url: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(url.as_bytes());
    let hex: String = digest[..16]
        .iter()
        .flat_map(|byte| [HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 15)]])
        .map(char::from)
        .collect();
    let last = url
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .rsplit('/')
        .next()
        .unwrap_or_default();
    let mut name: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._@+-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(MAX_FILE_NAME)
        .collect();
    if name.is_empty() || name.starts_with('.') {
        name.insert(0, 'f');
    }
    format!("mirror/{hex}/{name}")
}

/// A record's text with its file URLs rewritten, and the upstream files behind them.
pub(crate) struct Rewritten<'a> {
    /// The text to store: the upstream's own text where the record names no file.
    pub(crate) text: Cow<'a, str>,
    /// Each served key with its upstream file.
    pub(crate) files: Vec<(String, UpstreamFile)>,
}

/// Rewrites the file URLs of one upstream record to start with `public_url`. Everything else
/// in the text is kept byte for byte (fields are re-joined without whitespace).
pub(crate) fn rewrite<'a>(
    collection: Collection,
    text: &'a str,
    public_url: &str,
) -> Result<Rewritten<'a>, serde_json::Error> {
    let mut files = Vec::new();
    let text = map_urls(collection, text, |url, sha256| {
        let key = file_key(url);
        let served = served_url(public_url, &key);
        files.push((
            key,
            UpstreamFile {
                url: url.to_owned(),
                sha256: sha256.map(str::to_owned),
            },
        ));
        Some(served)
    })?;
    Ok(Rewritten { text, files })
}

/// The URL clients download a mirrored file of `key` at.
pub fn served_url(public_url: &str, key: &str) -> String {
    format!("{}{FILES_PATH}/{key}", public_url.trim_end_matches('/'))
}

/// Replaces the file URLs of a record of `collection` with what `map` makes of each (`url`,
/// the hash the record promises); `None` keeps a URL. Everything else in the text is kept byte
/// for byte (fields are re-joined without whitespace); a record with nothing to change is
/// returned as it was.
pub(crate) fn map_urls<'a>(
    collection: Collection,
    text: &'a str,
    mut map: impl FnMut(&str, Option<&str>) -> Option<String>,
) -> Result<Cow<'a, str>, serde_json::Error> {
    let fields = file_fields(collection);
    if fields.is_empty() {
        return Ok(Cow::Borrowed(text));
    }
    // Fields are borrowed from `text`; only the file fields that change are made anew.
    let record: IndexMap<String, &'a RawValue> = serde_json::from_str(text)?;
    let mut replaced: Vec<(&str, Box<RawValue>)> = Vec::new();
    for (field, hash_key) in fields {
        let Some(raw) = record.get(*field) else {
            continue;
        };
        let Ok(mut file) = serde_json::from_str::<IndexMap<String, Box<RawValue>>>(raw.get())
        else {
            continue;
        };
        let Some(Ok(url)) = file
            .get("url")
            .map(|url| serde_json::from_str::<String>(url.get()))
        else {
            continue;
        };
        let sha256 = file
            .get(*hash_key)
            .and_then(|hash| serde_json::from_str::<String>(hash.get()).ok());
        let Some(new) = map(&url, sha256.as_deref()) else {
            continue;
        };
        file.insert("url".to_owned(), serde_json::value::to_raw_value(&new)?);
        replaced.push((field, serde_json::value::to_raw_value(&file)?));
    }
    if replaced.is_empty() {
        return Ok(Cow::Borrowed(text));
    }
    let rewritten: IndexMap<&str, &RawValue> = record
        .iter()
        .map(|(field, value)| {
            let new = replaced.iter().find(|(name, _)| name == field);
            (field.as_str(), new.map_or(*value, |(_, new)| &**new))
        })
        .collect();
    Ok(Cow::Owned(serde_json::to_string(&rewritten)?))
}

/// The served key of a mirrored file URL (`<public URL>/mirror/files/<key>`), if it is one.
pub fn key_of(url: &str) -> Option<&str> {
    let (_, key) = url.split_once(FILES_PATH)?;
    key.strip_prefix('/')
        .filter(|key| key.starts_with("mirror/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_safe_and_keep_the_file_name() {
        let url = "https://warehouse.meteor.com/builds/Pr7L8f/1421795627447/sCrr/ecmascript-0.1.0-os+web.browser+web.cordova.tgz";
        let key = file_key(url);
        assert_eq!(key, file_key(url));
        assert!(key.starts_with("mirror/"), "{key}");
        assert!(
            key.ends_with("/ecmascript-0.1.0-os+web.browser+web.cordova.tgz"),
            "{key}"
        );
        assert_ne!(key, file_key(&url.replace("Pr7L8f", "other")));
        assert!(file_key("http://h/a b?x=1").ends_with("/a_b"));
        assert!(file_key("http://h/").ends_with("/f"));
        assert!(file_key("http://h/.hidden").ends_with("/f.hidden"));
        let served = served_url("http://ex:3000/", &key);
        assert_eq!(key_of(&served), Some(key.as_str()));
        assert_eq!(key_of("http://ex/packages/a/b.tgz"), None);
    }

    #[test]
    fn build_urls_are_rewritten_and_everything_else_is_kept() {
        let text = r#"{"_id":"b1","versionId":"v1","build":{"url":"http://up:9/b.tgz","tarballHash":"aGFzaA==","treeHash":"t"},"n":1.50,"lastUpdated":{"$date":5}}"#;
        let rewritten = rewrite(Collection::Builds, text, "http://ex:3000/").unwrap();
        let key = file_key("http://up:9/b.tgz");
        assert_eq!(
            rewritten.text,
            format!(
                r#"{{"_id":"b1","versionId":"v1","build":{{"url":"http://ex:3000/mirror/files/{key}","tarballHash":"aGFzaA==","treeHash":"t"}},"n":1.50,"lastUpdated":{{"$date":5}}}}"#
            )
        );
        assert_eq!(
            rewritten.files,
            vec![(
                key,
                UpstreamFile {
                    url: "http://up:9/b.tgz".to_owned(),
                    sha256: Some("aGFzaA==".to_owned())
                }
            )]
        );
    }

    #[test]
    fn versions_rewrite_source_and_readme_and_other_records_stay_as_sent() {
        let text = r#"{"_id":"v1","source":{"url":"http://up/s.tgz","tarballHash":"s"},"readme":{"url":"http://up/r.md","hash":"r"}}"#;
        let rewritten = rewrite(Collection::Versions, text, "http://ex").unwrap();
        assert_eq!(rewritten.files.len(), 2);
        assert!(!rewritten.text.contains("http://up/"), "{}", rewritten.text);
        let package = r#"{"_id":"p","name":"x","homepage":"http://up/s.tgz"}"#;
        let kept = rewrite(Collection::Packages, package, "http://ex").unwrap();
        assert!(matches!(kept.text, Cow::Borrowed(_)) && kept.files.is_empty());
        let no_url = r#"{"_id":"v2","source":null}"#;
        let kept = rewrite(Collection::Versions, no_url, "http://ex").unwrap();
        assert_eq!(kept.text, no_url);
    }
}
