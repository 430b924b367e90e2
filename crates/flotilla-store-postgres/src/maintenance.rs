//! The bounded batches the background services run: promote due jobs, reap expired
//! leases, prune finished jobs past retention. Each walks a partial index in order, stops
//! at its limit and takes its rows with `SKIP LOCKED`, so one tick costs the same however
//! many jobs wait, and the same service running on several servers at once splits the
//! work instead of queueing behind itself.

use deadpool_postgres::GenericClient;
use flotilla_core::{JobState, Timestamp, timeout_error};
use flotilla_store::{MaintenanceParams, PromoteReport, ReapReport};

use crate::PgStore;
use crate::ack::{Failures, RUNNING_COLUMNS, running_job, write_failures};
use crate::counts::{COUNTS, NO_COUNTERS, WOKEN};
use crate::error::PgError;
use crate::row::{count, get, state_col};
use crate::wakeup::Woken;

/// The error recorded when a lease expires.
pub(crate) const LEASE_EXPIRED: &str = "lease expired: worker lost";

/// Moves due scheduled jobs to available; `due` is a CTE body selecting their `id`s
/// (locked), the rest is shared.
fn promote_sql(due: &str) -> String {
    format!(
        "WITH due AS ({due}),
        promoted AS (
            UPDATE jobs j SET state = 1 FROM due WHERE j.id = due.id
            RETURNING j.queue, j.group_key
        ),
        moved AS (
            SELECT queue, group_key, 0::smallint AS from_state, 1::smallint AS to_state, {NO_COUNTERS}
            FROM promoted
        ){COUNTS}
        SELECT queue, count(*), {WOKEN} FROM promoted GROUP BY queue ORDER BY queue"
    )
}

/// Promotes up to `limit` due scheduled jobs of `queue`; returns how many, and adds the
/// queue to `woken` if any were (and the connection announces).
pub(crate) async fn promote_queue<C: GenericClient>(
    c: &C,
    queue: &str,
    now: Timestamp,
    limit: i64,
    woken: &mut Woken,
) -> Result<u64, PgError> {
    let stmt = c
        .prepare_cached(&promote_sql(
            "SELECT id FROM jobs WHERE state = 0 AND queue = $1::text AND run_at <= $2::timestamptz
             ORDER BY run_at LIMIT $3::bigint FOR UPDATE SKIP LOCKED",
        ))
        .await?;
    let rows = c.query(&stmt, &[&queue, &now, &limit]).await?;
    woken.read(&rows, 2)?;
    rows.iter().map(|r| Ok(count(get(r, 1)?))).sum()
}

/// See `Store::job_promote_due`: queue by queue in name order, through `jobs_scheduled`,
/// visiting only queues whose counts say they have scheduled jobs.
pub(crate) async fn promote_due(
    s: &PgStore,
    p: &MaintenanceParams,
) -> Result<PromoteReport, PgError> {
    let c = s.client().await?;
    let stmt = c
        .prepare_cached(&promote_sql(
            "SELECT d.id FROM (
                SELECT queue AS name FROM queue_counts GROUP BY queue HAVING sum(n_scheduled) > 0
                ORDER BY queue) q
             CROSS JOIN LATERAL (
                SELECT id FROM jobs WHERE state = 0 AND queue = q.name AND run_at <= $1::timestamptz
                ORDER BY run_at LIMIT $2::bigint FOR UPDATE SKIP LOCKED) d
             LIMIT $2::bigint",
        ))
        .await?;
    let rows = c.query(&stmt, &[&p.now, &i64::from(p.limit)]).await?;
    let mut woken = Woken::default();
    woken.read(&rows, 2)?;
    woken.send(&c).await;
    let mut report = PromoteReport::default();
    for r in &rows {
        report.queues.push(get(r, 0)?);
        report.promoted += count(get(r, 1)?);
    }
    Ok(report)
}

