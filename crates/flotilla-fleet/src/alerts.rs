//! [`AlertEngine`]: the fleet's alert rules (seed 003's conditions, seed 004's saturation) as
//! a state machine over observed [`PoolSnapshot`]s, with hysteresis.
//!
//! The engine is pure: the caller passes the time (a [`Duration`] since an arbitrary epoch)
//! and what it knows of each pool, and gets back the alerts that fired or resolved at that
//! instant. Delivery (logs, webhooks, the server) belongs to the supervisor, so the rules can be
//! tested to the second with simulated time.
//!
//! Each rule judges every observation as *trigger*, *hold* or *clear*:
//! - a trigger fires the alert (or keeps it firing, with the newest value and message);
//! - a hold (a value between the fire and resolve thresholds) keeps a firing alert firing and
//!   restarts its clear period, so a value hovering around a threshold does not flap;
//! - a clear resolves a firing alert once every observation for `resolve_after` was clear
//!   (`dead_window` for dead jobs: "no new dead job for 10 minutes").
//!
//! The rules and the per-pool memory are in `rules`. History is kept per pool as samples at
//! least 1/64 of the window apart and pruned beyond the window, so memory stays bounded
//! whatever the observation rate.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use rules::PoolState;

mod rules;
#[cfg(test)]
mod tests;

/// `[alerts]` in `fleet.toml`: the thresholds of every rule and the webhooks alerts go to.
/// Every number is configurable; durations are humantime strings.
///
/// # Examples
///
/// ```
/// use flotilla_fleet::alerts::AlertPolicy;
///
/// let fleet_toml = r#"
/// [alerts]
/// crash_rate = 0.10                 # crashes in crash_window ÷ replicas above this: high
/// crash_window = "10m"
/// memory_fraction = 0.80            # a process at 80 % of its pool's ceiling: medium
/// memory_resolve_fraction = 0.70
/// max_oldest_age = "5m"             # oldest available job older than this: low
/// oldest_age_resolve = "4m"
/// dead_window = "10m"               # new dead jobs: medium, until none for this long
/// rising_window = "3m"              # at max replicas, depth above 3 minutes ago: high
/// resolve_after = "60s"
/// webhooks = ["https://hooks.example.com/flotilla"]
/// "#;
/// let table: toml::Table = toml::from_str(fleet_toml).unwrap();
/// let policy: AlertPolicy = table["alerts"].clone().try_into().unwrap();
/// assert_eq!(policy, AlertPolicy {
///     webhooks: vec!["https://hooks.example.com/flotilla".into()],
///     ..AlertPolicy::default()
/// });
/// policy.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertPolicy {
    /// Crashes inside `crash_window` divided by `max(1, replicas)` above this fires `crash_rate`.
    pub crash_rate: f64,
    /// The window crashes are counted in.
    #[serde(with = "humantime_serde")]
    pub crash_window: Duration,
    /// The largest process's memory at or above this fraction of the pool's ceiling fires `memory`.
    pub memory_fraction: f64,
    /// `memory` resolves only below this fraction.
    pub memory_resolve_fraction: f64,
    /// The oldest available job older than this fires `processing_delay`.
    #[serde(with = "humantime_serde")]
    pub max_oldest_age: Duration,
    /// `processing_delay` resolves only below this age.
    #[serde(with = "humantime_serde")]
    pub oldest_age_resolve: Duration,
    /// A rise of the dead total fires `dead_jobs`; it resolves after no rise for this long.
    #[serde(with = "humantime_serde")]
    pub dead_window: Duration,
    /// At max replicas, a depth higher than this long ago fires `saturated`.
    #[serde(with = "humantime_serde")]
    pub rising_window: Duration,
    /// A clear condition must stay clear this long before its alert resolves.
    #[serde(with = "humantime_serde")]
    pub resolve_after: Duration,
    /// `http`/`https` URLs every firing and resolved alert is posted to.
    pub webhooks: Vec<String>,
}

impl Default for AlertPolicy {
    fn default() -> Self {
        Self {
            crash_rate: 0.10,
            crash_window: Duration::from_secs(600),
            memory_fraction: 0.80,
            memory_resolve_fraction: 0.70,
            max_oldest_age: Duration::from_secs(300),
            oldest_age_resolve: Duration::from_secs(240),
            dead_window: Duration::from_secs(600),
            rising_window: Duration::from_secs(180),
            resolve_after: Duration::from_secs(60),
            webhooks: Vec::new(),
        }
    }
}

