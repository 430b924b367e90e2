//! Pipeline runs (`migrations/0002_runs.sql`): creating one with its first steps enqueued
//! in the same transaction, the completion hook that enqueues the steps whose dependencies
//! have all succeeded, and reading runs back with each step's state derived from its job.
//!
//! - **Create**: the run row, then its first steps' jobs through the ordinary insert path
//!   (`insert::insert`: same validation, unique keys, counts and wakeups), then every step
//!   row, in one transaction. Every step's queue must exist, the waiting ones' too, so a
//!   run cannot stall later on a missing queue; every step's job is validated up front.
//! - **Completion hook** ([`completed`]), inside the completion's transaction, for the
//!   jobs just completed that are steps (`ack::complete_many` only opens that transaction
//!   when its statement found some): one statement stores their results and lowers
//!   `waiting_on` of the steps that wait for them, taking those rows `FOR UPDATE` in key
//!   order; the `UPDATE` re-reads a row another transaction changed meanwhile, so of two
//!   concurrent completions of a fan-in's two parents, the second sees the first's
//!   decrement and reaches zero. The steps that reached zero then read their
//!   dependencies' results (a new statement, whose snapshot includes what the first
//!   transaction committed) and are enqueued in one insert, their queues announced after
//!   the commit like any enqueue's.
//! - **Read**: one statement per call: the runs, their steps and a `LEFT JOIN` of the
//!   steps' jobs (their state, attempt, last error). A step whose job was pruned is
//!   succeeded if its result was kept, else failed.

use std::collections::{BTreeMap, HashMap};

use deadpool_postgres::GenericClient;
use flotilla_core::{
    JobId, NewJob, NewRun, Run, RunId, Step, Timestamp, run_state, step_payload, stored_step_state,
    validate_run,
};
use flotilla_store::{JobInsertManyParams, RunCreated, RunListParams, RunPage, StoreError};
use serde_json::Value;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::PgStore;
use crate::error::{PgError, storable};
use crate::insert;
use crate::row::{get, json, parse, state};
use crate::wakeup::Woken;

const MAX_PAGE: u32 = 100;
const DEFAULT_PAGE: u32 = 20;

/// Checks a new run before any statement: `validate_run`, text PostgreSQL can store, and
/// every step's job as an enqueue would check it (the first steps' jobs are checked again
/// with the run's details in their payloads when they are inserted).
pub(crate) fn check(run: &NewRun, now: Timestamp, max_payload_bytes: usize) -> Result<(), PgError> {
    validate_run(run)?;
    storable("pipeline", &run.pipeline)?;
    for step in &run.steps {
        storable("steps", &step.name)?;
    }
    let jobs = run.steps.iter().map(|s| s.job.clone()).collect();
    insert::prepare(JobInsertManyParams { jobs, now }, max_payload_bytes)?;
    Ok(())
}

/// The job of a step, its payload carrying the run's details and `inputs`.
fn step_job(template: &NewJob, run: RunId, step: &str, inputs: BTreeMap<String, Value>) -> NewJob {
    let mut job = template.clone();
    job.payload = step_payload(&template.payload, run, step, inputs);
    job
}

/// See `Store::run_create`; `run` has passed [`check`].
pub(crate) async fn create(
    s: &PgStore,
    run: &NewRun,
    now: Timestamp,
) -> Result<RunCreated, PgError> {
    let mut c = s.client().await?;
    let mut woken = Woken::default();
    let tx = c.transaction().await?;
    if let Some(missing) = missing_queue(&tx, run).await? {
        return Err(StoreError::QueueNotFound(missing).into());
    }
    let stmt = tx
        .prepare_cached(
            "INSERT INTO runs (pipeline, meta, created_at) VALUES ($1, $2::text::json, $3)
             RETURNING id",
        )
        .await?;
    let row = tx
        .query_one(&stmt, &[&run.pipeline, &json(&run.meta)?, &now])
        .await?;
    let id = RunId(get(&row, 0)?);
    let first: Vec<&flotilla_core::NewStep> =
        run.steps.iter().filter(|s| s.after.is_empty()).collect();
    let jobs = first
        .iter()
        .map(|s| step_job(&s.job, id, &s.name, BTreeMap::new()))
        .collect();
    let batch = insert::prepare(JobInsertManyParams { jobs, now }, s.max_payload_bytes)?;
    let inserted = insert::insert(&tx, &batch, &mut woken).await?;
    let job_ids: HashMap<&str, i64> = first
        .iter()
        .zip(&inserted)
        .map(|(s, j)| (s.name.as_str(), j.id.0))
        .collect();
    insert_steps(&tx, id, run, &job_ids).await?;
    tx.commit().await?;
    woken.send(&c).await;
    let mut queues: Vec<String> = Vec::new();
    for step in first {
        if !queues.contains(&step.job.queue) {
            queues.push(step.job.queue.clone());
        }
    }
    Ok(RunCreated { id, queues })
}

