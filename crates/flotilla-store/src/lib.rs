//! The `Store` trait: every durable operation Flotilla needs, in one place, so the server
//! never knows which database it runs on. Backends (`flotilla-store-sqlite`, later
//! PostgreSQL) implement it and prove it with the shared suite in `flotilla-store-tests`.
//!
//! # Layout
//! - [`Store`]: the trait. Methods are noun-first (`job_claim`, `queue_pause`), take one
//!   params struct, and receive `now` from the caller's clock; batch forms are the default.
//! - [`params`]: the params and result structs.
//! - [`StoreError`]: one error enum for all backends, each variant with a stable code.
//!
//! # Invariants every backend keeps
//! - An enqueue is acknowledged only once it is durable; an acknowledged job is never lost.
//! - A running job has exactly one lease; only its token can complete, fail or extend it.
//!   Tokens increase strictly across the store.
//! - Every state change is one `flotilla_core::transition` allows (a backend calls it, or
//!   matches the source state in its statement), and every retry decision is
//!   `flotilla_core::on_failure`'s.
//! - A running job's lease never outlasts its timeout (`flotilla_core::lease_expiry`), so an
//!   attempt that runs too long is reaped as timed out even if its worker keeps heartbeating.
//! - Per-state counts and throughput counters change in the same transaction as the jobs.

pub mod params;

use async_trait::async_trait;
pub use flotilla_core::Job;
use flotilla_core::{
    CronSchedule, ErrorCode, JobId, JobState, LeaseToken, QueueConfig, Run, RunId,
};
use serde::{Deserialize, Serialize};

pub use params::*;

/// When a commit counts as done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// Every commit waits for the WAL to be fsynced (SQLite `synchronous = FULL`,
    /// PostgreSQL `synchronous_commit = on`), worker traffic (claims, heartbeats,
    /// outcomes) included.
    Strict,
    /// An accepted job survives a power cut: enqueues and admin changes wait for the fsync.
    /// With SQLite, worker traffic alone is written at once and fsynced within 50 ms (or by
    /// the next durable commit): a power cut can make a job that just ran run again,
    /// never lose one. With PostgreSQL, the same as `strict`. The default.
    #[default]
    Full,
    /// After the WAL is written, fsynced only at checkpoints (SQLite `synchronous = NORMAL`): an
    /// acknowledged job survives the process being killed, but the last moments of
    /// acknowledgements may be lost in a power cut or kernel crash. Several times faster
    /// for single, sequential enqueues.
    Relaxed,
}

impl std::str::FromStr for Durability {
    type Err = UnknownDurability;

    /// `strict`, `full` or `relaxed`, as in `flotilla.toml`.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "strict" => Ok(Self::Strict),
            "full" => Ok(Self::Full),
            "relaxed" => Ok(Self::Relaxed),
            _ => Err(UnknownDurability(name.to_owned())),
        }
    }
}

/// A durability name that is none of `strict`, `full` and `relaxed`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown durability {0:?}: use strict, full or relaxed")]
pub struct UnknownDurability(pub String);

/// The result of a store call.
pub type StoreResult<T> = Result<T, StoreError>;

/// What can go wrong in a store call, the same for every backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The input broke a domain rule (bad field, illegal move, payload too large, ...).
    #[error(transparent)]
    Invalid(#[from] flotilla_core::Error),
    /// No job has this id.
    #[error("job {0} not found")]
    JobNotFound(JobId),
    /// No queue has this name; queues are created with `queue_upsert`.
    #[error("queue {0:?} not found")]
    QueueNotFound(String),
    /// No cron schedule has this name.
    #[error("cron schedule {0:?} not found")]
    CronNotFound(String),
    /// No pipeline run has this id.
    #[error("run {0} not found")]
    RunNotFound(RunId),
    /// The token is not the job's current lease: it expired and the job moved on.
    #[error("job {job_id}: lease token {token} is not the current lease (the job is now {state})")]
    LeaseMismatch {
        /// The job.
        job_id: JobId,
        /// The token presented.
        token: LeaseToken,
        /// The job's state now.
        state: JobState,
    },
    /// The database cannot be reached or is failing; the call may be retried.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// An unexpected failure, e.g. a corrupt row.
    #[error("internal store error: {0}")]
    Internal(String),
}

impl StoreError {
    /// The stable code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Invalid(e) => e.code(),
            Self::JobNotFound(_) => ErrorCode::JobNotFound,
            Self::QueueNotFound(_) => ErrorCode::QueueNotFound,
            Self::CronNotFound(_) => ErrorCode::CronNotFound,
            Self::RunNotFound(_) => ErrorCode::RunNotFound,
            Self::LeaseMismatch { .. } => ErrorCode::LeaseMismatch,
            Self::Unavailable(_) => ErrorCode::Unavailable,
            Self::Internal(_) => ErrorCode::Internal,
        }
    }
}

