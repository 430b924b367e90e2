//! Pipeline runs: creating one (its first steps enqueued in the same transaction), the
//! completion hook that enqueues the steps whose dependencies have all succeeded, and
//! reading runs back with their steps' states derived from their jobs.

use std::collections::{BTreeMap, HashMap};

use flotilla_core::{
    AttemptError, JobId, JobState, NewJob, NewRun, Run, RunId, Step, Timestamp, run_state,
    step_payload, stored_step_state, validate_run,
};
use flotilla_store::{
    Completion, JobInsertManyParams, RunCreated, RunListParams, RunPage, StoreError, StoreResult,
};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use crate::insert;
use crate::row::{from_micros, json, micros};
use crate::sql_err;
use crate::writer::Writer;

const MAX_PAGE: u32 = 100;
const DEFAULT_PAGE: u32 = 20;

/// See `Store::run_create`. `max_payload_bytes` bounds each first step's payload.
pub(crate) fn create(
    w: &mut Writer,
    run: NewRun,
    now: Timestamp,
    max_payload_bytes: usize,
) -> StoreResult<RunCreated> {
    validate_run(&run)?;
    let id: i64 = w
        .conn
        .prepare_cached(
            "INSERT INTO runs (pipeline, meta, created_at) VALUES (?1, ?2, ?3) RETURNING id",
        )
        .map_err(sql_err)?
        .query_row(params![run.pipeline, json(&run.meta)?, micros(now)], |r| {
            r.get(0)
        })
        .map_err(sql_err)?;
    let run_id = RunId(id);
    let mut queues = Vec::new();
    for (position, step) in (0i64..).zip(run.steps.iter()) {
        w.conn
            .prepare_cached(
                "INSERT INTO run_steps (run_id, position, name, after, waiting_on, job)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .map_err(sql_err)?
            .execute(params![
                id,
                position,
                step.name,
                json(&step.after)?,
                i64::try_from(step.after.len()).unwrap_or(i64::MAX),
                json(&step.job)?
            ])
            .map_err(sql_err)?;
        if step.after.is_empty() {
            let job = step_job(&step.job, run_id, &step.name, BTreeMap::new());
            let job_id = enqueue(w, job, now, max_payload_bytes)?;
            set_job(&w.conn, id, position, job_id)?;
            queues.push(step.job.queue.clone());
        }
    }
    queues.dedup();
    Ok(RunCreated { id: run_id, queues })
}

/// The job of a step, its payload carrying the run's details and `inputs`.
fn step_job(template: &NewJob, run: RunId, step: &str, inputs: BTreeMap<String, Value>) -> NewJob {
    let mut job = template.clone();
    job.payload = step_payload(&template.payload, run, step, inputs);
    job
}

fn enqueue(
    w: &mut Writer,
    job: NewJob,
    now: Timestamp,
    max_payload_bytes: usize,
) -> StoreResult<JobId> {
    let prepared = insert::prepare(
        JobInsertManyParams {
            jobs: vec![job],
            now,
        },
        max_payload_bytes,
    )?;
    let inserted = insert::insert_many(w, prepared)?;
    inserted
        .first()
        .map(|j| j.id)
        .ok_or_else(|| StoreError::Internal("a step's job was not inserted".into()))
}

fn set_job(conn: &Connection, run: i64, position: i64, job: JobId) -> StoreResult<()> {
    conn.prepare_cached(
        "UPDATE run_steps SET job_id = ?3, job = NULL, waiting_on = 0
         WHERE run_id = ?1 AND position = ?2",
    )
    .map_err(sql_err)?
    .execute(params![run, position, job.0])
    .map_err(sql_err)?;
    Ok(())
}

/// The completion hook: for each completed job that is a step of a run, keeps its result
/// and enqueues the steps that were waiting only for it. Called inside the completion's
/// transaction with the jobs just completed and their results.
pub(crate) fn completed(w: &mut Writer, done: &[&Completion], now: Timestamp) -> StoreResult<()> {
    let ids: Vec<i64> = done.iter().map(|c| c.job_id.0).collect();
    let steps: Vec<(i64, i64, String)> = {
        let mut stmt = w
            .conn
            .prepare_cached(
                "SELECT job_id, run_id, name FROM run_steps
                 WHERE job_id IN (SELECT value FROM json_each(?1))",
            )
            .map_err(sql_err)?;
        stmt.query_map([json(&ids)?], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(sql_err)?
            .collect::<Result<_, _>>()
            .map_err(sql_err)?
    };
    if steps.is_empty() {
        return Ok(());
    }
    let results: HashMap<i64, Option<&Value>> = done
        .iter()
        .map(|c| (c.job_id.0, c.result.as_ref()))
        .collect();
    for (job_id, run_id, name) in steps {
        let result = results.get(&job_id).copied().flatten();
        step_succeeded(w, run_id, &name, result, now)?;
    }
    Ok(())
}

/// Records a step's result and enqueues its successors whose dependencies all succeeded.
fn step_succeeded(
    w: &mut Writer,
    run_id: i64,
    name: &str,
    result: Option<&Value>,
    now: Timestamp,
) -> StoreResult<()> {
    let result = json(&result.cloned().unwrap_or(Value::Null))?;
    w.conn
        .prepare_cached("UPDATE run_steps SET result = ?3 WHERE run_id = ?1 AND name = ?2")
        .map_err(sql_err)?
        .execute(params![run_id, name, result])
        .map_err(sql_err)?;
    let ready: Vec<(i64, String, String)> = {
        let mut stmt = w
            .conn
            .prepare_cached(
                "UPDATE run_steps SET waiting_on = waiting_on - 1
                 WHERE run_id = ?1 AND job_id IS NULL
                   AND EXISTS (SELECT 1 FROM json_each(run_steps.after) WHERE value = ?2)
                 RETURNING position, name, job, waiting_on",
            )
            .map_err(sql_err)?;
        let rows = stmt
            .query_map(params![run_id, name], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, i64>(3)?))
            })
            .map_err(sql_err)?;
        let mut ready = Vec::new();
        for row in rows {
            let (position, step, job, waiting_on) = row.map_err(sql_err)?;
            if waiting_on == 0 {
                ready.push((position, step, job));
            }
        }
        ready
    };
    for (position, step, template) in ready {
        let template: NewJob = serde_json::from_str(&template)
            .map_err(|e| StoreError::Internal(format!("run {run_id} step {step}: {e}")))?;
        let inputs = inputs(&w.conn, run_id, &step)?;
        let job = step_job(&template, RunId(run_id), &step, inputs);
        // The inputs are results the store accepted already: no payload limit again.
        let job_id = enqueue(w, job, now, usize::MAX)?;
        set_job(&w.conn, run_id, position, job_id)?;
        let _ = w.wakeups.send(template.queue);
    }
    Ok(())
}

