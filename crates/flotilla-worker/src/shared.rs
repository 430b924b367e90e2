//! [`Shared`]: the configuration and the state the poll loop, the job tasks, the reporter,
//! the status loop and the health port share.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_client::{Client, ClientError};
use flotilla_core::ErrorCode;
use flotilla_proto::{RegisterResponse, WorkerHealth};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use crate::handler::lock;
use crate::report::Ack;
use crate::stats::{Gauges, Stats};
use crate::{Handler, HealthCheck, HealthRules};

/// The checked configuration.
pub(crate) struct Config {
    pub(crate) queues: Vec<String>,
    pub(crate) concurrency: u32,
    pub(crate) handlers: HashMap<String, Arc<dyn Handler>>,
    pub(crate) default_handler: Option<Arc<dyn Handler>>,
    pub(crate) host: String,
    pub(crate) version: String,
    pub(crate) poll_wait: Duration,
    pub(crate) shutdown_grace: Duration,
    pub(crate) cancel_grace: Duration,
    pub(crate) status_interval: Duration,
    pub(crate) health_rules: HealthRules,
    pub(crate) health_checks: Vec<Arc<dyn HealthCheck>>,
    pub(crate) reconnect: (Duration, Duration),
}

/// What the last registration said.
struct Session {
    worker_id: Option<String>,
    registered: bool,
    lease: Duration,
    max_wait: Duration,
}

/// State shared by the poll loop, the job tasks, the reporter, the status loop and the
/// health port.
pub(crate) struct Shared {
    pub(crate) client: Client,
    pub(crate) config: Config,
    pub(crate) stats: Stats,
    /// One permit per free slot.
    pub(crate) slots: Arc<Semaphore>,
    /// Fires when the grace period is over: running jobs are cancelled and handed back.
    pub(crate) hard_stop: CancellationToken,
    /// Where job tasks hand their outcomes to the reporter.
    pub(crate) acks: mpsc::Sender<Ack>,
    session: Mutex<Session>,
    draining: AtomicBool,
    /// Slots held by the poll in flight (free, but not in the semaphore).
    polling: AtomicUsize,
    /// The health checks' reasons last seen, so that each is logged once.
    degraded_logged: Mutex<Vec<String>>,
}

impl Shared {
    /// The worker's id (empty until the first registration).
    pub(crate) fn worker_id(&self) -> String {
        lock(&self.session).worker_id.clone().unwrap_or_default()
    }

    /// The server's default lease.
    pub(crate) fn default_lease(&self) -> Duration {
        lock(&self.session).lease
    }

    /// The handler of `kind`.
    pub(crate) fn handler_for(&self, kind: &str) -> Option<Arc<dyn Handler>> {
        let config = &self.config;
        config
            .handlers
            .get(kind)
            .or(config.default_handler.as_ref())
            .cloned()
    }

    /// The worker's health by [`HealthRules`], made degraded by a failing [`HealthCheck`].
    pub(crate) fn health(&self) -> WorkerHealth {
        self.health_and_reasons().0
    }

    /// The worker's health, and why its checks say it is degraded (each check run once).
    pub(crate) fn health_and_reasons(&self) -> (WorkerHealth, Vec<String>) {
        let (samples, failures) = self.stats.window();
        let rules = &self.config.health_rules;
        let by_rules = rules.evaluate(self.stats.silence(), samples, failures);
        let reasons = self.degraded_reasons();
        let health = crate::health::with_checks(by_rules, !reasons.is_empty());
        (health, reasons)
    }

    /// Why the health checks say the worker is degraded; logs a reason when it first
    /// appears.
    fn degraded_reasons(&self) -> Vec<String> {
        let reasons: Vec<String> = self
            .config
            .health_checks
            .iter()
            .filter_map(|check| check.degraded())
            .collect();
        let mut logged = lock(&self.degraded_logged);
        for reason in &reasons {
            if !logged.contains(reason) {
                warn!(%reason, "worker degraded");
            }
        }
        *logged = reasons.clone();
        reasons
    }

