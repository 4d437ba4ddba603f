//! Prefetching for outages and air gaps: the mirrored files a chosen set of releases, apps or
//! packages needs on chosen architectures (or every mirrored file), fetched ahead of any
//! request through a running mirror, which verifies and caches each of them.
//!
//! What a release needs is Meteor's own rule (`admin make-bootstrap-tarballs`): the builds of
//! its `meteor-tool` and of every package it pins. What an app needs: its `.meteor/release` and
//! the package versions of its `.meteor/versions`. A build is needed on an architecture when it
//! covers it: it names that `os.*` architecture, the portable `os`, or no `os` architecture at
//! all (client-only code). Files are fetched through the server's own URLs, so its one-fetch,
//! verification and cache do the work; a file already cached is only read back. Failures are
//! retried file by file and reported at the end, independently of the mirror's sync.

use std::collections::BTreeSet;
use std::sync::Arc;

use exosphere_catalog::store::ExportItem;
use exosphere_catalog::{CatalogStore, Collection, Lookup, StoreError};
use futures_util::StreamExt as _;
use serde_json::Value;

use crate::files::key_of;

/// What to prefetch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Releases as `(track, version)`: their tool and every package they pin.
    pub releases: Vec<(String, String)>,
    /// Package versions as `(name, version)` (an app's `.meteor/versions`).
    pub packages: Vec<(String, String)>,
    /// Every mirrored file instead.
    pub everything: bool,
    /// The `os.*` architectures to fetch builds for; empty: every build.
    pub architectures: Vec<String>,
}

/// The files a selection needs, as the served catalog names them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Every needed mirrored file's URL (as clients get it), without repeats.
    pub urls: Vec<String>,
    /// What the selection names that the catalog does not hold (`name@version`).
    pub missing: Vec<String>,
}

/// Reads which mirrored files `selection` needs from the served catalog (in one write
/// transaction, for its natural-key lookups, or one export snapshot for everything).
pub fn plan(store: &dyn CatalogStore, selection: &Selection) -> Result<Plan, StoreError> {
    let mut urls = BTreeSet::new();
    let mut missing = Vec::new();
    if selection.everything {
        store.export(&mut |item| {
            if let ExportItem::Record { collection, json } = item
                && let Ok(record) = serde_json::from_str::<Value>(json)
            {
                mirrored_urls(collection, &record, &mut urls);
            }
            Ok(())
        })?;
        return Ok(Plan {
            urls: urls.into_iter().collect(),
            missing,
        });
    }
    store.write(&mut |writer| {
        urls.clear();
        missing.clear();
        let mut packages = selection.packages.clone();
        for (track, version) in &selection.releases {
            let Some(release) = first(writer.find(&Lookup::ReleaseVersion { track, version })?)
            else {
                missing.push(format!("{track}@{version}"));
                continue;
            };
            if let Some((name, version)) = release["tool"].as_str().and_then(|t| t.split_once('@'))
            {
                packages.push((name.to_owned(), version.to_owned()));
            }
            if let Some(pinned) = release["packages"].as_object() {
                for (name, version) in pinned {
                    if let Some(version) = version.as_str() {
                        packages.push((name.clone(), version.to_owned()));
                    }
                }
            }
        }
        for (package, version) in &packages {
            let Some(record) = first(writer.find(&Lookup::Version { package, version })?) else {
                missing.push(format!("{package}@{version}"));
                continue;
            };
            let Some(id) = record["_id"].as_str() else {
                continue;
            };
            for text in writer.find(&Lookup::BuildsOf(id))? {
                let Ok(build) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                let archs = build["buildArchitectures"].as_str().unwrap_or_default();
                if covers(archs, &selection.architectures) {
                    mirrored_urls(Collection::Builds, &build, &mut urls);
                }
            }
        }
        Ok(())
    })?;
    missing.sort();
    missing.dedup();
    Ok(Plan {
        urls: urls.into_iter().collect(),
        missing,
    })
}

