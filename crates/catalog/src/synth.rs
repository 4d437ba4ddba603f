//! Deterministic synthetic Meteor catalogs, for `exosphere gen-catalog`, benchmarks and
//! demos.
//!
//! Benchmarks and demos need a catalog shaped like the real package server
//! (packages.meteor.com) without shipping or scraping real data. [`generate`] writes one
//! in the NDJSON dump format (`shared/spec/catalog-dump.md`): every record carries the
//! fields of spec §3.8 and the awkward corners of real data are there on purpose —
//! core names without a `user:` prefix, dotted package names and therefore dotted
//! dependency keys, pre-release and `_N` wrap versions, per-OS binary builds,
//! `isobuild:` pseudo-dependencies, null constraints, empty dependency maps, and many
//! records sharing one `lastUpdated` millisecond (which sync paging must page through).
//!
//! The output is a pure function of `(scale, seed)`: every random choice comes from a
//! ChaCha8 stream keyed by the seed, nothing iterates a hash map and nothing reads the
//! clock, so the bytes are identical across runs and platforms. Generation streams: only
//! a plan is kept in memory (users, package names and creation dates, a few versions of
//! each package that dependencies and stats point at, the release list, and the core
//! packages' versions, which releases drive). Each community package's versions are
//! re-derived from their own stream by the pass that writes versions and again by the
//! pass that writes builds, so memory stays far below the size of the output.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Days, Utc};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};

/// Which real-world shape to imitate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scale {
    /// The size of packages.meteor.com: about 15,000 packages, 150,000 versions,
    /// 200,000 builds and 1,500 release versions. For benchmarks.
    Atmosphere,
    /// About 200 packages and 1,500 versions: quick enough for tests and demos.
    Small,
}

impl Scale {
    /// The spelling used on the command line.
    fn as_str(self) -> &'static str {
        match self {
            Scale::Atmosphere => "atmosphere",
            Scale::Small => "small",
        }
    }
}

impl fmt::Display for Scale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scale {
    type Err = String;

    fn from_str(s: &str) -> Result<Scale, String> {
        match s {
            "atmosphere" => Ok(Scale::Atmosphere),
            "small" => Ok(Scale::Small),
            other => Err(format!(
                "unknown scale {other:?} (expected \"atmosphere\" or \"small\")"
            )),
        }
    }
}

/// What [`generate`] wrote, so the CLI can report it and callers can size their work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SynthSummary {
    /// `packages` records written.
    pub packages: u64,
    /// `versions` records written.
    pub versions: u64,
    /// `builds` records written.
    pub builds: u64,
    /// `releaseTracks` records written.
    pub release_tracks: u64,
    /// `releaseVersions` records written.
    pub release_versions: u64,
    /// `stats` rows written.
    pub stats_rows: u64,
    /// Bytes written, newlines included.
    pub bytes: u64,
}

/// Writes the synthetic catalog for `(scale, seed)` to `out` as NDJSON dump lines, in the
/// order packages, versions, builds, release tracks, release versions, stats rows.
///
/// The same `(scale, seed)` always gives the same bytes. Output is buffered internally in
/// small chunks and `out` is flushed at the end; the catalog is never held in memory.
pub fn generate(scale: Scale, seed: u64, out: &mut dyn Write) -> io::Result<SynthSummary> {
    let plan = Plan::new(scale, seed);
    let mut sink = Sink::new(out);
    plan.write_packages(&mut sink)?;
    plan.write_versions(&mut sink)?;
    plan.write_builds(&mut sink)?;
    plan.write_tracks(&mut sink)?;
    plan.write_releases(&mut sink)?;
    plan.write_stats(&mut sink)?;
    sink.finish()
}

// ---------------------------------------------------------------------------------------
// Shape parameters and fixed vocabulary.

/// How big each part of the catalog is at one [`Scale`].
struct Params {
    /// Core (unprefixed, release-driven) packages: a prefix of [`CORE_NAMES`].
    core: usize,
    /// `user:name` packages.
    community: usize,
    /// Users, `mdg` included.
    users: usize,
    /// Use every `series_stride`-th series of [`METEOR_SERIES`].
    series_stride: usize,
    /// Most alpha, beta and rc releases before a series' first final release.
    prerelease_max: [u32; 3],
    /// Most patch releases per series.
    patches_max: u32,
    /// Most release candidates before each patch release.
    patch_rc_max: u32,
    /// Release versions of each of [`OTHER_TRACKS`].
    other_releases: [usize; 2],
    /// Chance (‰) that a core package gets a new version in a given release.
    core_bump_permille: u32,
    /// Most versions of one community package.
    version_max: u32,
    /// Share (‰) of community packages with per-OS binary builds.
    binary_permille: u32,
    /// Moments at which a "migration" touched many records' `lastUpdated` at once.
    migrations: usize,
    /// Days of stats rows, ending the day before [`EPOCH_END`].
    stats_days: u64,
    /// Chance (‰) that a community package has stats rows on a given day.
    stats_permille: u32,
}

impl Params {
    fn for_scale(scale: Scale) -> Params {
        match scale {
            Scale::Atmosphere => Params {
                core: CORE_NAMES.len(),
                community: 15_000 - CORE_NAMES.len(),
                users: 5_000,
                series_stride: 1,
                prerelease_max: [12, 14, 18],
                patches_max: 11,
                patch_rc_max: 5,
                other_releases: [30, 20],
                core_bump_permille: 50,
                version_max: 400,
                binary_permille: 170,
                migrations: 6,
                stats_days: 60,
                stats_permille: 100,
            },
            Scale::Small => Params {
                core: 24,
                community: 176,
                users: 70,
                series_stride: 7,
                prerelease_max: [0, 1, 2],
                patches_max: 2,
                patch_rc_max: 0,
                other_releases: [2, 1],
                core_bump_permille: 300,
                version_max: 60,
                binary_permille: 140,
                migrations: 3,
                stats_days: 7,
                stats_permille: 300,
            },
        }
    }
}

/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;
/// 2012-01-01: the earliest date in a synthetic catalog.
const EPOCH_START: i64 = 1_325_376_000_000;
/// 2026-01-01: every generated date is before this.
const EPOCH_END: i64 = 1_767_225_600_000;
/// Nothing is first published in the last 30 days, so builds published days after
/// their version still come before [`EPOCH_END`].
const LAST_PUBLISH: i64 = EPOCH_END - 30 * DAY_MS;
/// 2012-04-01: the first METEOR release.
const RELEASES_FROM: i64 = 1_333_238_400_000;
/// 2015-01-01 to 2025-06-01: when migrations touched `lastUpdated` in bulk.
const MIGRATIONS_FROM: i64 = 1_420_070_400_000;
const MIGRATIONS_UNTIL: i64 = 1_748_736_000_000;
/// 2015-09-01: `isobuild:` pseudo-packages appear in dependency maps.
const ISOBUILD_SINCE: i64 = 1_441_065_600_000;
/// 2015-10-01: Windows builds of binary packages.
const WINDOWS_SINCE: i64 = 1_443_657_600_000;
/// 2018-06-01: Meteor 1.7 adds the `web.browser.legacy` architecture.
const LEGACY_BROWSER_SINCE: i64 = 1_527_811_200_000;
/// 2022-01-01: Apple Silicon builds.
const OSX_ARM64_SINCE: i64 = 1_640_995_200_000;
/// 2024-01-01: Linux ARM builds.
const LINUX_AARCH64_SINCE: i64 = 1_704_067_200_000;
/// 2024-07-15: Meteor 3.0 tools publish the blank `treeHash` (spec §8.2).
const BLANK_TREE_SINCE: i64 = 1_721_001_600_000;
/// Base64 SHA-256 of nothing: Meteor 3 tree hashes and empty READMEs.
const BLANK_HASH: &str = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
/// Alphabet of Meteor's `Random.id()`.
const ID_ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz";

/// Core package names; `Small` uses the first 24. Index 0 is `meteor`, 1 `meteor-tool`.
#[rustfmt::skip]
const CORE_NAMES: [&str; 80] = [
    "meteor", "meteor-tool", "ecmascript", "mongo", "tracker", "ddp", "webapp", "check",
    "ejson", "random", "underscore", "reactive-var", "blaze", "templating", "jquery",
    "accounts-base", "babel-compiler", "caching-compiler", "modules", "promise",
    "minimongo", "session", "email", "fetch", "ddp-client", "ddp-server", "reactive-dict",
    "spacebars", "logging", "babel-runtime", "ecmascript-runtime", "es5-shim",
    "standard-minifier-css", "standard-minifier-js", "shell-server", "hot-code-push",
    "autoupdate", "reload", "mobile-experience", "launch-screen", "accounts-password",
    "accounts-ui", "service-configuration", "oauth", "oauth2", "github-oauth",
    "google-oauth", "facebook-oauth", "http", "base64", "sha", "srp", "localstorage",
    "id-map", "ordered-dict", "binary-heap", "callback-hook", "geojson-utils",
    "diff-sequence", "mongo-id", "allow-deny", "insecure", "autopublish", "static-html",
    "dynamic-import", "typescript", "less", "boilerplate-generator", "routepolicy",
    "force-ssl", "browser-policy", "tinytest", "test-helpers", "package-version-parser",
    "constraint-solver", "inter-process-messaging", "hot-module-replacement",
    "react-fast-refresh", "socket-stream-client", "retry",
];
/// Index of `meteor` in [`CORE_NAMES`].
const METEOR: usize = 0;
/// Index of `meteor-tool` in [`CORE_NAMES`].
const TOOL: usize = 1;

