//! The web catalog's HTTP answers over the server's read model: the JSON API under
//! `/api/v1` (package detail, versions, one version in full, dependents, search, bulk
//! lookup, releases, maintainers, usage statistics over a range) with its OpenAPI document,
//! and the pages people read (home, search, packages and versions, maintainers, releases,
//! feeds, badges).
//!
//! It knows nothing of DDP or of the catalog's storage: it asks an `exosphere-index` file
//! through the index's query methods, never SQL of its own. The binary keeps that file
//! current from the catalog's sync pages and says so through [`ReadModel::publish`], hands
//! the pages usage numbers through a [`UsageSource`], the API its usage statistics through
//! a [`StatsSource`], and both README files through a [`ReadmeSource`].
//!
//! * `model`: [`ReadModel`], the served index file and its reader connections, swapped
//!   whole when a rebuilt file is complete, and its [`Freshness`];
//! * `runner`: the bounded query runner the API and the pages share ([`ApiConfig`]);
//!   `rendered`: the encoded answers it gives again while the read model stays the same;
//! * `routes`: the API's routes and handlers; `views`: their answer bodies;
//! * `pages`: the pages' routes, templates (`templates/`) and assets (`assets/`);
//! * `usage`: [`UsageSource`] and [`StatsSource`], the usage numbers the pages and the API
//!   show;
//! * `readme_source`: [`ReadmeSource`], the README files the pages and the API show in
//!   place of the excerpts when they can;
//! * `reply`: the OpenAPI document, error kinds, entity tags and `304`, cache and CORS
//!   headers.

mod model;
mod pages;
mod readme_source;
mod rendered;
mod reply;
mod routes;
mod runner;
mod usage;
mod views;

use std::sync::Arc;

use axum::Router;

pub use model::{Failing, Freshness, QueryError, ReadModel};
pub use pages::{CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY_REMOTE_IMAGES, SiteConfig};
pub use readme_source::{NoReadme, ReadmeFile, ReadmeSource};
pub use rendered::DEFAULT_CACHE_BYTES;
pub use reply::{ApiError, Building, OPENAPI};
pub use runner::{
    ApiConfig, DEFAULT_MAX_LIMIT, DEFAULT_MAX_PAGE_DEPTH, DEFAULT_MAX_QUERY_CHARS,
    default_max_queries,
};
pub use usage::{
    Adds, PeriodAdds, RangeQuery, RangeStats, StatsSource, Usage, UsageError, UsagePeriod,
    UsageRange, UsageSource, VersionAdds,
};

/// The web catalog's routes over `model`, for any outer router's state: the JSON API
/// (bounded by `api`, with usage statistics over ranges from `stats`) and the pages
/// (`site`, with usage numbers from `usage` when the server has any), both with README
/// files from `readmes` when the server has a file store (else the README excerpts). Both
/// ask the read model and the sources through one runner, so `api.max_queries` bounds
/// their queries together. The pages' fallback answers every path no route of the server
/// takes.
pub fn router<S: Clone + Send + Sync + 'static>(
    model: Arc<ReadModel>,
    api: ApiConfig,
    site: SiteConfig,
    usage: Option<Arc<dyn UsageSource>>,
    stats: Arc<dyn StatsSource>,
    readmes: Option<Arc<dyn ReadmeSource>>,
) -> Router<S> {
    let runner = runner::Runner::new(model, api);
    let api = routes::router(runner.clone(), site.readme.clone(), stats, readmes.clone());
    api.merge(pages::router(pages::Site {
        runner,
        config: Arc::new(site),
        usage,
        readmes,
    }))
}
