//! Copying between stores (`flotilla store copy`): imported jobs keep every field, a
//! second import adds nothing, new ids and lease tokens stay above the copied ones, a
//! copied lease keeps working, and throughput counters and cron progress come along.

use flotilla_core::{Clock, CronSchedule, CronSpec, ErrorCode, JobId, JobState, LeaseToken};
use flotilla_store::{CronEntry, Throughput};
use serde_json::json;

use crate::Harness;
use crate::support::*;

/// Jobs copied from elsewhere: as they were, by id; existing ids skipped; counts follow.
pub async fn import_keeps_jobs_exactly_and_skips_existing(h: Harness) {
    queue_retrying(&h, "q", limited(5, secs(60))).await;
    insert_n(&h, "q", 3).await;
    let jobs = claim(&h, &["q"], 2).await;
    fail(&h, &jobs[0], "boom", true).await;
    let mut copied = Vec::new();
    for (i, job) in jobs_in(&h, "q").await.into_iter().enumerate() {
        let mut job = job;
        job.id = JobId(1000 + i as i64);
        job.tags = vec!["copied".into()];
        job.result = Some(json!({"n": i}));
        if let Some(lease) = job.lease.as_mut() {
            lease.token = LeaseToken(5000);
        }
        copied.push(job);
    }
    assert_eq!(copied.len(), 3);
    let imported = h.store.job_import(copied.clone()).await.unwrap();
    assert_eq!(imported, 3);
    for job in &copied {
        assert_eq!(&get(&h, job.id).await, job, "copied exactly");
    }
    assert_eq!(h.store.job_import(copied.clone()).await.unwrap(), 0);
    let counts = stats(&h, "q").await.counts;
    assert_eq!(
        (counts.scheduled, counts.available, counts.running),
        (2, 2, 2)
    );

    // New ids and tokens are above the copied ones, and the copied lease still works.
    let next = insert(&h, job("q", "k")).await;
    assert!(next.0 > 1002, "{next}");
    let running = copied
        .iter()
        .find(|j| j.state == JobState::Running)
        .expect("a running job was copied");
    complete(&h, running).await;
    let claimed = claim(&h, &["q"], 10).await;
    assert!(!claimed.is_empty());
    assert!(claimed.iter().all(|j| token(j).0 > 5000));
}

/// A job whose queue does not exist is refused.
pub async fn import_needs_the_queue(h: Harness) {
    queue(&h, "q").await;
    insert(&h, job("q", "k")).await;
    let mut job = jobs_in(&h, "q").await.remove(0);
    job.id = JobId(77);
    job.queue = "elsewhere".into();
    let err = h.store.job_import(vec![job]).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::QueueNotFound);
}

/// Throughput counters only rise to the imported values; a schedule keeps its last tick.
pub async fn import_totals_and_cron(h: Harness) {
    queue(&h, "q").await;
    let totals = Throughput {
        enqueued: 10,
        succeeded: 7,
        failed: 3,
        retried: 2,
        dead: 1,
        cancelled: 0,
        lease_expired: 1,
    };
    h.store.queue_import_totals("q", totals).await.unwrap();
    let smaller = Throughput {
        enqueued: 1,
        ..totals
    };
    h.store.queue_import_totals("q", smaller).await.unwrap();
    assert_eq!(stats(&h, "q").await.totals, totals);
    let err = h
        .store
        .queue_import_totals("nope", totals)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::QueueNotFound);

    let spec = CronSpec::parse("*/5 * * * *").expect("a valid cron expression");
    let schedule = CronSchedule::new("tidy", spec, "q", "tidy", json!({}));
    let entry = CronEntry {
        schedule,
        last_fired_at: minus(h.clock.now(), secs(3600)),
    };
    h.store.cron_import(entry.clone()).await.unwrap();
    h.store.cron_import(entry.clone()).await.unwrap();
    assert_eq!(h.store.cron_list().await.unwrap(), vec![entry]);
}
