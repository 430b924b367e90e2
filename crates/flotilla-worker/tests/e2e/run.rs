//! A job's run: success, fatal errors, cancel, timeout, exec commands, unknown kinds.

use std::time::Duration;

use flotilla_core::JobState;
use flotilla_worker::{ExecHandler, JobContext, JobError};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::{job, setup, signalling, start, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_run_succeed_and_a_fatal_error_goes_dead() {
    let h = setup().await;
    let ok = h.enqueue(job("echo", json!({"n": 1}))).await;
    let bad = h.enqueue(job("reject", json!({}))).await;
    let (seen_tx, mut seen) = mpsc::channel(8);
    let seen_tx2 = seen_tx.clone();
    let worker = h
        .worker()
        .concurrency(2)
        .handler("echo", move |ctx: JobContext| {
            let seen = seen_tx.clone();
            async move {
                let _ = seen.send(ctx.job().id).await;
                Ok(json!({"echo": ctx.payload().clone(), "attempt": ctx.job().attempt}))
            }
        })
        .handler("reject", move |ctx: JobContext| {
            let seen = seen_tx2.clone();
            async move {
                let _ = seen.send(ctx.job().id).await;
                Err::<Value, _>(JobError::fatal("corrupt input"))
            }
        })
        .build()
        .unwrap();
    let (stop, stop_rx) = oneshot::channel();
    let running = start(worker, stop_rx);
    let mut ids = vec![
        within("echo", seen.recv()).await,
        within("reject", seen.recv()).await,
    ];
    ids.sort();
    assert_eq!(ids, [Some(ok), Some(bad)]);
    stop.send(()).unwrap();
    within("shutdown", running).await.unwrap();

    let done = h.job(ok).await;
    assert_eq!(done.state, JobState::Succeeded);
    assert_eq!(done.result, Some(json!({"echo": {"n": 1}, "attempt": 1})));
    let dead = h.job(bad).await;
    assert_eq!(
        dead.state,
        JobState::Dead,
        "a fatal error skips the retries"
    );
    assert_eq!(dead.errors.len(), 1);
    assert_eq!(dead.errors[0].error, "corrupt input");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_job_stops_its_handler() {
    let h = setup().await;
    // A short lease: heartbeats every 200 ms carry the cancel.
    let id = h
        .enqueue(job("long", json!({})).lease(Duration::from_millis(600)))
        .await;
    let (started_tx, started) = oneshot::channel();
    let (stopped_tx, stopped) = oneshot::channel();
    let slots = std::sync::Mutex::new(Some((started_tx, stopped_tx)));
    let worker = h
        .worker()
        .handler("long", move |ctx: JobContext| {
            let signals = slots.lock().unwrap().take();
            async move {
                let (started, stopped) = signals.expect("runs once");
                ctx.progress(json!({"pct": 10}));
                let _ = started.send(());
                ctx.cancelled().await;
                let _ = stopped.send(());
                Err::<Value, _>(JobError::retryable("stopped"))
            }
        })
        .build()
        .unwrap();
    let (stop, stop_rx) = oneshot::channel();
    let running = start(worker, stop_rx);
    within("start", started).await.unwrap();
    let asked = h.client.cancel(id).await.unwrap();
    assert!(asked.cancel_requested);
    within("the handler to see the cancel", stopped)
        .await
        .unwrap();
    stop.send(()).unwrap();
    within("shutdown", running).await.unwrap();

    let cancelled = h.job(id).await;
    assert_eq!(cancelled.state, JobState::Cancelled);
    assert_eq!(cancelled.progress, Some(json!({"pct": 10})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_past_its_timeout_is_stopped_and_failed() {
    let h = setup().await;
    let slow = job("slow", json!({}))
        .timeout(Duration::from_millis(300))
        .max_attempts(1);
    let id = h.enqueue(slow).await;
    let (stopped_tx, stopped) = oneshot::channel();
    let slot = std::sync::Mutex::new(Some(stopped_tx));
    let worker = h
        .worker()
        .handler("slow", move |ctx: JobContext| {
            let stopped = slot.lock().unwrap().take();
            async move {
                ctx.cancelled().await;
                let _ = stopped.expect("runs once").send(());
                Ok(json!("too late"))
            }
        })
        .build()
        .unwrap();
    let (stop, stop_rx) = oneshot::channel();
    let running = start(worker, stop_rx);
    within("the timeout to cancel the handler", stopped)
        .await
        .unwrap();
    stop.send(()).unwrap();
    within("shutdown", running).await.unwrap();

    let failed = h.job(id).await;
    assert_eq!(failed.state, JobState::Dead, "its only attempt timed out");
    assert!(
        failed.result.is_none(),
        "a result after the timeout is ignored"
    );
    assert!(
        failed.errors[0].error.starts_with("timed out"),
        "{:?}",
        failed.errors
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_commands_and_jobs_of_unknown_kinds() {
    let h = setup().await;
    // One slot: jobs run one after the other, so the sentinel runs last.
    let unknown = h.enqueue(job("nobody.handles", json!({}))).await;
    let exec = h.enqueue(job("exec", json!({"x": [1, 2]}))).await;
    let crash = h.enqueue(job("crash", json!({})).max_attempts(1)).await;
    let sentinel = h.enqueue(job("sentinel", json!({}))).await;
    let (tx, mut rx) = mpsc::channel(1);
    let worker = h
        .worker()
        .concurrency(1)
        .handler("exec", ExecHandler::new("cat"))
        .handler(
            "crash",
            ExecHandler::new("echo out of memory >&2; kill -9 $$"),
        )
        .handler("sentinel", signalling(tx))
        .build()
        .unwrap();
    let (stop, stop_rx) = oneshot::channel();
    let running = start(worker, stop_rx);
    assert_eq!(within("the sentinel", rx.recv()).await, Some(sentinel));
    stop.send(()).unwrap();
    within("shutdown", running).await.unwrap();

    let unknown = h.job(unknown).await;
    assert_eq!(unknown.state, JobState::Dead);
    assert_eq!(
        unknown.errors[0].error,
        "no handler for kind nobody.handles"
    );
    let exec = h.job(exec).await;
    assert_eq!(exec.state, JobState::Succeeded);
    assert_eq!(exec.result, Some(json!({"x": [1, 2]})));
    let crash = h.job(crash).await;
    assert_eq!(crash.state, JobState::Dead);
    assert_eq!(crash.errors[0].error, "killed by signal 9: out of memory");
    assert_eq!(h.job(sentinel).await.state, JobState::Succeeded);
}
