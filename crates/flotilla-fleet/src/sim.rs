//! [`simulate`]: a deterministic discrete-event replay of a job trace through a FIFO queue
//! served by a pool that the [`Autoscaler`] resizes.
//!
//! Model: each ready replica runs `concurrency_per_replica` jobs at once. A new replica counts
//! as launched (and billed) at once but serves only after `startup`. Scale-in removes the newest
//! replica at once (billing stops); its running jobs finish (a graceful drain) but no new job
//! starts until busy slots fall below the new capacity. Every `tick` the queue is sampled and
//! the autoscaler observes it. At equal times, completions go first, then replicas becoming
//! ready, then arrivals, then dispatch, then the tick. The replay ends once every job has
//! finished and the pool is back at its minimum, or when the idle pool could no longer scale in.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

use crate::autoscaler::{Autoscaler, Decision, Signal};
use crate::policy::{PolicyError, ScalingPolicy};
use crate::trace::Arrival;

/// The shortest accepted tick: it bounds the number of samples a simulation makes.
pub const MIN_TICK: Duration = Duration::from_secs(1);

/// The most ticks a simulation may need (bounded before it runs, from the trace's total work):
/// it keeps a hostile trace or policy from making [`simulate`] run for ages.
pub const MAX_TICKS: f64 = 1_000_000.0;

/// What to simulate besides the trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    /// The autoscaling policy under test.
    pub policy: ScalingPolicy,
    /// Jobs one replica runs at once.
    pub concurrency_per_replica: u32,
    /// Replicas at time 0, ready at once (moved into the policy's bounds at the first tick).
    pub start_replicas: u32,
    /// How often the queue is sampled and the autoscaler observes it; at least [`MIN_TICK`].
    pub tick: Duration,
    /// How long a new replica takes to become ready.
    pub startup: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            policy: ScalingPolicy::default(),
            concurrency_per_replica: 2,
            start_replicas: 1,
            tick: Duration::from_secs(15),
            startup: Duration::from_secs(30),
        }
    }
}

/// The pool at one tick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Seconds since the start of the trace.
    pub t_s: f64,
    /// Jobs waiting.
    pub depth: u64,
    /// Replicas launched (ready or starting), after this tick's decision.
    pub replicas: u32,
    /// Jobs running.
    pub busy: u32,
    /// Seconds the oldest waiting job has waited so far (0 when none waits).
    pub oldest_wait_s: f64,
    /// The longest wait of any job started so far.
    pub max_wait_s_so_far: f64,
}

/// The outcome of a simulation. Waits are from arrival to start.
#[derive(Debug, Clone, PartialEq)]
pub struct SimResult {
    /// One sample per tick.
    pub samples: Vec<Sample>,
    /// The scaling decisions (holds are left out), with the time in seconds they were made.
    pub decisions: Vec<(f64, Decision)>,
    /// The longest wait.
    pub max_wait_s: f64,
    /// The mean wait.
    pub mean_wait_s: f64,
    /// The 95th-percentile wait (nearest rank).
    pub p95_wait_s: f64,
    /// Replicas launched, integrated over the simulated time, in minutes.
    pub replica_minutes: f64,
    /// Jobs in the trace (all of which ran).
    pub jobs: usize,
}

/// A configuration that cannot be simulated. Never retryable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    /// The policy is invalid.
    #[error("invalid policy: {0}")]
    Policy(#[from] PolicyError),
    /// `concurrency_per_replica` is 0.
    #[error("concurrency_per_replica must be at least 1")]
    ZeroConcurrency,
    /// The trace could need more than [`MAX_TICKS`] ticks.
    #[error("the trace could need up to {ticks:.0} ticks, more than the limit of {MAX_TICKS}")]
    TooLong {
        /// The upper bound on ticks computed for this trace and config.
        ticks: f64,
    },
    /// `tick` is shorter than [`MIN_TICK`].
    #[error("tick {tick:?} is shorter than the minimum of 1s")]
    TickTooShort {
        /// The configured tick.
        tick: Duration,
    },
}

impl SimError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Policy(err) => err.code(),
            Self::ZeroConcurrency => "sim_zero_concurrency",
            Self::TickTooShort { .. } => "sim_tick_too_short",
            Self::TooLong { .. } => "sim_too_long",
        }
    }

    /// Always false: retrying cannot fix a configuration.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// Replays `trace` (in arrival order, ties in file order) against `config`.