/// The first queue, in step order, that does not exist.
async fn missing_queue<C: GenericClient>(c: &C, run: &NewRun) -> Result<Option<String>, PgError> {
    let queues: Vec<&str> = run.steps.iter().map(|s| s.job.queue.as_str()).collect();
    let stmt = c
        .prepare_cached(
            "SELECT t.queue FROM unnest($1::text[]) WITH ORDINALITY AS t(queue, ord)
             WHERE NOT EXISTS (SELECT 1 FROM queues q WHERE q.name = t.queue)
             ORDER BY t.ord LIMIT 1",
        )
        .await?;
    let row = c.query_opt(&stmt, &[&queues]).await?;
    row.map(|r| get(&r, 0)).transpose()
}

/// Inserts the rows of every step: the first ones with their jobs (`job_ids`, by name),
/// the others with their job's template and the count of steps they wait for.
async fn insert_steps<C: GenericClient>(
    c: &C,
    id: RunId,
    run: &NewRun,
    job_ids: &HashMap<&str, i64>,
) -> Result<(), PgError> {
    let (mut position, mut name, mut after, mut waiting_on, mut job, mut job_id) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for (i, step) in (0i32..).zip(&run.steps) {
        let enqueued = job_ids.get(step.name.as_str()).copied();
        position.push(i);
        name.push(step.name.as_str());
        after.push(json(&step.after)?);
        waiting_on.push(if enqueued.is_some() {
            0
        } else {
            i32::try_from(step.after.len()).unwrap_or(i32::MAX)
        });
        job.push(match enqueued {
            Some(_) => None,
            None => Some(json(&step.job)?),
        });
        job_id.push(enqueued);
    }
    let stmt = c
        .prepare_cached(
            "INSERT INTO run_steps (run_id, position, name, after, waiting_on, job, job_id)
             SELECT $1, t.position, t.name, ARRAY(SELECT json_array_elements_text(t.after::json)),
                    t.waiting_on, t.job::json, t.job_id
             FROM unnest($2::int[], $3::text[], $4::text[], $5::int[], $6::text[], $7::bigint[])
                 AS t(position, name, after, waiting_on, job, job_id)",
        )
        .await?;
    c.execute(
        &stmt,
        &[&id.0, &position, &name, &after, &waiting_on, &job, &job_id],
    )
    .await?;
    Ok(())
}

/// Stores the completed steps' results and lowers the count of each step waiting for
/// them (locked in key order); answers the steps that now wait for nothing.
const STEPS_DONE: &str = "
WITH done AS (
    SELECT * FROM unnest($1::bigint[], $2::text[]) AS t(job_id, result)
),
finished AS (
    UPDATE run_steps s SET result = coalesce(d.result, 'null')::json
    FROM done d WHERE s.job_id = d.job_id
    RETURNING s.run_id, s.name
),
successors AS (
    SELECT w.run_id, w.position, count(*)::int AS n
    FROM finished f JOIN run_steps w ON w.run_id = f.run_id AND f.name = ANY(w.after)
    WHERE w.job_id IS NULL
    GROUP BY w.run_id, w.position
),
locked AS (
    SELECT w.run_id, w.position, x.n
    FROM run_steps w JOIN successors x ON x.run_id = w.run_id AND x.position = w.position
    ORDER BY w.run_id, w.position
    FOR UPDATE OF w
),
lowered AS (
    UPDATE run_steps w SET waiting_on = w.waiting_on - l.n
    FROM locked l WHERE w.run_id = l.run_id AND w.position = l.position
    RETURNING w.run_id, w.position, w.name, w.job::text AS job, w.waiting_on
)
SELECT run_id, position, name, job FROM lowered WHERE waiting_on = 0 ORDER BY run_id, position";

/// A step whose dependencies have all succeeded, about to be enqueued.
struct Ready {
    run_id: i64,
    position: i32,
    name: String,
    template: NewJob,
}

