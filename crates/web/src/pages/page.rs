//! What every page shares: the site's settings ([`SiteConfig`]) and state ([`Site`]), the
//! layout around each page, how a page is asked of the read model and rendered with its
//! entity tag, the usage numbers a page may show, the HTML error pages (the API's error
//! kinds, worded for people), and the headers every answer of the pages carries.

use std::hash::{Hash as _, Hasher as _};
use std::sync::{Arc, OnceLock};

use askama::Template;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use exosphere_index::Index;
use exosphere_readme::RenderOptions;
use serde::Deserialize;

use super::assets;
use crate::readme_source::ReadmeSource;
use crate::reply::{ApiError, current};
use crate::runner::{Answer, Encoded, Runner, SearchFields};
use crate::usage::{Usage, UsageRange, UsageSource};

/// The Content-Security-Policy of every answer of the pages: nothing but this server's own
/// stylesheets and images, no script at all, no inline style (the pages carry no `style`
/// attribute), forms only to this server, never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; \
     img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// [`CONTENT_SECURITY_POLICY`] for a server that lets READMEs show images from other hosts
/// (`--readme-remote-images`): those over `https:` only.
pub const CONTENT_SECURITY_POLICY_REMOTE_IMAGES: &str = "default-src 'none'; \
     style-src 'self'; img-src 'self' https:; form-action 'self'; base-uri 'none'; \
     frame-ancestors 'none'";

/// Links to other hosts (a package's repository or homepage) send no `Referer`: which
/// package a person looked at is theirs.
const REFERRER_POLICY: &str = "no-referrer";

/// `text/html` in UTF-8.
pub const HTML: &str = "text/html; charset=utf-8";

/// How the pages are served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteConfig {
    /// The URL people reach this server at, without a trailing slash (`--public-url`;
    /// `exosphere serve` falls back to `http://<the listen address>`): every absolute URL
    /// the pages, feeds and badges carry (canonical links, feed entries, the `meteor` tool's
    /// server URL) starts with it, never with a request's `Host` header, which a client
    /// chooses.
    pub public_url: String,
    /// Items on one page of a list (search results, versions, dependents, a maintainer's
    /// packages, the browse-all list) and entries in a feed (`--web-page-size`); the
    /// deepest page starts at the API's cursor bound.
    pub page_size: u64,
    /// How READMEs are rendered: whether `https:` images on other hosts load
    /// (`--readme-remote-images`, which also opens the CSP's `img-src` to `https:`) and how
    /// many bytes are read (`--readme-max-bytes`); the link base is set per package.
    pub readme: RenderOptions,
}

impl SiteConfig {
    /// A hash of every setting a page's body shows (absolute URLs, list lengths, how
    /// READMEs render), for entity tags: a restart with other settings changes every tag.
    pub fn stamp(&self) -> u64 {
        let mut hasher = std::hash::DefaultHasher::new();
        self.public_url.hash(&mut hasher);
        self.page_size.hash(&mut hasher);
        readme_stamp(&self.readme).hash(&mut hasher);
        hasher.finish()
    }

    /// The Content-Security-Policy of every answer of the pages.
    pub fn content_security_policy(&self) -> &'static str {
        if self.readme.remote_images {
            CONTENT_SECURITY_POLICY_REMOTE_IMAGES
        } else {
            CONTENT_SECURITY_POLICY
        }
    }
}

impl Default for SiteConfig {
    fn default() -> Self {
        SiteConfig {
            public_url: "http://localhost:3000".to_owned(),
            page_size: 20,
            readme: RenderOptions::default(),
        }
    }
}

/// The state of the pages' routes.
#[derive(Clone)]
pub struct Site {
    /// The read model with its bounded turns, shared with the API.
    pub runner: Runner,
    /// The settings.
    pub config: Arc<SiteConfig>,
    /// Usage numbers, when the server has any.
    pub usage: Option<Arc<dyn UsageSource>>,
    /// README files, when the server has a file store; without one, the excerpts.
    pub readmes: Option<Arc<dyn ReadmeSource>>,
}

/// What the layout around every page shows besides the page itself.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The page's title (the site's name is added).
    pub title: String,
    /// Its canonical absolute URL, from the public URL; none for error pages.
    pub canonical: Option<String>,
    /// The stylesheets' URLs.
    pub stylesheets: Vec<String>,
    /// The logo's URL (the favicon too).
    pub logo: String,
    /// The Atom feed this page offers, if any.
    pub feed: Option<String>,
    /// The words in the header's search box.
    pub query: String,
    /// The most characters the search boxes take (`--web-max-query-chars`).
    pub max_query_chars: usize,
}