/// The results of the steps `step` waits for, by name.
fn inputs(conn: &Connection, run_id: i64, step: &str) -> StoreResult<BTreeMap<String, Value>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT dep.name, dep.result FROM run_steps AS s
             JOIN json_each(s.after) AS a
             JOIN run_steps AS dep ON dep.run_id = s.run_id AND dep.name = a.value
             WHERE s.run_id = ?1 AND s.name = ?2",
        )
        .map_err(sql_err)?;
    let rows = stmt
        .query_map(params![run_id, step], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
        })
        .map_err(sql_err)?;
    let mut inputs = BTreeMap::new();
    for row in rows {
        let (name, result) = row.map_err(sql_err)?;
        let value = match result {
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| StoreError::Internal(format!("step {name} result: {e}")))?,
            None => Value::Null,
        };
        inputs.insert(name, value);
    }
    Ok(inputs)
}

/// See `Store::run_get`.
pub(crate) fn get(conn: &Connection, id: RunId) -> StoreResult<Run> {
    let row: Option<(String, String, i64)> = conn
        .prepare_cached("SELECT pipeline, meta, created_at FROM runs WHERE id = ?1")
        .map_err(sql_err)?
        .query_row([id.0], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()
        .map_err(sql_err)?;
    let (pipeline, meta, created_at) = row.ok_or(StoreError::RunNotFound(id))?;
    let steps = steps(conn, id)?;
    Ok(Run {
        id,
        pipeline,
        state: run_state(steps.iter().map(|s| s.state)),
        meta: parse(&meta)?,
        steps,
        created_at: from_micros(created_at),
    })
}

/// A run's steps in order, each with its job's state, attempts and last error.
fn steps(conn: &Connection, id: RunId) -> StoreResult<Vec<Step>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT s.name, s.after, s.job_id, s.result, j.state, j.attempt, j.errors, j.id
             FROM run_steps AS s LEFT JOIN jobs AS j ON j.id = s.job_id
             WHERE s.run_id = ?1 ORDER BY s.position",
        )
        .map_err(sql_err)?;
    let rows = stmt
        .query_map([id.0], |r| {
            Ok(StepRow {
                name: r.get(0)?,
                after: r.get(1)?,
                job_id: r.get(2)?,
                result: r.get(3)?,
                job_state: r.get(4)?,
                attempt: r.get(5)?,
                errors: r.get(6)?,
                job_exists: r.get::<_, Option<i64>>(7)?.is_some(),
            })
        })
        .map_err(sql_err)?;
    rows.map(|row| row.map_err(sql_err).and_then(StepRow::into_step))
        .collect()
}

