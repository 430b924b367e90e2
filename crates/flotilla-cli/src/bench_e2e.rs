//! `flotilla bench e2e`: a real server and real worker processes on loopback, measured from
//! outside: HTTP enqueue (single requests and batches), drain by one worker process,
//! enqueue→start latency at a steady rate, and a crash run (kill -9 of a worker).
//! Prints figures; asserts nothing.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use flotilla_client::Client;
use flotilla_core::{JobState, NewJob};
use flotilla_proto::EnqueueBatchRequest;
use serde_json::json;

/// Options of `flotilla bench e2e`.
#[derive(clap::Args, Debug)]
pub(crate) struct E2eBenchArgs {
    /// Jobs for the enqueue and drain figures.
    #[arg(long, default_value_t = 20_000)]
    jobs: usize,
    /// Seconds of steady enqueueing for the latency figure.
    #[arg(long, default_value_t = 20)]
    latency_secs: u64,
    /// Enqueue rate for the latency figure, jobs per second.
    #[arg(long, default_value_t = 200)]
    rate: u64,
    /// Jobs of the crash run.
    #[arg(long, default_value_t = 2_000)]
    crash_jobs: usize,
    /// A PostgreSQL URL for the servers' store instead of SQLite (schemas
    /// `flotilla_bench_*` in it are dropped and created).
    #[arg(long)]
    store: Option<String>,
}

/// The queue of the drain, latency and crash figures.
const QUEUE: &str = "bench";
/// The queue of the single-enqueue figures, which no worker serves.
const SINGLES: &str = "bench-singles";
/// The width of the column of figure names.
const LABEL_WIDTH: usize = 58;
const LEASE_SECS: u64 = 5;

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) async fn run(args: E2eBenchArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let backend = if args.store.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    println!("flotilla bench e2e: server + worker processes on loopback, {backend} store");
    let pg = args.store.as_deref();
    {
        // Single enqueues against a server with relaxed durability, for comparison.
        let (_server, client) = server(dir.path(), pg, "relaxed").await?;
        singles(&client, args.jobs, "relaxed").await?;
    }
    let (_server, client) = server(dir.path(), pg, "full").await?;
    let url = client.base_url().to_owned();
    singles(&client, args.jobs, "durable").await?;

    // The batches fill the queue the drain empties; a paused queue keeps them for it.
    client.pause(QUEUE).await?;
    let start = Instant::now();
    for chunk in (0..args.jobs).collect::<Vec<_>>().chunks(1000) {
        client
            .enqueue_batch(&EnqueueBatchRequest {
                jobs: chunk.iter().map(|i| noop(QUEUE, *i)).collect(),
            })
            .await?;
    }
    report("HTTP enqueue, batches of 1,000", args.jobs, start.elapsed());

    // Drain: one worker process (concurrency 10), started and waiting in its first poll,
    // timed from the queue's resumption until every job of the batches succeeded.
    let worker = start_worker(&url, 10)?;
    wait_until_polling(&url).await?;
    let start = Instant::now();
    client.resume(QUEUE).await?;
    wait_for(
        &client,
        |c| c.succeeded >= args.jobs as u64,
        Duration::from_secs(600),
    )
    .await?;
    report(
        "drain by 1 worker process, concurrency 10",
        args.jobs,
        start.elapsed(),
    );

    latency(&client, &args).await?;
    drop(worker);
    crash(&client, &url, &args).await?;
    if let Some(url) = pg {
        crate::bench::drop_bench_schemas(url).await?;
    }
    Ok(())
}

/// A server process with `durability` on a fresh store (a SQLite file in `dir`, or a
/// fresh schema of the PostgreSQL database `pg`), ready, and a client for it.
async fn server(dir: &Path, pg: Option<&str>, durability: &str) -> anyhow::Result<(Proc, Client)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let store = match pg {
        Some(url) => crate::bench::fresh_pg_url(url, &format!("e2e_{durability}")).await?,
        None => format!(
            "sqlite:{}",
            dir.join(format!("bench-{durability}.db")).display()
        ),
    };
    let process = start_server(dir, port, durability, &store)?;
    let client = Client::new(&format!("http://127.0.0.1:{port}"), None)?;
    wait_ready(&client).await?;
    Ok((process, client))
}

