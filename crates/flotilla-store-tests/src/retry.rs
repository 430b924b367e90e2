//! Failure and its consequences: the error history, the retry decision (policy delay,
//! attempts exhausted, non-retryable, policy `none`), how `max_attempts` defaults, per-item
//! answers of `job_fail_many`, and bringing jobs back: `job_retry`, `dead_replay` and
//! `dead_purge`.

use std::time::Duration;

use flotilla_core::{AttemptError, Clock, ErrorCode, JobId, JobState, LeaseToken, RetryPolicy};
use flotilla_store::{DeadParams, Failure, JobFailManyParams, JobRetryParams, StoreError};

use crate::Harness;
use crate::support::*;

/// A retryable failure is recorded in the error history and the job waits the policy's
/// delay in `scheduled`, then runs its next attempt.
pub async fn fail_records_error_and_schedules_retry(h: Harness) {
    queue_retrying(&h, "q", limited(3, secs(10))).await;
    let first = running(&h, "q").await;
    h.clock.advance(secs(2));
    let failed_at = h.clock.now();
    assert_eq!(
        fail(&h, &first, "connection reset", true).await,
        JobState::Scheduled
    );
    let waiting = get(&h, first.id).await;
    assert_eq!(
        (waiting.state, waiting.run_at, waiting.attempt),
        (JobState::Scheduled, plus(failed_at, secs(10)), 1)
    );
    assert_eq!((waiting.lease.clone(), waiting.finished_at), (None, None));
    let error = AttemptError {
        attempt: 1,
        at: failed_at,
        error: "connection reset".into(),
        worker_id: Some(WORKER.into()),
    };
    assert_eq!(waiting.errors, vec![error.clone()]);

    h.clock.advance(secs(9));
    assert!(
        claim(&h, &["q"], 1).await.is_empty(),
        "not before the retry delay"
    );
    h.clock.advance(secs(2));
    let second = claim_one(&h, "q").await;
    assert_eq!((second.id, second.attempt), (first.id, 2));
    h.clock.advance(secs(1));
    assert_eq!(
        fail(&h, &second, "timeout", true).await,
        JobState::Scheduled
    );
    let errors = get(&h, first.id).await.errors;
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0], error);
    let second_error = AttemptError {
        attempt: 2,
        at: h.clock.now(),
        error: "timeout".into(),
        worker_id: Some(WORKER.into()),
    };
    assert_eq!(errors[1], second_error);
}

/// A zero retry delay puts the job straight back in `available`.
pub async fn zero_delay_retry_is_available_at_once(h: Harness) {
    queue_retrying(&h, "q", limited(3, Duration::ZERO)).await;
    let first = running(&h, "q").await;
    assert_eq!(fail(&h, &first, "flaky", true).await, JobState::Available);
    assert_eq!(get(&h, first.id).await.state, JobState::Available);
    let again = claim_one(&h, "q").await;
    assert_eq!((again.id, again.attempt), (first.id, 2));
}

/// The failure of the last allowed attempt makes the job dead, with `finished_at` and the
/// whole error history.
pub async fn exhausted_attempts_go_dead(h: Harness) {
    queue_retrying(&h, "q", limited(2, Duration::ZERO)).await;
    let first = running(&h, "q").await;
    assert_eq!(fail(&h, &first, "one", true).await, JobState::Available);
    let second = claim_one(&h, "q").await;
    h.clock.advance(secs(3));
    assert_eq!(fail(&h, &second, "two", true).await, JobState::Dead);
    let gone = get(&h, first.id).await;
    assert_eq!(
        (gone.state, gone.attempt, gone.finished_at),
        (JobState::Dead, 2, Some(h.clock.now()))
    );
    let attempts: Vec<(u32, &str)> = gone
        .errors
        .iter()
        .map(|e| (e.attempt, e.error.as_str()))
        .collect();
    assert_eq!(attempts, vec![(1, "one"), (2, "two")]);
    assert!(claim(&h, &["q"], 1).await.is_empty());
}

