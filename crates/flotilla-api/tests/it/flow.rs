//! A job's whole life over HTTP, as a worker in any language would drive it.

use std::time::{Duration, Instant};

use flotilla_api::testing::spawn;
use serde_json::json;

use crate::{call, enqueue};

async fn register(url: &str, queues: &[&str]) -> String {
    let body =
        json!({"host": "test", "pid": 1, "queues": queues, "concurrency": 4, "version": "t"});
    let (status, reg) = call("POST", format!("{url}/v1/workers"), Some(body), None).await;
    assert_eq!(status, 200, "{reg}");
    reg["worker_id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_poll_heartbeat_complete() {
    let server = spawn(&["default"]).await;
    let url = &server.url;
    let worker = register(url, &["default"]).await;
    let (status, accepted) = call(
        "POST",
        format!("{url}/v1/jobs"),
        Some(json!({"queue": "default", "kind": "echo", "payload": {"n": 1}})),
        None,
    )
    .await;
    assert_eq!(
        (status, accepted["state"].as_str()),
        (202, Some("available"))
    );

    let poll = json!({"worker_id": worker, "queues": ["default"], "max_jobs": 10, "wait_ms": 1000});
    let (_, polled) = call("POST", format!("{url}/v1/poll"), Some(poll), None).await;
    let job = &polled["jobs"][0];
    assert_eq!(
        (
            job["id"].clone(),
            job["payload"]["n"].clone(),
            job["attempt"].clone()
        ),
        (accepted["id"].clone(), json!(1), json!(1))
    );
    let token = job["lease"]["token"].clone();

    let beat = json!({"token": token, "progress": {"pct": 50}});
    let (status, hb) = call(
        "POST",
        format!("{url}/v1/jobs/{}/heartbeat", job["id"]),
        Some(beat),
        None,
    )
    .await;
    assert_eq!(
        (status, hb["cancel_requested"].as_bool()),
        (200, Some(false))
    );

    let done = json!({"token": token, "result": {"echo": 1}});
    let (status, ack) = call(
        "POST",
        format!("{url}/v1/jobs/{}/complete", job["id"]),
        Some(done),
        None,
    )
    .await;
    assert_eq!((status, ack["state"].as_str()), (200, Some("succeeded")));
    let (_, stored) = call("GET", format!("{url}/v1/jobs/{}", job["id"]), None, None).await;
    assert_eq!(
        (
            stored["state"].as_str(),
            stored["result"].clone(),
            stored["progress"].clone()
        ),
        (Some("succeeded"), json!({"echo": 1}), json!({"pct": 50}))
    );

    let (status, workers) = call("GET", format!("{url}/v1/workers"), None, None).await;
    assert_eq!(
        (status, workers[0]["id"].as_str()),
        (200, Some(worker.as_str()))
    );
}

/// A waiting poll is woken by the enqueue itself, within 50 ms, long before its wait ends.
/// Five rounds: four of them must answer within 50 ms (a scheduling hiccup of the test
/// machine may delay one); a poll that was not woken would answer after its 15 s wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_poll_is_woken_by_an_enqueue() {
    let server = spawn(&["default"]).await;
    let url = server.url.clone();
    let worker = register(&url, &["default"]).await;
    let mut latencies = Vec::new();
    for _ in 0..5 {
        let poll_url = format!("{url}/v1/poll");
        let body =
            json!({"worker_id": worker, "queues": ["default"], "max_jobs": 1, "wait_ms": 15000});
        let poll = tokio::spawn(call("POST", poll_url, Some(body), None));
        tokio::time::timeout(Duration::from_secs(10), async {
            while server.engine.broker.waiting() == 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the poll starts waiting");
        let enqueued = Instant::now();
        enqueue(&url, "default", "k").await;
        let (status, polled) = poll.await.unwrap();
        latencies.push(enqueued.elapsed());
        assert_eq!(
            (status, polled["jobs"].as_array().map(Vec::len)),
            (200, Some(1))
        );
    }
    latencies.sort();
    assert!(latencies[3] < Duration::from_millis(50), "{latencies:?}");
    assert!(latencies[4] < Duration::from_secs(5), "{latencies:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_are_served_in_strict_order_and_metrics_show_them() {
    let server = spawn(&["high", "default", "low"]).await;
    let url = &server.url;
    let worker = register(url, &["high", "default", "low"]).await;
    for queue in ["low", "default", "high"] {
        enqueue(url, queue, queue).await;
    }
    let poll = json!({"worker_id": worker, "queues": ["high", "default", "low"], "max_jobs": 3});
    let (_, polled) = call("POST", format!("{url}/v1/poll"), Some(poll), None).await;
    let kinds: Vec<&str> = polled["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["high", "default", "low"]);

    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("flotilla_queue_jobs{queue=\"high\",state=\"running\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("flotilla_job_wait_seconds_count{queue=\"low\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("flotilla_jobs_enqueued_total{queue=\"default\"} 1"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_settings_change_over_the_api() {
    let server = spawn(&["default"]).await;
    let url = &server.url;
    let put =
        |body: serde_json::Value| call("PUT", format!("{url}/v1/queues/default"), Some(body), None);
    let (status, view) = put(json!({"name": "default", "concurrency": 1, "lease": "10s"})).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(
        (
            view["config"]["concurrency"].clone(),
            view["config"]["lease"].clone()
        ),
        (json!(1), json!("10s"))
    );
    for (body, code) in [
        (
            json!({"name": "other", "concurrency": 1}),
            "invalid_argument",
        ),
        (json!({"name": "default", "speed": 3}), "malformed_request"),
        (
            json!({"name": "default", "concurrency": "many"}),
            "malformed_request",
        ),
    ] {
        let (status, err) = put(body.clone()).await;
        assert_eq!(
            (status, err["error"]["code"].as_str()),
            (400, Some(code)),
            "{body}"
        );
    }

    // The limit holds: two jobs waiting, one handed out.
    let worker = register(url, &["default"]).await;
    for _ in 0..2 {
        let job = json!({"queue": "default", "kind": "k"});
        call("POST", format!("{url}/v1/jobs"), Some(job), None).await;
    }
    let poll = json!({"worker_id": worker, "queues": ["default"], "max_jobs": 10, "wait_ms": 0});
    let (_, polled) = call("POST", format!("{url}/v1/poll"), Some(poll.clone()), None).await;
    assert_eq!(polled["jobs"].as_array().unwrap().len(), 1, "{polled}");
    let (status, _) = put(json!({"name": "default"})).await;
    assert_eq!(status, 200);
    let (_, polled) = call("POST", format!("{url}/v1/poll"), Some(poll), None).await;
    assert_eq!(polled["jobs"].as_array().unwrap().len(), 1, "{polled}");
}

/// A run over HTTP: its first step is polled at once; completing it wakes a poll already
/// waiting on the next step's queue (the store enqueues it in the completion's
/// transaction), which receives the first step's result as input; the run then succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_moves_step_by_step() {
    let server = spawn(&["first", "second"]).await;
    let url = server.url.clone();
    let worker = register(&url, &["first", "second"]).await;
    let run = json!({
        "pipeline": "two-steps",
        "meta": {"file": "a.jpg"},
        "steps": [
            {"name": "a", "job": {"queue": "first", "kind": "k.a", "payload": {"x": 1}}},
            {"name": "b", "after": ["a"], "job": {"queue": "second", "kind": "k.b"}}
        ]
    });
    let (status, created) = call("POST", format!("{url}/v1/runs"), Some(run), None).await;
    assert_eq!(status, 202, "{created}");
    let id = created["id"].as_i64().unwrap();

    let poll = |queue: &str, wait_ms: u64| json!({"worker_id": worker, "queues": [queue], "max_jobs": 1, "wait_ms": wait_ms});
    let (_, polled) = call(
        "POST",
        format!("{url}/v1/poll"),
        Some(poll("first", 1000)),
        None,
    )
    .await;
    let a = polled["jobs"][0].clone();
    assert_eq!(a["payload"]["run"]["step"], "a", "{polled}");
    let waiting = tokio::spawn(call(
        "POST",
        format!("{url}/v1/poll"),
        Some(poll("second", 15_000)),
        None,
    ));
    let done = json!({"token": a["lease"]["token"], "result": {"sha": "ab"}});
    let (status, _) = call(
        "POST",
        format!("{url}/v1/jobs/{}/complete", a["id"]),
        Some(done),
        None,
    )
    .await;
    assert_eq!(status, 200);
    // Without the wake-up, the waiting poll would end its 15 s wait with no job.
    let (_, polled) = waiting.await.unwrap();
    let b = polled["jobs"][0].clone();
    assert_eq!(
        b["payload"]["run"]["inputs"],
        json!({"a": {"sha": "ab"}}),
        "{polled}"
    );
    let (_, got) = call("GET", format!("{url}/v1/runs/{id}"), None, None).await;
    assert_eq!(got["state"], "running");
    assert_eq!(got["steps"][1]["state"], "running", "{got}");
    let done = json!({"token": b["lease"]["token"]});
    call(
        "POST",
        format!("{url}/v1/jobs/{}/complete", b["id"]),
        Some(done),
        None,
    )
    .await;
    let (_, got) = call("GET", format!("{url}/v1/runs/{id}"), None, None).await;
    assert_eq!(got["state"], "succeeded", "{got}");
    let (_, page) = call(
        "GET",
        format!("{url}/v1/runs?pipeline=two-steps"),
        None,
        None,
    )
    .await;
    assert_eq!(page["runs"][0]["id"], id);
    let (status, missing) = call("GET", format!("{url}/v1/runs/999999"), None, None).await;
    assert_eq!(
        (status, missing["error"]["code"].as_str()),
        (404, Some("run_not_found"))
    );
}
