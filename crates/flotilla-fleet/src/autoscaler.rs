//! [`Autoscaler`]: the seed-004 rules as a state machine over observed [`Signal`]s.
//!
//! Each call to [`Autoscaler::observe`] is evaluated in this order:
//! 1. A signal older than the previous one is ignored (Hold).
//! 2. A replica count outside `[min, max]` moves back to the nearest bound at once.
//! 3. Scale out if the out-condition is sustained, unless at max or in cooldown.
//! 4. Scale in if the in-condition is sustained, unless at min or in cooldown.
//! 5. Otherwise hold.
//!
//! Rather than a list of past signals, the autoscaler keeps, per condition, the time of the
//! first signal of the current unbroken run that satisfied it: that is exactly the information
//! "every signal in the last window satisfied it" needs, in constant memory.

use std::time::Duration;

use crate::fmt;
use crate::policy::ScalingPolicy;

/// One observation of a pool's queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal {
    /// When it was observed, since an arbitrary epoch shared by all signals of one autoscaler.
    pub at: Duration,
    /// Jobs waiting to run.
    pub depth: u64,
    /// Age of the oldest waiting job, if any.
    pub oldest_age: Option<Duration>,
}

/// What the pool should do now, with a sentence naming the numbers behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Keep the current number of replicas.
    Hold {
        /// Why, e.g. "depth 14 > 10 for 3m0s but already at max 3 replicas".
        reason: String,
    },
    /// Grow to `to` replicas.
    ScaleOut {
        /// The new number of replicas.
        to: u32,
        /// Why, e.g. "depth 14 > 10 for 3m0s; 1 → 2 replicas".
        reason: String,
    },
    /// Shrink to `to` replicas (draining the removed ones).
    ScaleIn {
        /// The new number of replicas.
        to: u32,
        /// Why, e.g. "depth 0 < 3 for 5m0s; 2 → 1 replica".
        reason: String,
    },
}

impl Decision {
    /// The reason sentence of any decision.
    pub fn reason(&self) -> &str {
        match self {
            Self::Hold { reason }
            | Self::ScaleOut { reason, .. }
            | Self::ScaleIn { reason, .. } => reason,
        }
    }

    /// The new replica count, or `None` for a hold.
    pub fn target(&self) -> Option<u32> {
        match self {
            Self::Hold { .. } => None,
            Self::ScaleOut { to, .. } | Self::ScaleIn { to, .. } => Some(*to),
        }
    }
}

/// A policy plus the memory it needs: when each condition's current run started, when the last
/// signal arrived and when replicas last changed.
#[derive(Debug, Clone)]
pub struct Autoscaler {
    policy: ScalingPolicy,
    last_at: Option<Duration>,
    out_since: Option<Duration>,
    in_since: Option<Duration>,
    last_scaling: Option<Duration>,
}

impl Autoscaler {
    /// An autoscaler with no history: both windows start with the first signal.
    pub fn new(policy: ScalingPolicy) -> Self {
        Self {
            policy,
            last_at: None,
            out_since: None,
            in_since: None,
            last_scaling: None,
        }
    }

    /// The policy this autoscaler applies.
    pub fn policy(&self) -> &ScalingPolicy {
        &self.policy
    }

    /// Records `signal` and decides for a pool currently running `replicas`.
    ///
    /// The caller is expected to apply a scaling decision; the cooldown starts at `signal.at`.
    pub fn observe(&mut self, signal: Signal, replicas: u32) -> Decision {
        if let Some(last) = self.last_at.filter(|last| signal.at < *last) {
            return Decision::Hold {
                reason: format!(
                    "signal at {} is older than the previous one at {}; ignored",
                    fmt::duration(signal.at),
                    fmt::duration(last)
                ),
            };
        }
        self.record(&signal);
        if let Some(decision) = self.back_to_bounds(signal.at, replicas) {
            return decision;
        }
        if let Some(decision) = self.try_scale_out(&signal, replicas) {
            return decision;
        }
        if let Some(decision) = self.try_scale_in(&signal, replicas) {
            return decision;
        }
        Decision::Hold {
            reason: self.steady_reason(&signal, replicas),
        }
    }

    fn out_condition(&self, signal: &Signal) -> bool {
        let too_old = self
            .policy
            .max_age
            .zip(signal.oldest_age)
            .is_some_and(|(max, age)| age > max);
        signal.depth > self.policy.scale_out_depth || too_old
    }

    fn in_condition(&self, signal: &Signal) -> bool {
        signal.depth < self.policy.scale_in_depth
    }

    /// Extends or restarts each condition's run with this signal.
    fn record(&mut self, signal: &Signal) {
        let gap = self.last_at.map(|last| signal.at - last);
        let gap_exceeds = |window: Duration| gap.is_some_and(|gap| gap > window);
        if !self.out_condition(signal) || gap_exceeds(self.policy.scale_out_for) {
            self.out_since = None;
        }
        if !self.in_condition(signal) || gap_exceeds(self.policy.scale_in_for) {
            self.in_since = None;
        }
        if self.out_condition(signal) {
            self.out_since.get_or_insert(signal.at);
        }
        if self.in_condition(signal) {
            self.in_since.get_or_insert(signal.at);
        }
        self.last_at = Some(signal.at);
    }