/// A non-retryable failure is final even with attempts left; so is any failure under the
/// `none` policy, which allows one attempt.
pub async fn non_retryable_and_policy_none_die_at_once(h: Harness) {
    queue(&h, "q").await;
    queue_retrying(&h, "once", RetryPolicy::None).await;
    let doomed = running(&h, "q").await;
    assert_eq!(doomed.max_attempts, 20);
    assert_eq!(
        fail(&h, &doomed, "corrupt file", false).await,
        JobState::Dead
    );
    assert_eq!(get(&h, doomed.id).await.finished_at, Some(h.clock.now()));

    let once = running(&h, "once").await;
    assert_eq!(once.max_attempts, 1);
    assert_eq!(fail(&h, &once, "flaky", true).await, JobState::Dead);
    let per_job = insert(&h, job("q", "work").retry(RetryPolicy::None)).await;
    let claimed = claim_one(&h, "q").await;
    assert_eq!((claimed.id, claimed.max_attempts), (per_job, 1));
    assert_eq!(fail(&h, &claimed, "flaky", true).await, JobState::Dead);
}

/// `max_attempts` defaults to the effective policy's (the job's, else the queue's), and a
/// job's own `max_attempts` wins.
pub async fn max_attempts_defaults_from_policy(h: Harness) {
    queue_retrying(&h, "q", limited(4, Duration::ZERO)).await;
    queue(&h, "plain").await;
    let from_queue = insert(&h, job("q", "work")).await;
    let from_job_policy = insert(&h, job("q", "work").retry(limited(7, Duration::ZERO))).await;
    let explicit = insert(&h, job("q", "work").max_attempts(2)).await;
    let default_policy = insert(&h, job("plain", "work")).await;
    assert_eq!(get(&h, from_queue).await.max_attempts, 4);
    assert_eq!(get(&h, from_job_policy).await.max_attempts, 7);
    assert_eq!(get(&h, explicit).await.max_attempts, 2);
    assert_eq!(
        get(&h, default_policy).await.max_attempts,
        RetryPolicy::default().max_attempts()
    );

    for _ in 0..2 {
        let jobs = claim(&h, &["q"], 3).await;
        assert_eq!(jobs.len(), 3);
        for j in &jobs {
            fail(&h, j, "flaky", true).await;
        }
    }
    assert_eq!(
        get(&h, explicit).await.state,
        JobState::Dead,
        "two attempts allowed"
    );
    assert_eq!(get(&h, from_queue).await.state, JobState::Available);
    assert_eq!(get(&h, from_job_policy).await.state, JobState::Available);
}

/// An exponential policy without jitter waits `initial × factor^(n-1)`, capped; a job's
/// policy overrides its queue's.
pub async fn exponential_backoff_is_exact_without_jitter(h: Harness) {
    queue_retrying(&h, "q", limited(9, secs(3600))).await;
    let policy = RetryPolicy::Exponential {
        max_attempts: 5,
        initial: secs(2),
        factor: 3.0,
        max_interval: secs(30),
        jitter: false,
    };
    let id = insert(&h, job("q", "work").retry(policy)).await;
    for (attempt, delay) in [(1, 2), (2, 6), (3, 18), (4, 30)] {
        let running = claim_one(&h, "q").await;
        assert_eq!((running.id, running.attempt), (id, attempt));
        assert_eq!(fail(&h, &running, "busy", true).await, JobState::Scheduled);
        assert_eq!(
            get(&h, id).await.run_at,
            plus(h.clock.now(), secs(delay)),
            "delay after attempt {attempt}"
        );
        h.clock.advance(secs(delay) + millis(1));
    }
    let last = claim_one(&h, "q").await;
    assert_eq!(fail(&h, &last, "busy", true).await, JobState::Dead);
}

/// `job_fail_many` answers per item in input order; refused items change nothing.
pub async fn fail_many_answers_per_item(h: Harness) {
    queue_retrying(&h, "q", limited(3, Duration::ZERO)).await;
    insert_n(&h, "q", 3).await;
    let jobs = claim(&h, &["q"], 3).await;
    let (a, b, c) = (&jobs[0], &jobs[1], &jobs[2]);
    let item = |job_id: JobId, token: LeaseToken, retryable: bool| Failure {
        job_id,
        token,
        error: "e".into(),
        retryable,
    };
    let failures = vec![
        item(a.id, token(a), true),
        item(b.id, token(a), true),
        item(JobId(987_654_321), LeaseToken(1), true),
        item(c.id, token(c), false),
    ];
    let results = h
        .store
        .job_fail_many(JobFailManyParams {
            failures,
            now: h.clock.now(),
        })
        .await
        .unwrap();
    assert_eq!(
        codes(&results),
        vec![
            None,
            Some(ErrorCode::LeaseMismatch),
            Some(ErrorCode::JobNotFound),
            None
        ]
    );
    assert_eq!(results[0].as_ref().ok(), Some(&JobState::Available));
    assert_eq!(results[3].as_ref().ok(), Some(&JobState::Dead));
    let untouched = get(&h, b.id).await;
    assert_eq!(
        (untouched.state, untouched.errors.len()),
        (JobState::Running, 0)
    );
}

