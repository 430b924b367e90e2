//! Cron schedules. Firing a tick inserts its job and records the tick in the same
//! transaction, with a unique key per tick, so a tick fires exactly once however many
//! schedulers call at once.

use flotilla_core::{CronDecision, CronSchedule, NewJob, Timestamp, cron_decision};
use flotilla_store::{CronReport, JobInsertManyParams, MaintenanceParams, StoreError, StoreResult};
use rusqlite::params;

use crate::row::{from_micros, json, micros};
use crate::sql_err;
use crate::writer::Writer;

/// See `Store::cron_upsert`.
pub(crate) fn upsert(w: &mut Writer, schedule: CronSchedule, now: Timestamp) -> StoreResult<()> {
    w.queue(&schedule.queue)?;
    w.conn
        .execute(
            "INSERT INTO cron (name, schedule, last_fired_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET schedule = excluded.schedule",
            params![schedule.name, json(&schedule)?, micros(now)],
        )
        .map_err(sql_err)?;
    Ok(())
}

/// See `Store::cron_delete`.
pub(crate) fn delete(w: &mut Writer, name: &str) -> StoreResult<()> {
    let n = w
        .conn
        .execute("DELETE FROM cron WHERE name = ?1", [name])
        .map_err(sql_err)?;
    if n == 0 {
        return Err(StoreError::CronNotFound(name.into()));
    }
    Ok(())
}

/// See `Store::cron_fire_due`.
pub(crate) fn fire_due(w: &mut Writer, p: MaintenanceParams) -> StoreResult<CronReport> {
    let entries = crate::read::cron_list(&w.conn)?;
    let mut report = CronReport::default();
    let limit = if p.limit == 0 {
        usize::MAX
    } else {
        p.limit as usize
    };
    for entry in entries {
        if report.fired.len() >= limit {
            break;
        }
        let s = &entry.schedule;
        let tick = match cron_decision(&s.spec, entry.last_fired_at, p.now, s.backfill) {
            CronDecision::Wait => continue,
            CronDecision::Skip { tick } => {
                report.skipped.push((s.name.clone(), tick));
                tick
            }
            CronDecision::Fire { tick } => {
                let job = NewJob::new(&s.queue, &s.kind, s.payload.clone())
                    .priority(s.priority)
                    .unique_key(s.unique_key(tick));
                let prepared = crate::insert::prepare(
                    JobInsertManyParams {
                        jobs: vec![job],
                        now: p.now,
                    },
                    // The payload was checked against the store's limit at upsert.
                    usize::MAX,
                )?;
                let inserted = crate::insert::insert_many(w, prepared)?;
                if let Some(job) = inserted.first().filter(|j| !j.duplicate) {
                    report.fired.push((s.name.clone(), tick, job.id));
                }
                tick
            }
        };
        w.conn
            .execute(
                "UPDATE cron SET last_fired_at = ?2 WHERE name = ?1 AND last_fired_at = ?3",
                params![s.name, micros(tick), micros(entry.last_fired_at)],
            )
            .map_err(sql_err)?;
    }
    Ok(report)
}

/// Reads a schedule column.
pub(crate) fn schedule_from(text: &str, last: i64) -> StoreResult<flotilla_store::CronEntry> {
    let schedule: CronSchedule = serde_json::from_str(text)
        .map_err(|e| StoreError::Internal(format!("cron schedule: {e}")))?;
    Ok(flotilla_store::CronEntry {
        schedule,
        last_fired_at: from_micros(last),
    })
}
