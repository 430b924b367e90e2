//! Starting `flotilla server` and `flotilla worker` as child processes and talking to them.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::{Duration, Instant};

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
        Self::spawn(&sqlite(dir), port, args, scheme, "info")
    }

    /// Like [`ServerProcess::start_with`], logging everything (`RUST_LOG=trace`).
    pub(crate) fn start_verbose(dir: &Path, args: &[&str]) -> Self {
        Self::spawn(&sqlite(dir), free_port(), args, "http", "trace")
    }

    /// A server on `store` (e.g. a PostgreSQL URL) and `port`, with `args`.
    pub(crate) fn start_store(store: &str, port: u16, args: &[&str]) -> Self {
        Self::spawn(store, port, args, "http", "info")
    }

    fn spawn(store: &str, port: u16, args: &[&str], scheme: &str, log_level: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .args(["server", "--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .arg("--store")
            .arg(store)
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

/// The SQLite store URL of a server whose files live in `dir`.
fn sqlite(dir: &Path) -> String {
    format!("sqlite:{}", dir.join("flotilla.db").display())
}

/// A free loopback port.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Checks `done` against the server until it holds (every 50 ms, at most 60 s). Used only
/// for the end state of multi-process runs, where no in-process signal exists.
pub(crate) async fn eventually<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
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

/// The PostgreSQL the tests use: `FLOTILLA_TEST_PG`, by default the local `test` database.
pub(crate) fn pg_url() -> String {
    std::env::var("FLOTILLA_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh schema for one test: the store URL that selects it, and a guard that drops the
/// schema when the test ends.
pub(crate) async fn pg_schema_url(name: &str) -> (String, PgSchema) {
    let schema = format!("t_{name}_{}_{}", std::process::id(), rand::random::<u32>());
    let base = pg_url();
    let separator = if base.contains('?') { '&' } else { '?' };
    (
        format!("{base}{separator}schema={schema}"),
        PgSchema { url: base, schema },
    )
}

/// Drops its schema on drop (best effort).
pub(crate) struct PgSchema {
    url: String,
    schema: String,
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        let dropping = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let Ok((client, connection)) =
                    tokio_postgres::connect(&url, tokio_postgres::NoTls).await
                else {
                    return;
                };
                tokio::spawn(connection);
                let _ = client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .await;
            });
        });
        let _ = dropping.join();
    }
}

/// A TCP proxy on loopback in front of `upstream`, which a test can cut (every connection
/// is closed and new ones are refused, as when a database goes down) and restore.
pub(crate) struct TcpProxy {
    /// The port it listens on.
    pub(crate) port: u16,
    up: Arc<std::sync::atomic::AtomicBool>,
    links: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Starts forwarding to `upstream` (`host:port`).
    pub(crate) async fn start(upstream: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let links: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (flag, list, upstream) = (up.clone(), links.clone(), upstream.to_owned());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !flag.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // dropped: the connection is refused
                }
                let upstream = upstream.clone();
                let link = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                list.lock().unwrap().push(link.abort_handle());
            }
        });
        Self {
            port,
            up,
            links,
            accept,
        }
    }

    /// Closes every connection and refuses new ones.
    pub(crate) fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    /// Accepts connections again.
    pub(crate) fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// What a `flotilla` command printed, and how it exited.
#[derive(Debug)]
pub(crate) struct CliRun {
    /// Its exit status.
    pub(crate) status: std::process::ExitStatus,
    /// Everything it printed on stdout.
    pub(crate) stdout: String,
    /// Everything it printed on stderr.
    pub(crate) stderr: String,
}

impl CliRun {
    /// Its stdout, after checking that it exited 0.
    pub(crate) fn ok(&self) -> &str {
        assert!(self.status.success(), "the command failed: {self:?}");
        &self.stdout
    }

    /// Its stdout parsed as JSON, after checking that it exited 0.
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(self.ok()).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    /// Its stderr, after checking that it failed cleanly: a non-zero exit with an `error:`
    /// line, and no panic or backtrace.
    pub(crate) fn failure(&self) -> &str {
        assert!(!self.status.success(), "the command succeeded: {self:?}");
        assert_eq!(self.status.code(), Some(1), "exit status: {self:?}");
        assert!(self.stderr.starts_with("error: "), "{self:?}");
        for panic in ["panicked", "stack backtrace", "RUST_BACKTRACE"] {
            assert!(!self.stderr.contains(panic), "{panic}: {self:?}");
        }
        &self.stderr
    }
}

/// Runs `flotilla ARGS --url URL` to its end (at most 60 s), with stdin empty, no
/// `FLOTILLA_*` variables from the test's environment, and backtraces on.
pub(crate) async fn flotilla(url: &str, args: &[&str]) -> CliRun {
    flotilla_with_stdin(url, args, Vec::new()).await
}

