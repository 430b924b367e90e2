//! The server goes away and comes back, or restarts.

use std::time::Duration;

use flotilla_client::Client;
use flotilla_core::{JobState, RetryPolicy};
use flotilla_worker::{JobContext, Worker};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::proxy::Proxy;
use crate::{job, setup, signalling, start, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_is_kept_and_reported_once_the_server_is_back() {
    let h = setup().await;
    // A long lease: no heartbeat falls within the test.
    let id = h
        .enqueue(job("hold", json!({})).lease(Duration::from_secs(60)))
        .await;
    let mut proxy = Proxy::start(Some(h.server.addr)).await;
    let (started_tx, mut started) = mpsc::channel(1);
    let release = CancellationToken::new();
    let gate = release.clone();
    let worker = Worker::builder(Client::new(&proxy.url, None).unwrap())
        .queues(["default"])
        .status_interval(Duration::from_secs(3600))
        .handler("hold", move |ctx: JobContext| {
            let (started, gate) = (started_tx.clone(), gate.clone());
            async move {
                let _ = started.send(()).await;
                gate.cancelled().await;
                Ok(json!({"done": ctx.job().id}))
            }
        })
        .build()
        .unwrap();
    let (stop, stop_rx) = oneshot::channel();
    let running = start(worker, stop_rx);
    within("the job", started.recv()).await.unwrap();

    proxy.route_to(None);
    release.cancel();
    // The report is refused twice: the worker holds on to the result and retries.
    for _ in 0..2 {
        within("a report attempt", proxy.refused.recv())
            .await
            .unwrap();
    }
    assert_eq!(h.job(id).await.state, JobState::Running);
    proxy.route_to(Some(h.server.addr));
    stop.send(()).unwrap();
    within("the drain", running).await.unwrap();

    let done = h.job(id).await;
    assert_eq!(done.state, JobState::Succeeded);
    assert_eq!(done.attempt, 1);
    assert_eq!(done.result, Some(json!({"done": id})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_waits_for_the_server_and_registers_again_after_a_restart() {
    let first = setup().await;
    let mut proxy = Proxy::start(None).await;
    let (tx, mut rx) = mpsc::channel(1);
    let worker = Worker::builder(Client::new(&proxy.url, None).unwrap())
        .queues(["default"])
        .poll_wait(Duration::from_millis(200))
        .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(100))
        .handler("ping", signalling(tx))
        .build()
        .unwrap();
    let (stop, stop_rx) = oneshot::channel();
    let running = start(worker, stop_rx);
    // Down at start: the worker retries registering.
    for _ in 0..2 {
        within("a registration attempt", proxy.refused.recv())
            .await
            .unwrap();
    }
    proxy.route_to(Some(first.server.addr));
    let a = first.enqueue(job("ping", json!({}))).await;
    assert_eq!(within("the first job", rx.recv()).await, Some(a));

    // "Restart": a server that never heard of the worker. The worker registers again
    // under the same id and carries on.
    let second = setup().await;
    let b = second.enqueue(job("ping", json!({}))).await;
    proxy.route_to(Some(second.server.addr));
    assert_eq!(within("the second job", rx.recv()).await, Some(b));
    stop.send(()).unwrap();
    within("shutdown", running).await.unwrap();

    let before = first.client.workers().await.unwrap();
    let after = second.client.workers().await.unwrap();
    assert_eq!(before.len(), 1);
    assert_eq!(after.len(), 1);
    assert_eq!(before[0].id, after[0].id);
    assert_eq!(second.job(b).await.state, JobState::Succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_lost_its_lease_stops_the_job() {
    let h = setup().await;
    let retry = RetryPolicy::Limited {
        max_attempts: 2,
        delay: Duration::from_millis(10),
    };
    let leased = job("lease", json!({}))
        .lease(Duration::from_millis(300))
        .retry(retry);
    let id = h.enqueue(leased).await;
    let proxy = Proxy::start(Some(h.server.addr)).await;
    let (started_tx, mut started) = mpsc::channel(1);
    let (lost_tx, mut lost) = mpsc::channel(1);
    let first = Worker::builder(Client::new(&proxy.url, None).unwrap())
        .queues(["default"])
        .handler("lease", move |ctx: JobContext| {
            let (started, lost) = (started_tx.clone(), lost_tx.clone());
            async move {
                let _ = started.send(()).await;
                ctx.cancelled().await;
                let _ = lost.send(()).await;
                Ok(json!("stale"))
            }
        })
        .build()
        .unwrap();
    let (stop_first, stop_rx) = oneshot::channel();
    let first = start(first, stop_rx);
    within("the first attempt", started.recv()).await.unwrap();

    // Heartbeats cannot get through: the lease lapses and the reaper takes the job back,
    // which a second worker then runs.
    proxy.route_to(None);
    let (attempt_tx, mut attempts) = mpsc::channel(1);
    let second = h
        .worker()
        .handler("lease", move |ctx: JobContext| {
            let attempts = attempt_tx.clone();
            async move {
                let _ = attempts.send(ctx.job().attempt).await;
                Ok(json!("fresh"))
            }
        })
        .build()
        .unwrap();
    let (stop_second, stop_rx) = oneshot::channel();
    let second = start(second, stop_rx);
    assert_eq!(within("the second attempt", attempts.recv()).await, Some(2));

    // Back online, the first worker's next heartbeat is refused: its handler is stopped.
    proxy.route_to(Some(h.server.addr));
    within("the first handler to stop", lost.recv())
        .await
        .unwrap();
    stop_first.send(()).unwrap();
    stop_second.send(()).unwrap();
    within("the first drain", first).await.unwrap();
    within("the second drain", second).await.unwrap();

    let done = h.job(id).await;
    assert_eq!(done.state, JobState::Succeeded);
    assert_eq!(done.result, Some(json!("fresh")));
    assert_eq!(
        done.errors.len(),
        1,
        "only the lapsed lease: {:?}",
        done.errors
    );
}
