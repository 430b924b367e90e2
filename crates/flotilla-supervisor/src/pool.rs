//! One pool: its slots, its autoscaler, its crash history and the decisions it took.
//! Every change of the pool goes through here, so each is logged with its reason and kept
//! for the report.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use flotilla_fleet::{Autoscaler, Decision, Signal};
use flotilla_proto::{DecisionReport, PoolReport};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::config::PoolConfig;
use crate::memory::ProcessTable;
use crate::restart::CrashLog;
use crate::slot::{DrainReason, Exit, Launch, Slot, SlotState, describe_exit};

/// Decisions kept per pool for the report.
const DECISIONS_KEPT: usize = 20;

/// What the pool last heard of its queues.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct QueueSignal {
    pub(crate) depth: u64,
    pub(crate) oldest_age: Option<Duration>,
    pub(crate) dead: u64,
}

/// See the module docs.
pub(crate) struct Pool {
    pub(crate) index: usize,
    pub(crate) config: PoolConfig,
    launch: Launch,
    autoscaler: Autoscaler,
    pub(crate) slots: Vec<Slot>,
    crash_log: CrashLog,
    pub(crate) crash_loop: bool,
    pub(crate) crashes: u64,
    restarts: u64,
    scale_outs: u64,
    scale_ins: u64,
    pub(crate) signal: Option<QueueSignal>,
    decisions: VecDeque<DecisionReport>,
}

impl Pool {
    pub(crate) fn new(index: usize, config: PoolConfig, launch: Launch) -> Self {
        let autoscaler = Autoscaler::new(config.scaling.clone());
        Self {
            index,
            config,
            launch,
            autoscaler,
            slots: Vec::new(),
            crash_log: CrashLog::default(),
            crash_loop: false,
            crashes: 0,
            restarts: 0,
            scale_outs: 0,
            scale_ins: 0,
            signal: None,
            decisions: VecDeque::new(),
        }
    }

    /// Starts the pool's minimum number of processes.
    pub(crate) fn start(&mut self, exits: &mpsc::UnboundedSender<Exit>) {
        for _ in 0..self.config.scaling.min_replicas {
            self.add_slot(Duration::ZERO, exits);
        }
    }

    /// Processes the pool wants: every slot but those leaving it.
    pub(crate) fn desired(&self) -> u32 {
        let leaving = |s: &&Slot| {
            matches!(
                s.state,
                SlotState::Stopped
                    | SlotState::Draining {
                        why: DrainReason::ScaleIn | DrainReason::Shutdown,
                        ..
                    }
            )
        };
        self.slots.iter().filter(|s| !leaving(s)).count() as u32
    }

    /// Whether any process of the pool is still there.
    pub(crate) fn has_processes(&self) -> bool {
        self.slots.iter().any(Slot::has_process)
    }

    fn add_slot(&mut self, clock: Duration, exits: &mpsc::UnboundedSender<Exit>) {
        let n = (1..)
            .find(|n| !self.slots.iter().any(|s| s.id == self.slot_id(*n)))
            .unwrap_or(1);
        self.slots.push(Slot::new(self.slot_id(n)));
        self.start_slot(self.slots.len() - 1, clock, exits);
    }

    fn slot_id(&self, n: u32) -> String {
        format!("{}-{n}", self.config.name)
    }

    /// Starts a process in slot `i`; one that cannot start counts as a crash.
    fn start_slot(&mut self, i: usize, clock: Duration, exits: &mpsc::UnboundedSender<Exit>) {
        let slot = &mut self.slots[i];
        match slot.start(self.index, &self.launch, exits) {
            Ok(()) => {
                info!(pool = %self.config.name, worker = %slot.id, pid = slot.pid, "worker started")
            }
            Err(err) => {
                error!(pool = %self.config.name, worker = %slot.id, %err, "cannot start the worker");
                let how = format!("cannot start: {err}");
                slot.exited(how.clone());
                self.crashed(i, &how, clock);
            }
        }
    }

    /// Starts slot `i` again after a crash or a replacement.
    fn restart_slot(&mut self, i: usize, clock: Duration, exits: &mpsc::UnboundedSender<Exit>) {
        self.slots[i].restarts += 1;
        self.restarts += 1;
        self.start_slot(i, clock, exits);
    }

