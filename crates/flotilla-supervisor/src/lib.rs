//! The fleet supervisor behind `flotilla fleet fleet.toml`: runs pools of `flotilla worker`
//! processes, restarts them with backoff, drains those over their memory ceiling, scales
//! pools on the server's queue signals and raises alerts.
//!
//! The rules themselves (autoscaling policy, alert hysteresis) are pure functions in
//! `flotilla-fleet`; this crate is the part that touches processes, `/proc`, HTTP and time.
//!
//! # Layout
//! - [`config`]: `fleet.toml`, validated with file and line.
//! - [`supervisor`]: the loop, [`run`].
//! - `pool`, `slot`: a pool's processes and decisions; one process place and its signals.
//! - [`restart`]: backoff and crash-loop rules, pure.
//! - [`memory`]: resident memory of a process tree from `/proc`.
//! - [`status`]: `/healthz`, `/status`, `/metrics` on the supervisor's port.
//! - [`webhook`]: alert delivery to webhooks, retried.
//!
//! # Invariants
//! - A scale-in never kills a running job: the leaving process gets SIGTERM and its
//!   `--shutdown-grace` to finish, and it is chosen among the idlest.
//! - Only an exit the supervisor did not ask for counts as a crash.
//! - Every decision is logged with its reason and kept for the report.

pub mod config;
pub mod memory;
mod pool;
pub mod restart;
mod slot;
pub mod status;
pub mod supervisor;
pub mod webhook;

pub use config::{ConfigError, FleetConfig, PoolConfig, RestartPolicy};
pub use supervisor::{SupervisorError, run};
