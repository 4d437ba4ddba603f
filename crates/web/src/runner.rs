//! The bounded query runner that both the JSON API (`routes`) and the pages (`pages`) ask
//! the read model through: a question runs on the blocking pool only with one of
//! [`ApiConfig::max_queries`] turns, a client's current entity tag is answered `304` before
//! any query, and the bounds every list shares (page size, depth, query length; each a flag
//! of `exosphere serve`) are checked here once.

use std::hash::{Hash as _, Hasher as _};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Uri};
use exosphere_index::{Index, Search, SearchSort};
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::model::{Freshness, QueryError, ReadModel};
use crate::rendered::{DEFAULT_CACHE_BYTES, Rendered};
use crate::reply::{ApiError, entity_tag, not_modified, utc_day};

/// Items a list returns when the request gives no `limit` (or the cap, if lower).
const DEFAULT_LIMIT: u64 = 20;

/// The default of [`ApiConfig::max_limit`] (`--api-max-limit`).
pub const DEFAULT_MAX_LIMIT: u64 = 100;

/// The default of [`ApiConfig::max_page_depth`] (`--web-max-page-depth`): atmosphere's
/// longest list, the dependents of `meteor`, holds about 15,000.
pub const DEFAULT_MAX_PAGE_DEPTH: u64 = 50_000;

/// The default of [`ApiConfig::max_query_chars`] (`--web-max-query-chars`): longer than
/// any package name, and than the words a person types.
pub const DEFAULT_MAX_QUERY_CHARS: usize = 200;

/// How long a request waits for one of the [`ApiConfig::max_queries`] turns before it is
/// answered `503` (busy): long enough for a burst, short enough not to pile requests up.
const QUEUE_WAIT: Duration = Duration::from_secs(1);

/// How the API and the pages bound what one request may ask for, and how many run at once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ApiConfig {
    /// The most items one page, search or bulk lookup returns (`--api-max-limit`); a larger
    /// `limit` is lowered to it, and a bulk lookup of more names is refused.
    pub max_limit: u64,
    /// The deepest item a page of a list may start at, in the API (`cursor`) and on the
    /// pages (`?page=`) alike (`--web-max-page-depth`): a page is an `OFFSET` query, whose
    /// cost grows with its position, so crawling a list through ever deeper pages is
    /// bounded. Deeper pages are refused with `400` `cursor_too_deep`.
    pub max_page_depth: u64,
    /// The longest search words accepted, in characters (`--web-max-query-chars`); longer
    /// ones are refused with `400` `query_too_long`, and the pages' search boxes take no
    /// more.
    pub max_query_chars: usize,
    /// The most queries running at once on the blocking pool (`--api-max-queries`), each on
    /// its own reader connection (as many are kept open), shared by the API and the pages;
    /// a request that waits [`QUEUE_WAIT`] for a turn is answered `503` with `Retry-After`,
    /// so web load cannot take the blocking pool that DDP, uploads and the feeder share.
    pub max_queries: usize,
    /// The bytes of encoded answers (pages, feeds, badges, API bodies) kept to be served
    /// again while the read model stays as they were read (`--web-cache-bytes`; `0` keeps
    /// none): a repeated request costs no query and no render.
    pub cache_bytes: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            max_limit: DEFAULT_MAX_LIMIT,
            max_page_depth: DEFAULT_MAX_PAGE_DEPTH,
            max_query_chars: DEFAULT_MAX_QUERY_CHARS,
            max_queries: default_max_queries(),
            cache_bytes: DEFAULT_CACHE_BYTES,
        }
    }
}

impl ApiConfig {
    /// A hash of the bounds that shape answers (the page size cap, the depth and query
    /// length shown or refused), for entity tags: a restart with other bounds changes every
    /// tag. How many queries run at once changes no answer, so it is left out.
    fn stamp(&self) -> u64 {
        let mut hasher = std::hash::DefaultHasher::new();
        (self.max_limit, self.max_page_depth, self.max_query_chars).hash(&mut hasher);
        hasher.finish()
    }
}

/// The default of [`ApiConfig::max_queries`]: twice the CPUs, since a query mostly reads
/// pages the OS has cached.
pub fn default_max_queries() -> usize {
    std::thread::available_parallelism().map_or(2, |cpus| cpus.get() * 2)
}

/// The read model with its turns (one per query allowed to run at once) and the answers it
/// gave that may be given again.
#[derive(Clone)]
pub(crate) struct Runner {
    model: Arc<ReadModel>,
    config: ApiConfig,
    turns: Arc<Semaphore>,
    rendered: Arc<Rendered>,
}

