//! Cron: a new schedule counts its ticks from its creation; a due tick fires exactly once,
//! even with two schedulers firing at the same instant; after downtime only the latest missed
//! tick runs, once, if it is within the backfill window, and is otherwise reported as skipped.
//! `cron_list`, `cron_upsert` of an existing schedule, and `cron_delete`.

use std::time::Duration;

use flotilla_core::{Clock, CronSchedule, CronSpec, ErrorCode, JobState, Timestamp};
use flotilla_store::{CronReport, MaintenanceParams, StoreError};
use serde_json::json;

use crate::Harness;
use crate::support::*;

/// A schedule named `name` running `expr` into queue `q`, with kind `report.build`.
pub fn schedule(name: &str, expr: &str) -> CronSchedule {
    let spec = CronSpec::parse(expr).expect("a valid cron expression");
    CronSchedule::new(name, spec, "q", "report.build", json!({ "schedule": name }))
}

async fn fire(h: &Harness) -> CronReport {
    h.store
        .cron_fire_due(maintenance(h))
        .await
        .expect("cron_fire_due")
}

fn minutes(n: u64) -> Duration {
    secs(60 * n)
}

/// A new schedule does not fire at creation, even on a tick, nor before its next tick; its
/// `last_fired_at` starts at its creation time.
pub async fn new_schedule_waits_for_its_next_tick(h: Harness) {
    queue(&h, "q").await;
    let created = h.clock.now();
    h.store
        .cron_upsert(schedule("every-minute", "* * * * *"), created)
        .await
        .unwrap();
    assert_eq!(
        fire(&h).await,
        CronReport::default(),
        "creation on a tick does not fire it"
    );
    h.clock.advance(secs(59));
    assert_eq!(fire(&h).await, CronReport::default());
    let entries = h.store.cron_list().await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].schedule, schedule("every-minute", "* * * * *"));
    assert_eq!(entries[0].last_fired_at, created);
    assert!(jobs_in(&h, "q").await.is_empty());
}

/// Two schedulers (both handles) firing at the same instant fire a due tick exactly once:
/// one job, one `fired` entry; firing again does nothing until the next tick.
pub async fn due_tick_fires_exactly_once_across_handles(h: Harness) {
    queue(&h, "q").await;
    let t0 = h.clock.now();
    let mut sched = schedule("every-minute", "* * * * *");
    sched.priority = 4;
    h.store.cron_upsert(sched, t0).await.unwrap();
    h.clock.advance(secs(61));
    let params = maintenance(&h);
    let (a, b) = tokio::join!(h.store.cron_fire_due(params), h.other.cron_fire_due(params));
    let fired: Vec<(String, Timestamp, _)> = a
        .unwrap()
        .fired
        .into_iter()
        .chain(b.unwrap().fired)
        .collect();
    let tick = plus(t0, secs(60));
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!((fired[0].0.as_str(), fired[0].1), ("every-minute", tick));

    let jobs = jobs_in(&h, "q").await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let enqueued = &jobs[0];
    assert_eq!(enqueued.id, fired[0].2);
    assert_eq!(
        (enqueued.kind.as_str(), enqueued.priority, enqueued.state),
        ("report.build", 4, JobState::Available)
    );
    assert_eq!(enqueued.payload, json!({ "schedule": "every-minute" }));
    assert_eq!(
        fire(&h).await,
        CronReport::default(),
        "the tick fired already"
    );
    assert_eq!(h.store.cron_list().await.unwrap()[0].last_fired_at, tick);

    h.clock.advance(secs(60));
    let next = fire(&h).await;
    assert_eq!(
        next.fired.iter().map(|f| f.1).collect::<Vec<_>>(),
        vec![plus(tick, secs(60))]
    );
    assert_eq!(jobs_in(&h, "q").await.len(), 2);
}

/// After downtime, only the latest missed tick runs, once, when it is within the backfill
/// window; the ticks before it are not run one by one.
pub async fn missed_tick_within_backfill_runs_once(h: Harness) {
    queue(&h, "q").await;
    let t0 = h.clock.now();
    let mut sched = schedule("five-minutes", "*/5 * * * *");
    sched.backfill = minutes(10);
    h.store.cron_upsert(sched, t0).await.unwrap();
    h.clock.advance(minutes(23));
    let params = maintenance(&h);
    let (a, b) = tokio::join!(h.store.cron_fire_due(params), h.other.cron_fire_due(params));
    let (a, b) = (a.unwrap(), b.unwrap());
    let ticks: Vec<Timestamp> = a.fired.iter().chain(&b.fired).map(|f| f.1).collect();
    assert_eq!(
        ticks,
        vec![plus(t0, minutes(20))],
        "only the latest missed tick, once"
    );
    assert!(a.skipped.is_empty() && b.skipped.is_empty());
    assert_eq!(fire(&h).await, CronReport::default());
    assert_eq!(jobs_in(&h, "q").await.len(), 1);
}

