//! Several servers on one PostgreSQL database (issue 6): three servers, four worker
//! processes spread across them, 20,000 jobs whose handler appends the job id to a ledger
//! file; one server and one worker are killed with SIGKILL during the run and restarted.
//! Every job must end `succeeded` and appear in the ledger (lost = 0); only jobs in flight
//! on the killed worker may appear twice: the worker is frozen (SIGSTOP) before the kill,
//! its leased jobs are listed, and every job that ran twice must be one of them.
//!
//! The workers are this test binary itself, started again in the child mode
//! `ledger_worker_child` (the Rust worker SDK with one `append` handler), so a job costs
//! a write, not a process.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flotilla_client::Client;
use flotilla_worker::{JobContext, Worker};
use serde_json::{Value, json};

use crate::support::{ServerProcess, free_port, pg_schema_url};

const JOBS: usize = 20_000;
const LEDGER_ENV: &str = "FLOTILLA_LEDGER_CHILD";
const URL_ENV: &str = "FLOTILLA_LEDGER_URL";
const ID_ENV: &str = "FLOTILLA_LEDGER_WORKER_ID";
/// The concurrency of each worker process.
const SLOTS: u32 = 8;

/// Child mode: a worker that appends each job's id to the ledger file and succeeds.
#[test]
fn ledger_worker_child() {
    let (Ok(ledger), Ok(url)) = (std::env::var(LEDGER_ENV), std::env::var(URL_ENV)) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let file = std::sync::Arc::new(std::sync::Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&ledger)
                .unwrap(),
        ));
        let id = std::env::var(ID_ENV).unwrap_or_else(|_| "ledger".into());
        let worker = Worker::builder(Client::new(&url, None).unwrap())
            .worker_id(id)
            .queues(["ledger"])
            .concurrency(SLOTS)
            .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500))
            .handler("append", move |ctx: JobContext| {
                let file = file.clone();
                async move {
                    // One write per id: appends of a line are atomic, and a killed
                    // process loses nothing it wrote.
                    let line = format!("{}\n", ctx.job().id);
                    file.lock().unwrap().write_all(line.as_bytes()).unwrap();
                    Ok::<Value, flotilla_worker::JobError>(Value::Null)
                }
            })
            .build()
            .unwrap();
        worker.run_until_signal().await.unwrap();
    });
}

struct LedgerWorker(Child);

impl LedgerWorker {
    fn start(url: &str, ledger: &std::path::Path, id: &str) -> Self {
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "multi_server::ledger_worker_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(LEDGER_ENV, ledger)
            .env(URL_ENV, url)
            .env(ID_ENV, id)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Self(child)
    }

