//! Pruner: finished jobs older than their queue's retention are deleted; live jobs never.

use std::sync::Arc;
use std::time::Duration;

use flotilla_core::Timestamp;
use flotilla_store::{MaintenanceParams, Store, StoreResult};

use super::{BATCH, Service, TickReport};

/// See the module docs.
pub struct Pruner {
    store: Arc<dyn Store>,
    interval: Duration,
}

impl Pruner {
    /// A pruner ticking every `interval`.
    pub fn new(store: Arc<dyn Store>, interval: Duration) -> Self {
        Self { store, interval }
    }
}

impl Service for Pruner {
    const NAME: &'static str = "pruner";

    fn interval(&self) -> Duration {
        self.interval
    }

    async fn tick(&self, now: Timestamp) -> StoreResult<TickReport> {
        let pruned = self
            .store
            .job_prune(MaintenanceParams { now, limit: BATCH })
            .await?;
        Ok(TickReport { touched: pruned })
    }
}