/// METEOR release series, oldest first: each major version with its first and last
/// minor version (`0.9`, `1.0` to `1.12`, `2.0` to `2.16`, `3.0` to `3.3`).
const METEOR_SERIES: [(u32, u32, u32); 4] = [(0, 9, 9), (1, 0, 12), (2, 0, 16), (3, 0, 3)];

/// The small release tracks besides METEOR: name, description, publication window.
const OTHER_TRACKS: [(&str, &str, i64, i64); 2] = [
    (
        "WINDOWS-PREVIEW",
        "Preview of Meteor on Windows",
        1_420_070_400_000, // 2015-01-01
        1_443_657_600_000, // 2015-10-01
    ),
    (
        "CORDOVA-PREVIEW",
        "Preview of Meteor's Cordova support",
        1_401_580_800_000, // 2014-06-01
        1_412_121_600_000, // 2014-10-01
    ),
];

/// Weights of package creation per year, 2012 to 2025 (Atmosphere peaked in 2015-16).
const CREATION_WEIGHTS: [u32; 14] = [1, 2, 8, 14, 14, 11, 8, 6, 5, 4, 3, 3, 3, 3];

/// Community packages' version counts: weights (‰) and ranges, a long tail.
const VERSION_COUNT_WEIGHTS: [u32; 6] = [555, 240, 120, 63, 20, 2];
const VERSION_COUNT_RANGES: [(u32, u32); 6] =
    [(1, 3), (4, 8), (9, 20), (21, 50), (51, 150), (151, 400)];

/// Building blocks of usernames.
#[rustfmt::skip]
const SYLLABLES: [&str; 30] = [
    "ka", "to", "mi", "ra", "ne", "lo", "su", "vi", "da", "ze", "po", "gu", "fe", "ri", "no",
    "ba", "che", "lu", "mo", "ta", "xi", "an", "el", "or", "qu", "is", "ja", "de", "hy", "wo",
];

/// Building blocks of community package names.
#[rustfmt::skip]
const WORDS: [&str; 64] = [
    "router", "collection2", "autoform", "tabular", "bootstrap", "accounts", "react", "vue",
    "svelte", "charts", "moment", "animate", "font-awesome", "i18n", "files", "uploads",
    "cron", "jobs", "logger", "cache", "redis", "graphql", "apollo", "stripe", "paypal",
    "mailer", "markdown", "editor", "slider", "modal", "toast", "notifications", "push",
    "cordova", "maps", "leaflet", "select", "datepicker", "validation", "schema", "roles",
    "admin", "dashboard", "analytics", "seo", "sitemap", "storage", "s3", "monitor",
    "mocha", "chai", "lodash", "ramda", "numeral", "helpers", "utils", "layout", "socket",
    "pagination", "publish", "reactive", "table", "chart", "picker",
];

/// Suffixes that put dots in package names, as in `user:moment.js`.
const DOT_SUFFIXES: [&str; 4] = [".js", ".css", ".io", ".ui"];

/// Words for package summaries.
#[rustfmt::skip]
const ADJECTIVES: [&str; 12] = [
    "Simple", "Reactive", "Fast", "Lightweight", "Flexible", "Declarative", "Isomorphic",
    "Tiny", "Complete", "Minimal", "Customizable", "Secure",
];

/// README sentences, with quotes and backslashes that JSON must escape.
const SENTENCES: [&str; 10] = [
    "Works on the server and in the browser.",
    "Configure it in \"settings.json\" under the \"public\" key.",
    "See the examples folder for a complete app.",
    "Pull requests are welcome; please add tests.",
    "Requires Meteor 1.4 or later.",
    "Paths such as C:\\meteor\\app are handled on Windows.",
    "Data sources are reactive, so templates update automatically.",
    "The API mirrors the upstream library, with Meteor-friendly defaults.",
    "Use `meteor add` to install it, then import it from your client code.",
    "Licensed under MIT.",
];

/// Names of a package's exports after the first (`AutoForm`, `AutoFormHelpers`, …).
const EXPORT_SUFFIXES: [&str; 5] = ["Helpers", "Config", "Schema", "Utils", "Api"];

/// ChaCha streams: one for the plan, and one per package (or day) for each pass.
const STREAM_PLAN: u64 = 0;
const STREAM_VERSIONS: u64 = 1 << 40;
const STREAM_DETAIL: u64 = 2 << 40;
const STREAM_BUILDS: u64 = 3 << 40;
const STREAM_RELEASES: u64 = 4 << 40;
const STREAM_STATS: u64 = 5 << 40;

/// Flush the line buffer to the output once it holds this much.
const FLUSH_BYTES: usize = 1 << 16;

// ---------------------------------------------------------------------------------------
// The plan: everything later passes need to agree on, and nothing more.

/// A publisher: package maintainers, `publishedBy`, `builtBy`.
struct User {
    name: String,
    id: String,
}

/// How a package record shows its (optional) homepage.
enum Homepage {
    Absent,
    Null,
    Url,
}

/// What the passes need to know about one package without re-deriving it.
struct Package {
    name: String,
    id: String,
    /// Indices into `Plan::users`; versions are published by one of them.
    maintainers: Vec<usize>,
    homepage: Homepage,
    /// First version's publication; community packages are numbered in this order.
    created: i64,
    /// Publishes one build per host OS instead of one `os+web…` build.
    binary: bool,
    /// Final versions (with their dates) that dependencies and stats rows point at.
    picks: Vec<Pick>,
    last_updated: i64,
}

/// A version dependencies and stats rows may name, with when it appeared.
struct Pick {
    version: String,
    published: i64,
}

/// The identity of one package version, as every pass derives it.
#[derive(Clone)]
struct Ver {
    version: String,
    id: String,
    published: i64,
    /// For core packages, the METEOR release (index) that shipped this version.
    release: Option<usize>,
}

/// One release version of any track.
struct Release {
    /// Index into `Plan::tracks`.
    track: usize,
    version: String,
    id: String,
    published: i64,
    /// The METEOR release (index) whose tool and core packages this release ships.
    meteor: usize,
    /// The newest patch release of the same series, if newer than this one.
    patch: Option<usize>,
}

/// A release track (`METEOR` and the small preview tracks).
struct Track {
    name: &'static str,
    description: &'static str,
    id: String,
}

/// The part of a catalog that must stay in memory for the passes to agree: small next
/// to the output (about 14 MB at atmosphere scale).
struct Plan {
    params: Params,
    key: [u8; 32],
    users: Vec<User>,
    migrations: Vec<i64>,
    tracks: Vec<Track>,
    /// METEOR releases first (index = METEOR release index), then the other tracks'.
    releases: Vec<Release>,
    meteor_releases: usize,
    /// Indices of final METEOR releases, in publication order.
    meteor_finals: Vec<usize>,
    /// Core packages first, then community packages in creation order.
    packages: Vec<Package>,
    /// Versions of each core package (they follow the releases, so they are planned).
    core_versions: Vec<Vec<Ver>>,
    /// Core package indices sorted by name, `meteor-tool` left out: release package maps.
    core_by_name: Vec<usize>,
    /// Indices of packages with a dot in their name.
    dotted: Vec<usize>,
}

impl Plan {
    fn new(scale: Scale, seed: u64) -> Plan {
        let params = Params::for_scale(scale);
        let key = ChaCha8Rng::seed_from_u64(seed).get_seed();
        let mut rng = stream(&key, STREAM_PLAN, 0);
        let users = make_users(&mut rng, params.users);
        let gap = (MIGRATIONS_UNTIL - MIGRATIONS_FROM) / params.migrations as i64;
        let migrations = (0..params.migrations as i64)
            .map(|k| MIGRATIONS_FROM + k * gap + rng.random_range(0..gap / 2))
            .collect();
        let (tracks, releases, meteor_releases) = make_releases(&params, &mut rng);
        let meteor_finals = (0..meteor_releases)
            .filter(|&r| is_final(&releases[r].version))
            .collect();
        let mut core_by_name: Vec<usize> = (0..params.core).filter(|&c| c != TOOL).collect();
        core_by_name.sort_by_key(|&c| CORE_NAMES[c]);
        let mut plan = Plan {
            params,
            key,
            users,
            migrations,
            tracks,
            releases,
            meteor_releases,
            meteor_finals,
            packages: Vec::new(),
            core_versions: Vec::new(),
            core_by_name,
            dotted: Vec::new(),
        };
        plan.add_core_packages(&mut rng);
        plan.add_community_packages(&mut rng);
        plan
    }

