//! Cron scheduler: fires due ticks (exactly once, even with several servers) and reports
//! skipped ones, which are never silent.

use std::sync::Arc;
use std::time::Duration;

use flotilla_core::Timestamp;
use flotilla_store::{MaintenanceParams, Store, StoreResult};

use super::{BATCH, Service, TickReport};
use crate::Broker;

/// See the module docs.
pub struct CronScheduler {
    store: Arc<dyn Store>,
    broker: Arc<Broker>,
    interval: Duration,
}

impl CronScheduler {
    /// A scheduler ticking every `interval`.
    pub fn new(store: Arc<dyn Store>, broker: Arc<Broker>, interval: Duration) -> Self {
        Self {
            store,
            broker,
            interval,
        }
    }
}

impl Service for CronScheduler {
    const NAME: &'static str = "cron";

    fn interval(&self) -> Duration {
        self.interval
    }

    async fn tick(&self, now: Timestamp) -> StoreResult<TickReport> {
        let report = self
            .store
            .cron_fire_due(MaintenanceParams { now, limit: BATCH })
            .await?;
        for (name, tick) in &report.skipped {
            tracing::warn!(schedule = %name, %tick, "cron tick skipped: older than its backfill window");
        }
        for (name, tick, job) in &report.fired {
            tracing::info!(schedule = %name, %tick, job_id = %job, "cron tick fired");
        }
        if !report.fired.is_empty() {
            self.broker.wake_all();
        }
        Ok(TickReport {
            touched: report.fired.len() as u64,
        })
    }
}
