//! Producer routes: enqueue, read, list, cancel, retry.
//!
//! A producer token sees only its own jobs: each job it enqueues is tagged
//! `owner:<token name>`, its lists are filtered on that tag, and another's job answers
//! `job_not_found` as if it did not exist. Admins see every job.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use flotilla_core::{ErrorCode, JobId, JobState};
use flotilla_proto::{
    EnqueueBatchRequest, EnqueueBatchResponse, EnqueueResponse, ErrorBody, Job, JobListQuery,
    JobPage, NewJob,
};
use flotilla_store::{
    InsertedJob, JobCancelParams, JobInsertManyParams, JobListParams, JobRetryParams, StoreError,
};

use crate::AppState;
use crate::auth::{Caller, OWNER_TAG_PREFIX};
use crate::error::ApiError;
use crate::extract::{Json, Path, Query};

fn response(j: InsertedJob) -> EnqueueResponse {
    EnqueueResponse {
        id: j.id,
        state: j.state,
        duplicate: j.duplicate,
    }
}

/// Enqueue one job.
#[utoipa::path(post, path = "/v1/jobs", tag = "producers", request_body = NewJob,
    responses((status = 202, body = EnqueueResponse), (status = "4XX", body = ErrorBody)))]
pub(crate) async fn enqueue(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(mut job): Json<NewJob>,
) -> Result<(StatusCode, axum::Json<EnqueueResponse>), ApiError> {
    mark_owner(&caller, &mut job)?;
    let queue = job.queue.clone();
    let inserted = s.engine.store.job_insert(job, s.engine.clock.now()).await?;
    if inserted.state == JobState::Available && !inserted.duplicate {
        s.engine.broker.wake(&queue);
    }
    Ok((StatusCode::ACCEPTED, axum::Json(response(inserted))))
}

/// Enqueue several jobs, all or none.
#[utoipa::path(post, path = "/v1/jobs:batch", tag = "producers", request_body = EnqueueBatchRequest,
    responses((status = 202, body = EnqueueBatchResponse), (status = "4XX", body = ErrorBody)))]
pub(crate) async fn enqueue_batch(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(mut req): Json<EnqueueBatchRequest>,
) -> Result<(StatusCode, axum::Json<EnqueueBatchResponse>), ApiError> {
    for job in &mut req.jobs {
        mark_owner(&caller, job)?;
    }
    let queues: Vec<String> = req.jobs.iter().map(|j| j.queue.clone()).collect();
    let params = JobInsertManyParams {
        jobs: req.jobs,
        now: s.engine.clock.now(),
    };
    let inserted = s.engine.store.job_insert_many(params).await?;
    let mut woken: Vec<&str> = Vec::new();
    for (queue, job) in queues.iter().zip(&inserted) {
        if job.state == JobState::Available && !job.duplicate && !woken.contains(&queue.as_str()) {
            s.engine.broker.wake(queue);
            woken.push(queue);
        }
    }
    let jobs = inserted.into_iter().map(response).collect();
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(EnqueueBatchResponse { jobs }),
    ))
}

/// One job.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "producers", params(("id" = i64, Path, description = "Job id")),
    responses((status = 200, body = Job), (status = "4XX", body = ErrorBody)))]
pub(crate) async fn get(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> Result<axum::Json<Job>, ApiError> {
    Ok(axum::Json(visible_job(&s, &caller, JobId(id)).await?))
}

/// Tags a producer's job with its owner; a producer may not set owner tags itself.
fn mark_owner(caller: &Caller, job: &mut NewJob) -> Result<(), ApiError> {
    let Some(owner) = caller.owner_tag() else {
        return Ok(());
    };
    if job.tags.iter().any(|t| t.starts_with(OWNER_TAG_PREFIX)) {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            format!("tags starting with {OWNER_TAG_PREFIX:?} are set by the server"),
        ));
    }
    job.tags.push(owner);
    Ok(())
}

/// The job `id`, if the caller may see it; another producer's job is `job_not_found`.
async fn visible_job(s: &AppState, caller: &Caller, id: JobId) -> Result<Job, ApiError> {
    let job = s.engine.store.job_get(id).await?;
    match caller.owner_tag() {
        Some(owner) if !job.tags.contains(&owner) => Err(StoreError::JobNotFound(id).into()),
        _ => Ok(job),
    }
}

/// Jobs matching the filters, newest first, a page at a time.
#[utoipa::path(get, path = "/v1/jobs", tag = "producers", params(JobListQuery),
    responses((status = 200, body = JobPage), (status = "4XX", body = ErrorBody)))]
pub(crate) async fn list(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<JobListQuery>,
) -> Result<axum::Json<JobPage>, ApiError> {
    page(&s, q, caller.owner_tag()).await.map(axum::Json)
}

/// Runs a list query; only jobs tagged `owner` when given.
pub(crate) async fn page(
    s: &AppState,
    q: JobListQuery,
    owner: Option<String>,
) -> Result<JobPage, ApiError> {
    let params = JobListParams {
        queue: q.queue,
        state: q.state,
        kind: q.kind,
        tags: q.tag.into_iter().chain(owner).collect(),
        created_after: q.created_after,
        created_before: q.created_before,
        cursor: q.cursor,
        limit: q.limit.unwrap_or(0),
    };
    let page = s.engine.store.job_list(params).await?;
    Ok(JobPage {
        jobs: page.jobs,
        next_cursor: page.next,
    })
}

/// Cancels a job: at once if waiting, on its next heartbeat if running.
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "producers", params(("id" = i64, Path, description = "Job id")),
    responses((status = 200, body = Job), (status = "4XX", body = ErrorBody)))]
pub(crate) async fn cancel(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> Result<axum::Json<Job>, ApiError> {
    visible_job(&s, &caller, JobId(id)).await?;
    let params = JobCancelParams {
        job_id: JobId(id),
        now: s.engine.clock.now(),
    };
    Ok(axum::Json(s.engine.store.job_cancel(params).await?))
}

/// Runs a job again now: replays a dead or cancelled job, promotes a scheduled one.
#[utoipa::path(post, path = "/v1/jobs/{id}/retry", tag = "producers", params(("id" = i64, Path, description = "Job id")),
    responses((status = 200, body = Job), (status = "4XX", body = ErrorBody)))]
pub(crate) async fn retry(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<i64>,
) -> Result<axum::Json<Job>, ApiError> {
    visible_job(&s, &caller, JobId(id)).await?;
    let params = JobRetryParams {
        job_id: JobId(id),
        now: s.engine.clock.now(),
    };
    let job = s.engine.store.job_retry(params).await?;
    s.engine.broker.wake(&job.queue);
    Ok(axum::Json(job))
}