    /// `Ok` when ready for work, else why not.
    pub(crate) fn readiness(&self) -> Result<(), &'static str> {
        if self.is_draining() {
            Err("draining")
        } else if !lock(&self.session).registered {
            Err("not registered")
        } else if !self.stats.connected() {
            Err("server unreachable")
        } else {
            Ok(())
        }
    }

    /// The values of `/metrics` that live outside [`Stats`].
    pub(crate) fn gauges(&self) -> Gauges {
        Gauges {
            free_slots: self.slots.available_permits() + self.polling.load(Ordering::Relaxed),
            concurrency: self.config.concurrency,
            ready: self.readiness().is_ok(),
            draining: self.is_draining(),
            health: self.health(),
        }
    }

    /// Fresh state for a worker that will register as `worker_id` (or as the server says)
    /// and report outcomes on `acks`.
    pub(crate) fn new(
        client: Client,
        config: Config,
        worker_id: Option<String>,
        acks: mpsc::Sender<Ack>,
    ) -> Self {
        let session = Session {
            worker_id,
            registered: false,
            lease: Duration::from_secs(30),
            max_wait: config.poll_wait,
        };
        Self {
            client,
            stats: Stats::new(config.health_rules.window),
            slots: Arc::new(Semaphore::new(config.concurrency as usize)),
            config,
            hard_stop: CancellationToken::new(),
            acks,
            session: Mutex::new(session),
            draining: AtomicBool::new(false),
            polling: AtomicUsize::new(0),
            degraded_logged: Mutex::new(Vec::new()),
        }
    }

    /// The id to register under: the one asked for, or the one the server gave before.
    pub(crate) fn registration_id(&self) -> Option<String> {
        lock(&self.session).worker_id.clone()
    }

    /// Records a registration.
    pub(crate) fn registered(&self, reply: RegisterResponse) {
        let mut session = lock(&self.session);
        session.worker_id = Some(reply.worker_id);
        session.registered = true;
        session.lease = Duration::from_millis(reply.lease_ms.max(1));
        session.max_wait = Duration::from_millis(reply.max_wait_ms);
    }

    /// The worker's id while registered.
    pub(crate) fn registered_id(&self) -> Option<String> {
        let session = lock(&self.session);
        session
            .registered
            .then(|| session.worker_id.clone())
            .flatten()
    }

    /// How long a poll may wait: the configured wait within the server's maximum.
    pub(crate) fn poll_wait(&self) -> Duration {
        self.config.poll_wait.min(lock(&self.session).max_wait)
    }

    /// Notes how many free slots the poll in flight holds.
    pub(crate) fn set_polling(&self, slots: usize) {
        self.polling.store(slots, Ordering::Relaxed);
    }

    /// Starts draining: `/readyz` turns 503 and status reports say so.
    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Whether the worker is draining.
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Notes a failed call: the server is unreachable, or it forgot this worker.
    pub(crate) fn call_failed(&self, what: &str, err: &ClientError) {
        if forgot_worker(err) {
            warn!(error = %err, "{what}: the server does not know this worker; registering again");
            lock(&self.session).registered = false;
        } else if err.is_retryable() {
            self.stats.call_failed();
            warn!(error = %err, "{what} failed");
        } else {
            error!(error = %err, "{what} refused");
        }
    }
}

/// Whether `err` says the server does not know the worker (it restarted, say).
fn forgot_worker(err: &ClientError) -> bool {
    let other_not_found = [ErrorCode::JobNotFound, ErrorCode::QueueNotFound]
        .into_iter()
        .any(|code| err.is(code));
    (err.status() == Some(404) && !other_not_found)
        || err.code().is_some_and(|c| c.contains("worker"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: &str) -> ClientError {
        ClientError::Api {
            status,
            code: code.into(),
            message: String::new(),
        }
    }

    #[test]
    fn which_errors_mean_the_server_forgot_the_worker() {
        assert!(forgot_worker(&api(404, "not_found")));
        assert!(forgot_worker(&api(404, "worker_not_found")));
        assert!(forgot_worker(&api(400, "unknown_worker")));
        assert!(!forgot_worker(&api(404, "queue_not_found")));
        assert!(!forgot_worker(&api(404, "job_not_found")));
        assert!(!forgot_worker(&api(503, "unavailable")));
        assert!(!forgot_worker(&api(401, "unauthorized")));
    }
}
