//! What lease holders send back: heartbeats, completions, failures and releases. Every
//! statement matches on `(id, state = running, lease_token)`, so a stale token changes
//! nothing; refused items are then told apart (`job_not_found` or `lease_mismatch` with the
//! job's state now) by one look-up.
//!
//! These statements find their jobs by id, and say `state + 0 = 2` rather than `state = 2`:
//! the latter would let the planner walk the whole `jobs_running` partial index (whose
//! predicate it matches) instead of probing the primary key, which it may well prefer when
//! its statistics say few jobs run.
//!
//! Heartbeats, completions and releases are one statement each (a batch is one statement,
//! set-based over `unnest` arrays, counts included). A completion batch that holds steps
//! of a pipeline run completes those in a transaction of their own, with the hook that
//! enqueues their successors (see `runs`); the statement that completes the others names
//! them, so a batch without steps costs nothing more. A failure needs
//! `flotilla_core::on_failure`, so a failure batch locks its jobs (`FOR UPDATE`, in id
//! order), decides each in Rust, and writes every outcome in one statement, all in one
//! transaction.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use deadpool_postgres::GenericClient;
use flotilla_core::{
    AttemptError, Event, JobId, JobState, LeaseToken, RetryPolicy, Timestamp, on_failure,
    transition,
};
use flotilla_store::{
    Heartbeat, ItemResults, JobCompleteManyParams, JobFailManyParams, JobHeartbeatParams,
    JobReleaseParams, StoreError,
};

use crate::counts::{COUNTS, WOKEN};
use crate::error::PgError;
use crate::row::{get, json, plus_ms, state, state_col};
use crate::wakeup::Woken;
use crate::{PgStore, retrying};

/// See `Store::job_heartbeat`.
pub(crate) async fn heartbeat(s: &PgStore, p: &JobHeartbeatParams) -> Result<Heartbeat, PgError> {
    let progress = p.progress.as_ref().map(json).transpose()?;
    let c = s.client().await?;
    let by_lease = plus_ms("$3::timestamptz", "coalesce(j.lease_ms, q.lease_ms)");
    let by_timeout = plus_ms(
        "coalesce(j.attempted_at, $3::timestamptz)",
        "coalesce(j.timeout_ms, q.timeout_ms)",
    );
    let stmt = c
        .prepare_cached(&format!(
            "UPDATE jobs j SET lease_expires_at = LEAST({by_lease}, {by_timeout}),
                    progress = coalesce($4::text::json, j.progress)
             FROM queues q
             WHERE j.id = $1 AND j.state + 0 = 2 AND j.lease_token = $2 AND q.name = j.queue
             RETURNING j.lease_expires_at, j.cancel_requested"
        ))
        .await?;
    let row = c
        .query_opt(&stmt, &[&p.job_id.0, &p.token.0, &p.now, &progress])
        .await?;
    match row {
        Some(r) => Ok(Heartbeat {
            expires_at: get(&r, 0)?,
            cancel_requested: get(&r, 1)?,
        }),
        None => {
            let refused = not_held(&c, &[(p.job_id, p.token)]).await?;
            Err(refused
                .into_iter()
                .next()
                .map_or_else(
                    || StoreError::Internal("heartbeat refused without a reason".into()),
                    |(_, e)| e,
                )
                .into())
        }
    }
}

/// Why each `(id, token)` does not hold a lease: no such job, or another lease / state.
pub(crate) async fn not_held<C: GenericClient>(
    c: &C,
    items: &[(JobId, LeaseToken)],
) -> Result<Vec<(JobId, StoreError)>, PgError> {
    let ids: Vec<i64> = items.iter().map(|(id, _)| id.0).collect();
    let stmt = c
        .prepare_cached("SELECT id, state FROM jobs WHERE id = ANY($1::bigint[])")
        .await?;
    let rows = c.query(&stmt, &[&ids]).await?;
    let mut states = HashMap::with_capacity(rows.len());
    for r in &rows {
        states.insert(get::<i64>(r, 0)?, state(get(r, 1)?)?);
    }
    Ok(items
        .iter()
        .map(|&(job_id, token)| {
            let e = match states.get(&job_id.0) {
                None => StoreError::JobNotFound(job_id),
                Some(&state) => StoreError::LeaseMismatch {
                    job_id,
                    token,
                    state,
                },
            };
            (job_id, e)
        })
        .collect())
}

