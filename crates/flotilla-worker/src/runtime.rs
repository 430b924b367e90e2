//! [`Worker`]: registration, the poll loop over free slots, status reports and the drain
//! at shutdown. Each job runs in its own task (see `job`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use flotilla_client::Client;
use flotilla_proto::{PollRequest, RegisterRequest, WorkerStatusRequest};
use tokio::task::JoinSet;
use tokio::time::{Instant, interval_at, sleep, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span, debug, error, info, info_span, warn};

use crate::backoff::Backoff;
use crate::shared::{Config, Shared};
use crate::{WorkerBuilder, health_port, job};

/// How long the status report at shutdown may take.
const FINAL_STATUS_TIMEOUT: Duration = Duration::from_secs(5);
/// The most jobs one poll asks for (the server's limit).
const MAX_JOBS_PER_POLL: usize = 1000;

/// Why [`Worker::run`] could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// The health port could not be served.
    #[error("health port: {0}")]
    HealthPort(#[source] std::io::Error),
}

/// A worker: polls its queues for as many jobs as it has free slots and runs them with
/// its handlers until shut down. Made by [`Worker::builder`].
pub struct Worker {
    shared: Arc<Shared>,
    health: Option<std::net::TcpListener>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("queues", &self.shared.config.queues)
            .field("concurrency", &self.shared.config.concurrency)
            .field("health_addr", &self.health_addr())
            .finish()
    }
}

impl Worker {
    /// Starts configuring a worker that talks to the server through `client`.
    pub fn builder(client: Client) -> WorkerBuilder {
        WorkerBuilder::new(client)
    }

    pub(crate) fn new(
        client: Client,
        config: Config,
        worker_id: Option<String>,
        health: Option<std::net::TcpListener>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared::new(client, config, worker_id)),
            health,
        }
    }

    #[cfg(test)]
    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// The address the health port listens on, when configured.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.health.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Runs until `shutdown` resolves, then stops polling, lets running jobs finish within
    /// the shutdown grace, cancels and hands back the rest (failed as retryable, "worker
    /// shutting down"), reports a last status with `draining` set and returns `Ok`.
    pub async fn run<F>(self, shutdown: F) -> Result<(), WorkerError>
    where
        F: Future<Output = ()> + Send,
    {
        let span = info_span!("worker", worker_id = tracing::field::Empty);
        if let Some(id) = self.shared.registration_id() {
            span.record("worker_id", id);
        }
        self.run_inner(shutdown).instrument(span).await
    }

    async fn run_inner<F>(self, shutdown: F) -> Result<(), WorkerError>
    where
        F: Future<Output = ()> + Send,
    {
        let Worker { shared, health } = self;
        let exit = CancellationToken::new();
        let health_task = match health {
            Some(listener) => {
                let listener =
                    tokio::net::TcpListener::from_std(listener).map_err(WorkerError::HealthPort)?;
                let serve = health_port::serve(listener, shared.clone(), exit.clone());
                Some(tokio::spawn(serve.in_current_span()))
            }
            None => None,
        };
        let config = &shared.config;
        info!(queues = ?config.queues, concurrency = config.concurrency, "worker starting");
        let status_stop = CancellationToken::new();
        let status = status_loop(shared.clone(), status_stop.clone());
        let status_task = tokio::spawn(status.in_current_span());
        let mut jobs = JoinSet::new();
        tokio::select! {
            () = shutdown => {}
            () = poll_loop(&shared, &mut jobs) => {}
        }
        drain(&shared, &mut jobs).await;
        status_stop.cancel();
        let _ = status_task.await;
        if timeout(FINAL_STATUS_TIMEOUT, send_status(&shared))
            .await
            .is_err()
        {
            warn!("the final status report timed out");
        }
        exit.cancel();
        if let Some(task) = health_task {
            let _ = task.await;
        }
        let (succeeded, failed) = (shared.stats.succeeded(), shared.stats.failed());
        info!(succeeded, failed, "worker stopped");
        Ok(())
    }

    /// [`Worker::run`] until SIGTERM or SIGINT.
    pub async fn run_until_signal(self) -> Result<(), WorkerError> {
        self.run(shutdown_signal()).await
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => info!("SIGTERM: shutting down"),
                _ = tokio::signal::ctrl_c() => info!("SIGINT: shutting down"),
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    info!("SIGINT: shutting down");
}

