//! The broker: claims for workers, waiting for work without polling the store in a loop.
//!
//! Each queue has a [`Notify`]. A long-poll registers interest in its queues *before* it
//! tries to claim, so an enqueue that lands between the claim and the wait still wakes it;
//! then it waits on those notifications with its deadline. Whatever makes jobs available
//! (an enqueue, a promotion, a retry, a replay, a reaped lease) calls [`Broker::wake`].

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_core::{Clock, Job};
use flotilla_store::{JobClaimParams, Store, StoreResult};
use futures::future::select_all;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The longest a poll may wait.
pub const MAX_WAIT: Duration = Duration::from_secs(20);

/// Hands out jobs to workers and wakes waiting polls.
pub struct Broker {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    queues: Mutex<HashMap<String, Arc<Notify>>>,
    waiting: AtomicUsize,
    /// Queues with a concurrency or rate limit: a finished job or time passing can make
    /// work claimable there without any new job, so they are woken on those too.
    limited: Mutex<HashSet<String>>,
}

impl Broker {
    /// A broker over `store`, taking `now` from `clock`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            queues: Mutex::new(HashMap::new()),
            waiting: AtomicUsize::new(0),
            limited: Mutex::new(HashSet::new()),
        }
    }

    fn notify(&self, queue: &str) -> Arc<Notify> {
        let mut queues = self.queues.lock().expect("broker lock");
        queues.entry(queue.to_owned()).or_default().clone()
    }

    /// Wakes the polls waiting on `queue`.
    pub fn wake(&self, queue: &str) {
        self.notify(queue).notify_waiters();
    }

    /// How many polls are waiting for work right now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Notes whether `queue` has a concurrency, group or rate limit.
    pub fn set_limited(&self, queue: &str, limited: bool) {
        let mut set = self.limited.lock().expect("broker lock");
        if limited {
            set.insert(queue.to_owned());
        } else {
            set.remove(queue);
        }
    }

    /// Wakes the polls waiting on limited queues: a job ended, or time passed, so a limit
    /// may have room again.
    pub fn wake_limited(&self) {
        let limited: Vec<String> = self
            .limited
            .lock()
            .expect("broker lock")
            .iter()
            .cloned()
            .collect();
        for queue in limited {
            self.wake(&queue);
        }
    }

    /// Wakes every waiting poll.
    pub fn wake_all(&self) {
        let queues = self.queues.lock().expect("broker lock");
        for notify in queues.values() {
            notify.notify_waiters();
        }
    }

    /// Claims up to `max_jobs` from `queues` for `worker_id`, waiting up to `wait` (capped at
    /// [`MAX_WAIT`]) for the first one. Returns at once when jobs are available, and with an
    /// empty list when the wait ends or `stop` fires (the worker began draining).
    pub async fn poll(
        &self,
        worker_id: &str,
        queues: &[String],
        max_jobs: u32,
        wait: Duration,
        stop: &CancellationToken,
    ) -> StoreResult<Vec<Job>> {
        let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
        let notifies: Vec<Arc<Notify>> = queues.iter().map(|q| self.notify(q)).collect();
        loop {
            // Register before claiming, so a wake between the claim and the wait is kept.
            let mut waits: Vec<Pin<Box<tokio::sync::futures::Notified<'_>>>> =
                notifies.iter().map(|n| Box::pin(n.notified())).collect();
            for w in &mut waits {
                w.as_mut().enable();
            }
            let jobs = self
                .store
                .job_claim(JobClaimParams {
                    queues: queues.to_vec(),
                    limit: max_jobs,
                    worker_id: worker_id.to_owned(),
                    now: self.clock.now(),
                })
                .await?;
            if !jobs.is_empty()
                || max_jobs == 0
                || stop.is_cancelled()
                || tokio::time::Instant::now() >= deadline
                || waits.is_empty()
            {
                return Ok(jobs);
            }
            self.waiting.fetch_add(1, Ordering::Relaxed);
            let woken = tokio::select! {
                woken = tokio::time::timeout_at(deadline, select_all(waits)) => woken.is_ok(),
                () = stop.cancelled() => false,
            };
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            if !woken {
                return Ok(Vec::new());
            }
        }
    }
}
