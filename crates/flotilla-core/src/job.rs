//! Jobs: what a producer asks for ([`NewJob`]) and what the store keeps ([`Job`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[cfg(test)]
use crate::Clock;
use crate::{Error, JobState, RetryPolicy, Timestamp};

/// The default limit on a job's serialized payload: 256 KiB.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 256 * 1024;
/// The lowest-urgency priority; `0` runs first.
pub const MAX_PRIORITY: i32 = 9;
const MAX_NAME_LEN: usize = 128;
const MAX_KEY_LEN: usize = 255;
const MAX_TAGS: usize = 32;
const MAX_DELAY_MS: u64 = 10 * 365 * 24 * 3600 * 1000;

/// A job's id: assigned by the store, strictly increasing in enqueue order.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub i64);

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for JobId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(JobId).map_err(|_| Error::InvalidArgument {
            field: "job id",
            reason: format!("{s:?} is not a job id (a positive integer)"),
        })
    }
}

/// A fencing token: proof of holding a job's current lease. Tokens increase strictly
/// across the whole store, so a newer lease always carries a larger token.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LeaseToken(pub i64);

impl std::fmt::Display for LeaseToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The lease a running job is held under.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    /// The fencing token the holder must present.
    pub token: LeaseToken,
    /// The worker holding it.
    pub worker_id: String,
    /// When it lapses unless extended by a heartbeat.
    #[cfg_attr(feature = "utoipa", schema(value_type = String, format = DateTime))]
    pub expires_at: Timestamp,
}

/// When a lease taken or extended at `now` lapses: `now + lease`, but never after the
/// attempt's deadline `started + timeout`. So the server enforces a job's timeout too: a
/// worker that keeps heartbeating past it still loses the lease at the deadline.
pub fn lease_expiry(
    now: Timestamp,
    lease: Duration,
    started: Timestamp,
    timeout: Option<Duration>,
) -> Timestamp {
    let after = |t: Timestamp, d: Duration| {
        t.checked_add_signed(chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX))
    };
    let by_lease = after(now, lease).unwrap_or(now);
    match timeout.and_then(|t| after(started, t)) {
        Some(deadline) => by_lease.min(deadline),
        None => by_lease,
    }
}

/// The error recorded when an attempt outlives its timeout.
pub fn timeout_error(timeout: Duration) -> String {
    format!(
        "timed out: ran longer than {}",
        humantime_serde::re::humantime::format_duration(timeout)
    )
}

/// One failed attempt in a job's error history.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptError {
    /// Which attempt failed (1-based).
    pub attempt: u32,
    /// When it failed.
    #[cfg_attr(feature = "utoipa", schema(value_type = String, format = DateTime))]
    pub at: Timestamp,
    /// What went wrong.
    pub error: String,
    /// The worker that ran it, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
}

/// A job as the store keeps it.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Store-assigned id.
    pub id: JobId,
    /// The queue it waits in.
    pub queue: String,
    /// The handler that runs it, e.g. `image.transcode`.
    pub kind: String,
    /// The handler's input.
    pub payload: Value,
    /// `0..=9`, lower runs first.
    pub priority: i32,
    /// Current state.
    pub state: JobState,
    /// When it may run (for a retry, when the next attempt may start).
    #[cfg_attr(feature = "utoipa", schema(value_type = String, format = DateTime))]
    pub run_at: Timestamp,
    /// Attempts started so far.
    pub attempt: u32,
    /// Attempts allowed in all.
    pub max_attempts: u32,
    /// The job's own retry policy, overriding its queue's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Longest run time in milliseconds, overriding the queue's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Lease length in milliseconds, overriding the queue's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
    /// While the job is live, no other live job in its queue has this key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_key: Option<String>,
    /// Fairness and per-group concurrency key (e.g. a tenant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_key: Option<String>,
    /// Free-form labels for searching.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The current lease, while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
    /// A cancel was asked for while running; delivered on the next heartbeat.
    pub cancel_requested: bool,
    /// The last progress a heartbeat reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Value>,
    /// The handler's result, once succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// One entry per failed attempt, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<AttemptError>,
    /// When it was enqueued.
    #[cfg_attr(feature = "utoipa", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    /// When its latest attempt started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "utoipa", schema(value_type = Option<String>, format = DateTime))]
    pub attempted_at: Option<Timestamp>,
    /// When it reached a terminal state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "utoipa", schema(value_type = Option<String>, format = DateTime))]
    pub finished_at: Option<Timestamp>,
}

impl Job {
    /// The lease length this job runs under, given its queue's default.
    pub fn lease_duration(&self, queue_default: Duration) -> Duration {
        self.lease_ms.map_or(queue_default, Duration::from_millis)
    }
}

