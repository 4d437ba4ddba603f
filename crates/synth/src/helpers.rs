//! Plan helpers: random streams, ids, hashes, names, version and release strings.

use std::collections::HashSet;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::model::{Pick, Release, Track, User, Ver};
use crate::params::{
    ADJECTIVES, BLANK_HASH, BLANK_TREE_SINCE, CREATION_WEIGHTS, DAY_MS, DOT_SUFFIXES, EPOCH_END,
    EPOCH_START, ID_ALPHABET, LAST_PUBLISH, METEOR_SERIES, OTHER_TRACKS, Params, RELEASES_FROM,
    SENTENCES, STREAM_VERSIONS, SYLLABLES, VERSION_COUNT_RANGES, VERSION_COUNT_WEIGHTS, WORDS,
};

/// A fresh ChaCha8 stream: the same `(key, kind, n)` always gives the same numbers.
pub(crate) fn stream(key: &[u8; 32], kind: u64, n: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::from_seed(*key);
    rng.set_stream(kind + n);
    rng
}

/// A 17-character id like Meteor's `Random.id()`.
pub(crate) fn meteor_id(rng: &mut ChaCha8Rng) -> String {
    (0..17)
        .map(|_| ID_ALPHABET[rng.random_range(0..ID_ALPHABET.len())] as char)
        .collect()
}

/// A SHA-256-shaped base64 string (random: nobody verifies these, spec §8.1).
pub(crate) fn hash(rng: &mut ChaCha8Rng) -> String {
    let mut bytes = [0u8; 32];
    rng.fill_bytes(&mut bytes);
    BASE64.encode(bytes)
}

/// A `treeHash`: blank once Meteor 3 tools published (spec §8.2), random before.
pub(crate) fn tree_hash(rng: &mut ChaCha8Rng, t: i64) -> String {
    if t >= BLANK_TREE_SINCE {
        BLANK_HASH.to_string()
    } else {
        hash(rng)
    }
}

/// An index below `n` that favours small ones, for popularity skew.
pub(crate) fn skewed(rng: &mut ChaCha8Rng, n: usize) -> usize {
    let high = rng.random_range(0..n);
    rng.random_range(0..=high)
}

/// An index into `weights`, chosen in proportion to them.
pub(crate) fn weighted(rng: &mut ChaCha8Rng, weights: &[u32]) -> usize {
    let mut roll = rng.random_range(0..weights.iter().sum::<u32>());
    for (k, &weight) in weights.iter().enumerate() {
        if roll < weight {
            return k;
        }
        roll -= weight;
    }
    weights.len() - 1
}

pub(crate) fn pick<'a>(rng: &mut ChaCha8Rng, items: &[&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}

/// `lastUpdated` for something published at `t`: usually `t`, but sometimes a later
/// migration instant that many records share, so sync paging meets big ties.
pub(crate) fn touched(migrations: &[i64], rng: &mut ChaCha8Rng, t: i64) -> i64 {
    migrations
        .iter()
        .copied()
        .find(|&m| m > t && rng.random_ratio(1, 25))
        .unwrap_or(t)
}

/// `n` sorted instants in `[from, until)`, about one in twenty equal to the previous.
fn sorted_times(rng: &mut ChaCha8Rng, n: usize, from: i64, until: i64) -> Vec<i64> {
    let mut times: Vec<i64> = (0..n).map(|_| rng.random_range(from..until)).collect();
    times.sort_unstable();
    for k in 1..times.len() {
        if rng.random_ratio(1, 20) {
            times[k] = times[k - 1];
        }
    }
    times
}

/// When a community package is created, weighted by year.
pub(crate) fn creation_time(rng: &mut ChaCha8Rng) -> i64 {
    let slot_len = (LAST_PUBLISH - EPOCH_START) / CREATION_WEIGHTS.len() as i64;
    let slot = weighted(rng, &CREATION_WEIGHTS) as i64;
    EPOCH_START + slot * slot_len + rng.random_range(0..slot_len)
}

/// `mdg` (index 0, maintainer of core packages and releases) and `n - 1` others.
pub(crate) fn make_users(rng: &mut ChaCha8Rng, n: usize) -> Vec<User> {
    let mut taken: HashSet<String> = HashSet::from(["mdg".to_string()]);
    let mut users = vec![User {
        name: "mdg".to_string(),
        id: meteor_id(rng),
    }];
    while users.len() < n {
        let mut name = String::new();
        for _ in 0..rng.random_range(2..=4) {
            name.push_str(pick(rng, &SYLLABLES));
        }
        if rng.random_ratio(1, 10) {
            name.push('-');
            name.push_str(pick(rng, &SYLLABLES));
            name.push_str(pick(rng, &SYLLABLES));
        }
        if rng.random_ratio(1, 4) {
            name.push_str(&rng.random_range(1..100u32).to_string());
        }
        if taken.insert(name.clone()) {
            users.push(User {
                name,
                id: meteor_id(rng),
            });
        }
    }
    users
}

