//! Pipeline runs: steps enqueued as their dependencies succeed (fan-out, fan-in), with
//! their inputs; states derived from the steps' jobs; failures, replays and cancellation;
//! listing.

use flotilla_core::{
    Clock, ErrorCode, JobId, JobState, NewJob, NewRun, NewStep, Run, RunId, RunState, StepState,
};
use flotilla_store::{RunCreateParams, RunCreated, RunListParams, StoreResult};
use serde_json::{Value, json};

use crate::Harness;
use crate::support::{
    cancel, claim, claim_one, code, fail, get, limited, queue, queue_retrying, secs, token,
    try_complete,
};

fn step(name: &str, queue: &str, after: &[&str]) -> NewStep {
    NewStep {
        name: name.into(),
        after: after.iter().map(|s| (*s).into()).collect(),
        job: NewJob::new(queue, format!("media.{name}"), json!({ "param": name })),
    }
}

/// ingest → (small, large) → deliver: a fan-out then a fan-in.
fn diamond() -> NewRun {
    NewRun {
        pipeline: "image".into(),
        meta: json!({"file": "cat.jpg"}),
        steps: vec![
            step("ingest", "ingest", &[]),
            step("small", "transcode", &["ingest"]),
            step("large", "transcode", &["ingest"]),
            step("deliver", "deliver", &["small", "large"]),
        ],
    }
}

async fn try_create(h: &Harness, run: NewRun) -> StoreResult<RunCreated> {
    let params = RunCreateParams {
        run,
        now: h.clock.now(),
    };
    h.store.run_create(params).await
}

async fn create(h: &Harness, run: NewRun) -> RunCreated {
    try_create(h, run).await.expect("run_create")
}

async fn queues(h: &Harness) {
    for q in ["ingest", "transcode", "deliver"] {
        queue(h, q).await;
    }
}

async fn run(h: &Harness, id: RunId) -> Run {
    h.store.run_get(id).await.expect("run_get")
}

fn states(run: &Run) -> Vec<(&str, StepState)> {
    run.steps
        .iter()
        .map(|s| (s.name.as_str(), s.state))
        .collect()
}

/// Completes the one available job of `queue` with `result`; returns its payload.
async fn finish(h: &Harness, queue: &str, result: Value) -> Value {
    let job = claim_one(h, queue).await;
    try_complete(h, job.id, token(&job), Some(result))
        .await
        .expect("complete");
    job.payload
}

/// Creating a run enqueues only the steps that wait for nothing, with the run's details in
/// their payloads; the others wait.
pub async fn create_enqueues_the_first_steps(h: Harness) {
    queues(&h).await;
    let created = create(&h, diamond()).await;
    assert_eq!(created.queues, vec!["ingest".to_owned()]);
    let got = run(&h, created.id).await;
    assert_eq!(got.pipeline, "image");
    assert_eq!(got.meta, json!({"file": "cat.jpg"}));
    assert_eq!(got.state, RunState::Running);
    use StepState::*;
    assert_eq!(
        states(&got),
        vec![
            ("ingest", Queued),
            ("small", Waiting),
            ("large", Waiting),
            ("deliver", Waiting)
        ]
    );
    assert!(claim(&h, &["transcode", "deliver"], 10).await.is_empty());
    let job = get(&h, got.steps[0].job_id.expect("the first step has a job")).await;
    assert_eq!(job.kind, "media.ingest");
    assert_eq!(
        job.payload,
        json!({"param": "ingest", "run": {"id": created.id, "step": "ingest", "inputs": {}}})
    );
}

/// A completion enqueues the steps that waited only for it, with its result as their
/// input; a step waiting for two starts after the second, with both inputs; the run
/// succeeds when every step has.
pub async fn completions_enqueue_successors_with_inputs(h: Harness) {
    queues(&h).await;
    let id = create(&h, diamond()).await.id;
    finish(&h, "ingest", json!({"sha256": "ab"})).await;
    let mut fanned = claim(&h, &["transcode"], 10).await;
    fanned.sort_by_key(|j| j.kind.clone());
    assert_eq!(fanned.len(), 2, "both renditions enqueued: {fanned:?}");
    for job in &fanned {
        assert_eq!(
            job.payload["run"]["inputs"],
            json!({"ingest": {"sha256": "ab"}})
        );
    }
    let (large, small) = (&fanned[0], &fanned[1]);
    try_complete(&h, small.id, token(small), Some(json!({"w": 320})))
        .await
        .unwrap();
    assert!(
        claim(&h, &["deliver"], 1).await.is_empty(),
        "the fan-in waits for both"
    );
    assert_eq!(run(&h, id).await.state, RunState::Running);
    try_complete(&h, large.id, token(large), Some(json!({"w": 1920})))
        .await
        .unwrap();
    let payload = finish(&h, "deliver", json!({"delivered": 2})).await;
    assert_eq!(
        payload["run"]["inputs"],
        json!({"small": {"w": 320}, "large": {"w": 1920}})
    );
    let done = run(&h, id).await;
    assert_eq!(done.state, RunState::Succeeded);
    assert!(done.steps.iter().all(|s| s.state == StepState::Succeeded));
    assert_eq!(done.steps[3].result, Some(json!({"delivered": 2})));
}

