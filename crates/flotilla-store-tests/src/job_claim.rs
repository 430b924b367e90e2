//! Claiming: order within a queue (priority, then run_at, then id), strict order across
//! queues, the lease and attempt a claim sets, strictly increasing tokens, the limit, and
//! that a claimed job is never handed out again while its lease holds.

use flotilla_core::{Clock, JobState, QueueConfig};

use crate::Harness;
use crate::support::*;

/// Within a queue, jobs are claimed by priority (0 first), then run_at, then id.
pub async fn priority_then_run_at_then_id(h: Harness) {
    queue(&h, "q").await;
    let now = h.clock.now();
    let low = insert(&h, job("q", "p5").priority(5)).await;
    let first_p0 = insert(&h, job("q", "p0").priority(0)).await;
    let older_p0 = insert(&h, job("q", "p0-older").run_at(minus(now, secs(30)))).await;
    let second_p0 = insert(&h, job("q", "p0")).await;
    let lowest = insert(&h, job("q", "p9").priority(9)).await;
    let older_p5 = insert(
        &h,
        job("q", "p5-older").priority(5).run_at(minus(now, secs(5))),
    )
    .await;

    let mut order = Vec::new();
    for _ in 0..6 {
        order.push(claim_one(&h, "q").await.id);
    }
    assert_eq!(
        order,
        vec![older_p0, first_p0, second_p0, older_p5, low, lowest]
    );
    assert!(claim(&h, &["q"], 10).await.is_empty());
}

/// A claim over several queues takes all it can from the first before the next.
pub async fn strict_queue_order(h: Harness) {
    for q in ["high", "default", "low"] {
        queue(&h, q).await;
    }
    let low = insert_n(&h, "low", 2).await;
    let default = insert_n(&h, "default", 3).await;
    let high = insert_n(&h, "high", 2).await;

    let got = claim(&h, &["high", "default", "low"], 4).await;
    assert_eq!(
        sorted_ids(&got),
        vec![default[0], default[1], high[0], high[1]],
        "{got:?}"
    );

    let rest = claim(&h, &["low", "high", "default"], 10).await;
    assert_eq!(sorted_ids(&rest), vec![low[0], low[1], default[2]]);
}

/// A claim makes the job running, with attempt 1, `attempted_at = now`, and a lease for the
/// worker that lapses one queue lease from now; `job_get` shows the same.
pub async fn claim_sets_lease_and_attempt(h: Harness) {
    queue(&h, "q").await;
    queue_with(
        &h,
        QueueConfig {
            lease: secs(120),
            ..QueueConfig::new("slow")
        },
    )
    .await;
    let id = insert(&h, job("q", "work")).await;
    let slow = insert(&h, job("slow", "work")).await;
    h.clock.advance(secs(3));
    let now = h.clock.now();

    let claimed = claim_via(&*h.store, now, &["q"], 1, "worker-7").await;
    assert_eq!(claimed.len(), 1);
    let running = &claimed[0];
    assert_eq!(
        (running.id, running.state, running.attempt),
        (id, JobState::Running, 1)
    );
    assert_eq!(running.attempted_at, Some(now));
    let lease = running.lease.as_ref().expect("a lease");
    assert_eq!(lease.worker_id, "worker-7");
    assert_eq!(lease.expires_at, plus(now, QueueConfig::DEFAULT_LEASE));
    assert_eq!(
        &get(&h, id).await,
        running,
        "job_get shows what the claim returned"
    );

    let slow_job = claim_one(&h, "slow").await;
    assert_eq!(slow_job.id, slow);
    assert_eq!(
        slow_job.lease.expect("a lease").expires_at,
        plus(now, secs(120))
    );
}

/// Lease tokens increase strictly across claims, queues and store handles, and a later
/// claim of the same job gets a larger token.
pub async fn tokens_increase_across_claims(h: Harness) {
    queue_retrying(&h, "a", limited(5, secs(0))).await;
    queue(&h, "b").await;
    insert_n(&h, "a", 3).await;
    insert_n(&h, "b", 3).await;
    let mut claimed = Vec::new();
    for n in 0..3 {
        let store = if n % 2 == 0 { &h.store } else { &h.other };
        for q in ["a", "b"] {
            let got = claim_via(&**store, h.clock.now(), &[q], 1, WORKER).await;
            assert_eq!(got.len(), 1);
            claimed.extend(got);
        }
    }
    let tokens: Vec<_> = claimed.iter().map(token).collect();
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "tokens not strictly increasing: {tokens:?}"
    );

    let first = &claimed[0];
    assert_eq!(fail(&h, first, "flaky", true).await, JobState::Available);
    let reclaimed = claim_one(&h, "a").await;
    assert_eq!((reclaimed.id, reclaimed.attempt), (first.id, 2));
    assert!(
        token(&reclaimed) > *tokens.last().expect("tokens"),
        "a re-claim gets a fresh, larger token"
    );
}

/// A claim hands out at most `limit` jobs, an empty queue gives nothing, and a claimed job is
/// not handed out again (through either handle) while its lease holds.
pub async fn claim_respects_limit_and_never_repeats(h: Harness) {
    queue(&h, "q").await;
    queue(&h, "empty").await;
    let all = insert_n(&h, "q", 5).await;
    assert!(claim(&h, &["empty"], 10).await.is_empty());

    let first = claim(&h, &["q"], 2).await;
    assert_eq!(sorted_ids(&first), all[..2].to_vec());
    let second = claim_via(&*h.other, h.clock.now(), &["q"], 2, "worker-2").await;
    assert_eq!(sorted_ids(&second), all[2..4].to_vec());
    h.clock.advance(secs(10));
    let third = claim(&h, &["q", "empty"], 10).await;
    assert_eq!(sorted_ids(&third), all[4..].to_vec());
    assert!(claim(&h, &["q"], 10).await.is_empty());
    assert!(
        claim_via(&*h.other, h.clock.now(), &["q"], 10, "worker-2")
            .await
            .is_empty()
    );
    assert_eq!(stats(&h, "q").await.counts.running, 5);
}

/// Jobs enqueued through one handle are claimed through the other, and the claim is visible
/// through both.
pub async fn handles_share_one_store(h: Harness) {
    queue(&h, "q").await;
    let id = insert(&h, job("q", "work")).await;
    assert_eq!(
        h.other
            .queue_get("q")
            .await
            .expect("queue_get via other")
            .name,
        "q"
    );
    let claimed = claim_via(&*h.other, h.clock.now(), &["q"], 5, "other-worker").await;
    assert_eq!(ids(&claimed), vec![id]);
    let seen = get(&h, id).await;
    assert_eq!(seen.state, JobState::Running);
    assert_eq!(seen.lease.expect("a lease").worker_id, "other-worker");
}
