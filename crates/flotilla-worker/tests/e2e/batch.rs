//! Outcomes go to the server in batches (`POST /v1/ack:batch`), counted through `proxy`.

use flotilla_client::Client;
use flotilla_core::JobState;
use flotilla_proto::EnqueueBatchRequest;
use flotilla_worker::{JobContext, JobError, Worker};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::proxy::Proxy;
use crate::{Harness, job, setup, start, within};

const ACK: &str = "POST /v1/ack:batch";

/// `n` jobs of `kind`, payload `{"n": i}`, enqueued at once.
async fn enqueue(h: &Harness, kind: &str, n: usize) -> Vec<flotilla_core::JobId> {
    let jobs = (0..n).map(|i| job(kind, json!({ "n": i }))).collect();
    let batch = EnqueueBatchRequest { jobs };
    let answer = h.client.enqueue_batch(&batch).await.unwrap();
    answer.jobs.into_iter().map(|j| j.id).collect()
}

/// A worker through `proxy` whose "gate" jobs wait for `release` and "bad" jobs fail for
/// good once released; each signals on `started` first.
fn gated(
    proxy: &Proxy,
    slots: u32,
    started: mpsc::Sender<()>,
    release: &CancellationToken,
) -> Worker {
    let (started_bad, gate, gate_bad) = (started.clone(), release.clone(), release.clone());
    Worker::builder(Client::new(&proxy.url, None).unwrap())
        .queues(["default"])
        .concurrency(slots)
        .handler("gate", move |ctx: JobContext| {
            let (started, gate) = (started.clone(), gate.clone());
            async move {
                let _ = started.send(()).await;
                gate.cancelled().await;
                Ok(json!({"echo": ctx.payload()["n"]}))
            }
        })
        .handler("bad", move |_ctx: JobContext| {
            let (started, gate) = (started_bad.clone(), gate_bad.clone());
            async move {
                let _ = started.send(()).await;
                gate.cancelled().await;
                Err::<Value, _>(JobError::fatal("corrupt input"))
            }
        })
        .build()
        .unwrap()
}

fn per_job_reports(proxy: &Proxy) -> Vec<String> {
    let lines = proxy.tap.lines();
    let per_job = |l: &String| l.ends_with("/complete") || l.ends_with("/fail");
    lines.into_iter().filter(per_job).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_jobs_finishing_at_once_are_reported_in_few_requests() {
    const N: usize = 100;
    let h = setup().await;
    let ids = enqueue(&h, "gate", N).await;
    let proxy = Proxy::start(Some(h.server.addr)).await;
    let (started_tx, mut started) = mpsc::channel(N);
    let release = CancellationToken::new();
    let worker = gated(&proxy, N as u32, started_tx, &release);
    let (stop, stop_rx) = oneshot::channel();
    let running = start(worker, stop_rx);
    for _ in 0..N {
        within("the jobs to start", started.recv()).await.unwrap();
    }
    release.cancel();
    stop.send(()).unwrap();
    within("the drain", running).await.unwrap();

    for (n, id) in ids.into_iter().enumerate() {
        let done = h.job(id).await;
        assert_eq!(done.state, JobState::Succeeded);
        assert_eq!(done.result, Some(json!({ "echo": n })));
    }
    let acks = proxy.tap.requests(ACK);
    assert!((1..=N / 4).contains(&acks), "{N} jobs in {acks} requests");
    assert_eq!(per_job_reports(&proxy), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_answer_is_cut_still_reports_every_job_exactly_once() {
    const GOOD: usize = 30;
    const BAD: usize = 10;
    let h = setup().await;
    let good = enqueue(&h, "gate", GOOD).await;
    let bad = enqueue(&h, "bad", BAD).await;
    let mut proxy = Proxy::start(Some(h.server.addr)).await;
    let (started_tx, mut started) = mpsc::channel(GOOD + BAD);
    let release = CancellationToken::new();
    let worker = gated(&proxy, (GOOD + BAD) as u32, started_tx, &release);
    let (stop, stop_rx) = oneshot::channel();
    let running = start(worker, stop_rx);
    for _ in 0..GOOD + BAD {
        within("the jobs to start", started.recv()).await.unwrap();
    }
    // The server is away while the jobs finish: their outcomes pile up, then go together
    // in one request, which the server applies but whose answer never arrives.
    proxy.route_to(None);
    release.cancel();
    for _ in 0..2 {
        within("a report attempt", proxy.refused.recv())
            .await
            .unwrap();
    }
    proxy.tap.cut_answer_to_next(ACK);
    proxy.route_to(Some(h.server.addr));
    stop.send(()).unwrap();
    within("the drain", running).await.unwrap();

    for (n, id) in good.into_iter().enumerate() {
        let done = h.job(id).await;
        assert_eq!(done.state, JobState::Succeeded);
        assert_eq!((done.attempt, done.errors.len()), (1, 0));
        assert_eq!(done.result, Some(json!({ "echo": n })));
    }
    for id in bad {
        let dead = h.job(id).await;
        assert_eq!(dead.state, JobState::Dead);
        assert_eq!(dead.attempt, 1);
        let errors: Vec<&str> = dead.errors.iter().map(|e| e.error.as_str()).collect();
        assert_eq!(errors, ["corrupt input"], "failed once, not twice");
    }
    assert!(!proxy.tap.armed(), "an answer was cut");
    assert!(proxy.tap.requests(ACK) >= 2, "{:?}", proxy.tap.lines());
    assert_eq!(per_job_reports(&proxy), Vec::<String>::new());
}
