//! The `/v1` wire format: every request and response body of the HTTP API, shared by the
//! server (`flotilla-api`) and the client (`flotilla-client`), so the two cannot drift. The
//! OpenAPI document is generated from these types.
//!
//! Bodies reuse the domain types where they are the contract already: an enqueue body is a
//! [`NewJob`], a job is a [`Job`]. Unknown fields are refused in every request body.
//!
//! # Layout
//! - [`ErrorBody`]: `{"error": {"code", "message"}}`, the shape of every error.
//! - Producers: [`EnqueueBatchRequest`], [`EnqueueResponse`], [`JobPage`], [`JobListQuery`].
//! - Workers: [`RegisterRequest`], [`PollRequest`], [`HeartbeatRequest`],
//!   [`CompleteRequest`], [`FailRequest`], [`AckBatchRequest`], [`WorkerStatusRequest`].
//! - Admin: [`QueueView`], [`WorkerView`], [`DeadRequest`], [`CountResponse`].
//! - Fleets: [`ScalingSignal`], [`FleetReport`] and its parts, [`FleetView`],
//!   [`WorkerSelfStatus`] (module [`fleet`]).

use flotilla_core::{JobId, JobState, LeaseToken, QueueConfig, Timestamp};
use flotilla_store::{StateCounts, Throughput};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

pub mod fleet;

pub use fleet::{
    AlertView, DecisionReport, FleetReport, FleetView, PoolReport, ProcessReport, ScalingSignal,
    WorkerSelfStatus,
};
pub use flotilla_core::{Job, NewJob, NewRun, NewStep, Run, RunId, RunState, Step, StepState};

/// Every error response: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// A stable code and a human message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable code (see `docs/ARCHITECTURE.md`, "Error codes").
    pub code: String,
    /// What a person needs to know to fix it.
    pub message: String,
}

// ----- producers -----

/// `POST /v1/jobs:batch`: enqueue several jobs, all or none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnqueueBatchRequest {
    /// The jobs, in order.
    pub jobs: Vec<NewJob>,
}

/// One accepted job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EnqueueResponse {
    /// The job's id (an existing live job's id when `duplicate`).
    pub id: JobId,
    /// Its state.
    pub state: JobState,
    /// Whether a live job with the same unique key was returned instead.
    pub duplicate: bool,
}

/// `POST /v1/jobs:batch` answer, in request order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EnqueueBatchResponse {
    /// One entry per requested job.
    pub jobs: Vec<EnqueueResponse>,
}

/// Filters of `GET /v1/jobs` and `GET /v1/dead`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct JobListQuery {
    /// Only this queue.
    pub queue: Option<String>,
    /// Only this state.
    pub state: Option<JobState>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only jobs with this tag.
    pub tag: Option<String>,
    /// Only jobs created at or after this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    pub created_after: Option<Timestamp>,
    /// Only jobs created before this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    pub created_before: Option<Timestamp>,
    /// The previous page's `next_cursor`.
    pub cursor: Option<JobId>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<u32>,
}

/// A page of jobs, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobPage {
    /// The jobs.
    pub jobs: Vec<Job>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<JobId>,
}

// ----- pipeline runs -----

/// `POST /v1/runs` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunCreatedResponse {
    /// The new run's id.
    pub id: RunId,
}

/// Filters of `GET /v1/runs`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RunListQuery {
    /// Only runs of this pipeline.
    pub pipeline: Option<String>,
    /// The previous page's `next_cursor`.
    pub cursor: Option<RunId>,
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<u32>,
}

/// A page of runs, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunPage {
    /// The runs.
    pub runs: Vec<Run>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<RunId>,
}

// ----- assets -----

/// `POST /v1/assets` query: what the body is and what to run over it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AssetUploadQuery {
    /// The file's name (kept, sanitised, in the object key; its type is read from the
    /// content, not from the name).
    pub name: String,
    /// The pipeline to run (default `image`, which needs a worker for `q-ai-enrich`;
    /// `image-basic` transcodes only).
    pub pipeline: Option<String>,
    /// Per-step parameter overrides as JSON, e.g. `{"transcode": {"trim": {"max_duration_s": 10}}}`.
    pub params: Option<String>,
}

/// Where an asset is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AssetStatus {
    /// Stored; no step has started yet.
    Uploaded,
    /// Some step has started and not every step has succeeded.
    Processing,
    /// Every step succeeded.
    Processed,
    /// A step failed for good (or was cancelled).
    Failed,
}