/// Single enqueues from one sequential producer: the minimal one, then `flotilla-client`.
async fn singles(client: &Client, jobs: usize, durability: &str) -> anyhow::Result<()> {
    let addr = client
        .base_url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let took = crate::bench_producer::enqueue_singles(addr, jobs, single).await?;
    report(
        &format!("HTTP enqueue, 1 request per job, {durability}, minimal producer"),
        jobs,
        took,
    );
    let took = enqueue_singles(client, jobs).await?;
    report(
        &format!("HTTP enqueue, 1 request per job, {durability}, flotilla-client"),
        jobs,
        took,
    );
    Ok(())
}

/// One sequential producer, one request per job. It runs on a thread of its own with a
/// single-threaded runtime, as a simple producer program would: the connection and the
/// requests are driven by one thread, so no wake-up hops between threads are measured.
async fn enqueue_singles(client: &Client, jobs: usize) -> anyhow::Result<Duration> {
    let url = client.base_url().to_owned();
    let producer = std::thread::spawn(move || -> anyhow::Result<Duration> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let client = Client::new(&url, None)?;
            client.enqueue(&single(0)).await?; // connect before timing
            let start = Instant::now();
            for i in 1..=jobs {
                client.enqueue(&single(i)).await?;
            }
            Ok(start.elapsed())
        })
    });
    tokio::task::spawn_blocking(move || producer.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the producer thread panicked"))?
}

fn noop(queue: &str, i: usize) -> NewJob {
    NewJob::new(queue, "noop", json!({ "i": i }))
}

/// A job of the single-enqueue figures, kept apart from the drained queue.
fn single(i: usize) -> NewJob {
    noop(SINGLES, i)
}

