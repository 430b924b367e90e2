//! Starting `flotilla server` and `flotilla worker` as child processes and talking to them.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use serde_json::Value;

/// A `flotilla server` child process, killed on drop.
pub(crate) struct ServerProcess {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub(crate) url: String,
    /// Every line it logged so far.
    pub(crate) log: Arc<Mutex<Vec<String>>>,
}

impl ServerProcess {
    /// Starts a server on a free loopback port with its store in `dir`, and waits for its
    /// "ready" log line.
    pub(crate) fn start(dir: &Path) -> Self {
        Self::start_with(dir, &[], "http")
    }

    /// Like [`ServerProcess::start`], with more arguments and the URL scheme to expect.
    pub(crate) fn start_with(dir: &Path, args: &[&str], scheme: &str) -> Self {
        Self::start_on(dir, free_port(), args, scheme)
    }

    /// Like [`ServerProcess::start_with`], on `port`.
    pub(crate) fn start_on(dir: &Path, port: u16, args: &[&str], scheme: &str) -> Self {
        Self::spawn(dir, port, args, scheme, "info")
    }

    /// Like [`ServerProcess::start_with`], logging everything (`RUST_LOG=trace`).
    pub(crate) fn start_verbose(dir: &Path, args: &[&str]) -> Self {
        Self::spawn(dir, free_port(), args, "http", "trace")
    }

    fn spawn(dir: &Path, port: u16, args: &[&str], scheme: &str, log_level: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .args(["server", "--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .arg("--store")
            .arg(format!("sqlite:{}", dir.join("flotilla.db").display()))
            .env("RUST_LOG", log_level)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start flotilla server");
        let (ready_tx, ready_rx) = mpsc::channel();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if line.contains("flotilla server ready") {
                    let _ = ready_tx.send(());
                }
                lines.lock().unwrap().push(line);
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the server reports ready");
        Self {
            child,
            url: format!("{scheme}://127.0.0.1:{port}"),
            log,
        }
    }

    /// The port it listens on.
    pub(crate) fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port in URL")
    }

    /// Kills it with SIGKILL.
    pub(crate) fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `flotilla worker` child process, killed on drop. Counts the jobs it starts from its
/// debug log, so tests wait on events rather than on time.
pub(crate) struct WorkerProcess {
    child: Child,
    started: mpsc::Receiver<()>,
}

impl WorkerProcess {
    /// Starts `flotilla worker --url URL` with `args`.
    pub(crate) fn start(url: &str, args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .args(["worker", "--url", url])
            .args(args)
            .env("RUST_LOG", "info,flotilla_worker=debug")
            .stderr(Stdio::piped())
            .spawn()
            .expect("start flotilla worker");
        let (tx, started) = mpsc::channel();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if line.contains("job started") {
                    let _ = tx.send(());
                }
            }
        });
        Self { child, started }
    }

    /// Waits until it has started `n` more jobs.
    pub(crate) fn wait_started(&self, n: usize) {
        for _ in 0..n {
            self.started
                .recv_timeout(Duration::from_secs(30))
                .expect("the worker starts a job");
        }
    }

    /// Sends SIGKILL.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and returns how the process exited.
    pub(crate) fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        self.child.wait().expect("worker exit")
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Checks `done` against the server until it holds (every 50 ms, at most 60 s). Used only
/// for the end state of multi-process runs, where no in-process signal exists.
pub(crate) async fn eventually<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(
            std::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A GET returning JSON.
pub(crate) async fn get(url: String) -> Value {
    reqwest::get(url)
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON")
}

/// A POST with a JSON body, returning JSON.
pub(crate) async fn post(url: String, body: Value) -> Value {
    reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .expect("POST")
        .json()
        .await
        .expect("JSON")
}

/// The jobs `ids` as the server has them.
pub(crate) async fn jobs(url: &str, ids: &[i64]) -> Vec<Value> {
    let mut jobs = Vec::new();
    for id in ids {
        jobs.push(get(format!("{url}/v1/jobs/{id}")).await);
    }
    jobs
}

/// Whether every job of `ids` is in `state`.
pub(crate) async fn all_in(url: &str, ids: &[i64], state: &str) -> bool {
    jobs(url, ids).await.iter().all(|j| j["state"] == state)
}

/// Enqueues `n` jobs of `kind` with `payload` into `queue`; returns their ids.
pub(crate) async fn enqueue(
    url: &str,
    queue: &str,
    kind: &str,
    payload: Value,
    n: usize,
) -> Vec<i64> {
    let jobs: Vec<Value> = (0..n)
        .map(|_| serde_json::json!({"queue": queue, "kind": kind, "payload": payload}))
        .collect();
    let answer = post(
        format!("{url}/v1/jobs:batch"),
        serde_json::json!({ "jobs": jobs }),
    )
    .await;
    answer["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["id"].as_i64().unwrap())
        .collect()
}

/// Writes a `flotilla.toml` into `dir` and returns its path.
pub(crate) fn config(dir: &Path, toml: &str) -> String {
    let path = dir.join("flotilla.toml");
    std::fs::write(&path, toml).unwrap();
    path.to_str().unwrap().to_owned()
}
