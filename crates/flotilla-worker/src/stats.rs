//! [`Stats`]: the counters behind status reports, health and `/metrics`.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use flotilla_core::JobId;
use flotilla_proto::WorkerHealth;
use tokio::time::Instant;

use crate::handler::lock;
use crate::health::Window;

/// How a job ended on this worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The handler returned a result.
    Succeeded,
    /// The handler returned an error.
    Error,
    /// The handler panicked.
    Panic,
    /// The job ran past its timeout.
    Timeout,
    /// The server cancelled it.
    Cancelled,
    /// Handed back at shutdown.
    Shutdown,
    /// Its lease was lost (expired, or the job moved on).
    LeaseLost,
    /// No handler serves its kind.
    NoHandler,
}

impl Outcome {
    const ALL: [Outcome; 8] = [
        Self::Succeeded,
        Self::Error,
        Self::Panic,
        Self::Timeout,
        Self::Cancelled,
        Self::Shutdown,
        Self::LeaseLost,
        Self::NoHandler,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Error => "error",
            Self::Panic => "panic",
            Self::Timeout => "timeout",
            Self::Cancelled => "cancelled",
            Self::Shutdown => "shutdown",
            Self::LeaseLost => "lease_lost",
            Self::NoHandler => "no_handler",
        }
    }

    /// Whether the outcome counts as a failure of this worker; `None` for outcomes that
    /// say nothing about it (a cancel from the server, a hand-back at shutdown).
    fn is_failure(self) -> Option<bool> {
        match self {
            Self::Succeeded => Some(false),
            Self::Cancelled | Self::Shutdown => None,
            _ => Some(true),
        }
    }
}

/// Counters shared by the runtime, the status reports and the health port.
pub(crate) struct Stats {
    started: AtomicU64,
    finished: [AtomicU64; Outcome::ALL.len()],
    running: Mutex<BTreeSet<JobId>>,
    window: Mutex<Window>,
    last_ok: Mutex<Instant>,
    connected: AtomicBool,
}

impl Stats {
    /// Fresh counters with a failure window of `window` jobs.
    pub(crate) fn new(window: usize) -> Self {
        Self {
            started: AtomicU64::new(0),
            finished: Default::default(),
            running: Mutex::new(BTreeSet::new()),
            window: Mutex::new(Window::new(window)),
            last_ok: Mutex::new(Instant::now()),
            connected: AtomicBool::new(false),
        }
    }

    /// A job started running.
    pub(crate) fn job_started(&self, id: JobId) {
        self.started.fetch_add(1, Ordering::Relaxed);
        lock(&self.running).insert(id);
    }

    /// A job ended with `outcome`.
    pub(crate) fn job_finished(&self, id: JobId, outcome: Outcome) {
        lock(&self.running).remove(&id);
        self.finished[outcome as usize].fetch_add(1, Ordering::Relaxed);
        if let Some(failed) = outcome.is_failure() {
            lock(&self.window).record(failed);
        }
    }

    /// A server call succeeded.
    pub(crate) fn call_ok(&self) {
        *lock(&self.last_ok) = Instant::now();
        self.connected.store(true, Ordering::Relaxed);
    }

    /// A server call failed for want of the server (transport error or 5xx).
    pub(crate) fn call_failed(&self) {
        self.connected.store(false, Ordering::Relaxed);
    }

    /// Whether the last server call succeeded.
    pub(crate) fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// How long since the last successful server call.
    pub(crate) fn silence(&self) -> Duration {
        lock(&self.last_ok).elapsed()
    }

    /// `(samples, failures)` over the recent jobs.
    pub(crate) fn window(&self) -> (usize, usize) {
        lock(&self.window).counts()
    }

    /// The jobs running now.
    pub(crate) fn running(&self) -> Vec<JobId> {
        lock(&self.running).iter().copied().collect()
    }

    /// Jobs that succeeded.
    pub(crate) fn succeeded(&self) -> u64 {
        self.count(Outcome::Succeeded)
    }

    /// Jobs that failed on this worker (not counting cancels and hand-backs).
    pub(crate) fn failed(&self) -> u64 {
        Outcome::ALL
            .into_iter()
            .filter(|o| o.is_failure() == Some(true))
            .map(|o| self.count(o))
            .sum()
    }