/// A job to enqueue. Built with [`NewJob::new`] and the chained setters.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewJob {
    /// See [`Job::queue`].
    pub queue: String,
    /// See [`Job::kind`].
    pub kind: String,
    /// See [`Job::payload`].
    #[serde(default)]
    pub payload: Value,
    /// See [`Job::priority`]; 0 when absent.
    #[serde(default)]
    pub priority: i32,
    /// Not before this time; now when absent.
    #[serde(default)]
    #[cfg_attr(feature = "utoipa", schema(value_type = Option<String>, format = DateTime))]
    pub run_at: Option<Timestamp>,
    /// Not before this many milliseconds after the enqueue (instead of `run_at`).
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// Attempts allowed; from the retry policy when absent.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// See [`Job::retry`].
    #[serde(default)]
    pub retry: Option<RetryPolicy>,
    /// See [`Job::timeout_ms`].
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// See [`Job::lease_ms`].
    #[serde(default)]
    pub lease_ms: Option<u64>,
    /// See [`Job::unique_key`].
    #[serde(default)]
    pub unique_key: Option<String>,
    /// See [`Job::group_key`].
    #[serde(default)]
    pub group_key: Option<String>,
    /// See [`Job::tags`].
    #[serde(default)]
    pub tags: Vec<String>,
}

impl NewJob {
    /// A job of `kind` on `queue` with `payload`, and every option at its default.
    pub fn new(queue: impl Into<String>, kind: impl Into<String>, payload: Value) -> Self {
        Self {
            queue: queue.into(),
            kind: kind.into(),
            payload,
            priority: 0,
            run_at: None,
            delay_ms: None,
            max_attempts: None,
            retry: None,
            timeout_ms: None,
            lease_ms: None,
            unique_key: None,
            group_key: None,
            tags: Vec::new(),
        }
    }

    /// Sets the priority (`0..=9`, lower runs first).
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Runs no earlier than `at`.
    pub fn run_at(mut self, at: Timestamp) -> Self {
        self.run_at = Some(at);
        self
    }

    /// Runs no earlier than `delay` after the enqueue.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay_ms = Some(millis(delay));
        self
    }

    /// When the job may first run, enqueued at `now`.
    pub fn first_run_at(&self, now: Timestamp) -> Timestamp {
        match (self.run_at, self.delay_ms) {
            (Some(at), _) => crate::truncate_micros(at),
            // validate() bounds the delay, so this cannot overflow.
            (None, Some(ms)) => now + chrono::Duration::milliseconds(ms.min(MAX_DELAY_MS) as i64),
            (None, None) => now,
        }
    }

    /// Sets the attempts allowed.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n);
        self
    }

    /// Overrides the queue's retry policy.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// Overrides the queue's timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout_ms = Some(millis(timeout));
        self
    }

    /// Overrides the queue's lease length.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease_ms = Some(millis(lease));
        self
    }

    /// Makes the enqueue idempotent on `key` while a job with it is live.
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    /// Puts the job in a fairness / concurrency group.
    pub fn group_key(mut self, key: impl Into<String>) -> Self {
        self.group_key = Some(key.into());
        self
    }

    /// Adds a tag.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Checks every field but the payload's size (see [`check_payload_size`]).
    pub fn validate(&self) -> Result<(), Error> {
        validate_queue_name(&self.queue)?;
        validate_kind(&self.kind)?;
        if !(0..=MAX_PRIORITY).contains(&self.priority) {
            return Err(Error::InvalidPriority(self.priority.into()));
        }
        if self.run_at.is_some() && self.delay_ms.is_some() {
            return Err(invalid(
                "delay_ms",
                "give run_at or delay_ms, not both".into(),
            ));
        }
        if self.delay_ms.is_some_and(|ms| ms > MAX_DELAY_MS) {
            return Err(invalid("delay_ms", "at most ten years".into()));
        }
        if let Some(policy) = &self.retry {
            policy.validate()?;
        }
        if let Some(n) = self.max_attempts
            && !(1..=crate::retry::MAX_ATTEMPTS_LIMIT).contains(&n)
        {
            return Err(invalid(
                "max_attempts",
                format!("must be 1..=1000, got {n}"),
            ));
        }
        for (field, ms) in [("timeout_ms", self.timeout_ms), ("lease_ms", self.lease_ms)] {
            if ms == Some(0) {
                return Err(invalid(field, "must be positive".into()));
            }
        }
        check_key("unique_key", self.unique_key.as_deref())?;
        check_key("group_key", self.group_key.as_deref())?;
        if self.tags.len() > MAX_TAGS {
            return Err(invalid("tags", format!("at most {MAX_TAGS} tags")));
        }
        for tag in &self.tags {
            check_key("tags", Some(tag))?;
        }
        Ok(())
    }
}

