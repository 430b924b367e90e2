//! Helpers shared by the cases: short ways to create queues, build and insert jobs, claim,
//! acknowledge, read back and compare error codes, so each case reads as the behaviour it
//! checks. Every helper takes `now` from the harness clock and panics with the call's name
//! when a call that must succeed fails.

use std::fmt::Debug;
use std::time::Duration;

use flotilla_core::{
    Clock, ErrorCode, Job, JobId, JobState, LeaseToken, NewJob, QueueConfig, RetryPolicy, Timestamp,
};
use flotilla_store::{
    Completion, Failure, Heartbeat, JobCancelParams, JobClaimParams, JobCompleteManyParams,
    JobFailManyParams, JobHeartbeatParams, JobInsertManyParams, JobListParams, MaintenanceParams,
    QueueStats, QueueStatsParams, ReapReport, Store, StoreResult,
};
use serde_json::{Value, json};

use crate::Harness;

/// The worker id the helpers claim as.
pub const WORKER: &str = "worker-1";

/// A duration of `n` seconds.
pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A duration of `n` milliseconds.
pub fn millis(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// `t` moved forward by `d`.
pub fn plus(t: Timestamp, d: Duration) -> Timestamp {
    t + chrono::Duration::from_std(d).expect("duration in range")
}

/// `t` moved back by `d`.
pub fn minus(t: Timestamp, d: Duration) -> Timestamp {
    t - chrono::Duration::from_std(d).expect("duration in range")
}

/// `Limited { max_attempts, delay }`: exact, jitter-free retry delays.
pub fn limited(max_attempts: u32, delay: Duration) -> RetryPolicy {
    RetryPolicy::Limited {
        max_attempts,
        delay,
    }
}

/// The code of a call that must fail.
pub fn code<T: Debug>(result: StoreResult<T>) -> ErrorCode {
    result
        .expect_err("the call should have been refused")
        .code()
}

/// Per-item results as `None` (accepted) or the refusal's code, for one `assert_eq!`.
pub fn codes<T>(results: &[StoreResult<T>]) -> Vec<Option<ErrorCode>> {
    results
        .iter()
        .map(|r| r.as_ref().err().map(|e| e.code()))
        .collect()
}

/// Creates (or replaces) queue `name` with every setting at its default.
pub async fn queue(h: &Harness, name: &str) {
    queue_with(h, QueueConfig::new(name)).await;
}

/// Creates (or replaces) queue `name` retrying with `retry`, every other setting at its
/// default.
pub async fn queue_retrying(h: &Harness, name: &str, retry: RetryPolicy) {
    queue_with(
        h,
        QueueConfig {
            retry,
            ..QueueConfig::new(name)
        },
    )
    .await;
}

/// Creates (or replaces) a queue with `config`.
pub async fn queue_with(h: &Harness, config: QueueConfig) {
    let name = config.name.clone();
    h.store
        .queue_upsert(config)
        .await
        .unwrap_or_else(|e| panic!("queue_upsert {name}: {e}"));
}

/// A job of `kind` on `queue` with an empty object payload and default options.
pub fn job(queue: &str, kind: &str) -> NewJob {
    NewJob::new(queue, kind, json!({}))
}

/// Inserts one new job (not a duplicate) and returns its id.
pub async fn insert(h: &Harness, job: NewJob) -> JobId {
    let inserted = h
        .store
        .job_insert(job, h.clock.now())
        .await
        .expect("job_insert");
    assert!(!inserted.duplicate, "unexpected duplicate {inserted:?}");
    inserted.id
}

/// Inserts `jobs` as one batch and returns their ids in order.
pub async fn insert_many(h: &Harness, jobs: Vec<NewJob>) -> Vec<JobId> {
    let params = JobInsertManyParams {
        jobs,
        now: h.clock.now(),
    };
    let inserted = h
        .store
        .job_insert_many(params)
        .await
        .expect("job_insert_many");
    inserted.into_iter().map(|i| i.id).collect()
}

/// Inserts `n` default jobs of kind `work` on `queue`, in one batch.
pub async fn insert_n(h: &Harness, queue: &str, n: usize) -> Vec<JobId> {
    insert_many(h, (0..n).map(|_| job(queue, "work")).collect()).await
}

/// One job, which must exist.
pub async fn get(h: &Harness, id: JobId) -> Job {
    h.store
        .job_get(id)
        .await
        .unwrap_or_else(|e| panic!("job_get {id}: {e}"))
}

/// Claims up to `limit` jobs from `queues` through `store`, as `worker`.
pub async fn claim_via(
    store: &dyn Store,
    now: Timestamp,
    queues: &[&str],
    limit: u32,
    worker: &str,
) -> Vec<Job> {
    let params = JobClaimParams {
        queues: queues.iter().map(|q| (*q).to_owned()).collect(),
        limit,
        worker_id: worker.to_owned(),
        now,
    };
    store.job_claim(params).await.expect("job_claim")
}

/// Claims up to `limit` jobs from `queues` as [`WORKER`].
pub async fn claim(h: &Harness, queues: &[&str], limit: u32) -> Vec<Job> {
    claim_via(&*h.store, h.clock.now(), queues, limit, WORKER).await
}

/// Claims one job from `queue` with `limit: 1`; there must be one to claim.
pub async fn claim_one(h: &Harness, queue: &str) -> Job {
    let mut jobs = claim(h, &[queue], 1).await;
    assert_eq!(
        jobs.len(),
        1,
        "expected one claimable job in {queue}: {jobs:?}"
    );
    jobs.pop().expect("one job")
}

/// Ids of `jobs`, in order.
pub fn ids(jobs: &[Job]) -> Vec<JobId> {
    jobs.iter().map(|j| j.id).collect()
}

/// Ids of `jobs`, sorted (claims promise which jobs, not the order of the returned list).
pub fn sorted_ids(jobs: &[Job]) -> Vec<JobId> {
    let mut ids = ids(jobs);
    ids.sort();
    ids
}

/// The token of a running job's lease.
pub fn token(job: &Job) -> LeaseToken {
    job.lease.as_ref().expect("a running job has a lease").token
}

/// Completes one job with `token`, returning the per-item result.
pub async fn try_complete(
    h: &Harness,
    job_id: JobId,
    token: LeaseToken,
    result: Option<Value>,
) -> StoreResult<()> {
    let completions = vec![Completion {
        job_id,
        token,
        result,
    }];
    let params = JobCompleteManyParams {
        completions,
        now: h.clock.now(),
    };
    let mut results = h
        .store
        .job_complete_many(params)
        .await
        .expect("job_complete_many");
    assert_eq!(results.len(), 1, "one result per completion");
    results.pop().expect("one result")
}

/// Completes a claimed job with its own token; it must be accepted.
pub async fn complete(h: &Harness, job: &Job) {
    try_complete(h, job.id, token(job), None)
        .await
        .unwrap_or_else(|e| panic!("complete {}: {e}", job.id));
}

/// Fails one job with `token`, returning the per-item result (the job's new state).
pub async fn try_fail(
    h: &Harness,
    job_id: JobId,
    token: LeaseToken,
    error: &str,
    retryable: bool,
) -> StoreResult<JobState> {
    let failures = vec![Failure {
        job_id,
        token,
        error: error.to_owned(),
        retryable,
    }];
    let params = JobFailManyParams {
        failures,
        now: h.clock.now(),
    };
    let mut results = h.store.job_fail_many(params).await.expect("job_fail_many");
    assert_eq!(results.len(), 1, "one result per failure");
    results.pop().expect("one result")
}

/// Fails a claimed job with its own token; it must be accepted. Returns the new state.
pub async fn fail(h: &Harness, job: &Job, error: &str, retryable: bool) -> JobState {
    try_fail(h, job.id, token(job), error, retryable)
        .await
        .unwrap_or_else(|e| panic!("fail {}: {e}", job.id))
}

/// Heartbeats `job_id` with `token` and optional progress.
pub async fn heartbeat(
    h: &Harness,
    job_id: JobId,
    token: LeaseToken,
    progress: Option<Value>,
) -> StoreResult<Heartbeat> {
    let params = JobHeartbeatParams {
        job_id,
        token,
        progress,
        now: h.clock.now(),
    };
    h.store.job_heartbeat(params).await
}

/// Cancels a job, which must be accepted; returns the job as it now is.
pub async fn cancel(h: &Harness, job_id: JobId) -> Job {
    let params = JobCancelParams {
        job_id,
        now: h.clock.now(),
    };
    h.store
        .job_cancel(params)
        .await
        .unwrap_or_else(|e| panic!("job_cancel {job_id}: {e}"))
}

/// Maintenance params at the harness's now, with room for every job of a case.
pub fn maintenance(h: &Harness) -> MaintenanceParams {
    MaintenanceParams {
        now: h.clock.now(),
        limit: 10_000,
    }
}

/// Reaps every expired lease now.
pub async fn reap(h: &Harness) -> ReapReport {
    h.store
        .job_reap_expired(maintenance(h))
        .await
        .expect("job_reap_expired")
}

/// One queue's stats now.
pub async fn stats(h: &Harness, queue: &str) -> QueueStats {
    let params = QueueStatsParams {
        queue: Some(queue.to_owned()),
        now: h.clock.now(),
    };
    let mut all = h.store.queue_stats(params).await.expect("queue_stats");
    assert_eq!(all.len(), 1, "stats of one queue: {all:?}");
    let stats = all.pop().expect("one queue");
    assert_eq!(stats.queue, queue);
    stats
}

/// Every job matching `params`, walking all pages of `page` jobs (0: the default 100).
pub async fn list_all(h: &Harness, params: JobListParams, page: u32) -> Vec<Job> {
    let mut params = JobListParams {
        limit: page,
        cursor: None,
        ..params
    };
    let size = if page == 0 { 100 } else { page as usize };
    let mut all = Vec::new();
    loop {
        let got = h.store.job_list(params.clone()).await.expect("job_list");
        assert!(
            got.jobs.len() <= size,
            "page over its limit: {} > {size}",
            got.jobs.len()
        );
        let empty = got.jobs.is_empty();
        all.extend(got.jobs);
        match got.next {
            Some(next) if !empty => params.cursor = Some(next),
            _ => return all,
        }
    }
}

/// Every job of `queue`, newest first.
pub async fn jobs_in(h: &Harness, queue: &str) -> Vec<Job> {
    list_all(
        h,
        JobListParams {
            queue: Some(queue.to_owned()),
            ..JobListParams::default()
        },
        1000,
    )
    .await
}

/// A new succeeded job on `queue`. The queue must have no other available job.
pub async fn succeeded(h: &Harness, queue: &str) -> JobId {
    let id = insert(h, job(queue, "work")).await;
    let claimed = claim_one(h, queue).await;
    assert_eq!(claimed.id, id, "{queue} had another available job");
    complete(h, &claimed).await;
    id
}

/// A new dead job on `queue` (one failed attempt, non-retryable). The queue must have no
/// other available job.
pub async fn dead(h: &Harness, queue: &str) -> JobId {
    let id = insert(h, job(queue, "work")).await;
    let claimed = claim_one(h, queue).await;
    assert_eq!(claimed.id, id, "{queue} had another available job");
    assert_eq!(
        fail(h, &claimed, "broken input", false).await,
        JobState::Dead
    );
    id
}

/// A new cancelled job on `queue`.
pub async fn cancelled(h: &Harness, queue: &str) -> JobId {
    let id = insert(h, job(queue, "work")).await;
    assert_eq!(cancel(h, id).await.state, JobState::Cancelled);
    id
}

/// A new running job on `queue`. The queue must have no other available job.
pub async fn running(h: &Harness, queue: &str) -> Job {
    let id = insert(h, job(queue, "work")).await;
    let claimed = claim_one(h, queue).await;
    assert_eq!(claimed.id, id, "{queue} had another available job");
    claimed
}
