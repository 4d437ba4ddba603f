//! The HTTP surface: the DDP WebSocket endpoint, `/healthz`, `/stats/v1/<day>`, and the
//! web catalog (`exosphere-web`: the JSON API, `/api/v1/stats/packages/<name>` included,
//! the pages, from the home page on, and the HTML `404` of every other path); package
//! uploads and downloads (published and mirrored) live in `http/files.rs`, the stats files
//! and the usage numbers the web catalog reads in `http/stats.rs`.
//!
//! Every request runs in a tracing span with its own request id, so each log line can be
//! traced back to one request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, put};
use exosphere_catalog::CatalogStore;
use exosphere_ddp::transport::sockjs;
use exosphere_ddp::{ConnectionInfo, DeliberateStatus, ScriptIntegrity, Server, SockJsConfig};
use exosphere_mirror::{MirrorFiles, MirrorStatus};
use exosphere_web::{ApiConfig, Building, ReadModel, ReadmeSource, SiteConfig};
use serde_json::{Value, json};
use tokio::sync::watch;
use tower_http::classify::{
    ClassifiedResponse, ClassifyResponse, NeverClassifyEos, ServerErrorsAsFailures,
    ServerErrorsFailureClass, SharedClassifier,
};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::{DefaultOnResponse, OnResponse, TraceLayer};
use tracing::Span;

use crate::accept::{HttpLimits, OpenConnections};
use crate::readme_files::ReadmeFiles;
use crate::service::PackageService;
use crate::service::Publishing;
use crate::stats_files::StatsFiles;

mod files;
mod stats;

/// Shared state of every route.
#[derive(Clone)]
pub struct AppState {
    /// The catalog, for health checks and stats files.
    pub store: Arc<dyn CatalogStore>,
    /// The DDP server that owns every WebSocket session.
    pub ddp: Arc<Server<PackageService>>,
    /// How DDP is served over SockJS at `/sockjs`.
    pub sockjs: SockJsConfig,
    /// Bounds on HTTP connections (served by [`crate::accept`]).
    pub http: HttpLimits,
    /// The HTTP connections open, against their cap (shown on `/healthz`).
    pub connections: Arc<OpenConnections>,
    /// Whether the SockJS conformance suite's services are mounted too.
    pub sockjs_test_services: bool,
    /// Longest date range one `/api/v1/stats` request may ask for, in days.
    pub stats_max_range_days: u64,
    /// The `/stats/v1` files, rendered and kept.
    pub stats_files: StatsFiles,
    /// Uploads and downloads of package files (spec §5.2, §8.1); `None` serves neither.
    pub publishing: Option<Publishing>,
    /// What the upstream mirror is doing, when there is one (shown on `/healthz`).
    pub mirror: Option<watch::Receiver<MirrorStatus>>,
    /// Mirrored files (`/mirror/files/<key>`), when they are served.
    pub mirror_files: Option<MirrorFiles>,
    /// The README files the web catalog shows, from the file store `publishing` writes
    /// (and the mirror's, fetched in the background); `None` shows the excerpts.
    pub readmes: Option<ReadmeFiles>,
    /// The read model the JSON API answers from.
    pub read_model: Arc<ReadModel>,
    /// The read model's feeder, if the server feeds one: [`crate::server::run`] stops it
    /// before returning, so no pass writes after the data directory is released.
    pub(crate) feeding: Option<Arc<crate::read_model::Feeding>>,
    /// How the JSON API and the pages bound one request.
    pub api: ApiConfig,
    /// The web catalog's pages: their public URL and list size.
    pub site: SiteConfig,
}

/// The streaming response limit `sockjs-protocol.py` expects of its test services.
const SOCKJS_SUITE_RESPONSE_LIMIT: usize = 4096;

/// The disconnect delay `sockjs-protocol.py` expects of its services (the DDP endpoint's
/// is Meteor's 60 s).
const SOCKJS_SUITE_DISCONNECT_DELAY: Duration = Duration::from_secs(5);

