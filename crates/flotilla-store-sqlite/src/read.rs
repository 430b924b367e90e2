//! Reads: jobs, lists, queue settings and statistics, cron schedules. They run on read
//! connections (or the writer's, inside a write), never blocking the writer.

use std::time::Duration;

use flotilla_core::{Job, JobId, QueueConfig, Timestamp};
use flotilla_store::{
    CronEntry, JobListParams, JobPage, QueueStats, StateCounts, StoreError, StoreResult, Throughput,
};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, params};

use crate::row::{JOB_COLUMNS, from_micros, job_from_row, micros};
use crate::sql_err;

const MAX_PAGE: u32 = 1000;
const DEFAULT_PAGE: u32 = 100;

/// One job.
pub(crate) fn job(conn: &Connection, id: JobId) -> StoreResult<Job> {
    conn.prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"))
        .map_err(sql_err)?
        .query_row([id.0], job_from_row)
        .optional()
        .map_err(sql_err)?
        .ok_or(StoreError::JobNotFound(id))
}

/// A page of jobs matching every filter, newest first.
pub(crate) fn job_list(conn: &Connection, p: &JobListParams) -> StoreResult<JobPage> {
    let limit = match p.limit {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    };
    let mut sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE 1 = 1");
    let mut args: Vec<SqlValue> = Vec::new();
    let mut filter = |clause: &str, value: SqlValue| {
        args.push(value);
        sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
    };
    if let Some(q) = &p.queue {
        filter(" AND queue = ?", q.clone().into());
    }
    if let Some(s) = p.state {
        filter(" AND state = ?", s.as_i64().into());
    }
    if let Some(k) = &p.kind {
        filter(" AND kind = ?", k.clone().into());
    }
    for t in &p.tags {
        filter(
            " AND EXISTS (SELECT 1 FROM json_each(jobs.tags) WHERE value = ?)",
            t.clone().into(),
        );
    }
    if let Some(t) = p.created_after {
        filter(" AND created_at >= ?", micros(t).into());
    }
    if let Some(t) = p.created_before {
        filter(" AND created_at < ?", micros(t).into());
    }
    if let Some(c) = p.cursor {
        filter(" AND id < ?", c.0.into());
    }
    filter(" ORDER BY id DESC LIMIT ?", i64::from(limit + 1).into());
    let mut jobs = conn
        .prepare(&sql)
        .map_err(sql_err)?
        .query_map(rusqlite::params_from_iter(args), job_from_row)
        .map_err(sql_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql_err)?;
    let more = jobs.len() > limit as usize;
    jobs.truncate(limit as usize);
    let next = if more {
        jobs.last().map(|j| j.id)
    } else {
        None
    };
    Ok(JobPage { jobs, next })
}

/// Every queue's settings, by name.
pub(crate) fn queue_configs(conn: &Connection) -> StoreResult<Vec<QueueConfig>> {
    let texts: Vec<String> = conn
        .prepare_cached("SELECT config FROM queues ORDER BY name")
        .map_err(sql_err)?
        .query_map([], |r| r.get(0))
        .map_err(sql_err)?
        .collect::<Result<_, _>>()
        .map_err(sql_err)?;
    texts.iter().map(|t| parse_config(t)).collect()
}

/// One queue's settings.
pub(crate) fn queue_config(conn: &Connection, name: &str) -> StoreResult<QueueConfig> {
    let text: String = conn
        .prepare_cached("SELECT config FROM queues WHERE name = ?1")
        .map_err(sql_err)?
        .query_row([name], |r| r.get(0))
        .optional()
        .map_err(sql_err)?
        .ok_or_else(|| StoreError::QueueNotFound(name.into()))?;
    parse_config(&text)
}

fn parse_config(text: &str) -> StoreResult<QueueConfig> {
    serde_json::from_str(text).map_err(|e| StoreError::Internal(format!("queue config: {e}")))
}

/// Statistics of one queue or all, by name.
pub(crate) fn queue_stats(
    conn: &Connection,
    queue: Option<&str>,
    now: Timestamp,
) -> StoreResult<Vec<QueueStats>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT config, n_scheduled, n_available, n_running, n_succeeded, n_cancelled, n_dead,
                    t_enqueued, t_succeeded, t_failed, t_retried, t_dead, t_cancelled, t_lease_expired
             FROM queues WHERE ?1 IS NULL OR name = ?1 ORDER BY name",
        )
        .map_err(sql_err)?;
    let rows = stmt
        .query_map([queue], |r| {
            let n = |i: usize| r.get::<_, i64>(i).map(|v| v.max(0) as u64);
            let counts = StateCounts {
                scheduled: n(1)?,
                available: n(2)?,
                running: n(3)?,
                succeeded: n(4)?,
                cancelled: n(5)?,
                dead: n(6)?,
            };
            let totals = Throughput {
                enqueued: n(7)?,
                succeeded: n(8)?,
                failed: n(9)?,
                retried: n(10)?,
                dead: n(11)?,
                cancelled: n(12)?,
                lease_expired: n(13)?,
            };
            Ok((r.get::<_, String>(0)?, counts, totals))
        })
        .map_err(sql_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql_err)?;
    if rows.is_empty()
        && let Some(q) = queue
    {
        return Err(StoreError::QueueNotFound(q.into()));
    }
    rows.into_iter()
        .map(|(config, counts, totals)| {
            let config = parse_config(&config)?;
            let oldest = oldest_available(conn, &config.name)?;
            Ok(QueueStats {
                oldest_available_age: oldest.map(|t| (now - t).to_std().unwrap_or(Duration::ZERO)),
                queue: config.name,
                paused: config.paused,
                counts,
                totals,
            })
        })
        .collect()
}

/// The run_at of the queue's oldest available job: one index seek per priority.
fn oldest_available(conn: &Connection, queue: &str) -> StoreResult<Option<Timestamp>> {
    let us: Option<i64> = conn
        .prepare_cached(
            "WITH p(v) AS (VALUES (0), (1), (2), (3), (4), (5), (6), (7), (8), (9))
             SELECT min((SELECT run_at FROM jobs INDEXED BY jobs_available
                         WHERE state = 1 AND queue = ?1 AND priority = p.v ORDER BY run_at LIMIT 1))
             FROM p",
        )
        .map_err(sql_err)?
        .query_row(params![queue], |r| r.get(0))
        .map_err(sql_err)?;
    Ok(us.map(from_micros))
}

/// Every cron schedule, by name.
pub(crate) fn cron_list(conn: &Connection) -> StoreResult<Vec<CronEntry>> {
    let rows: Vec<(String, i64)> = conn
        .prepare_cached("SELECT schedule, last_fired_at FROM cron ORDER BY name")
        .map_err(sql_err)?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(sql_err)?
        .collect::<Result<_, _>>()
        .map_err(sql_err)?;
    rows.iter()
        .map(|(text, last)| crate::cron::schedule_from(text, *last))
        .collect()
}
