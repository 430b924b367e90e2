//! Queues: settings round-trip through `queue_upsert`/`queue_get`/`queue_list`, pause and
//! resume, `queue_stats` (counts per state, age of the oldest available job, throughput
//! totals) and `job_prune` (per-state retention; live jobs are never pruned).

use std::time::Duration;

use flotilla_core::{Clock, ErrorCode, JobState, QueueConfig, Retention, RetryPolicy};
use flotilla_store::{JobListParams, MaintenanceParams, QueueStatsParams, StateCounts, Throughput};

use crate::Harness;
use crate::support::*;

/// `queue_upsert` creates a queue and later replaces its settings (keeping its jobs);
/// `queue_get` and `queue_list` return the settings as stored.
pub async fn upsert_get_and_list(h: Harness) {
    assert_eq!(
        code(h.store.queue_get("media").await),
        ErrorCode::QueueNotFound
    );
    let media = QueueConfig {
        lease: secs(120),
        timeout: Some(secs(3600)),
        retry: RetryPolicy::ExponentialLong { max_attempts: 12 },
        retention: Retention {
            succeeded: secs(60),
            cancelled: secs(120),
            dead: secs(180),
        },
        concurrency: Some(4),
        group_concurrency: Some(2),
        fair: true,
        rate_limit: Some(10),
        ..QueueConfig::new("media")
    };
    queue_with(&h, media.clone()).await;
    queue(&h, "default").await;
    assert_eq!(h.store.queue_get("media").await.unwrap(), media);
    let id = insert(&h, job("media", "work")).await;

    let changed = QueueConfig {
        lease: secs(60),
        concurrency: None,
        ..media
    };
    queue_with(&h, changed.clone()).await;
    assert_eq!(h.other.queue_get("media").await.unwrap(), changed);
    assert_eq!(
        get(&h, id).await.state,
        JobState::Available,
        "jobs are kept"
    );
    let names: Vec<String> = h
        .store
        .queue_list()
        .await
        .unwrap()
        .into_iter()
        .map(|q| q.name)
        .collect();
    assert_eq!(names, vec!["default".to_owned(), "media".to_owned()]);
}

/// A paused queue accepts jobs but hands none out (other queues still do); resuming it
/// hands them out again. `queue_get` and `queue_stats` show the flag.
pub async fn pause_and_resume(h: Harness) {
    queue(&h, "a").await;
    queue(&h, "b").await;
    insert_n(&h, "a", 2).await;
    h.store.queue_set_paused("a", true).await.unwrap();
    assert!(h.store.queue_get("a").await.unwrap().paused);
    assert!(stats(&h, "a").await.paused);
    let late = insert(&h, job("a", "work")).await;
    let b = insert(&h, job("b", "work")).await;

    let got = claim(&h, &["a", "b"], 10).await;
    assert_eq!(ids(&got), vec![b], "only the unpaused queue gives jobs");
    assert!(
        claim_via(&*h.other, h.clock.now(), &["a"], 10, "w2")
            .await
            .is_empty()
    );

    h.other.queue_set_paused("a", false).await.unwrap();
    assert!(!h.store.queue_get("a").await.unwrap().paused);
    let resumed = claim(&h, &["a"], 10).await;
    assert_eq!(resumed.len(), 3);
    assert!(ids(&resumed).contains(&late));
    assert_eq!(
        code(h.store.queue_set_paused("nowhere", true).await),
        ErrorCode::QueueNotFound
    );
}

/// Counts per state match the jobs after a mix of operations, per queue, and match
/// `job_list`.
pub async fn stats_count_every_state(h: Harness) {
    queue_retrying(&h, "q", RetryPolicy::None).await;
    queue(&h, "other").await;
    succeeded(&h, "q").await;
    succeeded(&h, "q").await;
    cancelled(&h, "q").await;
    dead(&h, "q").await;
    running(&h, "q").await;
    insert_n(&h, "q", 3).await;
    let later = plus(h.clock.now(), secs(60));
    insert(&h, job("q", "work").run_at(later)).await;
    insert(&h, job("q", "work").run_at(later)).await;
    insert_n(&h, "other", 4).await;

    let expected = StateCounts {
        scheduled: 2,
        available: 3,
        running: 1,
        succeeded: 2,
        cancelled: 1,
        dead: 1,
    };
    assert_eq!(stats(&h, "q").await.counts, expected);
    let all = jobs_in(&h, "q").await;
    for state in JobState::ALL {
        assert_eq!(
            all.iter().filter(|j| j.state == state).count() as u64,
            expected.get(state),
            "{state}"
        );
    }
    assert_eq!(
        stats(&h, "other").await.counts,
        StateCounts {
            available: 4,
            ..StateCounts::default()
        }
    );

    let every = h
        .store
        .queue_stats(QueueStatsParams {
            queue: None,
            now: h.clock.now(),
        })
        .await
        .unwrap();
    let names: Vec<&str> = every.iter().map(|s| s.queue.as_str()).collect();
    assert_eq!(names, vec!["other", "q"], "all queues, by name");
    assert_eq!(every[1].counts, expected);
}