/// The first record text of a lookup, parsed.
fn first(texts: Vec<String>) -> Option<Value> {
    texts
        .into_iter()
        .next()
        .and_then(|text| serde_json::from_str(&text).ok())
}

/// Whether a build with these `+`-joined architectures is needed on one of `wanted` (every
/// build when `wanted` is empty).
fn covers(archs: &str, wanted: &[String]) -> bool {
    if wanted.is_empty() {
        return true;
    }
    let oses: Vec<&str> = archs.split('+').filter(|a| a.starts_with("os")).collect();
    oses.is_empty()
        || oses
            .iter()
            .any(|os| *os == "os" || wanted.iter().any(|w| w == os))
}

/// Adds the mirrored file URLs of a record (those under `/mirror/files/mirror/`) to `urls`.
fn mirrored_urls(collection: Collection, record: &Value, urls: &mut BTreeSet<String>) {
    let fields: &[&str] = match collection {
        Collection::Builds => &["build"],
        Collection::Versions => &["source", "readme"],
        _ => &[],
    };
    for field in fields {
        if let Some(url) = record[field]["url"].as_str()
            && key_of(url).is_some()
        {
            urls.insert(url.to_owned());
        }
    }
}

/// How long a prefetch waits for a connection, or for the next bytes of a file, before the
/// attempt fails (the server may be fetching from a slow upstream, which sends bytes as they
/// come).
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// What fetching one file came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// It arrived whole (and is cached by the server): its size.
    Done(u64),
    /// Every attempt failed; the last error.
    Failed(String),
}

/// Fetches `urls` (each with up to `attempts` tries), `parallel` at a time, reading each
/// body to its end; calls `done` as each one finishes.
pub async fn fetch(
    urls: Vec<String>,
    parallel: usize,
    attempts: u32,
    mut done: impl FnMut(&str, &Fetched),
) -> Vec<(String, Fetched)> {
    let http = match reqwest::Client::builder()
        .connect_timeout(TIMEOUT)
        .read_timeout(TIMEOUT)
        .build()
    {
        Ok(http) => Arc::new(http),
        Err(error) => {
            let error = Fetched::Failed(format!("cannot make an HTTP client: {error}"));
            return urls.into_iter().map(|url| (url, error.clone())).collect();
        }
    };
    let mut results = futures_util::stream::iter(urls)
        .map(|url| {
            let http = Arc::clone(&http);
            async move {
                let mut outcome = Fetched::Failed("not tried".to_owned());
                for _ in 0..attempts.max(1) {
                    outcome = fetch_one(&http, &url).await;
                    if matches!(outcome, Fetched::Done(_)) {
                        break;
                    }
                }
                (url, outcome)
            }
        })
        .buffer_unordered(parallel.max(1));
    let mut all = Vec::new();
    while let Some((url, outcome)) = results.next().await {
        done(&url, &outcome);
        all.push((url, outcome));
    }
    all
}

/// One GET, read to its end.
async fn fetch_one(http: &reqwest::Client, url: &str) -> Fetched {
    let response = match http.get(url).send().await {
        Ok(response) => response,
        Err(error) => return Fetched::Failed(error.to_string()),
    };
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        return Fetched::Failed(format!("{status}: {}", text.trim()));
    }
    let mut size = 0u64;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(chunk) => size += chunk.len() as u64,
            Err(error) => return Fetched::Failed(format!("the download broke off: {error}")),
        }
    }
    Fetched::Done(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_cover_the_architectures_meteor_would_download() {
        let linux = ["os.linux.x86_64".to_owned()];
        assert!(covers("os+web.browser+web.cordova", &linux));
        assert!(covers("web.browser+web.cordova", &linux));
        assert!(covers("os.linux.x86_64+web.browser", &linux));
        assert!(!covers("os.osx.x86_64+web.browser", &linux));
        assert!(covers("os.osx.x86_64+web.browser", &[]));
    }
}