    /// A process of the pool ended.
    pub(crate) fn on_exit(&mut self, exit: Exit, clock: Duration) {
        let Some(i) = self.slots.iter().position(|s| s.id == exit.slot) else {
            return;
        };
        if self.slots[i].generation != exit.generation {
            return;
        }
        let how = describe_exit(&exit.status);
        let (name, id) = (self.config.name.clone(), exit.slot);
        let state = self.slots[i].state.clone();
        self.slots[i].exited(how.clone());
        match state {
            SlotState::Draining {
                why: DrainReason::ScaleIn,
                ..
            } => {
                info!(pool = %name, worker = %id, exit = %how, "worker drained and removed");
                self.slots.remove(i);
            }
            SlotState::Draining {
                why: DrainReason::Shutdown,
                ..
            }
            | SlotState::Stopped => {
                info!(pool = %name, worker = %id, exit = %how, "worker stopped");
                self.slots[i].state = SlotState::Stopped;
            }
            SlotState::Draining {
                why: DrainReason::Memory,
                ..
            } => {
                // Like a crash for the backoff and the crash-loop count: a job that always
                // blows the ceiling must not cycle through fresh workers at full speed.
                info!(pool = %name, worker = %id, exit = %how, "worker drained for memory; its replacement follows");
                self.back_off(i, clock);
            }
            SlotState::Running | SlotState::Backoff { .. } => {
                self.crashes += 1;
                self.crashed(i, &how, clock);
            }
        }
    }

    /// Slot `i`'s process ended on its own (or could not start): back off, note a crash loop.
    fn crashed(&mut self, i: usize, how: &str, clock: Duration) {
        let delay = self.back_off(i, clock);
        let id = self.slots[i].id.clone();
        warn!(pool = %self.config.name, worker = %id, exit = %how, ?delay, "worker crashed; restarting after backoff");
        let replicas = self.desired();
        let reason = format!(
            "{id} {how}; restart in {}",
            humantime::format_duration(round_ms(delay))
        );
        self.record("crash", replicas, replicas, reason);
    }

    /// Puts slot `i` in backoff and notes the event in the crash-loop window.
    fn back_off(&mut self, i: usize, clock: Duration) -> Duration {
        let policy = self.config.restart.clone();
        let slot = &mut self.slots[i];
        let delay = slot.backoff.after_crash(&policy, slot.started.elapsed());
        slot.state = SlotState::Backoff {
            until: Instant::now() + delay,
        };
        if self.crash_log.record(&policy, clock) && !self.crash_loop {
            self.crash_loop = true;
            let replicas = self.desired();
            let reason = format!(
                "{} crashes within {}: crash loop; restarts go on, backing off up to {}",
                policy.crash_loop_after,
                humantime::format_duration(policy.crash_loop_window),
                humantime::format_duration(policy.max_delay)
            );
            self.record("crash_loop", replicas, replicas, reason);
        }
        delay
    }

    /// Periodic duties: restarts that are due, overdue drains, the end of a crash loop.
    pub(crate) fn tick(&mut self, clock: Duration, exits: &mpsc::UnboundedSender<Exit>) {
        let now = Instant::now();
        for i in 0..self.slots.len() {
            if let SlotState::Backoff { until } = self.slots[i].state
                && now >= until
            {
                self.restart_slot(i, clock, exits);
            }
            self.slots[i].kill_if_overdue(now);
        }
        if self.crash_loop && !self.crash_log.is_looping(&self.config.restart, clock) {
            self.crash_loop = false;
            let replicas = self.desired();
            self.record(
                "recovered",
                replicas,
                replicas,
                "no crash loop any more".into(),
            );
        }
    }

