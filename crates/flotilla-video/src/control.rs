//! [`RunControl`] (progress callback, cancellation, timeout) and [`Progress`], parsed
//! from the `key=value` blocks FFmpeg writes with `-progress pipe:1`.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::VideoError;

/// The shortest gap between two progress callbacks (the final one is always sent).
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

/// A progress callback. It runs on the task that drives FFmpeg, so it must be quick:
/// record the value or send it on a channel.
pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

/// The controls every run takes: where progress goes, how to cancel it and how long
/// it may take. `RunControl::default()` has none of them.
#[derive(Clone, Default)]
pub struct RunControl {
    /// Called with FFmpeg's progress, at most every [`PROGRESS_INTERVAL`].
    pub progress: Option<ProgressFn>,
    /// Cancelling it kills FFmpeg (and its children), or stops probing the inputs,
    /// and fails the run with [`VideoError::Cancelled`].
    pub cancel: CancellationToken,
    /// How long the FFmpeg run may take before it is killed and fails with
    /// [`VideoError::TimedOut`]. Probing the inputs
    /// first is bounded separately, by [`PROBE_TIMEOUT`](crate::PROBE_TIMEOUT) each.
    pub timeout: Option<Duration>,
}

impl RunControl {
    /// No progress callback, a fresh cancellation token, no timeout.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends progress to `callback`.
    pub fn with_progress(mut self, callback: impl Fn(Progress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(callback));
        self
    }

    /// Uses `cancel` (e.g. the job's token) to stop the run.
    pub fn with_cancel(mut self, cancel: CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }

    /// Stops the run after `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

impl RunControl {
    /// Runs `work` (probing, say) unless the run is cancelled first; dropping it on
    /// cancellation kills any ffprobe it started.
    pub(crate) async fn unless_cancelled<T>(
        &self,
        work: impl Future<Output = Result<T, VideoError>>,
    ) -> Result<T, VideoError> {
        tokio::select! {
            done = work => done,
            () = self.cancel.cancelled() => Err(VideoError::Cancelled),
        }
    }
}

impl fmt::Debug for RunControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunControl")
            .field("progress", &self.progress.as_ref().map(|_| "Fn(Progress)"))
            .field("cancel", &self.cancel)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// How far an FFmpeg run has got.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Seconds of output written so far; never decreases within a run.
    pub out_time_s: f64,
    /// `out_time_s` over the expected output duration, in 0..=1, when that is known.
    pub fraction: Option<f64>,
    /// Encoding speed as a multiple of realtime (FFmpeg's `speed=2.5x`).
    pub speed: Option<f64>,
    /// Frames written so far.
    pub frame: Option<u64>,
    /// Whether this is FFmpeg's last report (`progress=end`).
    pub done: bool,
}

/// Turns FFmpeg's progress lines into throttled [`Progress`] values.
pub(crate) struct ProgressParser {
    expected_s: Option<f64>,
    current: Progress,
    last_sent: Option<Instant>,
}

impl ProgressParser {
    /// A parser for a run whose output should last `expected_s` seconds.
    pub(crate) fn new(expected_s: Option<f64>) -> Self {
        Self {
            expected_s: expected_s.filter(|s| *s > 0.0),
            current: Progress {
                out_time_s: 0.0,
                fraction: None,
                speed: None,
                frame: None,
                done: false,
            },
            last_sent: None,
        }
    }

    /// Reads one line; returns a value to report when the line ends a block
    /// (`progress=…`) and the last report is old enough, or the run has ended.
    pub(crate) fn line(&mut self, line: &str, now: Instant) -> Option<Progress> {
        let (key, value) = line.trim().split_once('=')?;
        let value = value.trim();
        match key {
            // out_time_ms is microseconds too (an old FFmpeg misnomer).
            "out_time_us" | "out_time_ms" => {
                if let Some(micros) = value.parse::<i64>().ok().filter(|m| *m >= 0) {
                    let seconds = micros as f64 / 1e6;
                    self.current.out_time_s = self.current.out_time_s.max(seconds);
                }
            }
            "speed" => self.current.speed = value.trim_end_matches('x').trim().parse().ok(),
            "frame" => self.current.frame = value.parse().ok(),
            "progress" => return self.end_of_block(value == "end", now),
            _ => {}
        }
        None
    }

    fn end_of_block(&mut self, done: bool, now: Instant) -> Option<Progress> {
        self.current.done = done;
        self.current.fraction = self
            .expected_s
            .map(|expected| (self.current.out_time_s / expected).clamp(0.0, 1.0));
        let due = self
            .last_sent
            .is_none_or(|last| now.duration_since(last) >= PROGRESS_INTERVAL);
        if !(due || done) {
            return None;
        }
        self.last_sent = Some(now);
        Some(self.current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(parser: &mut ProgressParser, block: &str, now: Instant) -> Option<Progress> {
        block.lines().filter_map(|l| parser.line(l, now)).last()
    }

    #[test]
    fn parses_blocks_and_throttles_all_but_the_end() {
        let mut parser = ProgressParser::new(Some(10.0));
        let start = Instant::now();
        let first = feed(
            &mut parser,
            "frame=50\nout_time_us=2000000\nout_time_ms=2000000\nspeed=4.5x\nprogress=continue",
            start,
        )
        .unwrap();
        assert_eq!(
            (first.out_time_s, first.frame, first.speed),
            (2.0, Some(50), Some(4.5))
        );
        assert_eq!(first.fraction, Some(0.2));
        let soon = start + Duration::from_millis(10);
        assert_eq!(
            feed(&mut parser, "out_time_us=3000000\nprogress=continue", soon),
            None
        );
        let end = feed(
            &mut parser,
            "out_time_us=9990000\nspeed=N/A\nprogress=end",
            soon,
        )
        .unwrap();
        assert!(end.done);
        assert_eq!(end.speed, None);
        assert!((end.fraction.unwrap() - 0.999).abs() < 1e-9);
    }

    #[test]
    fn out_time_never_goes_back_and_na_is_ignored() {
        let mut parser = ProgressParser::new(None);
        let now = Instant::now();
        feed(&mut parser, "out_time_us=5000000\nprogress=continue", now);
        let later = now + PROGRESS_INTERVAL;
        let p = feed(
            &mut parser,
            "out_time_us=N/A\nout_time_us=-5\nprogress=continue",
            later,
        );
        assert_eq!(p.unwrap().out_time_s, 5.0);
        assert_eq!(p.unwrap().fraction, None);
    }
}
