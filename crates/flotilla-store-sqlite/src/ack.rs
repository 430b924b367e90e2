//! What lease holders send back: heartbeats, completions and failures. Every statement
//! matches on `(id, state = running, lease_token)`, so a stale token changes nothing.

use std::time::Duration;

use flotilla_core::{
    AttemptError, Event, FailureOutcome, JobId, JobState, LeaseToken, MAX_ERROR_BYTES, QueueConfig,
    RetryPolicy, Timestamp, lease_expiry, on_failure, transition, truncate_utf8,
};
use flotilla_store::{
    Completion, Heartbeat, ItemResults, JobCompleteManyParams, JobFailManyParams,
    JobHeartbeatParams, JobReleaseParams, StoreError, StoreResult,
};
use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};

use crate::counts::{Changes, Counter};
use crate::row::{from_micros, json, micros};
use crate::sql_err;
use crate::writer::Writer;

/// See `Store::job_heartbeat`.
pub(crate) fn heartbeat(w: &mut Writer, p: JobHeartbeatParams) -> StoreResult<Heartbeat> {
    let Some(job) = running_job(&w.conn, p.job_id, Some(p.token))? else {
        return Err(not_held(&w.conn, p.job_id, p.token));
    };
    let queue = w.queues.get(&job.queue);
    let lease = job
        .lease_ms
        .map_or_else(|| queue.map_or(QueueConfig::DEFAULT_LEASE, |q| q.lease), ms);
    let expires = lease_expiry(p.now, lease, job.started(p.now), job.timeout(queue));
    let progress = p.progress.as_ref().map(json).transpose()?;
    w.conn
        .prepare_cached("UPDATE jobs SET lease_expires_at = ?2, progress = coalesce(?3, progress) WHERE id = ?1")
        .map_err(sql_err)?
        .execute(params![p.job_id.0, micros(expires), progress])
        .map_err(sql_err)?;
    Ok(Heartbeat {
        expires_at: expires,
        cancel_requested: job.cancel_requested,
    })
}

fn ms(n: i64) -> Duration {
    Duration::from_millis(u64::try_from(n).unwrap_or(0))
}

/// See `Store::job_complete_many`. One statement completes the whole batch: the items go
/// in as a JSON array joined on the primary key (`+state` keeps SQLite from scanning the
/// running jobs instead).
pub(crate) fn complete_many(
    w: &mut Writer,
    p: JobCompleteManyParams,
) -> StoreResult<ItemResults<()>> {
    let items: Vec<(i64, i64, Option<&serde_json::Value>)> = p
        .completions
        .iter()
        .map(|c| (c.job_id.0, c.token.0, c.result.as_ref()))
        .collect();
    let mut done: HashMap<i64, (String, Option<String>)> = HashMap::with_capacity(items.len());
    {
        let mut stmt = w
            .conn
            .prepare_cached(
                "UPDATE jobs SET state = 3, finished_at = ?2,
                        result = CASE WHEN c.value ->> '$[2]' IS NULL THEN NULL ELSE c.value -> '$[2]' END
                 FROM json_each(?1) AS c
                 WHERE jobs.id = c.value ->> '$[0]' AND +jobs.state = 2 AND jobs.lease_token = c.value ->> '$[1]'
                 RETURNING jobs.id, jobs.queue, jobs.group_key",
            )
            .map_err(sql_err)?;
        let rows = stmt
            .query_map(params![json(&items)?, micros(p.now)], |r| {
                Ok((r.get(0)?, (r.get(1)?, r.get(2)?)))
            })
            .map_err(sql_err)?;
        for row in rows {
            let (id, place) = row.map_err(sql_err)?;
            done.insert(id, place);
        }
    }
    let completed: Vec<&Completion> = p
        .completions
        .iter()
        .filter(|c| done.contains_key(&c.job_id.0))
        .collect();
    crate::runs::completed(w, &completed, p.now)?;
    let mut changes = Changes::default();
    let results = p
        .completions
        .iter()
        .map(|c| match done.remove(&c.job_id.0) {
            Some((queue, group)) => {
                changes.moved(
                    &queue,
                    group.as_deref(),
                    Some(JobState::Running),
                    Some(JobState::Succeeded),
                );
                changes.count(&queue, Counter::Succeeded, 1);
                Ok(())
            }
            None => Err(not_held(&w.conn, c.job_id, c.token)),
        })
        .collect();
    changes.flush(&w.conn)?;
    Ok(results)
}