/// Durable job storage.
///
/// All methods are safe to call concurrently from many tasks (and, for shared backends,
/// from many servers).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A short name of the backend, e.g. `sqlite`.
    fn backend(&self) -> &'static str;

    // ----- queues -----

    /// Creates the queue or replaces its settings (its jobs are untouched).
    async fn queue_upsert(&self, config: QueueConfig) -> StoreResult<()>;
    /// One queue's settings.
    async fn queue_get(&self, name: &str) -> StoreResult<QueueConfig>;
    /// Every queue's settings, by name.
    async fn queue_list(&self) -> StoreResult<Vec<QueueConfig>>;
    /// Pauses (`true`) or resumes (`false`) a queue: a paused queue accepts jobs but hands
    /// none out.
    async fn queue_set_paused(&self, name: &str, paused: bool) -> StoreResult<()>;
    /// Counts per state, age of the oldest available job and throughput counters, per
    /// queue (all queues when `params.queue` is `None`), by name. Costs O(queues), not
    /// O(jobs).
    async fn queue_stats(&self, params: QueueStatsParams) -> StoreResult<Vec<QueueStats>>;

    // ----- producers -----

    /// Enqueues a batch atomically: either every job is accepted or none is. Each job is
    /// `available` when its `run_at` is absent or due, else `scheduled`. A job whose
    /// `unique_key` matches a live job of the same queue is not inserted; that job is
    /// returned with `duplicate: true` (also within the batch). Results are in input order.
    async fn job_insert_many(&self, params: JobInsertManyParams) -> StoreResult<Vec<InsertedJob>>;

    /// Enqueues one job; see [`Store::job_insert_many`].
    async fn job_insert(
        &self,
        job: flotilla_core::NewJob,
        now: flotilla_core::Timestamp,
    ) -> StoreResult<InsertedJob> {
        let mut inserted = self
            .job_insert_many(JobInsertManyParams {
                jobs: vec![job],
                now,
            })
            .await?;
        inserted
            .pop()
            .ok_or_else(|| StoreError::Internal("insert returned no row".into()))
    }

    /// One job.
    async fn job_get(&self, id: JobId) -> StoreResult<Job>;
    /// Jobs matching every given filter, newest first, a page at a time.
    async fn job_list(&self, params: JobListParams) -> StoreResult<JobPage>;
    /// Cancels a job: `scheduled`/`available` become `cancelled` at once; a `running` job
    /// gets `cancel_requested`, delivered by its next heartbeat. Terminal jobs are refused
    /// with an invalid-transition error. Returns the job as it now is.
    async fn job_cancel(&self, params: JobCancelParams) -> StoreResult<Job>;
    /// Runs a job again now: `dead` and `cancelled` jobs are replayed (attempts reset, error
    /// history kept), `scheduled` jobs are promoted. Others are refused.
    async fn job_retry(&self, params: JobRetryParams) -> StoreResult<Job>;

    // ----- workers -----

    /// Claims up to `limit` jobs from `queues` in strict order (all a queue can give
    /// before the next), each queue by priority, then run_at, then id. Due scheduled jobs
    /// of those queues are promoted first. Paused queues give nothing; queue concurrency,
    /// group concurrency, rate limits and group round-robin are applied here. Each job gets
    /// a lease with a fresh token, for its own lease length or its queue's (cut short by its
    /// timeout, if shorter); its `attempt` goes up by one. The returned jobs carry their
    /// effective `timeout_ms` (their own, else their queue's), for the worker to enforce.
    async fn job_claim(&self, params: JobClaimParams) -> StoreResult<Vec<Job>>;
    /// Extends a lease by the job's lease length from `now` (never past the attempt's
    /// timeout deadline), stores progress when given,
    /// and says whether cancellation was requested. A token that is not current is refused
    /// with `LeaseMismatch`.
    async fn job_heartbeat(&self, params: JobHeartbeatParams) -> StoreResult<Heartbeat>;
    /// Completes each job whose token is current (→ `succeeded`, result stored). Results are
    /// per item, in input order; a refused item changes nothing.
    async fn job_complete_many(
        &self,
        params: JobCompleteManyParams,
    ) -> StoreResult<Vec<StoreResult<()>>>;
    /// Records each failed attempt whose token is current, in its error history, and moves the
    /// job as `flotilla_core::on_failure` decides. Returns each job's new state, per item.
    async fn job_fail_many(
        &self,
        params: JobFailManyParams,
    ) -> StoreResult<Vec<StoreResult<JobState>>>;

    /// Hands running jobs back unrun (a worker shutting down before it started them, or
    /// stopping them unfinished): each item whose token is current goes back to `available`
    /// at once with its lease cleared and its `attempt` lowered by one, since the attempt
    /// did not count; a job whose cancellation was requested becomes `cancelled` instead.
    /// Returns each job's new state, per item in input order; a refused item changes nothing.
    async fn job_release(
        &self,
        params: JobReleaseParams,
    ) -> StoreResult<Vec<StoreResult<JobState>>>;

    // ----- dead letters -----

    /// Replays dead jobs (those named, or else all of a queue / of every queue, oldest
    /// first, at most `limit`). Returns how many.
    async fn dead_replay(&self, params: DeadParams) -> StoreResult<u64>;
    /// Deletes dead jobs chosen as for [`Store::dead_replay`]. Returns how many.
    async fn dead_purge(&self, params: DeadParams) -> StoreResult<u64>;

    // ----- maintenance -----

    /// Moves up to `limit` due scheduled jobs to `available`.
    async fn job_promote_due(&self, params: MaintenanceParams) -> StoreResult<PromoteReport>;
    /// Treats up to `limit` running jobs whose lease has expired as failed attempts: retried,
    /// dead, or cancelled if requested. The error is "timed out: ran longer than …" when the
    /// attempt passed its timeout, else "lease expired: worker lost".
    async fn job_reap_expired(&self, params: MaintenanceParams) -> StoreResult<ReapReport>;
    /// Deletes up to `limit` finished jobs older than their queue's retention for their
    /// state (by `finished_at`). Live jobs are never touched. Returns how many.
    async fn job_prune(&self, params: MaintenanceParams) -> StoreResult<u64>;

    // ----- cron -----

    /// Creates or replaces a schedule. A new schedule counts its ticks from `now`; an
    /// existing one keeps its last fired tick.
    async fn cron_upsert(
        &self,
        schedule: CronSchedule,
        now: flotilla_core::Timestamp,
    ) -> StoreResult<()>;
    /// Every schedule with its last fired tick, by name.
    async fn cron_list(&self) -> StoreResult<Vec<CronEntry>>;
    /// Deletes a schedule.
    async fn cron_delete(&self, name: &str) -> StoreResult<()>;
    /// Applies `flotilla_core::cron_decision` to every schedule: fires due ticks (the job
    /// insert and the tick's record in one transaction, so concurrent callers fire each tick
    /// exactly once) and records skipped ones. Fires at most `limit` jobs (0: no limit).
    async fn cron_fire_due(&self, params: MaintenanceParams) -> StoreResult<CronReport>;

    // ----- pipeline runs -----

    /// Creates a run (checked with `flotilla_core::validate_run`) and enqueues its steps
    /// that wait for nothing, in one transaction. Each step's job gets the run's details in
    /// its payload (`flotilla_core::step_payload`). From then on, completing a step's job
    /// (`job_complete_many`) enqueues, in the same transaction, every step whose
    /// dependencies have all succeeded, with their results as its inputs, and announces
    /// their queues on [`Store::wakeups`]. Returns the run's id and the queues of the jobs
    /// enqueued now.
    async fn run_create(&self, params: RunCreateParams) -> StoreResult<RunCreated>;
    /// A run, with each step's state derived from its job's.
    async fn run_get(&self, id: RunId) -> StoreResult<Run>;
    /// Runs, newest first, a page at a time.
    async fn run_list(&self, params: RunListParams) -> StoreResult<RunPage>;

    // ----- copying between stores (`flotilla store copy`) -----

    /// Copies in jobs read from another store (with `job_list`), exactly as they are: ids,
    /// states, leases, attempts, errors, results and times. A job whose id exists already is
    /// skipped, so a copy that is run again adds only what is missing. Afterwards new job
    /// ids and lease tokens are above every copied one, and per-state counts include the
    /// copied jobs. Their queues must exist. Returns how many jobs were inserted.
    async fn job_import(&self, jobs: Vec<Job>) -> StoreResult<u64>;
    /// Raises a queue's throughput counters to at least `totals` (a copy keeps its history;
    /// running it again changes nothing).
    async fn queue_import_totals(&self, queue: &str, totals: Throughput) -> StoreResult<()>;
    /// Creates or replaces a schedule together with its last fired tick, as read from
    /// another store with `cron_list`.
    async fn cron_import(&self, entry: CronEntry) -> StoreResult<()>;

    // ----- other servers -----

    /// Queue names whose jobs became claimable through another server on the same
    /// database (enqueued, promoted, retried, released, replayed, resumed, or a slot of a
    /// limited queue freed), or inside the store itself (a pipeline step enqueued by a
    /// completion), so that this server wakes its long-polls. `None` for a store that
    /// neither shares its database nor enqueues on its own.
    fn wakeups(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        None
    }
}
