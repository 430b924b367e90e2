//! Leases: heartbeats extend them and carry progress, completion stores the result, the
//! per-job lease length overrides the queue's, expired leases are reaped as failed attempts
//! ("lease expired: worker lost"), and fencing: once a job has moved on, its old token is
//! refused everywhere and changes nothing. Batch acknowledgements answer per item.

use flotilla_core::{AttemptError, Clock, ErrorCode, JobId, JobState, LeaseToken, QueueConfig};
use flotilla_store::{
    Completion, JobCompleteManyParams, JobReleaseParams, MaintenanceParams, ReapReport, StoreError,
};
use serde_json::json;

use crate::Harness;
use crate::support::*;

/// The error text of an attempt lost to an expired lease.
pub const LEASE_EXPIRED: &str = "lease expired: worker lost";

/// A heartbeat with the current token extends the lease to one lease length from now,
/// stores progress (kept when a later heartbeat sends none) and reports no cancellation.
pub async fn heartbeat_extends_lease_and_stores_progress(h: Harness) {
    queue(&h, "q").await;
    let running = running(&h, "q").await;
    h.clock.advance(secs(20));
    let beat = heartbeat(&h, running.id, token(&running), Some(json!({"pct": 50})))
        .await
        .unwrap();
    let expected = plus(h.clock.now(), QueueConfig::DEFAULT_LEASE);
    assert_eq!((beat.expires_at, beat.cancel_requested), (expected, false));
    let seen = get(&h, running.id).await;
    assert_eq!(seen.lease.as_ref().expect("lease").expires_at, expected);
    assert_eq!(
        seen.lease.as_ref().expect("lease").token,
        token(&running),
        "a heartbeat keeps the token"
    );
    assert_eq!(seen.progress, Some(json!({"pct": 50})));

    h.clock.advance(secs(25));
    let beat = heartbeat(&h, running.id, token(&running), None)
        .await
        .unwrap();
    assert_eq!(
        beat.expires_at,
        plus(h.clock.now(), QueueConfig::DEFAULT_LEASE)
    );
    assert_eq!(get(&h, running.id).await.progress, Some(json!({"pct": 50})));
    h.clock.advance(secs(29));
    assert_eq!(
        reap(&h).await,
        ReapReport::default(),
        "the extended lease has not lapsed"
    );
    assert_eq!(get(&h, running.id).await.state, JobState::Running);
}

/// Completing with the current token stores the result, makes the job succeeded with
/// `finished_at = now`, and clears the lease; the same token cannot complete it again.
pub async fn complete_stores_result(h: Harness) {
    queue(&h, "q").await;
    let running = running(&h, "q").await;
    h.clock.advance(secs(5));
    try_complete(
        &h,
        running.id,
        token(&running),
        Some(json!({"thumb": "t.png"})),
    )
    .await
    .unwrap();
    let done = get(&h, running.id).await;
    assert_eq!(done.state, JobState::Succeeded);
    assert_eq!(done.result, Some(json!({"thumb": "t.png"})));
    assert_eq!(done.finished_at, Some(h.clock.now()));
    assert_eq!((done.lease.clone(), done.attempt), (None, 1));

    h.clock.advance(secs(1));
    let again = try_complete(&h, running.id, token(&running), None).await;
    assert_eq!(code(again), ErrorCode::LeaseMismatch);
    assert_eq!(
        get(&h, running.id).await,
        done,
        "a refused completion changes nothing"
    );
}

/// The lease length set on a job overrides its queue's, at claim and at heartbeat, and the
/// reaper honours it.
pub async fn per_job_lease_overrides_queue(h: Harness) {
    queue(&h, "q").await;
    let short = insert(&h, job("q", "work").lease(secs(5))).await;
    let normal = insert(&h, job("q", "work")).await;
    let now = h.clock.now();
    let claimed = claim(&h, &["q"], 2).await;
    let find = |id: JobId| {
        claimed
            .iter()
            .find(|j| j.id == id)
            .expect("claimed")
            .clone()
    };
    assert_eq!(
        find(short).lease.expect("lease").expires_at,
        plus(now, secs(5))
    );
    assert_eq!(
        find(normal).lease.expect("lease").expires_at,
        plus(now, QueueConfig::DEFAULT_LEASE)
    );

    h.clock.advance(secs(4));
    let beat = heartbeat(&h, short, token(&find(short)), None)
        .await
        .unwrap();
    assert_eq!(beat.expires_at, plus(h.clock.now(), secs(5)));
    h.clock.advance(secs(6));
    let report = reap(&h).await;
    assert_eq!(
        report.retried + report.dead,
        1,
        "only the short lease lapsed: {report:?}"
    );
    assert_eq!(get(&h, short).await.errors.len(), 1);
    assert_eq!(get(&h, normal).await.state, JobState::Running);
}