/// A fresh `user:name` package name; also says whether it contains a dot.
pub(crate) fn community_name(
    rng: &mut ChaCha8Rng,
    user: &str,
    taken: &mut HashSet<String>,
) -> (String, bool) {
    loop {
        let mut base = pick(rng, &WORDS).to_string();
        if rng.random_ratio(2, 5) {
            base.push('-');
            base.push_str(pick(rng, &WORDS));
        }
        let dotted = rng.random_ratio(3, 50);
        if dotted {
            base.push_str(pick(rng, &DOT_SUFFIXES));
        } else if rng.random_ratio(1, 10) {
            base.push_str(&rng.random_range(2..10u32).to_string());
        }
        let name = format!("{user}:{base}");
        if taken.insert(name.clone()) {
            return (name, dotted);
        }
    }
}

/// The METEOR track's release versions, oldest first: per series, alphas, betas and
/// release candidates, the final release, then patch releases (each maybe preceded by
/// candidates) and the odd four-part hotfix (`1.4.0.1`). Pre-1.0 releases spell
/// pre-release numbers without a dot (`0.9-rc1`), later ones with (`2.8-rc.0`).
fn meteor_release_versions(p: &Params, rng: &mut ChaCha8Rng) -> Vec<String> {
    let mut out = Vec::new();
    let series = METEOR_SERIES
        .iter()
        .flat_map(|&(major, first, last)| (first..=last).map(move |minor| (major, minor)));
    for (major, minor) in series.skip(p.series_stride - 1).step_by(p.series_stride) {
        let base = format!("{major}.{minor}");
        let dot = if major == 0 { "" } else { "." };
        for (tag, &max) in ["alpha", "beta", "rc"].iter().zip(&p.prerelease_max) {
            for n in 0..rng.random_range(0..=max) {
                out.push(format!("{base}-{tag}{dot}{n}"));
            }
        }
        out.push(base.clone());
        if rng.random_ratio(1, 6) {
            out.push(format!("{base}.0.1"));
        }
        for patch in 1..=rng.random_range(0..=p.patches_max) {
            let version = format!("{base}.{patch}");
            for n in 0..rng.random_range(0..=p.patch_rc_max) {
                out.push(format!("{version}-rc{dot}{n}"));
            }
            out.push(version.clone());
            if rng.random_ratio(1, 6) {
                out.push(format!("{version}.1"));
            }
        }
    }
    out
}

/// The release tracks, and all release versions (METEOR's first) with their count.
pub(crate) fn make_releases(p: &Params, rng: &mut ChaCha8Rng) -> (Vec<Track>, Vec<Release>, usize) {
    let versions = meteor_release_versions(p, rng);
    let times = sorted_times(rng, versions.len(), RELEASES_FROM, LAST_PUBLISH);
    let mut releases: Vec<Release> = versions
        .into_iter()
        .zip(times)
        .enumerate()
        .map(|(meteor, (version, published))| Release {
            track: 0,
            version,
            id: meteor_id(rng),
            published,
            meteor,
            patch: None,
        })
        .collect();
    let patches = patch_releases(&releases);
    for (release, patch) in releases.iter_mut().zip(patches) {
        release.patch = patch;
    }
    let meteor_count = releases.len();
    let mut tracks = vec![Track {
        name: "METEOR",
        description: "The Official Meteor Distribution",
        id: meteor_id(rng),
    }];
    for (&(name, description, from, until), &count) in OTHER_TRACKS.iter().zip(&p.other_releases) {
        tracks.push(Track {
            name,
            description,
            id: meteor_id(rng),
        });
        for (k, published) in sorted_times(rng, count, from, until)
            .into_iter()
            .enumerate()
        {
            let base = format!("0.{}.{}", 1 + k / 6, k % 6);
            let version = if k % 4 == 3 {
                format!("{base}-preview.1")
            } else {
                base
            };
            let meteor = releases[..meteor_count]
                .partition_point(|r| r.published <= published)
                .saturating_sub(1);
            releases.push(Release {
                track: tracks.len() - 1,
                version,
                id: meteor_id(rng),
                published,
                meteor,
                patch: None,
            });
        }
    }
    (tracks, releases, meteor_count)
}