/// Answers items in input order: `Ok(accepted[(id, token)])` for those accepted (each once,
/// the first time it appears), the refusal for the others.
async fn answer<C: GenericClient, T>(
    c: &C,
    items: &[(JobId, LeaseToken)],
    mut accepted: HashMap<(i64, i64), T>,
) -> Result<ItemResults<T>, PgError> {
    let mut results: Vec<Option<Result<T, StoreError>>> = Vec::with_capacity(items.len());
    let mut refused = Vec::new();
    for &(id, token) in items {
        match accepted.remove(&(id.0, token.0)) {
            Some(v) => results.push(Some(Ok(v))),
            None => {
                refused.push((id, token));
                results.push(None);
            }
        }
    }
    if !refused.is_empty() {
        let mut reasons = not_held(c, &refused).await?.into_iter();
        for slot in results.iter_mut().filter(|r| r.is_none()) {
            *slot = reasons.next().map(|(_, e)| Err(e));
        }
    }
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(StoreError::Internal("unanswered item".into()))))
        .collect())
}

/// A completion batch as column arrays.
struct Completions {
    ids: Vec<i64>,
    tokens: Vec<i64>,
    /// The results as JSON text.
    results: Vec<Option<String>>,
}

impl Completions {
    fn new(p: &JobCompleteManyParams) -> Result<Self, PgError> {
        Ok(Self {
            ids: p.completions.iter().map(|c| c.job_id.0).collect(),
            tokens: p.completions.iter().map(|c| c.token.0).collect(),
            results: p
                .completions
                .iter()
                .map(|c| c.result.as_ref().map(json).transpose())
                .collect::<Result<_, _>>()?,
        })
    }

    /// The completions of the jobs in `ids`, as a batch of their own.
    fn only(&self, ids: &HashSet<i64>) -> Self {
        let keep: Vec<usize> = (0..self.ids.len())
            .filter(|&i| ids.contains(&self.ids[i]))
            .collect();
        Self {
            ids: keep.iter().map(|&i| self.ids[i]).collect(),
            tokens: keep.iter().map(|&i| self.tokens[i]).collect(),
            results: keep.iter().map(|&i| self.results[i].clone()).collect(),
        }
    }

    /// The result given with `(id, token)`.
    fn result(&self, id: i64, token: i64) -> Option<String> {
        (0..self.ids.len())
            .find(|&i| self.ids[i] == id && self.tokens[i] == token)
            .and_then(|i| self.results[i].clone())
    }
}

/// Which jobs of a batch a completion statement completes: those that are not steps of a
/// run (the hot path, outside any transaction), or those that are (inside the transaction
/// that runs the completion hook).
#[derive(Clone, Copy)]
enum Steps {
    Skip,
    Only,
}

/// The completed `(id, token)` pairs of a batch, and the ids of its jobs that are steps of
/// a run.
type Completed = (HashMap<(i64, i64), ()>, HashSet<i64>);