/// A file one of an asset's steps produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AssetOutput {
    /// The step that made it.
    pub step: String,
    /// Its name, unique within the asset (`GET /v1/assets/{id}/outputs/{name}`).
    pub name: String,
    /// Its object key.
    pub key: String,
    /// Its size in bytes.
    pub size: Option<u64>,
    /// What the step reported about it (dimensions, format, codecs…).
    pub details: Value,
}

/// An uploaded asset and its pipeline run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AssetView {
    /// Its id (its pipeline run's id).
    pub id: RunId,
    /// The uploaded file's name.
    pub name: String,
    /// The pipeline it runs through.
    pub pipeline: String,
    /// Where it is.
    pub status: AssetStatus,
    /// The upload's size in bytes.
    pub size: u64,
    /// The upload's SHA-256, hex.
    pub sha256: Option<String>,
    /// The upload's object key (under `uploads/`).
    pub key: String,
    /// Each step: state, attempts, result, last error.
    pub steps: Vec<Step>,
    /// Every output of every step so far.
    pub outputs: Vec<AssetOutput>,
    /// When it was uploaded.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// A stored resource (`PUT /v1/resources/{name}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ResourceView {
    /// Its object key, `resources/<name>`.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256, hex.
    pub sha256: Option<String>,
}

/// A page of assets, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AssetPage {
    /// The assets.
    pub assets: Vec<AssetView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<RunId>,
}

// ----- workers -----

/// `POST /v1/workers`: a worker introduces itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// A stable id to reuse (e.g. across reconnects); the server makes one when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// Queues it serves, in priority order.
    pub queues: Vec<String>,
    /// Jobs it runs at once.
    pub concurrency: u32,
    /// Its software version.
    pub version: String,
}

/// `POST /v1/workers` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RegisterResponse {
    /// The id to send with polls, heartbeats and status reports.
    pub worker_id: String,
    /// The default lease length, in milliseconds.
    pub lease_ms: u64,
    /// The longest long-poll wait the server accepts, in milliseconds.
    pub max_wait_ms: u64,
}

/// `POST /v1/poll`: ask for up to `max_jobs` jobs, waiting up to `wait_ms` for some.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PollRequest {
    /// The registered worker.
    pub worker_id: String,
    /// Queues in strict order: all a queue can give before the next.
    pub queues: Vec<String>,
    /// The most jobs to hand out: the worker's free slots.
    pub max_jobs: u32,
    /// How long to wait for work, in milliseconds (at most 20,000; 0 answers at once).
    #[serde(default)]
    pub wait_ms: u64,
}

/// `POST /v1/poll` answer: jobs under lease (possibly none).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PollResponse {
    /// Each with `lease.token`, which every later call about the job must carry.
    pub jobs: Vec<Job>,
}

/// `POST /v1/jobs/{id}/heartbeat`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    /// The lease token.
    pub token: LeaseToken,
    /// The worker sending it, when registered: the beat counts as hearing from it
    /// (its `last_seen_at`), besides extending the lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    /// Progress to store (any JSON), if any.
    #[serde(default)]
    pub progress: Option<Value>,
}

/// `POST /v1/jobs/{id}/heartbeat` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatResponse {
    /// When the extended lease lapses.
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
    /// Whether the job was cancelled and should stop.
    pub cancel_requested: bool,
}

/// `POST /v1/jobs/{id}/complete`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    /// The lease token.
    pub token: LeaseToken,
    /// The handler's result (any JSON).
    #[serde(default)]
    pub result: Option<Value>,
}

/// `POST /v1/jobs/{id}/fail`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailRequest {
    /// The lease token.
    pub token: LeaseToken,
    /// What went wrong.
    pub error: String,
    /// `false` sends the job straight to `dead` (e.g. a corrupt input); default `true`.
    #[serde(default = "yes")]
    pub retryable: bool,
}

fn yes() -> bool {
    true
}

/// The state a job moved to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AckResponse {
    /// The job.
    pub id: JobId,
    /// Its new state.
    pub state: JobState,
}

/// One completion in [`AckBatchRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteItem {
    /// The job.
    pub id: JobId,
    /// The lease token.
    pub token: LeaseToken,
    /// The handler's result.
    #[serde(default)]
    pub result: Option<Value>,
}

