//! Operator actions: queue settings and pause, cancel, run-again / replay, and the
//! dead-letter replay and purge.

use flotilla_core::{Event, Job, JobId, JobState, QueueConfig, transition};
use flotilla_store::{DeadParams, JobCancelParams, JobRetryParams, StoreError, StoreResult};
use rusqlite::{Connection, OptionalExtension, params};

use crate::counts::{Changes, Counter, rebuild_groups};
use crate::row::{json, micros};
use crate::sql_err;
use crate::writer::Writer;

/// The default batch of a dead-letter action without a limit.
const DEFAULT_DEAD_LIMIT: u32 = 1000;

/// See `Store::queue_upsert`.
pub(crate) fn queue_upsert(w: &mut Writer, config: QueueConfig) -> StoreResult<()> {
    let was_grouped = w
        .queues
        .get(&config.name)
        .is_some_and(QueueConfig::claims_by_group);
    w.conn
        .execute(
            "INSERT INTO queues (name, config) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET config = excluded.config",
            params![config.name, json(&config)?],
        )
        .map_err(sql_err)?;
    if config.claims_by_group() && !was_grouped {
        // Live jobs without a key join the group "" so round-robin claims can see them.
        w.conn
            .execute(
                "UPDATE jobs SET group_key = '' WHERE queue = ?1 AND group_key IS NULL AND state IN (0, 1, 2)",
                [&config.name],
            )
            .map_err(sql_err)?;
        rebuild_groups(&w.conn, &config.name)?;
    }
    w.buckets.remove(&config.name);
    w.queues.insert(config.name.clone(), config);
    Ok(())
}

/// See `Store::queue_set_paused`.
pub(crate) fn queue_set_paused(w: &mut Writer, name: &str, paused: bool) -> StoreResult<()> {
    let mut config = w.queue(name)?.clone();
    config.paused = paused;
    w.conn
        .execute(
            "UPDATE queues SET config = ?2 WHERE name = ?1",
            params![name, json(&config)?],
        )
        .map_err(sql_err)?;
    w.queues.insert(name.to_owned(), config);
    Ok(())
}

struct Found {
    state: JobState,
    queue: String,
    group: Option<String>,
}

fn find(conn: &Connection, id: JobId) -> StoreResult<Found> {
    conn.prepare_cached("SELECT state, queue, group_key FROM jobs WHERE id = ?1")
        .map_err(sql_err)?
        .query_row([id.0], |r| {
            let state: i64 = r.get(0)?;
            Ok(Found {
                state: JobState::from_i64(state).unwrap_or(JobState::Dead),
                queue: r.get(1)?,
                group: r.get(2)?,
            })
        })
        .optional()
        .map_err(sql_err)?
        .ok_or(StoreError::JobNotFound(id))
}

/// See `Store::job_cancel`.
pub(crate) fn cancel(w: &mut Writer, p: JobCancelParams) -> StoreResult<Job> {
    let found = find(&w.conn, p.job_id)?;
    if found.state == JobState::Running {
        transition(found.state, Event::RequestCancel)?;
        w.conn
            .execute(
                "UPDATE jobs SET cancel_requested = 1 WHERE id = ?1",
                [p.job_id.0],
            )
            .map_err(sql_err)?;
    } else {
        let to = transition(found.state, Event::Cancel)?;
        w.conn
            .execute(
                "UPDATE jobs SET state = ?2, finished_at = ?3 WHERE id = ?1",
                params![p.job_id.0, to.as_i64(), micros(p.now)],
            )
            .map_err(sql_err)?;
        let mut changes = Changes::default();
        changes.moved(
            &found.queue,
            found.group.as_deref(),
            Some(found.state),
            Some(to),
        );
        changes.count(&found.queue, Counter::Cancelled, 1);
        changes.flush(&w.conn)?;
    }
    crate::read::job(&w.conn, p.job_id)
}