    fn add_core_packages(&mut self, rng: &mut ChaCha8Rng) {
        for (c, name) in CORE_NAMES[..self.params.core].iter().enumerate() {
            let versions = self.walk_core(c, rng);
            let created = versions.first().map_or(RELEASES_FROM, |v| v.published);
            let last = versions.last().map_or(created, |v| v.published);
            let last_updated = touched(&self.migrations, rng, last);
            let picks = versions
                .iter()
                .filter(|v| is_final(&v.version))
                .map(|v| Pick {
                    version: v.version.clone(),
                    published: v.published,
                })
                .collect();
            let homepage = if rng.random_ratio(1, 2) {
                Homepage::Url
            } else {
                Homepage::Null
            };
            self.packages.push(Package {
                name: (*name).to_string(),
                id: meteor_id(rng),
                maintainers: vec![0],
                homepage,
                created,
                binary: c == TOOL,
                picks,
                last_updated,
            });
            self.core_versions.push(versions);
        }
    }

    /// Versions of core package `c`, walking the METEOR releases: the package appears in
    /// some release and then gets a new version in some of the later ones, as a
    /// pre-release in pre-releases (`1.2.0-rc.1`) and final in the series' final release.
    /// `meteor-tool` gets a version in every release, named after it.
    fn walk_core(&self, c: usize, rng: &mut ChaCha8Rng) -> Vec<Ver> {
        let count = self.meteor_releases;
        let first = if c < 8 {
            0
        } else {
            rng.random_range(0..(count * 6 / 10).max(1))
        };
        let permille = self.params.core_bump_permille * rng.random_range(50..=150) / 100;
        let mut current =
            [Sem(1, 0, 0), Sem(1, 0, 0), Sem(0, 9, 0), Sem(2, 0, 0)][rng.random_range(0..4)];
        let mut pending: Option<Sem> = None;
        let mut versions = Vec::new();
        for r in first..count {
            let release = &self.releases[r];
            let version = if c == TOOL {
                Some(tool_version(&release.version))
            } else {
                let fresh = versions.is_empty();
                let bump = fresh || rng.random_range(0..1000) < permille;
                match prerelease(&release.version) {
                    None => match pending.take() {
                        Some(target) => {
                            current = target;
                            Some(target.to_string())
                        }
                        None if bump => {
                            if !fresh {
                                current = current.next(rng);
                            }
                            Some(current.to_string())
                        }
                        None => None,
                    },
                    Some(pre) if bump || (pending.is_some() && rng.random_ratio(1, 3)) => {
                        let target = *pending
                            .get_or_insert_with(|| if fresh { current } else { current.next(rng) });
                        Some(format!("{target}-{pre}"))
                    }
                    Some(_) => None,
                }
            };
            if let Some(version) = version {
                versions.push(Ver {
                    version,
                    id: meteor_id(rng),
                    published: release.published,
                    release: Some(r),
                });
            }
        }
        versions
    }

    fn add_community_packages(&mut self, rng: &mut ChaCha8Rng) {
        let mut created: Vec<i64> = (0..self.params.community)
            .map(|_| creation_time(rng))
            .collect();
        created.sort_unstable();
        let mut taken: HashSet<String> = CORE_NAMES.iter().map(|n| (*n).to_string()).collect();
        for created in created {
            let index = self.packages.len();
            let owner = 1 + skewed(rng, self.users.len() - 1);
            let (name, dotted) = community_name(rng, &self.users[owner].name, &mut taken);
            let mut maintainers = vec![owner];
            if rng.random_ratio(3, 20) {
                let other = 1 + rng.random_range(0..self.users.len() - 1);
                if other != owner {
                    maintainers.push(other);
                }
            }
            let homepage = match rng.random_range(0..10) {
                0..4 => Homepage::Url,
                4..7 => Homepage::Null,
                _ => Homepage::Absent,
            };
            let binary = rng.random_range(0..1000) < self.params.binary_permille;
            let id = meteor_id(rng);
            let versions = community_versions(&self.key, &self.params, index, created);
            let last = versions.last().map_or(created, |v| v.published);
            let last_updated = touched(&self.migrations, rng, last);
            if dotted {
                self.dotted.push(index);
            }
            self.packages.push(Package {
                name,
                id,
                maintainers,
                homepage,
                created,
                binary,
                picks: spread_picks(&versions),
                last_updated,
            });
        }
    }

    /// Core packages come first in `packages`.
    fn is_core(&self, package: usize) -> bool {
        package < self.params.core
    }