/// One row of [`steps`].
struct StepRow {
    name: String,
    after: String,
    job_id: Option<i64>,
    result: Option<String>,
    job_state: Option<i64>,
    attempt: Option<u32>,
    errors: Option<String>,
    job_exists: bool,
}

impl StepRow {
    fn into_step(self) -> StoreResult<Step> {
        let result = self.result.as_deref().map(parse).transpose()?;
        let job_state = self
            .job_state
            .map(|s| {
                JobState::from_i64(s)
                    .ok_or_else(|| StoreError::Internal(format!("unknown job state {s}")))
            })
            .transpose()?;
        let errors: Vec<AttemptError> = match &self.errors {
            Some(text) => serde_json::from_str(text)
                .map_err(|e| StoreError::Internal(format!("job errors: {e}")))?,
            None => Vec::new(),
        };
        let last_error = errors.last().map(|e| e.error.clone());
        let job = job_state.filter(|_| self.job_exists);
        let (state, error) =
            stored_step_state(self.job_id.is_some(), job, result.is_some(), last_error);
        Ok(Step {
            name: self.name,
            after: parse_value(&self.after)?,
            state,
            job_id: self.job_id.map(JobId),
            attempt: self.attempt.unwrap_or(0),
            result,
            error,
        })
    }
}

/// See `Store::run_list`.
pub(crate) fn list(conn: &Connection, p: &RunListParams) -> StoreResult<RunPage> {
    let limit = match p.limit {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    };
    let ids: Vec<i64> = {
        let mut stmt = conn
            .prepare_cached(
                "SELECT id FROM runs
                 WHERE (?1 IS NULL OR pipeline = ?1) AND (?2 IS NULL OR id < ?2)
                 ORDER BY id DESC LIMIT ?3",
            )
            .map_err(sql_err)?;
        stmt.query_map(
            params![p.pipeline, p.cursor.map(|c| c.0), i64::from(limit) + 1],
            |r| r.get(0),
        )
        .map_err(sql_err)?
        .collect::<Result<_, _>>()
        .map_err(sql_err)?
    };
    let more = ids.len() > limit as usize;
    let runs = ids
        .iter()
        .take(limit as usize)
        .map(|id| get(conn, RunId(*id)))
        .collect::<StoreResult<Vec<_>>>()?;
    let next = if more {
        runs.last().map(|r| r.id)
    } else {
        None
    };
    Ok(RunPage { runs, next })
}

fn parse(text: &str) -> StoreResult<Value> {
    serde_json::from_str(text).map_err(|e| StoreError::Internal(format!("bad JSON column: {e}")))
}

fn parse_value<T: serde::de::DeserializeOwned>(text: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Internal(format!("bad JSON column: {e}")))
}