/// What a question came back with: its body (`None` when the client's copy is current, a
/// `304`), the entity tag of that body and how current the read model was.
pub(crate) struct Answer {
    /// The encoded body, unless the client holds it already.
    pub body: Option<Bytes>,
    /// Its entity tag.
    pub tag: String,
    /// The read model's state the body was read at.
    pub freshness: Freshness,
}

impl Runner {
    /// The runner over `model`, keeping as many idle readers as queries may run at once.
    pub fn new(model: Arc<ReadModel>, config: ApiConfig) -> Runner {
        let turns = config.max_queries.max(1);
        model.keep_idle_readers(turns);
        Runner {
            rendered: Arc::new(Rendered::new(config.cache_bytes)),
            model,
            config,
            turns: Arc::new(Semaphore::new(turns)),
        }
    }

    /// The bounds it runs with.
    pub fn config(&self) -> &ApiConfig {
        &self.config
    }

    /// The read model it asks, for questions that are not one query of it (run them within
    /// a turn: [`Runner::blocking`]).
    pub fn model(&self) -> &Arc<ReadModel> {
        &self.model
    }

    /// Waits up to [`QUEUE_WAIT`] for a turn to query; `503` (busy) if none comes.
    pub async fn turn(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        match tokio::time::timeout(QUEUE_WAIT, Arc::clone(&self.turns).acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) | Err(_) => Err(ApiError::busy()),
        }
    }

    /// Runs `work` on the blocking pool within a turn: for questions asked of something
    /// other than the read model (the usage numbers), bounded like its queries.
    pub async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let turn = self.turn().await?;
        exosphere_task::blocking(move || {
            let done = work();
            drop(turn);
            done
        })
        .await
        .map_err(|error| ApiError::internal(&error))
    }

    /// Runs `query` with the request's `parsed` parameters on the read model for an encoded
    /// body. Its answer's tag hashes `format` (what the body's shape depends on besides the
    /// index and the URL) with the bounds this runner keeps, the UTC day, the read model's
    /// freshness and `uri`; when the client holds that tag already the answer has no body,
    /// and no query runs; when an earlier request got a lasting body under that tag (and
    /// format and URL), it is answered again, and no query runs either. An answer that does
    /// not last is neither kept nor confirmed later: its tag is [`provisional`]. Errors: the
    /// parameters' own, the read model's state (building, off, busy) and the query's.
    pub async fn ask<P, F>(
        &self,
        parsed: Result<P, ApiError>,
        headers: &HeaderMap,
        uri: &Uri,
        format: &str,
        query: F,
    ) -> Result<Answer, ApiError>
    where
        P: Send + 'static,
        F: FnOnce(&Index, P) -> Result<Encoded, ApiError> + Send + 'static,
    {
        let parsed = parsed?;
        if self.model.is_off() {
            return Err(ApiError::disabled());
        }
        let freshness = self.model.freshness().ok_or_else(ApiError::building)?;
        let format = &format!("{format}/{:016x}", self.config.stamp());
        // One day for the whole answer: a query that runs across midnight is tagged (and
        // kept) under the day it counted from.
        let day = utc_day();
        let tag = entity_tag(format, day, &freshness, uri);
        if not_modified(headers, &tag, false) {
            return Ok(Answer {
                body: None,
                tag,
                freshness,
            });
        }
        if let Some(body) = self.rendered.get(&cache_key(&tag, format, uri)) {
            return Ok(Answer {
                body: (!not_modified(headers, &tag, true)).then_some(body),
                tag,
                freshness,
            });
        }
        let turn = self.turn().await?;
        let model = Arc::clone(&self.model);
        let asked = exosphere_task::blocking(move || {
            let answer = model.query(|index| query(index, parsed));
            drop(turn);
            answer
        });
        match asked.await {
            Ok(Ok((Ok(encoded), freshness))) => {
                let tag = entity_tag(format, day, &freshness, uri);
                if !encoded.lasting {
                    return Ok(Answer {
                        body: Some(encoded.body),
                        tag: provisional(&tag),
                        freshness,
                    });
                }
                self.rendered
                    .put(cache_key(&tag, format, uri), encoded.body.clone());
                Ok(Answer {
                    body: (!not_modified(headers, &tag, true)).then_some(encoded.body),
                    tag,
                    freshness,
                })
            }
            Ok(Ok((Err(error), _))) => Err(error),
            Ok(Err(QueryError::Building)) => Err(ApiError::building()),
            Ok(Err(QueryError::Index(error))) => Err(ApiError::from(error)),
            Err(error) => Err(ApiError::internal(&error)),
        }
    }

    /// The page size asked for (`limit`), between 1 and the cap.
    pub fn limit(&self, asked: Option<&str>) -> Result<u64, ApiError> {
        let cap = self.config.max_limit.max(1);
        match asked {
            None => Ok(DEFAULT_LIMIT.min(cap)),
            Some(text) => match text.parse::<u64>() {
                Ok(limit) if limit >= 1 => Ok(limit.min(cap)),
                _ => Err(ApiError::bad_request(
                    "invalid_parameter",
                    format!("limit must be a whole number from 1 to {cap}, not {text:?}"),
                )),
            },
        }
    }

    /// Where a page starts: the `next_cursor` of the page before, or the start.
    pub fn offset(&self, cursor: Option<&str>) -> Result<u64, ApiError> {
        let offset = cursor.map_or(Ok(0), |cursor| {
            cursor.parse().map_err(|_| {
                ApiError::bad_request(
                    "invalid_cursor",
                    format!(
                        "cursor {cursor:?} is not one this API handed out: pass a page's \
                         next_cursor as it is, or leave it out to start from the first page"
                    ),
                )
            })
        })?;
        self.within_depth(offset)
    }

    /// `offset`, or a `400` when it starts deeper than [`ApiConfig::max_page_depth`].
    pub fn within_depth(&self, offset: u64) -> Result<u64, ApiError> {
        let deepest = self.config.max_page_depth;
        if offset > deepest {
            return Err(ApiError::bad_request(
                "cursor_too_deep",
                format!(
                    "pages past item {deepest} are not served (each costs a scan of every item \
                     before it): narrow the search, or sync the catalog with `exosphere sync` \
                     and query it locally"
                ),
            ));
        }
        Ok(offset)
    }
}

