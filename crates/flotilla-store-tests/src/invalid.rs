//! Bad input is refused with the typed error and stable code every backend agrees on, and
//! changes nothing: bad names, kinds, priorities and options, oversized payloads, unknown
//! ids, illegal state moves, invalid queue settings and invalid cron schedules.

use std::time::Duration;

use flotilla_core::{
    Clock, CronSchedule, CronSpec, ErrorCode, JobId, LeaseToken, QueueConfig, RetryPolicy,
};
use flotilla_store::{JobCancelParams, JobHeartbeatParams, JobRetryParams, StoreError};
use serde_json::json;

use crate::Harness;
use crate::support::*;

/// Empty and malformed queue names are `invalid_queue_name`, for queues and for jobs.
pub async fn bad_queue_names(h: Harness) {
    for name in ["", "has space", "slash/y"] {
        assert_eq!(
            code(h.store.queue_upsert(QueueConfig::new(name)).await),
            ErrorCode::InvalidQueueName,
            "{name:?}"
        );
        assert_eq!(
            code(h.store.job_insert(job(name, "work"), h.clock.now()).await),
            ErrorCode::InvalidQueueName
        );
    }
    assert!(h.store.queue_list().await.unwrap().is_empty());
}

/// Priorities outside `0..=9` are `invalid_priority`; bad kinds `invalid_kind`; bad options
/// `invalid_argument`. Nothing is inserted.
pub async fn bad_job_fields(h: Harness) {
    queue(&h, "q").await;
    let now = h.clock.now();
    for priority in [-1, 10] {
        let refused = h
            .store
            .job_insert(job("q", "work").priority(priority), now)
            .await;
        assert_eq!(
            code(refused),
            ErrorCode::InvalidPriority,
            "priority {priority}"
        );
    }
    assert_eq!(
        code(h.store.job_insert(job("q", ""), now).await),
        ErrorCode::InvalidKind
    );
    assert_eq!(
        code(h.store.job_insert(job("q", "bad\nkind"), now).await),
        ErrorCode::InvalidKind
    );
    for bad in [
        job("q", "work").max_attempts(0),
        job("q", "work").lease(Duration::ZERO),
        job("q", "work").unique_key(""),
    ] {
        assert_eq!(
            code(h.store.job_insert(bad.clone(), now).await),
            ErrorCode::InvalidArgument,
            "{bad:?}"
        );
    }
    let bad_policy = job("q", "work").retry(limited(0, Duration::ZERO));
    assert_eq!(
        code(h.store.job_insert(bad_policy, now).await),
        ErrorCode::InvalidConfig
    );
    assert!(jobs_in(&h, "q").await.is_empty());
}

/// A payload over the 256 KiB default is `payload_too_large`, including in a batch.
pub async fn payload_too_large(h: Harness) {
    queue(&h, "q").await;
    let big = flotilla_core::NewJob::new("q", "work", json!({ "data": "z".repeat(300 * 1024) }));
    let err = h
        .store
        .job_insert(big.clone(), h.clock.now())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Invalid(flotilla_core::Error::PayloadTooLarge { .. })
        ),
        "{err:?}"
    );
    let params = flotilla_store::JobInsertManyParams {
        jobs: vec![job("q", "work"), big],
        now: h.clock.now(),
    };
    assert_eq!(
        code(h.store.job_insert_many(params).await),
        ErrorCode::PayloadTooLarge
    );
    assert!(jobs_in(&h, "q").await.is_empty());
}

/// An unknown job id is `job_not_found` for get, cancel, retry and heartbeat.
pub async fn unknown_job_ids(h: Harness) {
    queue(&h, "q").await;
    let missing = JobId(987_654_321);
    let now = h.clock.now();
    let err = h.store.job_get(missing).await.unwrap_err();
    assert!(
        matches!(err, StoreError::JobNotFound(id) if id == missing),
        "{err:?}"
    );
    assert_eq!(
        code(
            h.store
                .job_cancel(JobCancelParams {
                    job_id: missing,
                    now
                })
                .await
        ),
        ErrorCode::JobNotFound
    );
    assert_eq!(
        code(
            h.store
                .job_retry(JobRetryParams {
                    job_id: missing,
                    now
                })
                .await
        ),
        ErrorCode::JobNotFound
    );
    let beat = JobHeartbeatParams {
        job_id: missing,
        token: LeaseToken(1),
        progress: None,
        now,
    };
    assert_eq!(
        code(h.store.job_heartbeat(beat).await),
        ErrorCode::JobNotFound
    );
}