/// Builds the router; `/websocket/` is accepted too because Meteor's own server accepts it
/// (spec §1.1).
pub fn router(state: AppState) -> Router {
    let request_ids = Arc::new(AtomicU64::new(1));
    let usage = Arc::new(stats::CatalogUsage {
        store: Arc::clone(&state.store),
        max_days: state.stats_max_range_days,
    });
    Router::new()
        .route("/healthz", get(healthz))
        .route("/stats/v1/{day}", get(stats::stats_day))
        .merge(exosphere_web::router(
            Arc::clone(&state.read_model),
            state.api.clone(),
            state.site.clone(),
            Some(Arc::clone(&usage) as Arc<dyn exosphere_web::UsageSource>),
            usage,
            state
                .readmes
                .clone()
                .map(|readmes| Arc::new(readmes) as Arc<dyn ReadmeSource>),
        ))
        .route("/websocket", any(websocket))
        .route("/websocket/", any(websocket))
        .merge(sockjs::ddp_routes(
            "/sockjs",
            Arc::clone(&state.ddp),
            state.sockjs.clone(),
        ))
        .merge(if state.sockjs_test_services {
            // The suite's services need its 4 KiB streaming limit, and its iframe page has
            // a bare script tag (sockjs-protocol.py).
            sockjs::test_service_routes(&SockJsConfig {
                response_limit: SOCKJS_SUITE_RESPONSE_LIMIT,
                disconnect_delay: SOCKJS_SUITE_DISCONNECT_DELAY,
                client_integrity: ScriptIntegrity::Off,
                ..state.sockjs.clone()
            })
        } else {
            Router::new()
        })
        .route("/uploads/{secret}", put(files::upload))
        .route("/packages/{*key}", get(files::download))
        .route("/mirror/files/{*key}", get(files::mirrored))
        // Downloads, stats files and error texts are data, never pages: no browser may
        // guess another type for them (a package file sniffed as HTML would run).
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(TraceLayer::new(SharedClassifier::new(ServerFailures)).make_span_with(
            move |request: &Request<axum::body::Body>| {
                let id = request_ids.fetch_add(1, Ordering::Relaxed);
                tracing::info_span!("http", request_id = id, method = %request.method(), path = %files::loggable_path(request.uri().path()))
            },
        ).on_response(log_response))
        .with_state(state)
}

/// Classifies responses for the trace layer, which logs failures at ERROR: every 5xx is a
/// failure, except those a DDP transport gives on purpose ([`DeliberateStatus`]) and the
/// API's `503` while its read model builds ([`Building`]).
#[derive(Debug, Clone, Copy)]
struct ServerFailures;

impl ClassifyResponse for ServerFailures {
    type FailureClass = ServerErrorsFailureClass;
    type ClassifyEos = NeverClassifyEos<ServerErrorsFailureClass>;

    fn classify_response<B>(
        self,
        response: &Response<B>,
    ) -> ClassifiedResponse<Self::FailureClass, Self::ClassifyEos> {
        let extensions = response.extensions();
        if extensions.get::<DeliberateStatus>().is_some() || extensions.get::<Building>().is_some()
        {
            ClassifiedResponse::Ready(Ok(()))
        } else {
            ServerErrorsAsFailures::new().classify_response(response)
        }
    }

    fn classify_error<E: std::fmt::Display + 'static>(self, error: &E) -> Self::FailureClass {
        ServerErrorsAsFailures::new().classify_error(error)
    }
}

/// Logs a finished request: a deliberate 5xx (a client's bad SockJS request, a refusal at
/// the session limit) at INFO, anything else as tower-http does (DEBUG).
fn log_response(response: &Response, latency: Duration, span: &Span) {
    let status = response.status();
    let latency_ms = latency.as_millis();
    match response.extensions().get::<DeliberateStatus>() {
        Some(DeliberateStatus::ClientError) => {
            tracing::info!(%status, latency_ms, "answered a client's bad request");
        }
        Some(DeliberateStatus::Refused) => {
            tracing::info!(%status, latency_ms, "refused: session limit or shutdown");
        }
        None if response.extensions().get::<Building>().is_some() => {
            tracing::info!(%status, latency_ms, "the read model is still building");
        }
        None => DefaultOnResponse::default().on_response(response, latency, span),
    }
}

/// Upgrades to a raw-WebSocket DDP session: no subprotocol is required or answered (spec §1.1);
/// `permessage-deflate` is, when offered and `--websocket-compression` allows it.
async fn websocket(
    State(state): State<AppState>,
    ConnectInfo(remote_addr): ConnectInfo<SocketAddr>,
    request: Request<axum::body::Body>,
) -> Response {
    let (parts, _) = request.into_parts();
    let info = ConnectionInfo::from_request(Some(remote_addr), &parts.headers);
    exosphere_ddp::upgrade(state.ddp, parts, info).await
}

