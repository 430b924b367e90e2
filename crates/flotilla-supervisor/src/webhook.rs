//! Alert delivery: every [`AlertEvent`] goes to the log at once and to each configured webhook
//! in the background, retried with exponential backoff and jitter.
//!
//! Each URL has its own queue and one task that delivers in order, so a receiver always sees an
//! alert's `firing` before its `resolved`, and a slow or dead receiver delays only itself. The
//! supervisor's loop never waits: [`WebhookNotifier::notify`] only enqueues (a full queue drops
//! the event with an error log), and [`WebhookNotifier::flush`] is for shutdown and tests.
//!
//! # Body
//!
//! `POST` with `Content-Type: application/json`:
//!
//! ```json
//! {
//!   "status": "firing",
//!   "alert": {
//!     "rule": "crash_loop", "pool": "transcode", "severity": "high",
//!     "message": "pool transcode: crash-looping (9 crashes since the supervisor started)",
//!     "value": 9.0, "since_unix_ms": 1764111600000
//!   },
//!   "at_unix_ms": 1764111600000,
//!   "source": "flotilla-fleet"
//! }
//! ```
//!
//! `status` is `firing` or `resolved` (a resolution carries the alert as it last fired);
//! `rule` is one of `crash_rate`, `crash_loop`, `memory`, `processing_delay`, `dead_jobs`,
//! `saturated`; `severity` is `high`, `medium` or `low`. `at_unix_ms` is the wall time the
//! supervisor handed the event over (it does so as soon as the engine reports it) and
//! `since_unix_ms` is when the alert started, on the same clock.
//!
//! # Retries
//!
//! A 2xx is delivered. A 429, a 5xx, a timeout or a connection error is retried up to
//! [`RetryPolicy::attempts`] in all; any other status (a 4xx says the request itself is wrong)
//! is not. Giving up is logged at error level and counted in [`DeliveryStats::failed`].

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flotilla_fleet::alerts::{AlertEvent, AlertRule, AlertStatus, Severity};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

/// Events waiting per URL before new ones are dropped.
const QUEUE_CAPACITY: usize = 1024;

/// The `source` of every body.
pub const SOURCE: &str = "flotilla-fleet";

/// How hard to try one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; at least 1.
    pub attempts: u32,
    /// The wait before the second attempt; it doubles for each later one.
    pub first_delay: Duration,
    /// The longest wait between attempts.
    pub max_delay: Duration,
    /// How long one request may take before it counts as failed (and is retried).
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            first_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt `attempt` (1-based): `first_delay · 2^(attempt-1)`, capped
    /// at `max_delay`, then a random point in its upper half so receivers are not hit in step.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        let base = self.first_delay.saturating_mul(factor).min(self.max_delay);
        let half = base / 2;
        let jitter = RandomState::new().hash_one(attempt) % (half.as_nanos() as u64 + 1);
        half + Duration::from_nanos(jitter)
    }
}

/// The JSON posted to a webhook; see the module documentation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookBody {
    /// Fired or resolved.
    pub status: AlertStatus,
    /// The alert.
    pub alert: WebhookAlert,
    /// When the supervisor handed the event over, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// Always [`SOURCE`].
    pub source: String,
}

/// An alert as webhooks see it: the engine's alert with wall-clock time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookAlert {
    /// Which rule.
    pub rule: AlertRule,
    /// Which pool.
    pub pool: String,
    /// How urgent.
    pub severity: Severity,
    /// A sentence with the numbers.
    pub message: String,
    /// The measured value (see `flotilla_fleet::alerts::Alert::value`).
    pub value: f64,
    /// When the alert started, in milliseconds since the Unix epoch.
    pub since_unix_ms: u64,
}

impl WebhookBody {
    /// The body for `event` handed over at wall time `now_unix_ms`.
    pub fn new(event: &AlertEvent, now_unix_ms: u64) -> Self {
        let alert = &event.alert;
        let age_ms = event.at.saturating_sub(alert.since).as_millis() as u64;
        Self {
            status: event.status,
            alert: WebhookAlert {
                rule: alert.rule,
                pool: alert.pool.clone(),
                severity: alert.severity,
                message: alert.message.clone(),
                value: alert.value,
                since_unix_ms: now_unix_ms.saturating_sub(age_ms),
            },
            at_unix_ms: now_unix_ms,
            source: SOURCE.to_owned(),
        }
    }
}

/// Deliveries so far, over all URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeliveryStats {
    /// Events a receiver accepted.
    pub delivered: u64,
    /// Events given up on (rejected, out of attempts, or dropped on a full queue).
    pub failed: u64,
    /// HTTP requests tried.
    pub attempts: u64,
}