    /// All versions of a package, oldest first: planned for core packages, re-derived
    /// from the package's own stream for community packages.
    fn versions(&self, package: usize) -> Cow<'_, [Ver]> {
        match self.core_versions.get(package) {
            Some(versions) => Cow::Borrowed(versions),
            None => Cow::Owned(community_versions(
                &self.key,
                &self.params,
                package,
                self.packages[package].created,
            )),
        }
    }

    /// The picks of a package published at or before `t`.
    fn picks_before(&self, package: usize, t: i64) -> &[Pick] {
        let picks = &self.packages[package].picks;
        &picks[..picks.partition_point(|p| p.published <= t)]
    }

    /// The newest version of core package `c` shipped by METEOR release `r` or earlier.
    fn core_at(&self, c: usize, r: usize) -> Option<&Ver> {
        let versions = &self.core_versions[c];
        versions[..versions.partition_point(|v| v.release.is_some_and(|x| x <= r))].last()
    }

    /// The newest final METEOR release published at or before `t`.
    fn meteor_final_before(&self, t: i64) -> Option<&Release> {
        let n = self
            .meteor_finals
            .partition_point(|&r| self.releases[r].published <= t);
        n.checked_sub(1)
            .map(|k| &self.releases[self.meteor_finals[k]])
    }

    /// A user as records reference them: `{username, id}`.
    fn user(&self, index: usize) -> UserRef<'_> {
        let user = &self.users[index];
        UserRef {
            username: &user.name,
            id: &user.id,
        }
    }

    /// One of the package's maintainers, as `publishedBy` / `builtBy`.
    fn publisher(&self, package: &Package, rng: &mut ChaCha8Rng) -> UserRef<'_> {
        self.user(package.maintainers[rng.random_range(0..package.maintainers.len())])
    }

    // -----------------------------------------------------------------------------------
    // The passes, one per collection.

    fn write_packages(&self, sink: &mut Sink<'_>) -> io::Result<()> {
        for package in &self.packages {
            let slug = slug(&package.name);
            let doc = PackageDoc {
                id: &package.id,
                name: &package.name,
                maintainers: package.maintainers.iter().map(|&u| self.user(u)).collect(),
                homepage: match package.homepage {
                    Homepage::Absent => None,
                    Homepage::Null => Some(None),
                    Homepage::Url => Some(Some(format!("https://example.invalid/home/{slug}"))),
                },
                last_updated: Date(package.last_updated),
            };
            sink.record(Collection::Packages, &doc)?;
        }
        Ok(())
    }

    fn write_versions(&self, sink: &mut Sink<'_>) -> io::Result<()> {
        for (index, package) in self.packages.iter().enumerate() {
            let mut rng = stream(&self.key, STREAM_DETAIL, index as u64);
            let profile = Profile::new(self, index, &mut rng);
            let slug = slug(&package.name);
            let versions = self.versions(index);
            for (n, ver) in versions.iter().enumerate() {
                let t = ver.published;
                let legacy = t >= LEGACY_BROWSER_SINCE;
                let dependencies = self.dependencies(index, &profile, ver, &mut rng);
                let exports: Vec<ExportDoc<'_>> = profile
                    .exports
                    .iter()
                    .map(|(name, scope)| ExportDoc {
                        name,
                        architectures: scope.arches(legacy),
                    })
                    .collect();
                let release_name = match ver.release {
                    Some(r) => Some(&self.releases[r]),
                    None if rng.random_ratio(1, 30) => None,
                    None => self.meteor_final_before(t),
                }
                .map(|release| format!("METEOR@{}", release.version));
                let deprecated = profile.deprecated && n + 1 == versions.len();
                let doc = VersionDoc {
                    id: &ver.id,
                    package_name: &package.name,
                    version: &ver.version,
                    description: &profile.description,
                    long_description: &profile.long_description,
                    git: profile.git.as_deref(),
                    dependencies: DepMap(&dependencies),
                    exports: &exports,
                    compiler_version: compiler_version(t),
                    contains_plugins: profile.contains_plugins,
                    debug_only: profile.debug_only,
                    prod_only: profile.prod_only,
                    test_only: profile.test_only,
                    deprecated: deprecated.then_some(true),
                    deprecated_message: deprecated.then_some("No longer maintained."),
                    release_name,
                    source: Blob {
                        url: format!(
                            "https://example.invalid/source/{slug}/{}/{}.tgz",
                            ver.version, ver.id
                        ),
                        tarball_hash: hash(&mut rng),
                        tree_hash: tree_hash(&mut rng, t),
                    },
                    readme: Readme {
                        url: format!(
                            "https://example.invalid/readme/{slug}/{}/{}.md",
                            ver.version, ver.id
                        ),
                        hash: if profile.long_description.is_empty() {
                            BLANK_HASH.to_string()
                        } else {
                            hash(&mut rng)
                        },
                    },
                    published_by: self.publisher(package, &mut rng),
                    published: Date(t),
                    last_updated: Date(touched(&self.migrations, &mut rng, t)),
                };
                sink.record(Collection::Versions, &doc)?;
            }
        }
        Ok(())
    }

    /// The dependency map of one version: `meteor` first (null constraint mostly), then
    /// the package's usual dependencies resolved to versions that existed when it was
    /// published, then `isobuild:` pseudo-packages.
    fn dependencies<'p>(
        &'p self,
        index: usize,
        profile: &'p Profile,
        ver: &Ver,
        rng: &mut ChaCha8Rng,
    ) -> Vec<DepDoc<'p>> {
        let t = ver.published;
        let legacy = t >= LEGACY_BROWSER_SINCE;
        let mut deps = Vec::with_capacity(profile.deps.len() + 3);
        // Core packages depend on what their own release ships; community packages on
        // what was published before them.
        let resolve = |package: usize, lag: usize| -> Option<(&'p str, &'p str)> {
            match ver.release {
                Some(r) => self
                    .core_at(package, r)
                    .map(|v| (v.version.as_str(), v.version.as_str())),
                None => {
                    let picks = self.picks_before(package, t);
                    let first = picks.first()?;
                    let chosen = &picks[picks.len().saturating_sub(1 + lag)];
                    Some((first.version.as_str(), chosen.version.as_str()))
                }
            }
        };
        if index != METEOR
            && index != TOOL
            && let Some((_, current)) = resolve(METEOR, 0)
        {
            let null = if self.is_core(index) {
                rng.random_ratio(1, 2)
            } else {
                rng.random_ratio(7, 10)
            };
            deps.push(DepDoc {
                name: CORE_NAMES[METEOR],
                constraint: (!null).then(|| current.to_string()),
                refs: Refs::plain(Scope::All.arches(legacy)),
            });
        }
        let keep = if rng.random_ratio(1, 6) {
            profile.deps.len().saturating_sub(1)
        } else {
            profile.deps.len()
        };
        for dep in &profile.deps[..keep] {
            let Some((first, chosen)) = resolve(dep.package, dep.lag) else {
                continue;
            };
            let constraint = match dep.form {
                Form::Exact => format!("={chosen}"),
                Form::Either if first != chosen => format!("{first} || {chosen}"),
                Form::Either | Form::Compatible => chosen.to_string(),
            };
            deps.push(DepDoc {
                name: &self.packages[dep.package].name,
                constraint: Some(constraint),
                refs: Refs {
                    arches: dep.scope.arches(legacy),
                    weak: dep.weak,
                    unordered: dep.unordered,
                    implied: dep.implied,
                },
            });
        }
        if t >= ISOBUILD_SINCE {
            let pseudo = [
                ("isobuild:isopack-2", profile.isobuild),
                ("isobuild:compiler-plugin", profile.contains_plugins),
            ];
            for (name, used) in pseudo {
                if used {
                    deps.push(DepDoc {
                        name,
                        constraint: Some("1.0.0".to_string()),
                        refs: Refs::plain(Scope::All.arches(legacy)),
                    });
                }
            }
        }
        deps
    }

    fn write_builds(&self, sink: &mut Sink<'_>) -> io::Result<()> {
        for (index, package) in self.packages.iter().enumerate() {
            let mut rng = stream(&self.key, STREAM_BUILDS, index as u64);
            let slug = slug(&package.name);
            for ver in self.versions(index).iter() {
                let mut published = ver.published;
                if !rng.random_ratio(3, 5) {
                    published += rng.random_range(1..=600_000);
                }
                let builds = self.build_architectures(index, ver.published, &mut rng);
                for (k, architectures) in builds.iter().enumerate() {
                    // Other hosts' builds often come later, from `publish-for-arch`.
                    if k > 0 && !rng.random_ratio(1, 3) {
                        published += rng.random_range(1..=3 * DAY_MS);
                    }
                    let id = meteor_id(&mut rng);
                    let doc = BuildDoc {
                        build: Blob {
                            url: format!(
                                "https://example.invalid/build/{slug}/{}/{id}.tgz",
                                ver.version
                            ),
                            tarball_hash: hash(&mut rng),
                            tree_hash: tree_hash(&mut rng, published),
                        },
                        id,
                        version_id: &ver.id,
                        build_architectures: architectures,
                        built_by: self.publisher(package, &mut rng),
                        build_published: Date(published),
                        last_updated: Date(touched(&self.migrations, &mut rng, published)),
                    };
                    sink.record(Collection::Builds, &doc)?;
                }
            }
        }
        Ok(())
    }

    /// The `buildArchitectures` of each build of one version: a single portable
    /// `os+web…` build, or one build per host OS that existed at the time (some
    /// missing) for binary packages; `meteor-tool` builds are host-only.
    fn build_architectures(&self, index: usize, t: i64, rng: &mut ChaCha8Rng) -> Vec<String> {
        let web = if t >= LEGACY_BROWSER_SINCE {
            "+web.browser+web.browser.legacy+web.cordova"
        } else {
            "+web.browser+web.cordova"
        };
        if !self.packages[index].binary {
            return vec![format!("os{web}")];
        }
        let hosts = [
            ("os.linux.x86_64", EPOCH_START),
            ("os.osx.x86_64", EPOCH_START),
            ("os.windows.x86_64", WINDOWS_SINCE),
            ("os.osx.arm64", OSX_ARM64_SINCE),
            ("os.linux.aarch64", LINUX_AARCH64_SINCE),
        ];
        let tool = index == TOOL;
        hosts
            .iter()
            .enumerate()
            .filter(|&(k, &(_, since))| t >= since && (k == 0 || tool || !rng.random_ratio(1, 10)))
            .map(|(_, &(host, _))| {
                if tool {
                    host.to_string()
                } else {
                    format!("{host}{web}")
                }
            })
            .collect()
    }

    fn write_tracks(&self, sink: &mut Sink<'_>) -> io::Result<()> {
        for (t, track) in self.tracks.iter().enumerate() {
            let last_updated = self
                .releases
                .iter()
                .filter(|r| r.track == t)
                .map(|r| r.published)
                .fold(RELEASES_FROM, i64::max);
            let doc = TrackDoc {
                id: &track.id,
                name: track.name,
                maintainers: vec![self.user(0)],
                last_updated: Date(last_updated),
            };
            sink.record(Collection::ReleaseTracks, &doc)?;
        }
        Ok(())
    }

    fn write_releases(&self, sink: &mut Sink<'_>) -> io::Result<()> {
        for (index, release) in self.releases.iter().enumerate() {
            let mut rng = stream(&self.key, STREAM_RELEASES, index as u64);
            let track = &self.tracks[release.track];
            let packages: Vec<(&str, &str)> = self
                .core_by_name
                .iter()
                .filter_map(|&c| {
                    self.core_at(c, release.meteor)
                        .map(|v| (CORE_NAMES[c], v.version.as_str()))
                })
                .filter(|&(name, _)| {
                    release.track == 0 || name == CORE_NAMES[METEOR] || rng.random_ratio(1, 2)
                })
                .collect();
            let recommended = is_final(&release.version);
            let banner =
                (recommended && release.track == 0 && rng.random_ratio(1, 40)).then(|| Banner {
                    text: format!(
                        "=> Meteor {} is available. Update with `meteor update`.",
                        release.version
                    ),
                    last_updated: Date(release.published),
                });
            let doc = ReleaseDoc {
                id: &release.id,
                track: track.name,
                version: &release.version,
                description: track.description,
                recommended,
                order_key: order_key(&release.version),
                tool: format!(
                    "meteor-tool@{}",
                    tool_version(&self.releases[release.meteor].version)
                ),
                packages: PairMap(&packages),
                published_by: self.user(0),
                published: Date(release.published),
                last_updated: Date(release.published),
                banner,
                patch_release_version: release.patch.map(|p| self.releases[p].version.as_str()),
            };
            sink.record(Collection::ReleaseVersions, &doc)?;
        }
        Ok(())
    }

    /// Daily usage rows for the last `stats_days` days before [`EPOCH_END`]: most core
    /// packages and some community packages, each with its newest version of the day
    /// and sometimes an older one.
    fn write_stats(&self, sink: &mut Sink<'_>) -> io::Result<()> {
        let end_day = (EPOCH_END / DAY_MS) as u64;
        for day in end_day - self.params.stats_days..end_day {
            let mut rng = stream(&self.key, STREAM_STATS, day);
            let date = (DateTime::<Utc>::UNIX_EPOCH.date_naive() + Days::new(day)).to_string();
            let day_end = (day as i64 + 1) * DAY_MS - 1;
            for index in 0..self.packages.len() {
                let (chance, most) = if self.is_core(index) {
                    (900, 5_000)
                } else {
                    (self.params.stats_permille, 300)
                };
                if rng.random_range(0..1000) >= chance {
                    continue;
                }
                let picks = self.picks_before(index, day_end);
                let Some(newest) = picks.last() else {
                    continue;
                };
                let older = (picks.len() > 1 && rng.random_ratio(1, 4))
                    .then(|| &picks[rng.random_range(0..picks.len() - 1)]);
                for pick in std::iter::once(newest).chain(older) {
                    let ceiling = rng.random_range(1..=most);
                    let total_adds = rng.random_range(1..=ceiling);
                    let doc = StatsDoc {
                        name: &self.packages[index].name,
                        version: &pick.version,
                        direct_adds: rng.random_range(0..=total_adds),
                        total_adds,
                    };
                    sink.stats(&date, &doc)?;
                }
            }
        }
        Ok(())
    }
}

