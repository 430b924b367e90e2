//! Copying in what another store exported (`flotilla store copy`): jobs exactly as they
//! were, throughput counters and cron progress.
//!
//! - **Jobs**: one transaction per call. The id and lease-token sequences are moved above
//!   the batch's largest id and token first (only ever forwards: `setval` runs only when
//!   the sequence is below), so an enqueue or claim running meanwhile draws values above
//!   the copied ones. Then one `INSERT ... SELECT FROM unnest(...)` per 1,000 jobs inserts
//!   every column as given, with `ON CONFLICT (id) DO NOTHING` (a copy run again adds only
//!   what is missing), takes `KEY SHARE` on the queues like an enqueue (in a queue that
//!   claims by group, a job without a key joins the group ""), and updates the counts and
//!   groups through `counts::COUNTS` like any other statement. Throughput counters are not
//!   touched: they come with `queue_import_totals`.
//! - **Totals**: the queue row is locked (`FOR NO KEY UPDATE`, which serializes imports of
//!   one queue), then one statement adds, to this connection's shard, the difference
//!   between each imported counter and the sum of the shards when it is larger.
//! - **Cron**: an upsert that keeps the imported `last_fired_at`.

use deadpool_postgres::GenericClient;
use flotilla_core::{Job, JobState, Timestamp};
use flotilla_store::{CronEntry, StoreError, Throughput};
use tokio_postgres::error::SqlState;

use crate::PgStore;
use crate::counts::{COUNTS, NO_COUNTERS, WOKEN};
use crate::error::{PgError, storable};
use crate::row::{big, count, get, json, ms_i64, state_col};
use crate::wakeup::Woken;

/// Jobs per insert statement.
const CHUNK: usize = 1000;

/// A chunk of jobs as column arrays.
#[derive(Default)]
struct Columns {
    id: Vec<i64>,
    queue: Vec<String>,
    kind: Vec<String>,
    state: Vec<i16>,
    priority: Vec<i16>,
    run_at: Vec<Timestamp>,
    attempt: Vec<i32>,
    max_attempts: Vec<i32>,
    payload: Vec<String>,
    retry: Vec<Option<String>>,
    timeout_ms: Vec<Option<i64>>,
    lease_ms: Vec<Option<i64>>,
    unique_key: Vec<Option<String>>,
    group_key: Vec<Option<String>>,
    tags: Vec<Option<String>>,
    lease_token: Vec<Option<i64>>,
    lease_worker: Vec<Option<String>>,
    lease_expires_at: Vec<Option<Timestamp>>,
    cancel_requested: Vec<bool>,
    progress: Vec<Option<String>>,
    result: Vec<Option<String>>,
    errors: Vec<Option<String>>,
    created_at: Vec<Timestamp>,
    attempted_at: Vec<Option<Timestamp>>,
    finished_at: Vec<Option<Timestamp>>,
}

