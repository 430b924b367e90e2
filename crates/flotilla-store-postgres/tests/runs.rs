//! Pipeline runs on PostgreSQL beyond the shared suite: fan-ins completed concurrently from
//! two stores (as two servers), the wakeup of a step enqueued by a completion, batches that
//! mix steps and plain jobs, pruned step jobs, and runs refused whole.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use flotilla_core::{
    Clock, ErrorCode, Job, JobState, NewJob, NewRun, NewStep, QueueConfig, Retention, RunId,
    StepState,
};
use flotilla_store::{
    Completion, JobCompleteManyParams, JobInsertManyParams, JobListParams, RunCreateParams,
    RunListParams, StateCounts, Store,
};
use flotilla_store_tests::Harness;
use flotilla_store_tests::support::*;
use serde_json::{Value, json};
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::RecvError;

fn step(name: &str, queue: &str, after: &[&str]) -> NewStep {
    NewStep {
        name: name.into(),
        after: after.iter().map(|s| (*s).into()).collect(),
        job: NewJob::new(queue, format!("media.{name}"), json!({ "param": name })),
    }
}

fn new_run(steps: Vec<NewStep>) -> NewRun {
    NewRun {
        pipeline: "image".into(),
        meta: json!({"file": "cat.jpg"}),
        steps,
    }
}

/// ingest → (small, large) → deliver.
fn diamond() -> NewRun {
    new_run(vec![
        step("ingest", "ingest", &[]),
        step("small", "transcode", &["ingest"]),
        step("large", "transcode", &["ingest"]),
        step("deliver", "deliver", &["small", "large"]),
    ])
}

async fn create(h: &Harness, run: NewRun) -> RunId {
    let params = RunCreateParams {
        run,
        now: h.clock.now(),
    };
    h.store.run_create(params).await.expect("run_create").id
}

async fn queues(h: &Harness, names: &[&str]) {
    for q in names {
        queue(h, q).await;
    }
}

/// Completes `jobs` (claimed, with their own tokens) in one batch through `store`, each with
/// `result(job)`; every item must be accepted.
async fn complete_batch(store: &dyn Store, h: &Harness, jobs: &[Job], result: fn(&Job) -> Value) {
    let completions = jobs
        .iter()
        .map(|j| Completion {
            job_id: j.id,
            token: token(j),
            result: Some(result(j)),
        })
        .collect();
    let params = JobCompleteManyParams {
        completions,
        now: h.clock.now(),
    };
    let results = store.job_complete_many(params).await.expect("complete");
    assert_eq!(codes(&results), vec![None; jobs.len()]);
}

/// A queue's counts must match its jobs, state by state.
async fn counts_match_jobs(h: &Harness, queue: &str) {
    let params = JobListParams {
        queue: Some(queue.to_owned()),
        ..JobListParams::default()
    };
    let mut expected = StateCounts::default();
    for j in list_all(h, params, 1000).await {
        *expected.get_mut(j.state) += 1;
    }
    assert_eq!(stats(h, queue).await.counts, expected, "{queue}");
}

const PARENTS: usize = 6;
const RUNS: usize = 12;

