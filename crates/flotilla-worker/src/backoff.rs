//! Exponential backoff with full jitter, for reconnecting and for retrying reports.

use std::time::Duration;

/// Delays that double from `base` up to `max`, each drawn uniformly from zero to the
/// current ceiling ("full jitter"), so workers that lost the server together do not come
/// back together.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// Reconnecting to the server: 100 ms doubling to 10 s.
    pub(crate) const RECONNECT: (Duration, Duration) =
        (Duration::from_millis(100), Duration::from_secs(10));
    /// Retrying a result report: 100 ms doubling to 5 s.
    pub(crate) const REPORT: (Duration, Duration) =
        (Duration::from_millis(100), Duration::from_secs(5));

    /// A backoff from `base` to `max`.
    pub(crate) fn new((base, max): (Duration, Duration)) -> Self {
        Self {
            base,
            max: max.max(base),
            attempt: 0,
        }
    }

    /// The ceiling of the `attempt`th delay (0-based): `min(max, base * 2^attempt)`.
    pub(crate) fn ceiling(&self, attempt: u32) -> Duration {
        self.base
            .checked_mul(1u32.checked_shl(attempt).unwrap_or(u32::MAX))
            .map_or(self.max, |d| d.min(self.max))
    }

    /// The next delay, with `unit` in `[0, 1)` choosing where under the ceiling it falls.
    pub(crate) fn next_with(&mut self, unit: f64) -> Duration {
        let ceiling = self.ceiling(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        ceiling.mul_f64(unit.clamp(0.0, 1.0))
    }

    /// The next delay, at a random point under the ceiling.
    pub(crate) fn next_delay(&mut self) -> Duration {
        self.next_with(rand::random::<f64>())
    }

    /// Starts again from `base` (after a success).
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }

    /// How many delays were handed out since the last reset.
    pub(crate) fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_up_to_the_max() {
        let b = Backoff::new(Backoff::RECONNECT);
        let ms: Vec<u128> = (0..10).map(|n| b.ceiling(n).as_millis()).collect();
        assert_eq!(
            ms,
            [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]
        );
        assert_eq!(b.ceiling(40), Duration::from_secs(10));
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn delays_stay_within_zero_and_the_ceiling() {
        let mut b = Backoff::new(Backoff::RECONNECT);
        for n in 0..50 {
            let ceiling = b.ceiling(n);
            let d = b.next_delay();
            assert!(d <= ceiling, "attempt {n}: {d:?} > {ceiling:?}");
        }
        assert_eq!(b.attempts(), 50);
        let mut b = Backoff::new(Backoff::RECONNECT);
        assert_eq!(b.next_with(0.0), Duration::ZERO);
        assert_eq!(b.next_with(0.5), Duration::from_millis(100));
        assert_eq!(b.next_with(2.0), Duration::from_millis(400));
        b.reset();
        assert_eq!(b.next_with(1.0), Duration::from_millis(100));
    }

    #[test]
    fn random_delays_spread_over_the_range() {
        let mut below_half = 0;
        for _ in 0..1000 {
            let mut b = Backoff::new(Backoff::RECONNECT);
            if b.next_delay() < Duration::from_millis(50) {
                below_half += 1;
            }
        }
        // Uniform over [0, 100 ms): about 500 below 50 ms; 350..650 fails ~never.
        assert!((350..650).contains(&below_half), "{below_half}");
    }
}
