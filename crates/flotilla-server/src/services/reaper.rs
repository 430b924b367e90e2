//! Reaper: running jobs whose lease expired (worker lost, or past their timeout) become a
//! failed attempt, retried or dead as their policy says.

use std::sync::Arc;
use std::time::Duration;

use flotilla_core::Timestamp;
use flotilla_store::{MaintenanceParams, Store, StoreResult};

use super::{BATCH, Service, TickReport};
use crate::Broker;

/// See the module docs.
pub struct Reaper {
    store: Arc<dyn Store>,
    broker: Arc<Broker>,
    interval: Duration,
}

impl Reaper {
    /// A reaper ticking every `interval`.
    pub fn new(store: Arc<dyn Store>, broker: Arc<Broker>, interval: Duration) -> Self {
        Self {
            store,
            broker,
            interval,
        }
    }
}

impl Service for Reaper {
    const NAME: &'static str = "reaper";

    fn interval(&self) -> Duration {
        self.interval
    }

    async fn tick(&self, now: Timestamp) -> StoreResult<TickReport> {
        let report = self
            .store
            .job_reap_expired(MaintenanceParams { now, limit: BATCH })
            .await?;
        for queue in &report.queues {
            self.broker.wake(queue);
        }
        let touched = report.retried + report.dead + report.cancelled;
        if touched > 0 {
            tracing::info!(
                retried = report.retried,
                dead = report.dead,
                cancelled = report.cancelled,
                "reaped expired leases"
            );
        }
        Ok(TickReport { touched })
    }
}
