//! Background services. Each is a small struct with an interval and a `tick` that does one
//! bounded batch and reports what it did; one runner ([`run_service`]) drives them all with
//! the same interval, start jitter, logging and shutdown. Tests call `tick` directly.
//!
//! Every service is safe to run in several servers at once: each tick is one store call
//! whose statements are idempotent (a job can only be promoted, reaped or pruned once, and
//! a cron tick fires once).

mod cron;
mod promoter;
mod pruner;
mod reaper;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use flotilla_core::{Clock, Timestamp};
use flotilla_store::StoreResult;
use tokio_util::sync::CancellationToken;

pub use cron::CronScheduler;
pub use promoter::Promoter;
pub use pruner::Pruner;
pub use reaper::Reaper;

/// The most jobs one tick touches.
pub const BATCH: u32 = 1000;

/// What one tick did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Jobs promoted, reaped, pruned or fired.
    pub touched: u64,
}

impl TickReport {
    /// Whether the tick filled its batch, so more work may be waiting.
    fn full(&self) -> bool {
        self.touched >= u64::from(BATCH)
    }
}

/// A background service.
pub trait Service: Send + Sync + 'static {
    /// Its name in logs.
    const NAME: &'static str;
    /// Time between ticks.
    fn interval(&self) -> Duration;
    /// One bounded batch of work at `now`.
    fn tick(&self, now: Timestamp) -> impl Future<Output = StoreResult<TickReport>> + Send;
}

/// Runs `service` every interval until `shutdown`; a tick that fills its batch is followed
/// at once by another. Errors are logged and the service keeps going.
pub async fn run_service<S: Service>(
    service: S,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) {
    let interval = service.interval();
    let jitter = interval.mul_f64(rand::random::<f64>() * 0.5);
    let mut wait = jitter;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        wait = interval;
        match service.tick(clock.now()).await {
            Ok(report) if report.full() => wait = Duration::ZERO,
            Ok(report) if report.touched > 0 => {
                tracing::debug!(service = S::NAME, touched = report.touched, "tick")
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(service = S::NAME, error = %e, "tick failed; retrying next interval")
            }
        }
    }
}

/// How often each service runs.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceIntervals {
    /// Promoting due scheduled jobs.
    #[serde(with = "humantime_serde")]
    pub promote: Duration,
    /// Reaping expired leases.
    #[serde(with = "humantime_serde")]
    pub reap: Duration,
    /// Pruning finished jobs.
    #[serde(with = "humantime_serde")]
    pub prune: Duration,
    /// Firing cron ticks.
    #[serde(with = "humantime_serde")]
    pub cron: Duration,
}

impl Default for ServiceIntervals {
    fn default() -> Self {
        Self {
            promote: Duration::from_millis(200),
            reap: Duration::from_millis(250),
            prune: Duration::from_secs(60),
            cron: Duration::from_secs(1),
        }
    }
}