/// What stays the same across a package's versions: texts, flags, usual dependencies.
struct Profile {
    description: String,
    long_description: String,
    git: Option<String>,
    exports: Vec<(String, Scope)>,
    contains_plugins: bool,
    debug_only: bool,
    prod_only: bool,
    test_only: bool,
    deps: Vec<BaseDep>,
    /// Declares `isobuild:isopack-2` (once that exists).
    isobuild: bool,
    /// The newest version is marked deprecated.
    deprecated: bool,
}

/// A dependency a package keeps across its versions, minus the version it names.
struct BaseDep {
    package: usize,
    scope: Scope,
    weak: bool,
    unordered: bool,
    implied: bool,
    form: Form,
    /// How many picks behind the newest the constraint names (community packages).
    lag: usize,
}

/// The shape of a constraint: `1.2.0`, `=1.2.0` or `1.0.0 || 1.2.0`.
#[derive(Clone, Copy)]
enum Form {
    Compatible,
    Exact,
    Either,
}

/// Which architectures a dependency or export applies to.
#[derive(Clone, Copy)]
enum Scope {
    All,
    Server,
    Client,
    Plugin,
}

impl Scope {
    fn arches(self, legacy: bool) -> &'static [&'static str] {
        match (self, legacy) {
            (Scope::All, true) => &["os", "web.browser", "web.browser.legacy", "web.cordova"],
            (Scope::All, false) => &["os", "web.browser", "web.cordova"],
            (Scope::Server, _) => &["os"],
            (Scope::Client, true) => &["web.browser", "web.browser.legacy", "web.cordova"],
            (Scope::Client, false) => &["web.browser", "web.cordova"],
            (Scope::Plugin, _) => &["plugin"],
        }
    }

    fn random(rng: &mut ChaCha8Rng) -> Scope {
        match rng.random_range(0..20) {
            0..14 => Scope::All,
            14..17 => Scope::Server,
            _ => Scope::Client,
        }
    }
}

