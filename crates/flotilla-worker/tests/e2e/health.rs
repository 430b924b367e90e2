//! The health port, and the client's own calls.

use std::time::Duration;

use flotilla_client::{Client, JobListQuery, NewJob};
use flotilla_core::JobId;
use flotilla_worker::{JobContext, Worker};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::{job, setup, signalling, start, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_port_reports_liveness_readiness_and_metrics() {
    let h = setup().await;
    let id = h.enqueue(job("ping", json!({}))).await;
    let (tx, mut rx) = mpsc::channel(1);
    let worker = h
        .worker()
        .concurrency(4)
        .handler("ping", signalling(tx))
        .health_addr("127.0.0.1:0".parse().unwrap())
        .build()
        .unwrap();
    let base = format!("http://{}", worker.health_addr().unwrap());
    let (stop, stop_rx) = oneshot::channel();
    let running = start(worker, stop_rx);
    assert_eq!(within("the job", rx.recv()).await, Some(id));

    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{base}{path}")).send();
    let healthz = get("/healthz").await.unwrap();
    assert_eq!(healthz.status(), 200);
    let readyz = get("/readyz").await.unwrap();
    assert_eq!(readyz.status(), 200, "registered and polling");
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("flotilla_worker_jobs_started_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("flotilla_worker_concurrency 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("flotilla_worker_health{state=\"healthy\"} 1"),
        "{metrics}"
    );
    stop.send(()).unwrap();
    within("shutdown", running).await.unwrap();
    assert!(
        get("/healthz").await.is_err(),
        "the port closes with the worker"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_health_check_makes_the_worker_degraded_until_it_passes() {
    let h = setup().await;
    let failing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let check = failing.clone();
    let worker = h
        .worker()
        .handler("any", |_ctx: JobContext| async { Ok(Value::Null) })
        .health_check(move || {
            check
                .load(std::sync::atomic::Ordering::SeqCst)
                .then(|| "speech helper for tiny.en died 3 times in 10 min".to_owned())
        })
        .health_addr("127.0.0.1:0".parse().unwrap())
        .build()
        .unwrap();
    let base = format!("http://{}", worker.health_addr().unwrap());
    let (stop, stop_rx) = oneshot::channel();
    let running = start(worker, stop_rx);
    let http = reqwest::Client::new();
    let status = || async {
        let reply = http.get(format!("{base}/status")).send().await.unwrap();
        reply.json::<Value>().await.unwrap()
    };
    let degraded = status().await;
    assert_eq!(degraded["health"], "degraded", "{degraded}");
    assert_eq!(
        degraded["degraded"],
        json!(["speech helper for tiny.en died 3 times in 10 min"])
    );
    let metrics = http.get(format!("{base}/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains("flotilla_worker_health{state=\"degraded\"} 1"),
        "{metrics}"
    );
    failing.store(false, std::sync::atomic::Ordering::SeqCst);
    let healthy = status().await;
    assert_eq!(healthy["health"], "healthy", "{healthy}");
    assert!(healthy.get("degraded").is_none(), "{healthy}");
    stop.send(()).unwrap();
    within("shutdown", running).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_keeps_the_worker_unready_and_shutdown_still_works() {
    // A port with nothing behind it: bind, note the address, close.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let client = Client::new(&format!("http://{addr}"), None).unwrap();
    let worker = Worker::builder(client)
        .queues(["default"])
        .handler("any", |_ctx: JobContext| async { Ok(Value::Null) })
        .health_addr("127.0.0.1:0".parse().unwrap())
        .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .build()
        .unwrap();
    let base = format!("http://{}", worker.health_addr().unwrap());
    let (stop, stop_rx) = oneshot::channel();
    let running = start(worker, stop_rx);
    let readyz = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(readyz.status(), 503);
    let body: Value = readyz.json().await.unwrap();
    assert_eq!(body, json!({"status": "not registered"}));
    stop.send(()).unwrap();
    within("shutdown", running).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_list_filters_and_error_codes() {
    let h = setup().await;
    h.enqueue(job("a", json!({}))).await;
    h.enqueue(NewJob::new("high", "b", json!({}))).await;
    let query = JobListQuery {
        queue: Some("high".into()),
        ..JobListQuery::default()
    };
    let page = h.client.jobs(&query).await.unwrap();
    assert_eq!(page.jobs.len(), 1);
    assert_eq!(page.jobs[0].kind, "b");
    let missing = h.client.job(JobId(999_999)).await.unwrap_err();
    assert_eq!(missing.code(), Some("job_not_found"));
    assert_eq!(missing.status(), Some(404));
    assert!(!missing.is_retryable());
    let health = h.client.healthz().await.unwrap();
    assert_eq!(health.status, "ok");
    assert_eq!(h.client.queues().await.unwrap().len(), 2);
    assert!(h.server.addr.ip().is_loopback());
}
