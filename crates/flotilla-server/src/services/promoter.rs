//! Promoter: scheduled jobs whose time has come become available, and their queues' polls
//! wake. (Claims also promote inline; this wakes workers that are waiting.)

use std::sync::Arc;
use std::time::Duration;

use flotilla_core::Timestamp;
use flotilla_store::{MaintenanceParams, Store, StoreResult};

use super::{BATCH, Service, TickReport};
use crate::Broker;

/// See the module docs.
pub struct Promoter {
    store: Arc<dyn Store>,
    broker: Arc<Broker>,
    interval: Duration,
}

impl Promoter {
    /// A promoter ticking every `interval`.
    pub fn new(store: Arc<dyn Store>, broker: Arc<Broker>, interval: Duration) -> Self {
        Self {
            store,
            broker,
            interval,
        }
    }
}

impl Service for Promoter {
    const NAME: &'static str = "promoter";

    fn interval(&self) -> Duration {
        self.interval
    }

    async fn tick(&self, now: Timestamp) -> StoreResult<TickReport> {
        let report = self
            .store
            .job_promote_due(MaintenanceParams { now, limit: BATCH })
            .await?;
        for queue in &report.queues {
            self.broker.wake(queue);
        }
        // Rate limits refill with time: give waiting polls on limited queues another try.
        self.broker.wake_limited();
        Ok(TickReport {
            touched: report.promoted,
        })
    }
}