/// `job_retry` replays dead and cancelled jobs (attempts reset, errors kept) and runs a
/// scheduled job now; running and succeeded jobs are refused.
pub async fn job_retry_replays_and_runs_now(h: Harness) {
    queue(&h, "q").await;
    let now = h.clock.now();
    let gone = dead(&h, "q").await;
    let stopped = cancelled(&h, "q").await;
    let replayed = h
        .store
        .job_retry(JobRetryParams { job_id: gone, now })
        .await
        .unwrap();
    assert_eq!((replayed.state, replayed.attempt), (JobState::Available, 0));
    assert_eq!(replayed.errors.len(), 1, "the error history is kept");
    assert_eq!(get(&h, gone).await, replayed);
    let again = claim_one(&h, "q").await;
    assert_eq!((again.id, again.attempt), (gone, 1));
    complete(&h, &again).await;

    let back = h
        .store
        .job_retry(JobRetryParams {
            job_id: stopped,
            now,
        })
        .await
        .unwrap();
    assert_eq!((back.state, back.attempt), (JobState::Available, 0));
    let later = insert(&h, job("q", "work").run_at(plus(now, secs(3600)))).await;
    assert_eq!(
        h.store
            .job_retry(JobRetryParams { job_id: later, now })
            .await
            .unwrap()
            .state,
        JobState::Available
    );
    assert_eq!(
        sorted_ids(&claim(&h, &["q"], 5).await),
        vec![stopped, later]
    );

    let refused = h
        .store
        .job_retry(JobRetryParams { job_id: later, now })
        .await;
    assert_eq!(code(refused), ErrorCode::InvalidTransition, "running");
    let refused = h
        .store
        .job_retry(JobRetryParams { job_id: gone, now })
        .await;
    assert!(
        matches!(refused, Err(StoreError::Invalid(_))),
        "succeeded: {refused:?}"
    );
    assert_eq!(code(refused), ErrorCode::InvalidTransition);
}

/// `dead_replay` replays the named dead jobs, or a queue's, at most `limit`, and only dead
/// ones; `dead_purge` deletes dead jobs the same way.
pub async fn dead_replay_and_purge(h: Harness) {
    queue(&h, "a").await;
    queue(&h, "b").await;
    let mut a_dead = Vec::new();
    for _ in 0..3 {
        a_dead.push(dead(&h, "a").await);
    }
    let b_dead = dead(&h, "b").await;
    let a_done = succeeded(&h, "a").await;
    let params = |ids: Vec<JobId>, queue: Option<&str>, limit: u32| DeadParams {
        ids,
        queue: queue.map(str::to_owned),
        limit,
        now: h.clock.now(),
    };

    assert_eq!(
        h.store
            .dead_replay(params(vec![a_dead[0], a_done], None, 10))
            .await
            .unwrap(),
        1
    );
    let back = get(&h, a_dead[0]).await;
    assert_eq!((back.state, back.attempt), (JobState::Available, 0));
    assert_eq!(
        get(&h, a_done).await.state,
        JobState::Succeeded,
        "only dead jobs are replayed"
    );
    assert_eq!(
        h.store
            .dead_replay(params(vec![], Some("a"), 1))
            .await
            .unwrap(),
        1,
        "limit 1"
    );
    assert_eq!(
        h.store
            .dead_replay(params(vec![], Some("a"), 10))
            .await
            .unwrap(),
        1
    );
    for id in &a_dead {
        assert_eq!(get(&h, *id).await.state, JobState::Available);
    }
    assert_eq!(
        get(&h, b_dead).await.state,
        JobState::Dead,
        "other queues untouched"
    );
    assert_eq!(stats(&h, "a").await.counts.dead, 0);

    assert_eq!(
        h.store
            .dead_purge(params(vec![], Some("b"), 10))
            .await
            .unwrap(),
        1
    );
    assert_eq!(code(h.store.job_get(b_dead).await), ErrorCode::JobNotFound);
    assert_eq!(stats(&h, "b").await.counts.dead, 0);
    assert_eq!(
        h.store.dead_purge(params(vec![], None, 10)).await.unwrap(),
        0,
        "nothing dead is left"
    );
}
