//! Flotilla's domain model: what a job is, which states it moves through, and the pure
//! rules that decide each move. Nothing here does I/O, so every rule is tested without a
//! database and every store applies exactly the same rules.
//!
//! # Layout
//! - [`job`]: [`Job`], [`NewJob`], ids, lease tokens and the error history.
//! - [`state`]: [`JobState`] and the state machine ([`transition`]), which refuses illegal moves.
//! - [`retry`]: [`RetryPolicy`] and [`on_failure`], the one place that decides retry vs dead.
//! - [`queue`]: [`QueueConfig`]: lease, timeout, retry, retention, limits, fairness.
//! - [`run`]: pipeline runs: [`NewRun`], [`Run`], dependencies checked by [`validate_run`].
//! - [`cron`]: [`CronSpec`], [`CronSchedule`] and [`cron_decision`] (fire, backfill or skip).
//! - [`clock`]: the injectable [`Clock`], with [`SystemClock`] and [`ManualClock`].
//! - [`error`]: [`Error`] and the table of stable [`ErrorCode`]s shared by every layer.
//!
//! # Invariants
//! - Timestamps carry microsecond precision (what both stores keep), so a value read back
//!   from a store equals the value written.
//! - Retry and dead-letter decisions are made only by [`on_failure`]; workers only report.

pub mod clock;
pub mod cron;
pub mod error;
pub mod job;
pub mod queue;
pub mod retry;
pub mod run;
pub mod state;

pub use clock::{Clock, ManualClock, SystemClock, truncate_micros};
pub use cron::{CronDecision, CronSchedule, CronSpec, cron_decision};
pub use error::{Error, ErrorCode};
pub use job::{
    AttemptError, DEFAULT_MAX_PAYLOAD_BYTES, Job, JobId, Lease, LeaseToken, MAX_ERROR_BYTES,
    MAX_PRIORITY, NewJob, check_payload_size, lease_expiry, timeout_error, truncate_utf8,
    validate_kind, validate_queue_name,
};
pub use queue::{QueueConfig, Retention, round_robin};
pub use retry::{FailureOutcome, RetryPolicy, on_failure};
pub use run::{
    MAX_STEPS, NewRun, NewStep, RUN_PAYLOAD_KEY, Run, RunId, RunState, Step, StepState, run_state,
    step_payload, step_state, stored_step_state, validate_run,
};
pub use state::{Event, JobState, transition};

/// Timestamps used throughout Flotilla: UTC, microsecond precision.
pub type Timestamp = chrono::DateTime<chrono::Utc>;