/// Like [`flotilla`], with `input` on stdin.
pub(crate) async fn flotilla_with_stdin(url: &str, args: &[&str], input: Vec<u8>) -> CliRun {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(args)
        .args(["--url", url])
        .env_remove("FLOTILLA_URL")
        .env_remove("FLOTILLA_TOKEN")
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start flotilla");
    let mut stdin = child.stdin.take().expect("stdin");
    let feed = async move {
        // A command that does not read its input closes the pipe: not an error here.
        let _ = stdin.write_all(&input).await;
    };
    let run = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output());
    let ((), output) = tokio::join!(feed, run);
    let output = output
        .unwrap_or_else(|_| panic!("flotilla {args:?} did not end within 60 s"))
        .expect("flotilla output");
    CliRun {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A `flotilla worker` child process that keeps every line it prints (stdout and stderr),
/// so that a test can wait for a log line (a job started, the health port) rather than
/// for time, and read the whole log; killed on drop.
pub(crate) struct WorkerProcess {
    child: Child,
    output: Arc<WorkerOutput>,
    /// The "job started" lines [`WorkerProcess::wait_started`] has waited for so far.
    started_seen: AtomicUsize,
}

/// The lines a [`WorkerProcess`] printed, and how many of its two streams are still open.
#[derive(Default)]
struct WorkerOutput {
    state: Mutex<(Vec<String>, usize)>,
    changed: Condvar,
}

impl WorkerProcess {
    /// Starts `flotilla worker --url URL` with `args`, logging at debug level the job
    /// events [`WorkerProcess::wait_started`] counts.
    pub(crate) fn start(url: &str, args: &[&str]) -> Self {
        Self::start_env(url, args, &[])
    }

    /// Like [`WorkerProcess::start`], with more environment variables.
    pub(crate) fn start_env(url: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_logging(url, args, env, "info,flotilla_worker=debug")
    }

    /// Like [`WorkerProcess::start_env`], with `RUST_LOG=rust_log`. No `FLOTILLA_TOKEN`
    /// comes from the test's environment.
    pub(crate) fn start_logging(
        url: &str,
        args: &[&str],
        env: &[(&str, &str)],
        rust_log: &str,
    ) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .args(["worker", "--url", url])
            .args(args)
            .env_remove("FLOTILLA_TOKEN")
            // The media handlers' object store: out of the source tree.
            .env(
                "FLOTILLA_OBJECTS",
                std::env::temp_dir().join("flotilla-test-objects"),
            )
            .envs(env.iter().copied())
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start flotilla worker");
        let output = Arc::new(WorkerOutput {
            state: Mutex::new((Vec::new(), 2)),
            changed: Condvar::new(),
        });
        let stdout: Box<dyn std::io::Read + Send> = Box::new(child.stdout.take().unwrap());
        let stderr: Box<dyn std::io::Read + Send> = Box::new(child.stderr.take().unwrap());
        for stream in [stdout, stderr] {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    output.state.lock().unwrap().0.push(line);
                    output.changed.notify_all();
                }
                output.state.lock().unwrap().1 -= 1;
                output.changed.notify_all();
            });
        }
        Self {
            child,
            output,
            started_seen: AtomicUsize::new(0),
        }
    }

    /// Every line it printed so far.
    pub(crate) fn log(&self) -> Vec<String> {
        self.output.state.lock().unwrap().0.clone()
    }

    /// Waits (at most 30 s) until it has started `n` more jobs.
    pub(crate) fn wait_started(&self, n: usize) {
        let seen = self.started_seen.fetch_add(n, Ordering::SeqCst) + n;
        self.wait_until(&format!("job start {seen}"), |lines| {
            lines.iter().filter(|l| l.contains("job started")).count() >= seen
        });
    }

    /// Waits (at most 30 s) until it has printed a line that `matches` and returns it.
    pub(crate) fn wait_for_line(&self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        let lines = self.wait_until(what, |lines| lines.iter().any(|l| matches(l)));
        lines.into_iter().find(|l| matches(l)).unwrap()
    }

    /// Waits (at most 30 s) until its lines so far satisfy `done`, and returns them.
    fn wait_until(&self, what: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut state = self.output.state.lock().unwrap();
        loop {
            if done(&state.0) {
                return state.0.clone();
            }
            let log = state.0.join("\n");
            assert!(state.1 > 0, "the worker exited before {what}:\n{log}");
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "gave up waiting for {what}:\n{log}");
            state = self.output.changed.wait_timeout(state, left).unwrap().0;
        }
    }

    /// The port of its health server, from its "health port listening" log line.
    pub(crate) fn health_port(&self) -> u16 {
        let line = self.wait_for_line("the health port", |l| l.contains("health port listening"));
        let (_, after) = line.split_once("127.0.0.1:").expect("a loopback address");
        let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().expect("a port")
    }

    /// Sends SIGKILL.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM, without waiting.
    pub(crate) fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success(), "kill -TERM");
    }

    /// Sends SIGTERM and returns how the process exited.
    pub(crate) fn terminate(&mut self) -> ExitStatus {
        self.sigterm();
        self.wait_exit()
    }

    /// Waits (at most 30 s) until it has closed its output, so that its log is whole, and
    /// exited; returns how.
    pub(crate) fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut state = self.output.state.lock().unwrap();
        while state.1 > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "the worker did not exit within 30 s");
            state = self.output.changed.wait_timeout(state, left).unwrap().0;
        }
        drop(state);
        self.child.wait().expect("worker exit")
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