/// The reaper takes leases with `expires_at < now` only, and at most `limit` per call.
pub async fn reap_takes_only_expired_leases_up_to_limit(h: Harness) {
    queue_retrying(&h, "q", limited(3, secs(0))).await;
    insert_n(&h, "q", 3).await;
    let claimed = claim(&h, &["q"], 3).await;
    assert_eq!(claimed.len(), 3);
    h.clock.advance(QueueConfig::DEFAULT_LEASE);
    assert_eq!(
        reap(&h).await.retried,
        0,
        "a lease expiring exactly now has not lapsed yet"
    );
    h.clock.advance(millis(1));
    let params = MaintenanceParams {
        now: h.clock.now(),
        limit: 2,
    };
    let first = h.store.job_reap_expired(params).await.unwrap();
    assert_eq!((first.retried, first.dead, first.cancelled), (2, 0, 0));
    let mut queues = first.queues.clone();
    queues.dedup();
    assert_eq!(
        queues,
        vec!["q".to_owned()],
        "the retried jobs are available at once"
    );
    let second = reap(&h).await;
    assert_eq!(second.retried, 1);
    assert_eq!(
        reap(&h).await,
        ReapReport::default(),
        "nothing is left to reap"
    );
    for j in &claimed {
        let seen = get(&h, j.id).await;
        assert_eq!(
            (seen.state, seen.attempt, seen.lease.clone()),
            (JobState::Available, 1, None)
        );
    }
}

/// An expired lease is a failed attempt: its error is recorded with the worker, the job
/// retries per its policy, and repeated expiry ends in dead after `max_attempts`.
pub async fn expired_lease_retries_then_dies(h: Harness) {
    queue_retrying(&h, "q", limited(2, secs(10))).await;
    let id = insert(&h, job("q", "work")).await;
    claim_one(&h, "q").await;
    h.clock.advance(secs(31));
    let lost_at = h.clock.now();
    let report = reap(&h).await;
    assert_eq!((report.retried, report.dead, report.cancelled), (1, 0, 0));
    let waiting = get(&h, id).await;
    assert_eq!(
        (waiting.state, waiting.run_at, waiting.lease.clone()),
        (JobState::Scheduled, plus(lost_at, secs(10)), None)
    );
    let first_error = AttemptError {
        attempt: 1,
        at: lost_at,
        error: LEASE_EXPIRED.into(),
        worker_id: Some(WORKER.into()),
    };
    assert_eq!(waiting.errors, vec![first_error.clone()]);

    h.clock.advance(secs(10));
    let second = claim_one(&h, "q").await;
    assert_eq!((second.id, second.attempt), (id, 2));
    h.clock.advance(secs(31));
    let report = reap(&h).await;
    assert_eq!((report.retried, report.dead, report.cancelled), (0, 1, 0));
    let gone = get(&h, id).await;
    assert_eq!(
        (gone.state, gone.finished_at, gone.lease.clone()),
        (JobState::Dead, Some(h.clock.now()), None)
    );
    assert_eq!(gone.errors.len(), 2);
    assert_eq!(gone.errors[0], first_error);
    assert_eq!(
        (gone.errors[1].attempt, gone.errors[1].error.as_str()),
        (2, LEASE_EXPIRED)
    );

    let totals = stats(&h, "q").await.totals;
    assert_eq!(
        (
            totals.failed,
            totals.lease_expired,
            totals.retried,
            totals.dead
        ),
        (2, 2, 1, 1)
    );
}

/// Until the reaper has acted, the current token still works past `expires_at`: the token is
/// the authority, not the clock.
pub async fn current_token_works_past_expiry_until_reaped(h: Harness) {
    queue(&h, "q").await;
    let a = running(&h, "q").await;
    let b = running(&h, "q").await;
    h.clock.advance(secs(45));
    let beat = heartbeat(&h, a.id, token(&a), None).await.unwrap();
    assert_eq!(
        beat.expires_at,
        plus(h.clock.now(), QueueConfig::DEFAULT_LEASE)
    );
    try_complete(&h, b.id, token(&b), Some(json!(1)))
        .await
        .unwrap();
    assert_eq!(get(&h, b.id).await.state, JobState::Succeeded);
    assert_eq!(reap(&h).await, ReapReport::default());
    assert_eq!(get(&h, a.id).await.state, JobState::Running);
}

