//! The admin commands (`enqueue`, `jobs`, `queues`, `dead`, `workers`) run as processes
//! against a real server, and a `flotilla worker` process's health port and JSON log.

use serde_json::{Value, json};

use crate::support::{
    ServerProcess, WorkerProcess, all_in, config, enqueue, eventually, flotilla,
    flotilla_with_stdin, free_port, get,
};

const QUEUES: &str = r#"
[[queues]]
name = "q"
lease = "1s"

[[queues]]
name = "other"

[[queues]]
name = "bulk"

[[queues]]
name = "doomed"
retry = { policy = "limited", max_attempts = 1, delay = "0s" }
"#;

fn server(dir: &std::path::Path) -> ServerProcess {
    let config = config(dir, QUEUES);
    ServerProcess::start_with(dir, &["--config", &config], "http")
}

/// `jobs get ID --json`.
async fn job(url: &str, id: i64) -> Value {
    flotilla(url, &["jobs", "get", &id.to_string(), "--json"])
        .await
        .json()
}

/// The queue `name` of `queues list --json`.
async fn queue(url: &str, name: &str) -> Value {
    let queues = flotilla(url, &["queues", "list", "--json"]).await.json();
    queues
        .as_array()
        .expect("a list of queues")
        .iter()
        .find(|q| q["name"] == name)
        .unwrap_or_else(|| panic!("no queue {name} in {queues}"))
        .clone()
}

/// The ids of a JSON list of jobs.
fn ids(jobs: &Value) -> Vec<i64> {
    jobs.as_array()
        .expect("a list of jobs")
        .iter()
        .map(|j| j["id"].as_i64().expect("an id"))
        .collect()
}

/// The ids in the first column of a human table, below its header.
fn table_ids(table: &str) -> Vec<i64> {
    table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect()
}

/// `enqueue QUEUE KIND PAYLOAD` with options, and `jobs get` shows the job as sent; a
/// second job with the same unique key is reported as a duplicate of the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_one_job_then_get_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let url = &server.url;
    let payload = r#"{"name":"héllo","sizes":[1,2,3],"nested":{"ok":true}}"#;
    let args = [
        "enqueue",
        "other",
        "resize",
        payload,
        "--priority",
        "3",
        "--tag",
        "a",
        "--tag",
        "b",
        "--unique-key",
        "img-7",
        "--json",
    ];
    let accepted = flotilla(url, &args).await.json();
    assert_eq!(accepted["state"], "available", "{accepted}");
    assert_eq!(accepted["duplicate"], false, "{accepted}");
    let id = accepted["id"].as_i64().expect("an id");

    let shown = job(url, id).await;
    assert_eq!(shown["id"], id);
    assert_eq!(shown["queue"], "other");
    assert_eq!(shown["kind"], "resize");
    assert_eq!(
        shown["payload"],
        serde_json::from_str::<Value>(payload).unwrap()
    );
    assert_eq!(shown["priority"], 3);
    assert_eq!(shown["tags"], json!(["a", "b"]));
    assert_eq!(shown["state"], "available");

    let again = flotilla(url, &args[..args.len() - 1]).await;
    assert_eq!(
        again.ok(),
        format!("job {id} available (duplicate of a live job)\n")
    );
    let plain = flotilla(url, &["enqueue", "other", "noop"]).await;
    let (_, rest) = plain.ok().split_once("job ").expect("job N available");
    let second: i64 = rest.trim_end_matches(" available\n").parse().unwrap();
    assert!(second > id, "{plain:?}");
    assert_eq!(
        job(url, second).await["payload"],
        json!({}),
        "default payload"
    );
}

/// `enqueue --stdin` of 2,500 JSON lines (three batches, the last one partial): every job
/// arrives, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_a_batch_from_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let url = &server.url;
    let before = queue(url, "bulk").await["counts"]["available"]
        .as_u64()
        .unwrap();
    let mut lines = String::new();
    for n in 0..2500 {
        let line = json!({"queue": "bulk", "kind": "row", "payload": {"n": n}});
        lines.push_str(&format!("{line}\n"));
        if n == 1200 {
            lines.push('\n'); // blank lines are skipped
        }
    }
    let args = ["enqueue", "--stdin", "--json"];
    let done = flotilla_with_stdin(url, &args, lines.into_bytes()).await;
    assert_eq!(done.json(), json!({"enqueued": 2500}));
    let bulk = queue(url, "bulk").await;
    assert_eq!(bulk["counts"]["available"], before + 2500, "{bulk}");

    let newest = flotilla(
        url,
        &["jobs", "list", "--queue", "bulk", "--limit", "2", "--json"],
    )
    .await
    .json();
    let payloads: Vec<&Value> = newest
        .as_array()
        .unwrap()
        .iter()
        .map(|j| &j["payload"])
        .collect();
    assert_eq!(payloads, [&json!({"n": 2499}), &json!({"n": 2498})]);

    let human = flotilla_with_stdin(url, &["enqueue", "--stdin"], lines_of(3)).await;
    assert_eq!(human.ok(), "3 jobs enqueued\n");
}

