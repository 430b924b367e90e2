//! The bounded batches the background services run: promote due jobs, reap expired
//! leases, prune finished jobs past retention. Each walks an index in order and stops at
//! its limit, so one tick costs the same however many jobs wait.

use flotilla_core::{JobId, JobState, timeout_error};
use flotilla_store::{MaintenanceParams, PromoteReport, ReapReport, StoreResult};
use rusqlite::{Connection, params};

use crate::ack::{apply_failure, running_job};
use crate::counts::{Changes, Counter};
use crate::row::micros;
use crate::sql_err;
use crate::writer::Writer;

/// The error recorded when a lease expires.
pub(crate) const LEASE_EXPIRED: &str = "lease expired: worker lost";

/// Promotes up to `limit` due scheduled jobs of `queue`; returns how many.
pub(crate) fn promote_queue(
    conn: &Connection,
    queue: &str,
    now: i64,
    limit: u32,
    changes: &mut Changes,
) -> StoreResult<u64> {
    let mut stmt = conn
        .prepare_cached(
            "UPDATE jobs SET state = 1 WHERE id IN (
                SELECT id FROM jobs INDEXED BY jobs_scheduled
                WHERE state = 0 AND queue = ?1 AND run_at <= ?2 ORDER BY run_at LIMIT ?3)
             RETURNING group_key",
        )
        .map_err(sql_err)?;
    let groups = stmt
        .query_map(params![queue, now, limit], |r| {
            r.get::<_, Option<String>>(0)
        })
        .map_err(sql_err)?;
    let mut n = 0;
    for group in groups {
        let group = group.map_err(sql_err)?;
        changes.moved(
            queue,
            group.as_deref(),
            Some(JobState::Scheduled),
            Some(JobState::Available),
        );
        n += 1;
    }
    Ok(n)
}

/// See `Store::job_promote_due`.
pub(crate) fn promote_due(w: &mut Writer, p: MaintenanceParams) -> StoreResult<PromoteReport> {
    let mut report = PromoteReport::default();
    let mut changes = Changes::default();
    let mut queues: Vec<&String> = w.queues.keys().collect();
    queues.sort();
    for queue in queues {
        let left = u64::from(p.limit).saturating_sub(report.promoted);
        if left == 0 {
            break;
        }
        let n = promote_queue(&w.conn, queue, micros(p.now), left as u32, &mut changes)?;
        if n > 0 {
            report.promoted += n;
            report.queues.push(queue.clone());
        }
    }
    changes.flush(&w.conn)?;
    Ok(report)
}

/// See `Store::job_reap_expired`.
pub(crate) fn reap_expired(w: &mut Writer, p: MaintenanceParams) -> StoreResult<ReapReport> {
    let expired: Vec<i64> = w
        .conn
        .prepare_cached(
            "SELECT id FROM jobs INDEXED BY jobs_running WHERE state = 2 AND lease_expires_at < ?1
             ORDER BY lease_expires_at LIMIT ?2",
        )
        .map_err(sql_err)?
        .query_map(params![micros(p.now), p.limit], |r| r.get(0))
        .map_err(sql_err)?
        .collect::<Result<_, _>>()
        .map_err(sql_err)?;
    let mut report = ReapReport::default();
    let mut changes = Changes::default();
    for id in expired {
        let Some(job) = running_job(&w.conn, JobId(id), None)? else {
            continue;
        };
        // Past its deadline the attempt timed out; otherwise its worker stopped heartbeating.
        let timeout = job.timeout(w.queues.get(&job.queue));
        let error = match timeout {
            Some(t)
                if (p.now - job.started(p.now))
                    .to_std()
                    .is_ok_and(|ran| ran >= t) =>
            {
                timeout_error(t)
            }
            _ => LEASE_EXPIRED.to_owned(),
        };
        let to = apply_failure(w, &job, &error, true, p.now, &mut changes)?;
        changes.count(&job.queue, Counter::LeaseExpired, 1);
        match to {
            JobState::Dead => report.dead += 1,
            JobState::Cancelled => report.cancelled += 1,
            _ => report.retried += 1,
        }
        if to == JobState::Available && !report.queues.contains(&job.queue) {
            report.queues.push(job.queue.clone());
        }
    }
    changes.flush(&w.conn)?;
    Ok(report)
}

/// See `Store::job_prune`.
pub(crate) fn prune(w: &mut Writer, p: MaintenanceParams) -> StoreResult<u64> {
    let mut pruned = 0u64;
    let mut changes = Changes::default();
    let mut queues: Vec<_> = w.queues.values().collect();
    queues.sort_by(|a, b| a.name.cmp(&b.name));
    for q in queues {
        let r = &q.retention;
        for (state, keep) in [
            (JobState::Succeeded, r.succeeded),
            (JobState::Cancelled, r.cancelled),
            (JobState::Dead, r.dead),
        ] {
            let left = u64::from(p.limit).saturating_sub(pruned);
            if left == 0 {
                break;
            }
            let keep = chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
            let cutoff = p.now.checked_sub_signed(keep).map_or(i64::MIN, micros);
            let n = w
                .conn
                .prepare_cached(
                    "DELETE FROM jobs WHERE id IN (
                        SELECT id FROM jobs INDEXED BY jobs_finished
                        WHERE queue = ?1 AND state = ?2 AND finished_at < ?3 LIMIT ?4)",
                )
                .map_err(sql_err)?
                .execute(params![q.name, state.as_i64(), cutoff, left as i64])
                .map_err(sql_err)?;
            changes.deleted(&q.name, state, n as i64);
            pruned += n as u64;
        }
    }
    changes.flush(&w.conn)?;
    Ok(pruned)
}
