//! One place in a pool for a worker process: starting it with the pool's arguments,
//! signalling it, and what is known of it (state, memory, the health it reports). A slot
//! outlives its processes: a restart is a new process in the same slot, under the same
//! worker id, so the server sees one worker come back rather than a new one.
//!
//! Signals go through a pidfd opened at spawn, never a bare pid: the process is reaped by
//! the task that waits for it, and a pid may be reused before the loop hears of the exit;
//! a pidfd names that one process, dead or alive.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use flotilla_proto::{ProcessReport, WorkerSelfStatus};
use tokio::sync::mpsc;
use tracing::warn;

use crate::restart::Backoff;

/// What a slot is doing.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SlotState {
    /// A process runs.
    Running,
    /// A process was asked to stop (SIGTERM); it is killed at `kill_at` if still there.
    Draining {
        /// Why it stops, which says what happens once it exited.
        why: DrainReason,
        /// When SIGKILL follows.
        kill_at: Instant,
    },
    /// The process crashed; the next one starts at `until`.
    Backoff {
        /// When to start again.
        until: Instant,
    },
    /// No process, and none will start (the supervisor is stopping).
    Stopped,
}

/// Why a process is being drained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DrainReason {
    /// The pool shrinks: the slot goes away once the process exited.
    ScaleIn,
    /// Over the memory ceiling: a new process starts in the slot at once.
    Memory,
    /// The supervisor stops.
    Shutdown,
}

/// A process ended: which slot, which of its processes, and how.
#[derive(Debug)]
pub(crate) struct Exit {
    pub(crate) pool: usize,
    pub(crate) slot: String,
    pub(crate) generation: u64,
    pub(crate) status: std::io::Result<ExitStatus>,
}

/// How to start a pool's workers.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    pub(crate) program: String,
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) extra_args: Vec<String>,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) id: String,
    pub(crate) state: SlotState,
    pub(crate) pid: Option<u32>,
    pidfd: Option<OwnedFd>,
    pub(crate) health_addr: Option<SocketAddr>,
    pub(crate) started: Instant,
    pub(crate) generation: u64,
    pub(crate) restarts: u64,
    pub(crate) backoff: Backoff,
    pub(crate) memory: Option<u64>,
    pub(crate) status: Option<WorkerSelfStatus>,
    pub(crate) last_exit: Option<String>,
}

impl Slot {
    /// A slot with no process yet.
    pub(crate) fn new(id: String) -> Self {
        Self {
            id,
            state: SlotState::Stopped,
            pid: None,
            pidfd: None,
            health_addr: None,
            started: Instant::now(),
            generation: 0,
            restarts: 0,
            backoff: Backoff::default(),
            memory: None,
            status: None,
            last_exit: None,
        }
    }

    /// Starts a process in the slot; its exit is sent on `exits`.
    pub(crate) fn start(
        &mut self,
        pool: usize,
        launch: &Launch,
        exits: &mpsc::UnboundedSender<Exit>,
    ) -> std::io::Result<()> {
        let health_addr = free_loopback_port()?;
        let mut command = tokio::process::Command::new(&launch.program);
        command
            .args(&launch.args)
            .args(["--id", &self.id, "--health-addr", &health_addr.to_string()])
            .args(&launch.extra_args)
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            // Its own process group: a terminal's Ctrl-C reaches the supervisor only, which
            // then drains its workers in order.
            .process_group(0)
            .kill_on_drop(false);
        let mut child = command.spawn()?;
        self.generation += 1;
        self.pid = child.id();
        self.pidfd = self
            .pid
            .and_then(|p| rustix::process::Pid::from_raw(p as i32))
            .and_then(|p| {
                rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok()
            });
        self.health_addr = Some(health_addr);
        self.started = Instant::now();
        self.state = SlotState::Running;
        self.memory = None;
        self.status = None;
        let (exits, slot, generation) = (exits.clone(), self.id.clone(), self.generation);
        tokio::spawn(async move {
            let status = child.wait().await;
            let _ = exits.send(Exit {
                pool,
                slot,
                generation,
                status,
            });
        });
        Ok(())
    }

