//! Operator actions: queue settings and pause, cancel, run-again / replay, and the
//! dead-letter replay and purge. Each is one transaction that locks the job rows it moves
//! before the count rows it changes.

use std::time::Duration;

use deadpool_postgres::GenericClient;
use flotilla_core::{Event, Job, JobId, JobState, QueueConfig, transition};
use flotilla_store::{DeadParams, JobCancelParams, JobRetryParams, StoreError};

use crate::PgStore;
use crate::counts::{COUNTS, NO_COUNTERS, WOKEN};
use crate::error::PgError;
use crate::row::{JOB_COLUMNS, count, get, job_from_row, json, state, state_col};
use crate::wakeup::Woken;

/// The default batch of a dead-letter action without a limit.
const DEFAULT_DEAD_LIMIT: u32 = 1000;

/// See `Store::queue_upsert`. The queue row is locked `FOR UPDATE` first, which waits for
/// enqueues in flight (they hold `KEY SHARE` on it) and holds off new ones, so a queue
/// switched to grouping re-keys every live job, including those just enqueued.
pub(crate) async fn queue_upsert(s: &PgStore, config: &QueueConfig) -> Result<(), PgError> {
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let limited = config.has_limits() || config.claims_by_group();
    let max_attempts = i32::try_from(config.retry.max_attempts()).unwrap_or(i32::MAX);
    let mut c = s.client().await?;
    let tx = c.transaction().await?;
    let stmt = tx
        .prepare_cached("SELECT grouped FROM queues WHERE name = $1 FOR UPDATE")
        .await?;
    let (existed, was_grouped) = match tx.query_opt(&stmt, &[&config.name]).await? {
        Some(r) => (true, get::<bool>(&r, 0)?),
        None => (false, false),
    };
    let stmt = tx
        .prepare_cached(
            "INSERT INTO queues (name, config, paused, grouped, limited, lease_ms, timeout_ms, max_attempts)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (name) DO UPDATE SET config = excluded.config, paused = excluded.paused,
                grouped = excluded.grouped, limited = excluded.limited,
                lease_ms = excluded.lease_ms, timeout_ms = excluded.timeout_ms,
                max_attempts = excluded.max_attempts, bucket_tokens = NULL, bucket_at = NULL",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &config.name,
            &json(config)?,
            &config.paused,
            &config.claims_by_group(),
            &limited,
            &ms(config.lease),
            &config.timeout.map(ms),
            &max_attempts,
        ],
    )
    .await?;
    if config.claims_by_group() && !was_grouped {
        // Live jobs without a key join the group "" so round-robin claims can see them.
        let stmt = tx
            .prepare_cached(
                "UPDATE jobs SET group_key = ''
                 WHERE queue = $1 AND group_key IS NULL AND state IN (0, 1, 2)",
            )
            .await?;
        tx.execute(&stmt, &[&config.name]).await?;
        let stmt = tx
            .prepare_cached("DELETE FROM job_groups WHERE queue = $1")
            .await?;
        tx.execute(&stmt, &[&config.name]).await?;
        let stmt = tx
            .prepare_cached(
                "INSERT INTO job_groups (queue, group_key, available, running)
                 SELECT queue, group_key, count(*) FILTER (WHERE state = 1),
                        count(*) FILTER (WHERE state = 2)
                 FROM jobs
                 WHERE queue = $1 AND group_key IS NOT NULL AND state IN (1, 2)
                 GROUP BY queue, group_key",
            )
            .await?;
        tx.execute(&stmt, &[&config.name]).await?;
    }
    tx.commit().await?;
    if existed && !config.paused {
        // Resumed, or a limit raised: waiting jobs may be claimable now.
        let mut woken = Woken::default();
        woken.add(&config.name);
        woken.send(&c).await;
    }
    Ok(())
}

/// See `Store::queue_set_paused`: the `paused` column is the truth (the stored settings
/// are read back with it). Resuming announces the queue (see `wakeup`).
pub(crate) async fn queue_set_paused(s: &PgStore, name: &str, paused: bool) -> Result<(), PgError> {
    let c = s.client().await?;
    let stmt = c
        .prepare_cached("UPDATE queues SET paused = $2 WHERE name = $1")
        .await?;
    if c.execute(&stmt, &[&name, &paused]).await? == 0 {
        return Err(StoreError::QueueNotFound(name.to_owned()).into());
    }
    if !paused {
        let mut woken = Woken::default();
        woken.add(name);
        woken.send(&c).await;
    }
    Ok(())
}

