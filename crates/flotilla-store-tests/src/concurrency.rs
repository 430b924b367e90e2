//! Property tests under real concurrency: many claimer tasks on both store handles drain
//! thousands of jobs while a shared map of holders checks that no job is ever held under two
//! leases at once, and at the end every job finished exactly once with consistent totals.
//! The second test mixes in abandoned leases, reaped (from both handles at once) while the
//! claimers are stopped, so it stays deterministic.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use flotilla_core::{Clock, JobId, JobState, LeaseToken, NewJob, QueueConfig};
use flotilla_store::{
    Completion, Failure, JobCompleteManyParams, JobFailManyParams, StateCounts, Store,
};

use crate::Harness;
use crate::support::*;

const TASKS: usize = 8;
const BATCH: u32 = 25;

/// Who holds which job right now, as seen by the claimers.
#[derive(Default)]
struct Ledger {
    holders: Mutex<HashMap<JobId, LeaseToken>>,
    completed: Mutex<HashMap<JobId, u32>>,
    finished: AtomicU64,
}

impl Ledger {
    fn take(&self, id: JobId, token: LeaseToken) {
        let previous = self.holders.lock().expect("ledger").insert(id, token);
        assert!(
            previous.is_none(),
            "job {id} claimed under {token} while held under {previous:?}"
        );
    }

    fn release(&self, id: JobId, token: LeaseToken) {
        let held = self.holders.lock().expect("ledger").remove(&id);
        assert_eq!(
            held,
            Some(token),
            "job {id} released but not held under {token}"
        );
    }
}

/// What the workers do with a job on each attempt.
#[derive(Clone, Copy, PartialEq)]
enum Plan {
    /// Succeeds at once.
    Succeed,
    /// Fails its first attempt, then succeeds.
    FailOnce,
    /// Fails every attempt, ending dead after three.
    AlwaysFail,
    /// Its first claimer walks away (the lease will lapse), then it succeeds.
    Abandon,
}

fn plan_of(id: JobId, abandon: bool) -> Plan {
    match id.0 % 10 {
        0 => Plan::AlwaysFail,
        1 | 2 => Plan::FailOnce,
        5 if abandon => Plan::Abandon,
        _ => Plan::Succeed,
    }
}

/// One claimer: claims batches until a claim comes back empty and (when `until_all`) every
/// job has finished; completes or fails each job per its plan after releasing it.
async fn claimer(
    store: Arc<dyn Store>,
    clock: flotilla_core::ManualClock,
    ledger: Arc<Ledger>,
    worker: String,
    abandon: bool,
    until_all: u64,
) {
    let mut idle = 0u32;
    loop {
        let now = clock.now();
        let jobs = claim_via(&*store, now, &["q"], BATCH, &worker).await;
        if jobs.is_empty() {
            let finished = ledger.finished.load(Ordering::SeqCst);
            if finished >= until_all {
                return;
            }
            idle += 1;
            assert!(
                idle < 100_000,
                "{worker} stalled: nothing to claim, {finished} of {until_all} finished"
            );
            tokio::task::yield_now().await;
            continue;
        }
        idle = 0;
        let (mut completions, mut failures) = (Vec::new(), Vec::new());
        for j in &jobs {
            let t = token(j);
            ledger.take(j.id, t);
            let fails = match plan_of(j.id, abandon) {
                Plan::Succeed => false,
                Plan::FailOnce => j.attempt == 1,
                Plan::AlwaysFail => true,
                Plan::Abandon if j.attempt == 1 => continue,
                Plan::Abandon => false,
            };
            ledger.release(j.id, t);
            if fails {
                failures.push(Failure {
                    job_id: j.id,
                    token: t,
                    error: format!("attempt {}", j.attempt),
                    retryable: true,
                });
            } else {
                completions.push(Completion {
                    job_id: j.id,
                    token: t,
                    result: None,
                });
            }
        }
        let done = completions.iter().map(|c| c.job_id).collect::<Vec<_>>();
        let results = store
            .job_complete_many(JobCompleteManyParams { completions, now })
            .await
            .expect("complete");
        for (id, r) in done.iter().zip(&results) {
            r.as_ref()
                .unwrap_or_else(|e| panic!("completing {id}: {e}"));
            *ledger
                .completed
                .lock()
                .expect("ledger")
                .entry(*id)
                .or_default() += 1;
            ledger.finished.fetch_add(1, Ordering::SeqCst);
        }
        let failed = failures.iter().map(|f| f.job_id).collect::<Vec<_>>();
        let results = store
            .job_fail_many(JobFailManyParams { failures, now })
            .await
            .expect("fail");
        for (id, r) in failed.iter().zip(&results) {
            match r.as_ref().unwrap_or_else(|e| panic!("failing {id}: {e}")) {
                JobState::Dead => {
                    ledger.finished.fetch_add(1, Ordering::SeqCst);
                }
                JobState::Available => {}
                other => panic!("job {id} failed into {other}"),
            }
        }
    }
}

async fn run_claimers(h: &Harness, ledger: &Arc<Ledger>, abandon: bool, until_all: u64) {
    let tasks: Vec<_> = (0..TASKS)
        .map(|n| {
            let store = if n % 2 == 0 {
                h.store.clone()
            } else {
                h.other.clone()
            };
            let worker = format!("worker-{n}");
            tokio::spawn(claimer(
                store,
                h.clock.clone(),
                ledger.clone(),
                worker,
                abandon,
                until_all,
            ))
        })
        .collect();
    for t in futures::future::join_all(tasks).await {
        t.expect("a claimer panicked");
    }
}