    fn count(&self, outcome: Outcome) -> u64 {
        self.finished[outcome as usize].load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition of the counters and of `gauges`.
    pub(crate) fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, f64)]| {
            let _ = writeln!(out, "# HELP flotilla_worker_{name} {help}");
            let _ = writeln!(out, "# TYPE flotilla_worker_{name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "flotilla_worker_{name}{labels} {value}");
            }
        };
        let started = self.started.load(Ordering::Relaxed) as f64;
        metric(
            "jobs_started_total",
            "counter",
            "Jobs started.",
            &[("", started)],
        );
        let succeeded = self.succeeded() as f64;
        metric(
            "jobs_succeeded_total",
            "counter",
            "Jobs that succeeded.",
            &[("", succeeded)],
        );
        let failed = self.failed() as f64;
        let help = "Jobs that failed (error, panic, timeout, lost lease, no handler).";
        metric("jobs_failed_total", "counter", help, &[("", failed)]);
        let labels: Vec<String> = Outcome::ALL
            .iter()
            .map(|o| format!("{{outcome=\"{}\"}}", o.label()))
            .collect();
        let by_outcome: Vec<(&str, f64)> = Outcome::ALL
            .iter()
            .zip(&labels)
            .map(|(o, l)| (l.as_str(), self.count(*o) as f64))
            .collect();
        metric(
            "jobs_finished_total",
            "counter",
            "Jobs finished, by outcome.",
            &by_outcome,
        );
        let running = lock(&self.running).len() as f64;
        metric(
            "jobs_running",
            "gauge",
            "Jobs running now.",
            &[("", running)],
        );
        let free = gauges.free_slots as f64;
        metric(
            "free_slots",
            "gauge",
            "Slots free for more jobs.",
            &[("", free)],
        );
        let slots = gauges.concurrency as f64;
        metric(
            "concurrency",
            "gauge",
            "Jobs run at once at most.",
            &[("", slots)],
        );
        let ready = f64::from(u8::from(gauges.ready));
        metric(
            "ready",
            "gauge",
            "1 when connected and not draining.",
            &[("", ready)],
        );
        let draining = f64::from(u8::from(gauges.draining));
        metric(
            "draining",
            "gauge",
            "1 while draining before exit.",
            &[("", draining)],
        );
        let health: Vec<(&str, f64)> = [
            (WorkerHealth::Healthy, "{state=\"healthy\"}"),
            (WorkerHealth::Degraded, "{state=\"degraded\"}"),
            (WorkerHealth::Unhealthy, "{state=\"unhealthy\"}"),
        ]
        .into_iter()
        .map(|(h, l)| (l, f64::from(u8::from(h == gauges.health))))
        .collect();
        metric("health", "gauge", "1 for the current health.", &health);
        let silence = self.silence().as_secs_f64();
        let help = "Seconds since the last successful server call.";
        metric(
            "seconds_since_server_contact",
            "gauge",
            help,
            &[("", silence)],
        );
        out
    }
}

/// Values `/metrics` shows that live outside [`Stats`].
pub(crate) struct Gauges {
    /// Free slots.
    pub(crate) free_slots: usize,
    /// Configured concurrency.
    pub(crate) concurrency: u32,
    /// Readiness.
    pub(crate) ready: bool,
    /// Draining.
    pub(crate) draining: bool,
    /// Current health.
    pub(crate) health: WorkerHealth,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_exposition() {
        let stats = Stats::new(100);
        for (id, outcome) in [
            (1, Outcome::Succeeded),
            (2, Outcome::Error),
            (3, Outcome::Cancelled),
            (4, Outcome::Timeout),
        ] {
            stats.job_started(JobId(id));
            stats.job_finished(JobId(id), outcome);
        }
        stats.job_started(JobId(5));
        assert_eq!(stats.running(), [JobId(5)]);
        assert_eq!((stats.succeeded(), stats.failed()), (1, 2));
        assert_eq!(stats.window(), (3, 2), "the cancel is not counted");
        let text = stats.render(&Gauges {
            free_slots: 3,
            concurrency: 4,
            ready: true,
            draining: false,
            health: WorkerHealth::Degraded,
        });
        for line in [
            "flotilla_worker_jobs_started_total 5",
            "flotilla_worker_jobs_succeeded_total 1",
            "flotilla_worker_jobs_failed_total 2",
            "flotilla_worker_jobs_finished_total{outcome=\"cancelled\"} 1",
            "flotilla_worker_jobs_running 1",
            "flotilla_worker_free_slots 3",
            "flotilla_worker_health{state=\"degraded\"} 1",
            "flotilla_worker_health{state=\"healthy\"} 0",
            "# TYPE flotilla_worker_jobs_started_total counter",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
