//! Search: what a person means by a few words. [`Index::find`] ranks in tiers: the exact
//! name, then the exact base name (`collection2` finds `aldeed:collection2`), then names
//! that start with the words, then names that contain them, then packages whose name,
//! summary, README excerpt or README (when the index was given README texts, as the
//! server's read model is) holds every word (FTS5). Within a tier the
//! package with the greater boost comes first (`schema::update_boost`: added more often in the
//! last 30 days, updated more recently, and halved for core packages, names without an
//! `owner:`, so that they do not crowd out the rest). The words are data, never query
//! syntax: `aldeed:collection2` or `"foo` are searched for as typed.
//!
//! The same query answers the CLI's `search`, the JSON API's `/api/v1/search` and the
//! web catalog's search page, with sort orders and filters for browsing.

use std::str::FromStr;

use rusqlite::params;
use serde::Serialize;

use crate::error::IndexError;
use crate::handle::Index;
use crate::query::SearchHit;

/// Most words of a query used for the full-text tier: every word must match, so more only
/// cost time.
const MAX_WORDS: usize = 16;

/// How much popularity weighs: a package's boost is multiplied by [`popularity`].
const POPULARITY: f64 = 0.25;

/// The factor a package's boost is multiplied by for its direct adds over 30 days:
/// `1 + ln(1 + adds) × POPULARITY` (×1.6 for 10 adds, ×2.7 for 1,000), so each tenfold
/// weighs the same. Stored with the adds (`adds.popularity`): SQLite as built here has no
/// `ln`.
pub(crate) fn popularity(direct_adds_30d: u64) -> f64 {
    1.0 + (direct_adds_30d as f64).ln_1p() * POPULARITY
}

/// One search: words, an order, filters and a page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Search {
    /// The words looked for; empty lists every package the filters keep. Taken whole:
    /// callers that face the network bound its length first (the server's
    /// `--web-max-query-chars`); the full-text tier uses its first 16 words.
    pub text: String,
    /// How hits are ordered.
    pub sort: SearchSort,
    /// Only packages this user maintains.
    pub maintainer: Option<String>,
    /// Only packages whose latest version was published within this many whole UTC days
    /// before today, or today (from midnight UTC `days` days ago).
    pub published_within_days: Option<u32>,
    /// Keep packages whose latest version is deprecated (left out by default, except a
    /// package whose name or base name is the query).
    pub include_deprecated: bool,
    /// Keep packages whose every version is unmigrated (spec §3.8: published before Meteor
    /// 0.9, in a format the current tool cannot use), found by their greatest version;
    /// left out by default.
    pub include_unmigrated: bool,
    /// Leave out core packages (names without an `owner:` prefix).
    pub exclude_core: bool,
    /// Hits to skip.
    pub offset: usize,
    /// Hits to return at most.
    pub limit: usize,
}

/// The orders [`Index::find`] offers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SearchSort {
    /// Best match first (see the module doc); with no words, the most added first.
    #[default]
    Relevance,
    /// Most direct adds over the last 30 days first.
    MostAdded,
    /// Most recently updated first.
    Updated,
    /// Most recently created (first published) first.
    Newest,
    /// By name.
    Name,
}

impl SearchSort {
    /// Every order, in the order a form lists them.
    pub const ALL: [SearchSort; 5] = [
        SearchSort::Relevance,
        SearchSort::MostAdded,
        SearchSort::Updated,
        SearchSort::Newest,
        SearchSort::Name,
    ];

    /// The order's name in URLs and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            SearchSort::Relevance => "relevance",
            SearchSort::MostAdded => "most-added",
            SearchSort::Updated => "updated",
            SearchSort::Newest => "newest",
            SearchSort::Name => "name",
        }
    }

    /// The order's SQL `ORDER BY` over the candidate rows of [`Index::find`] (columns of
    /// `latest` and `tier`), each column prefixed with `table`.
    fn order_by(self, has_text: bool, table: &str) -> String {
        let adds = format!(
            "coalesce((SELECT direct_30d FROM adds WHERE adds.package = {table}package), 0) DESC"
        );
        let terms: Vec<String> = match self {
            SearchSort::Relevance if has_text => {
                vec![
                    "tier".into(),
                    "boost DESC".into(),
                    "last_updated DESC".into(),
                ]
            }
            SearchSort::Relevance | SearchSort::MostAdded => {
                return format!("{adds}, {table}last_updated DESC, {table}package");
            }
            SearchSort::Updated => vec!["last_updated DESC".into()],
            SearchSort::Newest => vec!["created DESC".into()],
            SearchSort::Name => vec![],
        };
        terms
            .iter()
            .chain(std::iter::once(&"package".to_owned()))
            .map(|term| format!("{table}{term}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl FromStr for SearchSort {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        SearchSort::ALL
            .into_iter()
            .find(|sort| sort.as_str() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = SearchSort::ALL.iter().map(|s| s.as_str()).collect();
                format!(
                    "unknown sort order `{text}`: use one of {}",
                    names.join(", ")
                )
            })
    }
}