/// A job row locked for an operator action.
struct Found {
    state: JobState,
}

async fn lock_job<C: GenericClient>(c: &C, id: JobId) -> Result<Found, PgError> {
    let stmt = c
        .prepare_cached("SELECT state FROM jobs WHERE id = $1 FOR UPDATE")
        .await?;
    match c.query_opt(&stmt, &[&id.0]).await? {
        Some(r) => Ok(Found {
            state: state(get(&r, 0)?)?,
        }),
        None => Err(StoreError::JobNotFound(id).into()),
    }
}

async fn read_job<C: GenericClient>(c: &C, id: JobId) -> Result<Job, PgError> {
    let stmt = c
        .prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
        .await?;
    match c.query_opt(&stmt, &[&id.0]).await? {
        Some(r) => job_from_row(&r, 0),
        None => Err(StoreError::JobNotFound(id).into()),
    }
}

/// See `Store::job_cancel`.
pub(crate) async fn cancel(s: &PgStore, p: &JobCancelParams) -> Result<Job, PgError> {
    let mut c = s.client().await?;
    let tx = c.transaction().await?;
    let found = lock_job(&tx, p.job_id).await?;
    if found.state == JobState::Running {
        transition(found.state, Event::RequestCancel)?;
        let stmt = tx
            .prepare_cached("UPDATE jobs SET cancel_requested = true WHERE id = $1")
            .await?;
        tx.execute(&stmt, &[&p.job_id.0]).await?;
    } else {
        let to = transition(found.state, Event::Cancel)?;
        let stmt = tx
            .prepare_cached(&format!(
                "WITH cancelled AS (
                    UPDATE jobs j SET state = $2, finished_at = $3 WHERE j.id = $1
                    RETURNING j.queue, j.group_key
                ),
                moved AS (
                    SELECT queue, group_key, $4::smallint AS from_state, $2::smallint AS to_state,
                           0 AS enq, 0 AS succ, 0 AS failed, 0 AS retried, 0 AS dead,
                           1 AS cancelled, 0 AS lease_expired
                    FROM cancelled
                ){COUNTS}
                SELECT count(*) FROM cancelled"
            ))
            .await?;
        tx.query_one(
            &stmt,
            &[&p.job_id.0, &state_col(to), &p.now, &state_col(found.state)],
        )
        .await?;
    }
    let job = read_job(&tx, p.job_id).await?;
    tx.commit().await?;
    Ok(job)
}

/// Replays the locked dead or cancelled jobs `ids` (each in state `from`): back to
/// `available` now with attempts reset and error history kept; in a grouped queue a job
/// without a key joins the group "". Returns how many, and adds their queues to `woken`.
async fn replay<C: GenericClient>(
    c: &C,
    ids: &[i64],
    from: &[i16],
    now: flotilla_core::Timestamp,
    woken: &mut Woken,
) -> Result<u64, PgError> {
    let stmt = c
        .prepare_cached(&format!(
            "WITH input AS (SELECT * FROM unnest($1::bigint[], $2::smallint[]) AS t(id, from_state)),
            q AS (
                SELECT name, grouped FROM queues
                WHERE name IN (SELECT queue FROM jobs WHERE id = ANY($1::bigint[]))
                ORDER BY name FOR KEY SHARE
            ),
            replayed AS (
                UPDATE jobs j SET state = 1, attempt = 0, run_at = $3, finished_at = NULL,
                       cancel_requested = false,
                       group_key = coalesce(j.group_key, CASE WHEN q.grouped THEN '' END)
                FROM input i, q
                WHERE j.id = i.id AND q.name = j.queue AND j.state = i.from_state
                RETURNING j.queue, j.group_key, i.from_state
            ),
            moved AS (
                SELECT queue, group_key, from_state, 1::smallint AS to_state, {NO_COUNTERS}
                FROM replayed
            ){COUNTS}
            SELECT count(*), {WOKEN} FROM replayed"
        ))
        .await?;
    let row = c.query_one(&stmt, &[&ids, &from, &now]).await?;
    woken.read(std::slice::from_ref(&row), 1)?;
    Ok(count(get(&row, 0)?))
}

