//! `flotilla fleet fleet.toml` with real processes: a server, the supervisor and the
//! workers it starts, talking over loopback. Windows and delays are shortened in the
//! fleet.toml of each test; waits are bounded polls of the supervisor's `/status` or the
//! server, never sleeps standing in for an event.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{ServerProcess, all_in, config, enqueue, eventually, free_port, get, jobs};

/// A `flotilla fleet` child process, killed on drop.
struct FleetProcess {
    child: Child,
    status_url: String,
}

impl FleetProcess {
    /// Writes `pools` (TOML) under a header naming `server` and a free status port, and
    /// starts the supervisor on it.
    fn start(dir: &Path, server: &str, body: &str) -> Self {
        let port = free_port();
        let text = format!(
            "name = \"test-fleet\"\nserver = \"{server}\"\nlisten = \"127.0.0.1:{port}\"\n\
             signal_interval = \"200ms\"\nreport_interval = \"500ms\"\n{body}"
        );
        let path = dir.join("fleet.toml");
        std::fs::write(&path, text).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .arg("fleet")
            .arg(&path)
            .env("RUST_LOG", "info")
            .env("FLOTILLA_OBJECTS", dir.join("objects"))
            .stderr(Stdio::piped())
            .spawn()
            .expect("start flotilla fleet");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if line.contains("fleet supervisor running") {
                    let _ = ready_tx.send(());
                }
                eprintln!("fleet: {line}");
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the supervisor reports running");
        Self {
            child,
            status_url: format!("http://127.0.0.1:{port}/status"),
        }
    }

    async fn status(&self) -> Value {
        get(self.status_url.clone()).await
    }