impl Index {
    /// Packages matching `search`, best first by its order; see the module doc for the
    /// ranking. Empty text lists every package the filters keep; text without a letter or
    /// digit is refused ([`IndexError::EmptyQuery`]).
    pub fn find(&self, search: &Search) -> Result<Vec<SearchHit>, IndexError> {
        self.require_synced()?;
        let text = search.text.trim().to_lowercase();
        let words = fts_expression(&text);
        let has_text = !text.is_empty();
        if has_text && words.is_none() {
            return Err(IndexError::EmptyQuery {
                query: search.text.clone(),
            });
        }
        // Whole UTC days, so that a search answers the same all day (its answer is kept
        // and tagged until the day or the catalog changes).
        let today = chrono::Utc::now()
            .date_naive()
            .and_time(chrono::NaiveTime::MIN)
            .and_utc()
            .timestamp_millis();
        let published_since = search
            .published_within_days
            .map(|days| today.saturating_sub(i64::from(days).saturating_mul(86_400_000)));
        // Candidates: every package when there is no text; else the full-text matches
        // (every word in a name, summary, README excerpt or README) and the names that contain the
        // text, each once. A package's tier follows from its name; the tier and its boost
        // order it, both read from `latest`: no per-hit ranking function, so a word that
        // matches most of the catalog costs a scan and a sort. Only the page's hits read
        // their version records and adds.
        let sql = format!(
            "WITH matched AS MATERIALIZED (
                 SELECT rowid AS id FROM search WHERE ?2 IS NOT NULL AND search MATCH ?2
             ),
             candidates AS (
                 SELECT l.* FROM matched m JOIN latest l ON l.id = m.id
                 UNION ALL
                 SELECT * FROM latest
                 WHERE ?1 = '' OR (instr(package, ?1) > 0 AND id NOT IN matched)
             ),
             ranked AS (
                 SELECT package, version_rowid, last_updated, created, boost,
                        CASE
                            WHEN package = ?1 THEN 0
                            WHEN substr(package, instr(package, ':') + 1) = ?1 THEN 1
                            WHEN substr(package, 1, length(?1)) = ?1
                              OR substr(package, instr(package, ':') + 1, length(?1)) = ?1
                              THEN 2
                            WHEN ?1 <> '' AND instr(package, ?1) > 0 THEN 3
                            ELSE 4 END AS tier
                 FROM candidates c
                 WHERE (?3 IS NULL OR EXISTS (SELECT 1 FROM maintainers m
                                              WHERE m.username = ?3 AND m.package = c.package))
                   AND (?4 IS NULL OR published >= ?4)
                   AND (?5 OR NOT deprecated OR package = ?1
                        OR substr(package, instr(package, ':') + 1) = ?1)
                   AND NOT (?6 AND instr(package, ':') = 0)
                   AND (?9 OR NOT unmigrated)
             ),
             page AS (SELECT * FROM ranked r ORDER BY {inner} LIMIT ?7 OFFSET ?8)
             SELECT p.package, v.version, v.description, p.last_updated,
                    coalesce((SELECT direct_30d FROM adds WHERE adds.package = p.package), 0)
             FROM page p JOIN versions v ON v.rowid = p.version_rowid
             ORDER BY {outer}",
            inner = search.sort.order_by(has_text, "r."),
            outer = search.sort.order_by(has_text, "p."),
        );
        let limit = i64::try_from(search.limit).unwrap_or(i64::MAX);
        let offset = i64::try_from(search.offset).unwrap_or(i64::MAX);
        self.hits(
            &sql,
            params![
                text,
                words,
                search.maintainer,
                published_since,
                search.include_deprecated,
                search.exclude_core,
                limit,
                offset,
                search.include_unmigrated
            ],
        )
    }

    /// [`Index::find`] with the relevance order and deprecated packages kept: the first
    /// `limit` packages matching `query` (empty: every package), of `maintainer` if given.
    pub fn search(
        &self,
        query: &str,
        maintainer: Option<&str>,
        limit: usize,
    ) -> Result<Vec<SearchHit>, IndexError> {
        self.find(&Search {
            text: query.to_owned(),
            maintainer: maintainer.map(str::to_owned),
            include_deprecated: true,
            limit,
            ..Search::default()
        })
    }
}

/// The full-text query for `query`: each word quoted (so nothing the user types is FTS5
/// syntax) as a prefix, all required; `None` when it has no words.
fn fts_expression(query: &str) -> Option<String> {
    let words: Vec<String> = query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .take(MAX_WORDS)
        .map(|word| format!("\"{word}\"*"))
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_orders_round_trip_through_their_names() {
        for sort in SearchSort::ALL {
            assert_eq!(sort.as_str().parse::<SearchSort>(), Ok(sort));
        }
        let error = "best".parse::<SearchSort>().unwrap_err();
        assert!(error.contains("most-added"), "{error}");
    }

    #[test]
    fn queries_become_prefix_words() {
        assert_eq!(
            fts_expression("iron:router").as_deref(),
            Some(r#""iron"* "router"*"#)
        );
        assert_eq!(
            fts_expression("  Fast  \"csv\" (parser) ").as_deref(),
            Some(r#""Fast"* "csv"* "parser"*"#)
        );
        assert_eq!(fts_expression(" :: - "), None);
        assert_eq!(fts_expression("Ümlaut"), Some(r#""Ümlaut"*"#.to_owned()));
    }

    #[test]
    fn words_are_quoted_never_syntax() {
        assert_eq!(
            fts_expression("aldeed:collection2").as_deref(),
            Some("\"aldeed\"* \"collection2\"*")
        );
        assert_eq!(fts_expression("\"foo").as_deref(), Some("\"foo\"*"));
        assert_eq!(
            fts_expression("NEAR(a b) OR -c").as_deref(),
            Some("\"NEAR\"* \"a\"* \"b\"* \"OR\"* \"c\"*")
        );
        assert_eq!(fts_expression(" :: "), None);
        let many = "w ".repeat(100);
        assert_eq!(
            fts_expression(&many).unwrap().matches('*').count(),
            MAX_WORDS
        );
    }
}
