//! The `/v1` HTTP API: a thin translation of requests onto the engine (`flotilla-server`).
//! Built as a function ([`router`]) so tests drive it in-process or bind it to a port.
//!
//! # Layout
//! - [`jobs`], [`workers`], [`admin`], [`fleet`]: the handlers, grouped by who calls them.
//! - [`auth`]: bearer tokens and roles (producer, worker, admin).
//! - [`error`]: [`ApiError`], the one error shape; [`extract`]: extractors that use it.
//! - [`metrics`]: `/metrics`; [`openapi`]: the OpenAPI document, served at `/v1/openapi.json`.
//! - [`testing`] (feature `testing`): a real server on a loopback port for tests.
//!
//! # Invariants
//! - Every response that is not a success is `{"error":{"code","message"}}` with the code's
//!   status; malformed input is a 4xx, never a 5xx.
//! - Requests are bounded: body size, and time (long-polls get their wait on top).

pub mod admin;
pub mod assets;
pub mod auth;
pub mod error;
pub mod extract;
pub mod fleet;
pub mod jobs;
pub mod metrics;
pub mod openapi;
pub mod runs;
#[cfg(feature = "testing")]
pub mod testing;
pub mod workers;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::handler::Handler;
use axum::http::StatusCode;
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use flotilla_core::ErrorCode;
use flotilla_proto::HealthResponse;
use flotilla_server::broker::MAX_WAIT;
use flotilla_server::{Engine, Role};

pub use auth::Auth;
use auth::{Allowed, require};
pub use error::ApiError;

/// Request limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Longest request (long-polls get their wait on top).
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 16 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// What every handler sees.
#[derive(Clone)]
pub struct AppState {
    /// The engine.
    pub engine: Engine,
    /// API-side observations for `/metrics`.
    pub metrics: Arc<metrics::Metrics>,
    /// The object store and pipelines of the asset routes; without them those routes
    /// answer 404.
    pub media: Option<Arc<assets::Media>>,
}

/// Uploads may take this long (a large video over a slow link); other requests get
/// [`Limits::request_timeout`].
pub const UPLOAD_TIMEOUT: Duration = Duration::from_secs(3600);

/// The whole HTTP application, without the asset routes' object store.
pub fn router(engine: Engine, auth: Auth, limits: Limits) -> Router {
    router_with_media(engine, auth, limits, None)
}