/// A completion with a stale token is refused and enqueues nothing.
pub async fn a_refused_completion_enqueues_nothing(h: Harness) {
    queues(&h).await;
    let id = create(&h, diamond()).await.id;
    let job = claim_one(&h, "ingest").await;
    let wrong = flotilla_core::LeaseToken(token(&job).0 + 1000);
    let refused = try_complete(&h, job.id, wrong, None).await;
    assert_eq!(code(refused), ErrorCode::LeaseMismatch);
    assert!(claim(&h, &["transcode"], 10).await.is_empty());
    assert_eq!(run(&h, id).await.steps[0].state, StepState::Running);
}

/// A step whose job dies fails the run (its successors never start); replaying the job
/// resumes the run.
pub async fn a_dead_step_fails_the_run_until_replayed(h: Harness) {
    queues(&h).await;
    queue_retrying(&h, "ingest", limited(1, secs(1))).await;
    let id = create(&h, diamond()).await.id;
    let job = claim_one(&h, "ingest").await;
    assert_eq!(fail(&h, &job, "corrupt file", false).await, JobState::Dead);
    let failed = run(&h, id).await;
    assert_eq!(failed.state, RunState::Failed);
    assert_eq!(failed.steps[0].state, StepState::Failed);
    assert_eq!(failed.steps[0].error.as_deref(), Some("corrupt file"));
    let replay = flotilla_store::JobRetryParams {
        job_id: job.id,
        now: h.clock.now(),
    };
    h.store.job_retry(replay).await.expect("job_retry");
    assert_eq!(run(&h, id).await.state, RunState::Running);
    finish(&h, "ingest", json!({})).await;
    assert_eq!(claim(&h, &["transcode"], 10).await.len(), 2);
}

/// Cancelling a step's job cancels the run.
pub async fn a_cancelled_step_cancels_the_run(h: Harness) {
    queues(&h).await;
    let id = create(&h, diamond()).await.id;
    let first: JobId = run(&h, id).await.steps[0].job_id.unwrap();
    cancel(&h, first).await;
    let got = run(&h, id).await;
    assert_eq!(got.state, RunState::Cancelled);
    assert_eq!(got.steps[0].state, StepState::Cancelled);
}

/// Bad runs are refused whole (nothing enqueued); an unknown run is `run_not_found`.
pub async fn bad_runs_are_refused(h: Harness) {
    queues(&h).await;
    let mut cyclic = diamond();
    cyclic.steps[0].after = vec!["deliver".into()];
    assert_eq!(
        code(try_create(&h, cyclic).await),
        ErrorCode::InvalidArgument
    );
    let mut unknown_queue = diamond();
    unknown_queue.steps[0].job.queue = "nowhere".into();
    assert_eq!(
        code(try_create(&h, unknown_queue).await),
        ErrorCode::QueueNotFound
    );
    assert_eq!(
        h.store
            .run_list(RunListParams::default())
            .await
            .unwrap()
            .runs
            .len(),
        0,
        "a refused run leaves nothing"
    );
    assert!(claim(&h, &["ingest"], 10).await.is_empty());
    assert_eq!(
        code(h.store.run_get(RunId(424_242)).await),
        ErrorCode::RunNotFound
    );
}

/// Runs list newest first, filtered by pipeline, a page at a time.
pub async fn runs_list_newest_first_with_cursor(h: Harness) {
    queues(&h).await;
    let mut ids = Vec::new();
    for pipeline in ["image", "video", "image"] {
        let mut run = diamond();
        run.pipeline = pipeline.into();
        ids.push(create(&h, run).await.id);
    }
    let list = |pipeline: Option<&str>, cursor, limit| RunListParams {
        pipeline: pipeline.map(str::to_owned),
        cursor,
        limit,
    };
    let page = h.store.run_list(list(None, None, 2)).await.unwrap();
    let got: Vec<RunId> = page.runs.iter().map(|r| r.id).collect();
    assert_eq!(got, vec![ids[2], ids[1]]);
    let rest = h.store.run_list(list(None, page.next, 2)).await.unwrap();
    let got: Vec<RunId> = rest.runs.iter().map(|r| r.id).collect();
    assert_eq!(got, vec![ids[0]]);
    assert_eq!(rest.next, None);
    let images = h
        .store
        .run_list(list(Some("image"), None, 0))
        .await
        .unwrap();
    let got: Vec<RunId> = images.runs.iter().map(|r| r.id).collect();
    assert_eq!(got, vec![ids[2], ids[0]]);
}
