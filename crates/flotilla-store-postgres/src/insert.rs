//! Enqueue: one multi-row `INSERT ... SELECT FROM unnest(...)` per batch.
//!
//! Validation and serialization happen first, in Rust. The statement then, in one go:
//! takes a `KEY SHARE` lock on the batch's queue rows (so a concurrent `queue_upsert`
//! cannot switch a queue to grouping under it) and reads their defaults; inserts every job
//! in input order with ids drawn in that order, or nothing at all if a queue is missing;
//! skips jobs whose unique key is held by a live job (`ON CONFLICT DO NOTHING` on the
//! partial unique index, which also catches a repeated key within the batch); and updates
//! the counts. A skipped job is then answered with the live holder of its key.

use std::collections::HashMap;

use deadpool_postgres::GenericClient;
use flotilla_core::{JobId, JobState, NewJob, Timestamp, check_payload_size};
use flotilla_store::{InsertedJob, JobInsertManyParams, StoreError};

use crate::counts::{COUNTS, WOKEN};
use crate::error::{PgError, storable};
use crate::row::{big, get, json, ms_i64, state, state_col};
use crate::wakeup::Woken;

/// How many times a job whose key holder vanished is inserted again before giving up.
const MAX_INSERT_ROUNDS: usize = 5;

/// A batch checked and serialized, as column arrays.
#[derive(Default)]
pub(crate) struct Prepared {
    queue: Vec<String>,
    kind: Vec<String>,
    state: Vec<i16>,
    priority: Vec<i16>,
    run_at: Vec<Timestamp>,
    max_attempts: Vec<Option<i32>>,
    payload: Vec<String>,
    retry: Vec<Option<String>>,
    timeout_ms: Vec<Option<i64>>,
    lease_ms: Vec<Option<i64>>,
    unique_key: Vec<Option<String>>,
    group_key: Vec<Option<String>>,
    tags: Vec<Option<String>>,
    now: Option<Timestamp>,
}

