//! `flotilla demo`: drives the queue engine end to end on an embedded SQLite store and
//! narrates it. Replaced by the media pipeline demo once the server and workers land.

use std::path::PathBuf;
use std::time::Duration;

use flotilla_core::{Clock, CronSchedule, CronSpec, NewJob, QueueConfig, RetryPolicy, SystemClock};
use flotilla_store::*;
use flotilla_store_sqlite::{SqliteOptions, SqliteStore};
use serde_json::json;

pub(crate) async fn run(db: Option<PathBuf>) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let path = db.unwrap_or_else(|| tmp.path().join("flotilla.db"));
    println!("Opening the embedded store at {}", path.display());
    let store = SqliteStore::open(&path, SqliteOptions::default())?;
    let now = || SystemClock.now();

    let retry = RetryPolicy::Limited {
        max_attempts: 2,
        delay: Duration::from_millis(200),
    };
    store
        .queue_upsert(QueueConfig {
            retry,
            ..QueueConfig::new("default")
        })
        .await?;
    store
        .queue_upsert(QueueConfig {
            fair: true,
            ..QueueConfig::new("tenants")
        })
        .await?;

    let jobs = vec![
        NewJob::new("default", "email.send", json!({"to": "ana@example.com"})).priority(5),
        NewJob::new("default", "invoice.render", json!({"invoice": 42})).priority(0),
        NewJob::new("default", "report.build", json!({"fail": true})).priority(1),
        NewJob::new("default", "email.send", json!({"to": "ana@example.com"}))
            .unique_key("welcome:ana"),
        NewJob::new("default", "email.send", json!({"to": "ana@example.com"}))
            .unique_key("welcome:ana"),
    ];
    for (job, inserted) in jobs.iter().zip(
        store
            .job_insert_many(JobInsertManyParams {
                jobs: jobs.clone(),
                now: now(),
            })
            .await?,
    ) {
        let note = if inserted.duplicate {
            " (duplicate of a live job: not inserted)"
        } else {
            ""
        };
        println!(
            "enqueued {:<15} priority {} -> job {} {}{note}",
            job.kind, job.priority, inserted.id, inserted.state
        );
    }

    println!("\nA worker claims in priority order (0 first) and handles each job:");
    work(&store, "default").await?;
    println!(
        "\nreport.build failed once and waits to retry; after the retry delay it fails again and goes dead:"
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    work(&store, "default").await?;
    let replayed = store
        .dead_replay(DeadParams {
            queue: Some("default".into()),
            now: now(),
            ..Default::default()
        })
        .await?;
    println!("replayed {replayed} dead job(s) from the dead-letter state");

    println!(
        "\nFairness: 50 jobs of tenant 'big' then 3 of tenant 'small'; a claim of 6 takes turns:"
    );
    let mut batch: Vec<NewJob> = (0..50)
        .map(|i| NewJob::new("tenants", "thumb", json!({"i": i})).group_key("big"))
        .collect();
    batch.extend(
        (0..3).map(|i| NewJob::new("tenants", "thumb", json!({"i": i})).group_key("small")),
    );
    store
        .job_insert_many(JobInsertManyParams {
            jobs: batch,
            now: now(),
        })
        .await?;
    let claimed = store
        .job_claim(JobClaimParams {
            queues: vec!["tenants".into()],
            limit: 6,
            worker_id: "demo".into(),
            now: now(),
        })
        .await?;
    let groups: Vec<&str> = claimed
        .iter()
        .filter_map(|j| j.group_key.as_deref())
        .collect();
    println!("claimed groups in order: {}", groups.join(", "));

    let spec = CronSpec::parse("* * * * * *")?;
    store
        .cron_upsert(
            CronSchedule::new("heartbeat", spec, "default", "cron.ping", json!({})),
            now(),
        )
        .await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let fired = store
        .cron_fire_due(MaintenanceParams {
            now: now(),
            limit: 100,
        })
        .await?;
    println!(
        "\ncron 'heartbeat' (every second) fired {} job(s)",
        fired.fired.len()
    );

    println!("\nQueue statistics:");
    for s in store
        .queue_stats(QueueStatsParams {
            queue: None,
            now: now(),
        })
        .await?
    {
        let c = s.counts;
        println!(
            "  {:<8} scheduled {} available {} running {} succeeded {} dead {} | enqueued {} failed {} retried {}",
            s.queue,
            c.scheduled,
            c.available,
            c.running,
            c.succeeded,
            c.dead,
            s.totals.enqueued,
            s.totals.failed,
            s.totals.retried
        );
    }
    Ok(())
}

/// Claims everything available in `queue` and runs it: jobs whose payload says `fail` fail.
async fn work(store: &SqliteStore, queue: &str) -> anyhow::Result<()> {
    let now = SystemClock.now();
    let jobs = store
        .job_claim(JobClaimParams {
            queues: vec![queue.into()],
            limit: 100,
            worker_id: "demo-worker".into(),
            now,
        })
        .await?;
    for job in jobs {
        let token = job
            .lease
            .as_ref()
            .map(|l| l.token)
            .ok_or_else(|| anyhow::anyhow!("claimed job without lease"))?;
        if job.payload.get("fail").is_some() {
            let failure = Failure {
                job_id: job.id,
                token,
                error: "report source unavailable".into(),
                retryable: true,
            };
            let state = store
                .job_fail_many(JobFailManyParams {
                    failures: vec![failure],
                    now,
                })
                .await?
                .remove(0)?;
            println!(
                "  job {} {:<15} attempt {} failed -> {state}",
                job.id, job.kind, job.attempt
            );
        } else {
            let done = Completion {
                job_id: job.id,
                token,
                result: Some(json!({"ok": true})),
            };
            store
                .job_complete_many(JobCompleteManyParams {
                    completions: vec![done],
                    now,
                })
                .await?
                .remove(0)?;
            println!(
                "  job {} {:<15} attempt {} succeeded",
                job.id, job.kind, job.attempt
            );
        }
    }
    Ok(())
}