/// See `Store::job_reap_expired`: the expired leases, oldest expiry first, are locked with
/// `SKIP LOCKED` (two reapers take disjoint jobs), then failed like reported failures.
pub(crate) async fn reap_expired(
    s: &PgStore,
    p: &MaintenanceParams,
) -> Result<ReapReport, PgError> {
    let mut c = s.client().await?;
    let tx = c.transaction().await?;
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT {RUNNING_COLUMNS} FROM jobs j JOIN queues q ON q.name = j.queue
             WHERE j.id IN (
                SELECT id FROM jobs WHERE state = 2 AND lease_expires_at < $1::timestamptz
                ORDER BY lease_expires_at LIMIT $2::bigint FOR UPDATE SKIP LOCKED)
             ORDER BY j.lease_expires_at, j.id"
        ))
        .await?;
    let rows = tx.query(&stmt, &[&p.now, &i64::from(p.limit)]).await?;
    let mut report = ReapReport::default();
    let mut failures = Failures::default();
    for r in &rows {
        let job = running_job(r)?;
        // Past its deadline the attempt timed out; otherwise its worker stopped heartbeating.
        let error = match job.timeout() {
            Some(t)
                if (p.now - job.started(p.now))
                    .to_std()
                    .is_ok_and(|ran| ran >= t) =>
            {
                timeout_error(t)
            }
            _ => LEASE_EXPIRED.to_owned(),
        };
        let to = failures.add(&job, &error, true, p.now)?;
        match to {
            JobState::Dead => report.dead += 1,
            JobState::Cancelled => report.cancelled += 1,
            _ => report.retried += 1,
        }
        if to == JobState::Available && !report.queues.contains(&job.queue) {
            report.queues.push(job.queue.clone());
        }
    }
    let mut woken = Woken::default();
    write_failures(&tx, &failures, p.now, true, &mut woken).await?;
    tx.commit().await?;
    woken.send(&c).await;
    Ok(report)
}

/// See `Store::job_prune`: per queue in name order, per terminal state, through
/// `jobs_finished`, at most `limit` rows in all. Each delete commits with its counts on its
/// own. Group rows left with no available and no running job are removed too (bounded).
pub(crate) async fn prune(s: &PgStore, p: &MaintenanceParams) -> Result<u64, PgError> {
    let queues = crate::read::queue_configs(s).await?;
    let c = s.client().await?;
    let stmt = c
        .prepare_cached(&format!(
            "WITH gone AS (
                DELETE FROM jobs WHERE id IN (
                    SELECT id FROM jobs
                    WHERE queue = $1 AND state = $2 AND finished_at < $3 AND finished_at IS NOT NULL
                    ORDER BY finished_at LIMIT $4 FOR UPDATE SKIP LOCKED)
                RETURNING queue, state
            ),
            moved AS (
                SELECT queue, NULL::text AS group_key, state AS from_state,
                       NULL::smallint AS to_state, {NO_COUNTERS}
                FROM gone
            ){COUNTS}
            SELECT count(*) FROM gone"
        ))
        .await?;
    let mut pruned = 0u64;
    for q in &queues {
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
            let Some(cutoff) = p
                .now
                .checked_sub_signed(keep)
                .filter(|t| crate::row::in_range(*t))
            else {
                continue;
            };
            let row = c
                .query_one(
                    &stmt,
                    &[
                        &q.name,
                        &state_col(state),
                        &cutoff,
                        &i64::try_from(left).unwrap_or(i64::MAX),
                    ],
                )
                .await?;
            pruned += count(get(&row, 0)?);
        }
    }
    // Groups that emptied out: never waiting for a row another transaction holds.
    let stmt = c
        .prepare_cached(
            "DELETE FROM job_groups WHERE (queue, group_key) IN (
                SELECT queue, group_key FROM job_groups WHERE available <= 0 AND running <= 0
                LIMIT $1 FOR UPDATE SKIP LOCKED)",
        )
        .await?;
    c.execute(&stmt, &[&i64::from(p.limit.max(1))]).await?;
    Ok(pruned)
}
