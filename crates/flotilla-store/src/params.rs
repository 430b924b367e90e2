//! Parameters and results of [`crate::Store`] calls.

use std::time::Duration;

use flotilla_core::{
    CronSchedule, JobId, JobState, LeaseToken, NewJob, NewRun, Run, RunId, Timestamp,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::StoreResult;

/// See [`crate::Store::job_insert_many`].
#[derive(Debug, Clone)]
pub struct JobInsertManyParams {
    /// The jobs, in order.
    pub jobs: Vec<NewJob>,
    /// The caller's time.
    pub now: Timestamp,
}

/// One enqueued (or deduplicated) job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InsertedJob {
    /// The new job's id, or the live job's that holds the same unique key.
    pub id: JobId,
    /// That job's state.
    pub state: JobState,
    /// Whether an existing live job was returned instead of inserting.
    pub duplicate: bool,
}

/// See [`crate::Store::job_list`]. Every filter that is set must match.
#[derive(Debug, Clone, Default)]
pub struct JobListParams {
    /// Only this queue.
    pub queue: Option<String>,
    /// Only this state.
    pub state: Option<JobState>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only jobs carrying every one of these tags.
    pub tags: Vec<String>,
    /// Only jobs created at or after this time.
    pub created_after: Option<Timestamp>,
    /// Only jobs created before this time.
    pub created_before: Option<Timestamp>,
    /// Continue after this id (the previous page's `next`).
    pub cursor: Option<JobId>,
    /// Page size; 1..=1000 (0 means 100).
    pub limit: u32,
}

/// A page of jobs, newest first.
#[derive(Debug, Clone)]
pub struct JobPage {
    /// The jobs.
    pub jobs: Vec<crate::Job>,
    /// The cursor of the next page, when there may be one.
    pub next: Option<JobId>,
}

/// See [`crate::Store::job_cancel`].
#[derive(Debug, Clone)]
pub struct JobCancelParams {
    /// The job.
    pub job_id: JobId,
    /// The caller's time.
    pub now: Timestamp,
}

/// See [`crate::Store::job_retry`].
#[derive(Debug, Clone)]
pub struct JobRetryParams {
    /// The job.
    pub job_id: JobId,
    /// The caller's time.
    pub now: Timestamp,
}

/// See [`crate::Store::job_claim`].
#[derive(Debug, Clone)]
pub struct JobClaimParams {
    /// Queues in strict order.
    pub queues: Vec<String>,
    /// The most jobs to hand out.
    pub limit: u32,
    /// Who will hold the leases.
    pub worker_id: String,
    /// The caller's time.
    pub now: Timestamp,
}

/// See [`crate::Store::job_heartbeat`].
#[derive(Debug, Clone)]
pub struct JobHeartbeatParams {
    /// The job.
    pub job_id: JobId,
    /// The lease token.
    pub token: LeaseToken,
    /// Progress to store, if any.
    pub progress: Option<Value>,
    /// The caller's time.
    pub now: Timestamp,
}

/// A heartbeat's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// When the extended lease lapses.
    pub expires_at: Timestamp,
    /// Whether the job should stop.
    pub cancel_requested: bool,
}

/// One successful job.
#[derive(Debug, Clone)]
pub struct Completion {
    /// The job.
    pub job_id: JobId,
    /// The lease token.
    pub token: LeaseToken,
    /// What the handler returned.
    pub result: Option<Value>,
}

/// See [`crate::Store::job_complete_many`].
#[derive(Debug, Clone)]
pub struct JobCompleteManyParams {
    /// The completions.
    pub completions: Vec<Completion>,
    /// The caller's time.
    pub now: Timestamp,
}

/// One failed attempt.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The job.
    pub job_id: JobId,
    /// The lease token.
    pub token: LeaseToken,
    /// What went wrong.
    pub error: String,
    /// `false` sends the job straight to `dead` (e.g. a corrupt input file).
    pub retryable: bool,
}

/// See [`crate::Store::job_fail_many`].
#[derive(Debug, Clone)]
pub struct JobFailManyParams {
    /// The failures.
    pub failures: Vec<Failure>,
    /// The caller's time.
    pub now: Timestamp,
}

/// See [`crate::Store::job_release`].
#[derive(Debug, Clone)]
pub struct JobReleaseParams {
    /// The leases handed back: job and token.
    pub leases: Vec<(JobId, LeaseToken)>,
    /// The caller's time.
    pub now: Timestamp,
}

/// The per-item results of a batch acknowledgement.
pub type ItemResults<T> = Vec<StoreResult<T>>;

/// Which dead jobs [`crate::Store::dead_replay`] and [`crate::Store::dead_purge`] act on.
#[derive(Debug, Clone, Default)]
pub struct DeadParams {
    /// Only these jobs (others named are ignored if not dead); all when empty.
    pub ids: Vec<JobId>,
    /// Only this queue.
    pub queue: Option<String>,
    /// The most jobs to act on.
    pub limit: u32,
    /// The caller's time (for replay).
    pub now: Timestamp,
}

