//! `/metrics` in the Prometheus text format. Queue depths, counters and ages are read from
//! the store at scrape time (the store keeps them per queue, so a scrape is O(queues));
//! wait and run times are observed by the API as jobs are handed out and acknowledged.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use flotilla_core::{Job, JobId, JobState};
use flotilla_proto::{QueueView, WorkerHealth, WorkerView};

const BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 600.0,
    3600.0,
];
/// Started jobs remembered for run-time measurement; beyond this the oldest are dropped.
const MAX_TRACKED: usize = 100_000;

/// A counter family read off a queue view: name, help, value.
type Counter = (&'static str, &'static str, fn(&QueueView) -> u64);

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, d: Duration) {
        let secs = d.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.counts[i] += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }

    fn write(&self, out: &mut String, name: &str, queue: &str) {
        for (bound, count) in BUCKETS.iter().zip(self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{queue=\"{queue}\",le=\"{bound}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{queue=\"{queue}\",le=\"+Inf\"}} {}",
            self.count
        );
        let _ = writeln!(out, "{name}_sum{{queue=\"{queue}\"}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{queue=\"{queue}\"}} {}", self.count);
    }
}

#[derive(Default)]
struct Inner {
    wait: HashMap<String, Histogram>,
    run: HashMap<String, Histogram>,
    running: HashMap<JobId, (String, Instant)>,
}

/// Observations made by the API.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    /// A job was handed to a worker `wait` after it became runnable.
    pub(crate) fn claimed(&self, job: &Job, wait: Duration) {
        let mut inner = self.inner.lock().expect("metrics lock");
        inner
            .wait
            .entry(job.queue.clone())
            .or_default()
            .observe(wait);
        if inner.running.len() >= MAX_TRACKED {
            inner.running.clear();
        }
        inner
            .running
            .insert(job.id, (job.queue.clone(), Instant::now()));
    }

    /// A job's attempt ended (completed or failed).
    pub(crate) fn ended(&self, id: JobId) {
        let mut inner = self.inner.lock().expect("metrics lock");
        if let Some((queue, started)) = inner.running.remove(&id) {
            inner
                .run
                .entry(queue)
                .or_default()
                .observe(started.elapsed());
        }
    }

    /// The exposition: store-derived families for `queues`, worker counts, and histograms.
    pub(crate) fn render(
        &self,
        queues: &[QueueView],
        workers: &[WorkerView],
        polls_waiting: usize,
    ) -> String {
        let mut out = String::with_capacity(4096);
        family(
            &mut out,
            "flotilla_queue_jobs",
            "gauge",
            "Jobs in the queue by state.",
        );
        for q in queues {
            for state in JobState::ALL {
                let _ = writeln!(
                    out,
                    "flotilla_queue_jobs{{queue=\"{}\",state=\"{state}\"}} {}",
                    q.name,
                    q.counts.get(state)
                );
            }
        }
        let totals: [Counter; 7] = [
            ("flotilla_jobs_enqueued_total", "Jobs accepted.", |q| {
                q.totals.enqueued
            }),
            (
                "flotilla_jobs_succeeded_total",
                "Jobs that succeeded.",
                |q| q.totals.succeeded,
            ),
            ("flotilla_jobs_failed_total", "Failed attempts.", |q| {
                q.totals.failed
            }),
            (
                "flotilla_jobs_retried_total",
                "Failed attempts scheduled to retry.",
                |q| q.totals.retried,
            ),
            ("flotilla_jobs_dead_total", "Jobs that went dead.", |q| {
                q.totals.dead
            }),
            ("flotilla_jobs_cancelled_total", "Jobs cancelled.", |q| {
                q.totals.cancelled
            }),
            (
                "flotilla_lease_expired_total",
                "Leases that expired (worker lost or timed out).",
                |q| q.totals.lease_expired,
            ),
        ];
        for (name, help, value) in totals {
            family(&mut out, name, "counter", help);
            for q in queues {
                let _ = writeln!(out, "{name}{{queue=\"{}\"}} {}", q.name, value(q));
            }
        }
        family(
            &mut out,
            "flotilla_oldest_available_age_seconds",
            "gauge",
            "Age of the oldest available job.",
        );
        for q in queues {
            let age = q.oldest_available_age_ms.unwrap_or(0) as f64 / 1000.0;
            let _ = writeln!(
                out,
                "flotilla_oldest_available_age_seconds{{queue=\"{}\"}} {age}",
                q.name
            );
        }
        family(
            &mut out,
            "flotilla_queue_paused",
            "gauge",
            "1 when the queue is paused.",
        );
        for q in queues {
            let _ = writeln!(
                out,
                "flotilla_queue_paused{{queue=\"{}\"}} {}",
                q.name,
                u8::from(q.paused)
            );
        }
        family(
            &mut out,
            "flotilla_workers",
            "gauge",
            "Registered workers by health.",
        );
        for health in [
            WorkerHealth::Healthy,
            WorkerHealth::Degraded,
            WorkerHealth::Unhealthy,
        ] {
            let n = workers.iter().filter(|w| w.health == health).count();
            let name = serde_json::to_value(health)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let _ = writeln!(out, "flotilla_workers{{health=\"{name}\"}} {n}");
        }
        family(
            &mut out,
            "flotilla_polls_waiting",
            "gauge",
            "Long-polls waiting for work on this server.",
        );
        let _ = writeln!(out, "flotilla_polls_waiting {polls_waiting}");
        let inner = self.inner.lock().expect("metrics lock");
        for (name, help, hists) in [
            (
                "flotilla_job_wait_seconds",
                "Time from runnable to handed to a worker.",
                &inner.wait,
            ),
            (
                "flotilla_job_run_seconds",
                "Time from handed out to acknowledged.",
                &inner.run,
            ),
        ] {
            family(&mut out, name, "histogram", help);
            let mut queues: Vec<_> = hists.iter().collect();
            queues.sort_by(|a, b| a.0.cmp(b.0));
            for (queue, h) in queues {
                h.write(&mut out, name, queue);
            }
        }
        out
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}
