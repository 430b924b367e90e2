//! `flotilla bench store`: the store's throughput, in-process, with the durable settings
//! users get by default, on SQLite (the default) or PostgreSQL (`--store postgres://…`:
//! each figure in a fresh schema `flotilla_bench_*`, dropped afterwards). Prints figures;
//! asserts nothing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use flotilla_core::{Clock, NewJob, QueueConfig, SystemClock};
use flotilla_store::{
    Completion, JobClaimParams, JobCompleteManyParams, JobInsertManyParams, Store,
};
use flotilla_store_sqlite::{Durability, SqliteOptions, SqliteStore};
use serde_json::json;

/// Options of `flotilla bench store`.
#[derive(clap::Args, Debug)]
pub(crate) struct StoreBenchArgs {
    /// Directory for the database files (default: a temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Jobs enqueued in batches of 1,000.
    #[arg(long, default_value_t = 300_000)]
    batch_jobs: usize,
    /// Jobs enqueued one per call by the concurrent producers.
    #[arg(long, default_value_t = 50_000)]
    single_jobs: usize,
    /// Concurrent producers of single enqueues.
    #[arg(long, default_value_t = 16)]
    producers: usize,
    /// Jobs drained by claim+complete in batches of 100.
    #[arg(long, default_value_t = 200_000)]
    drain_jobs: usize,
    /// Concurrent claimers for the drain (the figure is also printed for one).
    #[arg(long, default_value_t = 4)]
    claimers: usize,
    /// The deep queue depth for the depth comparison.
    #[arg(long, default_value_t = 1_000_000)]
    deep: usize,
    /// Jobs claimed+completed at each depth.
    #[arg(long, default_value_t = 30_000)]
    depth_jobs: usize,
    /// `full` (the default: enqueues fsynced, worker traffic within 50 ms), `strict`
    /// (every commit fsynced) or `relaxed`.
    #[arg(long, default_value = "full")]
    durability: Durability,
    /// A PostgreSQL URL to measure instead of SQLite (schemas `flotilla_bench_*` in it are
    /// dropped and created).
    #[arg(long)]
    store: Option<String>,
}

const QUEUE: &str = "bench";

pub(crate) async fn store(args: StoreBenchArgs) -> anyhow::Result<()> {
    let tmp;
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let durability = args.durability;
    let target = match &args.store {
        Some(url) => Target::Postgres(url.clone()),
        None => Target::Sqlite(dir.clone()),
    };
    println!(
        "flotilla bench store: {}, durability {durability:?}, {} cores",
        target.describe(),
        cores()
    );

    let store = target.open("enqueue", durability).await?;
    let secs = timed(enqueue_singles(&store, args.single_jobs / 5, 1)).await?;
    report(
        "enqueue, single, 1 sequential producer",
        args.single_jobs / 5,
        secs,
    );
    let secs = timed(enqueue_batches(&store, args.batch_jobs, 1000)).await?;
    report("enqueue, batches of 1,000", args.batch_jobs, secs);
    let secs = timed(enqueue_singles(&store, args.single_jobs, args.producers)).await?;
    report(
        &format!("enqueue, single, {} concurrent producers", args.producers),
        args.single_jobs,
        secs,
    );
    drop(store);

    for claimers in [1, args.claimers] {
        let store = target.open(&format!("drain{claimers}"), durability).await?;
        enqueue_batches(&store, args.drain_jobs, 1000).await?;
        let secs = timed(drain(&store, claimers, 100)).await?;
        report(
            &format!("claim+complete, batches of 100, {claimers} claimer(s)"),
            args.drain_jobs,
            secs,
        );
    }

    let mut rates = Vec::new();
    for depth in [1_000, args.deep] {
        let store = target.open(&format!("depth{depth}"), durability).await?;
        enqueue_batches(&store, depth, 1000).await?;
        target.settle(&format!("depth{depth}")).await?;
        let secs = at_depth(&store, args.depth_jobs, 100).await?;
        rates.push(args.depth_jobs as f64 / secs);
        report(
            &format!("claim+complete, batches of 100, at {depth} queued"),
            args.depth_jobs,
            secs,
        );
    }
    println!(
        "  depth ratio ({} vs 1,000 queued): {:.2}",
        args.deep,
        rates[1] / rates[0]
    );
    println!(
        "  peak RSS of this process: {} MiB",
        peak_rss_kib().unwrap_or(0) / 1024
    );
    target.clean_up().await
}

/// Where the figures are measured.
enum Target {
    /// SQLite files in this directory.
    Sqlite(PathBuf),
    /// A PostgreSQL database, one schema per figure.
    Postgres(String),
}