/// An answer's encoded body, and whether it lasts: whether the same question at the same
/// read model, day and URL always gets these bytes. One that does not (a README shown as
/// its excerpt while its file may still arrive) is never kept, and its tag never confirmed.
pub(crate) struct Encoded {
    /// The body.
    pub body: Bytes,
    /// Whether it lasts.
    pub lasting: bool,
}

impl Encoded {
    /// `body` as encoded, without the spare capacity the encoder's buffer grew (a kept
    /// answer counts its length against `--web-cache-bytes`), and whether it lasts.
    pub fn new(body: Vec<u8>, lasting: bool) -> Encoded {
        Encoded {
            body: Bytes::from(body.into_boxed_slice()),
            lasting,
        }
    }
}

/// The entity tag of an answer that does not last: `tag` marked, so that no request's
/// `If-None-Match` ever matches the tag a lasting answer of the same question gets.
fn provisional(tag: &str) -> String {
    format!("{}-provisional\"", tag.trim_end_matches('"'))
}

/// What an encoded answer is cached under: its entity tag (the read model's freshness and
/// the rest, hashed) with the format and URL written out, so that two URLs whose tags
/// collide never share a body.
fn cache_key(tag: &str, format: &str, uri: &Uri) -> String {
    format!("{tag} {format} {uri}")
}

/// The most days `published_within` accepts: a century.
const MAX_DAYS: u32 = 36_500;

/// The search fields of a query string, read alike by `/api/v1/search` and the search
/// page: words, an order and filters (each optional).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct SearchFields {
    /// Search words.
    pub q: Option<String>,
    /// An order's name ([`SearchSort`]).
    pub sort: Option<String>,
    /// Only this user's packages.
    pub maintainer: Option<String>,
    /// Only packages published within this many days.
    pub published_within: Option<String>,
    /// `true` keeps deprecated packages.
    pub include_deprecated: Option<String>,
    /// `true` keeps packages whose every version is unmigrated.
    pub include_unmigrated: Option<String>,
    /// `true` leaves core packages out.
    pub exclude_core: Option<String>,
}

impl SearchFields {
    /// The order and filters given, by parameter name (empty values count as not given, as
    /// a form sends them): what a link to the same search carries besides the words.
    pub fn narrowing(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("sort", &self.sort),
            ("maintainer", &self.maintainer),
            ("published_within", &self.published_within),
            ("include_deprecated", &self.include_deprecated),
            ("include_unmigrated", &self.include_unmigrated),
            ("exclude_core", &self.exclude_core),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name, value.as_deref().filter(|v| !v.is_empty())?)))
    }

    /// Whether an order or a filter was given.
    pub fn narrows(&self) -> bool {
        self.narrowing().next().is_some()
    }

    /// The search these fields ask for, a page of it, within `bounds`; a `400` naming the
    /// field that is wrong.
    pub fn search(self, bounds: &ApiConfig, offset: u64, limit: u64) -> Result<Search, ApiError> {
        let text = search_words(self.q, bounds.max_query_chars)?;
        let invalid = |message: String| ApiError::bad_request("invalid_parameter", message);
        let given = |field: Option<String>| field.filter(|value| !value.is_empty());
        let sort = match given(self.sort) {
            Some(sort) => sort.parse::<SearchSort>().map_err(invalid)?,
            None => SearchSort::default(),
        };
        let published_within_days = match given(self.published_within) {
            Some(days) => Some(
                days.parse::<u32>()
                    .ok()
                    .filter(|days| (1..=MAX_DAYS).contains(days))
                    .ok_or_else(|| {
                        invalid(format!(
                            "published_within must be a number of days from 1 to {MAX_DAYS}, \
                             not {days:?}"
                        ))
                    })?,
            ),
            None => None,
        };
        Ok(Search {
            text,
            sort,
            maintainer: given(self.maintainer),
            published_within_days,
            include_deprecated: flag("include_deprecated", self.include_deprecated)?,
            include_unmigrated: flag("include_unmigrated", self.include_unmigrated)?,
            exclude_core: flag("exclude_core", self.exclude_core)?,
            offset: usize_of(offset),
            limit: usize_of(limit),
        })
    }
}

