//! Enqueueing and reading back: queues must exist, ids increase in insertion order, every
//! field round-trips, `run_at` decides scheduled vs available, unique keys deduplicate among
//! live jobs (also within a batch and under concurrent producers), batches are all or
//! nothing, and payloads are size-limited.

use std::collections::HashSet;

use flotilla_core::{Clock, ErrorCode, JobId, JobState, NewJob};
use flotilla_store::{JobInsertManyParams, MaintenanceParams, StoreError};
use serde_json::json;

use crate::Harness;
use crate::support::*;

/// A job for a queue never created with `queue_upsert` is refused with `QueueNotFound`.
pub async fn unknown_queue_is_refused(h: Harness) {
    let now = h.clock.now();
    let err = h
        .store
        .job_insert(job("nowhere", "work"), now)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::QueueNotFound(q) if q == "nowhere"),
        "{err:?}"
    );
    assert_eq!(err.code(), ErrorCode::QueueNotFound);
}

/// Ids increase strictly in insertion order, across single inserts and batches, and a
/// batch's results come back in input order.
pub async fn ids_increase_in_insertion_order(h: Harness) {
    queue(&h, "q").await;
    queue(&h, "other").await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(insert(&h, job(if n == 1 { "other" } else { "q" }, "work")).await);
    }
    let batch = (0..4).map(|n| job("q", &format!("kind-{n}"))).collect();
    let batch_ids = insert_many(&h, batch).await;
    for (n, id) in batch_ids.iter().enumerate() {
        assert_eq!(
            get(&h, *id).await.kind,
            format!("kind-{n}"),
            "batch results are in input order"
        );
    }
    ids.extend(batch_ids);
    ids.push(insert(&h, job("q", "work")).await);
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids not strictly increasing: {ids:?}"
    );
}

/// Every field of a new job is stored as given, and the defaults are filled in.
pub async fn fields_round_trip(h: Harness) {
    queue(&h, "q").await;
    let now = h.clock.now();
    let full = NewJob::new(
        "q",
        "image.transcode",
        json!({"src": "a.png", "sizes": [1, 2]}),
    )
    .priority(3)
    .max_attempts(4)
    .retry(limited(4, secs(7)))
    .timeout(secs(90))
    .lease(secs(45))
    .unique_key("img-1")
    .group_key("tenant-a")
    .tag("media")
    .tag("urgent");
    let id = insert(&h, full).await;
    let got = get(&h, id).await;
    assert_eq!(
        (got.id, got.queue.as_str(), got.kind.as_str()),
        (id, "q", "image.transcode")
    );
    assert_eq!(got.payload, json!({"src": "a.png", "sizes": [1, 2]}));
    assert_eq!((got.priority, got.max_attempts, got.attempt), (3, 4, 0));
    assert_eq!(got.retry, Some(limited(4, secs(7))));
    assert_eq!((got.timeout_ms, got.lease_ms), (Some(90_000), Some(45_000)));
    assert_eq!(got.unique_key.as_deref(), Some("img-1"));
    assert_eq!(got.group_key.as_deref(), Some("tenant-a"));
    assert_eq!(got.tags, vec!["media".to_owned(), "urgent".to_owned()]);
    assert_eq!(
        (got.state, got.run_at, got.created_at),
        (JobState::Available, now, now)
    );
    assert!(got.lease.is_none() && got.progress.is_none() && got.result.is_none());
    assert!(got.errors.is_empty() && got.attempted_at.is_none() && got.finished_at.is_none());
    assert!(!got.cancel_requested);

    let plain = get(&h, insert(&h, job("q", "work")).await).await;
    assert_eq!(
        (plain.priority, plain.payload.clone(), plain.retry.clone()),
        (0, json!({}), None)
    );
    assert_eq!(
        (plain.unique_key, plain.group_key, plain.tags),
        (None, None, Vec::<String>::new())
    );
    assert_eq!((plain.timeout_ms, plain.lease_ms), (None, None));
}

