//! Retry policies and the single decision of what a failed attempt leads to.
//!
//! Workers only report success, failure, or non-retryable failure; whether a job is
//! retried, when, or moved to `dead` is decided here and nowhere else.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, Timestamp};

/// How a queue (or a single job) retries failed attempts.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "snake_case", deny_unknown_fields)]
pub enum RetryPolicy {
    /// One attempt; a failure is final.
    None,
    /// Up to `max_attempts` attempts, `delay` apart.
    Limited {
        /// Attempts in all, the first included.
        max_attempts: u32,
        /// The wait before each retry.
        #[cfg_attr(feature = "utoipa", schema(value_type = String, example = "30s"))]
        #[serde(with = "humantime_serde")]
        delay: Duration,
    },
    /// Up to `max_attempts` attempts; the n-th retry waits `initial × factorⁿ⁻¹`, capped at
    /// `max_interval`, and with full jitter a uniformly random part of that.
    Exponential {
        /// Attempts in all, the first included.
        max_attempts: u32,
        /// The wait before the first retry.
        #[cfg_attr(feature = "utoipa", schema(value_type = String, example = "30s"))]
        #[serde(with = "humantime_serde")]
        initial: Duration,
        /// The growth of the wait from one retry to the next (≥ 1).
        factor: f64,
        /// The longest wait.
        #[cfg_attr(feature = "utoipa", schema(value_type = String, example = "30s"))]
        #[serde(with = "humantime_serde")]
        max_interval: Duration,
        /// Full jitter: wait a uniformly random time between zero and the computed wait.
        #[serde(default = "default_jitter")]
        jitter: bool,
    },
    /// Retries over hours to days, for flaky external systems: exponential from one minute,
    /// doubling, capped at one day, with full jitter.
    ExponentialLong {
        /// Attempts in all, the first included.
        max_attempts: u32,
    },
}

fn default_jitter() -> bool {
    true
}

impl Default for RetryPolicy {
    /// Exponential: 20 attempts, 1 s doubling to at most 1 h, with full jitter.
    fn default() -> Self {
        Self::Exponential {
            max_attempts: 20,
            initial: Duration::from_secs(1),
            factor: 2.0,
            max_interval: Duration::from_secs(3600),
            jitter: true,
        }
    }
}

/// The limit on attempts any policy may ask for.
pub const MAX_ATTEMPTS_LIMIT: u32 = 1000;

impl RetryPolicy {
    /// Attempts allowed in all, the first included.
    pub fn max_attempts(&self) -> u32 {
        match self {
            Self::None => 1,
            Self::Limited { max_attempts, .. }
            | Self::Exponential { max_attempts, .. }
            | Self::ExponentialLong { max_attempts } => *max_attempts,
        }
    }

    /// Checks the policy's numbers.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |reason: String| {
            Err(Error::InvalidConfig {
                field: "retry",
                reason,
            })
        };
        let attempts = self.max_attempts();
        if !(1..=MAX_ATTEMPTS_LIMIT).contains(&attempts) {
            return invalid(format!(
                "max_attempts must be 1..={MAX_ATTEMPTS_LIMIT}, got {attempts}"
            ));
        }
        if let Self::Exponential {
            initial,
            factor,
            max_interval,
            ..
        } = self
        {
            if !factor.is_finite() || *factor < 1.0 {
                return invalid(format!("factor must be a finite number ≥ 1, got {factor}"));
            }
            if initial > max_interval {
                return invalid("initial cannot be longer than max_interval".into());
            }
        }
        Ok(())
    }

    /// The wait before retrying after the `failed`-th failed attempt (1 for the first).
    /// `jitter_sample` is a uniform random number in `[0, 1)`, passed in to keep this pure.
    pub fn delay(&self, failed: u32, jitter_sample: f64) -> Duration {
        match self {
            Self::None => Duration::ZERO,
            Self::Limited { delay, .. } => *delay,
            Self::Exponential {
                initial,
                factor,
                max_interval,
                jitter,
                ..
            } => backoff(
                *initial,
                *factor,
                *max_interval,
                failed,
                jitter.then_some(jitter_sample),
            ),
            Self::ExponentialLong { .. } => backoff(
                Duration::from_secs(60),
                2.0,
                Duration::from_secs(24 * 3600),
                failed,
                Some(jitter_sample),
            ),
        }
    }
}

fn backoff(
    initial: Duration,
    factor: f64,
    max: Duration,
    failed: u32,
    jitter: Option<f64>,
) -> Duration {
    let exponent = i32::try_from(failed.saturating_sub(1)).unwrap_or(i32::MAX);
    let secs = (initial.as_secs_f64() * factor.powi(exponent)).min(max.as_secs_f64());
    let secs = match jitter {
        Some(sample) => secs * sample.clamp(0.0, 1.0),
        None => secs,
    };
    Duration::from_secs_f64(secs)
}

/// What a failed attempt leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureOutcome {
    /// Run again at `run_at`.
    Retry {
        /// When the next attempt may start.
        run_at: Timestamp,
    },
    /// No more attempts: the job is dead.
    Dead,
    /// Cancellation had been requested: the job is cancelled, not retried.
    Cancelled,
}

impl FailureOutcome {
    /// The state a running job moves to at `now` (a retry whose time has come is available
    /// at once), by moves [`crate::transition`] allows.
    pub fn next_state(self, now: Timestamp) -> Result<crate::JobState, Error> {
        use crate::{Event, JobState, transition};
        let (event, run_at) = match self {
            Self::Retry { run_at } => (Event::Retry, Some(run_at)),
            Self::Dead => (Event::Discard, None),
            Self::Cancelled => (Event::AcknowledgeCancel, None),
        };
        let to = transition(JobState::Running, event)?;
        if run_at.is_some_and(|t| t <= now) {
            return transition(to, Event::Promote);
        }
        Ok(to)
    }

