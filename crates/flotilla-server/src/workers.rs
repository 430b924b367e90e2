//! Registered workers: who they are, when they were last heard from, and what they last
//! reported. Kept in memory: a worker re-registers (keeping its id) when a server restarts.
//!
//! Each worker also has a drain signal: when it reports that it is draining, its long-poll
//! waiting on this server ends at once (empty), so a stopping worker is not handed jobs it
//! would only give back, and a poll it sent just before stopping is answered promptly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_core::Clock;
use flotilla_proto::{RegisterRequest, WorkerHealth, WorkerStatusRequest, WorkerView};
use tokio_util::sync::CancellationToken;

/// A worker not heard from for this long shows as unhealthy.
pub const SILENT_AFTER: Duration = Duration::from_secs(60);
/// A worker not heard from for this long is forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(600);

/// See the module docs.
pub struct WorkerRegistry {
    clock: Arc<dyn Clock>,
    workers: Mutex<HashMap<String, Registered>>,
}

/// A worker as shown, and its drain signal (cancelled once it reports draining).
struct Registered {
    view: WorkerView,
    drain: CancellationToken,
}

impl WorkerRegistry {
    /// An empty registry.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            workers: Mutex::new(HashMap::new()),
        }
    }

    /// Registers a worker (again, if it gives its id) and returns its id.
    pub fn register(&self, req: RegisterRequest) -> String {
        let now = self.clock.now();
        let id = req
            .id
            .clone()
            .unwrap_or_else(|| format!("{}-{}-{:04x}", req.host, req.pid, rand::random::<u16>()));
        let view = WorkerView {
            id: id.clone(),
            host: req.host,
            pid: req.pid,
            queues: req.queues,
            concurrency: req.concurrency,
            version: req.version,
            health: WorkerHealth::Healthy,
            draining: false,
            running: Vec::new(),
            succeeded: 0,
            failed: 0,
            registered_at: now,
            last_seen_at: now,
        };
        let drain = CancellationToken::new();
        self.workers
            .lock()
            .expect("registry lock")
            .insert(id.clone(), Registered { view, drain });
        id
    }

    /// Notes that `id` polls (it was heard from) and returns its drain signal, cancelled
    /// once it reported that it is draining; `None` if it is not registered. A long-poll of
    /// the worker ends when the signal fires.
    pub fn polling(&self, id: &str) -> Option<CancellationToken> {
        let now = self.clock.now();
        let mut workers = self.workers.lock().expect("registry lock");
        workers.get_mut(id).map(|w| {
            w.view.last_seen_at = now;
            w.drain.clone()
        })
    }

    /// Notes that `id` was heard from; `false` if it is not registered.
    pub fn touch(&self, id: &str) -> bool {
        let now = self.clock.now();
        let mut workers = self.workers.lock().expect("registry lock");
        match workers.get_mut(id) {
            Some(w) => {
                w.view.last_seen_at = now;
                true
            }
            None => false,
        }
    }

    /// Stores a worker's report; `false` if it is not registered.
    pub fn report(&self, id: &str, status: WorkerStatusRequest) -> bool {
        let now = self.clock.now();
        let mut workers = self.workers.lock().expect("registry lock");
        let Some(Registered { view: w, drain }) = workers.get_mut(id) else {
            return false;
        };
        if status.draining {
            drain.cancel();
        }
        w.health = status.health;
        w.running = status.running;
        w.succeeded = status.succeeded;
        w.failed = status.failed;
        w.draining = status.draining;
        w.last_seen_at = now;
        true
    }

    /// Every worker, by id; one silent for [`SILENT_AFTER`] shows as unhealthy, and one
    /// silent for [`FORGET_AFTER`] is dropped.
    pub fn list(&self) -> Vec<WorkerView> {
        let now = self.clock.now();
        let mut workers = self.workers.lock().expect("registry lock");
        let silent = |w: &WorkerView| (now - w.last_seen_at).to_std().unwrap_or_default();
        workers.retain(|_, w| silent(&w.view) < FORGET_AFTER);
        let mut list: Vec<WorkerView> = workers
            .values()
            .map(|w| {
                let mut w = w.view.clone();
                if silent(&w) >= SILENT_AFTER {
                    w.health = WorkerHealth::Unhealthy;
                }
                w
            })
            .collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_core::ManualClock;

    fn req(id: Option<&str>) -> RegisterRequest {
        RegisterRequest {
            id: id.map(str::to_owned),
            host: "h".into(),
            pid: 7,
            queues: vec!["q".into()],
            concurrency: 2,
            version: "t".into(),
        }
    }

    #[test]
    fn silent_workers_turn_unhealthy_then_are_forgotten() {
        let clock = ManualClock::at_epoch();
        let registry = WorkerRegistry::new(Arc::new(clock.clone()));
        let id = registry.register(req(Some("w1")));
        assert_eq!(id, "w1");
        assert_eq!(registry.list()[0].health, WorkerHealth::Healthy);
        clock.advance(SILENT_AFTER);
        assert_eq!(registry.list()[0].health, WorkerHealth::Unhealthy);
        assert!(registry.touch("w1"));
        assert_eq!(registry.list()[0].health, WorkerHealth::Healthy);
        clock.advance(FORGET_AFTER);
        assert!(registry.list().is_empty());
        assert!(
            !registry.touch("w1"),
            "a forgotten worker must register again"
        );
    }

    #[test]
    fn a_worker_without_id_gets_one() {
        let registry = WorkerRegistry::new(Arc::new(ManualClock::at_epoch()));
        let id = registry.register(req(None));
        assert!(id.starts_with("h-7-"));
    }
}