/// Registers (again when the server forgot the worker), polls for the free slots and
/// spawns a task per job; returns only if the slot semaphore closes (it never does).
async fn poll_loop(shared: &Arc<Shared>, jobs: &mut JoinSet<()>) {
    let mut backoff = Backoff::new(shared.config.reconnect);
    loop {
        while jobs.try_join_next().is_some() {}
        let Some(worker_id) = shared.registered_id() else {
            if !register(shared).await {
                sleep(backoff.next_delay()).await;
            }
            continue;
        };
        let Ok(first) = shared.slots.clone().acquire_owned().await else {
            return;
        };
        let mut permits = vec![first];
        while permits.len() < MAX_JOBS_PER_POLL
            && let Ok(permit) = shared.slots.clone().try_acquire_owned()
        {
            permits.push(permit);
        }
        let request = PollRequest {
            worker_id,
            queues: shared.config.queues.clone(),
            max_jobs: u32::try_from(permits.len()).unwrap_or(u32::MAX),
            wait_ms: u64::try_from(shared.poll_wait().as_millis()).unwrap_or(u64::MAX),
        };
        shared.set_polling(permits.len());
        let polled = shared.client.poll(&request).await;
        shared.set_polling(0);
        match polled {
            Ok(polled) => {
                backoff.reset();
                shared.stats.call_ok();
                debug!(jobs = polled.jobs.len(), free = request.max_jobs, "polled");
                // No await from here on: a job received is always spawned.
                for claimed in polled.jobs {
                    match permits.pop() {
                        Some(permit) => jobs.spawn(job::run(shared.clone(), claimed, permit)),
                        None => jobs.spawn(job::hand_back(shared.clone(), claimed)),
                    };
                }
            }
            Err(err) => {
                drop(permits);
                shared.call_failed("poll", &err);
                let delay = backoff.next_delay();
                debug!(
                    ?delay,
                    attempt = backoff.attempts(),
                    "polling again after a pause"
                );
                sleep(delay).await;
            }
        }
    }
}

/// Registers under the worker's id (when it has one); whether it worked.
async fn register(shared: &Shared) -> bool {
    let config = &shared.config;
    let request = RegisterRequest {
        id: shared.registration_id(),
        host: config.host.clone(),
        pid: std::process::id(),
        queues: config.queues.clone(),
        concurrency: config.concurrency,
        version: config.version.clone(),
    };
    match shared.client.register(&request).await {
        Ok(reply) => {
            shared.stats.call_ok();
            Span::current().record("worker_id", reply.worker_id.as_str());
            let (lease_ms, max_wait_ms) = (reply.lease_ms, reply.max_wait_ms);
            info!(lease_ms, max_wait_ms, "registered");
            shared.registered(reply);
            true
        }
        Err(err) => {
            shared.call_failed("register", &err);
            false
        }
    }
}

/// Reports the status every `status_interval` until `stop`.
async fn status_loop(shared: Arc<Shared>, stop: CancellationToken) {
    let every = shared.config.status_interval;
    let mut tick = interval_at(Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        tokio::select! {
            () = send_status(&shared) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// One status report, when registered.
async fn send_status(shared: &Shared) {
    let Some(worker_id) = shared.registered_id() else {
        return;
    };
    let status = WorkerStatusRequest {
        health: shared.health(),
        running: shared.stats.running(),
        succeeded: shared.stats.succeeded(),
        failed: shared.stats.failed(),
        draining: shared.is_draining(),
    };
    match shared.client.worker_status(&worker_id, &status).await {
        Ok(()) => shared.stats.call_ok(),
        Err(err) => shared.call_failed("status report", &err),
    }
}

/// Lets running jobs finish within the grace period, then cancels and hands back the rest.
async fn drain(shared: &Shared, jobs: &mut JoinSet<()>) {
    shared.start_draining();
    let grace = shared.config.shutdown_grace;
    info!(
        running = jobs.len(),
        ?grace,
        "shutting down: polling stopped, draining"
    );
    let (_, drained) = tokio::join!(
        timeout(FINAL_STATUS_TIMEOUT, send_status(shared)),
        timeout(grace, join_all(jobs))
    );
    if drained.is_ok() {
        return;
    }
    let left = jobs.len();
    warn!(
        left,
        "grace period over: cancelling the jobs still running to hand them back"
    );
    shared.hard_stop.cancel();
    let limit = shared.config.cancel_grace + job::REPORT_GRACE;
    if timeout(limit, join_all(jobs)).await.is_err() {
        let left = jobs.len();
        error!(
            left,
            "jobs left unreported; the server runs them again once their leases expire"
        );
        jobs.abort_all();
        join_all(jobs).await;
    }
}

async fn join_all(jobs: &mut JoinSet<()>) {
    while let Some(joined) = jobs.join_next().await {
        if let Err(err) = joined
            && err.is_panic()
        {
            error!("a job task panicked: {err}");
        }
    }
}