fn lines_of(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| {
            format!(
                "{}\n",
                json!({"queue": "bulk", "kind": "row", "payload": {"n": i}})
            )
        })
        .collect::<String>()
        .into_bytes()
}

/// `jobs list` (table and JSON, filtered by queue, state and kind), `jobs cancel` and
/// `jobs retry` of a cancelled and of a scheduled job; retry of an available job is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_list_cancel_and_retry() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let url = &server.url;
    let a = enqueue(url, "other", "alpha", json!({}), 2).await;
    let b = enqueue(url, "bulk", "beta", json!({}), 1).await;
    let later = flotilla(url, &["enqueue", "bulk", "beta", "--delay", "1h", "--json"])
        .await
        .json();
    assert_eq!(later["state"], "scheduled");
    let later = later["id"].as_i64().unwrap();

    let table = flotilla(url, &["jobs", "list"]).await;
    let mut listed = table_ids(table.ok());
    listed.sort_unstable();
    assert_eq!(listed, [a[0], a[1], b[0], later], "{table:?}");
    assert!(table.stdout.starts_with("ID "), "a header: {table:?}");
    assert!(
        table
            .stdout
            .lines()
            .any(|l| l.starts_with(&format!("{} ", later))
                && l.contains("bulk")
                && l.contains("beta")
                && l.contains("scheduled")),
        "{table:?}"
    );
    let newest_first = [a[1], a[0]];
    let of_queue = flotilla(url, &["jobs", "list", "--queue", "other", "--json"]).await;
    assert_eq!(ids(&of_queue.json()), newest_first);
    let of_kind = flotilla(url, &["jobs", "list", "--kind", "beta", "--json"]).await;
    assert_eq!(ids(&of_kind.json()), [later, b[0]]);
    let limited = flotilla(url, &["jobs", "list", "--limit", "1", "--json"]).await;
    assert_eq!(ids(&limited.json()), [later]);

    let cancelled = flotilla(url, &["jobs", "cancel", &a[0].to_string(), "--json"])
        .await
        .json();
    assert_eq!(cancelled["state"], "cancelled", "{cancelled}");
    assert_eq!(job(url, a[0]).await["state"], "cancelled");
    let args = ["jobs", "list", "--state", "cancelled", "--json"];
    assert_eq!(ids(&flotilla(url, &args).await.json()), [a[0]]);
    let args = ["jobs", "list", "--queue", "other", "--state", "available"];
    assert_eq!(table_ids(flotilla(url, &args).await.ok()), [a[1]]);

    for id in [a[0], later] {
        let retried = flotilla(url, &["jobs", "retry", &id.to_string(), "--json"])
            .await
            .json();
        assert_eq!(retried["state"], "available", "{retried}");
        assert_eq!(retried["attempt"], 0, "{retried}");
    }
    let args = [
        "jobs",
        "list",
        "--queue",
        "other",
        "--state",
        "available",
        "--json",
    ];
    assert_eq!(ids(&flotilla(url, &args).await.json()), newest_first);

    let refused = flotilla(url, &["jobs", "retry", &a[1].to_string()]).await;
    let stderr = refused.failure();
    assert!(stderr.contains("invalid_transition"), "{stderr}");
    assert!(stderr.contains("available"), "{stderr}");
    assert_eq!(job(url, a[1]).await["state"], "available");
}

