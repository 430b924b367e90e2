//! [`WorkerBuilder`]: queues, concurrency, handlers and timings, checked once by
//! [`WorkerBuilder::build`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use flotilla_client::Client;

use crate::Worker;
use crate::backoff::Backoff;
use crate::shared::Config;
use crate::{Handler, HealthCheck, HealthRules};

/// The longest long-poll the protocol allows.
pub const MAX_POLL_WAIT: Duration = Duration::from_secs(20);
/// Default time running jobs get to finish after a shutdown is asked for.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Default time a cancelled handler gets to return before it is aborted.
pub const DEFAULT_CANCEL_GRACE: Duration = Duration::from_secs(5);
/// Default interval of status reports.
pub const DEFAULT_STATUS_INTERVAL: Duration = Duration::from_secs(10);

/// Why [`WorkerBuilder::build`] refused the configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No queue to poll.
    #[error("no queues: give at least one queue to poll")]
    NoQueues,
    /// A queue name is invalid.
    #[error(transparent)]
    InvalidQueue(#[from] flotilla_core::Error),
    /// Concurrency must be at least 1.
    #[error("concurrency must be at least 1")]
    ZeroConcurrency,
    /// Neither a handler nor a default handler.
    #[error("no handlers: register a handler or a default handler")]
    NoHandlers,
    /// A duration setting is out of range.
    #[error("{field}: {reason}")]
    InvalidDuration {
        /// The setting.
        field: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// The health port could not be bound.
    #[error("cannot bind the health port {addr}: {source}")]
    HealthBind {
        /// The address asked for.
        addr: SocketAddr,
        /// The bind error.
        #[source]
        source: std::io::Error,
    },
}

/// Configures a [`Worker`]; made by [`Worker::builder`].
#[must_use]
pub struct WorkerBuilder {
    client: Client,
    queues: Vec<String>,
    concurrency: u32,
    handlers: HashMap<String, Arc<dyn Handler>>,
    default_handler: Option<Arc<dyn Handler>>,
    health_addr: Option<SocketAddr>,
    worker_id: Option<String>,
    host: Option<String>,
    version: String,
    poll_wait: Duration,
    shutdown_grace: Duration,
    cancel_grace: Duration,
    status_interval: Duration,
    health_rules: HealthRules,
    health_checks: Vec<Arc<dyn HealthCheck>>,
    reconnect: (Duration, Duration),
}

impl WorkerBuilder {
    pub(crate) fn new(client: Client) -> Self {
        Self {
            client,
            queues: Vec::new(),
            concurrency: 1,
            handlers: HashMap::new(),
            default_handler: None,
            health_addr: None,
            worker_id: None,
            host: None,
            version: env!("CARGO_PKG_VERSION").into(),
            poll_wait: MAX_POLL_WAIT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            cancel_grace: DEFAULT_CANCEL_GRACE,
            status_interval: DEFAULT_STATUS_INTERVAL,
            health_rules: HealthRules::default(),
            health_checks: Vec::new(),
            reconnect: Backoff::RECONNECT,
        }
    }

    /// The queues to poll, in strict priority order.
    pub fn queues<I, S>(mut self, queues: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.queues = queues.into_iter().map(Into::into).collect();
        self
    }

    /// How many jobs run at once (default 1).
    pub fn concurrency(mut self, slots: u32) -> Self {
        self.concurrency = slots;
        self
    }

    /// Runs jobs of `kind` with `handler` (a closure or e.g. an
    /// [`ExecHandler`](crate::ExecHandler)).
    pub fn handler(mut self, kind: impl Into<String>, handler: impl Handler) -> Self {
        self.handlers.insert(kind.into(), Arc::new(handler));
        self
    }

    /// Runs jobs of every kind without a handler of its own. Without one, such jobs fail
    /// as non-retryable ("no handler for kind X").
    pub fn default_handler(mut self, handler: impl Handler) -> Self {
        self.default_handler = Some(Arc::new(handler));
        self
    }

    /// Serves `/healthz`, `/readyz` and `/metrics` on `addr` (port 0 picks a free port;
    /// see [`Worker::health_addr`]).
    pub fn health_addr(mut self, addr: SocketAddr) -> Self {
        self.health_addr = Some(addr);
        self
    }

    /// Registers under this id (default: the server makes one; it is kept for
    /// re-registrations either way).
    pub fn worker_id(mut self, id: impl Into<String>) -> Self {
        self.worker_id = Some(id.into());
        self
    }

    /// The host name to register with (default: the machine's).
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// The software version to register with (default: this crate's).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// The longest long-poll wait (default and most: 20 s; the server's own maximum
    /// applies too).
    pub fn poll_wait(mut self, wait: Duration) -> Self {
        self.poll_wait = wait;
        self
    }

    /// How long running jobs get to finish after a shutdown is asked for (default 30 s);
    /// the rest are then cancelled and handed back.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// How long a cancelled handler gets to return before it is aborted (default 5 s).
    pub fn cancel_grace(mut self, grace: Duration) -> Self {
        self.cancel_grace = grace;
        self
    }

    /// How often the worker reports its status (default 10 s).
    pub fn status_interval(mut self, every: Duration) -> Self {
        self.status_interval = every;
        self
    }

    /// Adds a condition that makes a healthy worker degraded while it fails (see
    /// [`HealthCheck`]); its reason is logged once when it starts failing.
    pub fn health_check(mut self, check: impl HealthCheck) -> Self {
        self.health_checks.push(Arc::new(check));
        self
    }

    /// The rules of healthy / degraded / unhealthy.
    pub fn health_rules(mut self, rules: HealthRules) -> Self {
        self.health_rules = rules;
        self
    }

    /// The reconnect backoff: from `base` doubling to `max`, with full jitter (default
    /// 100 ms to 10 s).
    pub fn reconnect_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.reconnect = (base, max);
        self
    }

    /// Checks the configuration and binds the health port.
    pub fn build(self) -> Result<Worker, BuildError> {
        if self.queues.is_empty() {
            return Err(BuildError::NoQueues);
        }
        for queue in &self.queues {
            flotilla_core::validate_queue_name(queue)?;
        }
        if self.concurrency == 0 {
            return Err(BuildError::ZeroConcurrency);
        }
        if self.handlers.is_empty() && self.default_handler.is_none() {
            return Err(BuildError::NoHandlers);
        }
        let invalid = |field, reason| Err(BuildError::InvalidDuration { field, reason });
        if self.poll_wait > MAX_POLL_WAIT {
            return invalid("poll_wait", "at most 20 s");
        }
        if self.status_interval.is_zero() {
            return invalid("status_interval", "must be positive");
        }
        if self.reconnect.0.is_zero() {
            return invalid("reconnect_backoff", "the base must be positive");
        }
        let health_listener = match self.health_addr {
            Some(addr) => Some(bind(addr)?),
            None => None,
        };
        let config = Config {
            queues: self.queues,
            concurrency: self.concurrency,
            handlers: self.handlers,
            default_handler: self.default_handler,
            host: self.host.unwrap_or_else(hostname),
            version: self.version,
            poll_wait: self.poll_wait,
            shutdown_grace: self.shutdown_grace,
            cancel_grace: self.cancel_grace,
            status_interval: self.status_interval,
            health_rules: self.health_rules,
            health_checks: self.health_checks,
            reconnect: self.reconnect,
        };
        Ok(Worker::new(
            self.client,
            config,
            self.worker_id,
            health_listener,
        ))
    }
}

fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, BuildError> {
    let err = |source| BuildError::HealthBind { addr, source };
    let listener = std::net::TcpListener::bind(addr).map_err(err)?;
    listener.set_nonblocking(true).map_err(err)?;
    Ok(listener)
}

/// The machine's host name, or `localhost`.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ExecHandler, JobContext};
    use serde_json::Value;

    fn builder() -> WorkerBuilder {
        let client = Client::new("http://127.0.0.1:1", None).unwrap();
        Worker::builder(client).queues(["default"])
    }

    fn noop(_: JobContext) -> crate::HandlerFuture {
        Box::pin(async { Ok(Value::Null) })
    }

    #[test]
    fn bad_settings_are_refused_by_name() {
        let err = |b: WorkerBuilder| b.build().unwrap_err().to_string();
        assert_eq!(
            err(builder()),
            "no handlers: register a handler or a default handler"
        );
        let ok = || builder().handler("k", noop);
        assert!(ok().build().is_ok());
        assert!(err(ok().queues(Vec::<String>::new())).starts_with("no queues"));
        assert!(err(ok().queues(["a b"])).starts_with("invalid queue name"));
        assert_eq!(err(ok().concurrency(0)), "concurrency must be at least 1");
        let long = ok().poll_wait(Duration::from_secs(21));
        assert_eq!(err(long), "poll_wait: at most 20 s");
        let zero = ok().status_interval(Duration::ZERO);
        assert_eq!(err(zero), "status_interval: must be positive");
    }

    #[test]
    fn kinds_without_a_handler_of_their_own_get_the_default() {
        let worker = builder()
            .handler("email.send", noop)
            .default_handler(ExecHandler::new("cat"))
            .build()
            .unwrap();
        assert!(worker.shared().handler_for("email.send").is_some());
        assert!(worker.shared().handler_for("anything.else").is_some());
        let worker = builder().handler("email.send", noop).build().unwrap();
        assert!(worker.shared().handler_for("anything.else").is_none());
    }

    #[test]
    fn the_health_port_is_bound_at_build() {
        let worker = builder()
            .handler("k", noop)
            .health_addr("127.0.0.1:0".parse().unwrap())
            .build()
            .unwrap();
        let addr = worker.health_addr().unwrap();
        assert_ne!(addr.port(), 0);
        let taken = builder().handler("k", noop).health_addr(addr).build();
        assert!(matches!(taken, Err(BuildError::HealthBind { .. })));
    }
}