/// One statement completes the jobs of `batch` chosen by `steps` whose token is current,
/// with their counts, adds the queues to wake to `woken`, and names the jobs of the batch
/// that are steps: one scan of `run_steps_job` for the whole batch, in the same round trip
/// (measured: 2-3% of the statement's execution time for 100 jobs when none is a step).
async fn complete_rows<C: GenericClient>(
    c: &C,
    batch: &Completions,
    steps: Steps,
    now: Timestamp,
    woken: &mut Woken,
) -> Result<Completed, PgError> {
    let which = match steps {
        Steps::Skip => "NOT EXISTS",
        Steps::Only => "EXISTS",
    };
    let stmt = c
        .prepare_cached(&format!(
            "WITH input AS (
                SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS t(id, token, result)
            ),
            steps AS (
                SELECT job_id FROM run_steps WHERE job_id = ANY($1::bigint[])
            ),
            done AS (
                UPDATE jobs j SET state = 3, finished_at = $4::timestamptz, result = i.result::json
                FROM input i WHERE j.id = i.id AND j.state + 0 = 2 AND j.lease_token = i.token
                    AND {which} (SELECT 1 FROM steps s WHERE s.job_id = j.id)
                RETURNING j.id, i.token, j.queue, j.group_key
            ),
            moved AS (
                SELECT queue, group_key, 2::smallint AS from_state, 3::smallint AS to_state,
                       0 AS enq, 1 AS succ, 0 AS failed, 0 AS retried, 0 AS dead, 0 AS cancelled,
                       0 AS lease_expired
                FROM done
            ){COUNTS}
            SELECT d.id, d.token, {WOKEN}, st.ids
            FROM (SELECT (SELECT array_agg(job_id) FROM steps) AS ids) st LEFT JOIN done d ON true"
        ))
        .await?;
    let rows = c
        .query(&stmt, &[&batch.ids, &batch.tokens, &batch.results, &now])
        .await?;
    woken.read(&rows, 2)?;
    let mut done = HashMap::with_capacity(rows.len());
    for r in &rows {
        if let Some(id) = get::<Option<i64>>(r, 0)? {
            done.insert((id, get::<i64>(r, 1)?), ());
        }
    }
    let step_ids = match rows.first() {
        Some(r) => get::<Option<Vec<i64>>>(r, 3)?.unwrap_or_default(),
        None => Vec::new(),
    };
    Ok((done, step_ids.into_iter().collect()))
}

/// Completes the jobs of `batch` that are not steps of a run, in one statement outside
/// any transaction; answers the connection too, for the refusals.
async fn complete_plain(
    s: &PgStore,
    batch: &Completions,
    now: Timestamp,
) -> Result<(deadpool_postgres::Object, Completed), PgError> {
    let c = s.client().await?;
    let mut woken = Woken::default();
    let completed = complete_rows(&c, batch, Steps::Skip, now, &mut woken).await?;
    woken.send(&c).await;
    Ok((c, completed))
}

/// Completes the jobs of `batch` that are steps of a run, and runs the completion hook
/// (`runs::completed`), in one transaction; answers the connection too, for the refusals.
async fn complete_steps(
    s: &PgStore,
    batch: &Completions,
    now: Timestamp,
) -> Result<(deadpool_postgres::Object, HashMap<(i64, i64), ()>), PgError> {
    let mut c = s.client().await?;
    let mut woken = Woken::default();
    let tx = c.transaction().await?;
    let (done, _) = complete_rows(&tx, batch, Steps::Only, now, &mut woken).await?;
    let results: Vec<(i64, Option<String>)> = done
        .keys()
        .map(|&(id, token)| (id, batch.result(id, token)))
        .collect();
    if !results.is_empty() {
        crate::runs::completed(&tx, &results, now, &mut woken).await?;
    }
    tx.commit().await?;
    woken.send(&c).await;
    Ok((c, done))
}

