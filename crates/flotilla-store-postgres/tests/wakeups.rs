//! Wakeups across servers (`LISTEN`/`NOTIFY`): two stores on one schema, as two servers.
//!
//! PostgreSQL delivers notifications in commit order, so a test first *settles* a receiver
//! (enqueues into the queue `marker` and waits for its wakeup: everything committed
//! before has then arrived), acts, and expects the very next wakeup to name the queue. A
//! statement that must not notify is checked the same way: the next wakeup after it is the
//! marker's. No sleeps: every wait is a `timeout`.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{SchemaGuard, admin_client, fresh_schema, options, url};
use flotilla_core::{Clock, JobState, QueueConfig};
use flotilla_store::{DeadParams, JobReleaseParams, JobRetryParams, Store};
use flotilla_store_postgres::{PgOptions, PgStore};
use flotilla_store_tests::Harness;
use flotilla_store_tests::support::*;
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::RecvError;

/// How long a wakeup may take.
const WITHIN: Duration = Duration::from_secs(1);

/// The next wakeup, within [`WITHIN`].
async fn next(rx: &mut Receiver<String>) -> String {
    next_within(rx, WITHIN).await
}

async fn next_within(rx: &mut Receiver<String>, within: Duration) -> String {
    let wait = async {
        loop {
            match rx.recv().await {
                Ok(queue) => return queue,
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => panic!("the wakeup channel closed"),
            }
        }
    };
    tokio::time::timeout(within, wait)
        .await
        .expect("a wakeup within the time allowed")
}

/// Enqueues into `marker` through `store` and waits for that wakeup on `rx`: every
/// earlier wakeup has been received (and is discarded).
async fn settle(store: &dyn Store, h: &Harness, rx: &mut Receiver<String>) {
    enqueue_via(store, h, "marker").await;
    while next(rx).await != "marker" {}
}

async fn enqueue_via(store: &dyn Store, h: &Harness, queue: &str) {
    store
        .job_insert_many(flotilla_store::JobInsertManyParams {
            jobs: vec![job(queue, "k")],
            now: h.clock.now(),
        })
        .await
        .expect("insert");
}

/// The next wakeup is the marker's: nothing since the last settle announced anything.
async fn nothing_announced(h: &Harness, rx: &mut Receiver<String>) {
    enqueue_via(&*h.store, h, "marker").await;
    assert_eq!(next(rx).await, "marker", "an unexpected wakeup");
}

/// A harness with queues `q` and `marker`, and a settled receiver of the second store.
async fn setup(config: QueueConfig) -> (Harness, Receiver<String>) {
    let h = common::harness().await;
    queue(&h, "marker").await;
    queue_with(&h, config).await;
    let mut rx = h.other.wakeups().expect("postgres announces wakeups");
    settle(&*h.store, &h, &mut rx).await;
    (h, rx)
}

