//! Pipeline runs: create one (its first steps are enqueued at once), read it with its
//! steps' states, list them. Each later step is enqueued by the store when the steps it
//! waits for have succeeded, in the completion's transaction.

use axum::extract::State;
use axum::http::StatusCode;
use flotilla_core::{NewRun, Run, RunId};
use flotilla_proto::{ErrorBody, RunCreatedResponse, RunListQuery, RunPage};
use flotilla_store::{RunCreateParams, RunListParams};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Json, Path, Query};

/// Create a run: steps with dependencies, each a job.
#[utoipa::path(post, path = "/v1/runs", tag = "producers", request_body = NewRun,
    responses((status = 202, body = RunCreatedResponse), (status = "4XX", body = ErrorBody)))]
pub(crate) async fn create(
    State(s): State<AppState>,
    Json(run): Json<NewRun>,
) -> Result<(StatusCode, axum::Json<RunCreatedResponse>), ApiError> {
    let params = RunCreateParams {
        run,
        now: s.engine.clock.now(),
    };
    let created = s.engine.store.run_create(params).await?;
    for queue in &created.queues {
        s.engine.broker.wake(queue);
    }
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(RunCreatedResponse { id: created.id }),
    ))
}

/// One run, with its steps.
#[utoipa::path(get, path = "/v1/runs/{id}", tag = "producers", params(("id" = i64, Path, description = "Run id")),
    responses((status = 200, body = Run), (status = "4XX", body = ErrorBody)))]
pub(crate) async fn get(
    State(s): State<AppState>,
    Path(id): Path<i64>,
) -> Result<axum::Json<Run>, ApiError> {
    Ok(axum::Json(s.engine.store.run_get(RunId(id)).await?))
}

/// Runs, newest first, a page at a time.
#[utoipa::path(get, path = "/v1/runs", tag = "producers", params(RunListQuery),
    responses((status = 200, body = RunPage), (status = "4XX", body = ErrorBody)))]
pub(crate) async fn list(
    State(s): State<AppState>,
    Query(q): Query<RunListQuery>,
) -> Result<axum::Json<RunPage>, ApiError> {
    let params = RunListParams {
        pipeline: q.pipeline,
        cursor: q.cursor,
        limit: q.limit.unwrap_or(0),
    };
    let page = s.engine.store.run_list(params).await?;
    Ok(axum::Json(RunPage {
        runs: page.runs,
        next_cursor: page.next,
    }))
}