/// See `Store::job_retry`.
pub(crate) fn retry(w: &mut Writer, p: JobRetryParams) -> StoreResult<Job> {
    let found = find(&w.conn, p.job_id)?;
    let event = if found.state == JobState::Scheduled {
        Event::Promote
    } else {
        Event::Replay
    };
    let to = transition(found.state, event)?;
    let mut changes = Changes::default();
    if event == Event::Promote {
        w.conn
            .execute(
                "UPDATE jobs SET state = 1, run_at = ?2 WHERE id = ?1",
                params![p.job_id.0, micros(p.now)],
            )
            .map_err(sql_err)?;
        changes.moved(
            &found.queue,
            found.group.as_deref(),
            Some(found.state),
            Some(to),
        );
    } else {
        replay_one(
            w,
            p.job_id.0,
            &found.queue,
            found.group.as_deref(),
            found.state,
            micros(p.now),
            &mut changes,
        )?;
    }
    changes.flush(&w.conn)?;
    crate::read::job(&w.conn, p.job_id)
}

/// Puts a dead or cancelled job back to `available` with its attempts reset.
fn replay_one(
    w: &Writer,
    id: i64,
    queue: &str,
    group: Option<&str>,
    from: JobState,
    now: i64,
    changes: &mut Changes,
) -> StoreResult<()> {
    let grouped = w
        .queues
        .get(queue)
        .is_some_and(QueueConfig::claims_by_group);
    let group = group.or(grouped.then_some(""));
    w.conn
        .prepare_cached(
            "UPDATE jobs SET state = 1, attempt = 0, run_at = ?2, finished_at = NULL,
                    cancel_requested = 0, group_key = ?3
             WHERE id = ?1",
        )
        .map_err(sql_err)?
        .execute(params![id, now, group])
        .map_err(sql_err)?;
    changes.moved(queue, group, Some(from), Some(JobState::Available));
    Ok(())
}

/// Dead jobs chosen by `p`: (id, queue, group), oldest first.
fn dead_jobs(w: &Writer, p: &DeadParams) -> StoreResult<Vec<(i64, String, Option<String>)>> {
    let limit = if p.limit == 0 {
        DEFAULT_DEAD_LIMIT
    } else {
        p.limit
    } as usize;
    let mut out = Vec::new();
    if !p.ids.is_empty() {
        let mut stmt = w
            .conn
            .prepare_cached("SELECT queue, group_key FROM jobs WHERE id = ?1 AND state = 5 AND (?2 IS NULL OR queue = ?2)")
            .map_err(sql_err)?;
        for id in p.ids.iter().take(limit) {
            let row = stmt
                .query_row(params![id.0, p.queue], |r| Ok((id.0, r.get(0)?, r.get(1)?)))
                .optional()
                .map_err(sql_err)?;
            out.extend(row);
        }
        return Ok(out);
    }
    let mut queues: Vec<&String> = match &p.queue {
        Some(q) => vec![w.queue(q).map(|c| &c.name)?],
        None => w.queues.keys().collect(),
    };
    queues.sort();
    let mut stmt = w
        .conn
        .prepare_cached(
            "SELECT id, queue, group_key FROM jobs INDEXED BY jobs_finished
             WHERE queue = ?1 AND state = 5 AND finished_at IS NOT NULL ORDER BY finished_at LIMIT ?2",
        )
        .map_err(sql_err)?;
    for queue in queues {
        let left = limit - out.len();
        if left == 0 {
            break;
        }
        let rows = stmt
            .query_map(params![queue, left as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(sql_err)?;
        for row in rows {
            out.push(row.map_err(sql_err)?);
        }
    }
    Ok(out)
}

/// See `Store::dead_replay`.
pub(crate) fn dead_replay(w: &mut Writer, p: DeadParams) -> StoreResult<u64> {
    let jobs = dead_jobs(w, &p)?;
    let mut changes = Changes::default();
    for (id, queue, group) in &jobs {
        replay_one(
            w,
            *id,
            queue,
            group.as_deref(),
            JobState::Dead,
            micros(p.now),
            &mut changes,
        )?;
    }
    changes.flush(&w.conn)?;
    Ok(jobs.len() as u64)
}

/// See `Store::dead_purge`.
pub(crate) fn dead_purge(w: &mut Writer, p: DeadParams) -> StoreResult<u64> {
    let jobs = dead_jobs(w, &p)?;
    let mut changes = Changes::default();
    let mut delete = w
        .conn
        .prepare_cached("DELETE FROM jobs WHERE id = ?1")
        .map_err(sql_err)?;
    for (id, queue, group) in &jobs {
        delete.execute([id]).map_err(sql_err)?;
        changes.moved(queue, group.as_deref(), Some(JobState::Dead), None);
    }
    drop(delete);
    changes.flush(&w.conn)?;
    Ok(jobs.len() as u64)
}
