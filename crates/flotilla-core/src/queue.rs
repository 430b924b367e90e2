//! Queue configuration: each queue carries its own lease, timeout, retry policy,
//! retention and limits, so pools with different resource profiles never share knobs.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, RetryPolicy, validate_queue_name};

/// How long finished jobs are kept, per terminal state.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    /// Succeeded jobs; 4 days by default.
    #[cfg_attr(feature = "utoipa", schema(value_type = String, example = "30s"))]
    #[serde(with = "humantime_serde")]
    pub succeeded: Duration,
    /// Cancelled jobs; 4 days by default.
    #[cfg_attr(feature = "utoipa", schema(value_type = String, example = "30s"))]
    #[serde(with = "humantime_serde")]
    pub cancelled: Duration,
    /// Dead jobs; 30 days by default, so there is time to look and replay.
    #[cfg_attr(feature = "utoipa", schema(value_type = String, example = "30s"))]
    #[serde(with = "humantime_serde")]
    pub dead: Duration,
}

impl Retention {
    /// Four days for succeeded and cancelled jobs.
    pub const DEFAULT_FINISHED: Duration = Duration::from_secs(4 * 24 * 3600);
    /// Thirty days for dead jobs.
    pub const DEFAULT_DEAD: Duration = Duration::from_secs(30 * 24 * 3600);
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            succeeded: Self::DEFAULT_FINISHED,
            cancelled: Self::DEFAULT_FINISHED,
            dead: Self::DEFAULT_DEAD,
        }
    }
}

/// A queue's settings.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// The queue's name (`[A-Za-z0-9_.:-]`, 1 to 128 characters).
    pub name: String,
    /// A paused queue keeps accepting jobs but hands none out.
    #[serde(default)]
    pub paused: bool,
    /// How long a claim holds a job without a heartbeat.
    #[cfg_attr(feature = "utoipa", schema(value_type = String, example = "30s"))]
    #[serde(with = "humantime_serde", default = "QueueConfig::default_lease")]
    pub lease: Duration,
    /// Longest run time of one attempt, enforced by the worker; none when absent.
    #[cfg_attr(feature = "utoipa", schema(value_type = Option<String>, example = "1h"))]
    #[serde(with = "humantime_serde", default)]
    pub timeout: Option<Duration>,
    /// How failed attempts are retried.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// How long finished jobs are kept.
    #[serde(default)]
    pub retention: Retention,
    /// At most this many running jobs in the queue, across all workers.
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// At most this many running jobs per group key, across all workers.
    #[serde(default)]
    pub group_concurrency: Option<u32>,
    /// Claim round-robin across group keys, so no group starves another.
    #[serde(default)]
    pub fair: bool,
    /// At most this many jobs started per second (a token bucket of that size).
    #[serde(default)]
    pub rate_limit: Option<u32>,
}

impl QueueConfig {
    /// The default lease: 30 seconds.
    pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

    fn default_lease() -> Duration {
        Self::DEFAULT_LEASE
    }

    /// A queue named `name` with every setting at its default.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            paused: false,
            lease: Self::DEFAULT_LEASE,
            timeout: None,
            retry: RetryPolicy::default(),
            retention: Retention::default(),
            concurrency: None,
            group_concurrency: None,
            fair: false,
            rate_limit: None,
        }
    }

    /// Whether the queue limits its claims (concurrency, per-group concurrency or rate):
    /// a job that ends there may let a waiting worker claim.
    pub fn has_limits(&self) -> bool {
        self.concurrency.is_some() || self.group_concurrency.is_some() || self.rate_limit.is_some()
    }

    /// Whether claims must go group by group (fairness or per-group limits).
    pub fn claims_by_group(&self) -> bool {
        self.fair || self.group_concurrency.is_some()
    }

    /// Checks the settings, naming the field at fault.
    pub fn validate(&self) -> Result<(), Error> {
        validate_queue_name(&self.name)?;
        self.retry.validate()?;
        let invalid = |field, reason: &str| {
            Err(Error::InvalidConfig {
                field,
                reason: reason.into(),
            })
        };
        if self.lease < Duration::from_millis(100) {
            return invalid("lease", "must be at least 100ms");
        }
        if self.timeout == Some(Duration::ZERO) {
            return invalid("timeout", "must be positive");
        }
        for (field, value) in [
            ("concurrency", self.concurrency),
            ("group_concurrency", self.group_concurrency),
            ("rate_limit", self.rate_limit),
        ] {
            if value == Some(0) {
                return invalid(field, "must be at least 1 (leave it out for no limit)");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_sane_and_valid() {
        let q = QueueConfig::new("default");
        assert!(q.validate().is_ok());
        assert_eq!(q.retention.succeeded, Duration::from_secs(345_600));
        assert!(q.retention.dead > q.retention.succeeded);
    }

    #[test]
    fn invalid_settings_name_the_field() {
        let q = QueueConfig {
            concurrency: Some(0),
            ..QueueConfig::new("q")
        };
        assert_eq!(
            q.validate().unwrap_err().to_string(),
            "invalid concurrency: must be at least 1 (leave it out for no limit)"
        );
        assert!(QueueConfig::new("").validate().is_err());
    }

    #[test]
    fn reads_from_json_with_human_durations() {
        let q: QueueConfig = serde_json::from_str(
            r#"{"name":"q-transcode","lease":"2m","timeout":"1h","concurrency":4,"retention":{"dead":"90d"}}"#,
        )
        .unwrap();
        assert_eq!(q.lease, Duration::from_secs(120));
        assert_eq!(q.timeout, Some(Duration::from_secs(3600)));
        assert_eq!(q.retention.succeeded, Retention::DEFAULT_FINISHED);
        assert_eq!(q.retention.dead, Duration::from_secs(90 * 86400));
    }
}

/// The order in which groups with `free` slots each are served for `n` jobs: one job per
/// group per round, skipping groups that are out of slots (fair claims, every store).
pub fn round_robin(free: &[i64], n: usize) -> Vec<usize> {
    let mut left = free.to_vec();
    let total: usize = free.iter().map(|&f| usize::try_from(f).unwrap_or(0)).sum();
    let mut order = Vec::with_capacity(n.min(total));
    while order.len() < n {
        let before = order.len();
        for (g, slots) in left.iter_mut().enumerate() {
            if order.len() < n && *slots > 0 {
                *slots -= 1;
                order.push(g);
            }
        }
        if order.len() == before {
            break;
        }
    }
    order
}

#[cfg(test)]
mod round_robin_tests {
    use super::round_robin;

    #[test]
    fn one_per_group_per_round() {
        assert_eq!(round_robin(&[5, 5], 5), vec![0, 1, 0, 1, 0]);
        assert_eq!(round_robin(&[1, 3], 4), vec![0, 1, 1, 1]);
        assert_eq!(round_robin(&[0, 0], 4), Vec::<usize>::new());
        assert_eq!(round_robin(&[-1, 2], 9), vec![1, 1]);
    }
}