/// Six parents, each completed in a batch of its own that holds that parent of every run
/// (in a different order per batch), all at once from both stores: every run's fan-in step
/// is enqueued exactly once, with its six inputs, and nothing deadlocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_completions_of_a_fan_in_enqueue_it_once() {
    let h = common::harness().await;
    queues(&h, &["parts", "join"]).await;
    let parents: Vec<String> = (0..PARENTS).map(|i| format!("p{i}")).collect();
    let mut ids = Vec::new();
    for _ in 0..RUNS {
        let mut steps: Vec<NewStep> = parents.iter().map(|p| step(p, "parts", &[])).collect();
        let names: Vec<&str> = parents.iter().map(String::as_str).collect();
        steps.push(step("join", "join", &names));
        ids.push(create(&h, new_run(steps)).await);
    }
    let claimed = claim(&h, &["parts"], 1000).await;
    assert_eq!(claimed.len(), RUNS * PARENTS);
    let step_of = |j: &Job| j.payload["run"]["step"].as_str().unwrap_or("").to_owned();
    let tasks: Vec<_> = parents
        .iter()
        .enumerate()
        .map(|(k, parent)| {
            let mut batch: Vec<Job> = claimed
                .iter()
                .filter(|j| step_of(j) == *parent)
                .cloned()
                .collect();
            batch.rotate_left(k * 2);
            if k % 2 == 1 {
                batch.reverse();
            }
            let store = if k % 2 == 0 {
                h.store.clone()
            } else {
                h.other.clone()
            };
            let now = h.clock.now();
            tokio::spawn(async move {
                let completions = batch
                    .iter()
                    .map(|j| Completion {
                        job_id: j.id,
                        token: token(j),
                        result: Some(json!({ "from": j.payload["run"]["step"] })),
                    })
                    .collect();
                let params = JobCompleteManyParams { completions, now };
                let results = store.job_complete_many(params).await.expect("complete");
                assert!(results.iter().all(Result::is_ok), "{results:?}");
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("a completer panicked");
    }

    let joins = claim(&h, &["join"], 1000).await;
    assert_eq!(joins.len(), RUNS, "one fan-in job per run: {joins:?}");
    let runs: HashSet<i64> = joins
        .iter()
        .filter_map(|j| j.payload["run"]["id"].as_i64())
        .collect();
    assert_eq!(runs.len(), RUNS);
    for job in &joins {
        let inputs = job.payload["run"]["inputs"].as_object().expect("inputs");
        assert_eq!(inputs.len(), PARENTS, "{inputs:?}");
        for (name, value) in inputs {
            assert_eq!(value, &json!({ "from": name }));
        }
    }
    for id in ids {
        let run = h.store.run_get(id).await.expect("run_get");
        let join = run.steps.last().expect("the fan-in");
        assert_eq!(join.state, StepState::Running);
        assert!(joins.iter().any(|j| Some(j.id) == join.job_id));
        assert!(
            run.steps[..PARENTS]
                .iter()
                .all(|s| s.state == StepState::Succeeded)
        );
    }
    counts_match_jobs(&h, "parts").await;
    counts_match_jobs(&h, "join").await;
}

/// The next wakeup on `rx`, within a second.
async fn next(rx: &mut Receiver<String>) -> String {
    let wait = async {
        loop {
            match rx.recv().await {
                Ok(queue) => return queue,
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => panic!("the wakeup channel closed"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(1), wait)
        .await
        .expect("a wakeup within a second")
}

/// Enqueues into `marker` and waits for its wakeup: everything committed before has been
/// received (wakeups arrive in commit order).
async fn settle(h: &Harness, rx: &mut Receiver<String>) {
    insert(h, job("marker", "k")).await;
    while next(rx).await != "marker" {}
}

/// A run's first step and a step enqueued by a completion both wake the other store, each
/// with its queue and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_enqueued_by_a_completion_wake_the_other_store() {
    let h = common::harness().await;
    queues(&h, &["marker", "ingest", "transcode", "deliver"]).await;
    let mut rx = h.other.wakeups().expect("postgres announces wakeups");
    settle(&h, &mut rx).await;

    create(&h, diamond()).await;
    assert_eq!(next(&mut rx).await, "ingest");
    let ingest = claim_one(&h, "ingest").await;
    complete(&h, &ingest).await;
    assert_eq!(next(&mut rx).await, "transcode");
    insert(&h, job("marker", "k")).await;
    assert_eq!(next(&mut rx).await, "marker", "one wakeup per completion");
}

/// One batch holding a plain job, a step, the same step again with a stale token and an
/// unknown job: each item is answered in order, the step's successors are enqueued, and
/// the counts agree with the jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_mixing_steps_and_plain_jobs_answers_each_item() {
    let h = common::harness().await;
    queues(&h, &["plain", "ingest", "transcode", "deliver"]).await;
    insert(&h, job("plain", "k")).await;
    create(&h, diamond()).await;
    let plain = claim_one(&h, "plain").await;
    let ingest = claim_one(&h, "ingest").await;
    let item = |job: &Job, token| Completion {
        job_id: job.id,
        token,
        result: Some(json!({ "kind": job.kind })),
    };
    let stale = flotilla_core::LeaseToken(token(&ingest).0 + 1000);
    let mut unknown = item(&plain, token(&plain));
    unknown.job_id = flotilla_core::JobId(9_999_999);
    let params = JobCompleteManyParams {
        completions: vec![
            item(&ingest, stale),
            item(&plain, token(&plain)),
            item(&ingest, token(&ingest)),
            unknown,
        ],
        now: h.clock.now(),
    };
    let results = h.store.job_complete_many(params).await.expect("complete");
    assert_eq!(
        codes(&results),
        vec![
            Some(ErrorCode::LeaseMismatch),
            None,
            None,
            Some(ErrorCode::JobNotFound)
        ]
    );
    assert_eq!(get(&h, plain.id).await.state, JobState::Succeeded);
    assert_eq!(get(&h, ingest.id).await.state, JobState::Succeeded);
    let fanned = claim(&h, &["transcode"], 10).await;
    assert_eq!(fanned.len(), 2);
    for job in &fanned {
        assert_eq!(
            job.payload["run"]["inputs"],
            json!({"ingest": {"kind": "media.ingest"}})
        );
    }
    for q in ["plain", "ingest", "transcode"] {
        counts_match_jobs(&h, q).await;
    }
}

fn schema_of(h: &Harness) -> String {
    h.guard
        .downcast_ref::<common::SchemaGuard>()
        .expect("a schema guard")
        .schema
        .clone()
}

/// When the steps' transaction fails (here a trigger refuses every update of `run_steps`),
/// the batch's plain jobs stay completed and each step's item carries the failure; a batch
/// of steps only fails whole. Nothing of the steps changed, and once the fault is gone the
/// same completion goes through and enqueues the successors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_step_transaction_leaves_the_other_items_completed() {
    let h = common::harness().await;
    queues(&h, &["plain", "ingest", "transcode", "deliver"]).await;
    insert(&h, job("plain", "k")).await;
    create(&h, diamond()).await;
    let plain = claim_one(&h, "plain").await;
    let ingest = claim_one(&h, "ingest").await;
    let admin = common::admin_client().await;
    let schema = schema_of(&h);
    admin
        .batch_execute(&format!(
            "CREATE FUNCTION \"{schema}\".refuse() RETURNS trigger LANGUAGE plpgsql AS
                 $$ BEGIN RAISE EXCEPTION 'injected fault'; END $$;
             CREATE TRIGGER refuse BEFORE UPDATE ON \"{schema}\".run_steps
                 FOR EACH ROW EXECUTE FUNCTION \"{schema}\".refuse();"
        ))
        .await
        .expect("install the fault");
    let item = |job: &Job| Completion {
        job_id: job.id,
        token: token(job),
        result: None,
    };
    let batch = |jobs: Vec<Completion>| JobCompleteManyParams {
        completions: jobs,
        now: h.clock.now(),
    };
    let results = h
        .store
        .job_complete_many(batch(vec![item(&ingest), item(&plain)]))
        .await
        .expect("the plain job was completed");
    assert_eq!(codes(&results), vec![Some(ErrorCode::Internal), None]);
    assert_eq!(get(&h, plain.id).await.state, JobState::Succeeded);
    assert_eq!(get(&h, ingest.id).await.state, JobState::Running);
    let whole = h.store.job_complete_many(batch(vec![item(&ingest)])).await;
    assert_eq!(code(whole), ErrorCode::Internal);

    admin
        .batch_execute(&format!("DROP TRIGGER refuse ON \"{schema}\".run_steps"))
        .await
        .expect("remove the fault");
    complete(&h, &ingest).await;
    assert_eq!(claim(&h, &["transcode"], 10).await.len(), 2);
    for q in ["plain", "ingest", "transcode"] {
        counts_match_jobs(&h, q).await;
    }
}

/// Once their jobs are pruned, a succeeded step still reads as succeeded with its result,
/// and a step whose job died reads as failed, saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruned_step_jobs_leave_the_run_readable() {
    let h = common::harness().await;
    let short = Retention {
        succeeded: secs(1),
        cancelled: secs(1),
        dead: secs(1),
    };
    queue_with(
        &h,
        QueueConfig {
            retention: short,
            retry: limited(1, secs(1)),
            ..QueueConfig::new("work")
        },
    )
    .await;
    queue(&h, "next").await;
    let id = create(
        &h,
        new_run(vec![
            step("a", "work", &[]),
            step("b", "work", &[]),
            step("c", "next", &["a"]),
        ]),
    )
    .await;
    let mut jobs = claim(&h, &["work"], 2).await;
    jobs.sort_by_key(|j| j.kind.clone());
    complete_batch(&*h.store, &h, &jobs[..1], |_| json!({"sha256": "ab"})).await;
    assert_eq!(fail(&h, &jobs[1], "corrupt", false).await, JobState::Dead);
    h.clock.advance(secs(2));
    assert_eq!(h.store.job_prune(maintenance(&h)).await.expect("prune"), 2);
    let run = h.store.run_get(id).await.expect("run_get");
    let (a, b, c) = (&run.steps[0], &run.steps[1], &run.steps[2]);
    assert_eq!(a.state, StepState::Succeeded);
    assert_eq!(a.result, Some(json!({"sha256": "ab"})));
    assert_eq!(b.state, StepState::Failed);
    assert_eq!(
        b.error.as_deref(),
        Some("the step's job was pruned before it succeeded")
    );
    assert_eq!(c.state, StepState::Queued);
    assert_eq!(run.state, flotilla_core::RunState::Failed);
}

/// A run is refused whole, before anything is enqueued, when a step that would only start
/// later names a missing queue or carries an invalid job, or when its text cannot be
/// stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_with_a_bad_later_step_are_refused_whole() {
    let h = common::harness().await;
    queues(&h, &["ingest", "transcode", "deliver"]).await;
    let try_create = |run: NewRun| {
        h.store.run_create(RunCreateParams {
            run,
            now: h.clock.now(),
        })
    };
    let mut missing = diamond();
    missing.steps[3].job.queue = "nowhere".into();
    assert_eq!(code(try_create(missing).await), ErrorCode::QueueNotFound);
    let mut invalid = diamond();
    invalid.steps[2].job.kind = String::new();
    assert_eq!(code(try_create(invalid).await), ErrorCode::InvalidKind);
    let mut nul = diamond();
    nul.pipeline = "image\0".into();
    assert_eq!(code(try_create(nul).await), ErrorCode::InvalidArgument);
    let page = h
        .store
        .run_list(RunListParams::default())
        .await
        .expect("run_list");
    assert!(page.runs.is_empty(), "{page:?}");
    assert!(claim(&h, &["ingest"], 10).await.is_empty());
    counts_match_jobs(&h, "ingest").await;
}