    /// Whether a process is (still) there.
    pub(crate) fn has_process(&self) -> bool {
        matches!(self.state, SlotState::Running | SlotState::Draining { .. })
    }

    /// Asks the process to drain (SIGTERM); SIGKILL follows after `grace` plus a margin.
    pub(crate) fn drain(&mut self, why: DrainReason, grace: Duration) {
        if let SlotState::Draining { why: current, .. } = &mut self.state {
            // Already draining: a shutdown overrides what a scale-in or memory drain would
            // have done next.
            if why == DrainReason::Shutdown {
                *current = why;
            }
            return;
        }
        if !self.has_process() {
            self.state = SlotState::Stopped;
            return;
        }
        self.send_signal(rustix::process::Signal::TERM);
        self.state = SlotState::Draining {
            why,
            kill_at: Instant::now() + grace + KILL_MARGIN,
        };
    }

    /// Kills a draining process whose time is up.
    pub(crate) fn kill_if_overdue(&mut self, now: Instant) {
        let SlotState::Draining { why, kill_at } = self.state else {
            return;
        };
        if now < kill_at {
            return;
        }
        warn!(worker = %self.id, "drain took too long; killing the process and its children");
        // Children first (an --exec handler runs in a process group of its own), while the
        // worker is still there to be their parent.
        if let Some(pid) = self.pid {
            for child in crate::memory::descendants(pid) {
                if let Some(child) = rustix::process::Pid::from_raw(child as i32) {
                    let _ = rustix::process::kill_process(child, rustix::process::Signal::KILL);
                }
            }
        }
        self.send_signal(rustix::process::Signal::KILL);
        // Once is enough; the exit follows.
        self.state = SlotState::Draining {
            why,
            kill_at: now + KILL_MARGIN,
        };
    }

    fn send_signal(&self, signal: rustix::process::Signal) {
        let Some(pidfd) = &self.pidfd else {
            return;
        };
        if let Err(err) = rustix::process::pidfd_send_signal(pidfd, signal) {
            warn!(worker = %self.id, %err, "cannot signal the worker process");
        }
    }

    /// Forgets the process that exited, keeping how it ended.
    pub(crate) fn exited(&mut self, how: String) {
        self.last_exit = Some(how);
        self.pid = None;
        self.pidfd = None;
        self.status = None;
        self.memory = None;
    }

    /// What a report shows of the slot.
    pub(crate) fn report(&self, now: Instant) -> ProcessReport {
        let state = match self.state {
            SlotState::Running if self.status.is_none() => "starting",
            SlotState::Running => "running",
            SlotState::Draining { .. } => "draining",
            SlotState::Backoff { .. } => "backoff",
            SlotState::Stopped => "stopped",
        };
        ProcessReport {
            id: self.id.clone(),
            pid: self.has_process().then_some(self.pid).flatten(),
            state: state.into(),
            uptime_ms: if self.has_process() {
                now.duration_since(self.started).as_millis() as u64
            } else {
                0
            },
            restarts: self.restarts,
            memory_bytes: self.memory,
            health: self.status.as_ref().map(|s| s.health),
            current_jobs: self
                .status
                .as_ref()
                .map(|s| s.running.clone())
                .unwrap_or_default(),
            last_exit: self.last_exit.clone(),
        }
    }
}

/// After a drain's grace, the process gets this long to exit before SIGKILL: more than a
/// worker's own drain takes past its grace (5 s for cancelled handlers to stop, 10 s to
/// report), so its jobs are handed back rather than left to their leases.
const KILL_MARGIN: Duration = Duration::from_secs(30);

/// A loopback address with a port free now, for a worker's health port.
fn free_loopback_port() -> std::io::Result<SocketAddr> {
    TcpListener::bind(("127.0.0.1", 0))?.local_addr()
}

/// How a process ended, in words: `exit code 3`, `killed by signal 9 (SIGKILL)`.
pub(crate) fn describe_exit(status: &std::io::Result<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(9)) => "killed by signal 9 (SIGKILL)".into(),
            (None, Some(15)) => "killed by signal 15 (SIGTERM)".into(),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            (None, None) => "ended".into(),
        },
        Err(err) => format!("lost: {err}"),
    }
}