/// Moves the state machine forbids are `invalid_transition`: cancelling a finished job,
/// retrying a running or succeeded one.
pub async fn illegal_transitions(h: Harness) {
    queue(&h, "q").await;
    let now = h.clock.now();
    let done = succeeded(&h, "q").await;
    let busy = running(&h, "q").await;
    let cancel = |job_id| h.store.job_cancel(JobCancelParams { job_id, now });
    let retry = |job_id| h.store.job_retry(JobRetryParams { job_id, now });
    let err = cancel(done).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Invalid(flotilla_core::Error::InvalidTransition { .. })
        ),
        "{err:?}"
    );
    assert_eq!(code(retry(done).await), ErrorCode::InvalidTransition);
    assert_eq!(code(retry(busy.id).await), ErrorCode::InvalidTransition);
    assert_eq!(
        get(&h, busy.id).await,
        busy,
        "a refused move changes nothing"
    );
}

/// Inconsistent queue settings are `invalid_config` and create nothing.
pub async fn invalid_queue_config(h: Harness) {
    let base = || QueueConfig::new("q");
    let bad_policy = RetryPolicy::Exponential {
        max_attempts: 3,
        initial: secs(10),
        factor: 2.0,
        max_interval: secs(1),
        jitter: false,
    };
    for config in [
        QueueConfig {
            lease: millis(10),
            ..base()
        },
        QueueConfig {
            concurrency: Some(0),
            ..base()
        },
        QueueConfig {
            group_concurrency: Some(0),
            ..base()
        },
        QueueConfig {
            rate_limit: Some(0),
            ..base()
        },
        QueueConfig {
            timeout: Some(Duration::ZERO),
            ..base()
        },
        QueueConfig {
            retry: limited(0, Duration::ZERO),
            ..base()
        },
        QueueConfig {
            retry: bad_policy,
            ..base()
        },
    ] {
        assert_eq!(
            code(h.store.queue_upsert(config.clone()).await),
            ErrorCode::InvalidConfig,
            "{config:?}"
        );
    }
    assert_eq!(code(h.store.queue_get("q").await), ErrorCode::QueueNotFound);
}

/// Invalid cron schedules are refused with their code and not stored; unknown schedule names
/// are `cron_not_found`.
pub async fn invalid_cron_schedules(h: Harness) {
    queue(&h, "q").await;
    let now = h.clock.now();
    assert_eq!(
        CronSpec::parse("every minute").unwrap_err().code(),
        ErrorCode::InvalidCron
    );
    let spec = CronSpec::parse("* * * * *").expect("valid");
    let base = || CronSchedule::new("s", spec.clone(), "q", "work", json!({}));
    let cases = [
        (
            CronSchedule {
                backfill: secs(1),
                ..base()
            },
            ErrorCode::InvalidConfig,
        ),
        (
            CronSchedule {
                name: String::new(),
                ..base()
            },
            ErrorCode::InvalidConfig,
        ),
        (
            CronSchedule {
                priority: 10,
                ..base()
            },
            ErrorCode::InvalidPriority,
        ),
        (
            CronSchedule {
                payload: json!({ "blob": "x".repeat(300 * 1024) }),
                ..base()
            },
            ErrorCode::PayloadTooLarge,
        ),
        (
            CronSchedule {
                queue: "bad name".into(),
                ..base()
            },
            ErrorCode::InvalidQueueName,
        ),
        (
            CronSchedule {
                kind: String::new(),
                ..base()
            },
            ErrorCode::InvalidKind,
        ),
    ];
    for (schedule, expected) in cases {
        assert_eq!(
            code(h.store.cron_upsert(schedule.clone(), now).await),
            expected,
            "{schedule:?}"
        );
    }
    assert!(h.store.cron_list().await.unwrap().is_empty());
    assert_eq!(
        code(h.store.cron_delete("nope").await),
        ErrorCode::CronNotFound
    );
}