/// A `true`/`false` query parameter; absent or empty is `false`.
fn flag(name: &str, value: Option<String>) -> Result<bool, ApiError> {
    match value.as_deref() {
        None | Some("" | "false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(ApiError::bad_request(
            "invalid_parameter",
            format!("{name} must be true or false, not {other:?}"),
        )),
    }
}

/// The search words `q`, or a `400` when they are longer than `max` characters
/// ([`ApiConfig::max_query_chars`]).
fn search_words(q: Option<String>, max: usize) -> Result<String, ApiError> {
    let q = q.unwrap_or_default();
    if q.chars().count() > max {
        return Err(ApiError::bad_request(
            "query_too_long",
            format!(
                "q is longer than {max} characters, the most this server takes; search with fewer words"
            ),
        ));
    }
    Ok(q)
}

/// A count or position as an index query takes it (larger ones are clamped).
pub(crate) fn usize_of(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse as _;

    #[tokio::test(start_paused = true)]
    async fn a_query_without_a_turn_within_the_wait_is_answered_busy() {
        let config = ApiConfig {
            max_queries: 1,
            ..ApiConfig::default()
        };
        let runner = Runner::new(ReadModel::new(), config);
        let held = runner.turn().await.unwrap();
        let busy = runner.turn().await.unwrap_err();
        assert_eq!(busy.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(busy.code, "api_busy");
        let response = busy.into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        drop(held);
        assert!(
            runner.turn().await.is_ok(),
            "a released turn is taken again"
        );
    }

    #[test]
    fn bounds_are_checked_once_for_everyone() {
        let runner = Runner::new(ReadModel::new(), ApiConfig::default());
        assert_eq!(runner.limit(None).unwrap(), DEFAULT_LIMIT);
        assert_eq!(runner.limit(Some("100000")).unwrap(), DEFAULT_MAX_LIMIT);
        assert_eq!(
            runner.limit(Some("0")).unwrap_err().code,
            "invalid_parameter"
        );
        assert_eq!(
            runner.offset(Some("50000")).unwrap(),
            DEFAULT_MAX_PAGE_DEPTH
        );
        assert_eq!(
            runner.offset(Some("50001")).unwrap_err().code,
            "cursor_too_deep"
        );
        assert_eq!(runner.offset(Some("x")).unwrap_err().code, "invalid_cursor");
        let words = |q: String| {
            SearchFields {
                q: Some(q),
                ..SearchFields::default()
            }
            .search(runner.config(), 0, 1)
        };
        assert_eq!(words("é".repeat(200)).unwrap().text.chars().count(), 200);
        let long = words("é".repeat(201)).unwrap_err();
        assert_eq!(long.code, "query_too_long");
        assert!(long.message.contains("200 characters"), "{}", long.message);
    }

    #[test]
    fn configured_bounds_replace_the_defaults_and_change_every_tag() {
        let config = ApiConfig {
            max_page_depth: 40,
            max_query_chars: 5,
            ..ApiConfig::default()
        };
        assert_ne!(config.stamp(), ApiConfig::default().stamp());
        let busier = ApiConfig {
            max_queries: 1000,
            ..ApiConfig::default()
        };
        assert_eq!(busier.stamp(), ApiConfig::default().stamp());
        let runner = Runner::new(ReadModel::new(), config);
        assert_eq!(runner.within_depth(40).unwrap(), 40);
        let deep = runner.within_depth(41).unwrap_err();
        assert!(deep.message.contains("past item 40"), "{}", deep.message);
        let fields = SearchFields {
            q: Some("router".into()),
            ..SearchFields::default()
        };
        let long = fields.search(runner.config(), 0, 1).unwrap_err();
        assert_eq!(long.code, "query_too_long");
        assert!(long.message.contains("5 characters"), "{}", long.message);
    }
}