    fn back_to_bounds(&mut self, at: Duration, replicas: u32) -> Option<Decision> {
        let (min, max) = (self.policy.min_replicas, self.policy.max_replicas);
        if replicas < min {
            self.last_scaling = Some(at);
            return Some(Decision::ScaleOut {
                to: min,
                reason: format!(
                    "{} below min {min}; {replicas} → {}",
                    fmt::replicas(replicas),
                    fmt::replicas(min)
                ),
            });
        }
        if replicas > max {
            self.last_scaling = Some(at);
            return Some(Decision::ScaleIn {
                to: max,
                reason: format!(
                    "{} above max {max}; {replicas} → {}",
                    fmt::replicas(replicas),
                    fmt::replicas(max)
                ),
            });
        }
        None
    }

    /// "depth 14 > 10" or "oldest job 5m0s > max age 2m0s".
    fn out_cause(&self, signal: &Signal) -> String {
        if signal.depth > self.policy.scale_out_depth {
            return format!("depth {} > {}", signal.depth, self.policy.scale_out_depth);
        }
        let age = signal.oldest_age.unwrap_or_default();
        let max = self.policy.max_age.unwrap_or_default();
        format!(
            "oldest job {} > max age {}",
            fmt::duration(age),
            fmt::duration(max)
        )
    }

    fn try_scale_out(&mut self, signal: &Signal, replicas: u32) -> Option<Decision> {
        let held = signal.at - self.out_since?;
        if held < self.policy.scale_out_for {
            return None;
        }
        let cause = format!("{} for {}", self.out_cause(signal), fmt::duration(held));
        if replicas >= self.policy.max_replicas {
            let reason = format!("{cause} but already at max {}", fmt::replicas(replicas));
            return Some(Decision::Hold { reason });
        }
        if let Some(left) = self.cooldown_left(signal.at, self.policy.scale_out_cooldown) {
            return Some(Decision::Hold {
                reason: self.cooldown_reason(&cause, "scale-out", left),
            });
        }
        self.last_scaling = Some(signal.at);
        let to = replicas + 1;
        Some(Decision::ScaleOut {
            to,
            reason: format!("{cause}; {replicas} → {}", fmt::replicas(to)),
        })
    }

    fn try_scale_in(&mut self, signal: &Signal, replicas: u32) -> Option<Decision> {
        let held = signal.at - self.in_since?;
        if held < self.policy.scale_in_for {
            return None;
        }
        let cause = format!(
            "depth {} < {} for {}",
            signal.depth,
            self.policy.scale_in_depth,
            fmt::duration(held)
        );
        if replicas <= self.policy.min_replicas {
            let reason = format!("{cause} but already at min {}", fmt::replicas(replicas));
            return Some(Decision::Hold { reason });
        }
        if let Some(left) = self.cooldown_left(signal.at, self.policy.scale_in_cooldown) {
            return Some(Decision::Hold {
                reason: self.cooldown_reason(&cause, "scale-in", left),
            });
        }
        self.last_scaling = Some(signal.at);
        let to = replicas - 1;
        Some(Decision::ScaleIn {
            to,
            reason: format!("{cause}; {replicas} → {}", fmt::replicas(to)),
        })
    }

    /// Time left before `cooldown` (counted from the last change of replicas) ends, if any.
    fn cooldown_left(&self, now: Duration, cooldown: Duration) -> Option<Duration> {
        let since = now - self.last_scaling?;
        (since < cooldown).then(|| cooldown - since)
    }

    fn cooldown_reason(&self, cause: &str, direction: &str, left: Duration) -> String {
        let since = self.last_scaling.unwrap_or_default();
        format!(
            "{cause} but in {direction} cooldown since the last scaling at {}; {} left",
            fmt::duration(since),
            fmt::duration(left)
        )
    }

    fn steady_reason(&self, signal: &Signal, replicas: u32) -> String {
        let holding = fmt::replicas(replicas);
        if let Some(since) = self.out_since {
            return format!(
                "{} for {} of {}; holding {holding}",
                self.out_cause(signal),
                fmt::duration(signal.at - since),
                fmt::duration(self.policy.scale_out_for)
            );
        }
        if let Some(since) = self.in_since {
            return format!(
                "depth {} < {} for {} of {}; holding {holding}",
                signal.depth,
                self.policy.scale_in_depth,
                fmt::duration(signal.at - since),
                fmt::duration(self.policy.scale_in_for)
            );
        }
        format!(
            "depth {} within [{}, {}]; holding {holding}",
            signal.depth, self.policy.scale_in_depth, self.policy.scale_out_depth
        )
    }
}
