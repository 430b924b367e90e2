//! The poll loop: registers (again when the server forgot the worker), long-polls for the
//! free slots and spawns a task per job received. One poll is out at a time; it asks for
//! every free slot, and the next one starts as soon as a slot is free (see [`free_slots`]).
//! Slots freed while a poll is out wait for its answer and go in the next one. (Two polls
//! out at once measured no faster: the server's claim is the bottleneck, not the wait.)
//!
//! A stop while a poll is out does not drop it: the server may already have claimed jobs
//! for it, which would then wait for their leases to lapse. The worker reports that it is
//! draining, which ends its poll on the server at once, and hands back whatever it brings.

use std::sync::Arc;

use flotilla_client::ClientError;
use flotilla_proto::{PollRequest, PollResponse, RegisterRequest};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{Span, debug, info, warn};

use crate::backoff::Backoff;
use crate::job;
use crate::runtime::{FINAL_STATUS_TIMEOUT, send_status};
use crate::shared::Shared;

/// The most jobs one poll asks for (the server's limit).
const MAX_JOBS_PER_POLL: usize = 1000;

/// [`poll_loop`] until `stop`; the tasks of the jobs it took.
pub(crate) async fn poll_until(shared: Arc<Shared>, stop: CancellationToken) -> JoinSet<()> {
    let mut jobs = JoinSet::new();
    poll_loop(&shared, &mut jobs, &stop).await;
    jobs
}

/// Registers when needed, polls for the free slots and spawns a task per job received,
/// until `stop` (or the slot semaphore closes, which it never does).
async fn poll_loop(shared: &Arc<Shared>, jobs: &mut JoinSet<()>, stop: &CancellationToken) {
    let mut backoff = Backoff::new(shared.config.reconnect);
    loop {
        while jobs.try_join_next().is_some() {}
        let Some(worker_id) = shared.registered_id() else {
            let registered = tokio::select! {
                registered = register(shared) => registered,
                () = stop.cancelled() => return,
            };
            if !registered {
                pause(backoff.next_delay(), stop).await;
            }
            continue;
        };
        let permits = tokio::select! {
            permits = free_slots(&shared.slots) => permits,
            () = stop.cancelled() => return,
        };
        let Some(mut permits) = permits else {
            return;
        };
        let request = PollRequest {
            worker_id,
            queues: shared.config.queues.clone(),
            max_jobs: u32::try_from(permits.len()).unwrap_or(u32::MAX),
            wait_ms: u64::try_from(shared.poll_wait().as_millis()).unwrap_or(u64::MAX),
        };
        shared.set_polling(permits.len());
        let polled = poll_or_stop(shared, &request, stop).await;
        shared.set_polling(0);
        if stop.is_cancelled() {
            // Whatever this poll brought is handed back: the worker is stopping.
            for claimed in polled.map(|p| p.jobs).unwrap_or_default() {
                jobs.spawn(job::hand_back(shared.clone(), claimed));
            }
            return;
        }
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
                pause(delay, stop).await;
            }
        }
    }
}

/// Sends `request` and waits for its answer. If `stop` fires meanwhile, reports that the
/// worker is draining (the server then ends the poll at once) and still waits for the
/// answer, for at most [`FINAL_STATUS_TIMEOUT`] more.
async fn poll_or_stop(
    shared: &Shared,
    request: &PollRequest,
    stop: &CancellationToken,
) -> Result<PollResponse, ClientError> {
    let poll = shared.client.poll(request);
    tokio::pin!(poll);
    tokio::select! {
        polled = &mut poll => return polled,
        () = stop.cancelled() => {}
    }
    shared.start_draining();
    let ended = async {
        send_status(shared).await;
        poll.await
    };
    match timeout(FINAL_STATUS_TIMEOUT, ended).await {
        Ok(polled) => polled,
        Err(_) => {
            warn!(
                "the poll in flight did not end after the draining report; its jobs, if any, wait for their leases to lapse"
            );
            Ok(PollResponse { jobs: Vec::new() })
        }
    }
}

/// Sleeps for `delay`, or until `stop`.
async fn pause(delay: std::time::Duration, stop: &CancellationToken) {
    tokio::select! {
        () = sleep(delay) => {}
        () = stop.cancelled() => {}
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
