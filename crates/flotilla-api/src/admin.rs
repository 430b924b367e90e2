//! Admin routes: queues (stats, settings, pause, resume), workers, dead letters.

use axum::extract::State;
use flotilla_core::{ErrorCode, JobState, QueueConfig};
use flotilla_proto::{
    CountResponse, DeadRequest, ErrorBody, JobListQuery, JobPage, QueueView, WorkerView,
};
use flotilla_store::{DeadParams, QueueStatsParams};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Json, Path, Query};

/// Queue views: one queue, or all.
pub(crate) async fn views(s: &AppState, queue: Option<String>) -> Result<Vec<QueueView>, ApiError> {
    let stats = s
        .engine
        .store
        .queue_stats(QueueStatsParams {
            queue: queue.clone(),
            now: s.engine.clock.now(),
        })
        .await?;
    let configs = match queue {
        Some(q) => vec![s.engine.store.queue_get(&q).await?],
        None => s.engine.store.queue_list().await?,
    };
    Ok(stats
        .into_iter()
        .zip(configs)
        .map(|(st, config)| QueueView {
            name: st.queue,
            paused: st.paused,
            config,
            counts: st.counts,
            totals: st.totals,
            oldest_available_age_ms: st.oldest_available_age.map(|d| d.as_millis() as u64),
        })
        .collect())
}

/// Every queue with its settings and numbers.
#[utoipa::path(get, path = "/v1/queues", tag = "admin", responses((status = 200, body = Vec<QueueView>)))]
pub(crate) async fn queues(
    State(s): State<AppState>,
) -> Result<axum::Json<Vec<QueueView>>, ApiError> {
    views(&s, None).await.map(axum::Json)
}

async fn one(s: &AppState, name: String) -> Result<axum::Json<QueueView>, ApiError> {
    let mut list = views(s, Some(name)).await?;
    list.pop()
        .map(axum::Json)
        .ok_or_else(|| ApiError::new(flotilla_core::ErrorCode::Internal, "queue vanished"))
}

/// One queue.
#[utoipa::path(get, path = "/v1/queues/{name}", tag = "admin", params(("name" = String, Path, description = "Queue")),
    responses((status = 200, body = QueueView), (status = "4XX", body = ErrorBody)))]
pub(crate) async fn queue(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::Json<QueueView>, ApiError> {
    one(&s, name).await
}

/// Creates a queue or replaces its settings (its jobs are untouched). `paused` in the body
/// only applies to a new queue; an existing one keeps its state (use pause and resume). A
/// queue named in the server's `flotilla.toml` gets the file's settings again at the next
/// start.
#[utoipa::path(put, path = "/v1/queues/{name}", tag = "admin", params(("name" = String, Path, description = "Queue")),
    request_body = QueueConfig,
    responses((status = 200, body = QueueView), (status = "4XX", body = ErrorBody)))]
pub(crate) async fn configure(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(config): Json<QueueConfig>,
) -> Result<axum::Json<QueueView>, ApiError> {
    if config.name != name {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            format!(
                "name: the body names queue {:?} but the path {name:?}",
                config.name
            ),
        ));
    }
    config.validate()?;
    s.engine.configure_queue(config).await?;
    one(&s, name).await
}

/// Pauses a queue: it keeps accepting jobs but hands none out.
#[utoipa::path(post, path = "/v1/queues/{name}/pause", tag = "admin", params(("name" = String, Path, description = "Queue")),
    responses((status = 200, body = QueueView), (status = "4XX", body = ErrorBody)))]
pub(crate) async fn pause(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::Json<QueueView>, ApiError> {
    s.engine.store.queue_set_paused(&name, true).await?;
    one(&s, name).await
}

/// Resumes a paused queue.
#[utoipa::path(post, path = "/v1/queues/{name}/resume", tag = "admin", params(("name" = String, Path, description = "Queue")),
    responses((status = 200, body = QueueView), (status = "4XX", body = ErrorBody)))]
pub(crate) async fn resume(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::Json<QueueView>, ApiError> {
    s.engine.store.queue_set_paused(&name, false).await?;
    s.engine.broker.wake(&name);
    one(&s, name).await
}

/// Registered workers with their health and current jobs.
#[utoipa::path(get, path = "/v1/workers", tag = "admin", responses((status = 200, body = Vec<WorkerView>)))]
pub(crate) async fn workers(State(s): State<AppState>) -> axum::Json<Vec<WorkerView>> {
    axum::Json(s.engine.workers.list())
}

/// Dead jobs, newest first.
#[utoipa::path(get, path = "/v1/dead", tag = "admin", params(JobListQuery),
    responses((status = 200, body = JobPage), (status = "4XX", body = ErrorBody)))]
pub(crate) async fn dead(
    State(s): State<AppState>,
    Query(q): Query<JobListQuery>,
) -> Result<axum::Json<JobPage>, ApiError> {
    crate::jobs::page(
        &s,
        JobListQuery {
            state: Some(JobState::Dead),
            ..q
        },
        None,
    )
    .await
    .map(axum::Json)
}

fn params(s: &AppState, req: DeadRequest) -> DeadParams {
    DeadParams {
        ids: req.ids,
        queue: req.queue,
        limit: req.limit,
        now: s.engine.clock.now(),
    }
}

/// Replays dead jobs (attempts reset).
#[utoipa::path(post, path = "/v1/dead:replay", tag = "admin", request_body = DeadRequest,
    responses((status = 200, body = CountResponse), (status = "4XX", body = ErrorBody)))]
pub(crate) async fn replay(
    State(s): State<AppState>,
    Json(req): Json<DeadRequest>,
) -> Result<axum::Json<CountResponse>, ApiError> {
    let count = s.engine.store.dead_replay(params(&s, req)).await?;
    s.engine.broker.wake_all();
    Ok(axum::Json(CountResponse { count }))
}

/// Deletes dead jobs.
#[utoipa::path(post, path = "/v1/dead:purge", tag = "admin", request_body = DeadRequest,
    responses((status = 200, body = CountResponse), (status = "4XX", body = ErrorBody)))]
pub(crate) async fn purge(
    State(s): State<AppState>,
    Json(req): Json<DeadRequest>,
) -> Result<axum::Json<CountResponse>, ApiError> {
    let count = s.engine.store.dead_purge(params(&s, req)).await?;
    Ok(axum::Json(CountResponse { count }))
}