/// The completion hook, called inside the transaction that completed `done` (job ids
/// with their results as JSON text, each a step of a run): stores their results and
/// enqueues the steps whose dependencies have now all succeeded, adding their queues to
/// `woken`.
pub(crate) async fn completed<C: GenericClient>(
    c: &C,
    done: &[(i64, Option<String>)],
    now: Timestamp,
    woken: &mut Woken,
) -> Result<(), PgError> {
    let ids: Vec<i64> = done.iter().map(|(id, _)| *id).collect();
    let results: Vec<Option<&str>> = done.iter().map(|(_, r)| r.as_deref()).collect();
    let stmt = c.prepare_cached(STEPS_DONE).await?;
    let rows = c.query(&stmt, &[&ids, &results]).await?;
    let ready = rows
        .iter()
        .map(|r| {
            let (run_id, name): (i64, String) = (get(r, 0)?, get(r, 2)?);
            let template = parse::<NewJob>(get::<Option<&str>>(r, 3)?, "a step's job")?
                .ok_or_else(|| PgError::Decode(format!("run {run_id} step {name}: no job")))?;
            Ok(Ready {
                run_id,
                position: get(r, 1)?,
                name,
                template,
            })
        })
        .collect::<Result<Vec<_>, PgError>>()?;
    if ready.is_empty() {
        return Ok(());
    }
    let mut inputs = inputs(c, &ready).await?;
    let jobs = ready
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let inputs = inputs.remove(&i).unwrap_or_default();
            step_job(&step.template, RunId(step.run_id), &step.name, inputs)
        })
        .collect();
    // The inputs are results the store accepted already: no payload limit again.
    let batch = insert::prepare(JobInsertManyParams { jobs, now }, usize::MAX)?;
    let inserted = insert::insert(c, &batch, woken).await?;
    let job_ids: Vec<i64> = inserted.iter().map(|j| j.id.0).collect();
    set_jobs(c, &ready, &job_ids).await
}

/// The results of the dependencies of each ready step, by the step's index in `ready`.
async fn inputs<C: GenericClient>(
    c: &C,
    ready: &[Ready],
) -> Result<HashMap<usize, BTreeMap<String, Value>>, PgError> {
    let runs: Vec<i64> = ready.iter().map(|s| s.run_id).collect();
    let positions: Vec<i32> = ready.iter().map(|s| s.position).collect();
    let stmt = c
        .prepare_cached(
            "SELECT r.ord, dep.name, dep.result::text
             FROM unnest($1::bigint[], $2::int[]) WITH ORDINALITY AS r(run_id, position, ord)
             JOIN run_steps s ON s.run_id = r.run_id AND s.position = r.position
             JOIN run_steps dep ON dep.run_id = s.run_id AND dep.name = ANY(s.after)",
        )
        .await?;
    let rows = c.query(&stmt, &[&runs, &positions]).await?;
    let mut out: HashMap<usize, BTreeMap<String, Value>> = HashMap::new();
    for r in &rows {
        let index = usize::try_from(get::<i64>(r, 0)? - 1)
            .map_err(|_| PgError::Decode("bad ordinality".into()))?;
        let name: String = get(r, 1)?;
        let result = parse::<Value>(get::<Option<&str>>(r, 2)?, "a step's result")?;
        out.entry(index)
            .or_default()
            .insert(name, result.unwrap_or(Value::Null));
    }
    Ok(out)
}

/// Records each ready step's job (and drops its template).
async fn set_jobs<C: GenericClient>(
    c: &C,
    ready: &[Ready],
    job_ids: &[i64],
) -> Result<(), PgError> {
    if job_ids.len() != ready.len() {
        return Err(PgError::Decode(format!(
            "{} jobs inserted for {} steps",
            job_ids.len(),
            ready.len()
        )));
    }
    let runs: Vec<i64> = ready.iter().map(|s| s.run_id).collect();
    let positions: Vec<i32> = ready.iter().map(|s| s.position).collect();
    let stmt = c
        .prepare_cached(
            "UPDATE run_steps s SET job_id = t.job_id, job = NULL
             FROM unnest($1::bigint[], $2::int[], $3::bigint[]) AS t(run_id, position, job_id)
             WHERE s.run_id = t.run_id AND s.position = t.position",
        )
        .await?;
    c.execute(&stmt, &[&runs, &positions, &job_ids]).await?;
    Ok(())
}