/// Fencing: after expiry, reaping and a new claim, the old token is refused with
/// `LeaseMismatch` on heartbeat, complete and fail, and none of them changes the job.
pub async fn old_token_is_fenced_off(h: Harness) {
    queue_retrying(&h, "q", limited(3, secs(0))).await;
    let first = running(&h, "q").await;
    let old = token(&first);
    h.clock.advance(secs(31));
    assert_eq!(reap(&h).await.retried, 1);
    let second = claim_via(&*h.other, h.clock.now(), &["q"], 1, "worker-2")
        .await
        .pop()
        .expect("re-claimed");
    assert_eq!((second.id, second.attempt), (first.id, 2));
    assert!(token(&second) > old);
    let before = get(&h, first.id).await;

    let err = heartbeat(&h, first.id, old, Some(json!("stale")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::LeaseMismatch { job_id, token, state: JobState::Running } if job_id == first.id && token == old),
        "{err:?}"
    );
    assert_eq!(
        code(try_complete(&h, first.id, old, Some(json!("stale"))).await),
        ErrorCode::LeaseMismatch
    );
    assert_eq!(
        code(try_fail(&h, first.id, old, "stale", false).await),
        ErrorCode::LeaseMismatch
    );
    assert_eq!(
        get(&h, first.id).await,
        before,
        "refused calls changed the job"
    );

    try_complete(&h, second.id, token(&second), None)
        .await
        .unwrap();
    assert_eq!(get(&h, first.id).await.state, JobState::Succeeded);
}

/// `job_complete_many` answers per item in input order: a wrong token or an unknown job is
/// refused without affecting the other items.
pub async fn complete_many_answers_per_item(h: Harness) {
    queue(&h, "q").await;
    insert_n(&h, "q", 3).await;
    let jobs = claim(&h, &["q"], 3).await;
    let (a, b, c) = (&jobs[0], &jobs[1], &jobs[2]);
    let missing = JobId(987_654_321);
    let completions = vec![
        Completion {
            job_id: a.id,
            token: token(a),
            result: Some(json!("a")),
        },
        Completion {
            job_id: b.id,
            token: token(c),
            result: Some(json!("b")),
        },
        Completion {
            job_id: missing,
            token: LeaseToken(1),
            result: None,
        },
        Completion {
            job_id: c.id,
            token: token(c),
            result: Some(json!("c")),
        },
    ];
    let params = JobCompleteManyParams {
        completions,
        now: h.clock.now(),
    };
    let results = h.store.job_complete_many(params).await.unwrap();
    assert_eq!(
        codes(&results),
        vec![
            None,
            Some(ErrorCode::LeaseMismatch),
            Some(ErrorCode::JobNotFound),
            None
        ]
    );
    assert!(matches!(results[2], Err(StoreError::JobNotFound(id)) if id == missing));
    assert_eq!(get(&h, a.id).await.result, Some(json!("a")));
    assert_eq!(get(&h, c.id).await.state, JobState::Succeeded);
    let untouched = get(&h, b.id).await;
    assert_eq!(
        (untouched.state, untouched.result),
        (JobState::Running, None)
    );
}

/// A job's timeout bounds its lease: the claim and every heartbeat stop at the attempt's
/// deadline, and the reaper then records a timed-out attempt (the job's own timeout wins
/// over the queue's).
pub async fn timeout_caps_the_lease_and_reaps_as_timed_out(h: Harness) {
    let config = QueueConfig {
        timeout: Some(secs(10)),
        retry: limited(3, secs(1)),
        ..QueueConfig::new("q")
    };
    queue_with(&h, config).await;
    let queue_timeout = insert(&h, job("q", "work")).await;
    let own_timeout = insert(&h, job("q", "work").timeout(secs(4))).await;
    let start = h.clock.now();
    let claimed = claim(&h, &["q"], 2).await;
    let by_id = |id: JobId| {
        claimed
            .iter()
            .find(|j| j.id == id)
            .expect("claimed")
            .clone()
    };
    let long = by_id(queue_timeout);
    assert_eq!(
        long.lease.as_ref().expect("lease").expires_at,
        plus(start, secs(10))
    );
    assert_eq!(
        by_id(own_timeout).lease.expect("lease").expires_at,
        plus(start, secs(4))
    );

    h.clock.advance(secs(8));
    let beat = heartbeat(&h, queue_timeout, token(&long), None)
        .await
        .unwrap();
    assert_eq!(
        beat.expires_at,
        plus(start, secs(10)),
        "a heartbeat cannot pass the deadline"
    );

    h.clock.advance(secs(3));
    let report = reap(&h).await;
    assert_eq!(report.retried, 2);
    for id in [queue_timeout, own_timeout] {
        let job = get(&h, id).await;
        assert_eq!(job.errors.len(), 1);
        assert!(
            job.errors[0]
                .error
                .starts_with("timed out: ran longer than"),
            "{:?}",
            job.errors[0]
        );
    }
}

