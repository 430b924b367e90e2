//! The worker runtime and SDK: a Rust program registers a handler per job kind, and the
//! runtime pulls jobs from a Flotilla server over HTTP and runs them.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use flotilla_worker::{JobContext, Worker};
//! use serde_json::json;
//!
//! let client = flotilla_client::Client::new("http://127.0.0.1:7070", None)?;
//! let worker = Worker::builder(client)
//!     .queues(["high", "default", "low"])
//!     .concurrency(10)
//!     .handler("email.send", |ctx: JobContext| async move {
//!         ctx.progress(json!({"step": "sending"}));
//!         Ok(json!({"sent_to": ctx.payload()["to"]}))
//!     })
//!     .health_addr("127.0.0.1:0".parse()?)
//!     .build()?;
//! worker.run_until_signal().await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - `builder`: [`WorkerBuilder`], the configuration, checked by [`WorkerBuilder::build`].
//! - `runtime`: [`Worker`]: its tasks, status reports, the drain.
//! - `poll`: registration and the poll loop over the free slots.
//! - `shared`: the configuration and state the runtime's tasks share; readiness.
//! - `job`: one job's task: heartbeats, timeout, cancellation; its outcome goes to the
//!   reporter and its slot is freed as soon as the handler is done.
//! - `report`, `batch`: the reporter, one task that sends outcomes in batches
//!   (`/v1/ack:batch`), and what it does with each request and its answer.
//! - `handler`: [`Handler`], [`JobContext`], [`JobError`].
//! - `exec`: [`ExecHandler`], a handler that runs a shell command per job.
//! - `health`: [`HealthRules`] (healthy / degraded / unhealthy) and [`HealthCheck`]
//!   (conditions the handlers report, e.g. a helper process that keeps dying).
//! - `health_port`: `/healthz`, `/readyz`, `/metrics`.
//! - `stats`, `backoff`: counters, and exponential backoff with full jitter.
//!
//! # Invariants
//! - The worker polls only for free slots (`max_jobs` = free slots; none free, no poll),
//!   and every job received is run or handed back.
//! - The server decides retries and dead-lettering; the worker only reports success,
//!   a retryable failure or a fatal one, once per job, with the lease token.
//! - A result is reported until the server answers (transport errors are retried with
//!   backoff) or refuses the lease; a job whose lease is lost is stopped and not reported.
//!   An outcome the server accepted is never sent again. The drain at shutdown returns
//!   only once every outcome is answered (or its deadline passed, which it logs).
//! - After the handler was stopped (cancel, timeout, lost lease, hard shutdown), what it
//!   returns is ignored: the reason it was stopped is the outcome.
//! - Every log line about a job is inside a span with `worker_id`, `queue`, `job_id`,
//!   `kind` and `attempt`.

mod backoff;
mod batch;
mod builder;
mod exec;
mod handler;
mod health;
mod health_port;
mod job;
mod poll;
mod report;
mod runtime;
mod shared;
mod stats;
#[cfg(test)]
mod testing;

pub use builder::{
    BuildError, DEFAULT_CANCEL_GRACE, DEFAULT_SHUTDOWN_GRACE, DEFAULT_STATUS_INTERVAL,
    MAX_POLL_WAIT, WorkerBuilder,
};
pub use exec::{EXIT_FATAL, ExecHandler, MAX_STDOUT_BYTES, STDERR_TAIL_BYTES, TERM_GRACE};
pub use flotilla_proto::WorkerHealth;
pub use handler::{Handler, HandlerFuture, JobContext, JobError};
pub use health::{HealthCheck, HealthRules};
pub use runtime::{Worker, WorkerError, shutdown_signal};