/// A missed tick older than the backfill window is reported in `skipped`, enqueues
/// nothing, and is not reported again; the next tick fires normally.
pub async fn tick_older_than_backfill_is_skipped(h: Harness) {
    queue(&h, "q").await;
    let t0 = h.clock.now();
    h.store
        .cron_upsert(schedule("hourly", "0 * * * *"), t0)
        .await
        .unwrap();
    h.clock.advance(minutes(65));
    let report = fire(&h).await;
    let hour = plus(t0, minutes(60));
    assert_eq!(report.fired, vec![]);
    assert_eq!(report.skipped, vec![("hourly".to_owned(), hour)]);
    assert!(jobs_in(&h, "q").await.is_empty());
    assert_eq!(
        fire(&h).await,
        CronReport::default(),
        "a skipped tick is reported once"
    );
    assert_eq!(h.store.cron_list().await.unwrap()[0].last_fired_at, hour);

    h.clock.advance(minutes(55) + secs(30));
    let report = fire(&h).await;
    assert_eq!(
        report.fired.iter().map(|f| f.1).collect::<Vec<_>>(),
        vec![plus(hour, minutes(60))]
    );
    assert_eq!(jobs_in(&h, "q").await.len(), 1);
}

/// Upserting an existing schedule replaces it but keeps its last fired tick; `cron_list`
/// lists schedules by name; `cron_delete` removes one (an unknown name is `CronNotFound`).
pub async fn upsert_list_and_delete(h: Harness) {
    queue(&h, "q").await;
    let t0 = h.clock.now();
    h.store
        .cron_upsert(schedule("b-minutely", "* * * * *"), t0)
        .await
        .unwrap();
    h.store
        .cron_upsert(schedule("a-hourly", "0 * * * *"), t0)
        .await
        .unwrap();
    h.clock.advance(secs(61));
    assert_eq!(fire(&h).await.fired.len(), 1);

    h.clock.advance(secs(30));
    let mut changed = schedule("b-minutely", "* * * * *");
    changed.payload = json!({ "v": 2 });
    h.other
        .cron_upsert(changed.clone(), h.clock.now())
        .await
        .unwrap();
    let entries = h.store.cron_list().await.unwrap();
    let names: Vec<&str> = entries.iter().map(|e| e.schedule.name.as_str()).collect();
    assert_eq!(names, vec!["a-hourly", "b-minutely"]);
    assert_eq!(entries[1].schedule, changed);
    assert_eq!(
        entries[1].last_fired_at,
        plus(t0, secs(60)),
        "the upsert kept the last fired tick"
    );
    assert_eq!(entries[0].last_fired_at, t0);

    h.clock.advance(secs(30));
    let report = fire(&h).await;
    assert_eq!(report.fired.len(), 1);
    assert_eq!(get(&h, report.fired[0].2).await.payload, json!({ "v": 2 }));

    h.store.cron_delete("b-minutely").await.unwrap();
    let left: Vec<String> = h
        .store
        .cron_list()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.schedule.name)
        .collect();
    assert_eq!(left, vec!["a-hourly".to_owned()]);
    h.clock.advance(secs(60));
    assert_eq!(
        fire(&h).await,
        CronReport::default(),
        "a deleted schedule no longer fires"
    );
    let err = h.store.cron_delete("b-minutely").await.unwrap_err();
    assert!(
        matches!(&err, StoreError::CronNotFound(name) if name == "b-minutely"),
        "{err:?}"
    );
    assert_eq!(err.code(), ErrorCode::CronNotFound);
}

/// `limit` bounds how many ticks one call fires; the rest fire on the next call.
pub async fn fire_due_respects_its_limit(h: Harness) {
    queue(&h, "q").await;
    let t0 = h.clock.now();
    for name in ["a", "b", "c"] {
        h.store
            .cron_upsert(schedule(name, "* * * * *"), t0)
            .await
            .unwrap();
    }
    h.clock.advance(secs(61));
    let params = MaintenanceParams {
        now: h.clock.now(),
        limit: 2,
    };
    assert_eq!(h.store.cron_fire_due(params).await.unwrap().fired.len(), 2);
    assert_eq!(h.store.cron_fire_due(params).await.unwrap().fired.len(), 1);
    assert_eq!(h.store.cron_fire_due(params).await.unwrap().fired.len(), 0);
    assert_eq!(jobs_in(&h, "q").await.len(), 3);
}