/// See `Store::job_complete_many`. One statement completes the batch's jobs that are not
/// steps of a run, and names those that are; when there are some, a transaction completes
/// them and enqueues the steps that waited for them (`runs::completed`). Each part runs
/// again on its own after a deadlock, so a part that committed is never repeated. The call
/// fails only when nothing was committed: if the steps' transaction fails after other
/// jobs of the batch were completed, each step's item carries the failure instead.
pub(crate) async fn complete_many(
    s: &PgStore,
    p: &JobCompleteManyParams,
) -> Result<ItemResults<()>, PgError> {
    if p.completions.is_empty() {
        return Ok(Vec::new());
    }
    let batch = Completions::new(p)?;
    let (c, (mut done, steps)) = retrying(|| complete_plain(s, &batch, p.now)).await?;
    let items: Vec<(JobId, LeaseToken)> =
        p.completions.iter().map(|c| (c.job_id, c.token)).collect();
    if steps.is_empty() {
        return answer(&c, &items, done).await;
    }
    // Back to the pool first: a pool of one connection must not wait for itself.
    drop(c);
    let step_batch = batch.only(&steps);
    match retrying(|| complete_steps(s, &step_batch, p.now)).await {
        Ok((c, more)) => {
            done.extend(more);
            answer(&c, &items, done).await
        }
        Err(e) if done.is_empty() => Err(e),
        Err(e) => {
            let failure = StoreError::from(e);
            tracing::warn!(error = %failure, "postgres: completing pipeline steps failed; the batch's other jobs are completed");
            let c = s.client().await?;
            let mut results = answer(&c, &items, done).await?;
            for (result, (id, _)) in results.iter_mut().zip(&items) {
                if steps.contains(&id.0) {
                    *result = Err(per_item(&failure));
                }
            }
            Ok(results)
        }
    }
}

/// A failure of a batch's part, answered for each of its items (same code).
fn per_item(failure: &StoreError) -> StoreError {
    match failure {
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        StoreError::Invalid(e) => StoreError::Invalid(e.clone()),
        other => StoreError::Internal(other.to_string()),
    }
}

/// See `Store::job_release`: each held job goes back to `available` with the attempt
/// undone (or to `cancelled` when cancellation was requested), in one statement.
pub(crate) async fn release(
    s: &PgStore,
    p: &JobReleaseParams,
) -> Result<ItemResults<JobState>, PgError> {
    if p.leases.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = p.leases.iter().map(|(id, _)| id.0).collect();
    let tokens: Vec<i64> = p.leases.iter().map(|(_, t)| t.0).collect();
    // The statement matches the source state; the moves are the ones the machine allows.
    transition(JobState::Running, Event::Release)?;
    transition(JobState::Running, Event::AcknowledgeCancel)?;
    let c = s.client().await?;
    let stmt = c
        .prepare_cached(&format!(
            "WITH input AS (
                SELECT * FROM unnest($1::bigint[], $2::bigint[]) AS t(id, token)
            ),
            released AS (
                UPDATE jobs j SET
                    state = CASE WHEN j.cancel_requested THEN 4 ELSE 1 END,
                    finished_at = CASE WHEN j.cancel_requested THEN $3::timestamptz END,
                    attempt = GREATEST(j.attempt - 1, 0),
                    attempted_at = CASE WHEN j.attempt <= 1 THEN NULL ELSE j.attempted_at END,
                    lease_token = NULL, lease_worker = NULL, lease_expires_at = NULL,
                    progress = NULL
                FROM input i WHERE j.id = i.id AND j.state + 0 = 2 AND j.lease_token = i.token
                RETURNING j.id, i.token, j.queue, j.group_key, j.state
            ),
            moved AS (
                SELECT queue, group_key, 2::smallint AS from_state, state AS to_state,
                       0 AS enq, 0 AS succ, 0 AS failed, 0 AS retried, 0 AS dead,
                       (state = 4)::int AS cancelled, 0 AS lease_expired
                FROM released
            ){COUNTS}
            SELECT id, token, state, {WOKEN} FROM released"
        ))
        .await?;
    let rows = c.query(&stmt, &[&ids, &tokens, &p.now]).await?;
    let mut woken = Woken::default();
    woken.read(&rows, 3)?;
    woken.send(&c).await;
    let mut done = HashMap::with_capacity(rows.len());
    for r in &rows {
        done.insert((get::<i64>(r, 0)?, get::<i64>(r, 1)?), state(get(r, 2)?)?);
    }
    answer(&c, &p.leases, done).await
}

