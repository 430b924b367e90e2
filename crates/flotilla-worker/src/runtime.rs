//! [`Worker`]: runs the poll loop (see `poll`), the reporter, status reports and the drain
//! at shutdown. Each job runs in its own task (see `job`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use flotilla_client::Client;
use flotilla_proto::WorkerStatusRequest;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, interval_at, timeout, timeout_at};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use crate::report::{self, Ack, REPORT_GRACE, Reporter};
use crate::shared::{Config, Shared};
use crate::{WorkerBuilder, health_port, poll};

/// How long the status report at shutdown may take.
pub(crate) const FINAL_STATUS_TIMEOUT: Duration = Duration::from_secs(5);

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
    acks: mpsc::Receiver<Ack>,
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
        let (acks_tx, acks) = report::channel();
        Self {
            shared: Arc::new(Shared::new(client, config, worker_id, acks_tx)),
            health,
            acks,
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
    /// the shutdown grace, cancels and hands back the rest (released: available again at
    /// once, the attempt undone), reports a last status with `draining` set and returns `Ok`.
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
        let Worker {
            shared,
            health,
            acks,
        } = self;
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
        let reporter = Reporter::spawn(shared.clone(), acks);
        // A task of its own (not the caller's, maybe `block_on`'s): it runs on the
        // runtime's threads, next to the jobs it spawns.
        let stop_polling = CancellationToken::new();
        let poll = poll::poll_until(shared.clone(), stop_polling.clone());
        let mut poller = tokio::spawn(poll.in_current_span());
        let ended = tokio::select! {
            () = shutdown => None,
            joined = &mut poller => Some(joined),
        };
        stop_polling.cancel();
        let mut jobs = match ended {
            Some(joined) => joined,
            None => poller.await,
        }
        .unwrap_or_else(|err| {
            error!("the poll loop panicked: {err}");
            JoinSet::new()
        });
        drain(&shared, &mut jobs, reporter).await;
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
pub(crate) async fn send_status(shared: &Shared) {
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

/// Lets running jobs finish within the grace period, then cancels and hands back the rest;
/// then waits for the reporter to send every outcome. All of it ends by the deadline of
/// grace + cancel grace + [`REPORT_GRACE`].
async fn drain(shared: &Shared, jobs: &mut JoinSet<()>, reporter: Reporter) {
    shared.start_draining();
    let grace = shared.config.shutdown_grace;
    let deadline = Instant::now() + grace + shared.config.cancel_grace + REPORT_GRACE;
    info!(
        running = jobs.len(),
        ?grace,
        "shutting down: polling stopped, draining"
    );
    let (_, drained) = tokio::join!(
        timeout(FINAL_STATUS_TIMEOUT, send_status(shared)),
        timeout(grace, join_all(jobs))
    );
    if drained.is_err() {
        let left = jobs.len();
        warn!(
            left,
            "grace period over: cancelling the jobs still running to hand them back"
        );
        shared.hard_stop.cancel();
        if timeout_at(deadline, join_all(jobs)).await.is_err() {
            let left = jobs.len();
            error!(
                left,
                "jobs left unreported; the server runs them again once their leases expire"
            );
            jobs.abort_all();
            join_all(jobs).await;
        }
    }
    reporter.finish(deadline).await;
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
