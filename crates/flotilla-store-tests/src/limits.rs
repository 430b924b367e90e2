//! Limits applied at claim time, across every worker and store handle: queue concurrency,
//! per-group concurrency, the per-queue rate limit (a token bucket), and fairness
//! (round-robin across group keys, so a backfill does not starve fresh work).

use std::collections::HashMap;
use std::time::Duration;

use flotilla_core::{Clock, Job, JobState, NewJob, QueueConfig};

use crate::Harness;
use crate::support::*;

/// With `concurrency: 2`, at most two jobs of the queue run at once, whichever handle
/// claims; finishing one (by success or failure) frees its slot. A capped queue does not
/// stop a multi-queue claim from filling up from the next queue.
pub async fn queue_concurrency_caps_running_jobs(h: Harness) {
    let capped = QueueConfig {
        concurrency: Some(2),
        retry: limited(3, Duration::ZERO),
        ..QueueConfig::new("q")
    };
    queue_with(&h, capped).await;
    insert_n(&h, "q", 5).await;
    let first = claim(&h, &["q"], 10).await;
    assert_eq!(first.len(), 2);
    assert!(claim(&h, &["q"], 10).await.is_empty());
    assert!(
        claim_via(&*h.other, h.clock.now(), &["q"], 10, "w2")
            .await
            .is_empty()
    );

    complete(&h, &first[0]).await;
    let next = claim_via(&*h.other, h.clock.now(), &["q"], 10, "w2").await;
    assert_eq!(next.len(), 1, "one slot was freed");
    assert!(claim(&h, &["q"], 10).await.is_empty());
    assert_eq!(
        fail(&h, &first[1], "flaky", true).await,
        JobState::Available
    );
    assert_eq!(
        claim(&h, &["q"], 10).await.len(),
        1,
        "a failure frees its slot too"
    );
    assert_eq!(stats(&h, "q").await.counts.running, 2);

    queue_with(
        &h,
        QueueConfig {
            concurrency: Some(1),
            ..QueueConfig::new("one")
        },
    )
    .await;
    queue(&h, "free").await;
    insert_n(&h, "one", 3).await;
    insert_n(&h, "free", 3).await;
    let mixed = claim(&h, &["one", "free"], 3).await;
    let from_one = mixed.iter().filter(|j| j.queue == "one").count();
    assert_eq!((mixed.len(), from_one), (3, 1), "{mixed:?}");
}

/// With `group_concurrency: 2`, at most two jobs per group key run at once.
pub async fn group_concurrency_caps_each_group(h: Harness) {
    queue_with(
        &h,
        QueueConfig {
            group_concurrency: Some(2),
            ..QueueConfig::new("q")
        },
    )
    .await;
    let jobs: Vec<NewJob> = (0..8)
        .map(|n| job("q", "work").group_key(if n < 4 { "tenant-a" } else { "tenant-b" }))
        .collect();
    insert_many(&h, jobs).await;
    let got = claim(&h, &["q"], 10).await;
    assert_eq!(
        per_group(&got),
        HashMap::from([("tenant-a".to_owned(), 2), ("tenant-b".to_owned(), 2)])
    );
    assert!(
        claim_via(&*h.other, h.clock.now(), &["q"], 10, "w2")
            .await
            .is_empty()
    );

    let a_job = got
        .iter()
        .find(|j| j.group_key.as_deref() == Some("tenant-a"))
        .expect("a tenant-a job");
    complete(&h, a_job).await;
    let next = claim_via(&*h.other, h.clock.now(), &["q"], 10, "w2").await;
    assert_eq!(
        per_group(&next),
        HashMap::from([("tenant-a".to_owned(), 1)])
    );
}

fn per_group(jobs: &[Job]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for j in jobs {
        *counts
            .entry(j.group_key.clone().unwrap_or_default())
            .or_default() += 1;
    }
    counts
}

/// With `rate_limit: 5`, a token bucket of five: five jobs at once, none more at the same
/// instant (through either handle), five after a second, one after 200 ms.
pub async fn rate_limit_is_a_token_bucket(h: Harness) {
    queue_with(
        &h,
        QueueConfig {
            rate_limit: Some(5),
            ..QueueConfig::new("q")
        },
    )
    .await;
    insert_n(&h, "q", 100).await;
    assert_eq!(claim(&h, &["q"], 100).await.len(), 5);
    assert!(claim(&h, &["q"], 100).await.is_empty());
    assert!(
        claim_via(&*h.other, h.clock.now(), &["q"], 100, "w2")
            .await
            .is_empty()
    );
    h.clock.advance(secs(1));
    assert_eq!(
        claim_via(&*h.other, h.clock.now(), &["q"], 100, "w2")
            .await
            .len(),
        5
    );
    assert!(claim(&h, &["q"], 100).await.is_empty());
    h.clock.advance(millis(200));
    assert_eq!(claim(&h, &["q"], 100).await.len(), 1);
    assert!(claim(&h, &["q"], 100).await.is_empty());
    h.clock.advance(secs(60));
    assert_eq!(
        claim(&h, &["q"], 100).await.len(),
        5,
        "the bucket holds at most five"
    );
}

/// Claims `total` jobs from `queue` in batches of five, completing each batch, and returns
/// them in claim order.
async fn drain_in_batches(h: &Harness, queue: &str, total: usize) -> Vec<Job> {
    let mut claimed = Vec::new();
    while claimed.len() < total {
        let batch = claim(h, &[queue], 5).await;
        assert!(!batch.is_empty(), "ran out after {} jobs", claimed.len());
        for j in &batch {
            complete(h, j).await;
        }
        claimed.extend(batch);
    }
    claimed
}

fn fresh_count(jobs: &[Job]) -> usize {
    jobs.iter()
        .filter(|j| j.group_key.as_deref() == Some("fresh"))
        .count()
}

/// In a fair queue, 10 fresh jobs enqueued behind a 2,000-job backfill are all claimed within
/// the first 20 jobs.
pub async fn fair_queue_does_not_starve_fresh_work(h: Harness) {
    queue_with(
        &h,
        QueueConfig {
            fair: true,
            ..QueueConfig::new("q")
        },
    )
    .await;
    for _ in 0..2 {
        insert_many(
            &h,
            (0..1000)
                .map(|_| job("q", "backfill").group_key("backfill"))
                .collect(),
        )
        .await;
    }
    h.clock.advance(millis(10));
    insert_many(
        &h,
        (0..10)
            .map(|_| job("q", "fresh").group_key("fresh"))
            .collect(),
    )
    .await;
    let first = drain_in_batches(&h, "q", 20).await;
    assert_eq!(
        fresh_count(&first[..20]),
        10,
        "{:?}",
        first.iter().map(|j| &j.kind).collect::<Vec<_>>()
    );
}

/// Without fairness the same shape is served in order: the fresh jobs come after the
/// backfill.
pub async fn unfair_queue_serves_in_order(h: Harness) {
    queue(&h, "q").await;
    insert_many(
        &h,
        (0..50)
            .map(|_| job("q", "backfill").group_key("backfill"))
            .collect(),
    )
    .await;
    h.clock.advance(millis(10));
    insert_many(
        &h,
        (0..10)
            .map(|_| job("q", "fresh").group_key("fresh"))
            .collect(),
    )
    .await;
    let first = drain_in_batches(&h, "q", 50).await;
    assert_eq!(fresh_count(&first), 0);
    let rest = drain_in_batches(&h, "q", 10).await;
    assert_eq!(fresh_count(&rest), 10);
}
