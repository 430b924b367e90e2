//! The worker's health by its own rules: [`HealthRules`] applied to a window of recent job
//! outcomes and the age of the last successful server call.

use std::collections::VecDeque;
use std::time::Duration;

use flotilla_proto::WorkerHealth;

/// When a worker counts as degraded or unhealthy.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthRules {
    /// How many recent job outcomes the failure rate is taken over.
    pub window: usize,
    /// Fewer outcomes than this say nothing about the failure rate.
    pub min_samples: usize,
    /// Failure rate at or above which the worker is degraded.
    pub degraded_rate: f64,
    /// Failure rate at or above which the worker is unhealthy.
    pub unhealthy_rate: f64,
    /// Unhealthy when the last successful poll, heartbeat or status report is older.
    pub max_silence: Duration,
}

impl Default for HealthRules {
    fn default() -> Self {
        Self {
            window: 100,
            min_samples: 10,
            degraded_rate: 0.2,
            unhealthy_rate: 0.5,
            max_silence: Duration::from_secs(60),
        }
    }
}

impl HealthRules {
    /// The health of a worker whose last successful server call was `silence` ago and
    /// whose last `samples` jobs (at most [`HealthRules::window`]) had `failures` failures.
    pub fn evaluate(&self, silence: Duration, samples: usize, failures: usize) -> WorkerHealth {
        if silence > self.max_silence {
            return WorkerHealth::Unhealthy;
        }
        if samples == 0 || samples < self.min_samples {
            return WorkerHealth::Healthy;
        }
        let rate = failures as f64 / samples as f64;
        if rate >= self.unhealthy_rate {
            WorkerHealth::Unhealthy
        } else if rate >= self.degraded_rate {
            WorkerHealth::Degraded
        } else {
            WorkerHealth::Healthy
        }
    }
}

/// A condition of the worker's own that its handlers know and the server cannot see: a
/// model that failed to load, a helper process that keeps dying. Registered with
/// [`WorkerBuilder::health_check`](crate::WorkerBuilder::health_check); while any check
/// answers `Some(reason)`, a healthy worker reports itself degraded (an unhealthy one
/// stays unhealthy), so that a supervisor or an operator looks at it.
pub trait HealthCheck: Send + Sync + 'static {
    /// Why the worker is degraded now, or `None` when this check is fine.
    fn degraded(&self) -> Option<String>;
}

impl<F> HealthCheck for F
where
    F: Fn() -> Option<String> + Send + Sync + 'static,
{
    fn degraded(&self) -> Option<String> {
        self()
    }
}

/// The worse of the rules' verdict and the checks': a failing check makes a healthy
/// worker degraded.
pub(crate) fn with_checks(by_rules: WorkerHealth, degraded: bool) -> WorkerHealth {
    match by_rules {
        WorkerHealth::Healthy if degraded => WorkerHealth::Degraded,
        other => other,
    }
}

/// The outcomes of the last `capacity` jobs, `true` for a failure.
#[derive(Debug, Clone)]
pub(crate) struct Window {
    outcomes: VecDeque<bool>,
    failures: usize,
    capacity: usize,
}

impl Window {
    /// An empty window of `capacity` outcomes.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            outcomes: VecDeque::with_capacity(capacity),
            failures: 0,
            capacity: capacity.max(1),
        }
    }

    /// Records one job's outcome, forgetting the oldest when full.
    pub(crate) fn record(&mut self, failed: bool) {
        if self.outcomes.len() == self.capacity && self.outcomes.pop_front() == Some(true) {
            self.failures -= 1;
        }
        self.outcomes.push_back(failed);
        self.failures += usize::from(failed);
    }

    /// `(samples, failures)` in the window.
    pub(crate) fn counts(&self) -> (usize, usize) {
        (self.outcomes.len(), self.failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use WorkerHealth::*;

    fn health(silence_s: u64, window: &Window) -> WorkerHealth {
        let (samples, failures) = window.counts();
        HealthRules::default().evaluate(Duration::from_secs(silence_s), samples, failures)
    }

    fn window(ok: usize, failed: usize) -> Window {
        let mut w = Window::new(100);
        (0..ok).for_each(|_| w.record(false));
        (0..failed).for_each(|_| w.record(true));
        w
    }

    #[test]
    fn a_failing_check_degrades_only_a_healthy_worker() {
        assert_eq!(with_checks(Healthy, true), Degraded);
        assert_eq!(with_checks(Healthy, false), Healthy);
        assert_eq!(with_checks(Degraded, true), Degraded);
        assert_eq!(with_checks(Unhealthy, true), Unhealthy);
        assert_eq!(with_checks(Unhealthy, false), Unhealthy);
    }

    #[test]
    fn failure_rate_thresholds() {
        assert_eq!(health(0, &window(0, 0)), Healthy);
        assert_eq!(health(0, &window(81, 19)), Healthy);
        assert_eq!(health(0, &window(80, 20)), Degraded);
        assert_eq!(health(0, &window(51, 49)), Degraded);
        assert_eq!(health(0, &window(50, 50)), Unhealthy);
        assert_eq!(health(0, &window(0, 100)), Unhealthy);
    }

    #[test]
    fn a_few_failures_alone_say_nothing() {
        assert_eq!(health(0, &window(0, 9)), Healthy);
        assert_eq!(health(0, &window(0, 10)), Unhealthy);
        assert_eq!(health(0, &window(5, 5)), Unhealthy);
    }

    #[test]
    fn silence_over_a_minute_is_unhealthy_whatever_the_jobs() {
        assert_eq!(health(60, &window(100, 0)), Healthy);
        assert_eq!(health(61, &window(100, 0)), Unhealthy);
    }

    #[test]
    fn the_window_forgets_old_outcomes() {
        let mut w = window(0, 100);
        assert_eq!(w.counts(), (100, 100));
        (0..60).for_each(|_| w.record(false));
        assert_eq!(w.counts(), (100, 40));
        assert_eq!(health(0, &w), Degraded);
        (0..40).for_each(|_| w.record(false));
        assert_eq!(w.counts(), (100, 0));
        assert_eq!(health(0, &w), Healthy);
    }
}