/// For each final release, the newest final release of the same series when that is a
/// later one: its `patchReleaseVersion`.
fn patch_releases(releases: &[Release]) -> Vec<Option<usize>> {
    let series = |r: usize| {
        let numbers = releases[r].version.split('-').next().unwrap_or_default();
        let mut parts = numbers.split('.');
        (parts.next(), parts.next())
    };
    (0..releases.len())
        .map(|i| {
            if !is_final(&releases[i].version) {
                return None;
            }
            (i..releases.len())
                .take_while(|&j| series(j) == series(i))
                .filter(|&j| is_final(&releases[j].version))
                .last()
                .filter(|&j| j != i)
        })
        .collect()
}

/// A community package's versions, oldest first, derived from the package's own stream:
/// a long-tailed count, a first version at creation, then mostly patch bumps with some
/// minor and major ones, pre-release runs (`1.3.0-beta.0`, …, `1.3.0`) and `_N` wraps.
pub(crate) fn community_versions(
    key: &[u8; 32],
    p: &Params,
    index: usize,
    created: i64,
) -> Vec<Ver> {
    let mut rng = stream(key, STREAM_VERSIONS, index as u64);
    let bucket = weighted(&mut rng, &VERSION_COUNT_WEIGHTS);
    let (low, high) = VERSION_COUNT_RANGES[bucket];
    let n = rng.random_range(low.min(p.version_max)..=high.min(p.version_max)) as usize;
    let lifetime = match rng.random_range(0..10) {
        0..3 => rng.random_range(1..=7 * DAY_MS),
        3..7 => rng.random_range(DAY_MS..=365 * DAY_MS),
        _ => rng.random_range(30 * DAY_MS..=6 * 365 * DAY_MS),
    };
    let until = (created + lifetime).min(LAST_PUBLISH).max(created);
    let mut times: Vec<i64> = (1..n).map(|_| rng.random_range(created..=until)).collect();
    times.sort_unstable();
    let mut current = [Sem(0, 0, 1), Sem(0, 1, 0), Sem(1, 0, 0)][weighted(&mut rng, &[10, 25, 65])];
    let mut wrap = 0;
    let mut strings = vec![current.to_string()];
    while strings.len() < n {
        let roll = rng.random_range(0..100);
        if roll < 8 && n - strings.len() >= 2 {
            let target = current.next(&mut rng);
            let tag = pick(&mut rng, &["rc", "beta", "alpha"]);
            let run = rng.random_range(1..=4).min(n - strings.len() - 1);
            for k in 0..run {
                strings.push(format!("{target}-{tag}.{k}"));
            }
            strings.push(target.to_string());
            current = target;
            wrap = 0;
        } else if roll < 13 {
            wrap += 1;
            strings.push(format!("{current}_{wrap}"));
        } else {
            current = current.next(&mut rng);
            wrap = 0;
            strings.push(current.to_string());
        }
    }
    strings
        .into_iter()
        .zip(std::iter::once(created).chain(times))
        .map(|(version, published)| Ver {
            version,
            id: meteor_id(&mut rng),
            published,
            release: None,
        })
        .collect()
}

/// Up to four final versions spread over a package's history: first, two middle, last.
pub(crate) fn spread_picks(versions: &[Ver]) -> Vec<Pick> {
    let finals: Vec<&Ver> = versions.iter().filter(|v| is_final(&v.version)).collect();
    let n = finals.len();
    let mut chosen: Vec<usize> = vec![0, n / 3, 2 * n / 3, n.saturating_sub(1)];
    chosen.dedup();
    chosen
        .into_iter()
        .filter_map(|k| finals.get(k))
        .map(|v| Pick {
            version: v.version.clone(),
            published: v.published,
        })
        .collect()
}

/// `major.minor.patch`, for building version strings.
#[derive(Clone, Copy)]
pub(crate) struct Sem(pub(crate) u32, pub(crate) u32, pub(crate) u32);

impl Sem {
    /// The next version: mostly a patch bump, sometimes minor, rarely major.
    pub(crate) fn next(self, rng: &mut ChaCha8Rng) -> Sem {
        match rng.random_range(0..100) {
            0..75 => Sem(self.0, self.1, self.2 + 1),
            75..97 => Sem(self.0, self.1 + 1, 0),
            _ => Sem(self.0 + 1, 0, 0),
        }
    }
}

impl fmt::Display for Sem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

pub(crate) fn is_final(version: &str) -> bool {
    !version.contains('-')
}

/// The pre-release part of a release version (`rc.0` of `2.8-rc.0`).
pub(crate) fn prerelease(version: &str) -> Option<&str> {
    version.split_once('-').map(|(_, pre)| pre)
}