/// See `Store::job_fail_many`.
pub(crate) fn fail_many(
    w: &mut Writer,
    p: JobFailManyParams,
) -> StoreResult<ItemResults<JobState>> {
    let mut changes = Changes::default();
    let mut results = Vec::with_capacity(p.failures.len());
    for f in &p.failures {
        let held = running_job(&w.conn, f.job_id, Some(f.token))?;
        results.push(match held {
            Some(job) => Ok(apply_failure(
                w,
                &job,
                &f.error,
                f.retryable,
                p.now,
                &mut changes,
            )?),
            None => Err(not_held(&w.conn, f.job_id, f.token)),
        });
    }
    changes.flush(&w.conn)?;
    Ok(results)
}

/// See `Store::job_release`: each held job goes back to `available` with the attempt
/// undone (or to `cancelled` when cancellation was requested).
pub(crate) fn release(w: &mut Writer, p: JobReleaseParams) -> StoreResult<ItemResults<JobState>> {
    let mut changes = Changes::default();
    let mut results = Vec::with_capacity(p.leases.len());
    for &(id, token) in &p.leases {
        let Some(job) = running_job(&w.conn, id, Some(token))? else {
            results.push(Err(not_held(&w.conn, id, token)));
            continue;
        };
        let to = if job.cancel_requested {
            transition(JobState::Running, Event::AcknowledgeCancel)?
        } else {
            transition(JobState::Running, Event::Release)?
        };
        let finished = to.is_terminal().then(|| micros(p.now));
        w.conn
            .prepare_cached(
                "UPDATE jobs SET state = ?2, finished_at = ?3, attempt = max(attempt - 1, 0),
                        attempted_at = CASE WHEN attempt <= 1 THEN NULL ELSE attempted_at END,
                        lease_token = NULL, lease_worker = NULL, lease_expires_at = NULL,
                        progress = NULL
                 WHERE id = ?1",
            )
            .map_err(sql_err)?
            .execute(params![id.0, to.as_i64(), finished])
            .map_err(sql_err)?;
        changes.moved(
            &job.queue,
            job.group.as_deref(),
            Some(JobState::Running),
            Some(to),
        );
        if to == JobState::Cancelled {
            changes.count(&job.queue, Counter::Cancelled, 1);
        }
        results.push(Ok(to));
    }
    changes.flush(&w.conn)?;
    Ok(results)
}

/// What a failure needs to know of a running job.
pub(crate) struct RunningJob {
    pub(crate) id: JobId,
    pub(crate) queue: String,
    group: Option<String>,
    attempt: u32,
    max_attempts: u32,
    retry: Option<String>,
    cancel_requested: bool,
    worker: Option<String>,
    lease_ms: Option<i64>,
    timeout_ms: Option<i64>,
    attempted_at: Option<i64>,
}

impl RunningJob {
    /// When the current attempt started.
    pub(crate) fn started(&self, fallback: Timestamp) -> Timestamp {
        self.attempted_at.map_or(fallback, from_micros)
    }

    /// The attempt's timeout: the job's own, else its queue's.
    pub(crate) fn timeout(&self, queue: Option<&QueueConfig>) -> Option<Duration> {
        self.timeout_ms
            .map(ms)
            .or_else(|| queue.and_then(|q| q.timeout))
    }
}