impl AlertPolicy {
    /// Checks that the thresholds can work: fractions in `(0, 1]`, resolve thresholds not above
    /// fire thresholds, non-zero windows, and `http(s)://host...` webhooks.
    pub fn validate(&self) -> Result<(), AlertPolicyError> {
        if !(self.crash_rate.is_finite() && self.crash_rate >= 0.0) {
            return Err(AlertPolicyError::Fraction {
                field: "crash_rate",
                value: self.crash_rate,
            });
        }
        for (field, value) in [
            ("memory_fraction", self.memory_fraction),
            ("memory_resolve_fraction", self.memory_resolve_fraction),
        ] {
            if !(value > 0.0 && value <= 1.0) {
                return Err(AlertPolicyError::Fraction { field, value });
            }
        }
        if self.memory_resolve_fraction > self.memory_fraction {
            return Err(AlertPolicyError::ResolveAboveFire {
                resolve: "memory_resolve_fraction",
                fire: "memory_fraction",
            });
        }
        if self.oldest_age_resolve > self.max_oldest_age {
            return Err(AlertPolicyError::ResolveAboveFire {
                resolve: "oldest_age_resolve",
                fire: "max_oldest_age",
            });
        }
        for (field, window) in [
            ("crash_window", self.crash_window),
            ("max_oldest_age", self.max_oldest_age),
            ("dead_window", self.dead_window),
            ("rising_window", self.rising_window),
        ] {
            if window.is_zero() {
                return Err(AlertPolicyError::ZeroWindow { field });
            }
        }
        self.webhooks.iter().try_for_each(|url| check_webhook(url))
    }
}

/// `http://host...` or `https://host...`; the supervisor parses them fully.
fn check_webhook(url: &str) -> Result<(), AlertPolicyError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') => Ok(()),
        _ => Err(AlertPolicyError::InvalidWebhook {
            url: url.to_owned(),
        }),
    }
}

/// An `[alerts]` section whose numbers cannot work. Never retryable: the configuration must change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AlertPolicyError {
    /// A fraction outside its range (`crash_rate` ≥ 0, memory fractions in `(0, 1]`).
    #[error("{field} {value} is out of range")]
    Fraction {
        /// The offending field.
        field: &'static str,
        /// Its value.
        value: f64,
    },
    /// A resolve threshold above its fire threshold: the alert could never resolve cleanly.
    #[error("{resolve} cannot be above {fire}")]
    ResolveAboveFire {
        /// The resolve threshold's field.
        resolve: &'static str,
        /// The fire threshold's field.
        fire: &'static str,
    },
    /// A window or age threshold is zero.
    #[error("{field} must be longer than zero")]
    ZeroWindow {
        /// The offending field.
        field: &'static str,
    },
    /// A webhook that is not an `http://` or `https://` URL with a host.
    #[error("webhook {url:?} is not an http:// or https:// URL")]
    InvalidWebhook {
        /// The configured URL.
        url: String,
    },
}

impl AlertPolicyError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Fraction { .. } => "alerts_fraction_out_of_range",
            Self::ResolveAboveFire { .. } => "alerts_resolve_above_fire",
            Self::ZeroWindow { .. } => "alerts_zero_window",
            Self::InvalidWebhook { .. } => "alerts_invalid_webhook",
        }
    }
}

/// What the supervisor knows of one pool at one instant.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PoolSnapshot {
    /// The pool's name, unique in one observation.
    pub pool: String,
    /// Replicas the pool runs (or is scaling to).
    pub replicas: u32,
    /// The most replicas the pool may run.
    pub max_replicas: u32,
    /// Crashes since time zero of the caller's clock; only its increase counts, and a pool's
    /// first observation counts all of it.
    pub crashes_total: u64,
    /// The supervisor has put the pool in crash-loop state.
    pub crash_loop: bool,
    /// The largest process's resident memory.
    pub memory_bytes: Option<u64>,
    /// The pool's memory ceiling per process.
    pub memory_limit: Option<u64>,
    /// Available jobs in the pool's queues.
    pub depth: u64,
    /// Age of the oldest available job, if any.
    pub oldest_available_age: Option<Duration>,
    /// Dead jobs in the pool's queues (may go down after a purge, which is not an alert).
    pub dead_total: u64,
}

/// The rules, in the order alerts are listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertRule {
    /// Too many crashes per replica in `crash_window`.
    CrashRate,
    /// The supervisor reports the pool crash-looping.
    CrashLoop,
    /// A process near its memory ceiling.
    Memory,
    /// The oldest available job is too old.
    ProcessingDelay,
    /// New dead jobs appeared.
    DeadJobs,
    /// At max replicas and the depth still rising.
    Saturated,
}

