//! `flotilla store copy`: every job in every state, the queues, cron progress and counters
//! arrive exactly; a second run copies nothing and still verifies.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use flotilla_core::{
    Clock, CronSchedule, CronSpec, JobState, NewJob, QueueConfig, RetryPolicy, SystemClock,
};
use flotilla_store::{
    Completion, Failure, JobClaimParams, JobCompleteManyParams, JobFailManyParams, JobListParams,
    Store,
};
use flotilla_store_sqlite::{SqliteOptions, SqliteStore};
use serde_json::json;

fn open(path: &Path) -> Arc<dyn Store> {
    Arc::new(SqliteStore::open(path, SqliteOptions::default()).expect("open store"))
}

/// Jobs in every state, a paused queue and a cron schedule.
async fn populate(store: &dyn Store) {
    let now = SystemClock.now();
    let mut q = QueueConfig::new("media");
    q.retry = RetryPolicy::None;
    store.queue_upsert(q).await.unwrap();
    let mut paused = QueueConfig::new("reports");
    paused.paused = true;
    store.queue_upsert(paused).await.unwrap();
    let jobs = (0..40)
        .map(|i| NewJob::new("media", "thumb", json!({ "i": i })).tag("copied"))
        .chain([
            NewJob::new("reports", "daily", json!({})).delay(std::time::Duration::from_secs(3600))
        ])
        .collect();
    let inserted = store
        .job_insert_many(flotilla_store::JobInsertManyParams { jobs, now })
        .await
        .unwrap();
    let claimed = store
        .job_claim(JobClaimParams {
            queues: vec!["media".into()],
            limit: 12,
            worker_id: "w1".into(),
            now,
        })
        .await
        .unwrap();
    let lease = |j: &flotilla_core::Job| j.lease.as_ref().unwrap().token;
    let completions = claimed[..5]
        .iter()
        .map(|j| Completion {
            job_id: j.id,
            token: lease(j),
            result: Some(json!({"ok": j.id.0})),
        })
        .collect();
    store
        .job_complete_many(JobCompleteManyParams { completions, now })
        .await
        .unwrap();
    let failures = claimed[5..8]
        .iter()
        .map(|j| Failure {
            job_id: j.id,
            token: lease(j),
            error: "corrupt input".into(),
            retryable: false,
        })
        .collect();
    store
        .job_fail_many(JobFailManyParams { failures, now })
        .await
        .unwrap();
    store
        .job_cancel(flotilla_store::JobCancelParams {
            job_id: claimed[11].id,
            now,
        })
        .await
        .unwrap();
    store
        .job_cancel(flotilla_store::JobCancelParams {
            job_id: inserted[39].id,
            now,
        })
        .await
        .unwrap();
    let spec = CronSpec::parse("0 * * * *").unwrap();
    let schedule = CronSchedule::new("hourly", spec, "reports", "daily", json!({}));
    store.cron_upsert(schedule, now).await.unwrap();
}

async fn all_jobs(store: &dyn Store) -> Vec<flotilla_core::Job> {
    let mut jobs = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .job_list(JobListParams {
                cursor,
                limit: 7,
                ..JobListParams::default()
            })
            .await
            .unwrap();
        jobs.extend(page.jobs);
        match page.next {
            Some(next) => cursor = Some(next),
            None => return jobs,
        }
    }
}

fn copy(from: &Path, to: &Path) -> String {
    copy_to(from, &format!("sqlite:{}", to.display()))
}

fn copy_to(from: &Path, to: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(["store", "copy", "--from"])
        .arg(format!("sqlite:{}", from.display()))
        .arg("--to")
        .arg(to)
        .output()
        .expect("run flotilla store copy");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test]
async fn sqlite_to_sqlite_copies_everything_and_reruns_safely() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src.db"), dir.path().join("dst.db"));
    let source = open(&src);
    populate(source.as_ref()).await;
    let (jobs, queues, cron) = (
        all_jobs(source.as_ref()).await,
        source.queue_list().await.unwrap(),
        source.cron_list().await.unwrap(),
    );
    let now = SystemClock.now();
    let stats = source
        .queue_stats(flotilla_store::QueueStatsParams { queue: None, now })
        .await
        .unwrap();
    drop(source);

    let first = copy(&src, &dst);
    assert!(
        first.contains("copied 2 queues, 1 cron schedules, 41 jobs (0 were there already)"),
        "{first}"
    );
    let again = copy(&src, &dst);
    assert!(again.contains("0 jobs (41 were there already)"), "{again}");

    let target = open(&dst);
    assert_eq!(all_jobs(target.as_ref()).await, jobs);
    assert_eq!(target.queue_list().await.unwrap(), queues);
    assert_eq!(target.cron_list().await.unwrap(), cron);
    let copied = target
        .queue_stats(flotilla_store::QueueStatsParams { queue: None, now })
        .await
        .unwrap();
    assert_eq!(copied, stats);
    let states: Vec<JobState> = jobs.iter().map(|j| j.state).collect();
    for state in [
        JobState::Scheduled,
        JobState::Available,
        JobState::Running,
        JobState::Succeeded,
        JobState::Cancelled,
        JobState::Dead,
    ] {
        assert!(states.contains(&state), "no {state} job in the copy test");
    }
}

/// The move the issue is about: the embedded store into PostgreSQL, then a server and a
/// worker on the copy carry on with the work (new ids follow the old ones).
#[tokio::test]
async fn sqlite_to_postgres_copies_everything() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.db");
    let source = open(&src);
    populate(source.as_ref()).await;
    let jobs = all_jobs(source.as_ref()).await;
    let now = SystemClock.now();
    let stats = source
        .queue_stats(flotilla_store::QueueStatsParams { queue: None, now })
        .await
        .unwrap();
    drop(source);

    let (url, _schema) = crate::support::pg_schema_url("copy").await;
    let first = copy_to(&src, &url);
    assert!(first.contains("41 jobs (0 were there already)"), "{first}");
    let again = copy_to(&src, &url);
    assert!(again.contains("0 jobs (41 were there already)"), "{again}");

    let (base, schema) = url.split_once("?schema=").unwrap();
    let options = flotilla_store_postgres::PgOptions {
        schema: Some(schema.to_owned()),
        ..Default::default()
    };
    let target = flotilla_store_postgres::PgStore::connect(base, options)
        .await
        .unwrap();
    assert_eq!(all_jobs(&target).await, jobs);
    let copied = target
        .queue_stats(flotilla_store::QueueStatsParams { queue: None, now })
        .await
        .unwrap();
    assert_eq!(copied, stats);
    let next = target
        .job_insert(NewJob::new("media", "thumb", json!({})), SystemClock.now())
        .await
        .unwrap();
    assert!(jobs.iter().all(|j| j.id < next.id));
    drop(target);

    // A server and a worker on the copy finish the waiting jobs.
    let available = jobs
        .iter()
        .filter(|j| j.queue == "media" && j.state == JobState::Available)
        .count() as u64;
    let server = crate::support::ServerProcess::start_store(&url, crate::support::free_port(), &[]);
    let _worker =
        crate::support::WorkerProcess::start(&server.url, &["--queues", "media", "--exec", "cat"]);
    let before = stats.iter().find(|s| s.queue == "media").unwrap().counts;
    let client = flotilla_client::Client::new(&server.url, None).unwrap();
    crate::support::eventually("the copied jobs to run on PostgreSQL", || async {
        let counts = client.queue("media").await.unwrap().counts;
        counts.succeeded == before.succeeded + available + 1
    })
    .await;
}
