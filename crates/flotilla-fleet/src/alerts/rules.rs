//! The per-pool memory of the [`AlertEngine`](super::AlertEngine) and each rule's verdict.
//!
//! A rule only answers trigger, hold or clear for one observation; [`RuleState`] turns those
//! verdicts into firing and resolved events, so the hysteresis lives in one place.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use super::{Alert, AlertEvent, AlertPolicy, AlertRule, AlertStatus, PoolSnapshot};
use crate::fmt;

/// A rule's verdict on one observation.
enum Condition {
    Trigger { value: f64, message: String },
    Hold,
    Clear,
}

/// One rule of one pool: its firing alert and since when its condition has been clear.
#[derive(Debug, Clone, Default)]
pub(super) struct RuleState {
    pub(super) firing: Option<Alert>,
    clear_since: Option<Duration>,
}

impl RuleState {
    fn step(
        &mut self,
        rule: AlertRule,
        pool: &str,
        cond: Condition,
        now: Duration,
        resolve_after: Duration,
    ) -> Option<AlertEvent> {
        match cond {
            Condition::Trigger { value, message } => {
                self.clear_since = None;
                if let Some(alert) = &mut self.firing {
                    (alert.value, alert.message) = (value, message);
                    return None;
                }
                let alert = Alert {
                    rule,
                    pool: pool.to_owned(),
                    severity: rule.severity(),
                    message,
                    value,
                    since: now,
                };
                self.firing = Some(alert.clone());
                Some(AlertEvent {
                    status: AlertStatus::Firing,
                    alert,
                    at: now,
                })
            }
            Condition::Hold => {
                self.clear_since = None;
                None
            }
            Condition::Clear => {
                self.firing.as_ref()?;
                let since = *self.clear_since.get_or_insert(now);
                if now - since < resolve_after {
                    return None;
                }
                self.clear_since = None;
                let alert = self.firing.take()?;
                Some(AlertEvent {
                    status: AlertStatus::Resolved,
                    alert,
                    at: now,
                })
            }
        }
    }
}

/// Samples of a counter at least `window / 64` apart, keeping the newest one at or before
/// `now - window` as the baseline and nothing older.
#[derive(Debug, Clone, Default)]
struct Series {
    samples: VecDeque<(Duration, u64)>,
}

impl Series {
    /// The value as last sampled at or before `now - window`, if the history reaches that far.
    fn at_or_before(&self, now: Duration, window: Duration) -> Option<u64> {
        let cutoff = now.checked_sub(window)?;
        self.samples
            .iter()
            .rev()
            .find(|(at, _)| *at <= cutoff)
            .map(|(_, v)| *v)
    }

    fn record(&mut self, now: Duration, value: u64, window: Duration) {
        if self
            .samples
            .back()
            .is_none_or(|(at, _)| now.saturating_sub(*at) >= window / 64)
        {
            self.samples.push_back((now, value));
        }
        let cutoff = now.saturating_sub(window);
        while self.samples.get(1).is_some_and(|(at, _)| *at <= cutoff) {
            self.samples.pop_front();
        }
    }
}

/// What the engine remembers of one pool.
#[derive(Debug, Clone)]
pub(super) struct PoolState {
    pub(super) rules: BTreeMap<AlertRule, RuleState>,
    crashes: Series,
    depths: Series,
    last_dead: Option<u64>,
}

impl PoolState {
    /// Crashes count from time zero: the first baseline is zero crashes at zero.
    pub(super) fn new() -> Self {
        let crashes = Series {
            samples: VecDeque::from([(Duration::ZERO, 0)]),
        };
        Self {
            rules: BTreeMap::new(),
            crashes,
            depths: Series::default(),
            last_dead: None,
        }
    }

    pub(super) fn observe(
        &mut self,
        policy: &AlertPolicy,
        now: Duration,
        snap: &PoolSnapshot,
    ) -> Vec<AlertEvent> {
        let verdicts = [
            (AlertRule::CrashRate, self.crash_rate(policy, now, snap)),
            (AlertRule::CrashLoop, crash_loop(snap)),
            (AlertRule::Memory, memory(policy, snap)),
            (AlertRule::ProcessingDelay, processing_delay(policy, snap)),
            (AlertRule::DeadJobs, self.dead_jobs(snap)),
            (AlertRule::Saturated, self.saturated(policy, now, snap)),
        ];
        self.crashes
            .record(now, snap.crashes_total, policy.crash_window);
        self.depths.record(now, snap.depth, policy.rising_window);
        verdicts
            .into_iter()
            .filter_map(|(rule, cond)| {
                let resolve_after = if rule == AlertRule::DeadJobs {
                    policy.dead_window
                } else {
                    policy.resolve_after
                };
                self.rules
                    .entry(rule)
                    .or_default()
                    .step(rule, &snap.pool, cond, now, resolve_after)
            })
            .collect()
    }