impl AlertRule {
    /// Every rule, in listing order.
    pub const ALL: [Self; 6] = [
        Self::CrashRate,
        Self::CrashLoop,
        Self::Memory,
        Self::ProcessingDelay,
        Self::DeadJobs,
        Self::Saturated,
    ];

    /// Seed 003's levels: crashes and saturation high, memory and dead jobs medium, delay low.
    pub fn severity(self) -> Severity {
        match self {
            Self::CrashRate | Self::CrashLoop | Self::Saturated => Severity::High,
            Self::Memory | Self::DeadJobs => Severity::Medium,
            Self::ProcessingDelay => Severity::Low,
        }
    }
}

impl AlertRule {
    /// The rule's name as in JSON and logs (`crash_loop`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CrashRate => "crash_rate",
            Self::CrashLoop => "crash_loop",
            Self::Memory => "memory",
            Self::ProcessingDelay => "processing_delay",
            Self::DeadJobs => "dead_jobs",
            Self::Saturated => "saturated",
        }
    }
}

impl std::fmt::Display for AlertRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Act now.
    High,
    /// Act soon.
    Medium,
    /// Worth a look.
    Low,
}

impl Severity {
    /// The level's name as in JSON and logs (`high`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::High => "high",
            Self::Medium => "medium",
            Self::Low => "low",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One alert of one pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Which rule.
    pub rule: AlertRule,
    /// Which pool.
    pub pool: String,
    /// The rule's severity.
    pub severity: Severity,
    /// A sentence with the numbers, e.g. "pool transcode: 3 crashes in the last 10m0s (100% of 3 replicas)".
    pub message: String,
    /// The measured value: crash fraction, memory fraction, age in seconds, dead total, depth,
    /// or crashes total for a crash loop.
    pub value: f64,
    /// When it fired, on the caller's clock.
    pub since: Duration,
}

/// Whether an event starts or ends an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    /// The alert started.
    Firing,
    /// The alert ended; the alert is as it last fired.
    Resolved,
}

/// An alert that fired or resolved at `at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// Fired or resolved.
    pub status: AlertStatus,
    /// The alert (for a resolution, with its last value and message).
    pub alert: Alert,
    /// When, on the caller's clock.
    pub at: Duration,
}

/// The rules plus what they remember of each pool.
#[derive(Debug, Clone)]
pub struct AlertEngine {
    policy: AlertPolicy,
    last_now: Option<Duration>,
    pools: BTreeMap<String, PoolState>,
}

impl AlertEngine {
    /// An engine with no history.
    pub fn new(policy: AlertPolicy) -> Self {
        Self {
            policy,
            last_now: None,
            pools: BTreeMap::new(),
        }
    }

    /// The thresholds this engine applies.
    pub fn policy(&self) -> &AlertPolicy {
        &self.policy
    }

    /// Feeds one observation of every pool; returns what fired or resolved now, ordered by
    /// pool then rule. A pool missing from `pools` has its alerts resolved and its history
    /// dropped; an observation older than the previous one is ignored.
    pub fn observe(&mut self, now: Duration, pools: &[PoolSnapshot]) -> Vec<AlertEvent> {
        if self.last_now.is_some_and(|last| now < last) {
            return Vec::new();
        }
        self.last_now = Some(now);
        let seen: BTreeSet<&str> = pools.iter().map(|p| p.pool.as_str()).collect();
        let gone: Vec<String> = self
            .pools
            .keys()
            .filter(|p| !seen.contains(p.as_str()))
            .cloned()
            .collect();
        let mut events: Vec<AlertEvent> = gone
            .iter()
            .filter_map(|name| self.pools.remove(name))
            .flat_map(|state| state.resolve_all(now))
            .collect();
        for snap in pools {
            let state = self
                .pools
                .entry(snap.pool.clone())
                .or_insert_with(PoolState::new);
            events.extend(state.observe(&self.policy, now, snap));
        }
        events.sort_by(|a, b| (&a.alert.pool, a.alert.rule).cmp(&(&b.alert.pool, b.alert.rule)));
        events
    }

    /// Alerts firing now, ordered by pool then rule.
    pub fn firing(&self) -> Vec<Alert> {
        self.pools
            .values()
            .flat_map(|state| state.rules.values().filter_map(|r| r.firing.clone()))
            .collect()
    }
}