async fn setup(h: &Harness, total: usize) -> Vec<JobId> {
    queue_with(
        h,
        QueueConfig {
            retry: limited(3, Duration::ZERO),
            ..QueueConfig::new("q")
        },
    )
    .await;
    let mut ids = Vec::with_capacity(total);
    for chunk in 0..total.div_ceil(500) {
        let n = 500.min(total - chunk * 500);
        ids.extend(
            insert_many(
                h,
                (0..n)
                    .map(|_| NewJob::new("q", "work", serde_json::json!({})))
                    .collect(),
            )
            .await,
        );
    }
    ids
}

/// Checks every job's end state against its plan and the queue's counts and totals.
async fn check_end_state(h: &Harness, ids: &[JobId], ledger: &Ledger, abandon: bool) {
    let jobs = list_all(h, flotilla_store::JobListParams::default(), 1000).await;
    assert_eq!(jobs.len(), ids.len());
    let completed = ledger.completed.lock().expect("ledger").clone();
    let (mut dead, mut failed_attempts, mut expired) = (0u64, 0u64, 0u64);
    for j in &jobs {
        let plan = plan_of(j.id, abandon);
        let (state, attempts, errors) = match plan {
            Plan::Succeed => (JobState::Succeeded, 1, 0),
            Plan::FailOnce | Plan::Abandon => (JobState::Succeeded, 2, 1),
            Plan::AlwaysFail => (JobState::Dead, 3, 3),
        };
        assert_eq!(
            (j.state, j.attempt, j.errors.len()),
            (state, attempts, errors),
            "job {}",
            j.id
        );
        assert_eq!(
            completed.get(&j.id).copied().unwrap_or(0),
            u32::from(state == JobState::Succeeded),
            "job {}",
            j.id
        );
        dead += u64::from(state == JobState::Dead);
        failed_attempts += errors as u64;
        expired += u64::from(plan == Plan::Abandon);
    }
    assert!(
        ledger.holders.lock().expect("ledger").is_empty(),
        "jobs still held"
    );
    let s = stats(h, "q").await;
    let total = ids.len() as u64;
    assert_eq!(
        s.counts,
        StateCounts {
            succeeded: total - dead,
            dead,
            ..StateCounts::default()
        }
    );
    let t = s.totals;
    assert_eq!(
        (t.enqueued, t.succeeded, t.dead, t.cancelled),
        (total, total - dead, dead, 0)
    );
    assert_eq!(
        (t.failed, t.retried, t.lease_expired),
        (failed_attempts, failed_attempts - dead, expired)
    );
}

/// 4,000 jobs drained by 8 concurrent claimers on both handles (claim 25 → complete, some
/// failing retryably): no job is held twice at once, none completes twice, every job ends
/// succeeded or dead as planned, and the totals agree.
pub async fn concurrent_claimers_never_share_a_job(h: Harness) {
    let ids = setup(&h, 4000).await;
    let ledger = Arc::new(Ledger::default());
    run_claimers(&h, &ledger, false, ids.len() as u64).await;
    check_end_state(&h, &ids, &ledger, false).await;
}

/// As above with 1,000 jobs, but one in ten is abandoned on its first attempt. With the
/// claimers stopped, the clock passes the lease and both handles reap at once: each lost
/// lease is reaped exactly once, its old token is then refused, and a second round of
/// claimers finishes everything.
pub async fn concurrent_claimers_with_lost_leases(h: Harness) {
    let ids = setup(&h, 1000).await;
    let ledger = Arc::new(Ledger::default());
    run_claimers(&h, &ledger, true, 0).await;
    let abandoned: Vec<(JobId, LeaseToken)> = ledger
        .holders
        .lock()
        .expect("ledger")
        .iter()
        .map(|(id, t)| (*id, *t))
        .collect();
    let planned = ids
        .iter()
        .filter(|id| plan_of(**id, true) == Plan::Abandon)
        .count();
    assert_eq!(abandoned.len(), planned);

    h.clock.advance(QueueConfig::DEFAULT_LEASE + millis(1));
    let params = maintenance(&h);
    let (a, b) = tokio::join!(
        h.store.job_reap_expired(params),
        h.other.job_reap_expired(params)
    );
    let (a, b) = (a.expect("reap"), b.expect("reap"));
    assert_eq!(
        (
            a.retried + b.retried,
            a.dead + b.dead,
            a.cancelled + b.cancelled
        ),
        (planned as u64, 0, 0)
    );
    for (id, old) in &abandoned {
        ledger.release(*id, *old);
        assert_eq!(
            code(try_complete(&h, *id, *old, None).await),
            flotilla_core::ErrorCode::LeaseMismatch
        );
        let j = get(&h, *id).await;
        assert_eq!(
            (j.state, j.errors.len()),
            (JobState::Available, 1),
            "job {id}"
        );
        assert_eq!(j.errors[0].error, crate::lease::LEASE_EXPIRED);
    }
    run_claimers(&h, &ledger, true, ids.len() as u64).await;
    check_end_state(&h, &ids, &ledger, true).await;
}