/// The query parameters pages read (each reads its own; others are ignored).
#[derive(Debug, Default, Deserialize)]
pub struct PageParams {
    /// Search words, an order and filters.
    #[serde(flatten)]
    pub search: SearchFields,
    /// A page number, from 1.
    pub page: Option<String>,
    /// The name a browse page starts after.
    pub after: Option<String>,
    /// A usage chart's range.
    pub range: Option<String>,
}

/// One page of a list: its number and where it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageAt {
    /// The page number, from 1.
    pub number: u64,
    /// The position of its first item.
    pub offset: u64,
    /// Items per page.
    pub size: u64,
}

/// The links between the pages of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pager {
    /// The page shown, from 1.
    pub number: u64,
    /// The page before and after, when there is one.
    pub previous: Option<String>,
    /// How the link to `previous` reads.
    pub previous_label: &'static str,
    /// See `previous`.
    pub next: Option<String>,
}

impl Pager {
    /// The pager of the page `at` of a list at `path` (whose other parameters are
    /// `query`), `has_next` when a page follows.
    pub fn new(path: &str, query: &[(&str, &str)], at: PageAt, has_next: bool) -> Pager {
        let link = |number: u64| {
            let mut pairs = form_urlencoded::Serializer::new(String::new());
            for (key, value) in query {
                pairs.append_pair(key, value);
            }
            if number > 1 {
                pairs.append_pair("page", &number.to_string());
            }
            let query = pairs.finish();
            if query.is_empty() {
                path.to_owned()
            } else {
                format!("{path}?{query}")
            }
        };
        Pager {
            number: at.number,
            previous: (at.number > 1).then(|| link(at.number - 1)),
            previous_label: "Previous page",
            next: has_next.then(|| link(at.number + 1)),
        }
    }
}

/// The usage numbers a page shows: none without a source, a note when it failed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Shown {
    /// The server has no usage source.
    Off,
    /// The source failed; the page says the numbers are unavailable.
    Failed,
    /// The numbers over the range.
    Numbers(Usage),
}

impl Site {
    /// The layout of a page titled `title` whose canonical path is `path`.
    pub fn layout(&self, title: impl Into<String>, path: &str) -> Layout {
        Layout {
            title: title.into(),
            canonical: Some(self.absolute(path)),
            stylesheets: assets::stylesheets(),
            logo: assets::href("logo.svg"),
            feed: None,
            query: String::new(),
            max_query_chars: self.runner.config().max_query_chars,
        }
    }

    /// `path` as an absolute URL on the public URL.
    pub fn absolute(&self, path: &str) -> String {
        format!("{}{path}", self.config.public_url)
    }

    /// Runs `query` on the read model and renders its page: the answer has an entity tag
    /// over this build's templates and assets, `salt` (what else the page shows, such as
    /// usage numbers), the read model's state and the URL, and is a `304` when the client
    /// holds it; an error is its HTML error page.
    pub async fn page<P, T, F>(
        &self,
        parsed: Result<P, ApiError>,
        request: (&HeaderMap, &Uri),
        salt: u64,
        query: F,
    ) -> Response
    where
        P: Send + 'static,
        T: Template,
        F: FnOnce(&Index, P) -> Result<T, ApiError> + Send + 'static,
    {
        self.page_as(parsed, request, salt, move |index, parsed| {
            Ok((query(index, parsed)?, true))
        })
        .await
    }

    /// [`Site::page`] for a page that may not last: `query` says whether it does (see
    /// `runner::Encoded`).
    pub async fn page_as<P, T, F>(
        &self,
        parsed: Result<P, ApiError>,
        (headers, uri): (&HeaderMap, &Uri),
        salt: u64,
        query: F,
    ) -> Response
    where
        P: Send + 'static,
        T: Template,
        F: FnOnce(&Index, P) -> Result<(T, bool), ApiError> + Send + 'static,
    {
        let asked = self
            .encoded(parsed, (headers, uri), salt, move |index, parsed| {
                let (page, lasting) = query(index, parsed)?;
                Ok(Encoded::new(render(&page)?.into_bytes(), lasting))
            })
            .await;
        match asked {
            Ok(answer) => text(answer, HTML),
            Err(error) => self.error_page(&error),
        }
    }

