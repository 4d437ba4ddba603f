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
//! * `routes`: [`router`] and the handlers, bounded by [`ApiConfig`];
//! * `views`: the answer bodies, built from the index's typed results;
//! * `reply`: the OpenAPI document, JSON errors, entity tags and `304`, cache and CORS
//!   headers.

mod model;
mod reply;
mod routes;
mod views;

pub use model::{Failing, Freshness, QueryError, ReadModel};
pub use reply::{ApiError, Building, OPENAPI};
pub use routes::{ApiConfig, MAX_QUERY_CHARS, default_max_queries, router};