    /// Reads each process's memory and drains those over the ceiling.
    pub(crate) fn check_memory(&mut self, table: &ProcessTable) {
        let limit = self.config.memory_limit;
        let grace = self.config.shutdown_grace;
        let mut over = Vec::new();
        for slot in &mut self.slots {
            slot.memory = slot
                .pid
                .filter(|_| slot.has_process())
                .and_then(|pid| table.tree_rss(pid));
            if let (Some(limit), Some(used), SlotState::Running) = (limit, slot.memory, &slot.state)
                && used > limit
            {
                slot.drain(DrainReason::Memory, grace);
                over.push((slot.id.clone(), used));
            }
        }
        let replicas = self.desired();
        for (id, used) in over {
            let reason = format!(
                "{id} uses {} MiB, over its ceiling of {} MiB: drained and replaced",
                used >> 20,
                limit.unwrap_or(0) >> 20
            );
            self.record("replace", replicas, replicas, reason);
        }
    }

    /// Feeds the autoscaler one signal and applies its decision.
    pub(crate) fn observe(
        &mut self,
        signal: QueueSignal,
        clock: Duration,
        exits: &mpsc::UnboundedSender<Exit>,
    ) {
        self.signal = Some(signal);
        let replicas = self.desired();
        let decision = self.autoscaler.observe(
            Signal {
                at: clock,
                depth: signal.depth,
                oldest_age: signal.oldest_age,
            },
            replicas,
        );
        match decision {
            Decision::Hold { .. } => {}
            Decision::ScaleOut { to, reason } => {
                for _ in replicas..to {
                    self.add_slot(clock, exits);
                }
                self.scale_outs += 1;
                self.record("scale_out", replicas, to, reason);
            }
            Decision::ScaleIn { to, reason } => {
                for _ in to..replicas {
                    self.remove_one();
                }
                self.scale_ins += 1;
                self.record("scale_in", replicas, to, reason);
            }
        }
    }

    /// Drains the slot that loses least: one with no process (waiting to restart) first,
    /// then no running jobs, then the fewest, the youngest among equals. Its jobs finish;
    /// it is removed once its process exited.
    fn remove_one(&mut self) {
        let grace = self.config.shutdown_grace;
        let candidate = self
            .slots
            .iter_mut()
            .filter(|s| !matches!(s.state, SlotState::Draining { .. } | SlotState::Stopped))
            .min_by_key(|s| {
                let busy = s.status.as_ref().map_or(usize::MAX, |st| st.running.len());
                (s.has_process(), busy, std::cmp::Reverse(s.started))
            });
        if let Some(slot) = candidate {
            if slot.has_process() {
                slot.drain(DrainReason::ScaleIn, grace);
            } else {
                // Waiting to restart: nothing runs, so it just goes.
                let id = slot.id.clone();
                self.slots.retain(|s| s.id != id);
            }
        }
    }

    /// Asks every process to drain, for the supervisor's exit.
    pub(crate) fn drain_all(&mut self) {
        let grace = self.config.shutdown_grace;
        for slot in &mut self.slots {
            slot.drain(DrainReason::Shutdown, grace);
        }
    }

    fn record(&mut self, action: &str, from: u32, to: u32, reason: String) {
        info!(pool = %self.config.name, action, from, to, %reason, "fleet decision");
        if self.decisions.len() == DECISIONS_KEPT {
            self.decisions.pop_front();
        }
        self.decisions.push_back(DecisionReport {
            at: chrono::Utc::now(),
            action: action.into(),
            from,
            to,
            reason,
        });
    }

    /// The pool as reported.
    pub(crate) fn report(&self) -> PoolReport {
        let now = Instant::now();
        let signal = self.signal.unwrap_or_default();
        PoolReport {
            name: self.config.name.clone(),
            queues: self.config.queues.clone(),
            concurrency: self.config.concurrency,
            min_replicas: self.config.scaling.min_replicas,
            max_replicas: self.config.scaling.max_replicas,
            desired_replicas: self.desired(),
            state: if self.crash_loop {
                "crash_loop"
            } else {
                "running"
            }
            .into(),
            depth: signal.depth,
            oldest_available_age_ms: signal.oldest_age.map(|d| d.as_millis() as u64),
            memory_limit_bytes: self.config.memory_limit,
            crashes: self.crashes,
            restarts: self.restarts,
            scale_outs: self.scale_outs,
            scale_ins: self.scale_ins,
            processes: self.slots.iter().map(|s| s.report(now)).collect(),
            decisions: self.decisions.iter().cloned().collect(),
        }
    }
}

/// Durations shown to people, to the millisecond.
fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}
