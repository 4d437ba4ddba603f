//! Shape parameters and fixed vocabulary: how big each part of a catalog is at one
//! [`Scale`], the dates that shape its history, and the words names are built from.

use std::fmt;
use std::str::FromStr;

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

/// How big each part of the catalog is at one [`Scale`].
pub(crate) struct Params {
    /// Core (unprefixed, release-driven) packages: a prefix of [`CORE_NAMES`].
    pub(crate) core: usize,
    /// `user:name` packages.
    pub(crate) community: usize,
    /// Users, `mdg` included.
    pub(crate) users: usize,
    /// Use every `series_stride`-th series of [`METEOR_SERIES`].
    pub(crate) series_stride: usize,
    /// Most alpha, beta and rc releases before a series' first final release.
    pub(crate) prerelease_max: [u32; 3],
    /// Most patch releases per series.
    pub(crate) patches_max: u32,
    /// Most release candidates before each patch release.
    pub(crate) patch_rc_max: u32,
    /// Release versions of each of [`OTHER_TRACKS`].
    pub(crate) other_releases: [usize; 2],
    /// Chance (‰) that a core package gets a new version in a given release.
    pub(crate) core_bump_permille: u32,
    /// Most versions of one community package.
    pub(crate) version_max: u32,
    /// Share (‰) of community packages with per-OS binary builds.
    pub(crate) binary_permille: u32,
    /// Moments at which a "migration" touched many records' `lastUpdated` at once.
    pub(crate) migrations: usize,
    /// Days of stats rows, ending the day before [`EPOCH_END`].
    pub(crate) stats_days: u64,
    /// Chance (‰) that a community package has stats rows on a given day.
    pub(crate) stats_permille: u32,
}

impl Params {
    pub(crate) fn for_scale(scale: Scale) -> Params {
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
pub(crate) const DAY_MS: i64 = 86_400_000;
/// 2012-01-01: the earliest date in a synthetic catalog.
pub(crate) const EPOCH_START: i64 = 1_325_376_000_000;
/// 2026-01-01: every generated date is before this.
pub(crate) const EPOCH_END: i64 = 1_767_225_600_000;
/// Nothing is first published in the last 30 days, so builds published days after
/// their version still come before [`EPOCH_END`].
pub(crate) const LAST_PUBLISH: i64 = EPOCH_END - 30 * DAY_MS;
/// 2012-04-01: the first METEOR release.
pub(crate) const RELEASES_FROM: i64 = 1_333_238_400_000;
/// 2015-01-01 to 2025-06-01: when migrations touched `lastUpdated` in bulk.
pub(crate) const MIGRATIONS_FROM: i64 = 1_420_070_400_000;
pub(crate) const MIGRATIONS_UNTIL: i64 = 1_748_736_000_000;
/// 2015-09-01: `isobuild:` pseudo-packages appear in dependency maps.
pub(crate) const ISOBUILD_SINCE: i64 = 1_441_065_600_000;
/// 2015-10-01: Windows builds of binary packages.
pub(crate) const WINDOWS_SINCE: i64 = 1_443_657_600_000;
/// 2018-06-01: Meteor 1.7 adds the `web.browser.legacy` architecture.
pub(crate) const LEGACY_BROWSER_SINCE: i64 = 1_527_811_200_000;
/// 2022-01-01: Apple Silicon builds.
pub(crate) const OSX_ARM64_SINCE: i64 = 1_640_995_200_000;
/// 2024-01-01: Linux ARM builds.
pub(crate) const LINUX_AARCH64_SINCE: i64 = 1_704_067_200_000;
/// 2024-07-15: Meteor 3.0 tools publish the blank `treeHash` (spec §8.2).
pub(crate) const BLANK_TREE_SINCE: i64 = 1_721_001_600_000;
/// Base64 SHA-256 of nothing: Meteor 3 tree hashes and empty READMEs.
pub(crate) const BLANK_HASH: &str = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
/// Alphabet of Meteor's `Random.id()`.
pub(crate) const ID_ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz";

/// Core package names; `Small` uses the first 24. Index 0 is `meteor`, 1 `meteor-tool`.
#[rustfmt::skip]
pub(crate) const CORE_NAMES: [&str; 80] = [
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
pub(crate) const METEOR: usize = 0;
/// Index of `meteor-tool` in [`CORE_NAMES`].
pub(crate) const TOOL: usize = 1;

/// METEOR release series, oldest first: each major version with its first and last
/// minor version (`0.9`, `1.0` to `1.12`, `2.0` to `2.16`, `3.0` to `3.3`).
pub(crate) const METEOR_SERIES: [(u32, u32, u32); 4] =
    [(0, 9, 9), (1, 0, 12), (2, 0, 16), (3, 0, 3)];

/// The small release tracks besides METEOR: name, description, publication window.
pub(crate) const OTHER_TRACKS: [(&str, &str, i64, i64); 2] = [
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
pub(crate) const CREATION_WEIGHTS: [u32; 14] = [1, 2, 8, 14, 14, 11, 8, 6, 5, 4, 3, 3, 3, 3];

/// Community packages' version counts: weights (‰) and ranges, a long tail.
pub(crate) const VERSION_COUNT_WEIGHTS: [u32; 6] = [555, 240, 120, 63, 20, 2];
pub(crate) const VERSION_COUNT_RANGES: [(u32, u32); 6] =
    [(1, 3), (4, 8), (9, 20), (21, 50), (51, 150), (151, 400)];

/// Building blocks of usernames.
#[rustfmt::skip]
pub(crate) const SYLLABLES: [&str; 30] = [
    "ka", "to", "mi", "ra", "ne", "lo", "su", "vi", "da", "ze", "po", "gu", "fe", "ri", "no",
    "ba", "che", "lu", "mo", "ta", "xi", "an", "el", "or", "qu", "is", "ja", "de", "hy", "wo",
];

/// Building blocks of community package names.
#[rustfmt::skip]
pub(crate) const WORDS: [&str; 64] = [
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
pub(crate) const DOT_SUFFIXES: [&str; 4] = [".js", ".css", ".io", ".ui"];

/// Words for package summaries.
#[rustfmt::skip]
pub(crate) const ADJECTIVES: [&str; 12] = [
    "Simple", "Reactive", "Fast", "Lightweight", "Flexible", "Declarative", "Isomorphic",
    "Tiny", "Complete", "Minimal", "Customizable", "Secure",
];

/// README sentences, with quotes and backslashes that JSON must escape.
pub(crate) const SENTENCES: [&str; 10] = [
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
pub(crate) const EXPORT_SUFFIXES: [&str; 5] = ["Helpers", "Config", "Schema", "Utils", "Api"];

/// ChaCha streams: one for the plan, and one per package (or day) for each pass.
pub(crate) const STREAM_PLAN: u64 = 0;
pub(crate) const STREAM_VERSIONS: u64 = 1 << 40;
pub(crate) const STREAM_DETAIL: u64 = 2 << 40;
pub(crate) const STREAM_BUILDS: u64 = 3 << 40;
pub(crate) const STREAM_RELEASES: u64 = 4 << 40;
pub(crate) const STREAM_STATS: u64 = 5 << 40;

/// Flush the line buffer to the output once it holds this much.
pub(crate) const FLUSH_BYTES: usize = 1 << 16;
