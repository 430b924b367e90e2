//! Enqueue: validation and serialization happen on the caller's task, so the writer thread
//! only runs the inserts.

use flotilla_core::{JobId, JobState, NewJob, Timestamp, check_payload_size};
use flotilla_store::{InsertedJob, JobInsertManyParams, StoreError, StoreResult};
use rusqlite::{OptionalExtension, params};

use crate::counts::{Changes, Counter};
use crate::row::{json, micros};
use crate::sql_err;
use crate::writer::Writer;

/// A batch checked and serialized, ready for the writer.
pub(crate) struct Prepared {
    jobs: Vec<PreparedJob>,
    now: Timestamp,
}

struct PreparedJob {
    job: NewJob,
    payload: String,
    retry: Option<String>,
    tags: Option<String>,
}

/// Validates every job of the batch (the whole batch is refused if one is invalid) and
/// serializes its JSON columns.
pub(crate) fn prepare(
    params: JobInsertManyParams,
    max_payload_bytes: usize,
) -> StoreResult<Prepared> {
    let jobs = params
        .jobs
        .into_iter()
        .map(|job| {
            job.validate()?;
            let payload = json(&job.payload)?;
            check_payload_size(payload.len(), max_payload_bytes)?;
            let retry = job.retry.as_ref().map(json).transpose()?;
            let tags = if job.tags.is_empty() {
                None
            } else {
                Some(json(&job.tags)?)
            };
            Ok(PreparedJob {
                job,
                payload,
                retry,
                tags,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Prepared {
        jobs,
        now: params.now,
    })
}

/// Inserts a prepared batch, returning live duplicates for taken unique keys.
pub(crate) fn insert_many(w: &mut Writer, batch: Prepared) -> StoreResult<Vec<InsertedJob>> {
    let now = micros(batch.now);
    let mut changes = Changes::default();
    let mut out = Vec::with_capacity(batch.jobs.len());
    let mut insert = w
        .conn
        .prepare_cached(
            "INSERT INTO jobs (queue, kind, state, priority, run_at, max_attempts, payload, retry,
                               timeout_ms, lease_ms, unique_key, group_key, tags, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        )
        .map_err(sql_err)?;
    for p in &batch.jobs {
        let job = &p.job;
        let queue = w
            .queues
            .get(&job.queue)
            .ok_or_else(|| StoreError::QueueNotFound(job.queue.clone()))?;
        if let Some(key) = &job.unique_key
            && let Some(existing) = live_with_key(&w.conn, &job.queue, key)?
        {
            out.push(existing);
            continue;
        }
        let max_attempts = job
            .max_attempts
            .or_else(|| job.retry.as_ref().map(|r| r.max_attempts()))
            .unwrap_or_else(|| queue.retry.max_attempts());
        let run_at = micros(job.first_run_at(batch.now));
        let state = if run_at > now {
            JobState::Scheduled
        } else {
            JobState::Available
        };
        // In a grouped queue, jobs without a key form the group "".
        let group = job
            .group_key
            .as_deref()
            .or(queue.claims_by_group().then_some(""));
        insert
            .execute(params![
                job.queue,
                job.kind,
                state.as_i64(),
                job.priority,
                run_at,
                max_attempts,
                p.payload,
                p.retry,
                job.timeout_ms.map(crate::row::ms_i64),
                job.lease_ms.map(crate::row::ms_i64),
                job.unique_key,
                group,
                p.tags,
                now,
            ])
            .map_err(sql_err)?;
        let id = JobId(w.conn.last_insert_rowid());
        changes.moved(&job.queue, group, None, Some(state));
        changes.count(&job.queue, Counter::Enqueued, 1);
        out.push(InsertedJob {
            id,
            state,
            duplicate: false,
        });
    }
    drop(insert);
    changes.flush(&w.conn)?;
    Ok(out)
}

fn live_with_key(
    conn: &rusqlite::Connection,
    queue: &str,
    key: &str,
) -> StoreResult<Option<InsertedJob>> {
    conn.prepare_cached(
        "SELECT id, state FROM jobs INDEXED BY jobs_unique_key
         WHERE queue = ?1 AND unique_key = ?2 AND unique_key IS NOT NULL AND state IN (0, 1, 2)",
    )
    .map_err(sql_err)?
    .query_row(params![queue, key], |r| {
        let state: i64 = r.get(1)?;
        Ok(InsertedJob {
            id: JobId(r.get(0)?),
            state: JobState::from_i64(state).unwrap_or(JobState::Available),
            duplicate: true,
        })
    })
    .optional()
    .map_err(sql_err)
}
