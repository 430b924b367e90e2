//! Flotilla's engine, independent of HTTP: the [`Broker`] that hands jobs to long-polling
//! workers, the background [`services`] (promoter, reaper, pruner, cron), the
//! [`WorkerRegistry`], and the validated [`ServerConfig`]. The HTTP layer (`flotilla-api`)
//! is a thin translation onto these.
//!
//! # Layout
//! - [`broker`]: long-poll claims woken by per-queue notifications.
//! - [`services`]: one file per background service and the shared runner.
//! - [`workers`]: registered workers, their last report and health.
//! - [`fleets`]: the last report of each fleet supervisor.
//! - [`config`]: `flotilla.toml`, environment overrides, validation with file and line.
//! - [`pipelines`]: pipelines (built-in and configured) and the runs they make per asset.
//! - [`busy_poll`]: idle CPUs spin for a moment after each request instead of halting.
//! - [`Engine`]: all of the above around one store, started and stopped together.

pub mod broker;
pub mod busy_poll;
pub mod config;
pub mod fleets;
pub mod pipelines;
pub mod services;
pub mod workers;

use std::sync::Arc;

use flotilla_core::{Clock, QueueConfig};
use flotilla_store::{Store, StoreResult};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use broker::Broker;
pub use busy_poll::BusyPoll;
pub use config::{ConfigError, Credential, Role, ServerConfig, TokenConfig};
pub use fleets::FleetRegistry;
pub use workers::WorkerRegistry;

use services::{CronScheduler, Promoter, Pruner, Reaper, ServiceIntervals, run_service};

/// The engine: a store, its broker and worker registry, and the background services.
#[derive(Clone)]
pub struct Engine {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Where `now` comes from.
    pub clock: Arc<dyn Clock>,
    /// The long-poll broker.
    pub broker: Arc<Broker>,
    /// Registered workers.
    pub workers: Arc<WorkerRegistry>,
    /// Fleet supervisors' reports.
    pub fleets: Arc<FleetRegistry>,
}

impl Engine {
    /// An engine over `store`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        let broker = Arc::new(Broker::new(store.clone(), clock.clone()));
        let workers = Arc::new(WorkerRegistry::new(clock.clone()));
        let fleets = Arc::new(FleetRegistry::new(clock.clone()));
        Self {
            store,
            clock,
            broker,
            workers,
            fleets,
        }
    }

    /// Creates a queue or replaces its settings. Pausing is operational state: an existing
    /// queue keeps its paused flag (a restart keeps a queue paused through the API); a new
    /// one takes `config.paused`. Waiting workers are woken, as looser limits may let them
    /// claim now.
    pub async fn configure_queue(&self, mut config: QueueConfig) -> StoreResult<()> {
        if let Ok(stored) = self.store.queue_get(&config.name).await {
            config.paused = stored.paused;
        }
        let (name, limited) = (config.name.clone(), config.has_limits());
        self.store.queue_upsert(config).await?;
        self.broker.set_limited(&name, limited);
        self.broker.wake(&name);
        Ok(())
    }

    /// Creates or updates the configured queues and cron schedules.
    pub async fn apply(&self, config: &ServerConfig) -> StoreResult<()> {
        for queue in config.queues_to_create() {
            self.configure_queue(queue).await?;
        }
        for schedule in &config.cron {
            self.store
                .cron_upsert(schedule.clone(), self.clock.now())
                .await?;
        }
        Ok(())
    }

    /// Starts the background services; they stop when `shutdown` is cancelled.
    pub fn start_services(
        &self,
        intervals: &ServiceIntervals,
        shutdown: &CancellationToken,
    ) -> JoinSet<()> {
        let mut set = JoinSet::new();
        let (store, broker, clock) = (&self.store, &self.broker, &self.clock);
        set.spawn(run_service(
            Promoter::new(store.clone(), broker.clone(), intervals.promote),
            clock.clone(),
            shutdown.clone(),
        ));
        set.spawn(run_service(
            Reaper::new(store.clone(), broker.clone(), intervals.reap),
            clock.clone(),
            shutdown.clone(),
        ));
        set.spawn(run_service(
            Pruner::new(store.clone(), intervals.prune),
            clock.clone(),
            shutdown.clone(),
        ));
        set.spawn(run_service(
            CronScheduler::new(store.clone(), broker.clone(), intervals.cron),
            clock.clone(),
            shutdown.clone(),
        ));
        if let Some(wakeups) = store.wakeups() {
            set.spawn(relay_wakeups(wakeups, broker.clone(), shutdown.clone()));
        }
        set
    }
}

/// Wakes this server's long-polls for work that other servers on the same database made
/// claimable. A receiver that fell behind lost some names: it wakes every queue instead.
async fn relay_wakeups(
    mut wakeups: tokio::sync::broadcast::Receiver<String>,
    broker: Arc<Broker>,
    shutdown: CancellationToken,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let next = tokio::select! {
            () = shutdown.cancelled() => return,
            next = wakeups.recv() => next,
        };
        match next {
            Ok(queue) => broker.wake(&queue),
            Err(RecvError::Lagged(_)) => broker.wake_all(),
            Err(RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_core::ManualClock;
    use flotilla_store_sqlite::{SqliteOptions, SqliteStore};

    #[tokio::test]
    async fn a_restart_keeps_a_paused_queue_paused() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("f.db"), SqliteOptions::default()).unwrap();
        let engine = Engine::new(Arc::new(store), Arc::new(ManualClock::at_epoch()));
        let config = ServerConfig {
            queues: vec![QueueConfig::new("q")],
            ..ServerConfig::default()
        };
        engine.apply(&config).await.unwrap();
        engine.store.queue_set_paused("q", true).await.unwrap();
        engine.apply(&config).await.unwrap();
        assert!(engine.store.queue_get("q").await.unwrap().paused);
    }
}
