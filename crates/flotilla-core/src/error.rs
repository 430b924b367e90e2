//! Errors of the domain rules, and the one table of stable error codes.
//!
//! Every error anywhere in Flotilla maps to an [`ErrorCode`]; the code's string is part of
//! the public contract (HTTP bodies, CLI `--json` output) and never changes meaning.

use crate::state::{Event, JobState};

/// A stable, machine-readable error code with its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// A request field is missing, malformed or out of range.
    InvalidArgument,
    /// A queue name is empty, too long or has characters outside `[A-Za-z0-9_.:-]`.
    InvalidQueueName,
    /// A job kind is empty or too long.
    InvalidKind,
    /// A priority is outside `0..=9`.
    InvalidPriority,
    /// A job payload is larger than the configured limit.
    PayloadTooLarge,
    /// A retry policy or queue setting is inconsistent.
    InvalidConfig,
    /// A cron expression could not be parsed.
    InvalidCron,
    /// The job cannot make this move from its current state.
    InvalidTransition,
    /// No job has this id.
    JobNotFound,
    /// No queue has this name.
    QueueNotFound,
    /// No cron schedule has this name.
    CronNotFound,
    /// No pipeline run (asset) has this id.
    RunNotFound,
    /// The lease token is not the job's current one: the lease expired and the job moved on.
    LeaseMismatch,
    /// No registered worker has this id (e.g. after a server restart): register again.
    WorkerNotFound,
    /// The request is not valid JSON, has a field of the wrong type or an unknown field.
    MalformedRequest,
    /// The request body is larger than the server accepts.
    BodyTooLarge,
    /// No bearer token, or an unknown one.
    Unauthorized,
    /// The token's role may not do this.
    Forbidden,
    /// No such route.
    NotFound,
    /// The route exists, but not with this method.
    MethodNotAllowed,
    /// The request took longer than the server allows.
    Timeout,
    /// The store cannot be reached right now; retry later.
    Unavailable,
    /// A bug or an unexpected failure inside Flotilla.
    Internal,
}

impl ErrorCode {
    /// Every code, for documentation and exhaustive tests.
    pub const ALL: [ErrorCode; 23] = [
        Self::InvalidArgument,
        Self::InvalidQueueName,
        Self::InvalidKind,
        Self::InvalidPriority,
        Self::PayloadTooLarge,
        Self::InvalidConfig,
        Self::InvalidCron,
        Self::InvalidTransition,
        Self::JobNotFound,
        Self::QueueNotFound,
        Self::CronNotFound,
        Self::RunNotFound,
        Self::LeaseMismatch,
        Self::WorkerNotFound,
        Self::MalformedRequest,
        Self::BodyTooLarge,
        Self::Unauthorized,
        Self::Forbidden,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::Timeout,
        Self::Unavailable,
        Self::Internal,
    ];

    /// The code's wire name, e.g. `lease_mismatch`.
    pub fn as_str(self) -> &'static str {
        self.entry().0
    }

    /// The HTTP status this code is answered with.
    pub fn http_status(self) -> u16 {
        self.entry().1
    }

    fn entry(self) -> (&'static str, u16) {
        match self {
            Self::InvalidArgument => ("invalid_argument", 400),
            Self::InvalidQueueName => ("invalid_queue_name", 400),
            Self::InvalidKind => ("invalid_kind", 400),
            Self::InvalidPriority => ("invalid_priority", 400),
            Self::PayloadTooLarge => ("payload_too_large", 413),
            Self::InvalidConfig => ("invalid_config", 400),
            Self::InvalidCron => ("invalid_cron", 400),
            Self::InvalidTransition => ("invalid_transition", 409),
            Self::JobNotFound => ("job_not_found", 404),
            Self::QueueNotFound => ("queue_not_found", 404),
            Self::CronNotFound => ("cron_not_found", 404),
            Self::RunNotFound => ("run_not_found", 404),
            Self::LeaseMismatch => ("lease_mismatch", 409),
            Self::WorkerNotFound => ("worker_not_found", 404),
            Self::MalformedRequest => ("malformed_request", 400),
            Self::BodyTooLarge => ("body_too_large", 413),
            Self::Unauthorized => ("unauthorized", 401),
            Self::Forbidden => ("forbidden", 403),
            Self::NotFound => ("not_found", 404),
            Self::MethodNotAllowed => ("method_not_allowed", 405),
            Self::Timeout => ("timeout", 408),
            Self::Unavailable => ("unavailable", 503),
            Self::Internal => ("internal", 500),
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A domain rule was broken by the input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// See [`ErrorCode::InvalidQueueName`].
    #[error("invalid queue name {name:?}: {reason}")]
    InvalidQueueName {
        /// The refused name.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// See [`ErrorCode::InvalidKind`].
    #[error("invalid job kind {kind:?}: {reason}")]
    InvalidKind {
        /// The refused kind.
        kind: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// See [`ErrorCode::InvalidPriority`].
    #[error("priority {0} is out of range 0..=9 (0 runs first)")]
    InvalidPriority(i64),
    /// See [`ErrorCode::PayloadTooLarge`].
    #[error("payload is {size} bytes, over the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The payload's serialized size.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// See [`ErrorCode::InvalidArgument`].
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The offending field.
        field: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// See [`ErrorCode::InvalidConfig`].
    #[error("invalid {field}: {reason}")]
    InvalidConfig {
        /// The offending setting.
        field: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// See [`ErrorCode::InvalidCron`].
    #[error("invalid cron expression {expr:?}: {reason}")]
    InvalidCron {
        /// The refused expression.
        expr: String,
        /// The parser's reason.
        reason: String,
    },
    /// See [`ErrorCode::InvalidTransition`].
    #[error("a job that is {from} cannot {event}")]
    InvalidTransition {
        /// The job's state.
        from: JobState,
        /// What was attempted.
        event: Event,
    },
}

impl Error {
    /// The stable code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidQueueName { .. } => ErrorCode::InvalidQueueName,
            Self::InvalidKind { .. } => ErrorCode::InvalidKind,
            Self::InvalidPriority(_) => ErrorCode::InvalidPriority,
            Self::PayloadTooLarge { .. } => ErrorCode::PayloadTooLarge,
            Self::InvalidArgument { .. } => ErrorCode::InvalidArgument,
            Self::InvalidConfig { .. } => ErrorCode::InvalidConfig,
            Self::InvalidCron { .. } => ErrorCode::InvalidCron,
            Self::InvalidTransition { .. } => ErrorCode::InvalidTransition,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_snake_case_and_4xx_unless_server_side() {
        let mut seen = HashSet::new();
        for code in ErrorCode::ALL {
            let name = code.as_str();
            assert!(seen.insert(name), "duplicate code {name}");
            assert!(name.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
            let server_side = matches!(code, ErrorCode::Unavailable | ErrorCode::Internal);
            assert_eq!(code.http_status() >= 500, server_side, "{name}");
        }
    }
}