/// One failure in [`AckBatchRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailItem {
    /// The job.
    pub id: JobId,
    /// The lease token.
    pub token: LeaseToken,
    /// What went wrong.
    pub error: String,
    /// See [`FailRequest::retryable`].
    #[serde(default = "yes")]
    pub retryable: bool,
}

/// One job handed back unrun in [`AckBatchRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseItem {
    /// The job.
    pub id: JobId,
    /// The lease token.
    pub token: LeaseToken,
}

/// `POST /v1/ack:batch`: many completions, failures and releases in one request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckBatchRequest {
    /// The worker sending it, when registered: counts as hearing from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    /// Completions.
    #[serde(default)]
    pub complete: Vec<CompleteItem>,
    /// Failures.
    #[serde(default)]
    pub fail: Vec<FailItem>,
    /// Jobs handed back unrun (a worker shutting down, or sent more jobs than it has
    /// slots for): each is available again at once and the attempt does not count (a job
    /// whose cancellation was requested is cancelled instead).
    #[serde(default)]
    pub release: Vec<ReleaseItem>,
}

/// The outcome of one item of a batch: the job's new state, or why it was refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AckItemResult {
    /// The job.
    pub id: JobId,
    /// Its new state, when accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<JobState>,
    /// The refusal, when refused (e.g. `lease_mismatch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// `POST /v1/ack:batch` answer, per item in request order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AckBatchResponse {
    /// One per completion.
    pub complete: Vec<AckItemResult>,
    /// One per failure.
    pub fail: Vec<AckItemResult>,
    /// One per release.
    #[serde(default)]
    pub release: Vec<AckItemResult>,
}

/// A worker's own view of its health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkerHealth {
    /// Running, heartbeating, failing rarely.
    Healthy,
    /// Working, but failing often or heartbeating late.
    Degraded,
    /// Not working: most jobs fail or it cannot reach the server.
    Unhealthy,
}

/// `POST /v1/workers/{id}/status`: a worker's periodic report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkerStatusRequest {
    /// Its health by its own rules.
    pub health: WorkerHealth,
    /// The jobs it is running.
    pub running: Vec<JobId>,
    /// Jobs it finished successfully since it started.
    pub succeeded: u64,
    /// Jobs that failed on it since it started.
    pub failed: u64,
    /// Set while it drains before exiting.
    #[serde(default)]
    pub draining: bool,
}

// ----- admin -----

/// A queue's settings and numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueueView {
    /// The queue.
    pub name: String,
    /// Whether it is paused.
    pub paused: bool,
    /// Its settings.
    pub config: QueueConfig,
    /// Jobs by state.
    pub counts: StateCounts,
    /// Counters since the queue was created.
    pub totals: Throughput,
    /// How long the oldest available job has waited, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_available_age_ms: Option<u64>,
}

/// A worker as the server sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkerView {
    /// Its id.
    pub id: String,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// Queues it serves.
    pub queues: Vec<String>,
    /// Jobs it runs at once.
    pub concurrency: u32,
    /// Its software version.
    pub version: String,
    /// Its last reported health; `unhealthy` once it has not been heard from for a minute.
    pub health: WorkerHealth,
    /// Whether it is draining.
    pub draining: bool,
    /// The jobs it last reported running.
    pub running: Vec<JobId>,
    /// Jobs it finished successfully, as last reported.
    pub succeeded: u64,
    /// Jobs that failed on it, as last reported.
    pub failed: u64,
    /// When it registered.
    #[schema(value_type = String, format = DateTime)]
    pub registered_at: Timestamp,
    /// When it was last heard from (a poll or a status report).
    #[schema(value_type = String, format = DateTime)]
    pub last_seen_at: Timestamp,
}

/// `POST /v1/dead:replay` and `POST /v1/dead:purge`: which dead jobs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeadRequest {
    /// These jobs; all (of `queue`) when empty.
    #[serde(default)]
    pub ids: Vec<JobId>,
    /// Only this queue.
    #[serde(default)]
    pub queue: Option<String>,
    /// The most jobs to act on (default 1000).
    #[serde(default)]
    pub limit: u32,
}

/// How many jobs an action touched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CountResponse {
    /// The count.
    pub count: u64,
}

/// `/healthz` and `/readyz` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HealthResponse {
    /// `ok`, or what is wrong.
    pub status: String,
}