/// Refuses a payload of `size` serialized bytes over `limit`.
pub fn check_payload_size(size: usize, limit: usize) -> Result<(), Error> {
    if size > limit {
        return Err(Error::PayloadTooLarge { size, limit });
    }
    Ok(())
}

/// Queue names: 1 to 128 characters of `[A-Za-z0-9_.:-]`.
pub fn validate_queue_name(name: &str) -> Result<(), Error> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.len() > MAX_NAME_LEN {
        "it is longer than 128 characters"
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c))
    {
        "only letters, digits and _ . : - are allowed"
    } else {
        return Ok(());
    };
    Err(Error::InvalidQueueName {
        name: name.into(),
        reason,
    })
}

/// Job kinds: 1 to 128 characters, no control characters.
pub fn validate_kind(kind: &str) -> Result<(), Error> {
    let reason = if kind.trim().is_empty() {
        "it is empty"
    } else if kind.len() > MAX_NAME_LEN {
        "it is longer than 128 characters"
    } else if kind.chars().any(char::is_control) {
        "it contains control characters"
    } else {
        return Ok(());
    };
    Err(Error::InvalidKind {
        kind: kind.into(),
        reason,
    })
}

fn check_key(field: &'static str, key: Option<&str>) -> Result<(), Error> {
    match key {
        Some("") => Err(invalid(field, "must not be empty".into())),
        Some(k) if k.len() > MAX_KEY_LEN => Err(invalid(field, "longer than 255 bytes".into())),
        _ => Ok(()),
    }
}

fn invalid(field: &'static str, reason: String) -> Error {
    Error::InvalidArgument { field, reason }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The longest error text kept per attempt; longer texts are cut (see [`truncate_utf8`]).
pub const MAX_ERROR_BYTES: usize = 8 * 1024;

/// `s` cut to at most `max` bytes, at a character boundary.
pub fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;
    use serde_json::json;

    fn code(job: NewJob) -> ErrorCode {
        job.validate().unwrap_err().code()
    }

    #[test]
    fn bad_fields_get_their_own_codes() {
        let ok = NewJob::new("default", "email.send", json!({"to": "a@b"}));
        assert!(ok.validate().is_ok());
        assert_eq!(
            code(NewJob {
                queue: String::new(),
                ..ok.clone()
            }),
            ErrorCode::InvalidQueueName
        );
        assert_eq!(
            code(NewJob {
                queue: "a b".into(),
                ..ok.clone()
            }),
            ErrorCode::InvalidQueueName
        );
        assert_eq!(
            code(NewJob {
                kind: " ".into(),
                ..ok.clone()
            }),
            ErrorCode::InvalidKind
        );
        assert_eq!(code(ok.clone().priority(-1)), ErrorCode::InvalidPriority);
        assert_eq!(code(ok.clone().priority(10)), ErrorCode::InvalidPriority);
        assert_eq!(code(ok.clone().max_attempts(0)), ErrorCode::InvalidArgument);
        assert_eq!(code(ok.clone().unique_key("")), ErrorCode::InvalidArgument);
        assert_eq!(
            code(ok.clone().lease(Duration::ZERO)),
            ErrorCode::InvalidArgument
        );
    }

    #[test]
    fn lease_expiry_never_passes_the_timeout_deadline() {
        let t0 = crate::ManualClock::at_epoch().now();
        let at = |s: i64| t0 + chrono::Duration::seconds(s);
        let lease = Duration::from_secs(30);
        assert_eq!(lease_expiry(at(0), lease, at(0), None), at(30));
        assert_eq!(
            lease_expiry(at(0), lease, at(0), Some(Duration::from_secs(10))),
            at(10)
        );
        assert_eq!(
            lease_expiry(at(50), lease, at(0), Some(Duration::from_secs(60))),
            at(60)
        );
        assert_eq!(
            timeout_error(Duration::from_secs(90)),
            "timed out: ran longer than 1m 30s"
        );
    }

    #[test]
    fn payload_limit_is_inclusive() {
        assert!(check_payload_size(10, 10).is_ok());
        let err = check_payload_size(11, 10).unwrap_err();
        assert_eq!(err.code(), ErrorCode::PayloadTooLarge);
        assert_eq!(
            err.to_string(),
            "payload is 11 bytes, over the limit of 10 bytes"
        );
    }

    #[test]
    fn new_job_refuses_unknown_fields() {
        let err = serde_json::from_str::<NewJob>(r#"{"queue":"q","kind":"k","priorty":1}"#);
        assert!(
            err.unwrap_err()
                .to_string()
                .contains("unknown field `priorty`")
        );
    }
}
