//! Busy polling: keeping the CPUs awake for a moment after each request.
//!
//! Why: a CPU with nothing to run halts, and on a virtual machine waking a halted CPU (for
//! the next request's packet, a disk flush's completion, a hand-off between threads) costs
//! tens of microseconds: more than parsing a request and inserting a row. A producer that
//! sends requests one after another pays several such wake-ups per request, so the time
//! between its requests is mostly spent waking CPUs. Polling servers (Seastar, DPDK, the
//! kernel's `haltpoll` idle governor, Go's scheduler on a smaller scale) trade some CPU for
//! that latency.
//!
//! How: for a window after each request (`busy_poll` in `flotilla.toml`, 200 µs by
//! default; `0` turns it off), one thread per CPU spins. The threads run at Linux's
//! `SCHED_IDLE` priority, so they only ever use a CPU that would otherwise halt: any other
//! thread, of this process or another, preempts them at once. When no request came for a
//! whole window they sleep, and the next request wakes them. The cost is the spinning:
//! at most one window of CPU time per CPU per request, and nothing while the server is
//! idle.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The handle requests touch; cheap to clone. See the module doc.
#[derive(Clone)]
pub struct BusyPoll {
    shared: Arc<Shared>,
}

struct Shared {
    /// What `last` counts from.
    epoch: Instant,
    /// Nanoseconds from `epoch` to the last request.
    last: AtomicU64,
    /// How long after a request the threads spin, in nanoseconds.
    window: u64,
    /// The threads sleep (no request for a whole window); the next touch wakes them.
    asleep: AtomicBool,
    wake: Mutex<()>,
    woken: Condvar,
}

impl BusyPoll {
    /// Starts one spinning thread per CPU, each spinning for `window` after every
    /// [`BusyPoll::touch`], and returns once they run at idle priority; `None` when
    /// `window` is zero or no thread could start (or lower its priority).
    pub fn start(window: Duration) -> Option<BusyPoll> {
        if window.is_zero() {
            return None;
        }
        let shared = Arc::new(Shared {
            epoch: Instant::now(),
            last: AtomicU64::new(0),
            window: u64::try_from(window.as_nanos()).unwrap_or(u64::MAX),
            asleep: AtomicBool::new(true),
            wake: Mutex::new(()),
            woken: Condvar::new(),
        });
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let (ready_tx, ready) = std::sync::mpsc::channel();
        for cpu in 0..cpus {
            let shared = shared.clone();
            let ready_tx = ready_tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("flotilla-busy-poll-{cpu}"))
                .spawn(move || shared.spin_on(cpu, ready_tx));
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "busy polling: cannot start a thread");
            }
        }
        drop(ready_tx);
        let started = ready.iter().filter(|idle| *idle).count();
        (started > 0).then_some(BusyPoll { shared })
    }

    /// Records a request: the threads spin for a window from now.
    pub fn touch(&self) {
        let s = &self.shared;
        s.last.store(s.now(), Ordering::SeqCst);
        if s.asleep.load(Ordering::SeqCst) {
            let _guard = s.wake.lock().unwrap_or_else(|e| e.into_inner());
            s.asleep.store(false, Ordering::SeqCst);
            s.woken.notify_all();
        }
    }
}

impl Shared {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn within_window(&self) -> bool {
        self.now().saturating_sub(self.last.load(Ordering::SeqCst)) < self.window
    }

    /// One thread's life: idle priority (said on `ready`), its own CPU, spin while
    /// requests come, sleep when they stop.
    fn spin_on(&self, cpu: usize, ready: std::sync::mpsc::Sender<bool>) {
        let idle = lower_to_idle_priority();
        let _ = ready.send(idle.is_ok());
        drop(ready); // `start` waits until every thread has said
        if let Err(e) = idle {
            // Spinning at normal priority would take CPU from real work: don't.
            tracing::warn!(error = %e, "busy polling: cannot lower the thread's priority; off");
            return;
        }
        core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
        loop {
            while self.within_window() {
                std::hint::spin_loop();
            }
            self.sleep_until_touched();
        }
    }

    fn sleep_until_touched(&self) {
        let mut guard = self.wake.lock().unwrap_or_else(|e| e.into_inner());
        self.asleep.store(true, Ordering::SeqCst);
        // A touch between the window's end and `asleep` saw `asleep` false and woke no
        // one: look at `last` once more before sleeping.
        while !self.within_window() {
            if !self.asleep.load(Ordering::SeqCst) {
                return;
            }
            guard = self.woken.wait(guard).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Puts the calling thread at `SCHED_IDLE` priority.
#[cfg(target_os = "linux")]
fn lower_to_idle_priority() -> Result<(), String> {
    use thread_priority::{NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy};
    thread_priority::set_thread_priority_and_policy(
        thread_priority::thread_native_id(),
        ThreadPriority::Min,
        ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
    )
    .map_err(|e| format!("{e:?}"))
}

/// Only Linux has `SCHED_IDLE`: elsewhere busy polling stays off.
#[cfg(not(target_os = "linux"))]
fn lower_to_idle_priority() -> Result<(), String> {
    Err("SCHED_IDLE exists on Linux only".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scheduling policy of each of this process's threads named `name*`
    /// (`/proc/self/task/*/sched`).
    fn policies_of(name: &str) -> Vec<String> {
        let mut policies = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap() {
            let dir = task.unwrap().path();
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            if !comm.starts_with(name) {
                continue;
            }
            let sched = std::fs::read_to_string(dir.join("sched")).unwrap_or_default();
            let policy = sched
                .lines()
                .find(|l| l.starts_with("policy"))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_owned());
            policies.extend(policy);
        }
        policies
    }

    #[test]
    fn a_zero_window_turns_busy_polling_off() {
        assert!(BusyPoll::start(Duration::ZERO).is_none());
    }

    /// The spinning threads run at `SCHED_IDLE` (policy 5), so they can never take a CPU
    /// from real work; one per CPU; a touch wakes them.
    #[cfg(target_os = "linux")]
    #[test]
    fn spinners_run_at_idle_priority_one_per_cpu() {
        let busy = BusyPoll::start(Duration::from_micros(50)).expect("started");
        // Thread names are cut to 15 bytes: "flotilla-busy-p".
        let policies = policies_of("flotilla-busy-p");
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        assert!(policies.len() >= cpus, "{policies:?}");
        assert!(policies.iter().all(|p| p == "5"), "{policies:?}");
        busy.touch();
        assert!(!busy.shared.asleep.load(Ordering::SeqCst));
    }
}
