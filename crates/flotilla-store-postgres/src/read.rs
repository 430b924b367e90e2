//! Reads: jobs, lists, queue settings and statistics, cron schedules. Plain statements
//! outside any transaction; under PostgreSQL's MVCC they never block writers.

use std::time::Duration;

use flotilla_core::{Job, JobId, QueueConfig, Timestamp};
use flotilla_store::{
    CronEntry, JobListParams, JobPage, QueueStats, StateCounts, StoreError, Throughput,
};
use tokio_postgres::types::ToSql;

use crate::PgStore;
use crate::error::PgError;
use crate::row::{JOB_COLUMNS, count, get, job_from_row, state_col};

const MAX_PAGE: u32 = 1000;
const DEFAULT_PAGE: u32 = 100;

/// One job.
pub(crate) async fn job(s: &PgStore, id: JobId) -> Result<Job, PgError> {
    let c = s.client().await?;
    let stmt = c
        .prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
        .await?;
    match c.query_opt(&stmt, &[&id.0]).await? {
        Some(r) => job_from_row(&r, 0),
        None => Err(StoreError::JobNotFound(id).into()),
    }
}

/// A page of jobs matching every filter, newest first.
pub(crate) async fn job_list(s: &PgStore, p: &JobListParams) -> Result<JobPage, PgError> {
    let limit = match p.limit {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    };
    let mut sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE true");
    let mut args: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    let mut filter = |clause: &str, cast: &str, value: Box<dyn ToSql + Sync + Send>| {
        args.push(value);
        sql.push_str(&clause.replace('?', &format!("${}{cast}", args.len())));
    };
    if let Some(q) = &p.queue {
        filter(" AND queue = ?", "::text", Box::new(q.clone()));
    }
    if let Some(state) = p.state {
        filter(" AND state = ?", "::smallint", Box::new(state_col(state)));
    }
    if let Some(k) = &p.kind {
        filter(" AND kind = ?", "::text", Box::new(k.clone()));
    }
    for t in &p.tags {
        filter(" AND ? = ANY(tags)", "::text", Box::new(t.clone()));
    }
    if let Some(t) = p.created_after {
        filter(" AND created_at >= ?", "::timestamptz", Box::new(t));
    }
    if let Some(t) = p.created_before {
        filter(" AND created_at < ?", "::timestamptz", Box::new(t));
    }
    if let Some(c) = p.cursor {
        filter(" AND id < ?", "::bigint", Box::new(c.0));
    }
    filter(
        " ORDER BY id DESC LIMIT ?",
        "::bigint",
        Box::new(i64::from(limit) + 1),
    );
    let args: Vec<&(dyn ToSql + Sync)> = args
        .iter()
        .map(|a| a.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let c = s.client().await?;
    let stmt = c.prepare_cached(&sql).await?;
    let rows = c.query(&stmt, &args).await?;
    let mut jobs = rows
        .iter()
        .map(|r| job_from_row(r, 0))
        .collect::<Result<Vec<_>, _>>()?;
    let more = jobs.len() > limit as usize;
    jobs.truncate(limit as usize);
    let next = if more {
        jobs.last().map(|j| j.id)
    } else {
        None
    };
    Ok(JobPage { jobs, next })
}

/// Parses a stored queue configuration.
pub(crate) fn parse_config(text: &str) -> Result<QueueConfig, PgError> {
    serde_json::from_str(text).map_err(|e| PgError::Decode(format!("queue config: {e}")))
}

/// Every queue's settings, by name.
pub(crate) async fn queue_configs(s: &PgStore) -> Result<Vec<QueueConfig>, PgError> {
    let c = s.client().await?;
    let stmt = c
        .prepare_cached("SELECT config, paused FROM queues ORDER BY name")
        .await?;
    let rows = c.query(&stmt, &[]).await?;
    rows.iter()
        .map(|r| {
            let mut config = parse_config(&get::<String>(r, 0)?)?;
            config.paused = get(r, 1)?;
            Ok(config)
        })
        .collect()
}

/// One queue's settings.
pub(crate) async fn queue_config(s: &PgStore, name: &str) -> Result<QueueConfig, PgError> {
    let c = s.client().await?;
    let stmt = c
        .prepare_cached("SELECT config, paused FROM queues WHERE name = $1")
        .await?;
    let Some(r) = c.query_opt(&stmt, &[&name]).await? else {
        return Err(StoreError::QueueNotFound(name.into()).into());
    };
    let mut config = parse_config(&get::<String>(&r, 0)?)?;
    config.paused = get(&r, 1)?;
    Ok(config)
}

/// Statistics of one queue or all, by name: the sum of each queue's count shards (at most
/// 64 rows), plus one index seek per priority for the oldest available job.
pub(crate) async fn queue_stats(
    s: &PgStore,
    queue: Option<&str>,
    now: Timestamp,
) -> Result<Vec<QueueStats>, PgError> {
    let c = s.client().await?;
    let stmt = c
        .prepare_cached(
            "WITH q AS (SELECT name, paused FROM queues WHERE $1::text IS NULL OR name = $1),
             n AS (
                SELECT queue, sum(n_scheduled) AS s, sum(n_available) AS a, sum(n_running) AS r,
                       sum(n_succeeded) AS ok, sum(n_cancelled) AS c, sum(n_dead) AS x,
                       sum(t_enqueued) AS te, sum(t_succeeded) AS ts, sum(t_failed) AS tf,
                       sum(t_retried) AS tr, sum(t_dead) AS td, sum(t_cancelled) AS tc,
                       sum(t_lease_expired) AS tl
                FROM queue_counts WHERE queue IN (SELECT name FROM q) GROUP BY queue
             )
             SELECT q.name, q.paused,
                    coalesce(n.s, 0)::bigint, coalesce(n.a, 0)::bigint, coalesce(n.r, 0)::bigint,
                    coalesce(n.ok, 0)::bigint, coalesce(n.c, 0)::bigint, coalesce(n.x, 0)::bigint,
                    coalesce(n.te, 0)::bigint, coalesce(n.ts, 0)::bigint, coalesce(n.tf, 0)::bigint,
                    coalesce(n.tr, 0)::bigint, coalesce(n.td, 0)::bigint, coalesce(n.tc, 0)::bigint,
                    coalesce(n.tl, 0)::bigint,
                    (SELECT min(o.run_at) FROM generate_series(0, 9) AS p(priority)
                     CROSS JOIN LATERAL (
                        SELECT run_at FROM jobs
                        WHERE state = 1 AND queue = q.name AND priority = p.priority::smallint
                        ORDER BY run_at LIMIT 1) o)
             FROM q LEFT JOIN n ON n.queue = q.name ORDER BY q.name",
        )
        .await?;
    let rows = c.query(&stmt, &[&queue]).await?;
    if rows.is_empty()
        && let Some(q) = queue
    {
        return Err(StoreError::QueueNotFound(q.into()).into());
    }
    rows.iter()
        .map(|r| {
            let n = |i: usize| get::<i64>(r, i).map(count);
            let oldest: Option<Timestamp> = get(r, 15)?;
            Ok(QueueStats {
                queue: get(r, 0)?,
                paused: get(r, 1)?,
                counts: StateCounts {
                    scheduled: n(2)?,
                    available: n(3)?,
                    running: n(4)?,
                    succeeded: n(5)?,
                    cancelled: n(6)?,
                    dead: n(7)?,
                },
                oldest_available_age: oldest.map(|t| (now - t).to_std().unwrap_or(Duration::ZERO)),
                totals: Throughput {
                    enqueued: n(8)?,
                    succeeded: n(9)?,
                    failed: n(10)?,
                    retried: n(11)?,
                    dead: n(12)?,
                    cancelled: n(13)?,
                    lease_expired: n(14)?,
                },
            })
        })
        .collect()
}

/// Every cron schedule, by name.
pub(crate) async fn cron_list(s: &PgStore) -> Result<Vec<CronEntry>, PgError> {
    let c = s.client().await?;
    let stmt = c
        .prepare_cached("SELECT schedule, last_fired_at FROM cron ORDER BY name")
        .await?;
    let rows = c.query(&stmt, &[]).await?;
    rows.iter()
        .map(|r| crate::cron::entry(&get::<String>(r, 0)?, get(r, 1)?))
        .collect()
}
