//! Worker routes: register, report status, long-poll, heartbeat, complete, fail, and the
//! batched acknowledgement.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use flotilla_core::{ErrorCode, JobId, JobState, LeaseToken, QueueConfig};
use flotilla_proto::{
    AckBatchRequest, AckBatchResponse, AckItemResult, AckResponse, CompleteRequest, ErrorBody,
    FailRequest, HeartbeatRequest, HeartbeatResponse, PollRequest, PollResponse, RegisterRequest,
    RegisterResponse, WorkerStatusRequest,
};
use flotilla_server::broker::MAX_WAIT;
use flotilla_store::{
    Completion, Failure, JobCompleteManyParams, JobFailManyParams, JobHeartbeatParams,
    JobReleaseParams, StoreResult,
};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Json, Path};

/// The most jobs one poll may ask for.
const MAX_POLL: u32 = 1000;

fn unknown_worker(id: &str) -> ApiError {
    ApiError::new(
        ErrorCode::WorkerNotFound,
        format!("worker {id:?} is not registered (register again)"),
    )
}

/// Registers a worker.
#[utoipa::path(post, path = "/v1/workers", tag = "workers", request_body = RegisterRequest,
    responses((status = 200, body = RegisterResponse), (status = "4XX", body = ErrorBody)))]
pub(crate) async fn register(
    State(s): State<AppState>,
    Json(req): Json<RegisterRequest>,
) -> Result<axum::Json<RegisterResponse>, ApiError> {
    if req.queues.is_empty() || req.concurrency == 0 {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            "a worker needs at least one queue and concurrency ≥ 1",
        ));
    }
    for queue in &req.queues {
        s.engine.store.queue_get(queue).await?;
    }
    let worker_id = s.engine.workers.register(req);
    tracing::info!(worker_id = %worker_id, "worker registered");
    Ok(axum::Json(RegisterResponse {
        worker_id,
        lease_ms: QueueConfig::DEFAULT_LEASE.as_millis() as u64,
        max_wait_ms: MAX_WAIT.as_millis() as u64,
    }))
}

/// A worker's periodic status report.
#[utoipa::path(post, path = "/v1/workers/{id}/status", tag = "workers", request_body = WorkerStatusRequest,
    params(("id" = String, Path, description = "Worker id")),
    responses((status = 204), (status = "4XX", body = ErrorBody)))]
pub(crate) async fn status(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Json(req): Json<WorkerStatusRequest>,
) -> Result<StatusCode, ApiError> {
    if !s.engine.workers.report(&id, req) {
        return Err(unknown_worker(&id));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Long-poll: up to `max_jobs` jobs under lease, waiting up to `wait_ms` for the first.
#[utoipa::path(post, path = "/v1/poll", tag = "workers", request_body = PollRequest,
    responses((status = 200, body = PollResponse), (status = "4XX", body = ErrorBody)))]
pub(crate) async fn poll(
    State(s): State<AppState>,
    Json(req): Json<PollRequest>,
) -> Result<axum::Json<PollResponse>, ApiError> {
    let Some(drain) = s.engine.workers.polling(&req.worker_id) else {
        return Err(unknown_worker(&req.worker_id));
    };
    if req.queues.is_empty() || req.max_jobs > MAX_POLL {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            format!("poll needs 1+ queues and max_jobs ≤ {MAX_POLL}"),
        ));
    }
    let wait = Duration::from_millis(req.wait_ms).min(MAX_WAIT);
    let jobs = s
        .engine
        .broker
        .poll(&req.worker_id, &req.queues, req.max_jobs, wait, &drain)
        .await?;
    let now = s.engine.clock.now();
    for job in &jobs {
        s.metrics
            .claimed(job, (now - job.run_at).to_std().unwrap_or_default());
    }
    Ok(axum::Json(PollResponse { jobs }))
}

/// Extends a lease, stores progress, and says whether to stop.
#[utoipa::path(post, path = "/v1/jobs/{id}/heartbeat", tag = "workers", request_body = HeartbeatRequest,
    params(("id" = i64, Path, description = "Job id")),
    responses((status = 200, body = HeartbeatResponse), (status = "4XX", body = ErrorBody)))]
pub(crate) async fn heartbeat(
    State(s): State<AppState>,
    Path(id): Path<i64>,
    Json(req): Json<HeartbeatRequest>,
) -> Result<axum::Json<HeartbeatResponse>, ApiError> {
    if let Some(worker) = &req.worker_id {
        s.engine.workers.touch(worker);
    }
    let params = JobHeartbeatParams {
        job_id: JobId(id),
        token: req.token,
        progress: req.progress,
        now: s.engine.clock.now(),
    };
    let beat = s.engine.store.job_heartbeat(params).await?;
    Ok(axum::Json(HeartbeatResponse {
        expires_at: beat.expires_at,
        cancel_requested: beat.cancel_requested,
    }))
}

/// Completes a job.
#[utoipa::path(post, path = "/v1/jobs/{id}/complete", tag = "workers", request_body = CompleteRequest,
    params(("id" = i64, Path, description = "Job id")),
    responses((status = 200, body = AckResponse), (status = "4XX", body = ErrorBody)))]
pub(crate) async fn complete(
    State(s): State<AppState>,
    Path(id): Path<i64>,
    Json(req): Json<CompleteRequest>,
) -> Result<axum::Json<AckResponse>, ApiError> {
    let completions = vec![Completion {
        job_id: JobId(id),
        token: req.token,
        result: req.result,
    }];
    let state = single(complete_many(&s, completions).await?)?;
    Ok(axum::Json(AckResponse {
        id: JobId(id),
        state,
    }))
}