impl Profile {
    fn new(plan: &Plan, index: usize, rng: &mut ChaCha8Rng) -> Profile {
        let package = &plan.packages[index];
        let core = plan.is_core(index);
        let base = package.name.rsplit(':').next().unwrap_or(&package.name);
        let description = describe(rng, base, core);
        let long_description = if rng.random_ratio(3, 10) {
            String::new()
        } else {
            long_text(rng, &package.name, &description)
        };
        let git = if core {
            Some("https://example.invalid/meteor/meteor.git".to_string())
        } else {
            rng.random_ratio(4, 5).then(|| {
                format!(
                    "https://example.invalid/git/{}.git",
                    package.name.replace(':', "/")
                )
            })
        };
        let camel = camel_case(base);
        let exports = (0..weighted(rng, &[3, 4, 2, 1]))
            .map(|k| {
                let name = if k == 0 {
                    camel.clone()
                } else {
                    format!("{camel}{}", EXPORT_SUFFIXES[k - 1])
                };
                (name, Scope::random(rng))
            })
            .collect();
        let contains_plugins = rng.random_ratio(1, 12);
        let only = weighted(rng, &[95, 2, 1, 2]);
        let mut deps: Vec<BaseDep> = Vec::new();
        let wanted = if core {
            if index > 2 {
                rng.random_range(0..=5)
            } else {
                0
            }
        } else {
            match rng.random_range(0..10) {
                0 => 0,
                1..4 => rng.random_range(1..=2),
                4..8 => rng.random_range(3..=5),
                _ => rng.random_range(6..=10),
            }
        };
        let core_count = plan.params.core;
        let dotted_before = plan.dotted.partition_point(|&d| d < index);
        for _ in 0..wanted {
            let target = if core {
                2 + rng.random_range(0..index - 2)
            } else {
                match rng.random_range(0..20) {
                    0 if dotted_before > 0 => plan.dotted[rng.random_range(0..dotted_before)],
                    1..8 if index > core_count => core_count + skewed(rng, index - core_count),
                    _ => 2 + skewed(rng, core_count - 2),
                }
            };
            if deps.iter().any(|d| d.package == target) {
                continue;
            }
            let scope = if contains_plugins && deps.is_empty() {
                Scope::Plugin
            } else {
                Scope::random(rng)
            };
            deps.push(BaseDep {
                package: target,
                scope,
                weak: rng.random_ratio(1, 16),
                unordered: rng.random_ratio(1, 40),
                implied: rng.random_ratio(1, 20),
                form: match rng.random_range(0..100) {
                    0..10 => Form::Exact,
                    10..17 => Form::Either,
                    _ => Form::Compatible,
                },
                lag: weighted(rng, &[6, 3, 1]),
            });
        }
        Profile {
            description,
            long_description,
            git,
            exports,
            contains_plugins,
            debug_only: only == 1,
            prod_only: only == 2,
            test_only: only == 3,
            deps,
            isobuild: rng.random_ratio(1, 8),
            deprecated: !core && rng.random_ratio(1, 100),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Plan helpers.

/// A fresh ChaCha8 stream: the same `(key, kind, n)` always gives the same numbers.
fn stream(key: &[u8; 32], kind: u64, n: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::from_seed(*key);
    rng.set_stream(kind + n);
    rng
}

/// A 17-character id like Meteor's `Random.id()`.
fn meteor_id(rng: &mut ChaCha8Rng) -> String {
    (0..17)
        .map(|_| ID_ALPHABET[rng.random_range(0..ID_ALPHABET.len())] as char)
        .collect()
}

/// A SHA-256-shaped base64 string (random: nobody verifies these, spec §8.1).
fn hash(rng: &mut ChaCha8Rng) -> String {
    let mut bytes = [0u8; 32];
    rng.fill_bytes(&mut bytes);
    BASE64.encode(bytes)
}

/// A `treeHash`: blank once Meteor 3 tools published (spec §8.2), random before.
fn tree_hash(rng: &mut ChaCha8Rng, t: i64) -> String {
    if t >= BLANK_TREE_SINCE {
        BLANK_HASH.to_string()
    } else {
        hash(rng)
    }
}

/// An index below `n` that favours small ones, for popularity skew.
fn skewed(rng: &mut ChaCha8Rng, n: usize) -> usize {
    let high = rng.random_range(0..n);
    rng.random_range(0..=high)
}

/// An index into `weights`, chosen in proportion to them.
fn weighted(rng: &mut ChaCha8Rng, weights: &[u32]) -> usize {
    let mut roll = rng.random_range(0..weights.iter().sum::<u32>());
    for (k, &weight) in weights.iter().enumerate() {
        if roll < weight {
            return k;
        }
        roll -= weight;
    }
    weights.len() - 1
}

fn pick<'a>(rng: &mut ChaCha8Rng, items: &[&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}

/// `lastUpdated` for something published at `t`: usually `t`, but sometimes a later
/// migration instant that many records share, so sync paging meets big ties.
fn touched(migrations: &[i64], rng: &mut ChaCha8Rng, t: i64) -> i64 {
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
fn creation_time(rng: &mut ChaCha8Rng) -> i64 {
    let slot_len = (LAST_PUBLISH - EPOCH_START) / CREATION_WEIGHTS.len() as i64;
    let slot = weighted(rng, &CREATION_WEIGHTS) as i64;
    EPOCH_START + slot * slot_len + rng.random_range(0..slot_len)
}

/// `mdg` (index 0, maintainer of core packages and releases) and `n - 1` others.
fn make_users(rng: &mut ChaCha8Rng, n: usize) -> Vec<User> {
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
fn community_name(rng: &mut ChaCha8Rng, user: &str, taken: &mut HashSet<String>) -> (String, bool) {
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
fn make_releases(p: &Params, rng: &mut ChaCha8Rng) -> (Vec<Track>, Vec<Release>, usize) {
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
fn community_versions(key: &[u8; 32], p: &Params, index: usize, created: i64) -> Vec<Ver> {
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
fn spread_picks(versions: &[Ver]) -> Vec<Pick> {
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
struct Sem(u32, u32, u32);

impl Sem {
    /// The next version: mostly a patch bump, sometimes minor, rarely major.
    fn next(self, rng: &mut ChaCha8Rng) -> Sem {
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

fn is_final(version: &str) -> bool {
    !version.contains('-')
}

/// The pre-release part of a release version (`rc.0` of `2.8-rc.0`).
fn prerelease(version: &str) -> Option<&str> {
    version.split_once('-').map(|(_, pre)| pre)
}

/// The `meteor-tool` version a release ships, a valid package version named after the
/// release: `3.0` → `3.0.0`, `2.8-rc.0` → `2.8.0-rc.0`, `1.4.0.1` → `1.4.0_1`.
fn tool_version(release: &str) -> String {
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
fn order_key(version: &str) -> Option<String> {
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
fn compiler_version(t: i64) -> String {
    let step = ((t - EPOCH_START).max(0) * 20 / (EPOCH_END - EPOCH_START)).min(19);
    format!("meteor/{}", 15 + step)
}

/// A package name as a URL path segment (`user:pkg` → `user_pkg`, as in tarball names).
fn slug(name: &str) -> String {
    name.replace(':', "_")
}

/// `flow-router` → `FlowRouter`, `moment.js` → `MomentJs`: export names.
fn camel_case(base: &str) -> String {
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
fn describe(rng: &mut ChaCha8Rng, base: &str, core: bool) -> String {
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
fn long_text(rng: &mut ChaCha8Rng, name: &str, description: &str) -> String {
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

// ---------------------------------------------------------------------------------------
// Output: the records as serde types, and the buffered line writer.

/// The five catalog collections, as dump lines name them.
#[derive(Clone, Copy)]
enum Collection {
    Packages,
    Versions,
    Builds,
    ReleaseTracks,
    ReleaseVersions,
}

/// Writes dump lines through a reused buffer and counts what it wrote.
struct Sink<'w> {
    out: &'w mut dyn Write,
    buf: Vec<u8>,
    summary: SynthSummary,
}

impl<'w> Sink<'w> {
    fn new(out: &'w mut dyn Write) -> Sink<'w> {
        Sink {
            out,
            buf: Vec::with_capacity(FLUSH_BYTES + 4096),
            summary: SynthSummary::default(),
        }
    }

    fn record<T: Serialize>(&mut self, collection: Collection, doc: &T) -> io::Result<()> {
        let (name, counter) = match collection {
            Collection::Packages => ("packages", &mut self.summary.packages),
            Collection::Versions => ("versions", &mut self.summary.versions),
            Collection::Builds => ("builds", &mut self.summary.builds),
            Collection::ReleaseTracks => ("releaseTracks", &mut self.summary.release_tracks),
            Collection::ReleaseVersions => ("releaseVersions", &mut self.summary.release_versions),
        };
        *counter += 1;
        self.line(&Line {
            collection: name,
            doc,
        })
    }

    fn stats(&mut self, date: &str, doc: &StatsDoc<'_>) -> io::Result<()> {
        self.summary.stats_rows += 1;
        self.line(&StatsLine {
            collection: "stats",
            date,
            doc,
        })
    }

    fn line<T: Serialize>(&mut self, line: &T) -> io::Result<()> {
        serde_json::to_writer(&mut self.buf, line)?;
        self.buf.push(b'\n');
        if self.buf.len() >= FLUSH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.write_all(&self.buf)?;
        self.summary.bytes += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    fn finish(mut self) -> io::Result<SynthSummary> {
        self.flush()?;
        self.out.flush()?;
        Ok(self.summary)
    }
}

#[derive(Serialize)]
struct Line<'a, T> {
    collection: &'static str,
    doc: &'a T,
}

#[derive(Serialize)]
struct StatsLine<'a> {
    collection: &'static str,
    date: &'a str,
    doc: &'a StatsDoc<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatsDoc<'a> {
    name: &'a str,
    version: &'a str,
    direct_adds: u64,
    total_adds: u64,
}

/// An EJSON date: `{"$date": ms}`.
struct Date(i64);

impl Serialize for Date {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry("$date", &self.0)?;
        map.end()
    }
}

#[derive(Serialize)]
struct UserRef<'a> {
    username: &'a str,
    id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PackageDoc<'a> {
    #[serde(rename = "_id")]
    id: &'a str,
    name: &'a str,
    maintainers: Vec<UserRef<'a>>,
    /// Absent, null or a URL, all three as in real data.
    #[serde(skip_serializing_if = "Option::is_none")]
    homepage: Option<Option<String>>,
    last_updated: Date,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct VersionDoc<'a> {
    #[serde(rename = "_id")]
    id: &'a str,
    package_name: &'a str,
    version: &'a str,
    description: &'a str,
    long_description: &'a str,
    git: Option<&'a str>,
    dependencies: DepMap<'a>,
    exports: &'a [ExportDoc<'a>],
    compiler_version: String,
    contains_plugins: bool,
    debug_only: bool,
    prod_only: bool,
    test_only: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    deprecated: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deprecated_message: Option<&'a str>,
    release_name: Option<String>,
    source: Blob,
    readme: Readme,
    published_by: UserRef<'a>,
    published: Date,
    last_updated: Date,
}

#[derive(Serialize)]
struct ExportDoc<'a> {
    name: &'a str,
    architectures: &'static [&'static str],
}

/// `source` of a version and `build` of a build.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Blob {
    url: String,
    tarball_hash: String,
    tree_hash: String,
}

#[derive(Serialize)]
struct Readme {
    url: String,
    hash: String,
}

/// One entry of a `dependencies` map.
struct DepDoc<'a> {
    name: &'a str,
    constraint: Option<String>,
    refs: Refs,
}

/// `dependencies`: name → `{constraint, references}`, in insertion order.
struct DepMap<'a>(&'a [DepDoc<'a>]);

impl Serialize for DepMap<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Body<'a> {
            constraint: Option<&'a str>,
            references: &'a Refs,
        }
        serializer.collect_map(self.0.iter().map(|dep| {
            (
                dep.name,
                Body {
                    constraint: dep.constraint.as_deref(),
                    references: &dep.refs,
                },
            )
        }))
    }
}

/// `references`: one `{arch, weak?, unordered?, implied?}` per architecture.
struct Refs {
    arches: &'static [&'static str],
    weak: bool,
    unordered: bool,
    implied: bool,
}

impl Refs {
    fn plain(arches: &'static [&'static str]) -> Refs {
        Refs {
            arches,
            weak: false,
            unordered: false,
            implied: false,
        }
    }
}

impl Serialize for Refs {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Reference {
            arch: &'static str,
            #[serde(skip_serializing_if = "is_false")]
            weak: bool,
            #[serde(skip_serializing_if = "is_false")]
            unordered: bool,
            #[serde(skip_serializing_if = "is_false")]
            implied: bool,
        }
        let mut seq = serializer.serialize_seq(Some(self.arches.len()))?;
        for &arch in self.arches {
            seq.serialize_element(&Reference {
                arch,
                weak: self.weak,
                unordered: self.unordered,
                implied: self.implied,
            })?;
        }
        seq.end()
    }
}

fn is_false(value: &bool) -> bool {
    !*value
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BuildDoc<'a> {
    #[serde(rename = "_id")]
    id: String,
    version_id: &'a str,
    build_architectures: &'a str,
    build: Blob,
    built_by: UserRef<'a>,
    build_published: Date,
    last_updated: Date,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TrackDoc<'a> {
    #[serde(rename = "_id")]
    id: &'a str,
    name: &'a str,
    maintainers: Vec<UserRef<'a>>,
    last_updated: Date,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReleaseDoc<'a> {
    #[serde(rename = "_id")]
    id: &'a str,
    track: &'a str,
    version: &'a str,
    description: &'a str,
    recommended: bool,
    order_key: Option<String>,
    tool: String,
    packages: PairMap<'a>,
    published_by: UserRef<'a>,
    published: Date,
    last_updated: Date,
    #[serde(skip_serializing_if = "Option::is_none")]
    banner: Option<Banner>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_release_version: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Banner {
    text: String,
    last_updated: Date,
}

/// A release's `packages` map, in the given order.
struct PairMap<'a>(&'a [(&'a str, &'a str)]);

impl Serialize for PairMap<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::time::Instant;

    use serde_json::Value;

    use super::*;

    fn small(seed: u64) -> (Vec<u8>, SynthSummary) {
        let mut out = Vec::new();
        let summary = generate(Scale::Small, seed, &mut out).expect("writing to a Vec");
        (out, summary)
    }

    fn parse(bytes: &[u8]) -> Vec<Value> {
        std::str::from_utf8(bytes)
            .expect("UTF-8")
            .lines()
            .enumerate()
            .map(|(n, line)| {
                serde_json::from_str(line).unwrap_or_else(|e| panic!("line {}: {e}", n + 1))
            })
            .collect()
    }

    fn docs<'a>(lines: &'a [Value], collection: &'a str) -> impl Iterator<Item = &'a Value> {
        lines
            .iter()
            .filter(move |line| line["collection"] == collection)
            .map(|line| &line["doc"])
    }

    fn str_of<'a>(doc: &'a Value, field: &str) -> &'a str {
        doc[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field} is not a string in {doc}"))
    }

    fn is_number(s: &str) -> bool {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'))
    }

    /// The Meteor package version grammar: semver `x.y.z`, optional `-pre`, optional
    /// `_N` wrap, no `+build`.
    fn is_meteor_version(version: &str) -> bool {
        let (body, wrap) = match version.rsplit_once('_') {
            Some((body, wrap)) => (body, Some(wrap)),
            None => (version, None),
        };
        if wrap.is_some_and(|w| !is_number(w)) || body.contains('+') {
            return false;
        }
        let (numbers, pre) = match body.split_once('-') {
            Some((numbers, pre)) => (numbers, Some(pre)),
            None => (body, None),
        };
        let parts: Vec<&str> = numbers.split('.').collect();
        parts.len() == 3
            && parts.iter().all(|p| is_number(p))
            && pre.is_none_or(|pre| {
                pre.split('.').all(|id| {
                    !id.is_empty()
                        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                        && (!id.bytes().all(|b| b.is_ascii_digit()) || is_number(id))
                })
            })
    }

    #[test]
    fn same_seed_gives_same_bytes_and_other_seeds_differ() {
        let (first, _) = small(42);
        let (again, _) = small(42);
        let (other, _) = small(43);
        assert!(first == again, "same seed, different output");
        assert!(first != other, "different seeds, same output");
    }

    #[test]
    fn every_line_is_a_dump_record() {
        let (bytes, _) = small(1);
        assert!(bytes.ends_with(b"\n"));
        for line in parse(&bytes) {
            let collection = line["collection"].as_str().expect("collection");
            let object = line.as_object().expect("line is an object");
            let doc = line["doc"].as_object().expect("doc is an object");
            if collection == "stats" {
                assert_eq!(object.len(), 3, "{line}");
                let date = line["date"].as_str().expect("date");
                assert!(
                    date.len() == 10 && date.starts_with("2025-12-"),
                    "stats date {date}"
                );
                assert!(
                    doc["name"].is_string() && doc["version"].is_string(),
                    "{line}"
                );
                let direct = doc["directAdds"].as_u64().expect("directAdds");
                let total = doc["totalAdds"].as_u64().expect("totalAdds");
                assert!(direct <= total && total >= 1, "{line}");
                continue;
            }
            assert!(
                [
                    "packages",
                    "versions",
                    "builds",
                    "releaseTracks",
                    "releaseVersions"
                ]
                .contains(&collection),
                "{collection}"
            );
            assert_eq!(object.len(), 2, "{line}");
            let id = str_of(&line["doc"], "_id");
            assert!(
                id.len() == 17 && id.bytes().all(|b| ID_ALPHABET.contains(&b)),
                "_id {id}"
            );
            for (field, value) in doc {
                if let Some(ms) = value.get("$date") {
                    let ms = ms.as_i64().expect("$date is an integer");
                    assert!((EPOCH_START..EPOCH_END).contains(&ms), "{field} {ms}");
                }
            }
        }
    }

    #[test]
    fn summary_counts_what_was_written_and_small_is_small() {
        let (bytes, summary) = small(7);
        let lines = parse(&bytes);
        let count = |c: &str| lines.iter().filter(|l| l["collection"] == c).count() as u64;
        assert_eq!(summary.packages, count("packages"));
        assert_eq!(summary.versions, count("versions"));
        assert_eq!(summary.builds, count("builds"));
        assert_eq!(summary.release_tracks, count("releaseTracks"));
        assert_eq!(summary.release_versions, count("releaseVersions"));
        assert_eq!(summary.stats_rows, count("stats"));
        assert_eq!(summary.bytes, bytes.len() as u64);
        assert_eq!(summary.packages, 200);
        assert!((1_000..=2_500).contains(&summary.versions), "{summary:?}");
        assert!(
            summary.builds > summary.versions && summary.builds < 2 * summary.versions,
            "{summary:?}"
        );
        assert_eq!(summary.release_tracks, 3);
        assert!((10..=40).contains(&summary.release_versions), "{summary:?}");
        assert!((100..=2_000).contains(&summary.stats_rows), "{summary:?}");
    }

    #[test]
    fn references_point_at_emitted_records() {
        let (bytes, _) = small(3);
        let lines = parse(&bytes);
        let version_ids: BTreeSet<&str> =
            docs(&lines, "versions").map(|d| str_of(d, "_id")).collect();
        let versions: BTreeSet<(&str, &str)> = docs(&lines, "versions")
            .map(|d| (str_of(d, "packageName"), str_of(d, "version")))
            .collect();
        // Packages only depend on packages written before them, so the graph is acyclic.
        let position: BTreeMap<&str, usize> = docs(&lines, "packages")
            .enumerate()
            .map(|(n, d)| (str_of(d, "name"), n))
            .collect();
        for doc in docs(&lines, "versions") {
            let own = position[str_of(doc, "packageName")];
            for name in doc["dependencies"]
                .as_object()
                .expect("dependencies")
                .keys()
            {
                if !name.starts_with("isobuild:") {
                    let dep = position.get(name.as_str());
                    assert!(
                        dep.is_some_and(|&dep| dep < own),
                        "dependency {name} of {doc}"
                    );
                }
            }
        }
        for doc in docs(&lines, "builds") {
            assert!(version_ids.contains(str_of(doc, "versionId")), "{doc}");
        }
        let tracks: BTreeSet<&str> = docs(&lines, "releaseTracks")
            .map(|d| str_of(d, "name"))
            .collect();
        for doc in docs(&lines, "releaseVersions") {
            assert!(tracks.contains(str_of(doc, "track")), "{doc}");
            let tool = str_of(doc, "tool")
                .strip_prefix("meteor-tool@")
                .expect("tool");
            assert!(versions.contains(&("meteor-tool", tool)), "{doc}");
            let packages = doc["packages"].as_object().expect("packages");
            assert!(!packages.is_empty(), "{doc}");
            for (name, version) in packages {
                let version = version.as_str().expect("package version");
                assert!(
                    versions.contains(&(name.as_str(), version)),
                    "{name}@{version}"
                );
            }
        }
        for doc in docs(&lines, "stats") {
            let key = (str_of(doc, "name"), str_of(doc, "version"));
            assert!(versions.contains(&key), "{doc}");
        }
    }

    #[test]
    fn names_and_versions_follow_meteor_rules() {
        let (bytes, _) = small(5);
        let lines = parse(&bytes);
        let names: Vec<&str> = docs(&lines, "packages")
            .map(|d| str_of(d, "name"))
            .collect();
        assert!(
            names.iter().all(|n| crate::usage::is_package_name(n)),
            "{names:?}"
        );
        assert_eq!(names.iter().collect::<BTreeSet<_>>().len(), names.len());
        assert!(names.contains(&"meteor") && names.contains(&"ecmascript"));
        assert!(names.iter().filter(|n| n.contains(':')).count() > names.len() / 2);
        assert!(names.iter().any(|n| n.contains(':') && n.contains('.')));

        let mut seen = BTreeSet::new();
        let (mut pre, mut wrap) = (0, 0);
        for doc in docs(&lines, "versions") {
            let version = str_of(doc, "version");
            assert!(is_meteor_version(version), "{version}");
            assert!(
                seen.insert((str_of(doc, "packageName"), version)),
                "duplicate {doc}"
            );
            pre += usize::from(version.contains('-'));
            wrap += usize::from(version.contains('_'));
            assert!(str_of(doc, "description").len() <= 100);
            assert!(doc.get("releaseName").is_some(), "releaseName key missing");
            for field in ["source", "readme"] {
                assert!(str_of(&doc[field], "url").starts_with("https://example.invalid/"));
            }
            assert_eq!(str_of(&doc["source"], "tarballHash").len(), 44);
        }
        assert!(pre > 0 && wrap > 0, "pre-releases {pre}, wraps {wrap}");
        for doc in docs(&lines, "builds") {
            let arch = str_of(doc, "buildArchitectures");
            let parts: Vec<&str> = arch.split('+').collect();
            assert!(parts.is_sorted(), "{arch}");
            assert!(parts[0].starts_with("os"), "{arch}");
        }
    }

    #[test]
    fn the_awkward_shapes_of_real_data_are_present() {
        let (bytes, _) = small(1);
        let lines = parse(&bytes);
        let mut dependency_constraints = Vec::new();
        let mut flags = BTreeSet::new();
        for doc in docs(&lines, "versions") {
            for (name, dep) in doc["dependencies"].as_object().expect("dependencies") {
                let constraint = dep["constraint"].as_str();
                assert!(constraint.is_some() || name == "meteor", "{name}: {dep}");
                for reference in dep["references"].as_array().expect("references") {
                    let arch = str_of(reference, "arch");
                    assert!(
                        [
                            "os",
                            "web.browser",
                            "web.browser.legacy",
                            "web.cordova",
                            "plugin"
                        ]
                        .contains(&arch),
                        "{arch}"
                    );
                    for flag in ["weak", "unordered", "implied"] {
                        if reference.get(flag).is_some() {
                            assert_eq!(reference[flag], true);
                            flags.insert(flag);
                        }
                    }
                }
                dependency_constraints.push((name.as_str(), constraint));
            }
        }
        let any = |pred: &dyn Fn(&str, Option<&str>) -> bool| {
            dependency_constraints.iter().any(|&(n, c)| pred(n, c))
        };
        assert!(
            any(&|n, c| n == "meteor" && c.is_none()),
            "null meteor constraint"
        );
        assert!(
            any(&|n, _| n == "isobuild:isopack-2"),
            "isobuild pseudo-package"
        );
        assert!(
            any(&|n, _| !n.starts_with("isobuild:") && n.contains('.')),
            "dotted key"
        );
        assert!(
            any(&|_, c| c.is_some_and(|c| c.starts_with('='))),
            "exact constraint"
        );
        assert!(
            any(&|_, c| c.is_some_and(|c| c.contains(" || "))),
            "either constraint"
        );
        assert_eq!(flags.len(), 3, "{flags:?}");
        assert!(docs(&lines, "versions").any(|d| d["dependencies"] == serde_json::json!({})));

        let architectures: BTreeSet<&str> = docs(&lines, "builds")
            .flat_map(|d| str_of(d, "buildArchitectures").split('+'))
            .collect();
        for arch in [
            "os",
            "os.linux.x86_64",
            "os.osx.x86_64",
            "os.osx.arm64",
            "os.windows.x86_64",
            "web.browser.legacy",
        ] {
            assert!(
                architectures.contains(arch),
                "no {arch} build in {architectures:?}"
            );
        }
        assert!(docs(&lines, "versions").any(|d| d["source"]["treeHash"] == BLANK_HASH));
        assert!(docs(&lines, "packages").any(|d| d.get("homepage").is_none()));
        assert!(docs(&lines, "packages").any(|d| d["homepage"].is_null()));
    }

    #[test]
    fn many_records_share_a_last_updated_millisecond() {
        let (bytes, _) = small(1);
        let lines = parse(&bytes);
        for collection in ["versions", "builds"] {
            let mut ties: BTreeMap<i64, usize> = BTreeMap::new();
            for doc in docs(&lines, collection) {
                *ties
                    .entry(doc["lastUpdated"]["$date"].as_i64().expect("date"))
                    .or_default() += 1;
            }
            let biggest = ties.values().max().copied().unwrap_or(0);
            let tied: usize = ties.values().filter(|&&n| n > 1).sum();
            assert!(
                biggest >= 20 && tied >= 100,
                "{collection}: biggest {biggest}, tied {tied}"
            );
        }
    }

    #[test]
    fn releases_carry_meteor_order_keys() {
        let (bytes, _) = small(2);
        let lines = parse(&bytes);
        let mut previous: Option<String> = None;
        for doc in docs(&lines, "releaseVersions") {
            let version = str_of(doc, "version");
            let key = str_of(doc, "orderKey");
            assert_eq!(Some(key.to_string()), order_key(version));
            assert_eq!(doc["recommended"], !version.contains('-'), "{doc}");
            if doc["track"] == "METEOR" {
                assert!(
                    previous.as_deref().is_none_or(|p| p < key),
                    "{key} after {previous:?}"
                );
                previous = Some(key.to_string());
            }
            assert_eq!(str_of(&doc["publishedBy"], "username"), "mdg");
        }
        assert!(previous.is_some());
    }

    #[test]
    fn order_key_matches_meteor() {
        // Cases from Meteor's tools/tests/utils-tests.js.
        let cases = [
            ("1", Some("0001$")),
            ("0", Some("0000$")),
            ("01", None),
            ("", None),
            ("1.2.3", Some("0001.0002.0003$")),
            ("42.123", Some("0042.0123$")),
            ("1234", Some("1234$")),
            ("12345", None),
            ("123.012", None),
            ("1.2.3-preview", Some("0001.0002.0003!preview!!!!!!!!$")),
            (
                "1.2.3.4-AbCdEfG-HiJkLmO",
                Some("0001.0002.0003.0004!AbCdEfG-HiJkLmO$"),
            ),
            ("1.2.3.4-AbCdEfG-HiJkLmOp", None),
            (
                "1.2.3.4-AbCdEfG-HiJkLmO0",
                Some("0001.0002.0003.0004!AbCdEfG-HiJkLmO0000$"),
            ),
            ("1.2.3.4-AbCdEfG-HiJkLmO01", None),
            ("1.2.3.4-AbCdEfG-HiJkLmO12345", None),
            (
                "1.2.3.4-AbCdEfG-HiJkLmO15",
                Some("0001.0002.0003.0004!AbCdEfG-HiJkLmO0015$"),
            ),
            (
                "1.2.3.4-rc2",
                Some("0001.0002.0003.0004!rc!!!!!!!!!!!!!0002$"),
            ),
            ("1.2.3.4-2rc", None),
            ("1.2.3.4r", None),
            ("3.0.4", Some("0003.0000.0004$")),
            ("2.8-rc.0", Some("0002.0008!rc.!!!!!!!!!!!!0000$")),
        ];
        for (version, expected) in cases {
            assert_eq!(order_key(version).as_deref(), expected, "{version}");
        }
    }

    #[test]
    fn tool_versions_are_package_versions() {
        assert_eq!(tool_version("3.0"), "3.0.0");
        assert_eq!(tool_version("3.0.4"), "3.0.4");
        assert_eq!(tool_version("2.8-rc.0"), "2.8.0-rc.0");
        assert_eq!(tool_version("1.4.0.1"), "1.4.0_1");
        assert_eq!(tool_version("0.9-rc1"), "0.9.0-rc1");
    }

    #[test]
    fn scale_round_trips_through_text() {
        for scale in [Scale::Atmosphere, Scale::Small] {
            assert_eq!(scale.to_string().parse::<Scale>(), Ok(scale));
        }
        assert!("huge".parse::<Scale>().is_err());
    }

    /// Counts lines and bytes without keeping them.
    struct Counter {
        bytes: u64,
        lines: u64,
    }

    impl Write for Counter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.bytes += buf.len() as u64;
            self.lines += buf.iter().filter(|&&b| b == b'\n').count() as u64;
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Slow in debug builds; run with `cargo test --release -- --ignored atmosphere`.
    #[test]
    #[ignore]
    fn atmosphere_scale_has_the_real_shape() {
        let mut counter = Counter { bytes: 0, lines: 0 };
        let started = Instant::now();
        let s = generate(Scale::Atmosphere, 1, &mut counter).expect("counting");
        eprintln!("atmosphere: {s:?} in {:.2?}", started.elapsed());
        assert_eq!(s.bytes, counter.bytes);
        let records = s.packages + s.versions + s.builds + s.release_tracks + s.release_versions;
        assert_eq!(records + s.stats_rows, counter.lines);
        assert_eq!(s.packages, 15_000);
        assert!((130_000..=170_000).contains(&s.versions), "{s:?}");
        assert!((170_000..=230_000).contains(&s.builds), "{s:?}");
        assert!((1_300..=1_700).contains(&s.release_versions), "{s:?}");
    }
}
