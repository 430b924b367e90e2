//! Crash safety: a child process enqueues (singly, concurrently, and in batches) while it
//! claims and completes, and prints each acknowledged id; the parent kills it with SIGKILL
//! in full flight. On reopen every acknowledged job must be there and the file must pass
//! `PRAGMA integrity_check`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;

use flotilla_core::{Clock, JobId, NewJob, QueueConfig, SystemClock};
use flotilla_store::{
    Completion, JobClaimParams, JobCompleteManyParams, JobInsertManyParams, Store,
};
use flotilla_store_sqlite::{SqliteOptions, SqliteStore};
use serde_json::json;

const CHILD_DB: &str = "FLOTILLA_CRASH_CHILD_DB";
const ACKS_BEFORE_KILL: usize = 3000;

/// The child's body; a no-op unless started by `acknowledged_enqueues_survive_sigkill`.
#[test]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD_DB) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let store = Arc::new(SqliteStore::open(&path, SqliteOptions::default()).unwrap());
        store.queue_upsert(QueueConfig::new("crash")).await.unwrap();
        let mut tasks = Vec::new();
        for task in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0.. {
                    let jobs: Vec<NewJob> = (0..if task == 0 { 50 } else { 1 })
                        .map(|j| {
                            NewJob::new("crash", "noop", json!({ "task": task, "i": i, "j": j }))
                        })
                        .collect();
                    let params = JobInsertManyParams {
                        jobs,
                        now: SystemClock.now(),
                    };
                    let ids: Vec<String> = store
                        .job_insert_many(params)
                        .await
                        .unwrap()
                        .iter()
                        .map(|j| j.id.to_string())
                        .collect();
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ack {}", ids.join(" ")).unwrap();
                    out.flush().unwrap();
                }
            }));
        }
        // A worker, so claims and completions are in flight too when the kill lands.
        loop {
            let claimed = store
                .job_claim(JobClaimParams {
                    queues: vec!["crash".into()],
                    limit: 20,
                    worker_id: "w".into(),
                    now: SystemClock.now(),
                })
                .await
                .unwrap();
            let completions = claimed
                .iter()
                .map(|j| Completion {
                    job_id: j.id,
                    token: j.lease.as_ref().unwrap().token,
                    result: None,
                })
                .collect();
            store
                .job_complete_many(JobCompleteManyParams {
                    completions,
                    now: SystemClock.now(),
                })
                .await
                .unwrap();
        }
    });
}

#[test]
fn acknowledged_enqueues_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DB, &path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut acked: Vec<JobId> = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while acked.len() < ACKS_BEFORE_KILL {
        let line = lines
            .next()
            .expect("child ended before enough acknowledgements")
            .unwrap();
        if let Some(ids) = line.strip_prefix("ack ") {
            acked.extend(ids.split(' ').map(|id| JobId(id.parse().unwrap())));
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Acknowledgements printed before the kill but not yet read still count.
    for line in lines.map_while(Result::ok) {
        if let Some(ids) = line.strip_prefix("ack ") {
            acked.extend(ids.split(' ').map(|id| JobId(id.parse().unwrap())));
        }
    }

    let conn = rusqlite::Connection::open(&path).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    drop(conn);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        let mut missing = Vec::new();
        for id in &acked {
            if store.job_get(*id).await.is_err() {
                missing.push(*id);
            }
        }
        assert!(
            missing.is_empty(),
            "{} of {} acknowledged jobs lost: {:?}",
            missing.len(),
            acked.len(),
            &missing[..missing.len().min(10)]
        );
        let stats = store
            .queue_stats(flotilla_store::QueueStatsParams {
                queue: Some("crash".into()),
                now: SystemClock.now(),
            })
            .await
            .unwrap();
        let counts = stats[0].counts;
        assert!(counts.available + counts.running + counts.succeeded >= acked.len() as u64);
    });
}