/// A claimed job carries its effective timeout (its own, else its queue's), so the worker
/// can enforce it too.
pub async fn claimed_jobs_carry_their_effective_timeout(h: Harness) {
    let config = QueueConfig {
        timeout: Some(secs(90)),
        ..QueueConfig::new("q")
    };
    queue_with(&h, config).await;
    queue(&h, "plain").await;
    let own = insert(&h, job("q", "work").timeout(secs(5))).await;
    let inherited = insert(&h, job("q", "work")).await;
    let none = insert(&h, job("plain", "work")).await;
    let claimed = claim(&h, &["q", "plain"], 3).await;
    let timeout = |id: JobId| {
        claimed
            .iter()
            .find(|j| j.id == id)
            .expect("claimed")
            .timeout_ms
    };
    assert_eq!(
        (timeout(own), timeout(inherited), timeout(none)),
        (Some(5_000), Some(90_000), None)
    );
    assert_eq!(
        get(&h, inherited).await.timeout_ms,
        None,
        "the stored job keeps no timeout of its own"
    );
}

/// `job_release` hands a running job back unrun: it is `available` at once with no lease and
/// the attempt undone, the next claim gives it a fresh token and the same attempt number, and
/// the released token is fenced off. Items are answered one by one.
pub async fn release_hands_jobs_back_unrun(h: Harness) {
    queue(&h, "q").await;
    insert_n(&h, "q", 2).await;
    let jobs = claim(&h, &["q"], 2).await;
    let (a, b) = (&jobs[0], &jobs[1]);
    let missing = JobId(987_654_321);
    let params = JobReleaseParams {
        leases: vec![(a.id, token(a)), (b.id, token(a)), (missing, LeaseToken(1))],
        now: h.clock.now(),
    };
    let results = h.store.job_release(params).await.unwrap();
    assert_eq!(
        codes(&results),
        vec![
            None,
            Some(ErrorCode::LeaseMismatch),
            Some(ErrorCode::JobNotFound)
        ]
    );
    assert_eq!(results[0].as_ref().ok(), Some(&JobState::Available));
    let released = get(&h, a.id).await;
    assert_eq!(
        (released.state, released.attempt, released.lease.is_none()),
        (JobState::Available, 0, true)
    );
    assert_eq!(get(&h, b.id).await.state, JobState::Running);
    let counts = stats(&h, "q").await.counts;
    assert_eq!((counts.available, counts.running), (1, 1));

    let again = claim_one(&h, "q").await;
    assert_eq!((again.id, again.attempt), (a.id, 1));
    assert_ne!(token(&again), token(a));
    let stale = try_complete(&h, a.id, token(a), None).await;
    assert_eq!(code(stale), ErrorCode::LeaseMismatch);
    complete(&h, &again).await;
    assert_eq!(stats(&h, "q").await.totals.succeeded, 1);
}

/// Releasing a job whose cancellation was requested cancels it instead, and a later
/// attempt's release keeps the earlier attempts.
pub async fn release_cancels_or_keeps_earlier_attempts(h: Harness) {
    queue_retrying(&h, "q", limited(5, secs(0))).await;
    insert_n(&h, "q", 2).await;
    let jobs = claim(&h, &["q"], 2).await;
    let (a, b) = (&jobs[0], &jobs[1]);
    cancel(&h, a.id).await;
    assert_eq!(fail(&h, b, "boom", true).await, JobState::Available);
    let b2 = claim_one(&h, "q").await;
    assert_eq!(b2.attempt, 2);
    let params = JobReleaseParams {
        leases: vec![(a.id, token(a)), (b2.id, token(&b2))],
        now: h.clock.now(),
    };
    let results = h.store.job_release(params).await.unwrap();
    let states: Vec<_> = results.into_iter().map(Result::unwrap).collect();
    assert_eq!(states, [JobState::Cancelled, JobState::Available]);
    let cancelled = get(&h, a.id).await;
    assert_eq!(cancelled.state, JobState::Cancelled);
    assert!(cancelled.finished_at.is_some());
    let back = get(&h, b.id).await;
    assert_eq!(
        (back.state, back.attempt, back.errors.len()),
        (JobState::Available, 1, 1)
    );
    let counts = stats(&h, "q").await;
    assert_eq!(
        (
            counts.counts.cancelled,
            counts.counts.available,
            counts.counts.running
        ),
        (1, 1, 0)
    );
    assert_eq!(counts.totals.cancelled, 1);
}