/// See `Store::job_retry`.
pub(crate) async fn retry(s: &PgStore, p: &JobRetryParams) -> Result<Job, PgError> {
    let mut c = s.client().await?;
    let tx = c.transaction().await?;
    let found = lock_job(&tx, p.job_id).await?;
    let event = if found.state == JobState::Scheduled {
        Event::Promote
    } else {
        Event::Replay
    };
    transition(found.state, event)?;
    let mut woken = Woken::default();
    if event == Event::Promote {
        let stmt = tx
            .prepare_cached(&format!(
                "WITH promoted AS (
                    UPDATE jobs j SET state = 1, run_at = $2 WHERE j.id = $1
                    RETURNING j.queue, j.group_key
                ),
                moved AS (
                    SELECT queue, group_key, 0::smallint AS from_state, 1::smallint AS to_state,
                           {NO_COUNTERS}
                    FROM promoted
                ){COUNTS}
                SELECT count(*), {WOKEN} FROM promoted"
            ))
            .await?;
        let row = tx.query_one(&stmt, &[&p.job_id.0, &p.now]).await?;
        woken.read(std::slice::from_ref(&row), 1)?;
    } else {
        let from = [state_col(found.state)];
        replay(&tx, &[p.job_id.0], &from, p.now, &mut woken).await?;
    }
    let job = read_job(&tx, p.job_id).await?;
    tx.commit().await?;
    woken.send(&c).await;
    Ok(job)
}

/// The dead jobs chosen by `p`, locked (skipping any another transaction holds): the named
/// ones, or the oldest by `finished_at`, queue by queue in name order.
async fn dead_jobs<C: GenericClient>(c: &C, p: &DeadParams) -> Result<Vec<i64>, PgError> {
    let limit = if p.limit == 0 {
        DEFAULT_DEAD_LIMIT
    } else {
        p.limit
    };
    let rows = if p.ids.is_empty() {
        if let Some(q) = &p.queue {
            let stmt = c
                .prepare_cached("SELECT 1 FROM queues WHERE name = $1")
                .await?;
            if c.query_opt(&stmt, &[q]).await?.is_none() {
                return Err(StoreError::QueueNotFound(q.clone()).into());
            }
        }
        let stmt = c
            .prepare_cached(
                "SELECT d.id FROM (
                    SELECT name FROM queues WHERE $1::text IS NULL OR name = $1 ORDER BY name) q
                 CROSS JOIN LATERAL (
                    SELECT id FROM jobs
                    WHERE queue = q.name AND state = 5 AND finished_at IS NOT NULL
                    ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED) d
                 LIMIT $2",
            )
            .await?;
        c.query(&stmt, &[&p.queue, &i64::from(limit)]).await?
    } else {
        let ids: Vec<i64> = p.ids.iter().take(limit as usize).map(|id| id.0).collect();
        let stmt = c
            .prepare_cached(
                "SELECT id FROM jobs WHERE id = ANY($1::bigint[]) AND state = 5
                    AND ($2::text IS NULL OR queue = $2)
                 ORDER BY id FOR UPDATE SKIP LOCKED",
            )
            .await?;
        c.query(&stmt, &[&ids, &p.queue]).await?
    };
    rows.iter().map(|r| get(r, 0)).collect()
}

/// See `Store::dead_replay`.
pub(crate) async fn dead_replay(s: &PgStore, p: &DeadParams) -> Result<u64, PgError> {
    let mut c = s.client().await?;
    let tx = c.transaction().await?;
    let ids = dead_jobs(&tx, p).await?;
    let mut woken = Woken::default();
    let n = if ids.is_empty() {
        0
    } else {
        let from = vec![state_col(JobState::Dead); ids.len()];
        replay(&tx, &ids, &from, p.now, &mut woken).await?
    };
    tx.commit().await?;
    woken.send(&c).await;
    Ok(n)
}

/// See `Store::dead_purge`.
pub(crate) async fn dead_purge(s: &PgStore, p: &DeadParams) -> Result<u64, PgError> {
    let mut c = s.client().await?;
    let tx = c.transaction().await?;
    let ids = dead_jobs(&tx, p).await?;
    let mut n = 0;
    if !ids.is_empty() {
        let stmt = tx
            .prepare_cached(&format!(
                "WITH gone AS (
                    DELETE FROM jobs WHERE id = ANY($1::bigint[]) AND state = 5
                    RETURNING queue
                ),
                moved AS (
                    SELECT queue, NULL::text AS group_key, 5::smallint AS from_state,
                           NULL::smallint AS to_state, {NO_COUNTERS}
                    FROM gone
                ){COUNTS}
                SELECT count(*) FROM gone"
            ))
            .await?;
        let row = tx.query_one(&stmt, &[&ids]).await?;
        n = count(get(&row, 0)?);
    }
    tx.commit().await?;
    Ok(n)
}