fn start_server(dir: &Path, port: u16, durability: &str, store: &str) -> anyhow::Result<Proc> {
    let config = dir.join(format!("flotilla-{durability}.toml"));
    // Retries start at 100 ms (not the default 1 s), so the crash run measures lease expiry
    // and reaping rather than backoff.
    let toml = format!(
        "durability = \"{durability}\"\n[[queues]]\nname = \"{QUEUE}\"\nlease = \"{LEASE_SECS}s\"\n\
         retry = {{ policy = \"exponential\", max_attempts = 20, initial = \"100ms\", factor = 2.0, max_interval = \"1m\" }}\n\
         [[queues]]\nname = \"{SINGLES}\"\n"
    );
    std::fs::write(&config, toml)?;
    let child = Command::new(std::env::current_exe()?)
        .args([
            "server",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--config",
        ])
        .arg(&config)
        .arg("--store")
        .arg(store)
        .env("RUST_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()
        .context("starting the server")?;
    Ok(Proc(child))
}

fn start_worker(url: &str, concurrency: u32) -> anyhow::Result<Proc> {
    let child = Command::new(std::env::current_exe()?)
        .args([
            "worker",
            "--url",
            url,
            "--queues",
            QUEUE,
            "--concurrency",
            &concurrency.to_string(),
        ])
        .env("RUST_LOG", "warn")
        .env(
            "FLOTILLA_OBJECTS",
            std::env::temp_dir().join("flotilla-bench-objects"),
        )
        .stderr(Stdio::null())
        .spawn()
        .context("starting a worker")?;
    Ok(Proc(child))
}

async fn wait_ready(client: &Client) -> anyhow::Result<()> {
    for _ in 0..300 {
        if client.healthz().await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the server did not become ready")
}

async fn counts(client: &Client) -> anyhow::Result<flotilla_store::StateCounts> {
    Ok(client.queue(QUEUE).await?.counts)
}

/// Waits until a worker's poll waits on the server (its `flotilla_polls_waiting` gauge).
async fn wait_until_polling(url: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    for _ in 0..3000 {
        let metrics = http
            .get(format!("{}/metrics", url.trim_end_matches('/')))
            .send()
            .await?
            .text()
            .await?;
        let waiting = metrics
            .lines()
            .find_map(|l| l.strip_prefix("flotilla_polls_waiting "))
            .and_then(|n| n.trim().parse::<f64>().ok());
        if waiting.is_some_and(|n| n >= 1.0) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!("the worker did not start polling")
}

async fn wait_for(
    client: &Client,
    done: impl Fn(&flotilla_store::StateCounts) -> bool,
    limit: Duration,
) -> anyhow::Result<()> {
    let start = Instant::now();
    while !done(&counts(client).await?) {
        if start.elapsed() > limit {
            bail!("gave up after {limit:?}: {:?}", counts(client).await?);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Enqueue→start latency at a steady rate, from the jobs' own timestamps: from `created_at`
/// (the enqueue's commit) to `attempted_at` (the claim that hands the job to the worker and
/// makes it running), both on the server's clock.
async fn latency(client: &Client, args: &E2eBenchArgs) -> anyhow::Result<()> {
    let total = (args.rate * args.latency_secs) as usize;
    let before = counts(client).await?.succeeded;
    let tick = Duration::from_secs_f64(1.0 / args.rate as f64);
    let start = tokio::time::Instant::now();
    let mut ids = Vec::with_capacity(total);
    for i in 0..total {
        tokio::time::sleep_until(start + tick * i as u32).await;
        ids.push(client.enqueue(&noop(QUEUE, i)).await?.id);
    }
    wait_for(
        client,
        |c| c.succeeded >= before + total as u64,
        Duration::from_secs(60),
    )
    .await?;
    let mut waits = Vec::with_capacity(total);
    for id in ids {
        let job = client.job(id).await?;
        let started = job
            .attempted_at
            .context("a finished job has a start time")?;
        waits.push((started - job.created_at).to_std().unwrap_or_default());
    }
    waits.sort();
    let at = |p: f64| waits[((waits.len() as f64 * p) as usize).min(waits.len() - 1)];
    println!(
        "  {:<LABEL_WIDTH$} p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({} jobs at {}/s)",
        "enqueue→start latency",
        ms(at(0.50)),
        ms(at(0.95)),
        ms(at(0.99)),
        ms(*waits.last().unwrap_or(&Duration::ZERO)),
        total,
        args.rate
    );
    Ok(())
}

/// kill -9 of the worker at about 30 %, then a new worker finishes the run.
async fn crash(client: &Client, url: &str, args: &E2eBenchArgs) -> anyhow::Result<()> {
    let before = counts(client).await?.succeeded;
    let jobs: Vec<NewJob> = (0..args.crash_jobs)
        .map(|i| NewJob::new(QUEUE, "sleep", json!({ "ms": 20, "i": i })))
        .collect();
    let mut ids = Vec::new();
    for chunk in jobs.chunks(1000) {
        ids.extend(
            client
                .enqueue_batch(&EnqueueBatchRequest {
                    jobs: chunk.to_vec(),
                })
                .await?
                .jobs
                .into_iter()
                .map(|j| j.id),
        );
    }
    let mut worker = start_worker(url, 10)?;
    let target = before + (args.crash_jobs as u64 * 3 / 10);
    wait_for(client, |c| c.succeeded >= target, Duration::from_secs(120)).await?;
    worker.0.kill()?; // SIGKILL
    let killed = Instant::now();
    let killed_at = chrono::Utc::now();
    let in_flight = counts(client).await?.running;
    let _next = start_worker(url, 10)?;
    wait_for(
        client,
        |c| c.running == 0 && c.available == 0 && c.scheduled == 0,
        Duration::from_secs(120),
    )
    .await?;
    let finished = killed.elapsed();
    let (mut lost, mut duplicated, mut last_retry) = (0, 0, None);
    for id in &ids {
        let job = client.job(*id).await?;
        if job.state != JobState::Succeeded {
            lost += 1;
        }
        if job.attempt > 1 {
            duplicated += 1;
            last_retry = last_retry.max(job.attempted_at);
        }
    }
    // "Leased twice" counts jobs with a second attempt: those the killed worker was running,
    // plus any a poll of its leased as it died (answered to no one, never run before).
    // From the kill to the restart of the last job that was in flight.
    let recovery = last_retry.map(|t| (t - killed_at).to_std().unwrap_or_default());
    println!(
        "  {:<LABEL_WIDTH$} lost {lost}, leased twice {duplicated} (running at the kill: {in_flight}), recovery {}, all done {:.1} s after the kill (lease {LEASE_SECS} s)",
        format!(
            "crash run: {} jobs, kill -9 of the worker at 30%",
            args.crash_jobs
        ),
        recovery.map_or("-".into(), |d| format!("{:.2} s", d.as_secs_f64())),
        finished.as_secs_f64()
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn report(what: &str, jobs: usize, took: Duration) {
    let secs = took.as_secs_f64();
    println!(
        "  {what:<LABEL_WIDTH$} {jobs:>7} jobs in {secs:>6.2} s = {:>8.0} jobs/s",
        jobs as f64 / secs
    );
}