/// The whole HTTP application; `media` serves the asset routes.
pub fn router_with_media(
    engine: Engine,
    auth: Auth,
    limits: Limits,
    media: Option<assets::Media>,
) -> Router {
    let state = AppState {
        engine,
        metrics: Arc::new(metrics::Metrics::default()),
        media: media.map(Arc::new),
    };
    let role = |roles: &'static [Role]| from_fn_with_state((auth.clone(), Allowed(roles)), require);
    let producer = role(&[Role::Producer]);
    let worker = role(&[Role::Worker]);
    let admin = role(&[Role::Admin]);
    let api = Router::new()
        .route(
            "/v1/jobs",
            post(jobs::enqueue.layer(producer.clone())).get(jobs::list.layer(producer.clone())),
        )
        .route(
            "/v1/jobs:batch",
            post(jobs::enqueue_batch.layer(producer.clone())),
        )
        .route("/v1/jobs/{id}", get(jobs::get.layer(producer.clone())))
        .route(
            "/v1/jobs/{id}/cancel",
            post(jobs::cancel.layer(producer.clone())),
        )
        .route(
            "/v1/jobs/{id}/retry",
            post(jobs::retry.layer(producer.clone())),
        )
        .route(
            "/v1/assets",
            post(
                assets::upload
                    .layer(producer.clone())
                    .layer(DefaultBodyLimit::disable()),
            )
            .get(assets::list.layer(producer.clone())),
        )
        .route("/v1/assets/{id}", get(assets::get.layer(producer.clone())))
        .route(
            "/v1/assets/{id}/release",
            post(assets::release.layer(admin.clone())),
        )
        .route(
            "/v1/assets/{id}/outputs/{name}",
            get(assets::output.layer(producer.clone())),
        )
        .route(
            "/v1/resources/{name}",
            axum::routing::put(
                assets::put_resource
                    .layer(admin.clone())
                    .layer(DefaultBodyLimit::disable()),
            ),
        )
        .route(
            "/v1/runs",
            post(runs::create.layer(producer.clone())).get(runs::list.layer(producer.clone())),
        )
        .route("/v1/runs/{id}", get(runs::get.layer(producer.clone())))
        .route(
            "/v1/workers",
            post(workers::register.layer(worker.clone())).get(admin::workers.layer(admin.clone())),
        )
        .route(
            "/v1/workers/{id}/status",
            post(workers::status.layer(worker.clone())),
        )
        .route("/v1/poll", post(workers::poll.layer(worker.clone())))
        .route(
            "/v1/jobs/{id}/heartbeat",
            post(workers::heartbeat.layer(worker.clone())),
        )
        .route(
            "/v1/jobs/{id}/complete",
            post(workers::complete.layer(worker.clone())),
        )
        .route(
            "/v1/jobs/{id}/fail",
            post(workers::fail.layer(worker.clone())),
        )
        .route(
            "/v1/ack:batch",
            post(workers::ack_batch.layer(worker.clone())),
        )
        .route(
            "/v1/queues/{name}/scaling",
            get(fleet::scaling.layer(worker.clone())),
        )
        .route(
            "/v1/fleet/{name}",
            axum::routing::put(fleet::report.layer(worker)),
        )
        .route("/v1/fleet", get(fleet::list.layer(admin.clone())))
        .route("/v1/queues", get(admin::queues.layer(admin.clone())))
        .route(
            "/v1/queues/{name}",
            get(admin::queue.layer(admin.clone())).put(admin::configure.layer(admin.clone())),
        )
        .route(
            "/v1/queues/{name}/pause",
            post(admin::pause.layer(admin.clone())),
        )
        .route(
            "/v1/queues/{name}/resume",
            post(admin::resume.layer(admin.clone())),
        )
        .route("/v1/dead", get(admin::dead.layer(admin.clone())))
        .route("/v1/dead:replay", post(admin::replay.layer(admin.clone())))
        .route("/v1/dead:purge", post(admin::purge.layer(admin.clone())))
        .route("/metrics", get(metrics.layer(admin)))
        .route(
            "/v1/openapi.json",
            get(|| async { ([("content-type", "application/json")], openapi::json()) }),
        )
        .route(
            "/healthz",
            get(|| async {
                axum::Json(HealthResponse {
                    status: "ok".into(),
                })
            }),
        )
        .route("/readyz", get(readyz));
    api.fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                ErrorCode::MethodNotAllowed,
                "method not allowed on this route",
            )
        })
        .layer(from_fn_with_state(limits, time_limit))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// Bounds every request's duration; a long-poll gets its longest wait on top.
async fn time_limit(State(limits): State<Limits>, req: Request, next: Next) -> Response {
    let mut limit = limits.request_timeout;
    match req.uri().path() {
        "/v1/poll" => limit += MAX_WAIT,
        "/v1/assets" if req.method() == axum::http::Method::POST => limit = UPLOAD_TIMEOUT,
        path if path.starts_with("/v1/resources/") => limit = UPLOAD_TIMEOUT,
        _ => {}
    }
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            ErrorCode::Timeout,
            format!("the request took longer than {limit:?}"),
        )
        .into_response(),
    }
}

/// Ready when the store answers.
async fn readyz(State(s): State<AppState>) -> Response {
    let probe = tokio::time::timeout(Duration::from_secs(2), s.engine.store.queue_list()).await;
    match probe {
        Ok(Ok(_)) => axum::Json(HealthResponse {
            status: "ok".into(),
        })
        .into_response(),
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(HealthResponse {
                status: format!("store: {e}"),
            }),
        )
            .into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(HealthResponse {
                status: "store: no answer in 2s".into(),
            }),
        )
            .into_response(),
    }
}

async fn metrics(State(s): State<AppState>) -> Result<Response, ApiError> {
    let views = admin::views(&s, None).await?;
    let waiting = s.engine.broker.waiting();
    let body = s.metrics.render(&views, &s.engine.workers.list(), waiting);
    Ok(([("content-type", "text/plain; version=0.0.4")], body).into_response())
}