pub fn simulate(trace: &[Arrival], config: &SimConfig) -> Result<SimResult, SimError> {
    config.policy.validate()?;
    if config.concurrency_per_replica == 0 {
        return Err(SimError::ZeroConcurrency);
    }
    if config.tick < MIN_TICK {
        return Err(SimError::TickTooShort { tick: config.tick });
    }
    let ticks = horizon_bound_s(trace, config) / config.tick.as_secs_f64();
    if ticks.is_nan() || ticks > MAX_TICKS {
        return Err(SimError::TooLong { ticks });
    }
    let mut arrivals = trace.to_vec();
    arrivals.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    let mut sim = Simulation::new(&arrivals, config);
    sim.run();
    Ok(sim.finish())
}

/// An upper bound on the simulated time: after `startup` at least `min_replicas` replicas are
/// always ready, so the work finishes by the last arrival plus the total work spread over the
/// minimum slots; then the idle pool gets [`idle_tail_s`] to scale in.
fn horizon_bound_s(trace: &[Arrival], config: &SimConfig) -> f64 {
    let min_slots =
        f64::from(config.policy.min_replicas) * f64::from(config.concurrency_per_replica);
    let last_arrival = trace.iter().map(|a| a.at_s).fold(0.0, f64::max);
    let longest = trace.iter().map(|a| a.duration_s).fold(0.0, f64::max);
    let work: f64 = trace.iter().map(|a| a.duration_s).sum();
    last_arrival
        + config.startup.as_secs_f64()
        + work / min_slots
        + longest
        + idle_tail_s(config)
        + config.tick.as_secs_f64()
}

/// How long an idle pool is simulated at most while it is above its minimum: long enough to
/// scale in one step at a time from the largest possible size.
fn idle_tail_s(config: &SimConfig) -> f64 {
    let policy = &config.policy;
    let per_step = (policy.scale_in_for + policy.scale_in_cooldown).as_secs_f64();
    let steps = policy.max_replicas.max(config.start_replicas);
    per_step * (f64::from(steps) + 1.0)
}

/// A time in seconds, ordered totally so it can sit in a heap.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Seconds(f64);

impl Eq for Seconds {}

impl PartialOrd for Seconds {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Seconds {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

struct Simulation<'a> {
    arrivals: &'a [Arrival],
    config: &'a SimConfig,
    autoscaler: Autoscaler,
    now: f64,
    next_arrival: usize,
    next_tick: u64,
    queue: VecDeque<Arrival>,
    running: BinaryHeap<Reverse<Seconds>>,
    /// When each launched replica is (or was) ready, oldest launch first.
    replicas_ready_at: Vec<f64>,
    waits: Vec<f64>,
    max_wait_s: f64,
    samples: Vec<Sample>,
    decisions: Vec<(f64, Decision)>,
    replica_seconds: f64,
    /// Past this time the idle pool stops being simulated even if it is above its minimum.
    idle_deadline: Option<f64>,
}

impl<'a> Simulation<'a> {
    fn new(arrivals: &'a [Arrival], config: &'a SimConfig) -> Self {
        Self {
            arrivals,
            config,
            autoscaler: Autoscaler::new(config.policy.clone()),
            now: 0.0,
            next_arrival: 0,
            next_tick: 0,
            queue: VecDeque::new(),
            running: BinaryHeap::new(),
            replicas_ready_at: vec![0.0; config.start_replicas as usize],
            waits: Vec::with_capacity(arrivals.len()),
            max_wait_s: 0.0,
            samples: Vec::new(),
            decisions: Vec::new(),
            replica_seconds: 0.0,
            idle_deadline: None,
        }
    }

    fn run(&mut self) {
        loop {
            let (t, is_tick) = self.next_event_time();
            self.advance_to(t);
            self.complete_jobs();
            self.admit_arrivals();
            self.dispatch();
            if is_tick {
                self.tick();
                if self.is_done() {
                    return;
                }
            }
        }
    }

    fn tick_time(&self) -> f64 {
        self.next_tick as f64 * self.config.tick.as_secs_f64()
    }

    /// The earliest pending event; `true` when it is (also) the next tick.
    fn next_event_time(&self) -> (f64, bool) {
        let tick = self.tick_time();
        let others = [
            self.arrivals.get(self.next_arrival).map(|a| a.at_s),
            self.running.peek().map(|Reverse(Seconds(t))| *t),
            self.replicas_ready_at
                .iter()
                .copied()
                .filter(|ready| *ready > self.now)
                .min_by(f64::total_cmp),
        ];
        let earliest = others.into_iter().flatten().min_by(f64::total_cmp);
        match earliest {
            Some(t) if t < tick => (t, false),
            _ => (tick, true),
        }
    }

    fn advance_to(&mut self, t: f64) {
        self.replica_seconds += self.replicas_ready_at.len() as f64 * (t - self.now);
        self.now = t;
    }

