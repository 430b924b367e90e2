//! Shutdown with jobs in flight.

use std::time::Duration;

use flotilla_core::JobState;
use flotilla_worker::{JobContext, JobError};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::{job, setup, start, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_running_jobs_finish_and_takes_no_more() {
    let h = setup().await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(h.enqueue(job("hold", json!(n))).await);
    }
    let (started_tx, mut started) = mpsc::channel(3);
    let release = CancellationToken::new();
    let gate = release.clone();
    let worker = h
        .worker()
        .concurrency(3)
        .health_addr("127.0.0.1:0".parse().unwrap())
        .handler("hold", move |ctx: JobContext| {
            let (started, gate) = (started_tx.clone(), gate.clone());
            async move {
                let _ = started.send(()).await;
                gate.cancelled().await;
                Ok(ctx.payload().clone())
            }
        })
        .build()
        .unwrap();
    let readyz = format!("http://{}/readyz", worker.health_addr().unwrap());
    let (stop, stop_rx) = oneshot::channel();
    let running = start(worker, stop_rx);
    for _ in 0..3 {
        within("the jobs to start", started.recv()).await.unwrap();
    }
    // Enqueued while every slot is busy: the worker must not take it once stopping.
    let later = h.enqueue(job("hold", json!("later"))).await;
    stop.send(()).unwrap();
    // The jobs end only once the worker is draining (its poll loop has stopped), so that
    // the slots they free are not raced by a poll sent before the stop took effect.
    within("the worker to drain", async {
        loop {
            let answer = reqwest::get(&readyz).await.unwrap();
            if answer.text().await.unwrap().contains("draining") {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    release.cancel();
    within("the drain", running).await.unwrap();

    for id in ids {
        assert_eq!(h.job(id).await.state, JobState::Succeeded);
    }
    assert_eq!(h.job(later).await.state, JobState::Available);
    let workers = h.client.workers().await.unwrap();
    assert_eq!(workers.len(), 1);
    assert!(workers[0].draining, "the last status says draining");
    assert_eq!(workers[0].succeeded, 3);
    assert!(workers[0].running.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_still_running_after_the_grace_are_handed_back_and_not_lost() {
    let h = setup().await;
    let mut ids = Vec::new();
    for n in 0..2 {
        ids.push(h.enqueue(job("stuck", json!(n))).await);
    }
    let (started_tx, mut started) = mpsc::channel(2);
    let worker = h
        .worker()
        .concurrency(2)
        .shutdown_grace(Duration::from_millis(200))
        .handler("stuck", move |ctx: JobContext| {
            let started = started_tx.clone();
            async move {
                let _ = started.send(()).await;
                ctx.cancelled().await;
                Err::<Value, _>(JobError::retryable("interrupted"))
            }
        })
        .build()
        .unwrap();
    let (stop, stop_rx) = oneshot::channel();
    let running = start(worker, stop_rx);
    for _ in 0..2 {
        within("the jobs to start", started.recv()).await.unwrap();
    }
    stop.send(()).unwrap();
    within("the drain", running).await.unwrap();

    // Handed back unrun: available at once, the attempt undone, no error recorded.
    for &id in &ids {
        let back = h.job(id).await;
        assert_eq!(
            (back.state, back.attempt, back.errors.len()),
            (JobState::Available, 0, 0)
        );
    }

    // A second worker finishes them: nothing was lost.
    let (done_tx, mut done) = mpsc::channel(2);
    let worker = h
        .worker()
        .concurrency(2)
        .handler("stuck", move |ctx: JobContext| {
            let done = done_tx.clone();
            async move {
                let _ = done.send(()).await;
                Ok(json!({"attempt": ctx.job().attempt}))
            }
        })
        .build()
        .unwrap();
    let (stop, stop_rx) = oneshot::channel();
    let running = start(worker, stop_rx);
    for _ in 0..2 {
        within("the second worker", done.recv()).await.unwrap();
    }
    stop.send(()).unwrap();
    within("the second drain", running).await.unwrap();
    for id in ids {
        let job = h.job(id).await;
        assert_eq!(job.state, JobState::Succeeded);
        assert_eq!(job.result, Some(json!({"attempt": 1})));
    }
}