    /// Runs `query` on the read model for a text answer (a page, a feed, a badge), with the
    /// entity tag [`Site::page`] gives it.
    pub async fn text<P, F>(
        &self,
        parsed: Result<P, ApiError>,
        request: (&HeaderMap, &Uri),
        salt: u64,
        query: F,
    ) -> Result<Answer, ApiError>
    where
        P: Send + 'static,
        F: FnOnce(&Index, P) -> Result<String, ApiError> + Send + 'static,
    {
        self.encoded(parsed, request, salt, move |index, parsed| {
            Ok(Encoded::new(query(index, parsed)?.into_bytes(), true))
        })
        .await
    }

    /// [`Site::text`] for an answer already encoded, which may not last.
    async fn encoded<P, F>(
        &self,
        parsed: Result<P, ApiError>,
        (headers, uri): (&HeaderMap, &Uri),
        salt: u64,
        query: F,
    ) -> Result<Answer, ApiError>
    where
        P: Send + 'static,
        F: FnOnce(&Index, P) -> Result<Encoded, ApiError> + Send + 'static,
    {
        let format = format!(
            "{}/{:016x}/{salt:016x}",
            pages_format(),
            self.config.stamp()
        );
        self.runner.ask(parsed, headers, uri, &format, query).await
    }

    /// `name`'s adds over `range`, from the usage source, on the blocking pool within a
    /// query turn, and the hash of what was shown (for entity tags).
    pub async fn usage(&self, name: &str, range: UsageRange) -> Result<(Shown, u64), ApiError> {
        let shown = match &self.usage {
            None => Shown::Off,
            Some(source) => {
                let (source, asked) = (Arc::clone(source), name.to_owned());
                match self
                    .runner
                    .blocking(move || source.usage(&asked, range))
                    .await?
                {
                    Ok(usage) => Shown::Numbers(usage),
                    Err(error) => {
                        tracing::warn!(%error, package = name, "usage numbers unavailable");
                        Shown::Failed
                    }
                }
            }
        };
        let mut hasher = std::hash::DefaultHasher::new();
        shown.hash(&mut hasher);
        Ok((shown, hasher.finish()))
    }

    /// The page of a list that `params` asks for (`?page=N`, from 1), or a `400`.
    pub fn page_at(&self, params: &PageParams) -> Result<PageAt, ApiError> {
        let size = self.config.page_size.max(1);
        let number = match params.page.as_deref() {
            None => 1,
            Some(text) => text
                .parse::<u64>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_parameter",
                        format!("page must be a page number from 1, not {text:?}"),
                    )
                })?,
        };
        let offset = self
            .runner
            .within_depth((number - 1).saturating_mul(size))?;
        Ok(PageAt {
            number,
            offset,
            size,
        })
    }

    /// The HTML page of `error`, with its status and headers.
    pub fn error_page(&self, error: &ApiError) -> Response {
        let title = match error.status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::BAD_REQUEST => "Bad request",
            StatusCode::SERVICE_UNAVAILABLE => "Temporarily unavailable",
            _ => "Server error",
        };
        let page = ErrorPage {
            layout: Layout {
                canonical: None,
                ..self.layout(title, "/")
            },
            status: error.status.as_u16(),
            message: message_for_people(error),
            search: error.status == StatusCode::NOT_FOUND,
        };
        let body = render(&page).unwrap_or_else(|_| error.message.clone());
        let mut response = body.into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(HTML));
        error.mark(response)
    }
}

/// The `error.html` page.
#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    layout: Layout,
    status: u16,
    message: String,
    /// Whether to offer the search form (on a `404`).
    search: bool,
}

/// What an error says to a person: what happened, without the API's next steps (they
/// name API paths); the states of the read model in the pages' own words.
pub fn message_for_people(error: &ApiError) -> String {
    match error.code {
        "read_model_building" => "This server is building its catalog index, which takes a \
             few seconds after it starts. Retry in a moment."
            .to_owned(),
        "api_busy" => "This server is answering as many catalog questions as it allows at \
             once. Retry in a moment."
            .to_owned(),
        "api_disabled" => "This server does not serve the web catalog (it runs with \
             --read-model off). The meteor tool can still use it."
            .to_owned(),
        _ if error.status.is_server_error() => {
            "The server failed to answer this page; its log says why.".to_owned()
        }
        _ => {
            let fact = error.message.split("; ").next().unwrap_or_default();
            let mut chars = fact.chars();
            match chars.next() {
                Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str()),
                None => String::new(),
            }
        }
    }
}