fn int(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

impl Columns {
    fn push(&mut self, job: &Job) -> Result<(), PgError> {
        // A running job without a lease would never be reaped: refuse it.
        if job.state == JobState::Running && job.lease.is_none() {
            return Err(flotilla_core::Error::InvalidArgument {
                field: "lease",
                reason: format!("job {} is running but has no lease", job.id),
            }
            .into());
        }
        if let Some(k) = &job.unique_key {
            storable("unique_key", k)?;
        }
        if let Some(k) = &job.group_key {
            storable("group_key", k)?;
        }
        for tag in &job.tags {
            storable("tags", tag)?;
        }
        let lease = job.lease.as_ref();
        self.id.push(job.id.0);
        self.queue.push(job.queue.clone());
        self.kind.push(job.kind.clone());
        self.state.push(state_col(job.state));
        self.priority
            .push(i16::try_from(job.priority).unwrap_or(i16::MAX));
        self.run_at.push(job.run_at);
        self.attempt.push(int(job.attempt));
        self.max_attempts.push(int(job.max_attempts));
        self.payload.push(json(&job.payload)?);
        self.retry.push(job.retry.as_ref().map(json).transpose()?);
        self.timeout_ms.push(job.timeout_ms.map(ms_i64));
        self.lease_ms.push(job.lease_ms.map(ms_i64));
        self.unique_key.push(job.unique_key.clone());
        self.group_key.push(job.group_key.clone());
        self.tags.push(if job.tags.is_empty() {
            None
        } else {
            Some(json(&job.tags)?)
        });
        self.lease_token.push(lease.map(|l| l.token.0));
        self.lease_worker.push(lease.map(|l| l.worker_id.clone()));
        self.lease_expires_at.push(lease.map(|l| l.expires_at));
        self.cancel_requested.push(job.cancel_requested);
        self.progress
            .push(job.progress.as_ref().map(json).transpose()?);
        self.result.push(job.result.as_ref().map(json).transpose()?);
        self.errors.push(if job.errors.is_empty() {
            None
        } else {
            Some(json(&job.errors)?)
        });
        self.created_at.push(job.created_at);
        self.attempted_at.push(job.attempted_at);
        self.finished_at.push(job.finished_at);
        Ok(())
    }
}

/// See `Store::job_import`.
pub(crate) async fn jobs(s: &PgStore, jobs: &[Job]) -> Result<u64, PgError> {
    if jobs.is_empty() {
        return Ok(0);
    }
    let chunks = jobs
        .chunks(CHUNK)
        .map(|chunk| {
            let mut cols = Columns::default();
            chunk.iter().try_for_each(|j| cols.push(j))?;
            Ok(cols)
        })
        .collect::<Result<Vec<_>, PgError>>()?;
    let top_id = jobs.iter().map(|j| j.id.0).max();
    let top_token = jobs
        .iter()
        .filter_map(|j| j.lease.as_ref())
        .map(|l| l.token.0)
        .max();

    let mut c = s.client().await?;
    let tx = c.transaction().await?;
    // Sequences first, and only forwards: new ids and tokens drawn from now on are above the
    // copied ones. (Sequences are not transactional; a rolled-back import leaves a gap.)
    let stmt = tx
        .prepare_cached(
            "SELECT
                (SELECT setval('jobs_id_seq', $1::bigint) FROM jobs_id_seq
                 WHERE $1::bigint > CASE WHEN is_called THEN last_value ELSE last_value - 1 END),
                (SELECT setval('lease_tokens', $2::bigint) FROM lease_tokens
                 WHERE $2::bigint > CASE WHEN is_called THEN last_value ELSE last_value - 1 END)",
        )
        .await?;
    tx.query_one(&stmt, &[&top_id, &top_token]).await?;
    let mut inserted = 0;
    let mut woken = Woken::default();
    for cols in &chunks {
        inserted += insert(&tx, cols, &mut woken).await?;
    }
    tx.commit().await?;
    woken.send(&c).await;
    Ok(inserted)
}

/// Inserts one chunk; returns how many jobs were new, and adds the queues to wake to
/// `woken`.
async fn insert<C: GenericClient>(c: &C, b: &Columns, woken: &mut Woken) -> Result<u64, PgError> {
    let mut queues: Vec<&str> = b.queue.iter().map(String::as_str).collect();
    queues.sort_unstable();
    queues.dedup();
    let sql = format!(
        "WITH input AS (
            SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::smallint[],
                                 $5::smallint[], $6::timestamptz[], $7::int[], $8::int[],
                                 $9::text[], $10::text[], $11::bigint[], $12::bigint[],
                                 $13::text[], $14::text[], $15::text[], $16::bigint[],
                                 $17::text[], $18::timestamptz[], $19::boolean[], $20::text[],
                                 $21::text[], $22::text[], $23::timestamptz[],
                                 $24::timestamptz[], $25::timestamptz[])
                WITH ORDINALITY AS t(id, queue, kind, state, priority, run_at, attempt,
                                     max_attempts, payload, retry, timeout_ms, lease_ms,
                                     unique_key, group_key, tags, lease_token, lease_worker,
                                     lease_expires_at, cancel_requested, progress, result,
                                     errors, created_at, attempted_at, finished_at, ord)
        ),
        q AS (
            SELECT name, grouped FROM queues WHERE name = ANY($26::text[])
            ORDER BY name FOR KEY SHARE
        ),
        ins AS (
            INSERT INTO jobs (id, queue, kind, state, priority, run_at, attempt, max_attempts,
                              payload, retry, timeout_ms, lease_ms, unique_key, group_key, tags,
                              lease_token, lease_worker, lease_expires_at, cancel_requested,
                              progress, result, errors, created_at, attempted_at, finished_at)
            SELECT i.id, i.queue, i.kind, i.state, i.priority, i.run_at, i.attempt,
                   i.max_attempts, i.payload::json, i.retry, i.timeout_ms, i.lease_ms,
                   i.unique_key, coalesce(i.group_key, CASE WHEN q.grouped THEN '' END),
                   CASE WHEN i.tags IS NULL THEN NULL
                        ELSE ARRAY(SELECT json_array_elements_text(i.tags::json)) END,
                   i.lease_token, i.lease_worker, i.lease_expires_at, i.cancel_requested,
                   i.progress::json, i.result::json, i.errors::json, i.created_at,
                   i.attempted_at, i.finished_at
            FROM input i JOIN q ON q.name = i.queue
            WHERE (SELECT count(*) FROM q) = $27
            ORDER BY i.ord
            ON CONFLICT (id) DO NOTHING
            RETURNING queue, group_key, state
        ),
        moved AS (
            SELECT queue, group_key, NULL::smallint AS from_state, state AS to_state, {NO_COUNTERS}
            FROM ins
        ){COUNTS}
        SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM q), {WOKEN}"
    );
    let stmt = c.prepare_cached(&sql).await?;
    let row = c
        .query_one(
            &stmt,
            &[
                &b.id,
                &b.queue,
                &b.kind,
                &b.state,
                &b.priority,
                &b.run_at,
                &b.attempt,
                &b.max_attempts,
                &b.payload,
                &b.retry,
                &b.timeout_ms,
                &b.lease_ms,
                &b.unique_key,
                &b.group_key,
                &b.tags,
                &b.lease_token,
                &b.lease_worker,
                &b.lease_expires_at,
                &b.cancel_requested,
                &b.progress,
                &b.result,
                &b.errors,
                &b.created_at,
                &b.attempted_at,
                &b.finished_at,
                &queues,
                &big(queues.len()),
            ],
        )
        .await
        .map_err(held_key)?;
    if get::<i64>(&row, 1)? != big(queues.len()) {
        let found = queue_names(c, &queues).await?;
        let missing = queues.iter().find(|q| !found.iter().any(|f| f == *q));
        return Err(match missing {
            Some(q) => StoreError::QueueNotFound((*q).to_owned()),
            None => StoreError::Unavailable("a queue appeared during the import; try again".into()),
        }
        .into());
    }
    woken.read(std::slice::from_ref(&row), 2)?;
    Ok(count(get(&row, 0)?))
}