/// `flotilla store copy` does not copy runs: a store's jobs, step jobs among them, copy
/// into another as plain jobs (counts verified as the copy does), and completing them
/// there enqueues nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_takes_step_jobs_as_plain_jobs() {
    let source = common::harness().await;
    let target = common::harness().await;
    let names = ["ingest", "transcode", "deliver"];
    queues(&source, &names).await;
    queues(&target, &names).await;
    create(&source, diamond()).await;
    let ingest = claim_one(&source, "ingest").await;
    complete(&source, &ingest).await;
    let jobs = list_all(&source, JobListParams::default(), 1000).await;
    assert_eq!(target.store.job_import(jobs).await.expect("import"), 3);
    for q in names {
        assert_eq!(
            stats(&target, q).await.counts,
            stats(&source, q).await.counts,
            "{q}"
        );
    }
    let copied = claim(&target, &["transcode"], 10).await;
    assert_eq!(copied.len(), 2);
    complete_batch(&*target.store, &target, &copied, |_| json!({})).await;
    assert!(claim(&target, &["deliver"], 10).await.is_empty());
    let page = target
        .store
        .run_list(RunListParams::default())
        .await
        .expect("run_list");
    assert!(page.runs.is_empty());
}

/// Not a check but a measurement: one claimer drains 20,000 plain jobs (claim and complete
/// 100 at a time), then the first steps of 10,000 two-step runs (each completion batch
/// enqueues 100 successors), under full durability. Run it with
/// `cargo nextest run -p flotilla-store-postgres --run-ignored only --no-capture drain_rate`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement (about a minute), not a check"]
async fn drain_rate_of_plain_jobs_and_steps() {
    const PLAIN: usize = 20_000;
    const STEP_RUNS: usize = 10_000;
    let h = common::harness().await;
    queues(&h, &["plain", "first", "second"]).await;
    for _ in 0..PLAIN / 1000 {
        let jobs = (0..1000).map(|_| job("plain", "k")).collect();
        let params = JobInsertManyParams {
            jobs,
            now: h.clock.now(),
        };
        h.store.job_insert_many(params).await.expect("insert");
    }
    let rate = drain(&h, "plain", PLAIN).await;
    println!("plain jobs: {rate:6.0} claimed+completed/s (batches of 100, one claimer)");
    for _ in 0..STEP_RUNS {
        create(
            &h,
            new_run(vec![step("a", "first", &[]), step("b", "second", &["a"])]),
        )
        .await;
    }
    let rate = drain(&h, "first", STEP_RUNS).await;
    println!("first steps: {rate:6.0} claimed+completed/s, each enqueueing its successor");
    assert_eq!(stats(&h, "second").await.counts.available, STEP_RUNS as u64);
}

/// Claims and completes `total` jobs of `queue`, 100 at a time; returns jobs per second.
async fn drain(h: &Harness, queue: &str, total: usize) -> f64 {
    let start = Instant::now();
    let mut done = 0;
    while done < total {
        let jobs = claim(h, &[queue], 100).await;
        assert!(!jobs.is_empty(), "{done} of {total} drained");
        complete_batch(&*h.store, h, &jobs, |_| json!({"ok": true})).await;
        done += jobs.len();
    }
    total as f64 / start.elapsed().as_secs_f64()
}