/// The running job `id`, if its lease carries `token` (any lease when `token` is `None`).
pub(crate) fn running_job(
    conn: &Connection,
    id: JobId,
    token: Option<LeaseToken>,
) -> StoreResult<Option<RunningJob>> {
    conn.prepare_cached(
        "SELECT queue, group_key, attempt, max_attempts, retry, cancel_requested, lease_worker,
                lease_ms, timeout_ms, attempted_at
         FROM jobs WHERE id = ?1 AND state = 2 AND (?2 IS NULL OR lease_token = ?2)",
    )
    .map_err(sql_err)?
    .query_row(params![id.0, token.map(|t| t.0)], |r| {
        Ok(RunningJob {
            id,
            queue: r.get(0)?,
            group: r.get(1)?,
            attempt: r.get(2)?,
            max_attempts: r.get(3)?,
            retry: r.get(4)?,
            cancel_requested: r.get(5)?,
            worker: r.get(6)?,
            lease_ms: r.get(7)?,
            timeout_ms: r.get(8)?,
            attempted_at: r.get(9)?,
        })
    })
    .optional()
    .map_err(sql_err)
}

/// Records a failed attempt of a running job and moves it as [`on_failure`] decides.
pub(crate) fn apply_failure(
    w: &Writer,
    job: &RunningJob,
    error: &str,
    retryable: bool,
    now: Timestamp,
    changes: &mut Changes,
) -> StoreResult<JobState> {
    let policy: RetryPolicy = match &job.retry {
        Some(text) => serde_json::from_str(text)
            .map_err(|e| StoreError::Internal(format!("job {}: retry: {e}", job.id)))?,
        None => w
            .queues
            .get(&job.queue)
            .map(|q| q.retry.clone())
            .unwrap_or_default(),
    };
    let outcome = on_failure(
        job.attempt,
        job.max_attempts,
        &policy,
        retryable,
        job.cancel_requested,
        now,
        rand::random(),
    );
    let counter = match outcome {
        FailureOutcome::Retry { .. } => Counter::Retried,
        FailureOutcome::Dead => Counter::Dead,
        FailureOutcome::Cancelled => Counter::Cancelled,
    };
    let (to, run_at) = (outcome.next_state(now)?, outcome.run_at());
    let entry = AttemptError {
        attempt: job.attempt,
        at: now,
        error: truncate_utf8(error, MAX_ERROR_BYTES).to_owned(),
        worker_id: job.worker.clone(),
    };
    let finished = to.is_terminal().then(|| micros(now));
    w.conn
        .prepare_cached(
            "UPDATE jobs SET state = ?2, run_at = coalesce(?3, run_at), finished_at = ?4,
                    errors = json_insert(coalesce(errors, '[]'), '$[#]', json(?5))
             WHERE id = ?1",
        )
        .map_err(sql_err)?
        .execute(params![
            job.id.0,
            to.as_i64(),
            run_at.map(micros),
            finished,
            json(&entry)?
        ])
        .map_err(sql_err)?;
    changes.moved(
        &job.queue,
        job.group.as_deref(),
        Some(JobState::Running),
        Some(to),
    );
    changes.count(&job.queue, Counter::Failed, 1);
    changes.count(&job.queue, counter, 1);
    Ok(to)
}

/// Why `(id, token)` does not hold a lease: no such job, or another lease / state.
pub(crate) fn not_held(conn: &Connection, id: JobId, token: LeaseToken) -> StoreError {
    let state: Result<Option<i64>, _> = conn
        .prepare_cached("SELECT state FROM jobs WHERE id = ?1")
        .and_then(|mut s| s.query_row([id.0], |r| r.get(0)).optional());
    match state {
        Ok(None) => StoreError::JobNotFound(id),
        Ok(Some(n)) => StoreError::LeaseMismatch {
            job_id: id,
            token,
            state: JobState::from_i64(n).unwrap_or(JobState::Running),
        },
        Err(e) => sql_err(e),
    }
}
