//! Search: what a person means by a few words. [`Index::find`] ranks in tiers: the exact
//! name, then the exact base name (`collection2` finds `aldeed:collection2`), then names
//! that start with the words, then names that contain them, then full text over the
//! summary and README excerpt. Within a tier, packages added more often in the last 30
//! days (the `adds` table, [`crate::adds`]) and updated more recently come first, and core
//! packages (names without an `owner:`) weigh half outside the exact tiers so they do not
//! crowd out the rest. The words are data, never query syntax: `aldeed:collection2` or
//! `"foo` are searched for as typed.
//!
//! The same query answers the CLI's `search`, the JSON API's `/api/v1/search` and the
//! web catalog's search page, with sort orders and filters for browsing.

use std::str::FromStr;

use rusqlite::params;
use serde::Serialize;

use crate::error::IndexError;
use crate::handle::Index;
use crate::query::{SearchHit, iso_date};

/// The longest text [`Index::find`] looks for, in characters; longer text is cut there
/// (callers that face the network refuse longer queries first).
pub const MAX_SEARCH_CHARS: usize = 200;

/// Most words of a query used for the full-text tier: every word must match, so more only
/// cost time.
const MAX_WORDS: usize = 16;

/// How much popularity weighs: a package's score is multiplied by [`popularity`].
const POPULARITY: f64 = 0.25;

/// The factor a package's score is multiplied by for its direct adds over 30 days:
/// `1 + ln(1 + adds) × POPULARITY` (×1.6 for 10 adds, ×2.7 for 1,000), so each tenfold
/// weighs the same. Stored with the adds (`adds.popularity`): SQLite as built here has no
/// `ln`.
pub(crate) fn popularity(direct_adds_30d: u64) -> f64 {
    1.0 + (direct_adds_30d as f64).ln_1p() * POPULARITY
}

/// How much freshness weighs: a score is multiplied by `1 + FRESHNESS / (1 + years since
/// the package was last updated)`: ×1.25 today, ×1.08 three years on.
const FRESHNESS: f64 = 0.25;

/// What a core package's score is multiplied by outside the exact-name tiers, so that the
/// hundred-odd core packages, which every app adds, do not bury the rest.
const CORE: f64 = 0.5;

/// One search: words, an order, filters and a page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Search {
    /// The words looked for; empty lists every package the filters keep.
    pub text: String,
    /// How hits are ordered.
    pub sort: SearchSort,
    /// Only packages this user maintains.
    pub maintainer: Option<String>,
    /// Only packages whose latest version was published within this many days.
    pub published_within_days: Option<u32>,
    /// Keep packages whose latest version is deprecated (left out by default, except a
    /// package whose name or base name is the query).
    pub include_deprecated: bool,
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

    /// The order's SQL `ORDER BY` over the candidate rows of [`Index::find`].
    fn order_by(self, has_text: bool) -> &'static str {
        match self {
            SearchSort::Relevance if has_text => "tier, score, last_updated DESC, package",
            SearchSort::Relevance | SearchSort::MostAdded => {
                "direct_30d DESC, last_updated DESC, package"
            }
            SearchSort::Updated => "last_updated DESC, package",
            SearchSort::Newest => "created DESC, package",
            SearchSort::Name => "package",
        }
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
        let text: String = search
            .text
            .trim()
            .chars()
            .take(MAX_SEARCH_CHARS)
            .collect::<String>()
            .to_lowercase();
        let words = fts_expression(&text);
        let has_text = !text.is_empty();
        if has_text && words.is_none() {
            return Err(IndexError::EmptyQuery {
                query: search.text.clone(),
            });
        }
        let now = chrono::Utc::now().timestamp_millis();
        let published_since = search
            .published_within_days
            .map(|days| now.saturating_sub(i64::from(days).saturating_mul(86_400_000)));
        // Candidates: names that contain the text (tiers 0 to 3) and full-text matches
        // (tier 4), or every package when there is no text; each package keeps its best
        // tier. Scores are negative, lower is better (as bm25's), so a boost multiplies.
        // The candidates are materialized: `bm25` may only be evaluated where its full-text
        // query runs, not in a query the planner folds it into.
        let sql = format!(
            "WITH matched AS MATERIALIZED (
                 SELECT l.id, CASE
                     WHEN l.package = ?1 THEN 0
                     WHEN substr(l.package, instr(l.package, ':') + 1) = ?1 THEN 1
                     WHEN substr(l.package, 1, length(?1)) = ?1
                       OR substr(l.package, instr(l.package, ':') + 1, length(?1)) = ?1 THEN 2
                     ELSE 3 END AS tier,
                     -1.0 AS text_rank
                 FROM latest l WHERE ?1 <> '' AND instr(l.package, ?1) > 0
                 UNION ALL
                 SELECT rowid, 4, bm25(search, 10.0, 2.0, 1.0)
                 FROM search WHERE ?2 IS NOT NULL AND search MATCH ?2
                 UNION ALL
                 SELECT id, 4, -1.0 FROM latest WHERE ?1 = ''
             ),
             best AS (SELECT id, min(tier) AS tier, min(text_rank) AS text_rank
                      FROM matched GROUP BY id),
             candidates AS (
                 SELECT l.package, v.version, v.description, l.last_updated, l.created,
                        b.tier, coalesce(a.direct_30d, 0) AS direct_30d,
                        b.text_rank
                          * coalesce(a.popularity, 1.0)
                          * (1.0 + {FRESHNESS} / (1.0 + max(?3 - coalesce(l.last_updated, 0), 0)
                                                     / 31536000000.0))
                          * CASE WHEN b.tier >= 2 AND instr(l.package, ':') = 0
                                 THEN {CORE} ELSE 1.0 END AS score
                 FROM best b
                 JOIN latest l ON l.id = b.id
                 JOIN versions v ON v.rowid = l.version_rowid
                 LEFT JOIN adds a ON a.package = l.package
                 WHERE (?4 IS NULL OR EXISTS (SELECT 1 FROM maintainers m
                                              WHERE m.username = ?4 AND m.package = l.package))
                   AND (?5 IS NULL OR v.published >= ?5)
                   AND (?6 OR b.tier <= 1 OR NOT v.deprecated)
                   AND NOT (?7 AND instr(l.package, ':') = 0)
             )
             SELECT package, version, description, last_updated, direct_30d
             FROM candidates ORDER BY {}
             LIMIT ?8 OFFSET ?9",
            search.sort.order_by(has_text)
        );
        let limit = i64::try_from(search.limit).unwrap_or(i64::MAX);
        let offset = i64::try_from(search.offset).unwrap_or(i64::MAX);
        let rows = self.collect(
            &sql,
            params![
                text,
                words,
                now,
                search.maintainer,
                published_since,
                search.include_deprecated,
                search.exclude_core,
                limit,
                offset
            ],
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, Option<String>>(2)?,
                    row.get::<_, Option<i64>>(3)?,
                    row.get::<_, i64>(4)?,
                ))
            },
        )?;
        rows.into_iter()
            .map(|(name, version, description, last_updated, adds)| {
                Ok(SearchHit {
                    maintainers: self.maintainers(&name)?,
                    name,
                    version,
                    description,
                    last_updated: last_updated.and_then(iso_date),
                    direct_adds_30d: u64::try_from(adds).unwrap_or(0),
                })
            })
            .collect()
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