    fn freeze(&self) {
        let pid = self.0.id().to_string();
        Command::new("kill").args(["-STOP", &pid]).status().unwrap();
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for LedgerWorker {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn succeeded(client: &Client) -> u64 {
    match client.queue("ledger").await {
        Ok(q) => q.counts.succeeded,
        Err(_) => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_four_workers_kill_one_of_each_lose_nothing() {
    let (store, _schema) = pg_schema_url("multi").await;
    let dir = tempfile::tempdir().unwrap();
    let config = crate::support::config(
        dir.path(),
        "[[queues]]\nname = \"ledger\"\nlease = \"4s\"\n\
         retry = { policy = \"exponential\", max_attempts = 20, initial = \"100ms\", factor = 2.0, max_interval = \"2s\" }\n",
    );
    let ports = [free_port(), free_port(), free_port()];
    let args = ["--config", config.as_str()];
    let mut servers: Vec<Option<ServerProcess>> = ports
        .iter()
        .map(|p| Some(ServerProcess::start_store(&store, *p, &args)))
        .collect();
    let urls: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let client = Client::new(&urls[0], None).unwrap();

    for chunk in 0..JOBS / 1000 {
        let jobs: Vec<Value> = (0..1000)
            .map(|i| json!({"queue": "ledger", "kind": "append", "payload": {"n": chunk * 1000 + i}}))
            .collect();
        // Spread the enqueues over the servers too.
        let url = &urls[chunk % 3];
        crate::support::post(format!("{url}/v1/jobs:batch"), json!({ "jobs": jobs })).await;
    }

    let ledger = dir.path().join("ledger.txt");
    let mut workers: Vec<LedgerWorker> = [0, 1, 2, 0]
        .iter()
        .enumerate()
        .map(|(i, s)| LedgerWorker::start(&urls[*s], &ledger, &format!("w{i}")))
        .collect();

    // At about 30 %, kill server 1 and worker 0, then start both again.
    let started = Instant::now();
    while succeeded(&client).await < (JOBS as u64) * 3 / 10 {
        assert!(started.elapsed() < Duration::from_secs(120), "too slow");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Frozen, it runs nothing more: every job it ran whose success the servers have not
    // recorded is leased to it now (or its report, already sent, lands later).
    workers[0].freeze();
    let in_flight = leased_by(&urls[2], "w0").await;
    workers[0].kill();
    if let Some(server) = servers[1].take() {
        server.kill();
    }
    servers[1] = Some(ServerProcess::start_store(&store, ports[1], &args));
    workers[0] = LedgerWorker::start(&urls[0], &ledger, "w0-again");

    while succeeded(&client).await < JOBS as u64 {
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "not all jobs succeeded: {:?}",
            client.queue("ledger").await.map(|q| q.counts)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(workers);

    let text = std::fs::read_to_string(&ledger).unwrap();
    let mut seen: HashMap<i64, u32> = HashMap::new();
    for line in text.lines() {
        *seen.entry(line.parse().unwrap()).or_default() += 1;
    }
    let counts = client.queue("ledger").await.unwrap().counts;
    let duplicates: u32 = seen.values().map(|n| n - 1).sum();
    eprintln!(
        "multi-server crash run: {} jobs, ledger {} lines, {} distinct, lost {}, run twice {duplicates} (leased to the killed worker at the kill: {})",
        JOBS,
        text.lines().count(),
        seen.len(),
        JOBS - seen.len(),
        in_flight.len()
    );
    assert_eq!(counts.succeeded, JOBS as u64, "{counts:?}");
    assert_eq!(seen.len(), JOBS, "every job's id is in the ledger");
    let twice: Vec<i64> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| *id)
        .collect();
    assert!(
        twice.iter().all(|id| in_flight.contains(id)),
        "jobs {twice:?} ran twice; only the killed worker's leased jobs {in_flight:?} may"
    );
}

/// The ids of the running jobs leased to `worker`.
async fn leased_by(url: &str, worker: &str) -> Vec<i64> {
    let page = crate::support::get(format!("{url}/v1/jobs?state=running&limit=1000")).await;
    page["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter(|j| j["lease"]["worker_id"] == worker)
        .map(|j| j["id"].as_i64().expect("id"))
        .collect()
}

/// The database goes away under a running server: it stays up, `/readyz` turns 503,
/// requests get 503 `unavailable` with `Retry-After`, and once the database is back it
/// serves again with every acknowledged job in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_a_503_and_the_server_recovers() {
    let (store, _schema) = pg_schema_url("outage").await;
    let proxy = crate::support::TcpProxy::start("127.0.0.1:5432").await;
    let through_proxy = store.replacen(":5432/", &format!(":{}/", proxy.port), 1);
    assert_ne!(
        through_proxy, store,
        "the test database URL names port 5432"
    );
    let dir = tempfile::tempdir().unwrap();
    let config = crate::support::config(dir.path(), "[[queues]]\nname = \"q\"\n");
    let server = ServerProcess::start_store(&through_proxy, free_port(), &["--config", &config]);
    let url = server.url.clone();
    let before = crate::support::enqueue(&url, "q", "k", json!({}), 50).await;

    rides_out(&url, &before, || proxy.cut(), || proxy.restore()).await;
}

/// A long-poll waiting on one server returns as soon as another server enqueues: the
/// enqueue's notification wakes it, not the end of its wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enqueue_on_one_server_wakes_a_long_poll_on_another() {
    let (store, _schema) = pg_schema_url("wake").await;
    let dir = tempfile::tempdir().unwrap();
    let config = crate::support::config(dir.path(), "[[queues]]\nname = \"q\"\n");
    let args = ["--config", config.as_str()];
    let a = ServerProcess::start_store(&store, free_port(), &args);
    let b = ServerProcess::start_store(&store, free_port(), &args);
    let registered = crate::support::post(
        format!("{}/v1/workers", a.url),
        json!({"id": "w", "host": "h", "pid": 1, "queues": ["q"], "concurrency": 1, "version": "t"}),
    )
    .await;
    assert_eq!(registered["worker_id"], "w", "{registered}");
    let poll_url = format!("{}/v1/poll", a.url);
    let poll = tokio::spawn(crate::support::post(
        poll_url,
        json!({"worker_id": "w", "queues": ["q"], "max_jobs": 1, "wait_ms": 15000}),
    ));
    crate::support::eventually("the poll to wait on server A", || async {
        let metrics = reqwest::get(format!("{}/metrics", a.url)).await.unwrap();
        metrics
            .text()
            .await
            .unwrap()
            .contains("flotilla_polls_waiting 1")
    })
    .await;
    let ids = crate::support::enqueue(&b.url, "q", "k", json!({}), 1).await;
    // Without the wake-up, the poll would end its 15 s wait with no job: the broker
    // only claims again when woken.
    let answer = poll.await.unwrap();
    assert_eq!(answer["jobs"][0]["id"], ids[0], "{answer}");
}

/// A PostgreSQL server of the test's own (initdb in a temporary directory, a free port), so
/// that it can be stopped and started without disturbing the tests that share the
/// machine's database.
struct OwnPostgres {
    dir: tempfile::TempDir,
    port: u16,
    bin: std::path::PathBuf,
}

impl OwnPostgres {
    fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect(
                "PostgreSQL's binaries in /usr/lib/postgresql (scripts/postgres.sh installs them)",
            )
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("pg_ctl").exists())
            .max()
            .expect("a PostgreSQL version with pg_ctl");
        let dir = tempfile::tempdir().unwrap();
        let me = Self {
            dir,
            port: free_port(),
            bin,
        };
        if root() {
            let owned = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(me.dir.path())
                .status();
            assert!(owned.unwrap().success());
        }
        me.run(
            "initdb",
            &[
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-D",
                &me.data(),
            ],
        );
        me.pg_ctl("start");
        me
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn pg_ctl(&self, action: &str) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                action,
                "-w",
                "-m",
                "fast",
                "-D",
                &self.data(),
                "-l",
                &log,
                "-o",
                &options,
            ],
        );
    }

    /// Runs a PostgreSQL program, as the `postgres` user when the tests run as root
    /// (PostgreSQL refuses to run as root).
    fn run(&self, program: &str, args: &[&str]) {
        let path = self.bin.join(program);
        let mut command = if root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let out = command
            .args(args)
            .output()
            .expect("run a PostgreSQL program");
        assert!(
            out.status.success(),
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let data = self.data();
        let _ = std::panic::catch_unwind(|| {
            self.run("pg_ctl", &["stop", "-m", "immediate", "-D", &data])
        });
    }
}

fn root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("id -u");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// PostgreSQL itself stops and starts again under a running server: 503 with
/// `Retry-After` meanwhile, `/healthz` still 200, and afterwards every acknowledged job is
/// there and work goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_is_ridden_out() {
    let pg = OwnPostgres::start();
    let dir = tempfile::tempdir().unwrap();
    let config = crate::support::config(dir.path(), "[[queues]]\nname = \"q\"\n");
    let server = ServerProcess::start_store(&pg.url(), free_port(), &["--config", &config]);
    let url = server.url.clone();
    let before = crate::support::enqueue(&url, "q", "k", json!({}), 20).await;

    rides_out(&url, &before, || pg.pg_ctl("stop"), || pg.pg_ctl("start")).await;
}

/// The server at `url` while its database goes `down` and comes back `up`: `/readyz` 503
/// and requests 503 `unavailable` with `Retry-After` meanwhile, `/healthz` 200 throughout;
/// afterwards it serves again and the jobs `before` are all there.
async fn rides_out(url: &str, before: &[i64], down: impl FnOnce(), up: impl FnOnce()) {
    let http = reqwest::Client::new();
    let ready = |want: u16| {
        let http = http.clone();
        move || {
            let http = http.clone();
            async move {
                let answer = http.get(format!("{url}/readyz")).send().await.unwrap();
                answer.status() == want
            }
        }
    };
    down();
    crate::support::eventually("readyz to turn 503", ready(503)).await;
    let refused = http
        .post(format!("{url}/v1/jobs"))
        .json(&json!({"queue": "q", "kind": "k"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
    let healthz = http.get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(healthz.status(), 200, "the server itself is alive");

    up();
    crate::support::eventually("readyz to turn 200", ready(200)).await;
    let after = crate::support::enqueue(url, "q", "k", json!({}), 10).await;
    assert_eq!(after.len(), 10);
    let jobs = crate::support::jobs(url, before).await;
    assert!(jobs.iter().all(|j| j["state"] == "available"), "{jobs:?}");
}
