//! [`ScalingPolicy`]: the per-pool autoscaling knobs, with seed 004's numbers as defaults.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// When a pool scales out and in. Every number is configurable; the defaults are seed 004's
/// auto-scaling group: out by one when depth > 10 for 3 minutes (cooldown 300 s), in by one
/// when depth < 3 for 5 minutes (cooldown 600 s), between 1 and 3 replicas.
///
/// In TOML, durations are humantime strings (`scale_out_for = "3m"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScalingPolicy {
    /// Fewest replicas; at least 1 (a pool of zero could never drain a queue below the
    /// scale-out threshold).
    pub min_replicas: u32,
    /// Most replicas.
    pub max_replicas: u32,
    /// Scale out when the depth is strictly greater than this.
    pub scale_out_depth: u64,
    /// How long the scale-out condition must hold without interruption.
    #[serde(with = "humantime_serde")]
    pub scale_out_for: Duration,
    /// After any change of replicas, no scale-out until this has passed.
    #[serde(with = "humantime_serde")]
    pub scale_out_cooldown: Duration,
    /// Scale in when the depth is strictly less than this.
    pub scale_in_depth: u64,
    /// How long the scale-in condition must hold without interruption.
    #[serde(with = "humantime_serde")]
    pub scale_in_for: Duration,
    /// After any change of replicas, no scale-in until this has passed.
    #[serde(with = "humantime_serde")]
    pub scale_in_cooldown: Duration,
    /// If set, an oldest waiting job older than this also counts as the scale-out condition.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
}

impl Default for ScalingPolicy {
    fn default() -> Self {
        Self {
            min_replicas: 1,
            max_replicas: 3,
            scale_out_depth: 10,
            scale_out_for: Duration::from_secs(180),
            scale_out_cooldown: Duration::from_secs(300),
            scale_in_depth: 3,
            scale_in_for: Duration::from_secs(300),
            scale_in_cooldown: Duration::from_secs(600),
            max_age: None,
        }
    }
}

impl ScalingPolicy {
    /// Checks that the numbers make a policy that can act: `1 <= min <= max`, non-zero
    /// windows, and a scale-in threshold that cannot overlap the scale-out one.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.min_replicas == 0 {
            return Err(PolicyError::ZeroMinReplicas);
        }
        if self.min_replicas > self.max_replicas {
            return Err(PolicyError::MinAboveMax {
                min: self.min_replicas,
                max: self.max_replicas,
            });
        }
        if self.scale_out_for.is_zero() {
            return Err(PolicyError::ZeroWindow {
                field: "scale_out_for",
            });
        }
        if self.scale_in_for.is_zero() {
            return Err(PolicyError::ZeroWindow {
                field: "scale_in_for",
            });
        }
        if self.scale_in_depth > self.scale_out_depth {
            return Err(PolicyError::OverlappingThresholds {
                scale_in_depth: self.scale_in_depth,
                scale_out_depth: self.scale_out_depth,
            });
        }
        if self.max_age.is_some_and(|age| age.is_zero()) {
            return Err(PolicyError::ZeroWindow { field: "max_age" });
        }
        Ok(())
    }

    /// The longer of the two windows: how much history the policy needs.
    pub fn longest_window(&self) -> Duration {
        self.scale_out_for.max(self.scale_in_for)
    }
}

/// A policy whose numbers cannot work together. Never retryable: the configuration must change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// `min_replicas` is 0.
    #[error("min_replicas must be at least 1")]
    ZeroMinReplicas,
    /// `min_replicas` is greater than `max_replicas`.
    #[error("min_replicas {min} is greater than max_replicas {max}")]
    MinAboveMax {
        /// The configured minimum.
        min: u32,
        /// The configured maximum.
        max: u32,
    },
    /// A window or age limit is zero.
    #[error("{field} must be longer than zero")]
    ZeroWindow {
        /// The offending field.
        field: &'static str,
    },
    /// Scale-in threshold above the scale-out threshold: a depth could trigger both.
    #[error(
        "scale_in_depth {scale_in_depth} is greater than scale_out_depth {scale_out_depth}; a depth would trigger both"
    )]
    OverlappingThresholds {
        /// The configured scale-in threshold.
        scale_in_depth: u64,
        /// The configured scale-out threshold.
        scale_out_depth: u64,
    },
}

impl PolicyError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::ZeroMinReplicas => "policy_zero_min_replicas",
            Self::MinAboveMax { .. } => "policy_min_above_max",
            Self::ZeroWindow { .. } => "policy_zero_window",
            Self::OverlappingThresholds { .. } => "policy_overlapping_thresholds",
        }
    }

    /// Always false: retrying cannot fix a configuration.
    pub fn is_retryable(&self) -> bool {
        false
    }
}
