//! Rows to domain values: jobs, times (microseconds since the epoch) and JSON columns.

use chrono::DateTime;
use flotilla_core::{Job, JobId, JobState, Lease, LeaseToken, Timestamp};
use flotilla_store::{StoreError, StoreResult};
use rusqlite::Row;
use serde::de::DeserializeOwned;

/// The columns [`job_from_row`] reads, in order.
pub(crate) const JOB_COLUMNS: &str = "id, queue, kind, state, priority, run_at, attempt, max_attempts, payload, \
     retry, timeout_ms, lease_ms, unique_key, group_key, tags, lease_token, lease_worker, lease_expires_at, \
     cancel_requested, progress, result, errors, created_at, attempted_at, finished_at";

/// Microseconds since the epoch.
pub(crate) fn micros(t: Timestamp) -> i64 {
    t.timestamp_micros()
}

/// The instant `us` microseconds after the epoch.
pub(crate) fn from_micros(us: i64) -> Timestamp {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

/// Milliseconds as a column value, saturating.
pub(crate) fn ms_i64(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// A JSON column.
pub(crate) fn json<T: serde::Serialize>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Internal(format!("cannot serialize: {e}")))
}

fn parse<T: DeserializeOwned>(text: Option<String>, column: &str) -> rusqlite::Result<Option<T>> {
    text.map(|t| serde_json::from_str(&t))
        .transpose()
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(
                0,
                rusqlite::types::Type::Text,
                format!("{column}: {e}").into(),
            )
        })
}

/// Reads a job from a row selected with [`JOB_COLUMNS`].
pub(crate) fn job_from_row(r: &Row<'_>) -> rusqlite::Result<Job> {
    let state_n: i64 = r.get(3)?;
    let state = JobState::from_i64(state_n).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            3,
            rusqlite::types::Type::Integer,
            format!("state {state_n}").into(),
        )
    })?;
    let lease = match (
        state,
        r.get::<_, Option<i64>>(15)?,
        r.get::<_, Option<i64>>(17)?,
    ) {
        (JobState::Running, Some(token), Some(expires)) => Some(Lease {
            token: LeaseToken(token),
            worker_id: r.get::<_, Option<String>>(16)?.unwrap_or_default(),
            expires_at: from_micros(expires),
        }),
        _ => None,
    };
    Ok(Job {
        id: JobId(r.get(0)?),
        queue: r.get(1)?,
        kind: r.get(2)?,
        state,
        priority: r.get(4)?,
        run_at: from_micros(r.get(5)?),
        attempt: r.get(6)?,
        max_attempts: r.get(7)?,
        payload: parse(Some(r.get(8)?), "payload")?.unwrap_or_default(),
        retry: parse(r.get(9)?, "retry")?,
        timeout_ms: r.get::<_, Option<i64>>(10)?.map(|v| v.max(0) as u64),
        lease_ms: r.get::<_, Option<i64>>(11)?.map(|v| v.max(0) as u64),
        unique_key: r.get(12)?,
        group_key: r.get::<_, Option<String>>(13)?.filter(|g| !g.is_empty()),
        tags: parse(r.get(14)?, "tags")?.unwrap_or_default(),
        lease,
        cancel_requested: r.get(18)?,
        progress: parse(r.get(19)?, "progress")?,
        result: parse(r.get(20)?, "result")?,
        errors: parse(r.get(21)?, "errors")?.unwrap_or_default(),
        created_at: from_micros(r.get(22)?),
        attempted_at: r.get::<_, Option<i64>>(23)?.map(from_micros),
        finished_at: r.get::<_, Option<i64>>(24)?.map(from_micros),
    })
}
