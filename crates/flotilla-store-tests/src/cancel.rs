//! Cancellation: waiting jobs are cancelled at once; a running job only gets
//! `cancel_requested`, delivered by its next heartbeat, and then ends cancelled when it fails
//! or loses its lease, or succeeded when it completes anyway. Terminal jobs refuse.

use std::time::Duration;

use flotilla_core::{Clock, ErrorCode, JobState};
use flotilla_store::JobCancelParams;

use crate::Harness;
use crate::support::*;

/// Scheduled and available jobs become cancelled at once, with `finished_at`, and are never
/// handed out, not even once due.
pub async fn waiting_jobs_are_cancelled_at_once(h: Harness) {
    queue(&h, "q").await;
    let ready = insert(&h, job("q", "work")).await;
    let later = insert(&h, job("q", "work").run_at(plus(h.clock.now(), secs(10)))).await;
    h.clock.advance(secs(1));
    for id in [ready, later] {
        let now_cancelled = cancel(&h, id).await;
        assert_eq!(
            (now_cancelled.id, now_cancelled.state),
            (id, JobState::Cancelled)
        );
        assert_eq!(now_cancelled.finished_at, Some(h.clock.now()));
        assert_eq!(get(&h, id).await, now_cancelled);
    }
    h.clock.advance(secs(20));
    assert_eq!(
        h.store
            .job_promote_due(maintenance(&h))
            .await
            .unwrap()
            .promoted,
        0
    );
    assert!(claim(&h, &["q"], 10).await.is_empty());
    let s = stats(&h, "q").await;
    assert_eq!((s.counts.cancelled, s.totals.cancelled), (2, 2));
}

/// Cancelling a running job leaves it running with `cancel_requested`; the next heartbeat
/// says so, and a retryable failure then ends it cancelled instead of retrying.
pub async fn running_job_gets_request_then_fails_into_cancelled(h: Harness) {
    queue_retrying(&h, "q", limited(5, Duration::ZERO)).await;
    let busy = running(&h, "q").await;
    let requested = cancel(&h, busy.id).await;
    assert_eq!(
        (requested.state, requested.cancel_requested),
        (JobState::Running, true)
    );
    assert_eq!(requested.lease, busy.lease, "the lease is untouched");
    assert_eq!(requested.finished_at, None);

    h.clock.advance(secs(5));
    let beat = heartbeat(&h, busy.id, token(&busy), None).await.unwrap();
    assert!(beat.cancel_requested);
    assert_eq!(
        fail(&h, &busy, "stopped on request", true).await,
        JobState::Cancelled
    );
    let ended = get(&h, busy.id).await;
    assert_eq!(
        (ended.state, ended.finished_at, ended.lease.clone()),
        (JobState::Cancelled, Some(h.clock.now()), None)
    );
    assert!(
        claim(&h, &["q"], 10).await.is_empty(),
        "a cancelled job is not retried"
    );
    assert_eq!(stats(&h, "q").await.totals.retried, 0);
}

/// A running job asked to cancel that completes anyway ends succeeded.
pub async fn requested_cancel_then_complete_succeeds(h: Harness) {
    queue(&h, "q").await;
    let busy = running(&h, "q").await;
    assert!(cancel(&h, busy.id).await.cancel_requested);
    try_complete(&h, busy.id, token(&busy), Some(serde_json::json!("done")))
        .await
        .unwrap();
    let ended = get(&h, busy.id).await;
    assert_eq!(
        (ended.state, ended.result),
        (JobState::Succeeded, Some(serde_json::json!("done")))
    );
}

/// A running job asked to cancel whose lease then lapses is cancelled by the reaper, not
/// retried.
pub async fn requested_cancel_then_lease_expiry_cancels(h: Harness) {
    queue_retrying(&h, "q", limited(5, Duration::ZERO)).await;
    let busy = running(&h, "q").await;
    cancel(&h, busy.id).await;
    h.clock.advance(secs(31));
    let report = reap(&h).await;
    assert_eq!((report.retried, report.dead, report.cancelled), (0, 0, 1));
    let ended = get(&h, busy.id).await;
    assert_eq!(
        (ended.state, ended.finished_at),
        (JobState::Cancelled, Some(h.clock.now()))
    );
    assert!(claim(&h, &["q"], 10).await.is_empty());
}

/// Cancelling a succeeded, dead or cancelled job is refused with `invalid_transition` and
/// changes nothing.
pub async fn terminal_jobs_refuse_cancel(h: Harness) {
    queue(&h, "q").await;
    let done = succeeded(&h, "q").await;
    let gone = dead(&h, "q").await;
    let stopped = cancelled(&h, "q").await;
    h.clock.advance(secs(1));
    for id in [done, gone, stopped] {
        let before = get(&h, id).await;
        let refused = h
            .store
            .job_cancel(JobCancelParams {
                job_id: id,
                now: h.clock.now(),
            })
            .await;
        assert_eq!(
            code(refused),
            ErrorCode::InvalidTransition,
            "{:?}",
            before.state
        );
        assert_eq!(get(&h, id).await, before);
    }
}