impl Target {
    fn describe(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "SQLite (WAL)",
            Self::Postgres(_) => "PostgreSQL",
        }
    }

    /// A fresh, empty store called `name`, with the bench queue.
    async fn open(&self, name: &str, durability: Durability) -> anyhow::Result<Arc<dyn Store>> {
        let store: Arc<dyn Store> = match self {
            Self::Sqlite(dir) => {
                let path = dir.join(format!("{name}.db"));
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
                let options = SqliteOptions {
                    durability,
                    ..SqliteOptions::default()
                };
                let store = SqliteStore::open(&path, options)
                    .with_context(|| format!("opening {}", path.display()))?;
                Arc::new(store)
            }
            Self::Postgres(url) => {
                let url = fresh_pg_url(url, name).await?;
                let max = flotilla_core::DEFAULT_MAX_PAYLOAD_BYTES;
                crate::server::open_store(&url, max, durability).await?
            }
        };
        store.queue_upsert(QueueConfig::new(QUEUE)).await?;
        Ok(store)
    }

    /// Lets the database catch up after a bulk load, as its background work would in a
    /// running system: on PostgreSQL, `VACUUM ANALYZE` (the first reads of freshly written
    /// rows would otherwise also pay for setting their visibility hints).
    async fn settle(&self, name: &str) -> anyhow::Result<()> {
        if let Self::Postgres(url) = self {
            let schema = bench_schema(name);
            pg_execute(url, &format!("VACUUM ANALYZE {schema}.jobs")).await?;
        }
        Ok(())
    }

    async fn clean_up(&self) -> anyhow::Result<()> {
        if let Self::Postgres(url) = self {
            drop_bench_schemas(url).await?;
        }
        Ok(())
    }
}

/// The schema a benchmark named `name` uses.
pub(crate) fn bench_schema(name: &str) -> String {
    format!("flotilla_bench_{name}")
}

/// The store URL of the empty schema of benchmark `name` (dropped first if a run left it;
/// whoever opens the URL creates it).
pub(crate) async fn fresh_pg_url(url: &str, name: &str) -> anyhow::Result<String> {
    let schema = bench_schema(name);
    pg_execute(url, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await?;
    let separator = if url.contains('?') { '&' } else { '?' };
    Ok(format!("{url}{separator}schema={schema}"))
}

/// Drops every `flotilla_bench_*` schema of the database at `url`.
pub(crate) async fn drop_bench_schemas(url: &str) -> anyhow::Result<()> {
    pg_execute(
        url,
        "DO $$ DECLARE s text; BEGIN
           FOR s IN SELECT nspname FROM pg_namespace WHERE nspname LIKE 'flotilla\\_bench\\_%' LOOP
             EXECUTE format('DROP SCHEMA %I CASCADE', s);
           END LOOP;
         END $$",
    )
    .await
}

async fn pg_execute(url: &str, sql: &str) -> anyhow::Result<()> {
    let (base, _) = url.split_once('?').unwrap_or((url, ""));
    let (client, connection) = tokio_postgres::connect(base, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("connecting to {}", crate::server::redact(base)))?;
    let connection = tokio::spawn(connection);
    client
        .batch_execute("SET client_min_messages = warning")
        .await?;
    client.batch_execute(sql).await?;
    drop(client);
    let _ = connection.await;
    Ok(())
}

fn job(i: usize) -> NewJob {
    NewJob::new(QUEUE, "noop", json!({ "n": i }))
}

async fn enqueue_batches(store: &Arc<dyn Store>, total: usize, batch: usize) -> anyhow::Result<()> {
    for start in (0..total).step_by(batch) {
        let jobs = (start..total.min(start + batch)).map(job).collect();
        store
            .job_insert_many(JobInsertManyParams {
                jobs,
                now: SystemClock.now(),
            })
            .await?;
    }
    Ok(())
}

async fn enqueue_singles(
    store: &Arc<dyn Store>,
    total: usize,
    producers: usize,
) -> anyhow::Result<()> {
    let mut tasks = Vec::new();
    for p in 0..producers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in (p..total).step_by(producers) {
                store.job_insert(job(i), SystemClock.now()).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// Claims and completes until the queue is empty, with `claimers` concurrent loops.
async fn drain(store: &Arc<dyn Store>, claimers: usize, batch: u32) -> anyhow::Result<()> {
    let mut tasks = Vec::new();
    for c in 0..claimers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            while claim_complete(&store, batch, &format!("bench-{c}")).await? > 0 {}
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

async fn claim_complete(store: &Arc<dyn Store>, batch: u32, worker: &str) -> anyhow::Result<usize> {
    let params = JobClaimParams {
        queues: vec![QUEUE.into()],
        limit: batch,
        worker_id: worker.into(),
        now: SystemClock.now(),
    };
    let jobs = store.job_claim(params).await?;
    let completions: Vec<Completion> = jobs
        .iter()
        .filter_map(|j| {
            Some(Completion {
                job_id: j.id,
                token: j.lease.as_ref()?.token,
                result: None,
            })
        })
        .collect();
    let n = completions.len();
    if n > 0 {
        store
            .job_complete_many(JobCompleteManyParams {
                completions,
                now: SystemClock.now(),
            })
            .await?;
    }
    Ok(n)
}

/// Claim+complete time for `total` jobs while the depth stays where it is: each timed
/// batch is replaced by an untimed enqueue of the same size.
async fn at_depth(store: &Arc<dyn Store>, total: usize, batch: u32) -> anyhow::Result<f64> {
    let mut spent = Duration::ZERO;
    let mut done = 0;
    while done < total {
        enqueue_batches(store, batch as usize, batch as usize).await?;
        let start = Instant::now();
        done += claim_complete(store, batch, "bench").await?;
        spent += start.elapsed();
    }
    Ok(spent.as_secs_f64())
}

async fn timed(f: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<f64> {
    let start = Instant::now();
    f.await?;
    Ok(start.elapsed().as_secs_f64())
}

fn report(what: &str, jobs: usize, secs: f64) {
    println!(
        "  {what:<52} {jobs:>9} jobs in {secs:>6.2} s = {:>9.0} jobs/s",
        jobs as f64 / secs
    );
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The process's peak resident set (VmHWM), in KiB.
pub(crate) fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