    /// The first pool's processes.
    async fn processes(&self) -> Vec<Value> {
        self.status().await["pools"][0]["processes"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The first pool's decisions with `action`.
    async fn decisions(&self, action: &str) -> Vec<Value> {
        let status = self.status().await;
        let all = status["pools"][0]["decisions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        all.into_iter().filter(|d| d["action"] == action).collect()
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        signal(self.child.id(), "TERM");
        self.child.wait().expect("supervisor exit")
    }
}

impl Drop for FleetProcess {
    /// Stops the supervisor as a user would (SIGTERM: every worker drains), so no worker or
    /// handler outlives the test; SIGKILL if that takes more than 20 s.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            signal(self.child.id(), "TERM");
        }
        for _ in 0..400 {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{name} {pid}");
}

/// A server whose queue `q` leases jobs for `lease` (short where a killed worker's job
/// must come back quickly, long enough elsewhere that a loaded machine's late heartbeat
/// never lets one lapse).
fn server(dir: &Path, lease: &str) -> ServerProcess {
    let conf = config(
        dir,
        &format!("[[queues]]\nname = \"q\"\nlease = \"{lease}\"\n"),
    );
    ServerProcess::start_with(dir, &["--config", &conf], "http")
}

/// Polls `look` until it finds something (every 50 ms, at most 60 s).
async fn found<T, F, Fut>(what: &str, mut look: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = look().await {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The pids of the first pool's running processes.
fn pids(processes: &[Value]) -> Vec<u64> {
    processes.iter().filter_map(|p| p["pid"].as_u64()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_with_sigkill_is_restarted_and_its_job_completes() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), "2s");
    let fleet = FleetProcess::start(
        dir.path(),
        &server.url,
        "[[pools]]\nname = \"p\"\nqueues = [\"q\"]\nconcurrency = 1\nmin_replicas = 1\nmax_replicas = 1\n\
         restart = { delay = \"200ms\" }\n",
    );
    let ids = enqueue(&server.url, "q", "sleep", json!({"ms": 1500}), 1).await;
    let victim = found("the worker runs the job", || async {
        let processes = fleet.processes().await;
        let running = processes
            .iter()
            .find(|p| p["current_jobs"] == json!([ids[0]]));
        running.and_then(|p| p["pid"].as_u64())
    })
    .await;
    signal(victim as u32, "KILL");

    eventually("the job succeeds on a restarted worker", || {
        all_in(&server.url, &ids, "succeeded")
    })
    .await;
    let job = &jobs(&server.url, &ids).await[0];
    assert_eq!(
        job["attempt"], 2,
        "the killed attempt, then the one that succeeded"
    );
    let processes = fleet.processes().await;
    assert_eq!(processes[0]["restarts"], 1);
    assert_ne!(pids(&processes), vec![victim]);
    let crashes = fleet.decisions("crash").await;
    assert!(
        crashes[0]["reason"]
            .as_str()
            .unwrap()
            .contains("killed by signal 9"),
        "{crashes:?}"
    );
}

/// A webhook receiver on loopback that keeps every body it is sent.
async fn webhook_receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let keep = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let keep = keep.clone();
            async move {
                keep.lock().unwrap().push(body);
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

/// Whether `received` holds an event of `rule` with `status`.
fn got(received: &Mutex<Vec<Value>>, rule: &str, status: &str) -> bool {
    received
        .lock()
        .unwrap()
        .iter()
        .any(|e| e["alert"]["rule"] == rule && e["status"] == status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_looping_pool_backs_off_exponentially_alerts_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), "5s");
    let (hook, received) = webhook_receiver().await;
    // Workers crash (exit 3) until the file `healthy` exists, then run for real.
    let healthy = dir.path().join("healthy");
    let script = format!(
        "test -f {} && exec {} worker \"$@\"; exit 3",
        healthy.display(),
        env!("CARGO_BIN_EXE_flotilla")
    );
    let fleet = FleetProcess::start(
        dir.path(),
        &server.url,
        &format!(
            "[alerts]\nwebhooks = [\"{hook}\"]\nresolve_after = \"500ms\"\n\
             [[pools]]\nname = \"p\"\nqueues = [\"q\"]\nconcurrency = 1\nmin_replicas = 1\nmax_replicas = 1\n\
             command = [\"sh\", \"-c\", {script:?}, \"sh\"]\n\
             restart = {{ delay = \"300ms\", max_delay = \"10s\", crash_loop_after = 4, crash_loop_window = \"4s\", reset_after = \"30s\" }}\n"
        ),
    );
    eventually("four crashes", || async {
        fleet.decisions("crash").await.len() >= 4
    })
    .await;
    let status = fleet.status().await;
    assert_eq!(status["pools"][0]["state"], "crash_loop");
    let crashes = fleet.decisions("crash").await;
    // The delays scheduled double from 300 ms (each crash's decision says its delay) ...
    for (crash, delay) in crashes.iter().zip(["300ms", "600ms", "1s 200ms"]) {
        let reason = crash["reason"].as_str().unwrap();
        assert!(reason.ends_with(&format!("restart in {delay}")), "{reason}");
    }
    // ... and are kept: the next crash never comes before its restart was due.
    let times: Vec<chrono::DateTime<chrono::Utc>> = crashes
        .iter()
        .map(|d| d["at"].as_str().unwrap().parse().unwrap())
        .collect();
    let gaps: Vec<i64> = times
        .windows(2)
        .map(|w| (w[1] - w[0]).num_milliseconds())
        .collect();
    for (gap, delay) in gaps.iter().zip([300, 600, 1200]) {
        assert!(*gap >= delay, "gap {gap} ms < backoff {delay} ms: {gaps:?}");
    }
    eventually("the crash-loop alert reaches the webhook", || async {
        got(&received, "crash_loop", "firing")
    })
    .await;

    std::fs::write(&healthy, "").unwrap();
    eventually("the pool recovers and the alert resolves", || async {
        got(&received, "crash_loop", "resolved")
    })
    .await;
    assert_eq!(fleet.status().await["pools"][0]["state"], "running");
    // Its backoff may still have a few seconds to run; then the worker stays up.
    eventually("the worker runs again", || async {
        fleet.processes().await[0]["state"] == "running"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_waiting_job_fires_the_delay_alert_which_resolves_when_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), "5s");
    let (hook, received) = webhook_receiver().await;
    let fleet = FleetProcess::start(
        dir.path(),
        &server.url,
        &format!(
            "[alerts]\nwebhooks = [\"{hook}\"]\nmax_oldest_age = \"1s\"\noldest_age_resolve = \"500ms\"\nresolve_after = \"300ms\"\n\
             [[pools]]\nname = \"p\"\nqueues = [\"q\"]\nconcurrency = 1\nmin_replicas = 1\nmax_replicas = 1\n"
        ),
    );
    // One slot: the second job waits behind the first, growing old.
    let ids = enqueue(&server.url, "q", "sleep", json!({"ms": 2500}), 2).await;
    eventually("the delay alert fires", || async {
        got(&received, "processing_delay", "firing")
    })
    .await;
    let status = fleet.status().await;
    assert!(
        status["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["rule"] == "processing_delay"),
        "the supervisor shows it: {status}"
    );
    eventually("both jobs ran", || all_in(&server.url, &ids, "succeeded")).await;
    eventually("the delay alert resolves", || async {
        got(&received, "processing_delay", "resolved")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_over_its_memory_ceiling_is_drained_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), "5s");
    // The handler notes its pid, writes 200 MiB and holds it; the ceiling is 100 MiB.
    let handler = "python3 -c 'import os, time; open(os.environ[\"HOGS\"] + \"/%d\" % os.getpid(), \"w\"); \
                   x = b\"a\" * (200 << 20); time.sleep(60)'";
    let hogs = dir.path().join("hogs");
    std::fs::create_dir(&hogs).unwrap();
    let fleet = FleetProcess::start(
        dir.path(),
        &server.url,
        &format!(
            "[[pools]]\nname = \"p\"\nqueues = [\"q\"]\nconcurrency = 1\nmin_replicas = 1\nmax_replicas = 1\n\
             memory_limit = \"100MiB\"\nshutdown_grace = \"1s\"\nargs = [\"--exec\", {handler:?}]\n\
             env = {{ HOGS = {:?} }}\nrestart = {{ delay = \"200ms\" }}\n",
            hogs.display().to_string()
        ),
    );
    let first_pid = found("the first worker", || async {
        pids(&fleet.processes().await).pop()
    })
    .await;
    let ids = enqueue(&server.url, "q", "hog", json!({}), 1).await;
    let hog: u32 = found("the hog starts", || async {
        let entry = std::fs::read_dir(&hogs).ok()?.next()?.ok()?;
        entry.file_name().to_str()?.parse().ok()
    })
    .await;
    eventually("the hog's worker is replaced", || async {
        !fleet.decisions("replace").await.is_empty()
    })
    .await;
    let replace = &fleet.decisions("replace").await[0];
    assert!(
        replace["reason"]
            .as_str()
            .unwrap()
            .contains("over its ceiling of 100 MiB"),
        "{replace}"
    );
    eventually("a new worker runs in its place", || async {
        let processes = fleet.processes().await;
        processes[0]["restarts"].as_u64() >= Some(1)
            && pids(&processes).first().is_some_and(|p| *p != first_pid)
    })
    .await;
    eventually("the hog itself is gone", || async {
        !Path::new(&format!("/proc/{hog}")).exists()
    })
    .await;
    // The job was handed back, not lost.
    let job = &jobs(&server.url, &ids).await[0];
    assert!(
        ["available", "running"].contains(&job["state"].as_str().unwrap()),
        "{job}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_scales_out_under_load_and_in_when_idle_without_losing_a_job() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), "5s");
    let fleet = FleetProcess::start(
        dir.path(),
        &server.url,
        "[[pools]]\nname = \"p\"\nqueues = [\"q\"]\nconcurrency = 2\nmin_replicas = 1\nmax_replicas = 3\n\
         scaling = { scale_out_depth = 4, scale_out_for = \"600ms\", scale_out_cooldown = \"600ms\", \
                     scale_in_depth = 1, scale_in_for = \"600ms\", scale_in_cooldown = \"600ms\" }\n",
    );
    // Jobs long enough that the last ones still run when the queue is empty and the pool
    // starts to shrink: a drained worker finishes them.
    let ids = enqueue(&server.url, "q", "sleep", json!({"ms": 2000}), 18).await;
    eventually("the pool reaches 3 replicas", || async {
        fleet.status().await["pools"][0]["desired_replicas"] == 3
    })
    .await;
    eventually("every job succeeds", || {
        all_in(&server.url, &ids, "succeeded")
    })
    .await;
    eventually("the pool is back to 1 replica", || async {
        let status = fleet.status().await;
        let pool = &status["pools"][0];
        pool["desired_replicas"] == 1 && pool["processes"].as_array().unwrap().len() == 1
    })
    .await;
    let jobs = jobs(&server.url, &ids).await;
    assert!(
        jobs.iter().all(|j| j["attempt"] == 1),
        "no job was interrupted by a scale-in"
    );
    assert_eq!(fleet.decisions("scale_out").await.len(), 2);
    assert_eq!(fleet.decisions("scale_in").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_to_the_supervisor_drains_every_worker_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), "5s");
    let mut fleet = FleetProcess::start(
        dir.path(),
        &server.url,
        "[[pools]]\nname = \"p\"\nqueues = [\"q\"]\nconcurrency = 1\nmin_replicas = 2\nmax_replicas = 2\n",
    );
    let ids = enqueue(&server.url, "q", "sleep", json!({"ms": 1500}), 4).await;
    let busy: Vec<i64> = found("two jobs run", || async {
        let busy: Vec<i64> = fleet
            .processes()
            .await
            .iter()
            .flat_map(|p| p["current_jobs"].as_array().cloned().unwrap_or_default())
            .filter_map(|j| j.as_i64())
            .collect();
        (busy.len() == 2).then_some(busy)
    })
    .await;
    let worker_pids = pids(&fleet.processes().await);
    let status = fleet.terminate();
    assert!(status.success(), "the supervisor exits 0: {status:?}");
    for pid in worker_pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "worker {pid} is gone"
        );
    }
    let jobs = jobs(&server.url, &ids).await;
    for job in &jobs {
        let id = job["id"].as_i64().unwrap();
        let expected = if busy.contains(&id) {
            "succeeded"
        } else {
            "available"
        };
        assert_eq!(job["state"], expected, "{job}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_do_not_outlive_a_killed_supervisor() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), "5s");
    let mut fleet = FleetProcess::start(
        dir.path(),
        &server.url,
        "[[pools]]\nname = \"p\"\nqueues = [\"q\"]\nconcurrency = 1\nmin_replicas = 2\nmax_replicas = 2\n",
    );
    let workers = found("two workers", || async {
        let pids = pids(&fleet.processes().await);
        (pids.len() == 2).then_some(pids)
    })
    .await;
    signal(fleet.child.id(), "KILL");
    let _ = fleet.child.wait();
    eventually("its workers drain and exit", || async {
        workers
            .iter()
            .all(|pid| !Path::new(&format!("/proc/{pid}")).exists())
    })
    .await;
}