    /// Samples kept, for tests of the memory bound.
    #[cfg(test)]
    pub(super) fn history_len(&self) -> usize {
        self.crashes.samples.len() + self.depths.samples.len()
    }

    pub(super) fn resolve_all(self, now: Duration) -> impl Iterator<Item = AlertEvent> {
        self.rules.into_values().filter_map(move |r| {
            r.firing.map(|alert| AlertEvent {
                status: AlertStatus::Resolved,
                alert,
                at: now,
            })
        })
    }

    fn crash_rate(&self, policy: &AlertPolicy, now: Duration, snap: &PoolSnapshot) -> Condition {
        let baseline = self
            .crashes
            .at_or_before(now, policy.crash_window)
            .or_else(|| self.crashes.samples.front().map(|s| s.1));
        let crashes = snap.crashes_total.saturating_sub(baseline.unwrap_or(0));
        let rate = crashes as f64 / f64::from(snap.replicas.max(1));
        if crashes == 0 || rate <= policy.crash_rate {
            return Condition::Clear;
        }
        let message = format!(
            "pool {}: {crashes} crash{} in the last {} ({:.0}% of {})",
            snap.pool,
            if crashes == 1 { "" } else { "es" },
            fmt::duration(policy.crash_window),
            rate * 100.0,
            fmt::replicas(snap.replicas)
        );
        Condition::Trigger {
            value: rate,
            message,
        }
    }

    /// A rise of the dead total triggers; anything else is clear (a fall becomes the new base).
    fn dead_jobs(&mut self, snap: &PoolSnapshot) -> Condition {
        let previous = self.last_dead.replace(snap.dead_total);
        match previous {
            Some(before) if snap.dead_total > before => Condition::Trigger {
                value: snap.dead_total as f64,
                message: format!(
                    "pool {}: {} new dead jobs ({} in total)",
                    snap.pool,
                    snap.dead_total - before,
                    snap.dead_total
                ),
            },
            _ => Condition::Clear,
        }
    }

    fn saturated(&self, policy: &AlertPolicy, now: Duration, snap: &PoolSnapshot) -> Condition {
        let before = self.depths.at_or_before(now, policy.rising_window);
        match before {
            Some(before) if snap.replicas >= snap.max_replicas && snap.depth > before => {
                Condition::Trigger {
                    value: snap.depth as f64,
                    message: format!(
                        "pool {}: at max {} and depth rose from {before} to {} in the last {}",
                        snap.pool,
                        fmt::replicas(snap.max_replicas),
                        snap.depth,
                        fmt::duration(policy.rising_window)
                    ),
                }
            }
            _ => Condition::Clear,
        }
    }
}

fn crash_loop(snap: &PoolSnapshot) -> Condition {
    if !snap.crash_loop {
        return Condition::Clear;
    }
    let message = format!(
        "pool {}: crash-looping ({} crashes since the supervisor started)",
        snap.pool, snap.crashes_total
    );
    Condition::Trigger {
        value: snap.crashes_total as f64,
        message,
    }
}

fn memory(policy: &AlertPolicy, snap: &PoolSnapshot) -> Condition {
    let (Some(used), Some(limit)) = (snap.memory_bytes, snap.memory_limit.filter(|l| *l > 0))
    else {
        return Condition::Clear;
    };
    let fraction = used as f64 / limit as f64;
    if fraction >= policy.memory_fraction {
        let message = format!(
            "pool {}: a worker uses {} MiB, {:.0}% of its {} MiB ceiling",
            snap.pool,
            used >> 20,
            fraction * 100.0,
            limit >> 20
        );
        return Condition::Trigger {
            value: fraction,
            message,
        };
    }
    if fraction >= policy.memory_resolve_fraction {
        Condition::Hold
    } else {
        Condition::Clear
    }
}

fn processing_delay(policy: &AlertPolicy, snap: &PoolSnapshot) -> Condition {
    let Some(age) = snap.oldest_available_age else {
        return Condition::Clear;
    };
    if age > policy.max_oldest_age {
        let message = format!(
            "pool {}: the oldest available job has waited {} (threshold {})",
            snap.pool,
            fmt::duration(age),
            fmt::duration(policy.max_oldest_age)
        );
        return Condition::Trigger {
            value: age.as_secs_f64(),
            message,
        };
    }
    if age >= policy.oldest_age_resolve {
        Condition::Hold
    } else {
        Condition::Clear
    }
}
