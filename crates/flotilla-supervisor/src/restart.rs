//! When a crashed worker process comes back, as a pure function of its crash history:
//! exponential backoff for crashes in a row, and the crash-loop state once a pool's
//! processes crash too often inside a window. Kept apart from the process handling so
//! the rules are tested to the millisecond with made-up times.

use std::collections::VecDeque;
use std::time::Duration;

use crate::config::RestartPolicy;

/// One slot's crashes in a row (a long run resets them).
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    in_a_row: u32,
}

impl Backoff {
    /// A process that ran for `ran_for` crashed: how long to wait before starting it again.
    pub fn after_crash(&mut self, policy: &RestartPolicy, ran_for: Duration) -> Duration {
        if ran_for >= policy.reset_after {
            self.in_a_row = 0;
        }
        self.in_a_row = self.in_a_row.saturating_add(1);
        let doublings = self.in_a_row.saturating_sub(1).min(20);
        policy
            .delay
            .saturating_mul(1 << doublings)
            .min(policy.max_delay)
    }
}

/// A pool's recent crashes, to tell a crash loop.
#[derive(Debug, Clone, Default)]
pub struct CrashLog {
    at: VecDeque<Duration>,
}

impl CrashLog {
    /// Notes a crash at `now`; true when the pool is now crash-looping.
    pub fn record(&mut self, policy: &RestartPolicy, now: Duration) -> bool {
        self.at.push_back(now);
        self.is_looping(policy, now)
    }

    /// Whether `crash_loop_after` crashes happened within the window ending at `now`.
    pub fn is_looping(&mut self, policy: &RestartPolicy, now: Duration) -> bool {
        while self
            .at
            .front()
            .is_some_and(|t| now.saturating_sub(*t) > policy.crash_loop_window)
        {
            self.at.pop_front();
        }
        self.at.len() >= policy.crash_loop_after as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn backoff_doubles_from_five_seconds_up_to_the_cap() {
        let policy = RestartPolicy::default();
        let mut b = Backoff::default();
        let delays: Vec<u64> = (0..9)
            .map(|_| b.after_crash(&policy, secs(1)).as_secs())
            .collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn a_long_run_starts_the_series_again() {
        let policy = RestartPolicy::default();
        let mut b = Backoff::default();
        b.after_crash(&policy, secs(1));
        b.after_crash(&policy, secs(1));
        assert_eq!(b.after_crash(&policy, secs(59)), secs(20));
        assert_eq!(b.after_crash(&policy, secs(60)), secs(5), "ran reset_after");
    }

    #[test]
    fn crash_loop_needs_n_crashes_inside_the_window() {
        let policy = RestartPolicy {
            crash_loop_after: 3,
            crash_loop_window: secs(60),
            ..RestartPolicy::default()
        };
        let mut log = CrashLog::default();
        assert!(!log.record(&policy, secs(0)));
        assert!(!log.record(&policy, secs(30)));
        assert!(
            !log.record(&policy, secs(61)),
            "the first fell out of the window"
        );
        assert!(log.record(&policy, secs(80)));
        assert!(log.is_looping(&policy, secs(90)));
        assert!(
            !log.is_looping(&policy, secs(91)),
            "30 s crash left the window"
        );
    }
}
