//! The health port: `/healthz` (alive), `/readyz` (registered, connected, not draining) and
//! `/metrics` (Prometheus text format), and `/status`: the worker's id, health and running
//! jobs as JSON, which a fleet supervisor shows for each of its processes.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use flotilla_proto::{HealthResponse, WorkerSelfStatus};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::shared::Shared;

/// Serves the health port on `listener` until `stop`.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "health port listening");
    }
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .with_state(shared);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await;
    if let Err(err) = served {
        error!(error = %err, "health port failed");
    }
}

fn health(status: StatusCode, text: &str) -> Response {
    let body = HealthResponse {
        status: text.into(),
    };
    (status, axum::Json(body)).into_response()
}

async fn healthz() -> Response {
    health(StatusCode::OK, "ok")
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    match shared.readiness() {
        Ok(()) => health(StatusCode::OK, "ok"),
        Err(why) => health(StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let text = shared.stats.render(&shared.gauges());
    let content_type = "text/plain; version=0.0.4; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], text).into_response()
}

async fn status(State(shared): State<Arc<Shared>>) -> axum::Json<WorkerSelfStatus> {
    let (health, degraded) = shared.health_and_reasons();
    axum::Json(WorkerSelfStatus {
        id: shared.registered_id(),
        health,
        degraded,
        ready: shared.readiness().is_ok(),
        draining: shared.is_draining(),
        running: shared.stats.running(),
        concurrency: shared.config.concurrency,
    })
}
