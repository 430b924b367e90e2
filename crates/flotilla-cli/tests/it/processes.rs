//! Real server and worker processes on loopback: crashes, drains, restarts, limits.

use serde_json::json;

use crate::support::{
    ServerProcess, WorkerProcess, all_in, config, enqueue, eventually, get, jobs, post,
};

const QUEUES: &str = r#"
[[queues]]
name = "q"
lease = "1s"
retry = { policy = "limited", max_attempts = 5, delay = "0s" }

[[queues]]
name = "limited"
concurrency = 2

[[queues]]
name = "flaky"
retry = { policy = "limited", max_attempts = 3, delay = "100ms" }
"#;

fn server(dir: &std::path::Path) -> ServerProcess {
    let config = config(dir, QUEUES);
    ServerProcess::start_with(dir, &["--config", &config], "http")
}

/// kill -9 of a worker: its jobs run again after their lease expires; none is lost, and
/// only those in flight ran twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_loses_no_job() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let url = &server.url;
    let ids = enqueue(url, "q", "sleep", json!({"ms": 200}), 30).await;
    let mut first = WorkerProcess::start(url, &["--queues", "q", "--concurrency", "5"]);
    first.wait_started(5);
    first.kill();
    let _second = WorkerProcess::start(url, &["--queues", "q", "--concurrency", "5"]);
    eventually("every job succeeded", || all_in(url, &ids, "succeeded")).await;
    let twice = jobs(url, &ids)
        .await
        .iter()
        .filter(|j| j["attempt"].as_u64() > Some(1))
        .count();
    assert!(
        twice <= 5,
        "{twice} jobs ran twice; at most the 5 in flight may"
    );
}

/// SIGTERM: the worker stops taking jobs, finishes those it runs, and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let url = &server.url;
    let ids = enqueue(url, "q", "sleep", json!({"ms": 300}), 8).await;
    let mut worker = WorkerProcess::start(url, &["--queues", "q", "--concurrency", "4"]);
    worker.wait_started(4);
    let status = worker.terminate();
    assert!(status.success(), "exit status {status:?}");
    let all = jobs(url, &ids).await;
    let succeeded = all.iter().filter(|j| j["state"] == "succeeded").count();
    let waiting = all.iter().filter(|j| j["state"] == "available").count();
    assert_eq!(
        (succeeded, waiting),
        (4, 4),
        "the 4 running finished; the 4 others were left alone"
    );
    let _next = WorkerProcess::start(url, &["--queues", "q", "--concurrency", "4"]);
    eventually("the rest succeeded", || all_in(url, &ids, "succeeded")).await;
}

/// SIGTERM while the worker's long-poll waits on the server: the worker reports that it is
/// draining, which ends the poll there, before it exits. A job enqueued after the exit is
/// left available, not claimed by the poll of a worker that is gone (it would have waited
/// for its lease to lapse).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_the_poll_waiting_on_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let url = &server.url;
    let mut worker = WorkerProcess::start(url, &["--queues", "q", "--concurrency", "2"]);
    eventually("the worker's poll to wait on the server", || async {
        polls_waiting(url).await == 1
    })
    .await;
    let status = worker.terminate();
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(
        polls_waiting(url).await,
        0,
        "the poll ended before the exit"
    );
    let ids = enqueue(url, "q", "sleep", json!({"ms": 1}), 1).await;
    let job = get(format!("{url}/v1/jobs/{}", ids[0])).await;
    assert_eq!(job["state"], "available", "{job}");
    let workers = get(format!("{url}/v1/workers")).await;
    assert_eq!(workers[0]["draining"], true, "{workers}");
}

async fn polls_waiting(url: &str) -> u64 {
    let metrics = reqwest::get(format!("{url}/metrics")).await.unwrap();
    let text = metrics.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("flotilla_polls_waiting "))
        .and_then(|n| n.trim().parse().ok())
        .expect("the flotilla_polls_waiting gauge")
}

/// The server restarts (SIGKILL, then again on the same port and file) while a worker runs:
/// the worker reconnects and every job finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_survive_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let first = server(dir.path());
    let (url, port) = (first.url.clone(), first.port());
    let ids = enqueue(&url, "q", "sleep", json!({"ms": 100}), 10).await;
    let worker = WorkerProcess::start(&url, &["--queues", "q", "--concurrency", "2"]);
    worker.wait_started(2);
    first.kill();
    let config = dir.path().join("flotilla.toml");
    let _again = ServerProcess::start_on(
        dir.path(),
        port,
        &["--config", config.to_str().unwrap()],
        "http",
    );
    eventually("every job succeeded after the restart", || {
        all_in(&url, &ids, "succeeded")
    })
    .await;
}