impl Prepared {
    fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether any job carries a unique key (the batch then runs in a transaction, so
    /// that resolving duplicates is atomic with the insert).
    pub(crate) fn has_unique_keys(&self) -> bool {
        self.unique_key.iter().any(Option::is_some)
    }

    /// The jobs at `positions`, as a batch of their own.
    fn subset(&self, positions: &[usize]) -> Prepared {
        fn take<T: Clone>(v: &[T], positions: &[usize]) -> Vec<T> {
            positions.iter().map(|&i| v[i].clone()).collect()
        }
        Prepared {
            queue: take(&self.queue, positions),
            kind: take(&self.kind, positions),
            state: take(&self.state, positions),
            priority: take(&self.priority, positions),
            run_at: take(&self.run_at, positions),
            max_attempts: take(&self.max_attempts, positions),
            payload: take(&self.payload, positions),
            retry: take(&self.retry, positions),
            timeout_ms: take(&self.timeout_ms, positions),
            lease_ms: take(&self.lease_ms, positions),
            unique_key: take(&self.unique_key, positions),
            group_key: take(&self.group_key, positions),
            tags: take(&self.tags, positions),
            now: self.now,
        }
    }
}

/// Validates every job of the batch (the whole batch is refused if one is invalid) and
/// serializes it into column arrays.
pub(crate) fn prepare(
    params: JobInsertManyParams,
    max_payload_bytes: usize,
) -> Result<Prepared, PgError> {
    let now = params.now;
    let mut p = Prepared {
        now: Some(now),
        ..Prepared::default()
    };
    for job in params.jobs {
        job.validate()?;
        let payload = json(&job.payload)?;
        check_payload_size(payload.len(), max_payload_bytes)?;
        check_storable(&job)?;
        let run_at = job.first_run_at(now);
        if !crate::row::in_range(run_at) {
            return Err(flotilla_core::Error::InvalidArgument {
                field: "run_at",
                reason: "before 4713 BC".into(),
            }
            .into());
        }
        p.state.push(state_col(if run_at > now {
            JobState::Scheduled
        } else {
            JobState::Available
        }));
        p.run_at.push(run_at);
        p.max_attempts.push(
            job.max_attempts
                .or_else(|| job.retry.as_ref().map(|r| r.max_attempts()))
                .map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
        );
        p.priority
            .push(i16::try_from(job.priority).unwrap_or(i16::MAX));
        p.retry.push(job.retry.as_ref().map(json).transpose()?);
        p.timeout_ms.push(job.timeout_ms.map(ms_i64));
        p.lease_ms.push(job.lease_ms.map(ms_i64));
        p.tags.push(if job.tags.is_empty() {
            None
        } else {
            Some(json(&job.tags)?)
        });
        p.payload.push(payload);
        p.queue.push(job.queue);
        p.kind.push(job.kind);
        p.unique_key.push(job.unique_key);
        p.group_key.push(job.group_key);
    }
    Ok(p)
}

/// Text PostgreSQL cannot hold is refused up front rather than failing the statement.
fn check_storable(job: &NewJob) -> Result<(), PgError> {
    if let Some(k) = &job.unique_key {
        storable("unique_key", k)?;
    }
    if let Some(k) = &job.group_key {
        storable("group_key", k)?;
    }
    for tag in &job.tags {
        storable("tags", tag)?;
    }
    Ok(())
}

/// Inserts a prepared batch through `c` (a transaction when the batch has unique keys),
/// returning the live duplicates for taken unique keys, in input order. The queues to
/// wake are added to `woken`.
pub(crate) async fn insert<C: GenericClient>(
    c: &C,
    batch: &Prepared,
    woken: &mut Woken,
) -> Result<Vec<InsertedJob>, PgError> {
    let mut out: Vec<Option<InsertedJob>> = vec![None; batch.len()];
    if batch.len() == 0 {
        return Ok(Vec::new());
    }
    let mut pending: Vec<usize> = (0..batch.len()).collect();
    for _ in 0..MAX_INSERT_ROUNDS {
        let inserted = if pending.len() == batch.len() {
            insert_rows(c, batch, woken).await?
        } else {
            insert_rows(c, &batch.subset(&pending), woken).await?
        };
        // Answers keyed by (queue, unique key): the jobs of this batch first.
        let mut holders: HashMap<(&str, &str), InsertedJob> = HashMap::new();
        for (k, &i) in pending.iter().enumerate() {
            if let Some(job) = &inserted[k] {
                out[i] = Some(job.clone());
                if let Some(key) = &batch.unique_key[i] {
                    holders.insert(
                        (batch.queue[i].as_str(), key.as_str()),
                        InsertedJob {
                            duplicate: true,
                            ..job.clone()
                        },
                    );
                }
            }
        }
        let mut unresolved: Vec<usize> = Vec::new();
        for &i in &pending {
            if out[i].is_some() {
                continue;
            }
            let Some(key) = &batch.unique_key[i] else {
                return Err(PgError::Store(StoreError::Internal(
                    "a job without a unique key was not inserted".into(),
                )));
            };
            match holders.get(&(batch.queue[i].as_str(), key.as_str())) {
                Some(held) => out[i] = Some(held.clone()),
                None => unresolved.push(i),
            }
        }
        if unresolved.is_empty() {
            return Ok(out.into_iter().flatten().collect());
        }
        let live = live_holders(c, batch, &unresolved).await?;
        pending = Vec::new();
        for i in unresolved {
            let key = batch.unique_key[i].as_deref().unwrap_or_default();
            match live.get(&(batch.queue[i].clone(), key.to_owned())) {
                Some(held) => out[i] = Some(held.clone()),
                // The holder finished between our insert and our look-up: the key is
                // free again, so insert this job after all.
                None => pending.push(i),
            }
        }
        if pending.is_empty() {
            return Ok(out.into_iter().flatten().collect());
        }
    }
    Err(PgError::Store(StoreError::Unavailable(
        "a unique key kept changing hands; try again".into(),
    )))
}

/// One insert statement; answers `Some` for each job inserted, `None` for each skipped
/// because its key was taken.
async fn insert_rows<C: GenericClient>(
    c: &C,
    b: &Prepared,
    woken: &mut Woken,
) -> Result<Vec<Option<InsertedJob>>, PgError> {
    let mut queues: Vec<&str> = b.queue.iter().map(String::as_str).collect();
    queues.sort_unstable();
    queues.dedup();
    let sql = format!(
        "WITH input AS (
            SELECT * FROM unnest($1::text[], $2::text[], $3::smallint[], $4::smallint[],
                                 $5::timestamptz[], $6::int[], $7::text[], $8::text[],
                                 $9::bigint[], $10::bigint[], $11::text[], $12::text[], $13::text[])
                WITH ORDINALITY AS t(queue, kind, state, priority, run_at, max_attempts, payload,
                                     retry, timeout_ms, lease_ms, unique_key, group_key, tags, ord)
        ),
        q AS (
            SELECT name, grouped, max_attempts FROM queues WHERE name = ANY($14::text[])
            ORDER BY name FOR KEY SHARE
        ),
        ids AS (
            SELECT nextval('jobs_id_seq') AS id, ord FROM (SELECT ord FROM input ORDER BY ord) s
        ),
        ins AS (
            INSERT INTO jobs (id, queue, kind, state, priority, run_at, max_attempts, payload, retry,
                              timeout_ms, lease_ms, unique_key, group_key, tags, created_at)
            SELECT ids.id, i.queue, i.kind, i.state, i.priority, i.run_at,
                   coalesce(i.max_attempts, q.max_attempts), i.payload::json, i.retry,
                   i.timeout_ms, i.lease_ms, i.unique_key,
                   coalesce(i.group_key, CASE WHEN q.grouped THEN '' END),
                   CASE WHEN i.tags IS NULL THEN NULL
                        ELSE ARRAY(SELECT json_array_elements_text(i.tags::json)) END,
                   $15::timestamptz
            FROM input i JOIN ids ON ids.ord = i.ord JOIN q ON q.name = i.queue
            WHERE (SELECT count(*) FROM q) = $16
            ORDER BY i.ord
            ON CONFLICT DO NOTHING
            RETURNING id, queue, group_key, state
        ),
        moved AS (
            SELECT queue, group_key, NULL::smallint AS from_state, state AS to_state,
                   1 AS enq, 0 AS succ, 0 AS failed, 0 AS retried, 0 AS dead, 0 AS cancelled,
                   0 AS lease_expired
            FROM ins
        ){COUNTS}
        SELECT ins.id, ins.state, (SELECT count(*) FROM q), {WOKEN}
        FROM ids LEFT JOIN ins ON ins.id = ids.id ORDER BY ids.ord"
    );
    let stmt = c.prepare_cached(&sql).await?;
    let now = b.now.unwrap_or_default();
    let rows = c
        .query(
            &stmt,
            &[
                &b.queue,
                &b.kind,
                &b.state,
                &b.priority,
                &b.run_at,
                &b.max_attempts,
                &b.payload,
                &b.retry,
                &b.timeout_ms,
                &b.lease_ms,
                &b.unique_key,
                &b.group_key,
                &b.tags,
                &queues,
                &now,
                &big(queues.len()),
            ],
        )
        .await?;
    if let Some(first) = rows.first()
        && get::<i64>(first, 2)? != big(queues.len())
    {
        return Err(missing_queue(c, b).await);
    }
    if rows.len() != b.len() {
        return Err(PgError::Decode(format!(
            "insert answered {} rows for {} jobs",
            rows.len(),
            b.len()
        )));
    }
    woken.read(&rows, 3)?;
    rows.iter()
        .map(|r| {
            Ok(match get::<Option<i64>>(r, 0)? {
                Some(id) => Some(InsertedJob {
                    id: JobId(id),
                    state: state(get(r, 1)?)?,
                    duplicate: false,
                }),
                None => None,
            })
        })
        .collect()
}

