//! Rows to domain values: jobs, JSON columns, and the small conversions between Rust's
//! unsigned counts and PostgreSQL's signed integers.

use flotilla_core::{Job, JobId, JobState, Lease, LeaseToken, Timestamp};
use serde::de::DeserializeOwned;
use tokio_postgres::Row;
use tokio_postgres::types::FromSql;

use crate::error::PgError;

/// The columns [`job_from_row`] reads, in order, for a query on `jobs` (alias-free).
pub(crate) const JOB_COLUMNS: &str = "id, queue, kind, state, priority, run_at, attempt, max_attempts, \
     payload::text, retry, timeout_ms, lease_ms, unique_key, group_key, tags, lease_token, lease_worker, \
     lease_expires_at, cancel_requested, progress::text, result::text, errors::text, created_at, \
     attempted_at, finished_at";

/// [`JOB_COLUMNS`] qualified with the table alias `j`, for joins and `UPDATE ... RETURNING`.
pub(crate) const JOB_COLUMNS_J: &str = "j.id, j.queue, j.kind, j.state, j.priority, j.run_at, j.attempt, \
     j.max_attempts, j.payload::text, j.retry, j.timeout_ms, j.lease_ms, j.unique_key, j.group_key, j.tags, \
     j.lease_token, j.lease_worker, j.lease_expires_at, j.cancel_requested, j.progress::text, j.result::text, \
     j.errors::text, j.created_at, j.attempted_at, j.finished_at";

/// How many columns [`JOB_COLUMNS`] has.
pub(crate) const JOB_COLUMN_COUNT: usize = 25;

/// The longest duration, in milliseconds, that time arithmetic in SQL uses: 100 years. Longer
/// leases and timeouts are the same as forever, and staying below it keeps every product
/// exact and in range.
pub(crate) const MAX_SQL_MS: i64 = 100 * 366 * 24 * 3600 * 1000;

/// SQL for `now + ms milliseconds`, exact to the microsecond (the product stays below
/// 2^53 microseconds).
pub(crate) fn plus_ms(now: &str, ms: &str) -> String {
    format!("({now} + LEAST({ms}, {MAX_SQL_MS}) * interval '1 millisecond')")
}

/// Whether PostgreSQL's `timestamptz` can hold `t` (it starts in 4713 BC; chrono goes
/// further back, and both go far enough forward).
pub(crate) fn in_range(t: Timestamp) -> bool {
    use chrono::Datelike;
    t.year() > -4712
}

/// Reads column `idx`, naming it in the error.
pub(crate) fn get<'a, T: FromSql<'a>>(row: &'a Row, idx: usize) -> Result<T, PgError> {
    row.try_get(idx)
        .map_err(|e| PgError::Decode(format!("column {idx}: {e}")))
}

/// A JSON text column.
pub(crate) fn parse<T: DeserializeOwned>(
    text: Option<&str>,
    what: &str,
) -> Result<Option<T>, PgError> {
    text.map(serde_json::from_str)
        .transpose()
        .map_err(|e| PgError::Decode(format!("{what}: {e}")))
}

/// A value as JSON text.
pub(crate) fn json<T: serde::Serialize>(value: &T) -> Result<String, PgError> {
    serde_json::to_string(value).map_err(|e| PgError::Decode(format!("cannot serialize: {e}")))
}

/// A millisecond count as a column value, saturating.
pub(crate) fn ms_i64(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// A stored non-negative count back to `u64`.
pub(crate) fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// A limit or count as a SQL `bigint`.
pub(crate) fn big(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A state column.
pub(crate) fn state(n: i16) -> Result<JobState, PgError> {
    JobState::from_i64(i64::from(n)).ok_or_else(|| PgError::Decode(format!("unknown state {n}")))
}

/// A state as its column value.
pub(crate) fn state_col(s: JobState) -> i16 {
    s.as_i64() as i16
}

/// Reads a job from columns `at..at + JOB_COLUMN_COUNT` of a row selected with
/// [`JOB_COLUMNS`] (or [`JOB_COLUMNS_J`]).
pub(crate) fn job_from_row(r: &Row, at: usize) -> Result<Job, PgError> {
    let c = |i: usize| at + i;
    let state = state(get(r, c(3))?)?;
    let lease = match (
        state,
        get::<Option<i64>>(r, c(15))?,
        get::<Option<Timestamp>>(r, c(17))?,
    ) {
        (JobState::Running, Some(token), Some(expires_at)) => Some(Lease {
            token: LeaseToken(token),
            worker_id: get::<Option<String>>(r, c(16))?.unwrap_or_default(),
            expires_at,
        }),
        _ => None,
    };
    let payload: Option<String> = get(r, c(8))?;
    let retry: Option<String> = get(r, c(9))?;
    let progress: Option<String> = get(r, c(19))?;
    let result: Option<String> = get(r, c(20))?;
    let errors: Option<String> = get(r, c(21))?;
    let non_negative = |v: Option<i64>| v.map(count);
    Ok(Job {
        id: JobId(get(r, c(0))?),
        queue: get(r, c(1))?,
        kind: get(r, c(2))?,
        state,
        priority: i32::from(get::<i16>(r, c(4))?),
        run_at: get(r, c(5))?,
        attempt: u32::try_from(get::<i32>(r, c(6))?).unwrap_or(0),
        max_attempts: u32::try_from(get::<i32>(r, c(7))?).unwrap_or(0),
        payload: parse(payload.as_deref(), "payload")?.unwrap_or_default(),
        retry: parse(retry.as_deref(), "retry")?,
        timeout_ms: non_negative(get(r, c(10))?),
        lease_ms: non_negative(get(r, c(11))?),
        unique_key: get(r, c(12))?,
        group_key: get::<Option<String>>(r, c(13))?.filter(|g| !g.is_empty()),
        tags: get::<Option<Vec<String>>>(r, c(14))?.unwrap_or_default(),
        lease,
        cancel_requested: get(r, c(18))?,
        progress: parse(progress.as_deref(), "progress")?,
        result: parse(result.as_deref(), "result")?,
        errors: parse(errors.as_deref(), "errors")?.unwrap_or_default(),
        created_at: get(r, c(22))?,
        attempted_at: get(r, c(23))?,
        finished_at: get(r, c(24))?,
    })
}