    /// When the next attempt may start, for a retry.
    pub fn run_at(self) -> Option<Timestamp> {
        match self {
            Self::Retry { run_at } => Some(run_at),
            Self::Dead | Self::Cancelled => None,
        }
    }
}

/// Decides the fate of a job whose `attempt`-th attempt (1-based) just failed.
pub fn on_failure(
    attempt: u32,
    max_attempts: u32,
    policy: &RetryPolicy,
    retryable: bool,
    cancel_requested: bool,
    now: Timestamp,
    jitter_sample: f64,
) -> FailureOutcome {
    if cancel_requested {
        return FailureOutcome::Cancelled;
    }
    if !retryable || *policy == RetryPolicy::None || attempt >= max_attempts {
        return FailureOutcome::Dead;
    }
    let delay = policy.delay(attempt, jitter_sample);
    let delay = chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
    FailureOutcome::Retry {
        run_at: crate::truncate_micros(now.checked_add_signed(delay).unwrap_or(now)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Clock;
    use crate::ManualClock;

    #[test]
    fn outcomes_move_a_running_job() {
        use crate::JobState;
        let now = ManualClock::at_epoch().now();
        let later = now + chrono::Duration::seconds(5);
        let next = |o: FailureOutcome| o.next_state(now).unwrap();
        assert_eq!(
            next(FailureOutcome::Retry { run_at: now }),
            JobState::Available
        );
        assert_eq!(
            next(FailureOutcome::Retry { run_at: later }),
            JobState::Scheduled
        );
        assert_eq!(next(FailureOutcome::Dead), JobState::Dead);
        assert_eq!(next(FailureOutcome::Cancelled), JobState::Cancelled);
        assert_eq!(
            FailureOutcome::Retry { run_at: later }.run_at(),
            Some(later)
        );
        assert_eq!(FailureOutcome::Dead.run_at(), None);
    }

    fn exp(jitter: bool) -> RetryPolicy {
        RetryPolicy::Exponential {
            max_attempts: 5,
            initial: Duration::from_secs(2),
            factor: 3.0,
            max_interval: Duration::from_secs(60),
            jitter,
        }
    }

    #[test]
    fn exponential_grows_by_factor_and_caps() {
        let p = exp(false);
        let secs: Vec<u64> = (1..=5).map(|n| p.delay(n, 0.5).as_secs()).collect();
        assert_eq!(secs, vec![2, 6, 18, 54, 60]);
    }

    #[test]
    fn full_jitter_scales_the_wait_between_zero_and_the_computed_one() {
        let p = exp(true);
        assert_eq!(p.delay(3, 0.0), Duration::ZERO);
        assert_eq!(p.delay(3, 0.5), Duration::from_secs(9));
        assert!(p.delay(3, 0.999_999) <= Duration::from_secs(18));
    }

    #[test]
    fn exponential_long_reaches_days() {
        let p = RetryPolicy::ExponentialLong { max_attempts: 20 };
        assert_eq!(p.delay(1, 1.0), Duration::from_secs(60));
        assert_eq!(p.delay(15, 1.0), Duration::from_secs(24 * 3600));
    }

    #[test]
    fn failure_retries_until_attempts_run_out() {
        let now = ManualClock::at_epoch().now();
        let p = RetryPolicy::Limited {
            max_attempts: 3,
            delay: Duration::from_secs(10),
        };
        let retry = on_failure(1, 3, &p, true, false, now, 0.5);
        assert_eq!(
            retry,
            FailureOutcome::Retry {
                run_at: now + chrono::Duration::seconds(10)
            }
        );
        assert_eq!(
            on_failure(3, 3, &p, true, false, now, 0.5),
            FailureOutcome::Dead
        );
    }

    #[test]
    fn non_retryable_none_policy_and_cancel_end_at_once() {
        let now = ManualClock::at_epoch().now();
        let p = RetryPolicy::default();
        assert_eq!(
            on_failure(1, 20, &p, false, false, now, 0.5),
            FailureOutcome::Dead
        );
        assert_eq!(
            on_failure(1, 20, &RetryPolicy::None, true, false, now, 0.5),
            FailureOutcome::Dead
        );
        assert_eq!(
            on_failure(1, 20, &p, true, true, now, 0.5),
            FailureOutcome::Cancelled
        );
    }

    #[test]
    fn validation_refuses_nonsense() {
        assert!(
            RetryPolicy::Limited {
                max_attempts: 0,
                delay: Duration::ZERO
            }
            .validate()
            .is_err()
        );
        let shrinking = RetryPolicy::Exponential {
            max_attempts: 3,
            initial: Duration::from_secs(1),
            factor: 0.5,
            max_interval: Duration::from_secs(10),
            jitter: false,
        };
        assert!(shrinking.validate().is_err());
        assert!(RetryPolicy::default().validate().is_ok());
    }

    #[test]
    fn policies_read_from_json_with_human_durations() {
        let p: RetryPolicy = serde_json::from_str(
            r#"{"policy":"exponential","max_attempts":5,"initial":"2s","factor":3,"max_interval":"1m"}"#,
        )
        .unwrap();
        assert_eq!(p, exp(true));
        let bad = serde_json::from_str::<RetryPolicy>(r#"{"policy":"sometimes"}"#);
        assert!(bad.is_err());
    }
}
