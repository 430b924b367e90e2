//! One job's life on the worker: run the handler in its own task, heartbeat at a third
//! of the lease, enforce the timeout, obey a cancel, then hand the outcome to the reporter
//! (see `report`) once.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use flotilla_core::{ErrorCode, JobId, LeaseToken, Timestamp, timeout_error};
use flotilla_proto::{HeartbeatRequest, Job};
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tokio::task::{JoinError, JoinHandle};
use tokio::time::{Instant, interval_at, sleep_until};
use tracing::{Instrument, Span, debug, error, info, info_span, warn};

use crate::report::{Ack, Report};
use crate::shared::Shared;
use crate::stats::Outcome;
use crate::{Handler, JobContext, JobError};

/// The shortest heartbeat interval, whatever the lease.
const MIN_HEARTBEAT: Duration = Duration::from_millis(50);
/// Stands for "never" where a deadline is needed.
const NO_DEADLINE: Duration = Duration::from_secs(365 * 24 * 3600);

/// Why a job was stopped before its handler returned.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stop {
    /// A heartbeat said the job was cancelled.
    Cancelled,
    /// A heartbeat was refused: the lease is gone.
    LeaseLost,
    /// The job's timeout passed.
    Timeout(Duration),
    /// The shutdown grace period is over.
    Shutdown,
}

/// The span every log line about `job` carries.
fn span(shared: &Shared, job: &Job) -> Span {
    info_span!(
        parent: None,
        "job",
        worker_id = %shared.worker_id(),
        queue = %job.queue,
        job_id = %job.id,
        kind = %job.kind,
        attempt = job.attempt
    )
}

/// Runs `job` in the slot `permit` holds, hands its outcome to the reporter and frees the
/// slot (without waiting for the server's answer).
pub(crate) async fn run(shared: Arc<Shared>, job: Job, permit: OwnedSemaphorePermit) {
    let span = span(&shared, &job);
    execute(shared, job, span.clone()).instrument(span).await;
    drop(permit);
}

/// Hands back a job the worker has no slot for (a server that sent too many).
pub(crate) async fn hand_back(shared: Arc<Shared>, job: Job) {
    let span = span(&shared, &job);
    async move {
        warn!("no free slot for the job; handing it back");
        if let Some(lease) = &job.lease {
            report_outcome(
                &shared,
                job.id,
                lease.token,
                Report::Release,
                Span::current(),
            )
            .await;
        }
    }
    .instrument(span)
    .await;
}

async fn execute(shared: Arc<Shared>, job: Job, span: Span) {
    let Some(token) = job.lease.as_ref().map(|l| l.token) else {
        error!("the server handed out a job without a lease; ignoring it");
        return;
    };
    let id = job.id;
    shared.stats.job_started(id);
    debug!("job started");
    let (outcome, report) = match shared.handler_for(&job.kind) {
        Some(handler) => supervise(&shared, job, token, handler).await,
        None => {
            let error = format!("no handler for kind {}", job.kind);
            (Outcome::NoHandler, Some(Report::fail(error, false)))
        }
    };
    match &report {
        Some(Report::Fail { error, retryable }) => info!(%error, retryable, "job failed"),
        Some(Report::Complete(_)) => debug!("job succeeded"),
        Some(Report::Release) => info!("job handed back unrun"),
        None => {}
    }
    shared.stats.job_finished(id, outcome);
    if let Some(report) = report {
        report_outcome(&shared, id, token, report, span).await;
    }
}

/// Hands `report` to the reporter, waiting while [`MAX_BATCH`](crate::report::MAX_BATCH)
/// outcomes already wait.
async fn report_outcome(shared: &Shared, id: JobId, token: LeaseToken, report: Report, span: Span) {
    let ack = Ack::new(id, token, report, span);
    if shared.acks.send(ack).await.is_err() {
        error!("the reporter has stopped; the outcome is not reported");
    }
}

/// Runs the handler under heartbeats, the timeout, cancels and the hard stop.
async fn supervise(
    shared: &Arc<Shared>,
    job: Job,
    token: LeaseToken,
    handler: Arc<dyn Handler>,
) -> (Outcome, Option<Report>) {
    let started = Instant::now();
    let lease = lease_length(&job, shared.default_lease(), Utc::now());
    let timeout = job.timeout_ms.map(Duration::from_millis);
    let ctx = JobContext::new(job, shared.worker_id());
    let mut task = tokio::spawn(handler.call(ctx.clone()).instrument(Span::current()));
    let (stop_tx, mut stop_rx) = oneshot::channel();
    let beats = heartbeats(shared.clone(), ctx.clone(), token, lease, stop_tx);
    let _beats = AbortOnDrop(tokio::spawn(beats.instrument(Span::current())));
    // A timeout too large to add is no timeout.
    let deadline = timeout.and_then(|t| started.checked_add(t));
    let expiry = sleep_until(deadline.unwrap_or(started + NO_DEADLINE));
    let stop = tokio::select! {
        joined = &mut task => return finished(joined),
        Ok(stop) = &mut stop_rx => stop,
        () = expiry, if deadline.is_some() => Stop::Timeout(timeout.unwrap_or_default()),
        () = shared.hard_stop.cancelled() => Stop::Shutdown,
    };
    info!(?stop, "stopping the handler");
    ctx.cancellation_token().cancel();
    let grace = shared.config.cancel_grace;
    if tokio::time::timeout(grace, &mut task).await.is_err() {
        task.abort();
        warn!(?grace, "the handler ignored its cancellation; aborted");
    }
    match stop {
        Stop::Cancelled => (Outcome::Cancelled, Some(Report::fail("cancelled", false))),
        Stop::LeaseLost => (Outcome::LeaseLost, None),
        Stop::Timeout(t) => (Outcome::Timeout, Some(Report::fail(timeout_error(t), true))),
        Stop::Shutdown => (Outcome::Shutdown, Some(Report::Release)),
    }
}