/// `run_at` in the future makes a job scheduled; now or past makes it available. A claim
/// promotes due scheduled jobs itself, without `job_promote_due`.
pub async fn run_at_decides_scheduled_or_available(h: Harness) {
    queue(&h, "q").await;
    let now = h.clock.now();
    let later = insert(&h, job("q", "later").run_at(plus(now, secs(10)))).await;
    let past = insert(&h, job("q", "past").run_at(minus(now, secs(10)))).await;
    let exact = insert(&h, job("q", "exact").run_at(now)).await;
    assert_eq!(get(&h, later).await.state, JobState::Scheduled);
    assert_eq!(get(&h, later).await.run_at, plus(now, secs(10)));
    assert_eq!(get(&h, past).await.state, JobState::Available);
    assert_eq!(get(&h, exact).await.state, JobState::Available);

    let first = claim(&h, &["q"], 10).await;
    assert_eq!(
        first.iter().map(|j| j.id).collect::<HashSet<_>>(),
        HashSet::from([past, exact])
    );
    h.clock.advance(secs(9));
    assert!(
        claim(&h, &["q"], 10).await.is_empty(),
        "the scheduled job is not due yet"
    );
    h.clock.advance(secs(2));
    let due = claim_one(&h, "q").await;
    assert_eq!(
        (due.id, due.state, due.attempt),
        (later, JobState::Running, 1)
    );
}

/// `job_promote_due` moves due scheduled jobs to available, at most `limit` per call, and
/// names the queues that got jobs.
pub async fn promote_due_reports_count_and_queues(h: Harness) {
    queue(&h, "a").await;
    queue(&h, "b").await;
    let now = h.clock.now();
    let a1 = insert(&h, job("a", "work").run_at(plus(now, secs(5)))).await;
    let a2 = insert(&h, job("a", "work").run_at(plus(now, secs(6)))).await;
    let b1 = insert(&h, job("b", "work").run_at(plus(now, secs(7)))).await;
    let far = insert(&h, job("b", "work").run_at(plus(now, secs(3600)))).await;

    let report = h
        .store
        .job_promote_due(MaintenanceParams {
            now: h.clock.now(),
            limit: 100,
        })
        .await
        .unwrap();
    assert_eq!(report.promoted, 0, "nothing is due yet");
    h.clock.advance(secs(10));
    let report = h
        .store
        .job_promote_due(MaintenanceParams {
            now: h.clock.now(),
            limit: 2,
        })
        .await
        .unwrap();
    assert_eq!(
        report.promoted, 2,
        "limit 2 promotes two of the three due jobs"
    );
    let report2 = h
        .store
        .job_promote_due(MaintenanceParams {
            now: h.clock.now(),
            limit: 100,
        })
        .await
        .unwrap();
    assert_eq!(report2.promoted, 1);
    let mut queues: Vec<String> = report.queues.into_iter().chain(report2.queues).collect();
    queues.sort();
    queues.dedup();
    assert_eq!(queues, vec!["a".to_owned(), "b".to_owned()]);
    for id in [a1, a2, b1] {
        assert_eq!(get(&h, id).await.state, JobState::Available);
    }
    assert_eq!(get(&h, far).await.state, JobState::Scheduled);
}

/// An enqueue whose unique key matches a live job of the same queue returns that job with
/// `duplicate: true` and inserts nothing; other queues have their own keys.
pub async fn unique_key_returns_the_live_job(h: Harness) {
    queue(&h, "q").await;
    queue(&h, "other").await;
    let now = h.clock.now();
    let keyed = || job("q", "work").unique_key("order-7");
    let first = h.store.job_insert(keyed(), now).await.unwrap();
    assert!(!first.duplicate);
    let again = h.store.job_insert(keyed().priority(5), now).await.unwrap();
    assert_eq!(
        (again.id, again.state, again.duplicate),
        (first.id, JobState::Available, true)
    );
    assert_eq!(
        get(&h, first.id).await.priority,
        0,
        "the duplicate changed nothing"
    );

    let running = claim_one(&h, "q").await;
    let while_running = h.store.job_insert(keyed(), now).await.unwrap();
    assert_eq!(
        (
            while_running.id,
            while_running.state,
            while_running.duplicate
        ),
        (first.id, JobState::Running, true)
    );
    assert_eq!(jobs_in(&h, "q").await.len(), 1);

    let elsewhere = h
        .store
        .job_insert(job("other", "work").unique_key("order-7"), now)
        .await
        .unwrap();
    assert!(
        !elsewhere.duplicate && elsewhere.id != first.id,
        "keys are scoped per queue"
    );

    complete(&h, &running).await;
    let after = h.store.job_insert(keyed(), now).await.unwrap();
    assert!(!after.duplicate, "a finished job frees its key");
    assert!(after.id > first.id);
    assert_eq!(jobs_in(&h, "q").await.len(), 2);
}

