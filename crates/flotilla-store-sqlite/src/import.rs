//! Copying in what another store exported (`flotilla store copy`): jobs exactly as they
//! were, throughput counters and cron progress.

use flotilla_core::Job;
use flotilla_store::{CronEntry, StoreResult, Throughput};
use rusqlite::params;

use crate::counts::Changes;
use crate::row::{json, micros, ms_i64};
use crate::sql_err;
use crate::writer::Writer;

/// See `Store::job_import`.
pub(crate) fn jobs(w: &mut Writer, jobs: Vec<Job>) -> StoreResult<u64> {
    let mut changes = Changes::default();
    let mut inserted = 0;
    let mut top_token = 0;
    for job in &jobs {
        let queue = w.queue(&job.queue)?;
        // In a grouped queue, jobs without a key form the group "" (as on insert).
        let group = job
            .group_key
            .as_deref()
            .or(queue.claims_by_group().then_some(""));
        if !insert(w, job, group)? {
            continue; // the id is there already
        }
        if let Some(lease) = &job.lease {
            top_token = top_token.max(lease.token.0);
        }
        changes.moved(&job.queue, group, None, Some(job.state));
        inserted += 1;
    }
    changes.flush(&w.conn)?;
    // Tokens handed out from now on are above every copied lease.
    w.next_token = w.next_token.max(top_token + 1);
    Ok(inserted)
}

/// Inserts `job` unless its id exists; says whether it did.
fn insert(w: &Writer, job: &Job, group: Option<&str>) -> StoreResult<bool> {
    let retry = job.retry.as_ref().map(json).transpose()?;
    let tags = (!job.tags.is_empty())
        .then(|| json(&job.tags))
        .transpose()?;
    let errors = (!job.errors.is_empty())
        .then(|| json(&job.errors))
        .transpose()?;
    let progress = job.progress.as_ref().map(json).transpose()?;
    let result = job.result.as_ref().map(json).transpose()?;
    let lease = job.lease.as_ref();
    let inserted = w
        .conn
        .prepare_cached(
            "INSERT INTO jobs (id, queue, kind, state, priority, run_at, attempt, max_attempts,
                               payload, retry, timeout_ms, lease_ms, unique_key, group_key, tags,
                               lease_token, lease_worker, lease_expires_at, cancel_requested,
                               progress, result, errors, created_at, attempted_at, finished_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                     ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25)
             ON CONFLICT (id) DO NOTHING",
        )
        .map_err(sql_err)?
        .execute(params![
            job.id.0,
            job.queue,
            job.kind,
            job.state.as_i64(),
            job.priority,
            micros(job.run_at),
            job.attempt,
            job.max_attempts,
            json(&job.payload)?,
            retry,
            job.timeout_ms.map(ms_i64),
            job.lease_ms.map(ms_i64),
            job.unique_key,
            group,
            tags,
            lease.map(|l| l.token.0),
            lease.map(|l| l.worker_id.as_str()),
            lease.map(|l| micros(l.expires_at)),
            job.cancel_requested,
            progress,
            result,
            errors,
            micros(job.created_at),
            job.attempted_at.map(micros),
            job.finished_at.map(micros),
        ])
        .map_err(sql_err)?;
    Ok(inserted == 1)
}

/// See `Store::queue_import_totals`.
pub(crate) fn totals(w: &mut Writer, queue: &str, t: Throughput) -> StoreResult<()> {
    w.queue(queue)?;
    let counters = [
        t.enqueued,
        t.succeeded,
        t.failed,
        t.retried,
        t.dead,
        t.cancelled,
        t.lease_expired,
    ]
    .map(|n| i64::try_from(n).unwrap_or(i64::MAX));
    w.conn
        .prepare_cached(
            "UPDATE queues SET t_enqueued = max(t_enqueued, ?2), t_succeeded = max(t_succeeded, ?3),
                    t_failed = max(t_failed, ?4), t_retried = max(t_retried, ?5),
                    t_dead = max(t_dead, ?6), t_cancelled = max(t_cancelled, ?7),
                    t_lease_expired = max(t_lease_expired, ?8)
             WHERE name = ?1",
        )
        .map_err(sql_err)?
        .execute(params![
            queue,
            counters[0],
            counters[1],
            counters[2],
            counters[3],
            counters[4],
            counters[5],
            counters[6]
        ])
        .map_err(sql_err)?;
    Ok(())
}

/// See `Store::cron_import`.
pub(crate) fn cron(w: &mut Writer, entry: CronEntry) -> StoreResult<()> {
    let schedule = &entry.schedule;
    w.queue(&schedule.queue)?;
    w.conn
        .execute(
            "INSERT INTO cron (name, schedule, last_fired_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET schedule = excluded.schedule,
                 last_fired_at = excluded.last_fired_at",
            params![schedule.name, json(schedule)?, micros(entry.last_fired_at)],
        )
        .map_err(sql_err)?;
    Ok(())
}