    fn complete_jobs(&mut self) {
        while self
            .running
            .peek()
            .is_some_and(|Reverse(Seconds(end))| *end <= self.now)
        {
            self.running.pop();
        }
    }

    fn admit_arrivals(&mut self) {
        while let Some(arrival) = self.arrivals.get(self.next_arrival) {
            if arrival.at_s > self.now {
                break;
            }
            self.queue.push_back(*arrival);
            self.next_arrival += 1;
        }
    }

    fn capacity(&self) -> usize {
        let ready = self
            .replicas_ready_at
            .iter()
            .filter(|ready| **ready <= self.now)
            .count();
        ready * self.config.concurrency_per_replica as usize
    }

    fn dispatch(&mut self) {
        let capacity = self.capacity();
        while self.running.len() < capacity {
            let Some(job) = self.queue.pop_front() else {
                break;
            };
            let wait = self.now - job.at_s;
            self.waits.push(wait);
            self.max_wait_s = self.max_wait_s.max(wait);
            let end = self.now + job.duration_s;
            self.running.push(Reverse(Seconds(end)));
        }
    }

    fn tick(&mut self) {
        let oldest_wait_s = self.queue.front().map_or(0.0, |job| self.now - job.at_s);
        let signal = Signal {
            at: Duration::from_secs_f64(self.now),
            depth: self.queue.len() as u64,
            oldest_age: self
                .queue
                .front()
                .map(|_| Duration::from_secs_f64(oldest_wait_s)),
        };
        let replicas = self.replicas_ready_at.len() as u32;
        let decision = self.autoscaler.observe(signal, replicas);
        if let Some(to) = decision.target() {
            self.resize(to);
            self.decisions.push((self.now, decision));
            self.dispatch();
        }
        self.samples.push(Sample {
            t_s: self.now,
            depth: self.queue.len() as u64,
            replicas: self.replicas_ready_at.len() as u32,
            busy: self.running.len() as u32,
            oldest_wait_s,
            max_wait_s_so_far: self.max_wait_s,
        });
        self.next_tick += 1;
    }

    fn resize(&mut self, to: u32) {
        let to = to as usize;
        let ready_at = self.now + self.config.startup.as_secs_f64();
        self.replicas_ready_at.resize(to, ready_at);
    }

    fn is_done(&mut self) -> bool {
        let work_left = self.next_arrival < self.arrivals.len()
            || !self.queue.is_empty()
            || !self.running.is_empty();
        if work_left {
            self.idle_deadline = None;
            return false;
        }
        if self.replicas_ready_at.len() as u32 <= self.config.policy.min_replicas {
            return true;
        }
        let tail = idle_tail_s(self.config);
        let deadline = *self.idle_deadline.get_or_insert(self.now + tail);
        self.now >= deadline
    }

    fn finish(self) -> SimResult {
        let mut waits = self.waits;
        waits.sort_by(f64::total_cmp);
        let jobs = waits.len();
        let mean_wait_s = if jobs == 0 {
            0.0
        } else {
            waits.iter().sum::<f64>() / jobs as f64
        };
        let p95_index = (jobs as f64 * 0.95).ceil() as usize;
        SimResult {
            samples: self.samples,
            decisions: self.decisions,
            max_wait_s: waits.last().copied().unwrap_or(0.0),
            mean_wait_s,
            p95_wait_s: waits
                .get(p95_index.saturating_sub(1))
                .copied()
                .unwrap_or(0.0),
            replica_minutes: self.replica_seconds / 60.0,
            jobs,
        }
    }
}

/// A few lines for a human: jobs, waits, replica-minutes and scaling decisions.
pub fn summary(result: &SimResult) -> String {
    let outs = count_decisions(result, |d| matches!(d, Decision::ScaleOut { .. }));
    let ins = count_decisions(result, |d| matches!(d, Decision::ScaleIn { .. }));
    let peak = result.samples.iter().map(|s| s.replicas).max().unwrap_or(0);
    let span_min = result.samples.last().map_or(0.0, |s| s.t_s / 60.0);
    format!(
        "jobs: {}\n\
         wait: max {:.1}s, mean {:.1}s, p95 {:.1}s\n\
         replica-minutes: {:.1} over {:.1} min (peak {} replicas)\n\
         scale decisions: {} ({outs} out, {ins} in)\n",
        result.jobs,
        result.max_wait_s,
        result.mean_wait_s,
        result.p95_wait_s,
        result.replica_minutes,
        span_min,
        peak,
        result.decisions.len(),
    )
}

fn count_decisions(result: &SimResult, pick: impl Fn(&Decision) -> bool) -> usize {
    result.decisions.iter().filter(|(_, d)| pick(d)).count()
}
