//! Cron schedules. `cron_fire_due` runs in one transaction that locks the schedules it
//! looks at (`FOR UPDATE SKIP LOCKED`): a second server firing at the same instant either
//! skips the rows the first holds, or, if it reads them after the first committed, sees
//! their new `last_fired_at` and waits for the next tick. The job insert and the tick's
//! record commit together, and the tick's unique key (`cron:<name>:<tick>`) refuses a
//! second live job besides. So each tick fires exactly once.

use flotilla_core::{CronDecision, CronSchedule, NewJob, Timestamp, cron_decision};
use flotilla_store::{CronEntry, CronReport, JobInsertManyParams, MaintenanceParams, StoreError};

use crate::PgStore;
use crate::error::{PgError, storable};
use crate::row::{get, json};
use crate::wakeup::Woken;

/// Reads a schedule column.
pub(crate) fn entry(text: &str, last_fired_at: Timestamp) -> Result<CronEntry, PgError> {
    let schedule: CronSchedule =
        serde_json::from_str(text).map_err(|e| PgError::Decode(format!("cron schedule: {e}")))?;
    Ok(CronEntry {
        schedule,
        last_fired_at,
    })
}

/// See `Store::cron_upsert`; the schedule was validated by the caller.
pub(crate) async fn upsert(
    s: &PgStore,
    schedule: &CronSchedule,
    now: Timestamp,
) -> Result<(), PgError> {
    storable("name", &schedule.name)?;
    let c = s.client().await?;
    let stmt = c
        .prepare_cached(
            "WITH q AS (SELECT name FROM queues WHERE name = $4),
             up AS (
                INSERT INTO cron (name, schedule, last_fired_at) SELECT $1, $2, $3 FROM q
                ON CONFLICT (name) DO UPDATE SET schedule = excluded.schedule
                RETURNING 1
             )
             SELECT count(*) FROM up",
        )
        .await?;
    let row = c
        .query_one(
            &stmt,
            &[&schedule.name, &json(schedule)?, &now, &schedule.queue],
        )
        .await?;
    if get::<i64>(&row, 0)? == 0 {
        return Err(StoreError::QueueNotFound(schedule.queue.clone()).into());
    }
    Ok(())
}

/// See `Store::cron_delete`.
pub(crate) async fn delete(s: &PgStore, name: &str) -> Result<(), PgError> {
    let c = s.client().await?;
    let stmt = c.prepare_cached("DELETE FROM cron WHERE name = $1").await?;
    if c.execute(&stmt, &[&name]).await? == 0 {
        return Err(StoreError::CronNotFound(name.into()).into());
    }
    Ok(())
}

/// See `Store::cron_fire_due`.
pub(crate) async fn fire_due(s: &PgStore, p: &MaintenanceParams) -> Result<CronReport, PgError> {
    let limit = if p.limit == 0 {
        usize::MAX
    } else {
        p.limit as usize
    };
    let mut c = s.client().await?;
    let tx = c.transaction().await?;
    let stmt = tx
        .prepare_cached(
            "SELECT schedule, last_fired_at FROM cron ORDER BY name FOR UPDATE SKIP LOCKED",
        )
        .await?;
    let rows = tx.query(&stmt, &[]).await?;
    let mut report = CronReport::default();
    let mut woken = Woken::default();
    let mut fires: Vec<(String, Timestamp)> = Vec::new();
    let mut jobs: Vec<NewJob> = Vec::new();
    let (mut names, mut ticks, mut olds) = (Vec::new(), Vec::new(), Vec::new());
    for r in &rows {
        if fires.len() >= limit {
            break;
        }
        let e = entry(&get::<String>(r, 0)?, get(r, 1)?)?;
        let sched = &e.schedule;
        let tick = match cron_decision(&sched.spec, e.last_fired_at, p.now, sched.backfill) {
            CronDecision::Wait => continue,
            CronDecision::Skip { tick } => {
                report.skipped.push((sched.name.clone(), tick));
                tick
            }
            CronDecision::Fire { tick } => {
                jobs.push(
                    NewJob::new(&sched.queue, &sched.kind, sched.payload.clone())
                        .priority(sched.priority)
                        .unique_key(sched.unique_key(tick)),
                );
                fires.push((sched.name.clone(), tick));
                tick
            }
        };
        names.push(sched.name.clone());
        ticks.push(tick);
        olds.push(e.last_fired_at);
    }
    if !jobs.is_empty() {
        // The payload was checked against the store's limit at upsert.
        let prepared =
            crate::insert::prepare(JobInsertManyParams { jobs, now: p.now }, usize::MAX)?;
        let inserted = crate::insert::insert(&tx, &prepared, &mut woken).await?;
        for ((name, tick), job) in fires.into_iter().zip(inserted) {
            if !job.duplicate {
                report.fired.push((name, tick, job.id));
            }
        }
    }
    if !names.is_empty() {
        let stmt = tx
            .prepare_cached(
                "UPDATE cron c SET last_fired_at = t.tick
                 FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) AS t(name, tick, old)
                 WHERE c.name = t.name AND c.last_fired_at = t.old",
            )
            .await?;
        tx.execute(&stmt, &[&names, &ticks, &olds]).await?;
    }
    tx.commit().await?;
    woken.send(&c).await;
    Ok(report)
}