/// `oldest_available_age` is now minus the `run_at` of the oldest available job, and `None`
/// when no job is available.
pub async fn oldest_available_age(h: Harness) {
    queue(&h, "q").await;
    assert_eq!(stats(&h, "q").await.oldest_available_age, None);
    let t0 = h.clock.now();
    let scheduled = insert(&h, job("q", "work").run_at(plus(t0, secs(2)))).await;
    assert_eq!(
        stats(&h, "q").await.oldest_available_age,
        None,
        "scheduled jobs are not available"
    );
    h.clock.advance(secs(5));
    let first = insert(&h, job("q", "work")).await;
    h.clock.advance(secs(7));
    assert_eq!(stats(&h, "q").await.oldest_available_age, Some(secs(7)));
    h.store.job_promote_due(maintenance(&h)).await.unwrap();
    assert_eq!(
        stats(&h, "q").await.oldest_available_age,
        Some(secs(10)),
        "ready since its run_at"
    );

    let claimed = claim_one(&h, "q").await;
    assert_eq!(claimed.id, scheduled);
    assert_eq!(stats(&h, "q").await.oldest_available_age, Some(secs(7)));
    h.clock.advance(millis(1500));
    assert_eq!(
        stats(&h, "q").await.oldest_available_age,
        Some(millis(8500))
    );
    assert_eq!(claim_one(&h, "q").await.id, first);
    assert_eq!(stats(&h, "q").await.oldest_available_age, None);
}

/// The throughput totals count enqueues (not duplicates), successes, failed attempts,
/// retries, deaths, cancellations and lost leases.
pub async fn stats_totals_count_throughput(h: Harness) {
    queue_retrying(&h, "q", limited(3, Duration::ZERO)).await;
    let ok = running(&h, "q").await;
    complete(&h, &ok).await;
    let flaky = running(&h, "q").await;
    assert_eq!(fail(&h, &flaky, "flaky", true).await, JobState::Available);
    let flaky = claim_one(&h, "q").await;
    assert_eq!(fail(&h, &flaky, "broken", false).await, JobState::Dead);
    let lost = running(&h, "q").await;
    h.clock.advance(secs(31));
    assert_eq!(reap(&h).await.retried, 1);
    assert_eq!(claim_one(&h, "q").await.id, lost.id);
    cancelled(&h, "q").await;
    insert(&h, job("q", "work").unique_key("k")).await;
    let dup = h
        .store
        .job_insert(job("q", "work").unique_key("k"), h.clock.now())
        .await
        .unwrap();
    assert!(dup.duplicate);

    let expected = Throughput {
        enqueued: 5,
        succeeded: 1,
        failed: 3,
        retried: 2,
        dead: 1,
        cancelled: 1,
        lease_expired: 1,
    };
    assert_eq!(stats(&h, "q").await.totals, expected);
}

/// `job_prune` deletes finished jobs older than their queue's retention for their state,
/// at most `limit` per call, and never live jobs, however old.
pub async fn prune_follows_retention_and_spares_live_jobs(h: Harness) {
    let retention = Retention {
        succeeded: secs(3600),
        cancelled: secs(7200),
        dead: secs(10_800),
    };
    queue_with(
        &h,
        QueueConfig {
            retention,
            retry: RetryPolicy::None,
            ..QueueConfig::new("q")
        },
    )
    .await;
    queue(&h, "keep").await;
    let done = [
        succeeded(&h, "q").await,
        succeeded(&h, "q").await,
        succeeded(&h, "q").await,
    ];
    let stopped = cancelled(&h, "q").await;
    let gone = dead(&h, "q").await;
    let kept = succeeded(&h, "keep").await;
    let live_running = running(&h, "q").await.id;
    let live_available = insert(&h, job("q", "work")).await;
    let far = plus(h.clock.now(), secs(400 * 24 * 3600));
    let live_scheduled = insert(&h, job("q", "work").run_at(far)).await;
    let prune = |limit: u32| {
        let h = &h;
        async move {
            h.store
                .job_prune(MaintenanceParams {
                    now: h.clock.now(),
                    limit,
                })
                .await
                .unwrap()
        }
    };

    h.clock.advance(secs(3599));
    assert_eq!(prune(100).await, 0, "nothing is past its retention yet");
    h.clock.advance(secs(2));
    assert_eq!(prune(2).await, 2, "limit 2");
    assert_eq!(prune(100).await, 1);
    for id in done {
        assert_eq!(code(h.store.job_get(id).await), ErrorCode::JobNotFound);
    }
    assert_eq!(get(&h, stopped).await.state, JobState::Cancelled);
    assert_eq!(
        get(&h, kept).await.state,
        JobState::Succeeded,
        "the default retention is 4 days"
    );
    h.clock.advance(secs(3600));
    assert_eq!(prune(100).await, 1);
    assert_eq!(code(h.store.job_get(stopped).await), ErrorCode::JobNotFound);
    assert_eq!(get(&h, gone).await.state, JobState::Dead);
    h.clock.advance(secs(3600));
    assert_eq!(prune(100).await, 1);
    assert_eq!(code(h.store.job_get(gone).await), ErrorCode::JobNotFound);

    h.clock.advance(secs(365 * 24 * 3600));
    assert_eq!(prune(100).await, 1, "only the other queue's succeeded job");
    for id in [live_running, live_available, live_scheduled] {
        assert!(get(&h, id).await.state.is_live());
    }
    let left = list_all(&h, JobListParams::default(), 100).await;
    assert_eq!(left.len(), 3, "{left:?}");
    let counts = stats(&h, "q").await.counts;
    assert_eq!((counts.succeeded, counts.cancelled, counts.dead), (0, 0, 0));
}