/// `queues pause`: a worker serving the paused queue first and another queue second runs
/// the other queue's job, enqueued later, and leaves the paused one's alone; `queues
/// resume`: it runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_queue_is_not_served_until_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let url = &server.url;
    let paused = flotilla(url, &["queues", "pause", "q"]).await;
    let row = paused.ok().lines().nth(1).expect("a row");
    assert!(
        row.starts_with("q ") && row.contains(" paused "),
        "{paused:?}"
    );
    assert_eq!(queue(url, "q").await["paused"], true);
    assert_eq!(queue(url, "other").await["paused"], false);

    let held = enqueue(url, "q", "shell", json!({}), 1).await;
    let args = [
        "--queues",
        "q,other",
        "--concurrency",
        "1",
        "--exec",
        "echo ran",
    ];
    let _worker = WorkerProcess::start_logging(url, &args, &[], "info");
    let served = enqueue(url, "other", "shell", json!({}), 1).await;
    eventually("the other queue's job to succeed", || {
        all_in(url, &served, "succeeded")
    })
    .await;
    // Had the pause not held, the worker would have taken the job of its first queue,
    // waiting since before it started, ahead of the other one.
    assert_eq!(job(url, held[0]).await["state"], "available");
    assert_eq!(queue(url, "q").await["counts"]["available"], 1);

    let resumed = flotilla(url, &["queues", "resume", "q", "--json"])
        .await
        .json();
    assert_eq!(resumed[0]["name"], "q");
    assert_eq!(resumed[0]["paused"], false);
    let listed = flotilla(url, &["queues", "list"]).await;
    assert!(
        listed
            .ok()
            .lines()
            .any(|l| l.starts_with("q ") && l.contains(" active ")),
        "{listed:?}"
    );
    eventually("the held job to succeed", || {
        all_in(url, &held, "succeeded")
    })
    .await;
    assert_eq!(job(url, held[0]).await["result"], "ran");
}

/// `dead list` shows jobs that failed their only attempt; `dead replay ID` runs one again
/// (it succeeds now that its handler is fixed); `dead purge --queue` deletes the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_list_replay_and_purge() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let url = &server.url;
    let fixed = dir.path().join("fixed");
    let exec = format!(
        "if [ -e '{}' ]; then echo fixed; else echo broken >&2; exit 1; fi",
        fixed.display()
    );
    let dead = enqueue(url, "doomed", "shell", json!({}), 3).await;
    let args = [
        "--queues",
        "doomed",
        "--concurrency",
        "3",
        "--exec",
        exec.as_str(),
    ];
    let _worker = WorkerProcess::start_logging(url, &args, &[], "info");
    eventually("every job to be dead", || all_in(url, &dead, "dead")).await;

    let listed = flotilla(url, &["dead", "list", "--queue", "doomed", "--json"])
        .await
        .json();
    let mut listed_ids = ids(&listed);
    listed_ids.sort_unstable();
    assert_eq!(listed_ids, dead);
    for dead_job in listed.as_array().unwrap() {
        assert_eq!(dead_job["state"], "dead", "{dead_job}");
        assert_eq!(dead_job["attempt"], 1, "{dead_job}");
        let error = dead_job["errors"][0]["error"].as_str().unwrap_or_default();
        assert!(error.contains("broken"), "{dead_job}");
    }
    let table = flotilla(url, &["dead", "list"]).await;
    let mut rows = table_ids(table.ok());
    rows.sort_unstable();
    assert_eq!(rows, dead, "{table:?}");
    assert!(table.stdout.contains("broken"), "the last error: {table:?}");
    assert_eq!(queue(url, "doomed").await["counts"]["dead"], 3);

    std::fs::write(&fixed, "").unwrap();
    let replayed = flotilla(url, &["dead", "replay", &dead[0].to_string()]).await;
    assert_eq!(replayed.ok(), "1 dead jobs replayed\n");
    eventually("the replayed job to succeed", || {
        all_in(url, &dead[..1], "succeeded")
    })
    .await;
    let again = job(url, dead[0]).await;
    assert_eq!(again["result"], "fixed", "{again}");
    assert_eq!(again["attempt"], 1, "attempts were reset: {again}");
    assert!(
        all_in(url, &dead[1..], "dead").await,
        "the others stay dead"
    );

    let purged = flotilla(url, &["dead", "purge", "--queue", "doomed", "--json"]).await;
    assert_eq!(purged.json(), json!({"count": 2}));
    assert_eq!(queue(url, "doomed").await["counts"]["dead"], 0);
    let left = flotilla(url, &["dead", "list", "--json"]).await.json();
    assert_eq!(left, json!([]));
    let gone = flotilla(url, &["jobs", "get", &dead[1].to_string()]).await;
    assert!(gone.failure().contains("job_not_found"), "{gone:?}");
    assert_eq!(job(url, dead[0]).await["state"], "succeeded", "not purged");
}