/// A queue limited to 2 running jobs holds the limit across two workers of 4 slots each:
/// every job records its start and end in a ledger, and no more than 2 ever overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_concurrency_limit_holds_across_workers() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let url = &server.url;
    let ledger = dir.path().join("ledger");
    let exec = format!(
        "echo \"+ $FLOTILLA_JOB_ID\" >> {l}; sleep 0.15; echo \"- $FLOTILLA_JOB_ID\" >> {l}",
        l = ledger.display()
    );
    let ids = enqueue(url, "limited", "shell", json!({}), 12).await;
    let args = [
        "--queues",
        "limited",
        "--concurrency",
        "4",
        "--exec",
        exec.as_str(),
    ];
    let _a = WorkerProcess::start(url, &args);
    let _b = WorkerProcess::start(url, &args);
    eventually("every job succeeded", || all_in(url, &ids, "succeeded")).await;
    let (mut running, mut most) = (0i32, 0i32);
    for line in std::fs::read_to_string(&ledger).unwrap().lines() {
        running += if line.starts_with('+') { 1 } else { -1 };
        most = most.max(running);
    }
    assert_eq!(
        most, 2,
        "at most 2 jobs of the queue ran at once, and the limit was used"
    );
}

/// A job that keeps failing is retried with its delay, then dead; replayed, it runs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_then_dead_then_replay() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let url = &server.url;
    let ids = enqueue(url, "flaky", "fail", json!({"message": "upstream down"}), 1).await;
    let _worker = WorkerProcess::start(url, &["--queues", "flaky", "--concurrency", "1"]);
    eventually("the job is dead", || all_in(url, &ids, "dead")).await;
    let job = get(format!("{url}/v1/jobs/{}", ids[0])).await;
    let errors = job["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 3, "3 attempts: {job}");
    assert!(errors.iter().all(|e| e["error"] == "upstream down"));
    // Each retry waited the queue's 100 ms delay after the failure before it.
    let failed_at: Vec<_> = errors
        .iter()
        .map(|e| chrono::DateTime::parse_from_rfc3339(e["at"].as_str().unwrap()).unwrap())
        .collect();
    for pair in failed_at.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= chrono::TimeDelta::milliseconds(100),
            "{gap} between failures: {job}"
        );
    }

    let replayed = post(format!("{url}/v1/dead:replay"), json!({"queue": "flaky"})).await;
    assert_eq!(replayed["count"], 1);
    eventually("dead again after 3 more attempts", || async {
        let job = get(format!("{url}/v1/jobs/{}", ids[0])).await;
        job["state"] == "dead" && job["errors"].as_array().map(Vec::len) == Some(6)
    })
    .await;
}

/// Cancelling a running job stops its handler; the job ends cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_job_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let url = &server.url;
    let ids = enqueue(url, "q", "sleep", json!({"ms": 60_000}), 1).await;
    let worker = WorkerProcess::start(url, &["--queues", "q", "--concurrency", "1"]);
    worker.wait_started(1);
    let answer = post(format!("{url}/v1/jobs/{}/cancel", ids[0]), json!({})).await;
    assert_eq!(answer["cancel_requested"], true);
    eventually("the job is cancelled", || all_in(url, &ids, "cancelled")).await;
}

/// Fencing: a worker whose lease expired cannot complete its job, even while another worker
/// runs it; the other worker's result stands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_lease_expired_cannot_complete() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let url = &server.url;
    let ids = enqueue(url, "q", "shell", json!({}), 1).await;
    // A worker speaking the protocol by hand takes the job, then goes silent.
    let registered = post(
        format!("{url}/v1/workers"),
        json!({"host": "h", "pid": 1, "queues": ["q"], "concurrency": 1, "version": "t"}),
    )
    .await;
    let poll = json!({"worker_id": registered["worker_id"], "queues": ["q"], "max_jobs": 1});
    let polled = post(format!("{url}/v1/poll"), poll).await;
    assert_eq!(polled["jobs"][0]["id"], ids[0]);
    let stale_token = polled["jobs"][0]["lease"]["token"].clone();
    // Its lease (1 s) expires and a worker process takes the job over.
    let worker = WorkerProcess::start(
        url,
        &[
            "--queues",
            "q",
            "--concurrency",
            "1",
            "--exec",
            "sleep 2; echo second",
        ],
    );
    worker.wait_started(1);
    // The silent worker wakes up and reports while the job runs again: refused.
    let answer = reqwest::Client::new()
        .post(format!("{url}/v1/jobs/{}/complete", ids[0]))
        .json(&json!({"token": stale_token, "result": "first"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 409);
    let answer: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(answer["error"]["code"], "lease_mismatch", "{answer}");
    eventually("the second run succeeded", || {
        all_in(url, &ids, "succeeded")
    })
    .await;
    let job = get(format!("{url}/v1/jobs/{}", ids[0])).await;
    assert_eq!(job["attempt"], 2, "{job}");
    assert_eq!(job["result"], "second", "{job}");
}