/// Records a failed attempt.
#[utoipa::path(post, path = "/v1/jobs/{id}/fail", tag = "workers", request_body = FailRequest,
    params(("id" = i64, Path, description = "Job id")),
    responses((status = 200, body = AckResponse), (status = "4XX", body = ErrorBody)))]
pub(crate) async fn fail(
    State(s): State<AppState>,
    Path(id): Path<i64>,
    Json(req): Json<FailRequest>,
) -> Result<axum::Json<AckResponse>, ApiError> {
    let failures = vec![Failure {
        job_id: JobId(id),
        token: req.token,
        error: req.error,
        retryable: req.retryable,
    }];
    let state = single(fail_many(&s, failures).await?)?;
    Ok(axum::Json(AckResponse {
        id: JobId(id),
        state,
    }))
}

/// Many completions and failures at once; answered per item.
#[utoipa::path(post, path = "/v1/ack:batch", tag = "workers", request_body = AckBatchRequest,
    responses((status = 200, body = AckBatchResponse), (status = "4XX", body = ErrorBody)))]
pub(crate) async fn ack_batch(
    State(s): State<AppState>,
    Json(req): Json<AckBatchRequest>,
) -> Result<axum::Json<AckBatchResponse>, ApiError> {
    if let Some(worker) = &req.worker_id {
        s.engine.workers.touch(worker);
    }
    let ids: Vec<JobId> = req.complete.iter().map(|c| c.id).collect();
    let completions = req
        .complete
        .into_iter()
        .map(|c| Completion {
            job_id: c.id,
            token: c.token,
            result: c.result,
        })
        .collect();
    let complete = items(&ids, complete_many(&s, completions).await?);
    let ids: Vec<JobId> = req.fail.iter().map(|f| f.id).collect();
    let failures = req
        .fail
        .into_iter()
        .map(|f| Failure {
            job_id: f.id,
            token: f.token,
            error: f.error,
            retryable: f.retryable,
        })
        .collect();
    let fail = items(&ids, fail_many(&s, failures).await?);
    let leases: Vec<(JobId, LeaseToken)> = req.release.iter().map(|r| (r.id, r.token)).collect();
    let ids: Vec<JobId> = leases.iter().map(|(id, _)| *id).collect();
    let release = items(&ids, release_many(&s, leases).await?);
    Ok(axum::Json(AckBatchResponse {
        complete,
        fail,
        release,
    }))
}

/// The one result of a one-item batch.
fn single(mut results: Vec<Result<JobState, ApiError>>) -> Result<JobState, ApiError> {
    results.pop().unwrap_or_else(|| {
        Err(ApiError::new(
            ErrorCode::Internal,
            "the store answered no item",
        ))
    })
}

fn items(ids: &[JobId], results: Vec<Result<JobState, ApiError>>) -> Vec<AckItemResult> {
    ids.iter()
        .zip(results)
        .map(|(id, r)| match r {
            Ok(state) => AckItemResult {
                id: *id,
                state: Some(state),
                error: None,
            },
            Err(e) => AckItemResult {
                id: *id,
                state: None,
                error: Some(flotilla_proto::ErrorDetail {
                    code: e.code.as_str().into(),
                    message: e.message,
                }),
            },
        })
        .collect()
}

async fn complete_many(
    s: &AppState,
    completions: Vec<Completion>,
) -> Result<Vec<Result<JobState, ApiError>>, ApiError> {
    if completions.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<JobId> = completions.iter().map(|c| c.job_id).collect();
    let params = JobCompleteManyParams {
        completions,
        now: s.engine.clock.now(),
    };
    let results = s.engine.store.job_complete_many(params).await?;
    for (id, _) in ids.iter().zip(&results).filter(|(_, r)| r.is_ok()) {
        s.metrics.ended(*id);
    }
    // A finished job frees a slot of a limited queue.
    s.engine.broker.wake_limited();
    Ok(results
        .into_iter()
        .map(|r| r.map(|()| JobState::Succeeded).map_err(ApiError::from))
        .collect())
}

async fn release_many(
    s: &AppState,
    leases: Vec<(JobId, LeaseToken)>,
) -> Result<Vec<Result<JobState, ApiError>>, ApiError> {
    if leases.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<JobId> = leases.iter().map(|(id, _)| *id).collect();
    let params = JobReleaseParams {
        leases,
        now: s.engine.clock.now(),
    };
    let results = s.engine.store.job_release(params).await?;
    for (id, _) in ids.iter().zip(&results).filter(|(_, r)| r.is_ok()) {
        s.metrics.ended(*id);
    }
    // Released jobs are available again and free slots of limited queues.
    s.engine.broker.wake_limited();
    s.engine.broker.wake_all();
    Ok(results
        .into_iter()
        .map(|r| r.map_err(ApiError::from))
        .collect())
}

async fn fail_many(
    s: &AppState,
    failures: Vec<Failure>,
) -> Result<Vec<Result<JobState, ApiError>>, ApiError> {
    if failures.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<JobId> = failures.iter().map(|f| f.job_id).collect();
    let params = JobFailManyParams {
        failures,
        now: s.engine.clock.now(),
    };
    let results: Vec<StoreResult<JobState>> = s.engine.store.job_fail_many(params).await?;
    for (id, _) in ids.iter().zip(&results).filter(|(_, r)| r.is_ok()) {
        s.metrics.ended(*id);
    }
    // A finished job frees a slot of a limited queue.
    s.engine.broker.wake_limited();
    if results.iter().any(|r| matches!(r, Ok(JobState::Available))) {
        // A retry that is due at once: wake the waiting workers.
        s.engine.broker.wake_all();
    }
    Ok(results
        .into_iter()
        .map(|r| r.map_err(ApiError::from))
        .collect())
}