/// `workers` lists a registered worker process with its health, queues and slots, and,
/// once it reports them, its current jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_lists_a_running_worker_and_its_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let url = &server.url;
    let id = "cli-test-worker-1";
    let args = ["--id", id, "--queues", "q,other", "--concurrency", "2"];
    let worker = WorkerProcess::start_logging(url, &args, &[], "info,flotilla_worker=debug");
    let this = |workers: &Value| {
        workers
            .as_array()
            .and_then(|all| all.iter().find(|w| w["id"] == id).cloned())
    };
    eventually("the worker to register", || async {
        this(&flotilla(url, &["workers", "--json"]).await.json()).is_some()
    })
    .await;
    let listed = this(&flotilla(url, &["workers", "--json"]).await.json()).unwrap();
    assert_eq!(listed["health"], "healthy", "{listed}");
    assert_eq!(listed["queues"], json!(["q", "other"]), "{listed}");
    assert_eq!(listed["concurrency"], 2, "{listed}");
    assert_eq!(listed["draining"], false, "{listed}");
    assert_eq!(listed["running"], json!([]), "{listed}");
    let table = flotilla(url, &["workers"]).await;
    let header = table.ok().lines().next().unwrap();
    assert!(
        header.starts_with("WORKER") && header.contains("HEALTH"),
        "{table:?}"
    );
    let row = table.stdout.lines().find(|l| l.starts_with(id));
    let row = row.unwrap_or_else(|| panic!("no row for the worker: {table:?}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[1..4], ["healthy", "q,other", "0/2"], "{table:?}");

    // A job that runs until the worker is killed; SIGTERM makes the worker report at once
    // (draining, with its running job) where it would otherwise wait for its 10 s report.
    let running = enqueue(url, "q", "sleep", json!({"ms": 60_000}), 1).await;
    worker.wait_for_line("the job to start", |l| l.contains("job started"));
    worker.sigterm();
    eventually("the worker to report its running job", || async {
        let listed = this(&flotilla(url, &["workers", "--json"]).await.json());
        listed.is_some_and(|w| w["running"] == json!(running) && w["draining"] == true)
    })
    .await;
    let table = flotilla(url, &["workers"]).await;
    let row = table.ok().lines().find(|l| l.starts_with(id)).unwrap();
    assert!(row.contains(" 1/2 "), "{table:?}");
}

/// Errors exit 1 with one clear `error:` line and no panic: an unknown job, queue or state,
/// a bad payload or batch line, and a server that is not there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_exit_non_zero_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let url = &server.url;
    let cases: [(&[&str], &[&str]); 6] = [
        (&["jobs", "get", "424242"], &["job_not_found", "424242"]),
        (&["jobs", "cancel", "424242"], &["job_not_found", "424242"]),
        (
            &["queues", "pause", "no-such-queue"],
            &["queue_not_found", "no-such-queue"],
        ),
        (
            &["enqueue", "no-such-queue", "k"],
            &["queue_not_found", "no-such-queue"],
        ),
        (
            &["enqueue", "q", "k", "{not json"],
            &["payload is not valid JSON"],
        ),
        (
            &["jobs", "list", "--state", "sleepy"],
            &["unknown state \"sleepy\""],
        ),
    ];
    for (args, expected) in cases {
        let run = flotilla(url, args).await;
        let stderr = run.failure();
        for part in expected {
            assert!(stderr.contains(part), "{args:?}: {part:?} not in {stderr}");
        }
        assert_eq!(run.stdout, "", "{args:?}");
    }
    let bad_line = flotilla_with_stdin(
        url,
        &["enqueue", "--stdin"],
        b"{\"queue\":\"q\",\"kind\":\"k\"}\n{\"queue\":\"q\"}\n".to_vec(),
    )
    .await;
    assert!(
        bad_line.failure().contains("line 2: not a job"),
        "{bad_line:?}"
    );

    let nowhere = format!("http://127.0.0.1:{}", free_port());
    for args in [
        &["jobs", "list"][..],
        &["queues", "pause", "q"],
        &["workers"],
    ] {
        let run = flotilla(&nowhere, args).await;
        let stderr = run.failure();
        assert!(stderr.contains("Connection refused"), "{args:?}: {stderr}");
        assert_eq!(
            stderr.matches(&nowhere).count(),
            1,
            "names the URL once: {stderr}"
        );
    }
}