fn schema_of(h: &Harness) -> String {
    h.guard
        .downcast_ref::<SchemaGuard>()
        .expect("a schema guard")
        .schema
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enqueue_wakes_the_other_store_but_not_another_schema() {
    let (h, mut rx) = setup(QueueConfig::new("q")).await;
    let elsewhere = fresh_schema();
    let _guard = SchemaGuard {
        schema: elsewhere.clone(),
    };
    let third = PgStore::connect(&url(), options(&elsewhere, true))
        .await
        .expect("a store in another schema");
    third
        .queue_upsert(QueueConfig::new("marker"))
        .await
        .expect("queue");
    let mut rx3 = third.wakeups().expect("wakeups");

    insert(&h, job("q", "k")).await;
    assert_eq!(next(&mut rx).await, "q");
    // The other schema's next wakeup is its own marker: it never heard of `q`.
    enqueue_via(&third, &h, "marker").await;
    assert_eq!(next(&mut rx3).await, "marker");

    // A job scheduled for later is not claimable yet: no wakeup.
    insert(&h, job("q", "k").delay(secs(60))).await;
    nothing_announced(&h, &mut rx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_wakes() {
    let (h, mut rx) = setup(QueueConfig::new("q")).await;
    insert(&h, job("q", "k").delay(secs(60))).await;
    settle(&*h.store, &h, &mut rx).await;
    h.clock.advance(secs(61));
    let report = h
        .store
        .job_promote_due(maintenance(&h))
        .await
        .expect("promote");
    assert_eq!(report.promoted, 1);
    assert_eq!(next(&mut rx).await, "q");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_without_delay_wakes_and_one_with_delay_does_not() {
    let (h, mut rx) = setup(QueueConfig {
        retry: limited(5, Duration::ZERO),
        ..QueueConfig::new("q")
    })
    .await;
    insert(&h, job("q", "k")).await;
    insert(&h, job("q", "k").retry(limited(5, secs(60)))).await;
    let jobs = claim(&h, &["q"], 2).await;
    settle(&*h.store, &h, &mut rx).await;
    let (now, later): (Vec<_>, Vec<_>) = jobs.iter().partition(|j| j.retry.is_none());
    assert_eq!(fail(&h, later[0], "boom", true).await, JobState::Scheduled);
    nothing_announced(&h, &mut rx).await;
    assert_eq!(fail(&h, now[0], "boom", true).await, JobState::Available);
    assert_eq!(next(&mut rx).await, "q");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_wakes() {
    let (h, mut rx) = setup(QueueConfig::new("q")).await;
    insert(&h, job("q", "k")).await;
    let held = claim_one(&h, "q").await;
    settle(&*h.store, &h, &mut rx).await;
    let results = h
        .store
        .job_release(JobReleaseParams {
            leases: vec![(held.id, token(&held))],
            now: h.clock.now(),
        })
        .await
        .expect("release");
    assert_eq!(results[0].as_ref().ok(), Some(&JobState::Available));
    assert_eq!(next(&mut rx).await, "q");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_wakes_and_a_pause_does_not() {
    let (h, mut rx) = setup(QueueConfig::new("q")).await;
    h.store.queue_set_paused("q", true).await.expect("pause");
    insert(&h, job("q", "k")).await;
    settle(&*h.store, &h, &mut rx).await;
    h.store.queue_set_paused("q", true).await.expect("pause");
    nothing_announced(&h, &mut rx).await;
    h.store.queue_set_paused("q", false).await.expect("resume");
    assert_eq!(next(&mut rx).await, "q");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_and_run_again_wake() {
    let (h, mut rx) = setup(QueueConfig {
        retry: limited(1, Duration::ZERO),
        ..QueueConfig::new("q")
    })
    .await;
    insert_n(&h, "q", 2).await;
    for j in claim(&h, &["q"], 2).await {
        assert_eq!(fail(&h, &j, "boom", true).await, JobState::Dead);
    }
    let dead = jobs_in(&h, "q").await;
    settle(&*h.store, &h, &mut rx).await;
    h.store
        .job_retry(JobRetryParams {
            job_id: dead[0].id,
            now: h.clock.now(),
        })
        .await
        .expect("run again");
    assert_eq!(next(&mut rx).await, "q");
    let replayed = h
        .store
        .dead_replay(DeadParams {
            queue: Some("q".into()),
            now: h.clock.now(),
            ..DeadParams::default()
        })
        .await
        .expect("replay");
    assert_eq!(replayed, 1);
    assert_eq!(next(&mut rx).await, "q");
}

/// Changing an existing queue, a claim's inline promotion, a reaped lease retried at once,
/// a cron tick and an import each announce their queue; creating a queue does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_claims_reaps_cron_and_imports_wake() {
    let config = QueueConfig {
        retry: limited(5, Duration::ZERO),
        ..QueueConfig::new("q")
    };
    let (h, mut rx) = setup(config.clone()).await;
    h.store.queue_upsert(config).await.expect("change q");
    assert_eq!(next(&mut rx).await, "q");
    queue(&h, "new").await;
    nothing_announced(&h, &mut rx).await;

    insert_n(&h, "q", 2).await;
    insert(&h, job("q", "later").delay(secs(60))).await;
    assert_eq!(claim(&h, &["q"], 2).await.len(), 2);
    settle(&*h.store, &h, &mut rx).await;
    h.clock.advance(secs(61));
    assert_eq!(claim(&h, &["q"], 1).await.len(), 1);
    assert_eq!(next(&mut rx).await, "q", "the claim promoted a job");

    settle(&*h.store, &h, &mut rx).await;
    h.clock.advance(secs(3600));
    let report = reap(&h).await;
    assert_eq!(report.retried, 3, "{report:?}");
    assert_eq!(next(&mut rx).await, "q");

    let spec = flotilla_core::CronSpec::parse("* * * * *").expect("spec");
    let schedule =
        flotilla_core::CronSchedule::new("tick", spec, "q", "tick", serde_json::json!({}));
    h.store
        .cron_upsert(schedule, h.clock.now())
        .await
        .expect("cron");
    settle(&*h.store, &h, &mut rx).await;
    h.clock.advance(secs(60));
    let fired = h.store.cron_fire_due(maintenance(&h)).await.expect("fire");
    assert_eq!(fired.fired.len(), 1);
    assert_eq!(next(&mut rx).await, "q");

    let mut copy = jobs_in(&h, "q")
        .await
        .into_iter()
        .find(|j| j.state == JobState::Available && j.unique_key.is_none())
        .expect("an available job");
    copy.id = flotilla_core::JobId(1_000_000);
    settle(&*h.store, &h, &mut rx).await;
    assert_eq!(h.store.job_import(vec![copy]).await.expect("import"), 1);
    assert_eq!(next(&mut rx).await, "q");
}

/// A finished job frees a slot only in a queue with a concurrency or group limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freed_slot_of_a_limited_queue_wakes() {
    let (h, mut rx) = setup(QueueConfig {
        concurrency: Some(1),
        ..QueueConfig::new("limited")
    })
    .await;
    queue(&h, "plain").await;
    queue_with(
        &h,
        QueueConfig {
            group_concurrency: Some(1),
            ..QueueConfig::new("groups")
        },
    )
    .await;
    for q in ["limited", "plain", "groups"] {
        insert_n(&h, q, 2).await;
    }
    let held: Vec<_> = claim(&h, &["limited", "plain", "groups"], 10).await;
    assert_eq!(
        held.len(),
        4,
        "one of `limited`, two of `plain`, one of `groups`"
    );
    settle(&*h.store, &h, &mut rx).await;
    for j in &held {
        complete(&h, j).await;
        if j.queue == "plain" {
            nothing_announced(&h, &mut rx).await;
        } else {
            assert_eq!(next(&mut rx).await, j.queue);
        }
    }
}

/// Two clones share one listener, and a store with wakeups off neither listens nor
/// announces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wakeups_can_be_turned_off() {
    let (h, mut rx) = setup(QueueConfig::new("q")).await;
    let quiet = PgStore::connect(
        &url(),
        PgOptions {
            wakeups: false,
            ..options(&schema_of(&h), false)
        },
    )
    .await
    .expect("connect");
    assert!(quiet.wakeups().is_none());
    enqueue_via(&quiet, &h, "q").await;
    nothing_announced(&h, &mut rx).await;
}

/// The listener backends of the stores on `schema`.
async fn listeners(admin: &tokio_postgres::Client, schema: &str) -> Vec<i32> {
    admin
        .query(
            "SELECT pid FROM pg_stat_activity WHERE query = $1",
            &[&format!("LISTEN \"flotilla_{schema}\"")],
        )
        .await
        .expect("pg_stat_activity")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// A listener whose connection is killed connects again, announces every queue (it may
/// have missed something), and goes on announcing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_listener_reconnects_and_wakes_every_queue() {
    let (h, mut rx) = setup(QueueConfig::new("q")).await;
    let admin = admin_client().await;
    let pids = listeners(&admin, &schema_of(&h)).await;
    assert_eq!(pids.len(), 2, "one listener per store");
    for pid in &pids {
        admin
            .execute("SELECT pg_terminate_backend($1)", &[pid])
            .await
            .expect("terminate");
    }
    let mut woken = HashSet::new();
    while woken.len() < 2 {
        woken.insert(next_within(&mut rx, Duration::from_secs(5)).await);
    }
    assert_eq!(woken, HashSet::from(["q".to_owned(), "marker".to_owned()]));
    settle(&*h.store, &h, &mut rx).await;
    insert(&h, job("q", "k")).await;
    assert_eq!(next(&mut rx).await, "q");
}

/// Dropping a store (every clone) closes its listening connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_store_stops_listening() {
    let schema = fresh_schema();
    let _guard = SchemaGuard {
        schema: schema.clone(),
    };
    let store = PgStore::connect(&url(), options(&schema, true))
        .await
        .expect("connect");
    let clone = store.clone();
    let admin = admin_client().await;
    assert_eq!(listeners(&admin, &schema).await.len(), 1);
    drop(store);
    assert_eq!(
        listeners(&admin, &schema).await.len(),
        1,
        "the clone listens"
    );
    drop(clone);
    tokio::time::timeout(Duration::from_secs(5), async {
        while !listeners(&admin, &schema).await.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the listening connection closes");
}

/// Not a check but a measurement: 8 tasks each enqueue single jobs for 5 s under full
/// durability, with wakeups off and on (twice each, alternating). Run it with
/// `cargo nextest run -p flotilla-store-postgres --run-ignored only --no-capture enqueue_rate`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement (20 s), not a check"]
async fn enqueue_rate_with_and_without_wakeups() {
    const TASKS: usize = 8;
    const FOR: Duration = Duration::from_secs(5);
    let schema = fresh_schema();
    let _guard = SchemaGuard {
        schema: schema.clone(),
    };
    for wakeups in [false, true, false, true] {
        let store = std::sync::Arc::new(
            PgStore::connect(
                &url(),
                PgOptions {
                    pool_size: TASKS,
                    wakeups,
                    ..options(&schema, true)
                },
            )
            .await
            .expect("connect"),
        );
        store
            .queue_upsert(QueueConfig::new("q"))
            .await
            .expect("queue");
        let clock = flotilla_core::ManualClock::at_epoch();
        let start = std::time::Instant::now();
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let store = store.clone();
                let now = clock.now();
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while start.elapsed() < FOR {
                        store
                            .job_insert_many(flotilla_store::JobInsertManyParams {
                                jobs: vec![job("q", "k")],
                                now,
                            })
                            .await
                            .expect("insert");
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let mut total = 0;
        for t in tasks {
            total += t.await.expect("task");
        }
        let rate = total as f64 / start.elapsed().as_secs_f64();
        println!("wakeups {wakeups:5}: {rate:6.0} single-job enqueues/s ({TASKS} tasks)");
    }
}