/// The runs of the CTE `page` (`id, pipeline, meta, created_at`) with their steps and the
/// steps' jobs, newest run first, steps in order; read with [`runs_from_rows`].
const RUN_ROWS: &str = "
SELECT r.id, r.pipeline, r.meta::text, r.created_at,
       s.name, s.after, s.job_id, s.result::text,
       j.id IS NOT NULL, j.state, j.attempt, j.errors -> -1 ->> 'error'
FROM page r
JOIN run_steps s ON s.run_id = r.id
LEFT JOIN jobs j ON j.id = s.job_id
ORDER BY r.id DESC, s.position";

/// See `Store::run_get`.
pub(crate) async fn get_run(s: &PgStore, id: RunId) -> Result<Run, PgError> {
    let c = s.client().await?;
    let stmt = c
        .prepare_cached(&format!(
            "WITH page AS (SELECT id, pipeline, meta, created_at FROM runs WHERE id = $1)
             {RUN_ROWS}"
        ))
        .await?;
    let rows = c.query(&stmt, &[&id.0]).await?;
    runs_from_rows(&rows)?
        .pop()
        .ok_or_else(|| StoreError::RunNotFound(id).into())
}

/// See `Store::run_list`.
pub(crate) async fn list(s: &PgStore, p: &RunListParams) -> Result<RunPage, PgError> {
    let limit = match p.limit {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    };
    let mut filters = String::new();
    let mut args: Vec<&(dyn ToSql + Sync)> = Vec::new();
    if let Some(pipeline) = &p.pipeline {
        args.push(pipeline);
        filters.push_str(&format!(" AND pipeline = ${}::text", args.len()));
    }
    let cursor = p.cursor.map(|c| c.0);
    if let Some(cursor) = &cursor {
        args.push(cursor);
        filters.push_str(&format!(" AND id < ${}::bigint", args.len()));
    }
    // One more than a page, to tell whether there is a next one.
    let fetch = i64::from(limit) + 1;
    args.push(&fetch);
    let sql = format!(
        "WITH page AS (
            SELECT id, pipeline, meta, created_at FROM runs WHERE true{filters}
            ORDER BY id DESC LIMIT ${}::bigint
         ){RUN_ROWS}",
        args.len()
    );
    let c = s.client().await?;
    let stmt = c.prepare_cached(&sql).await?;
    let rows = c.query(&stmt, &args).await?;
    let mut runs = runs_from_rows(&rows)?;
    let more = runs.len() > limit as usize;
    runs.truncate(limit as usize);
    let next = if more {
        runs.last().map(|r| r.id)
    } else {
        None
    };
    Ok(RunPage { runs, next })
}

/// Runs from rows of [`RUN_ROWS`]: consecutive rows of one run make its steps.
fn runs_from_rows(rows: &[Row]) -> Result<Vec<Run>, PgError> {
    let mut runs: Vec<Run> = Vec::new();
    for r in rows {
        let id = RunId(get(r, 0)?);
        let step = step_from_row(r)?;
        match runs.last_mut() {
            Some(run) if run.id == id => run.steps.push(step),
            _ => runs.push(Run {
                id,
                pipeline: get(r, 1)?,
                state: flotilla_core::RunState::Running,
                meta: parse(get::<Option<&str>>(r, 2)?, "a run's meta")?.unwrap_or_default(),
                steps: vec![step],
                created_at: get(r, 3)?,
            }),
        }
    }
    for run in &mut runs {
        run.state = run_state(run.steps.iter().map(|s| s.state));
    }
    Ok(runs)
}

/// A step from columns 4.. of a row of [`RUN_ROWS`], its state derived from its job's.
fn step_from_row(r: &Row) -> Result<Step, PgError> {
    let job_id: Option<i64> = get(r, 6)?;
    let result = parse::<Value>(get::<Option<&str>>(r, 7)?, "a step's result")?;
    let job_exists: bool = get(r, 8)?;
    let job_state = get::<Option<i16>>(r, 9)?.map(state).transpose()?;
    let last_error: Option<String> = get(r, 11)?;
    let job = job_state.filter(|_| job_exists);
    let (state, error) = stored_step_state(job_id.is_some(), job, result.is_some(), last_error);
    Ok(Step {
        name: get(r, 4)?,
        after: get(r, 5)?,
        state,
        job_id: job_id.map(JobId),
        attempt: get::<Option<i32>>(r, 10)?
            .and_then(|a| u32::try_from(a).ok())
            .unwrap_or(0),
        result,
        error,
    })
}