/// `GET /healthz`: 200 when the catalog answers, 503 otherwise, with the figures an operator
/// wants at a glance.
async fn healthz(State(state): State<AppState>) -> Response {
    let store = Arc::clone(&state.store);
    let ddp = json!({
        "sessions": state.ddp.session_count(),
        "admitted": state.ddp.admitted_count(),
        "max_sessions": state.ddp.config().max_sessions,
        "outbound_bytes": state.ddp.outbound_bytes(),
        "outbound_budget": state.ddp.outbound_budget(),
        "outbound_waiting_bytes": state.ddp.outbound_waiting_bytes(),
    });
    let connections = json!({
        "open": state.connections.open(),
        "max": state.connections.cap(),
    });
    match exosphere_task::blocking(move || store.state()).await {
        Ok(Ok(catalog)) => {
            let mirror = state.mirror.as_ref().map(|mirror| {
                mirror
                    .borrow()
                    .to_json(chrono::Utc::now().timestamp_millis())
            });
            let mirror_files = match &state.mirror_files {
                Some(files) => {
                    let stats = files.stats();
                    let store = Arc::clone(&state.store);
                    let cached = exosphere_task::blocking(move || store.mirror_cached()).await;
                    let (count, bytes) = match cached {
                        Ok(Ok((count, bytes))) => (json!(count), json!(bytes)),
                        _ => (Value::Null, Value::Null),
                    };
                    json!({
                        "cached": count,
                        "cached_bytes": bytes,
                        "fetched": stats.fetched,
                        "fetched_bytes": stats.fetched_bytes,
                        "failures": stats.failures,
                        "in_flight": stats.in_flight,
                    })
                }
                None => Value::Null,
            };
            axum::Json(json!({
                "status": "ok",
                "sessions": ddp["sessions"],
                "outbound_bytes": ddp["outbound_bytes"],
                "ddp": ddp,
                "connections": connections,
                "catalog": {"epoch": catalog.epoch, "sequence": catalog.head_seq},
                "mirror": mirror,
                "mirror_files": mirror_files,
                "stats_files": state.stats_files.health(),
                "read_model": read_model_health(&state.read_model),
            }))
            .into_response()
        }
        Ok(Err(error)) => unhealthy(&error),
        Err(error) => unhealthy(&error),
    }
}

/// The JSON API's read model on `/healthz`: whether its first build is done, the catalog
/// head it is current with, whether it is applying a change, and whether its passes fail
/// (`failing`, with how many in a row, the last error and since when); `off` without one.
fn read_model_health(model: &ReadModel) -> Value {
    if model.is_off() {
        return json!({"status": "off"});
    }
    let head = model.freshness().map(|freshness| freshness.head);
    if let Some(failing) = model.failing() {
        let since: chrono::DateTime<chrono::Utc> = failing.since.into();
        return json!({
            "status": "failing",
            "head": head.flatten(),
            "failures": failing.failures,
            "last_error": failing.last_error,
            "since": since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        });
    }
    match model.freshness() {
        None => json!({"status": "building"}),
        Some(freshness) => json!({
            "status": if freshness.catching_up { "catching-up" } else { "current" },
            "head": freshness.head,
        }),
    }
}

fn unhealthy(error: &dyn std::fmt::Display) -> Response {
    tracing::error!(%error, "health check failed");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({"status": "unavailable", "error": error.to_string()})),
    )
        .into_response()
}

fn internal_error(what: &str, error: &dyn std::fmt::Display) -> Response {
    tracing::error!(%error, "{what} failed");
    (StatusCode::INTERNAL_SERVER_ERROR, "internal server error\n").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_failure(response: Response) -> bool {
        matches!(
            ServerFailures.classify_response(&response),
            ClassifiedResponse::Ready(Err(_))
        )
    }

    #[test]
    fn a_failing_read_model_shows_on_healthz() {
        let model = ReadModel::new();
        assert_eq!(read_model_health(&model), json!({"status": "building"}));
        model.failed("cannot create the read model's directory".into());
        model.failed("cannot create the read model's directory again".into());
        let health = read_model_health(&model);
        assert_eq!(health["status"], "failing");
        assert_eq!(health["failures"], 2);
        assert_eq!(
            health["last_error"],
            "cannot create the read model's directory again"
        );
        assert!(health["since"].as_str().unwrap().ends_with('Z'), "{health}");
        model.recovered();
        assert_eq!(read_model_health(&model)["status"], "building");
        assert_eq!(
            read_model_health(&ReadModel::off()),
            json!({"status": "off"})
        );
    }

    #[test]
    fn deliberate_server_errors_are_not_failures() {
        assert!(is_failure(
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        ));
        assert!(is_failure(StatusCode::SERVICE_UNAVAILABLE.into_response()));
        assert!(!is_failure(StatusCode::NOT_FOUND.into_response()));
        let mut building = StatusCode::SERVICE_UNAVAILABLE.into_response();
        building.extensions_mut().insert(Building);
        assert!(!is_failure(building));
        for status in [DeliberateStatus::ClientError, DeliberateStatus::Refused] {
            let mut response = StatusCode::INTERNAL_SERVER_ERROR.into_response();
            response.extensions_mut().insert(status);
            assert!(!is_failure(response), "{status:?}");
        }
    }
}