/// The `QueueNotFound` error for the first job whose queue does not exist.
async fn missing_queue<C: GenericClient>(c: &C, b: &Prepared) -> PgError {
    let found = async {
        let stmt = c
            .prepare_cached("SELECT name FROM queues WHERE name = ANY($1::text[])")
            .await?;
        let rows = c.query(&stmt, &[&b.queue]).await?;
        rows.iter()
            .map(|r| get::<String>(r, 0))
            .collect::<Result<Vec<_>, PgError>>()
    };
    match found.await {
        Ok(names) => match b.queue.iter().find(|q| !names.contains(q)) {
            Some(q) => PgError::Store(StoreError::QueueNotFound(q.clone())),
            None => PgError::Store(StoreError::Unavailable(
                "a queue appeared during the enqueue; try again".into(),
            )),
        },
        Err(e) => e,
    }
}

/// The live jobs holding the unique keys of the jobs at `positions`.
async fn live_holders<C: GenericClient>(
    c: &C,
    b: &Prepared,
    positions: &[usize],
) -> Result<HashMap<(String, String), InsertedJob>, PgError> {
    let queues: Vec<&str> = positions.iter().map(|&i| b.queue[i].as_str()).collect();
    let keys: Vec<&str> = positions
        .iter()
        .map(|&i| b.unique_key[i].as_deref().unwrap_or_default())
        .collect();
    let stmt = c
        .prepare_cached(
            "SELECT j.queue, j.unique_key, j.id, j.state
             FROM jobs j JOIN unnest($1::text[], $2::text[]) AS k(queue, unique_key)
                  ON j.queue = k.queue AND j.unique_key = k.unique_key
             WHERE j.unique_key IS NOT NULL AND j.state IN (0, 1, 2)",
        )
        .await?;
    let rows = c.query(&stmt, &[&queues, &keys]).await?;
    let mut out = HashMap::with_capacity(rows.len());
    for r in &rows {
        out.insert(
            (get(r, 0)?, get(r, 1)?),
            InsertedJob {
                id: JobId(get(r, 2)?),
                state: state(get(r, 3)?)?,
                duplicate: true,
            },
        );
    }
    Ok(out)
}
