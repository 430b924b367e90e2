//! Fleet routes: the per-queue scaling signal autoscalers read (the fleet supervisor, KEDA's
//! `metrics-api` scaler), and the supervisors' reports.

use axum::extract::State;
use flotilla_core::ErrorCode;
use flotilla_proto::{ErrorBody, FleetReport, FleetView, ScalingSignal};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Json, Path};

/// What an autoscaler needs of one queue: depth by state, backlog and the oldest job's age.
/// Open to worker tokens, so a supervisor or KEDA needs no admin token.
#[utoipa::path(get, path = "/v1/queues/{name}/scaling", tag = "workers", params(("name" = String, Path, description = "Queue")),
    responses((status = 200, body = ScalingSignal), (status = "4XX", body = ErrorBody)))]
pub(crate) async fn scaling(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::Json<ScalingSignal>, ApiError> {
    let view = crate::admin::views(&s, Some(name))
        .await?
        .pop()
        .ok_or_else(|| ApiError::new(ErrorCode::Internal, "queue vanished"))?;
    let counts = &view.counts;
    Ok(axum::Json(ScalingSignal {
        queue: view.name,
        available: counts.available,
        running: counts.running,
        scheduled: counts.scheduled,
        dead: counts.dead,
        backlog: counts.available + counts.running,
        oldest_available_age_seconds: view.oldest_available_age_ms.unwrap_or(0) as f64 / 1000.0,
        paused: view.paused,
    }))
}

/// A fleet supervisor's report of its pools, processes, decisions and alerts; the last one
/// of each supervisor is kept (in memory) and shown by `GET /v1/fleet`.
#[utoipa::path(put, path = "/v1/fleet/{name}", tag = "workers", params(("name" = String, Path, description = "Supervisor")),
    request_body = FleetReport,
    responses((status = 204), (status = "4XX", body = ErrorBody)))]
pub(crate) async fn report(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(report): Json<FleetReport>,
) -> Result<axum::http::StatusCode, ApiError> {
    if report.name != name {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            format!("the report names {:?}, the path {name:?}", report.name),
        ));
    }
    s.engine.fleets.report(&name, report);
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// Every fleet supervisor that reported in the last ten minutes (stale after 30 s of
/// silence): pools, processes, the last scaling decisions and the alerts firing.
#[utoipa::path(get, path = "/v1/fleet", tag = "admin", responses((status = 200, body = Vec<FleetView>)))]
pub(crate) async fn list(State(s): State<AppState>) -> axum::Json<Vec<FleetView>> {
    axum::Json(s.engine.fleets.list())
}
