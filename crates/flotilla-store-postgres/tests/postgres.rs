//! The PostgreSQL store's own tests: migrations, connection errors, and limits, unique keys
//! and cron under real concurrency from two stores on one schema (as two servers).

mod common;

use std::time::Duration;

use common::{SchemaGuard, admin_client, fresh_schema, options, url};
use flotilla_store::Store;
use flotilla_store_postgres::{PgOptions, PgStore};

/// Two stores migrating the same fresh schema at once both succeed, and each migration is
/// applied exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_apply_once() {
    let schema = fresh_schema();
    let _guard = SchemaGuard {
        schema: schema.clone(),
    };
    let a = PgStore::connect(&url(), options(&schema, false))
        .await
        .expect("connect a");
    let b = PgStore::connect(&url(), options(&schema, false))
        .await
        .expect("connect b");
    let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
    let (ra, rb) = (ra.expect("migrate a"), rb.expect("migrate b"));
    let mut all: Vec<u32> = ra.iter().chain(&rb).copied().collect();
    all.sort_unstable();
    let latest = a.schema_version().await.expect("version");
    assert!(latest >= 1);
    assert_eq!(
        all,
        (1..=latest).collect::<Vec<_>>(),
        "a: {ra:?}, b: {rb:?}"
    );
    assert_eq!(b.schema_version().await.expect("version"), latest);

    let admin = admin_client().await;
    let row = admin
        .query_one(
            &format!(
                "SELECT count(*), count(DISTINCT version) FROM \"{schema}\".flotilla_migrations"
            ),
            &[],
        )
        .await
        .expect("read migrations");
    let (rows, distinct): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!((rows, distinct), (i64::from(latest), i64::from(latest)));
    assert!(
        a.migrate().await.expect("again").is_empty(),
        "nothing left to apply"
    );
    // Both handles work on the one schema.
    a.queue_upsert(flotilla_core::QueueConfig::new("q"))
        .await
        .expect("upsert");
    assert_eq!(b.queue_get("q").await.expect("get").name, "q");
}

/// A database that cannot be reached is `unavailable`, not a panic or `internal`.
#[tokio::test]
async fn unreachable_database_is_unavailable() {
    let options = PgOptions {
        connect_timeout: Duration::from_secs(2),
        ..PgOptions::default()
    };
    let err = PgStore::connect("postgres://postgres@127.0.0.1:1/test", options)
        .await
        .expect_err("nothing listens on port 1");
    assert_eq!(err.code(), flotilla_core::ErrorCode::Unavailable, "{err:?}");
}

// ----- limits, unique keys and cron under concurrency, across two stores -----

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use flotilla_core::{Clock, CronSchedule, CronSpec, Job, JobId, NewJob, QueueConfig};
use flotilla_store::{
    Completion, JobCompleteManyParams, JobInsertManyParams, JobListParams, MaintenanceParams,
    StateCounts,
};
use flotilla_store_tests::Harness;
use flotilla_store_tests::support::*;
use serde_json::json;

const CLAIMERS: usize = 8;

/// The store of claimer `n`: even ones use `store`, odd ones `other`.
fn handle(h: &Harness, n: usize) -> Arc<dyn Store> {
    if n.is_multiple_of(2) {
        h.store.clone()
    } else {
        h.other.clone()
    }
}

