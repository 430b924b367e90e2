//! The poll loop: registers (again when the server forgot the worker), long-polls for the
//! free slots and spawns a task per job received. One poll is out at a time; it asks for
//! every free slot, and the next one starts as soon as a slot is free (see [`free_slots`]).
//! Slots freed while a poll is out wait for its answer and go in the next one. (Two polls
//! out at once measured no faster: the server's claim is the bottleneck, not the wait.)

use std::sync::Arc;

use flotilla_proto::{PollRequest, RegisterRequest};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::sleep;
use tokio_util::sync::CancellationToken;
use tracing::{Span, debug, info};

use crate::backoff::Backoff;
use crate::job;
use crate::shared::Shared;

/// The most jobs one poll asks for (the server's limit).
const MAX_JOBS_PER_POLL: usize = 1000;

/// [`poll_loop`] until `stop`; the tasks of the jobs it took.
pub(crate) async fn poll_until(shared: Arc<Shared>, stop: CancellationToken) -> JoinSet<()> {
    let mut jobs = JoinSet::new();
    tokio::select! {
        () = stop.cancelled() => {}
        () = poll_loop(&shared, &mut jobs) => {}
    }
    jobs
}

/// Registers when needed, polls for the free slots and spawns a task per job received;
/// returns only if the slot semaphore closes (it never does).
async fn poll_loop(shared: &Arc<Shared>, jobs: &mut JoinSet<()>) {
    let mut backoff = Backoff::new(shared.config.reconnect);
    loop {
        while jobs.try_join_next().is_some() {}
        let Some(worker_id) = shared.registered_id() else {
            if !register(shared).await {
                sleep(backoff.next_delay()).await;
            }
            continue;
        };
        let Some(mut permits) = free_slots(&shared.slots).await else {
            return;
        };
        let request = PollRequest {
            worker_id,
            queues: shared.config.queues.clone(),
            max_jobs: u32::try_from(permits.len()).unwrap_or(u32::MAX),
            wait_ms: u64::try_from(shared.poll_wait().as_millis()).unwrap_or(u64::MAX),
        };
        shared.set_polling(permits.len());
        let polled = shared.client.poll(&request).await;
        shared.set_polling(0);
        match polled {
            Ok(polled) => {
                backoff.reset();
                shared.stats.call_ok();
                debug!(jobs = polled.jobs.len(), free = request.max_jobs, "polled");
                // No await from here on: a job received is always spawned.
                for claimed in polled.jobs {
                    match permits.pop() {
                        Some(permit) => jobs.spawn(job::run(shared.clone(), claimed, permit)),
                        None => jobs.spawn(job::hand_back(shared.clone(), claimed)),
                    };
                }
            }
            Err(err) => {
                drop(permits);
                shared.call_failed("poll", &err);
                let delay = backoff.next_delay();
                let attempt = backoff.attempts();
                debug!(?delay, attempt, "polling again after a pause");
                sleep(delay).await;
            }
        }
    }
}

/// Waits for a free slot, then takes every free one (up to [`MAX_JOBS_PER_POLL`]); `None`
/// if the semaphore closed. The jobs of one poll tend to end together, so while a turn of
/// the scheduler frees more slots, it takes those too: one poll then asks for all of them
/// rather than one for the first and another for the rest. No timer; each turn must free
/// a slot or the taking stops, so it never spins.
async fn free_slots(slots: &Arc<Semaphore>) -> Option<Vec<OwnedSemaphorePermit>> {
    let first = slots.clone().acquire_owned().await.ok()?;
    let mut permits = vec![first];
    loop {
        while permits.len() < MAX_JOBS_PER_POLL
            && let Ok(permit) = slots.clone().try_acquire_owned()
        {
            permits.push(permit);
        }
        if permits.len() >= MAX_JOBS_PER_POLL {
            return Some(permits);
        }
        tokio::task::yield_now().await;
        if slots.available_permits() == 0 {
            return Some(permits);
        }
    }
}

/// Registers under the worker's id (when it has one); whether it worked.
async fn register(shared: &Shared) -> bool {
    let config = &shared.config;
    let request = RegisterRequest {
        id: shared.registration_id(),
        host: config.host.clone(),
        pid: std::process::id(),
        queues: config.queues.clone(),
        concurrency: config.concurrency,
        version: config.version.clone(),
    };
    match shared.client.register(&request).await {
        Ok(reply) => {
            shared.stats.call_ok();
            Span::current().record("worker_id", reply.worker_id.as_str());
            let (lease_ms, max_wait_ms) = (reply.lease_ms, reply.max_wait_ms);
            info!(lease_ms, max_wait_ms, "registered");
            shared.registered(reply);
            true
        }
        Err(err) => {
            shared.call_failed("register", &err);
            false
        }
    }
}