/// What a failure needs to know of a running job (read with [`RUNNING_COLUMNS`]).
pub(crate) struct RunningJob {
    pub(crate) id: JobId,
    pub(crate) queue: String,
    token: Option<i64>,
    attempt: u32,
    max_attempts: u32,
    retry: Option<String>,
    cancel_requested: bool,
    worker: Option<String>,
    timeout_ms: Option<i64>,
    attempted_at: Option<Timestamp>,
    /// The queue's retry policy and timeout.
    queue_retry: RetryPolicy,
    queue_timeout: Option<Duration>,
}

/// The columns [`running_job`] reads, from `jobs j JOIN queues q`.
pub(crate) const RUNNING_COLUMNS: &str = "j.id, j.queue, j.lease_token, j.attempt, j.max_attempts, \
     j.retry, j.cancel_requested, j.lease_worker, j.timeout_ms, j.attempted_at, q.config";

/// Reads a row selected with [`RUNNING_COLUMNS`].
pub(crate) fn running_job(r: &tokio_postgres::Row) -> Result<RunningJob, PgError> {
    let config = crate::read::parse_config(&get::<String>(r, 10)?)?;
    Ok(RunningJob {
        id: JobId(get(r, 0)?),
        queue: get(r, 1)?,
        token: get(r, 2)?,
        attempt: u32::try_from(get::<i32>(r, 3)?).unwrap_or(0),
        max_attempts: u32::try_from(get::<i32>(r, 4)?).unwrap_or(0),
        retry: get(r, 5)?,
        cancel_requested: get(r, 6)?,
        worker: get(r, 7)?,
        timeout_ms: get(r, 8)?,
        attempted_at: get(r, 9)?,
        queue_retry: config.retry,
        queue_timeout: config.timeout,
    })
}

impl RunningJob {
    /// When the current attempt started.
    pub(crate) fn started(&self, fallback: Timestamp) -> Timestamp {
        self.attempted_at.unwrap_or(fallback)
    }

    /// The attempt's timeout: the job's own, else its queue's.
    pub(crate) fn timeout(&self) -> Option<Duration> {
        self.timeout_ms
            .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
            .or(self.queue_timeout)
    }
}

/// Failed attempts decided in Rust, written together by [`write_failures`].
#[derive(Default)]
pub(crate) struct Failures {
    ids: Vec<i64>,
    states: Vec<i16>,
    run_at: Vec<Option<Timestamp>>,
    entries: Vec<String>,
}