/// Parameters of the maintenance calls.
#[derive(Debug, Clone, Copy)]
pub struct MaintenanceParams {
    /// The caller's time.
    pub now: Timestamp,
    /// The most jobs to touch in this call (a bounded batch).
    pub limit: u32,
}

/// What [`crate::Store::job_promote_due`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PromoteReport {
    /// Jobs promoted.
    pub promoted: u64,
    /// Queues that got jobs (to wake their waiting workers).
    pub queues: Vec<String>,
}

/// What [`crate::Store::job_reap_expired`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReapReport {
    /// Jobs scheduled for another attempt.
    pub retried: u64,
    /// Jobs moved to dead.
    pub dead: u64,
    /// Jobs cancelled (cancellation had been requested).
    pub cancelled: u64,
    /// Queues with jobs available again at once.
    pub queues: Vec<String>,
}

/// See [`crate::Store::queue_stats`].
#[derive(Debug, Clone)]
pub struct QueueStatsParams {
    /// One queue, or all.
    pub queue: Option<String>,
    /// The caller's time (for ages).
    pub now: Timestamp,
}

/// Job counts by state.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateCounts {
    /// Waiting for run_at.
    pub scheduled: u64,
    /// Ready to claim.
    pub available: u64,
    /// Leased.
    pub running: u64,
    /// Finished well (until pruned).
    pub succeeded: u64,
    /// Cancelled (until pruned).
    pub cancelled: u64,
    /// Dead (until pruned or purged).
    pub dead: u64,
}

impl StateCounts {
    /// The count for `state`.
    pub fn get(&self, state: JobState) -> u64 {
        match state {
            JobState::Scheduled => self.scheduled,
            JobState::Available => self.available,
            JobState::Running => self.running,
            JobState::Succeeded => self.succeeded,
            JobState::Cancelled => self.cancelled,
            JobState::Dead => self.dead,
        }
    }

    /// A mutable count for `state`.
    pub fn get_mut(&mut self, state: JobState) -> &mut u64 {
        match state {
            JobState::Scheduled => &mut self.scheduled,
            JobState::Available => &mut self.available,
            JobState::Running => &mut self.running,
            JobState::Succeeded => &mut self.succeeded,
            JobState::Cancelled => &mut self.cancelled,
            JobState::Dead => &mut self.dead,
        }
    }
}

/// Counters that only grow, for throughput.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Throughput {
    /// Jobs accepted (duplicates excluded).
    pub enqueued: u64,
    /// Jobs that succeeded.
    pub succeeded: u64,
    /// Failed attempts (reported or lost leases).
    pub failed: u64,
    /// Failed attempts that were scheduled to retry.
    pub retried: u64,
    /// Jobs that went dead.
    pub dead: u64,
    /// Jobs cancelled.
    pub cancelled: u64,
    /// Leases that expired (a subset of `failed`).
    pub lease_expired: u64,
}

/// One queue's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueStats {
    /// The queue.
    pub queue: String,
    /// Whether it is paused.
    pub paused: bool,
    /// Jobs by state.
    pub counts: StateCounts,
    /// How long the oldest available job has been ready.
    pub oldest_available_age: Option<Duration>,
    /// Counters since the queue was created.
    pub totals: Throughput,
}

/// A schedule with its progress.
#[derive(Debug, Clone, PartialEq)]
pub struct CronEntry {
    /// The schedule.
    pub schedule: CronSchedule,
    /// The last tick fired or skipped (or the creation time).
    pub last_fired_at: Timestamp,
}

/// What [`crate::Store::cron_fire_due`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CronReport {
    /// Ticks fired: schedule, tick, job.
    pub fired: Vec<(String, Timestamp, JobId)>,
    /// Ticks passed over as too old: schedule, tick.
    pub skipped: Vec<(String, Timestamp)>,
}

/// See [`crate::Store::run_create`].
#[derive(Debug, Clone)]
pub struct RunCreateParams {
    /// The run.
    pub run: NewRun,
    /// The caller's time.
    pub now: Timestamp,
}

/// What [`crate::Store::run_create`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct RunCreated {
    /// The new run's id.
    pub id: RunId,
    /// The queues of the steps' jobs enqueued now (to wake their long-polls).
    pub queues: Vec<String>,
}

/// See [`crate::Store::run_list`].
#[derive(Debug, Clone, Default)]
pub struct RunListParams {
    /// Only runs of this pipeline.
    pub pipeline: Option<String>,
    /// Continue after this id (the previous page's `next`).
    pub cursor: Option<RunId>,
    /// Page size; 1..=100 (0 means 20).
    pub limit: u32,
}

/// A page of runs, newest first.
#[derive(Debug, Clone)]
pub struct RunPage {
    /// The runs.
    pub runs: Vec<Run>,
    /// The cursor of the next page, when there may be one.
    pub next: Option<RunId>,
}