/// A webhook configuration that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// A URL that does not parse or is not `http`/`https` with a host.
    #[error("webhook {url:?}: {reason}")]
    InvalidUrl {
        /// The configured URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `attempts` is 0.
    #[error("webhook retry attempts must be at least 1")]
    ZeroAttempts,
    /// Webhooks are configured but no Tokio runtime runs to deliver them.
    #[error("webhook delivery needs a Tokio runtime")]
    NoRuntime,
    /// The HTTP client could not be built.
    #[error("webhook HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Sends alert events to the log and to webhooks; see the module documentation.
#[derive(Debug)]
pub struct WebhookNotifier {
    queues: Vec<mpsc::Sender<Arc<WebhookBody>>>,
    shared: Arc<Shared>,
}

/// Counters shared with the delivery tasks.
#[derive(Debug)]
struct Shared {
    pending: watch::Sender<usize>,
    delivered: AtomicU64,
    failed: AtomicU64,
    attempts: AtomicU64,
}

impl Shared {
    fn finish(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
        self.pending.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl WebhookNotifier {
    /// Checks every URL and starts one delivery task per URL (so it must be called inside a
    /// Tokio runtime when `urls` is not empty).
    pub fn new(urls: Vec<String>, retry: RetryPolicy) -> Result<Self, WebhookError> {
        if retry.attempts == 0 {
            return Err(WebhookError::ZeroAttempts);
        }
        let urls = urls
            .iter()
            .map(|u| parse_url(u))
            .collect::<Result<Vec<_>, _>>()?;
        let shared = Arc::new(Shared {
            pending: watch::Sender::new(0),
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            attempts: AtomicU64::new(0),
        });
        let mut queues = Vec::with_capacity(urls.len());
        if !urls.is_empty() {
            let runtime =
                tokio::runtime::Handle::try_current().map_err(|_| WebhookError::NoRuntime)?;
            let client = reqwest::Client::builder()
                .timeout(retry.request_timeout)
                .user_agent(concat!("flotilla-fleet/", env!("CARGO_PKG_VERSION")))
                .build()?;
            for url in urls {
                let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
                let target = Target {
                    url,
                    client: client.clone(),
                    retry,
                    shared: shared.clone(),
                };
                runtime.spawn(target.run(rx));
                queues.push(tx);
            }
        }
        Ok(Self { queues, shared })
    }

    /// Logs `event` (firing at warn, resolved at info) and queues it for every URL; never
    /// blocks.
    pub fn notify(&self, event: &AlertEvent) {
        log_event(event);
        if self.queues.is_empty() {
            return;
        }
        let body = Arc::new(WebhookBody::new(event, unix_ms_now()));
        for queue in &self.queues {
            self.shared.pending.send_modify(|n| *n += 1);
            if queue.try_send(body.clone()).is_err() {
                error!(pool = %event.alert.pool, rule = %event.alert.rule, "webhook queue full; alert dropped");
                self.shared.finish(&self.shared.failed);
            }
        }
    }

    /// Waits until every delivery queued so far has been delivered or given up.
    pub async fn flush(&self) {
        let mut pending = self.shared.pending.subscribe();
        // The sender lives in `self.shared`, so this cannot fail while we wait.
        let _ = pending.wait_for(|n| *n == 0).await;
    }

    /// Deliveries so far.
    pub fn stats(&self) -> DeliveryStats {
        DeliveryStats {
            delivered: self.shared.delivered.load(Ordering::Relaxed),
            failed: self.shared.failed.load(Ordering::Relaxed),
            attempts: self.shared.attempts.load(Ordering::Relaxed),
        }
    }
}

fn parse_url(url: &str) -> Result<Url, WebhookError> {
    let invalid = |reason: String| WebhookError::InvalidUrl {
        url: url.to_owned(),
        reason,
    };
    let parsed = Url::parse(url).map_err(|e| invalid(e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "scheme {:?} is not http or https",
            parsed.scheme()
        )));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("no host".into()));
    }
    Ok(parsed)
}

fn log_event(event: &AlertEvent) {
    let a = &event.alert;
    match event.status {
        AlertStatus::Firing => {
            warn!(pool = %a.pool, rule = %a.rule, severity = %a.severity, value = a.value, "alert firing: {}", a.message);
        }
        AlertStatus::Resolved => {
            info!(pool = %a.pool, rule = %a.rule, severity = %a.severity, "alert resolved: {}", a.message);
        }
    }
}

fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What one HTTP attempt came to.
enum Outcome {
    Delivered,
    Rejected(StatusCode),
    Retry(String),
}

/// One URL's delivery task.
struct Target {
    url: Url,
    client: reqwest::Client,
    retry: RetryPolicy,
    shared: Arc<Shared>,
}

impl Target {
    /// Delivers queued bodies one after another until the notifier is dropped.
    async fn run(self, mut queue: mpsc::Receiver<Arc<WebhookBody>>) {
        while let Some(body) = queue.recv().await {
            let delivered = self.deliver(&body).await;
            let counter = if delivered {
                &self.shared.delivered
            } else {
                &self.shared.failed
            };
            self.shared.finish(counter);
        }
    }

    async fn deliver(&self, body: &WebhookBody) -> bool {
        let (url, rule, pool) = (self.url.as_str(), body.alert.rule, &body.alert.pool);
        for attempt in 1..=self.retry.attempts {
            self.shared.attempts.fetch_add(1, Ordering::Relaxed);
            match self.post(body).await {
                Outcome::Delivered => {
                    debug!(url, %rule, %pool, attempt, "alert delivered to webhook");
                    return true;
                }
                Outcome::Rejected(status) => {
                    error!(url, %rule, %pool, %status, "webhook rejected the alert; not retrying");
                    return false;
                }
                Outcome::Retry(reason) if attempt == self.retry.attempts => {
                    error!(url, %rule, %pool, attempt, %reason, "webhook delivery failed; giving up");
                }
                Outcome::Retry(reason) => {
                    let delay = self.retry.delay(attempt);
                    warn!(url, %rule, %pool, attempt, %reason, ?delay, "webhook delivery failed; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
        false
    }

    async fn post(&self, body: &WebhookBody) -> Outcome {
        match self.client.post(self.url.clone()).json(body).send().await {
            Ok(response) => classify(response.status()),
            Err(err) => Outcome::Retry(err.to_string()),
        }
    }
}

/// 2xx delivered; 429 and 5xx worth retrying; anything else will not get better.
fn classify(status: StatusCode) -> Outcome {
    if status.is_success() {
        Outcome::Delivered
    } else if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        Outcome::Retry(format!("HTTP {status}"))
    } else {
        Outcome::Rejected(status)
    }
}