/// Runs `CLAIMERS` claimers on both stores until `total` jobs have completed. Each holds
/// its jobs for a moment (yielding), calling `hold` when it takes a job and `release`
/// before completing it, so the callbacks never see more jobs held than are running.
/// (They record, and the test asserts at the end: a claimer that panicked would strand its
/// jobs and stall the others.)
async fn drain<H, R>(h: &Harness, queue: &'static str, total: u64, hold: H, release: R)
where
    H: Fn(&Job) + Send + Sync + 'static,
    R: Fn(&Job) + Send + Sync + 'static,
{
    let done = Arc::new(AtomicU64::new(0));
    let hold = Arc::new(hold);
    let release = Arc::new(release);
    let tasks: Vec<_> = (0..CLAIMERS)
        .map(|n| {
            let store = handle(h, n);
            let clock = h.clock.clone();
            let (done, hold, release) = (done.clone(), hold.clone(), release.clone());
            tokio::spawn(async move {
                let mut idle = 0u32;
                while done.load(Ordering::SeqCst) < total {
                    let now = clock.now();
                    let jobs = claim_via(&*store, now, &[queue], 5, &format!("w{n}")).await;
                    if jobs.is_empty() {
                        idle += 1;
                        assert!(idle < 200_000, "claimer {n} stalled");
                        tokio::task::yield_now().await;
                        continue;
                    }
                    idle = 0;
                    jobs.iter().for_each(|j| hold(j));
                    tokio::task::yield_now().await;
                    jobs.iter().for_each(|j| release(j));
                    let completions = jobs
                        .iter()
                        .map(|j| Completion {
                            job_id: j.id,
                            token: token(j),
                            result: None,
                        })
                        .collect();
                    let results = store
                        .job_complete_many(JobCompleteManyParams { completions, now })
                        .await
                        .expect("complete");
                    assert!(results.iter().all(Result::is_ok), "{results:?}");
                    done.fetch_add(jobs.len() as u64, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("a claimer panicked");
    }
}

/// A queue's counts must match its jobs, state by state.
async fn counts_match_jobs(h: &Harness, queue: &str) {
    let jobs = list_all(
        h,
        JobListParams {
            queue: Some(queue.to_owned()),
            ..JobListParams::default()
        },
        1000,
    )
    .await;
    let mut expected = StateCounts::default();
    for j in &jobs {
        *expected.get_mut(j.state) += 1;
    }
    assert_eq!(stats(h, queue).await.counts, expected, "{queue}");
}

/// With `concurrency: 3`, eight claimers on two stores never hold more than three jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_limit_holds_across_stores() {
    let h = common::harness().await;
    queue_with(
        &h,
        QueueConfig {
            concurrency: Some(3),
            ..QueueConfig::new("q")
        },
    )
    .await;
    insert_n(&h, "q", 300).await;
    let held = Arc::new(AtomicI64::new(0));
    let peak = Arc::new(AtomicI64::new(0));
    let (held2, peak2) = (held.clone(), peak.clone());
    drain(
        &h,
        "q",
        300,
        move |_| {
            let now = held.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
        },
        move |_| {
            held2.fetch_sub(1, Ordering::SeqCst);
        },
    )
    .await;
    let peak = peak2.load(Ordering::SeqCst);
    assert!(
        (1..=3).contains(&peak),
        "{peak} jobs held at once under a limit of 3"
    );
    assert_eq!(stats(&h, "q").await.totals.succeeded, 300);
    counts_match_jobs(&h, "q").await;
}

/// With `group_concurrency: 2` on a fair queue, no group ever has more than two jobs
/// held, whichever store claims, and every group is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_limit_holds_across_stores() {
    let h = common::harness().await;
    queue_with(
        &h,
        QueueConfig {
            group_concurrency: Some(2),
            fair: true,
            ..QueueConfig::new("q")
        },
    )
    .await;
    let jobs: Vec<NewJob> = (0..250)
        .map(|n| job("q", "work").group_key(format!("tenant-{}", n % 5)))
        .collect();
    insert_many(&h, jobs).await;
    let held: Arc<Mutex<HashMap<String, i64>>> = Arc::default();
    let peak = Arc::new(AtomicI64::new(0));
    let (held2, peak2) = (held.clone(), peak.clone());
    drain(
        &h,
        "q",
        250,
        move |j| {
            let mut held = held.lock().expect("ledger");
            let n = held
                .entry(j.group_key.clone().unwrap_or_default())
                .or_default();
            *n += 1;
            peak.fetch_max(*n, Ordering::SeqCst);
        },
        move |j| {
            *held2
                .lock()
                .expect("ledger")
                .entry(j.group_key.clone().unwrap_or_default())
                .or_default() -= 1;
        },
    )
    .await;
    let peak = peak2.load(Ordering::SeqCst);
    assert!((1..=2).contains(&peak), "a group held {peak} jobs at once");
    counts_match_jobs(&h, "q").await;
}

/// A rate limit of ten is one bucket for every server: at one instant, eight claimers on
/// two stores get ten jobs in all; a second later, ten more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_is_one_bucket_across_stores() {
    let h = common::harness().await;
    queue_with(
        &h,
        QueueConfig {
            rate_limit: Some(10),
            ..QueueConfig::new("q")
        },
    )
    .await;
    insert_n(&h, "q", 100).await;
    for _ in 0..3 {
        let now = h.clock.now();
        let tasks: Vec<_> = (0..CLAIMERS)
            .map(|n| {
                let store = handle(&h, n);
                tokio::spawn(async move {
                    claim_via(&*store, now, &["q"], 100, &format!("w{n}"))
                        .await
                        .len()
                })
            })
            .collect();
        let mut total = 0;
        for t in tasks {
            total += t.await.expect("claimer");
        }
        assert_eq!(total, 10);
        h.clock.advance(Duration::from_secs(1));
    }
}

/// Eight producers on two stores enqueue overlapping batches of the same twenty unique
/// keys, each in its own order: one live job per key, and every answer names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_keys_hold_under_concurrent_batches() {
    let h = common::harness().await;
    queue(&h, "q").await;
    let now = h.clock.now();
    let tasks: Vec<_> = (0..CLAIMERS)
        .map(|n| {
            let store = handle(&h, n);
            tokio::spawn(async move {
                let mut answers = Vec::new();
                for round in 0..5 {
                    let mut keys: Vec<usize> = (0..20).collect();
                    // A different order per producer and round.
                    keys.rotate_left((n * 7 + round * 3) % 20);
                    if (n + round) % 2 == 1 {
                        keys.reverse();
                    }
                    let jobs: Vec<NewJob> = keys
                        .iter()
                        .map(|k| job("q", "work").unique_key(format!("k{k}")))
                        .collect();
                    let got = store
                        .job_insert_many(JobInsertManyParams { jobs, now })
                        .await
                        .expect("insert");
                    answers.extend(keys.into_iter().zip(got.into_iter().map(|i| i.id)));
                }
                answers
            })
        })
        .collect();
    let mut by_key: HashMap<usize, HashSet<JobId>> = HashMap::new();
    for t in tasks {
        for (k, id) in t.await.expect("producer") {
            by_key.entry(k).or_default().insert(id);
        }
    }
    assert_eq!(by_key.len(), 20);
    assert!(by_key.values().all(|ids| ids.len() == 1), "{by_key:?}");
    assert_eq!(jobs_in(&h, "q").await.len(), 20);
    assert_eq!(stats(&h, "q").await.totals.enqueued, 20);
    counts_match_jobs(&h, "q").await;
}

/// Eight schedulers on two stores fire three schedules for five ticks: each tick of each
/// schedule exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_fires_each_tick_once_across_stores() {
    let h = common::harness().await;
    queue(&h, "q").await;
    let t0 = h.clock.now();
    for name in ["a", "b", "c"] {
        let spec = CronSpec::parse("* * * * *").expect("spec");
        let schedule = CronSchedule::new(name, spec, "q", "tick", json!({}));
        h.store.cron_upsert(schedule, t0).await.expect("upsert");
    }
    let mut fired = Vec::new();
    for _ in 0..5 {
        h.clock.advance(Duration::from_secs(60));
        let params = MaintenanceParams {
            now: h.clock.now(),
            limit: 0,
        };
        let tasks: Vec<_> = (0..CLAIMERS)
            .map(|n| {
                let store = handle(&h, n);
                tokio::spawn(async move { store.cron_fire_due(params).await.expect("fire") })
            })
            .collect();
        for t in tasks {
            fired.extend(t.await.expect("scheduler").fired);
        }
    }
    assert_eq!(fired.len(), 15, "{fired:?}");
    let ticks: HashSet<_> = fired.iter().map(|f| (f.0.clone(), f.1)).collect();
    assert_eq!(ticks.len(), 15);
    assert_eq!(jobs_in(&h, "q").await.len(), 15);
}

/// Claims across two queues and completions spanning both, concurrently from two stores
/// (transactions that touch several queue rows): nothing fails, and the counts agree with
/// the jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_queue_batches_do_not_deadlock() {
    let h = common::harness().await;
    queue(&h, "a").await;
    queue(&h, "b").await;
    let mixed = |n: usize| -> Vec<NewJob> {
        (0..n)
            .map(|i| job(if i % 2 == 0 { "a" } else { "b" }, "work"))
            .collect()
    };
    for _ in 0..4 {
        insert_many(&h, mixed(100)).await;
    }
    let done = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..CLAIMERS)
        .map(|n| {
            let store = handle(&h, n);
            let clock = h.clock.clone();
            let done = done.clone();
            let order: [&'static str; 2] = if n.is_multiple_of(3) {
                ["b", "a"]
            } else {
                ["a", "b"]
            };
            tokio::spawn(async move {
                while done.load(Ordering::SeqCst) < 400 {
                    let now = clock.now();
                    let jobs = claim_via(&*store, now, &order, 7, "w").await;
                    if jobs.is_empty() {
                        tokio::task::yield_now().await;
                        continue;
                    }
                    // Enqueue more into both queues while completing across both.
                    if n % 4 == 1 {
                        store
                            .job_insert_many(JobInsertManyParams {
                                jobs: vec![job("b", "extra"), job("a", "extra")],
                                now,
                            })
                            .await
                            .expect("insert");
                    }
                    let mut completions: Vec<Completion> = jobs
                        .iter()
                        .map(|j| Completion {
                            job_id: j.id,
                            token: token(j),
                            result: None,
                        })
                        .collect();
                    if n % 2 == 1 {
                        completions.reverse();
                    }
                    let results = store
                        .job_complete_many(JobCompleteManyParams { completions, now })
                        .await
                        .expect("complete");
                    assert!(results.iter().all(Result::is_ok));
                    done.fetch_add(jobs.len() as u64, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("a claimer panicked");
    }
    counts_match_jobs(&h, "a").await;
    counts_match_jobs(&h, "b").await;
}

/// Switching a queue to fairness while producers on two stores enqueue into it: every live
/// job ends up in a group (none is left invisible to round-robin claims), the group counts
/// agree with the jobs, and every job can be claimed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_to_fairness_during_enqueues_keys_every_job() {
    let h = common::harness().await;
    queue(&h, "q").await;
    let now = h.clock.now();
    let producers: Vec<_> = (0..4)
        .map(|n| {
            let store = handle(&h, n);
            tokio::spawn(async move {
                for i in 0..60 {
                    let jobs = if i % 3 == 0 {
                        vec![job("q", "work"), job("q", "work").group_key("g")]
                    } else {
                        vec![job("q", "work")]
                    };
                    store
                        .job_insert_many(JobInsertManyParams { jobs, now })
                        .await
                        .expect("insert");
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    tokio::task::yield_now().await;
    h.other
        .queue_upsert(QueueConfig {
            fair: true,
            ..QueueConfig::new("q")
        })
        .await
        .expect("switch to fair");
    for p in producers {
        p.await.expect("producer");
    }
    let schema = &h
        .guard
        .downcast_ref::<SchemaGuard>()
        .expect("a schema guard")
        .schema;
    let admin = admin_client().await;
    let row = admin
        .query_one(
            &format!(
                "SELECT count(*) FILTER (WHERE group_key IS NULL),
                        count(*) FILTER (WHERE state = 1 AND group_key = ''),
                        (SELECT coalesce(sum(available), 0)::bigint FROM \"{schema}\".job_groups
                         WHERE queue = 'q' AND group_key = '')
                 FROM \"{schema}\".jobs WHERE queue = 'q'"
            ),
            &[],
        )
        .await
        .expect("count");
    let (ungrouped, in_blank, counted): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(ungrouped, 0, "live jobs left without a group");
    assert_eq!(in_blank, counted, "group counts disagree with the jobs");
    let total = jobs_in(&h, "q").await.len();
    assert_eq!(total, 4 * 80);
    let mut claimed = 0;
    loop {
        let got = claim(&h, &["q"], 50).await;
        if got.is_empty() {
            break;
        }
        claimed += got.len();
    }
    assert_eq!(claimed, total);
    counts_match_jobs(&h, "q").await;
}

/// Text PostgreSQL cannot store is refused as `invalid_argument`, not a 500, and changes
/// nothing; the same goes for times before 4713 BC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unstorable_values_are_invalid_arguments() {
    let h = common::harness().await;
    queue(&h, "q").await;
    let now = h.clock.now();
    for bad in [
        job("q", "work").tag("a\0b"),
        job("q", "work").unique_key("k\0"),
        job("q", "work").group_key("\0"),
        job("q", "work").run_at(
            chrono::NaiveDate::from_ymd_opt(-5000, 1, 1)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .expect("a date")
                .and_utc(),
        ),
    ] {
        assert_eq!(
            code(h.store.job_insert(bad.clone(), now).await),
            flotilla_core::ErrorCode::InvalidArgument,
            "{bad:?}"
        );
    }
    insert(&h, job("q", "work").tag("ok")).await;
    let refused = h
        .store
        .job_claim(flotilla_store::JobClaimParams {
            queues: vec!["q".into()],
            limit: 1,
            worker_id: "w\0".into(),
            now,
        })
        .await;
    assert_eq!(code(refused), flotilla_core::ErrorCode::InvalidArgument);
    // A NUL inside JSON is an escape, which PostgreSQL's json type keeps as written.
    let id = insert(&h, NewJob::new("q", "work", json!({ "s": "a\u{0}b" }))).await;
    assert_eq!(get(&h, id).await.payload, json!({ "s": "a\u{0}b" }));
    assert_eq!(jobs_in(&h, "q").await.len(), 2);
}

/// A statement that PostgreSQL aborts to break a deadlock is run again: a completion
/// caught in a lock cycle with another transaction still succeeds once that one commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadlocked_statement_is_run_again() {
    let h = common::harness().await;
    queue(&h, "q").await;
    insert_n(&h, "q", 2).await;
    let jobs = claim(&h, &["q"], 2).await;
    let (a, b) = (jobs[0].clone(), jobs[1].clone());
    let schema = h
        .guard
        .downcast_ref::<SchemaGuard>()
        .expect("a schema guard")
        .schema
        .clone();
    let mut admin = admin_client().await;
    let tx = admin.transaction().await.expect("begin");
    // This side must not be the one PostgreSQL picks to abort.
    tx.batch_execute("SET LOCAL deadlock_timeout = '30s'")
        .await
        .expect("set");
    tx.execute(
        &format!("SELECT 1 FROM \"{schema}\".jobs WHERE id = $1 FOR UPDATE"),
        &[&a.id.0],
    )
    .await
    .expect("lock a");
    // The completion locks b, then waits for a.
    let store = h.store.clone();
    let now = h.clock.now();
    let completions = vec![
        Completion {
            job_id: b.id,
            token: token(&b),
            result: None,
        },
        Completion {
            job_id: a.id,
            token: token(&a),
            result: None,
        },
    ];
    let completing = tokio::spawn(async move {
        store
            .job_complete_many(JobCompleteManyParams { completions, now })
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Now wait for b: a cycle, which the completion's side detects and breaks.
    tx.execute(
        &format!("UPDATE \"{schema}\".jobs SET progress = progress WHERE id = $1"),
        &[&b.id.0],
    )
    .await
    .expect("update b");
    tx.commit().await.expect("commit");
    let results = completing.await.expect("task").expect("complete_many");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(stats(&h, "q").await.counts.succeeded, 2);
}

// ----- copying between stores -----

/// The schema of a harness.
fn schema_of(h: &Harness) -> String {
    h.guard
        .downcast_ref::<SchemaGuard>()
        .expect("a schema guard")
        .schema
        .clone()
}

/// Jobs of `from` as copies in `to` with ids from `first_id`.
async fn copies(h: &Harness, from: &str, to: &str, first_id: i64) -> Vec<Job> {
    let mut jobs = jobs_in(h, from).await;
    jobs.sort_by_key(|j| j.id);
    for (i, job) in jobs.iter_mut().enumerate() {
        job.id = JobId(first_id + i as i64);
        job.queue = to.to_owned();
    }
    jobs
}

/// Copied into a fair queue, jobs without a key join the group "" (and read back without
/// one), group rows count the available and running copies, and round-robin claims serve
/// every copied job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_into_a_fair_queue_keeps_group_bookkeeping() {
    let h = common::harness().await;
    queue(&h, "src").await;
    queue_with(
        &h,
        QueueConfig {
            fair: true,
            ..QueueConfig::new("fair")
        },
    )
    .await;
    let mut batch = vec![job("src", "k"), job("src", "k")];
    batch.extend((0..3).map(|_| job("src", "k").group_key("a")));
    insert_many(&h, batch).await;
    claim(&h, &["src"], 1).await; // one running copy, without a key
    let jobs = copies(&h, "src", "fair", 500).await;
    assert_eq!(h.store.job_import(jobs.clone()).await.expect("import"), 5);
    for j in &jobs {
        assert_eq!(&get(&h, j.id).await, j);
    }
    counts_match_jobs(&h, "fair").await;
    let admin = admin_client().await;
    let rows = admin
        .query(
            &format!(
                "SELECT group_key, available, running FROM \"{}\".job_groups
                 WHERE queue = 'fair' ORDER BY group_key",
                schema_of(&h)
            ),
            &[],
        )
        .await
        .expect("groups");
    let groups: Vec<(String, i64, i64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(groups, vec![("".into(), 1, 1), ("a".into(), 3, 0)]);
    let claimed = claim(&h, &["fair"], 10).await;
    assert_eq!(claimed.len(), 4, "every available copy is claimable");
    counts_match_jobs(&h, "fair").await;
}

/// More jobs than one statement takes: all inserted, counted, and skipped the second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_of_many_jobs_in_one_call() {
    let h = common::harness().await;
    queue(&h, "q").await;
    let template = {
        insert(&h, job("q", "k")).await;
        jobs_in(&h, "q").await.remove(0)
    };
    let jobs: Vec<Job> = (0..2500)
        .map(|i| Job {
            id: JobId(10_000 + i),
            ..template.clone()
        })
        .collect();
    assert_eq!(
        h.store.job_import(jobs.clone()).await.expect("import"),
        2500
    );
    assert_eq!(h.other.job_import(jobs).await.expect("again"), 0);
    assert_eq!(stats(&h, "q").await.counts.available, 2501);
    assert!(insert(&h, job("q", "k")).await.0 > 12_499);
}

/// A copied live job whose unique key a live job holds is refused, and the call adds
/// nothing; a finished one with the key is copied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_refuses_a_held_unique_key() {
    let h = common::harness().await;
    queue(&h, "q").await;
    insert(&h, job("q", "k").unique_key("u")).await;
    let held = jobs_in(&h, "q").await.remove(0);
    let free = Job {
        id: JobId(100),
        unique_key: None,
        ..held.clone()
    };
    let clash = Job {
        id: JobId(101),
        ..held.clone()
    };
    let err = h
        .store
        .job_import(vec![free.clone(), clash])
        .await
        .expect_err("the key is held");
    assert_eq!(
        err.code(),
        flotilla_core::ErrorCode::InvalidArgument,
        "{err}"
    );
    assert_eq!(jobs_in(&h, "q").await.len(), 1, "nothing was added");
    let done = Job {
        id: JobId(102),
        state: flotilla_core::JobState::Succeeded,
        finished_at: Some(h.clock.now()),
        ..held
    };
    assert_eq!(
        h.store.job_import(vec![free, done]).await.expect("import"),
        2
    );
    counts_match_jobs(&h, "q").await;
}

/// Counters spread over several shards are raised to exactly the imported values, and
/// values below the current sums change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_totals_are_exact_across_shards() {
    let h = common::harness().await;
    queue(&h, "q").await;
    let now = h.clock.now();
    // Two stores, several connections each: the enqueues land on several shards.
    let inserts: Vec<_> = (0..8)
        .map(|n| {
            let store = handle(&h, n);
            tokio::spawn(async move {
                store
                    .job_insert_many(JobInsertManyParams {
                        jobs: vec![job("q", "k")],
                        now,
                    })
                    .await
                    .expect("insert")
            })
        })
        .collect();
    for t in inserts {
        t.await.expect("an insert panicked");
    }
    assert_eq!(stats(&h, "q").await.totals.enqueued, 8);
    let mut totals = stats(&h, "q").await.totals;
    totals.enqueued = 20;
    totals.dead = 3;
    h.store
        .queue_import_totals("q", totals)
        .await
        .expect("import");
    assert_eq!(stats(&h, "q").await.totals, totals);
    let lower = flotilla_store::Throughput {
        enqueued: 2,
        ..totals
    };
    h.other
        .queue_import_totals("q", lower)
        .await
        .expect("again");
    assert_eq!(stats(&h, "q").await.totals, totals);
}