/// A rendered template, or a `500` if it failed.
pub fn render(template: &impl Template) -> Result<String, ApiError> {
    template
        .render()
        .map_err(|error| ApiError::internal(&error))
}

/// A text answer of type `content_type`: its body, or a `304` without one, with its tag
/// and cache headers.
pub fn text(answer: Answer, content_type: &'static str) -> Response {
    let response = match answer.body {
        Some(body) => {
            let mut response = body.into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            response
        }
        None => StatusCode::NOT_MODIFIED.into_response(),
    };
    current(response, &answer.tag, &answer.freshness)
}

/// The path's parameters, or a `400` when they do not decode (not UTF-8).
pub fn path<T>(path: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    path.map(|Path(value)| value).map_err(|rejection| {
        ApiError::bad_request(
            "invalid_parameter",
            format!("{}: the address is not valid UTF-8", rejection.body_text()),
        )
    })
}

/// The query parameters, or a `400` when they are not a query string.
pub fn params(query: Result<Query<PageParams>, QueryRejection>) -> Result<PageParams, ApiError> {
    query
        .map(|Query(params)| params)
        .map_err(|rejection| ApiError::bad_request("invalid_parameter", rejection.body_text()))
}

/// The usage range `?range=` names (the last 30 days when none), or a `400`.
pub fn range(params: &PageParams) -> Result<UsageRange, ApiError> {
    match params.range.as_deref() {
        None => Ok(UsageRange::Days30),
        Some(asked) => UsageRange::from_param(asked).ok_or_else(|| {
            let known: Vec<&str> = UsageRange::ALL.iter().map(|r| r.param()).collect();
            ApiError::bad_request(
                "invalid_parameter",
                format!("range must be one of {}, not {asked:?}", known.join(", ")),
            )
        }),
    }
}

/// Puts the pages' security headers on every answer of theirs, error pages, redirects and
/// assets included.
pub async fn secure(State(policy): State<&'static str>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(policy),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static(REFERRER_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// The templates' sources, hashed into every page's entity tag: a build whose templates
/// differ changes every tag, even at the same version number.
const TEMPLATES: [&str; 14] = [
    include_str!("../../templates/base.html"),
    include_str!("../../templates/error.html"),
    include_str!("../../templates/home.html"),
    include_str!("../../templates/macros.html"),
    include_str!("../../templates/hits.html"),
    include_str!("../../templates/pager.html"),
    include_str!("../../templates/package.html"),
    include_str!("../../templates/chart.html"),
    include_str!("../../templates/versions.html"),
    include_str!("../../templates/dependents.html"),
    include_str!("../../templates/releases.html"),
    include_str!("../../templates/release.html"),
    include_str!("../../templates/feed.xml"),
    include_str!("../../templates/badge.svg"),
];

/// A hash of what a README's rendering depends on besides its text and link base.
pub(crate) fn readme_stamp(options: &RenderOptions) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    options.remote_images.hash(&mut hasher);
    options.max_bytes.hash(&mut hasher);
    hasher.finish()
}

/// What a page's body depends on besides the index, the URL and its salt: this build's
/// version, templates and assets.
fn pages_format() -> &'static str {
    static FORMAT: OnceLock<String> = OnceLock::new();
    FORMAT.get_or_init(|| {
        let mut hasher = std::hash::DefaultHasher::new();
        TEMPLATES.hash(&mut hasher);
        format!(
            "pages/{}/{:016x}/{}",
            env!("CARGO_PKG_VERSION"),
            hasher.finish(),
            assets::version()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_is_in_the_entity_tags() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/templates");
        let files = std::fs::read_dir(dir).unwrap().count();
        assert_eq!(files, TEMPLATES.len(), "list every template in TEMPLATES");
    }

    #[test]
    fn errors_read_as_sentences_without_api_paths() {
        let missing =
            ApiError::from(exosphere_index::IndexError::UnknownPackage { name: "a:b".into() });
        assert_eq!(message_for_people(&missing), "There is no package \"a:b\".");
        assert!(message_for_people(&ApiError::building()).contains("building"));
        assert!(!message_for_people(&ApiError::busy()).contains("api"));
    }
}
