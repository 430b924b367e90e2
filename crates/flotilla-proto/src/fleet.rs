//! Fleet supervisors and autoscalers: the queue signal they scale on, and the status a
//! supervisor reports (`PUT /v1/fleet/{name}`) so the server can show every fleet
//! (`GET /v1/fleet`). The same [`FleetReport`] is what a supervisor serves on its own
//! `/status` and what `flotilla fleet status` prints.

use flotilla_core::{JobId, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::WorkerHealth;

/// `GET /v1/queues/{name}/scaling`: what an autoscaler (the fleet supervisor, KEDA's
/// `metrics-api` scaler, a script) needs of one queue, cheap to read every few seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScalingSignal {
    /// The queue.
    pub queue: String,
    /// Jobs ready to run now.
    pub available: u64,
    /// Jobs leased to workers now.
    pub running: u64,
    /// Jobs waiting for their time.
    pub scheduled: u64,
    /// Dead jobs (until pruned or purged).
    pub dead: u64,
    /// `available + running`: the work the queue's workers have in hand or ahead of them,
    /// the value to divide by a replica's concurrency.
    pub backlog: u64,
    /// How long the oldest available job has waited, in seconds (0 when none).
    pub oldest_available_age_seconds: f64,
    /// Whether the queue is paused (a paused queue's depth is no reason to scale out).
    pub paused: bool,
}

/// A supervisor's whole state, as it reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FleetReport {
    /// The supervisor's name (`name` in fleet.toml, else the host name).
    pub name: String,
    /// Host it runs on.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// When it started.
    #[schema(value_type = String, format = DateTime)]
    pub started_at: Timestamp,
    /// Whether it is draining every pool to exit.
    #[serde(default)]
    pub draining: bool,
    /// Its pools.
    pub pools: Vec<PoolReport>,
    /// Alerts firing now.
    #[serde(default)]
    pub alerts: Vec<AlertView>,
}

/// One pool of worker processes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolReport {
    /// The pool.
    pub name: String,
    /// Queues its workers serve, in priority order.
    pub queues: Vec<String>,
    /// Jobs each process runs at once.
    pub concurrency: u32,
    /// Bounds of the replica count.
    pub min_replicas: u32,
    /// Bounds of the replica count.
    pub max_replicas: u32,
    /// How many processes the pool wants now.
    pub desired_replicas: u32,
    /// `running`, or `crash_loop` once its processes keep crashing.
    pub state: String,
    /// Available jobs in its queues at the last signal.
    pub depth: u64,
    /// Age of the oldest available job in its queues at the last signal, in milliseconds.
    #[serde(default)]
    pub oldest_available_age_ms: Option<u64>,
    /// Memory ceiling of each process, in bytes.
    #[serde(default)]
    pub memory_limit_bytes: Option<u64>,
    /// Crashes since the supervisor started.
    pub crashes: u64,
    /// Restarts since the supervisor started.
    pub restarts: u64,
    /// Scale-outs since the supervisor started.
    #[serde(default)]
    pub scale_outs: u64,
    /// Scale-ins since the supervisor started.
    #[serde(default)]
    pub scale_ins: u64,
    /// Its processes.
    pub processes: Vec<ProcessReport>,
    /// The last scaling and replacement decisions, newest last.
    pub decisions: Vec<DecisionReport>,
}

/// One worker process of a pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessReport {
    /// Its worker id (stable across its restarts).
    pub id: String,
    /// Its process id, while it runs.
    #[serde(default)]
    pub pid: Option<u32>,
    /// `starting`, `running`, `draining`, `backoff` (waiting to restart) or `stopped`.
    pub state: String,
    /// How long the current process has run, in milliseconds.
    pub uptime_ms: u64,
    /// Times this slot's process was restarted.
    pub restarts: u64,
    /// Resident memory of the process and its children, in bytes.
    #[serde(default)]
    pub memory_bytes: Option<u64>,
    /// Health the worker reports on its health port.
    #[serde(default)]
    pub health: Option<WorkerHealth>,
    /// Jobs it runs now.
    #[serde(default)]
    pub current_jobs: Vec<JobId>,
    /// Why it last exited, when it did.
    #[serde(default)]
    pub last_exit: Option<String>,
}

/// A decision the supervisor took, with its reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionReport {
    /// When.
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    /// `scale_out`, `scale_in`, `crash` (with the restart delay), `replace` (memory),
    /// `crash_loop` or `recovered`.
    pub action: String,
    /// Replicas before.
    pub from: u32,
    /// Replicas after.
    pub to: u32,
    /// Why, in words.
    pub reason: String,
}

/// An alert firing on a supervisor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertView {
    /// The rule (`crash_rate`, `crash_loop`, `memory`, `processing_delay`, `dead_jobs`,
    /// `saturated`).
    pub rule: String,
    /// The pool.
    pub pool: String,
    /// `high`, `medium` or `low`.
    pub severity: String,
    /// What is wrong, in words.
    pub message: String,
    /// The value that crossed the threshold.
    pub value: f64,
    /// Since when.
    #[schema(value_type = String, format = DateTime)]
    pub since: Timestamp,
}

/// `GET /v1/fleet`: every supervisor that reported recently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FleetView {
    /// Its last report.
    pub report: FleetReport,
    /// When the server received it.
    #[schema(value_type = String, format = DateTime)]
    pub received_at: Timestamp,
    /// True when no report came for longer than three report intervals.
    pub stale: bool,
}

/// What a worker's health port answers on `/status`: who it is and what it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkerSelfStatus {
    /// Its worker id, once registered.
    #[serde(default)]
    pub id: Option<String>,
    /// Health by its rules and its handlers' checks.
    pub health: WorkerHealth,
    /// Why its handlers' checks say it is degraded (e.g. a helper process that keeps
    /// dying); empty when they are fine.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub degraded: Vec<String>,
    /// Whether it is ready for work.
    pub ready: bool,
    /// Whether it is draining.
    pub draining: bool,
    /// Jobs it runs now.
    pub running: Vec<JobId>,
    /// Jobs it runs at once.
    pub concurrency: u32,
}