/// The outcome of a handler that returned (or panicked) by itself.
fn finished(joined: Result<Result<Value, JobError>, JoinError>) -> (Outcome, Option<Report>) {
    match joined {
        Ok(Ok(value)) => (Outcome::Succeeded, Some(Report::Complete(value))),
        Ok(Err(err)) => {
            let report = Report::fail(err.message(), err.is_retryable());
            (Outcome::Error, Some(report))
        }
        Err(err) => {
            let why = match err.try_into_panic() {
                Ok(panic) => panic_message(panic.as_ref()),
                Err(err) => err.to_string(),
            };
            let report = Report::fail(format!("handler panicked: {why}"), true);
            (Outcome::Panic, Some(report))
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".into()
    }
}

/// How long the job's lease is: from its expiry at claim time, else its own lease
/// setting, else the server's default.
fn lease_length(job: &Job, default: Duration, now: Timestamp) -> Duration {
    let by_expiry = job
        .lease
        .as_ref()
        .and_then(|lease| (lease.expires_at - now).to_std().ok())
        .filter(|d| !d.is_zero());
    by_expiry
        .or(job.lease_ms.map(Duration::from_millis))
        .unwrap_or(default)
}

/// Heartbeats every third of `lease` with the progress not sent yet, until the server
/// says to stop (sent on `stop`) or the task is aborted.
async fn heartbeats(
    shared: Arc<Shared>,
    ctx: JobContext,
    token: LeaseToken,
    lease: Duration,
    stop: oneshot::Sender<Stop>,
) {
    let every = (lease / 3).max(MIN_HEARTBEAT);
    let mut tick = interval_at(Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let id = ctx.job().id;
    let mut failures = 0u32;
    loop {
        tick.tick().await;
        let progress = ctx.take_progress();
        let beat = HeartbeatRequest {
            token,
            worker_id: shared.registered_id(),
            progress: progress.clone(),
        };
        // A beat that takes longer than the interval is as good as lost.
        let limit = every.max(Duration::from_secs(1));
        let answer = tokio::time::timeout(limit, shared.client.heartbeat(id, &beat)).await;
        match answer {
            Ok(Ok(beat)) => {
                shared.stats.call_ok();
                failures = 0;
                debug!(expires_at = %beat.expires_at, "heartbeat");
                if beat.cancel_requested {
                    info!("the server cancelled the job");
                    let _ = stop.send(Stop::Cancelled);
                    return;
                }
            }
            Ok(Err(err)) if err.is(ErrorCode::PayloadTooLarge) => {
                warn!(error = %err, "progress too large for the server; dropped");
            }
            Ok(Err(err)) if !err.is_retryable() => {
                warn!(error = %err, "heartbeat refused: the lease is lost");
                let _ = stop.send(Stop::LeaseLost);
                return;
            }
            failed => {
                shared.stats.call_failed();
                failures += 1;
                if let Some(progress) = progress {
                    ctx.restore_progress(progress);
                }
                let error = match failed {
                    Ok(Err(err)) => err.to_string(),
                    _ => format!("no answer within {limit:?}"),
                };
                warn!(%error, failures, "heartbeat failed; trying again at the next beat");
            }
        }
    }
}

/// Aborts the task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::job;
    use serde_json::json;

    #[test]
    fn lease_length_prefers_the_claimed_expiry() {
        let mut j = job("k", json!(null));
        let default = Duration::from_secs(30);
        let expires = j.lease.as_ref().unwrap().expires_at;
        let now = expires - chrono::Duration::seconds(12);
        assert_eq!(lease_length(&j, default, now), Duration::from_secs(12));
        // An expiry in the past (clock skew): the job's own lease, else the default.
        let late = expires + chrono::Duration::seconds(1);
        assert_eq!(lease_length(&j, default, late), default);
        j.lease_ms = Some(9000);
        assert_eq!(lease_length(&j, default, late), Duration::from_secs(9));
    }

    #[tokio::test]
    async fn handler_outcomes_map_to_reports() {
        let ok = finished(Ok(Ok(json!(1))));
        assert_eq!(ok, (Outcome::Succeeded, Some(Report::Complete(json!(1)))));
        let fatal = finished(Ok(Err(JobError::fatal("bad input"))));
        assert_eq!(
            fatal,
            (Outcome::Error, Some(Report::fail("bad input", false)))
        );
        let panicked = tokio::spawn(async { panic!("oops") }).await;
        let (outcome, report) = finished(panicked.map(|()| Ok(Value::Null)));
        assert_eq!(outcome, Outcome::Panic);
        assert_eq!(report, Some(Report::fail("handler panicked: oops", true)));
    }
}