impl Failures {
    /// Records a failed attempt of a running job and decides its move with [`on_failure`].
    pub(crate) fn add(
        &mut self,
        job: &RunningJob,
        error: &str,
        retryable: bool,
        now: Timestamp,
    ) -> Result<JobState, PgError> {
        let policy: RetryPolicy = match &job.retry {
            Some(text) => serde_json::from_str(text)
                .map_err(|e| PgError::Decode(format!("job {}: retry: {e}", job.id)))?,
            None => job.queue_retry.clone(),
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
        let (to, run_at) = (outcome.next_state(now)?, outcome.run_at());
        let entry = AttemptError {
            attempt: job.attempt,
            at: now,
            error: flotilla_core::truncate_utf8(error, flotilla_core::MAX_ERROR_BYTES).to_owned(),
            worker_id: job.worker.clone(),
        };
        self.ids.push(job.id.0);
        self.states.push(state_col(to));
        self.run_at.push(run_at);
        self.entries.push(json(&entry)?);
        Ok(to)
    }

    fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Writes decided failures (of jobs this transaction has locked), with their counts, and
/// adds the queues to wake to `woken`. `lease_expired` marks them as lost leases for the
/// counters.
pub(crate) async fn write_failures<C: GenericClient>(
    c: &C,
    f: &Failures,
    now: Timestamp,
    lease_expired: bool,
    woken: &mut Woken,
) -> Result<(), PgError> {
    if f.is_empty() {
        return Ok(());
    }
    let stmt = c
        .prepare_cached(&format!(
            "WITH f AS (
                SELECT * FROM unnest($1::bigint[], $2::smallint[], $3::timestamptz[], $4::text[])
                    AS t(id, state, run_at, entry)
            ),
            failed AS (
                UPDATE jobs j SET state = f.state, run_at = coalesce(f.run_at, j.run_at),
                    finished_at = CASE WHEN f.state >= 3 THEN $5::timestamptz END,
                    errors = (CASE WHEN j.errors IS NULL OR json_array_length(j.errors) = 0
                                   THEN '[' || f.entry || ']'
                                   ELSE left(j.errors::text, -1) || ',' || f.entry || ']' END)::json
                FROM f WHERE j.id = f.id AND j.state + 0 = 2
                RETURNING j.queue, j.group_key, f.state AS to_state
            ),
            moved AS (
                SELECT queue, group_key, 2::smallint AS from_state, to_state,
                       0 AS enq, 0 AS succ, 1 AS failed, (to_state IN (0, 1))::int AS retried,
                       (to_state = 5)::int AS dead, (to_state = 4)::int AS cancelled,
                       $6::int AS lease_expired
                FROM failed
            ){COUNTS}
            SELECT count(*), {WOKEN} FROM failed"
        ))
        .await?;
    let expired = i32::from(lease_expired);
    let row = c
        .query_one(
            &stmt,
            &[&f.ids, &f.states, &f.run_at, &f.entries, &now, &expired],
        )
        .await?;
    woken.read(std::slice::from_ref(&row), 1)?;
    let written: i64 = get(&row, 0)?;
    if written != crate::row::big(f.ids.len()) {
        return Err(PgError::Decode(format!(
            "wrote {written} of {} failures",
            f.ids.len()
        )));
    }
    Ok(())
}

/// See `Store::job_fail_many`.
pub(crate) async fn fail_many(
    s: &PgStore,
    p: &JobFailManyParams,
) -> Result<ItemResults<JobState>, PgError> {
    if p.failures.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = p.failures.iter().map(|f| f.job_id.0).collect();
    let mut c = s.client().await?;
    let tx = c.transaction().await?;
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT {RUNNING_COLUMNS} FROM jobs j JOIN queues q ON q.name = j.queue
             WHERE j.id = ANY($1::bigint[]) AND j.state + 0 = 2 ORDER BY j.id FOR UPDATE OF j"
        ))
        .await?;
    let rows = tx.query(&stmt, &[&ids]).await?;
    let mut held: HashMap<i64, RunningJob> = HashMap::with_capacity(rows.len());
    for r in &rows {
        let job = running_job(r)?;
        held.insert(job.id.0, job);
    }
    let mut failures = Failures::default();
    let mut accepted: HashMap<(i64, i64), JobState> = HashMap::new();
    let mut used: HashSet<i64> = HashSet::new();
    for f in &p.failures {
        if let Some(job) = held.get(&f.job_id.0)
            && job.token == Some(f.token.0)
            && used.insert(f.job_id.0)
        {
            let to = failures.add(job, &f.error, f.retryable, p.now)?;
            accepted.insert((f.job_id.0, f.token.0), to);
        }
    }
    let mut woken = Woken::default();
    write_failures(&tx, &failures, p.now, false, &mut woken).await?;
    let items: Vec<(JobId, LeaseToken)> = p.failures.iter().map(|f| (f.job_id, f.token)).collect();
    let results = answer(&tx, &items, accepted).await?;
    tx.commit().await?;
    woken.send(&c).await;
    Ok(results)
}