/// Within one batch, a second job with the same unique key resolves to the first.
pub async fn unique_key_within_a_batch(h: Harness) {
    queue(&h, "q").await;
    let jobs = vec![
        job("q", "work").unique_key("k"),
        job("q", "work").unique_key("k"),
        job("q", "work"),
    ];
    let params = JobInsertManyParams {
        jobs,
        now: h.clock.now(),
    };
    let got = h.store.job_insert_many(params).await.unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(
        got.iter().map(|i| i.duplicate).collect::<Vec<_>>(),
        vec![false, true, false]
    );
    assert_eq!(got[1].id, got[0].id);
    assert_ne!(got[2].id, got[0].id);
    assert_eq!(jobs_in(&h, "q").await.len(), 2);
}

/// Twenty producers enqueueing the same unique key at once, through both handles, create
/// exactly one job, and every one of them gets its id.
pub async fn unique_key_under_concurrent_enqueues(h: Harness) {
    queue(&h, "q").await;
    let now = h.clock.now();
    let tasks = (0..20).map(|n| {
        let store = if n % 2 == 0 {
            h.store.clone()
        } else {
            h.other.clone()
        };
        tokio::spawn(async move {
            store
                .job_insert(
                    job("q", "work").unique_key("same").tag(format!("t{n}")),
                    now,
                )
                .await
        })
    });
    let results: Vec<_> = futures::future::join_all(tasks).await;
    let inserted: Vec<_> = results
        .into_iter()
        .map(|r| r.expect("task").expect("job_insert"))
        .collect();
    assert_eq!(
        inserted.iter().filter(|i| !i.duplicate).count(),
        1,
        "{inserted:?}"
    );
    let ids: HashSet<JobId> = inserted.iter().map(|i| i.id).collect();
    assert_eq!(ids.len(), 1, "{inserted:?}");
    assert_eq!(jobs_in(&h, "q").await.len(), 1);
    assert_eq!(
        stats(&h, "q").await.totals.enqueued,
        1,
        "duplicates are not counted"
    );
}

/// A batch with one invalid job is refused whole: nothing of it is inserted.
pub async fn batch_is_all_or_nothing(h: Harness) {
    queue(&h, "q").await;
    let mut jobs: Vec<NewJob> = (0..3).map(|_| job("q", "work")).collect();
    jobs.insert(2, job("q", "work").priority(11));
    let err = h
        .store
        .job_insert_many(JobInsertManyParams {
            jobs,
            now: h.clock.now(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidPriority);

    let jobs = vec![job("q", "work"), job("missing", "work")];
    let err = h
        .store
        .job_insert_many(JobInsertManyParams {
            jobs,
            now: h.clock.now(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::QueueNotFound);

    assert!(jobs_in(&h, "q").await.is_empty());
    assert_eq!(stats(&h, "q").await.totals.enqueued, 0);
}

/// Payloads are limited to 256 KiB of serialized JSON by default: 300 KiB is refused, 200 KiB
/// is stored intact.
pub async fn payload_size_is_limited(h: Harness) {
    queue(&h, "q").await;
    let now = h.clock.now();
    let big = NewJob::new("q", "work", json!({ "blob": "x".repeat(300 * 1024) }));
    assert_eq!(
        code(h.store.job_insert(big, now).await),
        ErrorCode::PayloadTooLarge
    );
    assert!(jobs_in(&h, "q").await.is_empty());
    let fits = json!({ "blob": "y".repeat(200 * 1024) });
    let id = insert(&h, NewJob::new("q", "work", fits.clone())).await;
    assert_eq!(get(&h, id).await.payload, fits);
}