/// A reader that goes away early (`flotilla jobs list | head -1`) does not make the
/// command panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_to_a_closed_pipe_is_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    enqueue(&server.url, "other", "k", json!({}), 3).await;
    for args in [&["jobs", "list", "--json"][..], &["queues", "list"]] {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .args(args)
            .args(["--url", &server.url])
            .env("RUST_BACKTRACE", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // closed before the command writes
        let run =
            tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
                .await
                .expect("the command ends")
                .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(run.status.success(), "{args:?}: {:?} {stderr}", run.status);
    }
}

/// `flotilla worker --health-addr`: `/healthz` and, once registered, `/readyz` answer 200,
/// `/metrics` counts the job it ran in Prometheus text; SIGTERM: it exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_health_port_and_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let url = &server.url;
    let args = [
        "--queues",
        "q",
        "--health-addr",
        "127.0.0.1:0",
        "--exec",
        "echo ok",
    ];
    let mut worker = WorkerProcess::start_logging(url, &args, &[], "info");
    let health = format!("http://127.0.0.1:{}", worker.health_port());
    let healthz = reqwest::get(format!("{health}/healthz")).await.unwrap();
    assert_eq!(healthz.status(), 200);
    eventually("/readyz to answer 200", || async {
        reqwest::get(format!("{health}/readyz"))
            .await
            .unwrap()
            .status()
            == 200
    })
    .await;
    assert_eq!(
        get(format!("{health}/readyz")).await,
        json!({"status": "ok"})
    );

    let ids = enqueue(url, "q", "shell", json!({}), 1).await;
    eventually("the job to succeed", || all_in(url, &ids, "succeeded")).await;
    let metrics = reqwest::get(format!("{health}/metrics")).await.unwrap();
    assert_eq!(metrics.status(), 200);
    let content_type = metrics.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = metrics.text().await.unwrap();
    for line in [
        "# TYPE flotilla_worker_jobs_started_total counter",
        "flotilla_worker_jobs_started_total 1",
        "flotilla_worker_jobs_succeeded_total 1",
        "flotilla_worker_jobs_failed_total 0",
        "flotilla_worker_jobs_running 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} not in:\n{text}");
    }

    worker.sigterm();
    let status = worker.wait_exit();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        reqwest::get(format!("{health}/healthz")).await.is_err(),
        "the health port closed with the worker"
    );
}

/// `--log-format json`: every line the worker writes is JSON, and the lines about a job
/// carry the worker id, queue, job id, kind and attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_json_log_lines_carry_the_job_fields() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let url = &server.url;
    let args = [
        "--log-format",
        "json",
        "--id",
        "json-worker-1",
        "--queues",
        "q",
        "--exec",
        "echo ok",
    ];
    let mut worker = WorkerProcess::start_logging(url, &args, &[], "info,flotilla_worker=debug");
    let accepted = flotilla(url, &["enqueue", "q", "thumbnail", "--json"])
        .await
        .json();
    // The span records the id with its Display form: a string.
    let id = accepted["id"].as_i64().unwrap().to_string();
    let about_the_job = |message: &'static str| {
        let id = id.clone();
        move |line: &str| {
            serde_json::from_str::<Value>(line).is_ok_and(|l| {
                l["fields"]["message"] == message && l["span"]["job_id"].as_str() == Some(&id)
            })
        }
    };
    for message in ["job started", "job succeeded"] {
        let line = worker.wait_for_line(message, about_the_job(message));
        let line: Value = serde_json::from_str(&line).unwrap();
        let span = &line["span"];
        assert_eq!(span["worker_id"], "json-worker-1", "{line}");
        assert_eq!(span["queue"], "q", "{line}");
        assert_eq!(span["kind"], "thumbnail", "{line}");
        assert_eq!(span["attempt"], 1, "{line}");
        assert!(
            line["timestamp"].is_string() && line["level"] == "DEBUG",
            "{line}"
        );
    }
    worker.sigterm();
    assert!(worker.wait_exit().success());
    let log = worker.log();
    assert!(log.len() > 2, "{log:?}");
    for line in &log {
        assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "not JSON: {line}"
        );
    }
}
