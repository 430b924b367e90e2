//! Test helpers shared by the unit tests.

use chrono::Utc;
use flotilla_core::{JobId, JobState, Lease, LeaseToken};
use flotilla_proto::Job;
use serde_json::Value;

/// A running job of `kind` with `payload`, id 7, attempt 1, under lease token 11.
pub(crate) fn job(kind: &str, payload: Value) -> Job {
    let now = Utc::now();
    Job {
        id: JobId(7),
        queue: "default".into(),
        kind: kind.into(),
        payload,
        priority: 0,
        state: JobState::Running,
        run_at: now,
        attempt: 1,
        max_attempts: 3,
        retry: None,
        timeout_ms: None,
        lease_ms: None,
        unique_key: None,
        group_key: None,
        tags: Vec::new(),
        lease: Some(Lease {
            token: LeaseToken(11),
            worker_id: "w1".into(),
            expires_at: now + chrono::Duration::seconds(30),
        }),
        cancel_requested: false,
        progress: None,
        result: None,
        errors: Vec::new(),
        created_at: now,
        attempted_at: Some(now),
        finished_at: None,
    }
}