/// A copied live job whose unique key a live job of its queue holds already is refused
/// (the whole call rolls back) rather than reported as an internal error.
fn held_key(e: tokio_postgres::Error) -> PgError {
    match e.as_db_error() {
        Some(db)
            if *db.code() == SqlState::UNIQUE_VIOLATION
                && db.constraint() == Some("jobs_unique_key") =>
        {
            flotilla_core::Error::InvalidArgument {
                field: "unique_key",
                reason: format!(
                    "a live job of the queue holds this key already: {}",
                    db.detail().unwrap_or(db.message())
                ),
            }
            .into()
        }
        _ => e.into(),
    }
}

async fn queue_names<C: GenericClient>(c: &C, names: &[&str]) -> Result<Vec<String>, PgError> {
    let stmt = c
        .prepare_cached("SELECT name FROM queues WHERE name = ANY($1::text[])")
        .await?;
    c.query(&stmt, &[&names])
        .await?
        .iter()
        .map(|r| get(r, 0))
        .collect()
}

/// See `Store::queue_import_totals`.
pub(crate) async fn totals(s: &PgStore, queue: &str, t: &Throughput) -> Result<(), PgError> {
    let counters: Vec<i64> = [
        t.enqueued,
        t.succeeded,
        t.failed,
        t.retried,
        t.dead,
        t.cancelled,
        t.lease_expired,
    ]
    .iter()
    .map(|&n| i64::try_from(n).unwrap_or(i64::MAX))
    .collect();
    let mut c = s.client().await?;
    let tx = c.transaction().await?;
    // Imports of one queue take turns, so each reads the sums the previous one left.
    let stmt = tx
        .prepare_cached("SELECT 1 FROM queues WHERE name = $1 FOR NO KEY UPDATE")
        .await?;
    if tx.query_opt(&stmt, &[&queue]).await?.is_none() {
        return Err(StoreError::QueueNotFound(queue.to_owned()).into());
    }
    let stmt = tx
        .prepare_cached(
            "WITH sums AS (
                SELECT coalesce(sum(t_enqueued), 0)::bigint AS enq,
                       coalesce(sum(t_succeeded), 0)::bigint AS succ,
                       coalesce(sum(t_failed), 0)::bigint AS failed,
                       coalesce(sum(t_retried), 0)::bigint AS retried,
                       coalesce(sum(t_dead), 0)::bigint AS dead,
                       coalesce(sum(t_cancelled), 0)::bigint AS cancelled,
                       coalesce(sum(t_lease_expired), 0)::bigint AS lease_expired
                FROM queue_counts WHERE queue = $1
            )
            INSERT INTO queue_counts AS q (queue, shard, t_enqueued, t_succeeded, t_failed,
                t_retried, t_dead, t_cancelled, t_lease_expired)
            SELECT $1, (pg_backend_pid() % 64)::smallint,
                GREATEST(($2::bigint[])[1] - enq, 0), GREATEST(($2::bigint[])[2] - succ, 0),
                GREATEST(($2::bigint[])[3] - failed, 0), GREATEST(($2::bigint[])[4] - retried, 0),
                GREATEST(($2::bigint[])[5] - dead, 0), GREATEST(($2::bigint[])[6] - cancelled, 0),
                GREATEST(($2::bigint[])[7] - lease_expired, 0)
            FROM sums
            ON CONFLICT (queue, shard) DO UPDATE SET
                t_enqueued = q.t_enqueued + excluded.t_enqueued,
                t_succeeded = q.t_succeeded + excluded.t_succeeded,
                t_failed = q.t_failed + excluded.t_failed,
                t_retried = q.t_retried + excluded.t_retried,
                t_dead = q.t_dead + excluded.t_dead,
                t_cancelled = q.t_cancelled + excluded.t_cancelled,
                t_lease_expired = q.t_lease_expired + excluded.t_lease_expired",
        )
        .await?;
    tx.execute(&stmt, &[&queue, &counters]).await?;
    tx.commit().await?;
    Ok(())
}

/// See `Store::cron_import`; the schedule was validated by the caller.
pub(crate) async fn cron(s: &PgStore, entry: &CronEntry) -> Result<(), PgError> {
    let schedule = &entry.schedule;
    storable("name", &schedule.name)?;
    let c = s.client().await?;
    let stmt = c
        .prepare_cached(
            "WITH q AS (SELECT name FROM queues WHERE name = $4),
             up AS (
                INSERT INTO cron (name, schedule, last_fired_at) SELECT $1, $2, $3 FROM q
                ON CONFLICT (name) DO UPDATE SET schedule = excluded.schedule,
                    last_fired_at = excluded.last_fired_at
                RETURNING 1
             )
             SELECT count(*) FROM up",
        )
        .await?;
    let row = c
        .query_one(
            &stmt,
            &[
                &schedule.name,
                &json(schedule)?,
                &entry.last_fired_at,
                &schedule.queue,
            ],
        )
        .await?;
    if get::<i64>(&row, 0)? == 0 {
        return Err(StoreError::QueueNotFound(schedule.queue.clone()).into());
    }
    Ok(())
}