/// The `meteor-tool` version a release ships, a valid package version named after the
/// release: `3.0` → `3.0.0`, `2.8-rc.0` → `2.8.0-rc.0`, `1.4.0.1` → `1.4.0_1`.
pub(crate) fn tool_version(release: &str) -> String {
    let (numbers, pre) = match release.split_once('-') {
        Some((numbers, pre)) => (numbers, Some(pre)),
        None => (release, None),
    };
    let mut parts = numbers.split('.');
    let mut version = format!(
        "{}.{}.{}",
        parts.next().unwrap_or("0"),
        parts.next().unwrap_or("0"),
        parts.next().unwrap_or("0")
    );
    if let Some(pre) = pre {
        version.push('-');
        version.push_str(pre);
    }
    if let Some(wrap) = parts.next() {
        version.push('_');
        version.push_str(wrap);
    }
    version
}

/// Meteor's `defaultOrderKeyForReleaseVersion` (tools/utils/utils.js): numbers padded
/// to four digits, then `!` + the pre-release tag padded with `!` to 15 + its number
/// padded to four, then `$`; `3.0.4` → `0003.0000.0004$`,
/// `2.8-rc.0` → `0002.0008!rc.!!!!!!!!!!!!0000$`. `None` where Meteor gives null.
pub(crate) fn order_key(version: &str) -> Option<String> {
    let (numbers, pre) = match version.split_once('-') {
        Some((numbers, pre)) => (numbers, Some(pre)),
        None => (version, None),
    };
    let is_number = |s: &str, max: usize| {
        (1..=max).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_digit())
            && (s.len() == 1 || !s.starts_with('0'))
    };
    let mut key = String::new();
    for (k, part) in numbers.split('.').enumerate() {
        if !is_number(part, 4) {
            return None;
        }
        if k > 0 {
            key.push('.');
        }
        key.push_str(&format!("{part:0>4}"));
    }
    if let Some(pre) = pre {
        let (tag, number) =
            pre.split_at(pre.find(|c: char| c.is_ascii_digit()).unwrap_or(pre.len()));
        let tag_ok = (1..=15).contains(&tag.len())
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphabetic() || b == b'-' || b == b'.');
        if !tag_ok || !(number.is_empty() || is_number(number, 4)) {
            return None;
        }
        key.push('!');
        key.push_str(&format!("{tag:!<15}"));
        if !number.is_empty() {
            key.push_str(&format!("{number:0>4}"));
        }
    }
    key.push('$');
    Some(key)
}

/// `meteor/15` in 2012 rising to `meteor/34` by 2026.
pub(crate) fn compiler_version(t: i64) -> String {
    let step = ((t - EPOCH_START).max(0) * 20 / (EPOCH_END - EPOCH_START)).min(19);
    format!("meteor/{}", 15 + step)
}

/// A package name as a URL path segment (`user:pkg` → `user_pkg`, as in tarball names).
pub(crate) fn slug(name: &str) -> String {
    name.replace(':', "_")
}

/// `flow-router` → `FlowRouter`, `moment.js` → `MomentJs`: export names.
pub(crate) fn camel_case(base: &str) -> String {
    base.split(['-', '.'])
        .flat_map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase())
                .into_iter()
                .chain(chars)
        })
        .collect()
}

/// A one-line summary of at most 100 characters.
pub(crate) fn describe(rng: &mut ChaCha8Rng, base: &str, core: bool) -> String {
    let words = base.replace(['-', '.'], " ");
    let adjective = pick(rng, &ADJECTIVES);
    let mut text = if core {
        format!("The {words} package, part of the Meteor distribution")
    } else {
        match rng.random_range(0..4) {
            0 => format!("{adjective} {words} for Meteor"),
            1 => format!("{adjective} {words} package with reactive data sources"),
            2 => format!("Wrapper around {words} for Meteor apps"),
            _ => format!(
                "Meteor integration for {words}: {} and easy to use",
                adjective.to_lowercase()
            ),
        }
    };
    text.truncate(100);
    text
}

/// A README excerpt: heading, summary and a few sentences with quotes, backslashes and
/// sometimes non-ASCII text, so escaping is exercised.
pub(crate) fn long_text(rng: &mut ChaCha8Rng, name: &str, description: &str) -> String {
    let mut text = format!("# {name}\n\n{description}.\n");
    for _ in 0..rng.random_range(1..=4) {
        text.push('\n');
        text.push_str(pick(rng, &SENTENCES));
    }
    if rng.random_ratio(1, 20) {
        text.push_str(
            "\n\nDocumentation en français — naïve café ✓, 日本語のドキュメントもあります。",
        );
    }
    text
}
