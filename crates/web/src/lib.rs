//! The web catalog's HTTP answers over the server's read model: the JSON API under
//! `/api/v1` (package detail, versions, one version in full, dependents, search, bulk
//! lookup, releases, maintainers) and its OpenAPI document.
//!
//! It knows nothing of DDP or of the catalog's storage: it asks an `exosphere-index` file
//! through the index's query methods, never SQL of its own. The binary keeps that file
//! current from the catalog's sync pages and says so through [`ReadModel::publish`].
//!
//! * `model`: [`ReadModel`], the served index file and its reader connections, swapped
//!   whole when a rebuilt file is complete, and its [`Freshness`];
//! * `runner`: the bounded query runner ([`ApiConfig`]);
//! * `routes`: the API's routes and handlers; `views`: their answer bodies;
//! * `reply`: the OpenAPI document, error kinds, entity tags and `304`, cache and CORS
//!   headers.

mod model;
mod reply;
mod routes;
mod runner;
mod views;

use std::sync::Arc;

use axum::Router;

pub use model::{Failing, Freshness, QueryError, ReadModel};
pub use reply::{ApiError, Building, OPENAPI};
pub use runner::{ApiConfig, MAX_QUERY_CHARS, default_max_queries};

/// The `/api/v1` routes over `model`, bounded by `config`, for any outer router's state.
pub fn router<S: Clone + Send + Sync + 'static>(
    model: Arc<ReadModel>,
    config: ApiConfig,
) -> Router<S> {
    routes::router(runner::Runner::new(model, config))
}
