//! What a handler is ([`Handler`]), what it is given ([`JobContext`]) and how it fails
//! ([`JobError`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use flotilla_proto::Job;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

/// The future a [`Handler`] returns.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Value, JobError>> + Send + 'static>>;

/// Runs jobs of one or more kinds. Any `Fn(JobContext) -> impl Future<Output =
/// Result<Value, JobError>>` closure is a handler; [`ExecHandler`](crate::ExecHandler)
/// runs a command.
pub trait Handler: Send + Sync + 'static {
    /// Runs one job. The returned value is stored as the job's result.
    fn call(&self, ctx: JobContext) -> HandlerFuture;
}

impl<F, Fut> Handler for F
where
    F: Fn(JobContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, JobError>> + Send + 'static,
{
    fn call(&self, ctx: JobContext) -> HandlerFuture {
        Box::pin(self(ctx))
    }
}

/// Why a handler failed, and whether the server may try the job again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct JobError {
    message: String,
    retryable: bool,
}

impl JobError {
    /// A failure worth retrying (a timeout, a busy dependency): the server retries the job
    /// under its retry policy.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
        }
    }

    /// A failure no retry can fix (a corrupt input): the job goes straight to `dead`.
    pub fn fatal(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
        }
    }

    /// What went wrong.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the job may be tried again.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

impl From<std::io::Error> for JobError {
    /// I/O errors are retryable.
    fn from(err: std::io::Error) -> Self {
        Self::retryable(err.to_string())
    }
}

impl From<serde_json::Error> for JobError {
    /// JSON errors are fatal: the same input fails the same way every time.
    fn from(err: serde_json::Error) -> Self {
        Self::fatal(err.to_string())
    }
}

/// What a handler gets: the job, a way to report progress, and a cancellation signal.
/// Cheap to clone.
#[derive(Clone)]
pub struct JobContext {
    inner: Arc<Inner>,
}

struct Inner {
    job: Job,
    worker_id: String,
    cancel: CancellationToken,
    progress: Mutex<Option<Value>>,
}

impl std::fmt::Debug for JobContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobContext")
            .field("job_id", &self.inner.job.id)
            .field("kind", &self.inner.job.kind)
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

impl JobContext {
    /// A context for `job` run by `worker_id`. The runtime makes these; build one yourself
    /// to call a handler in a test, and cancel it with [`JobContext::cancellation_token`].
    pub fn new(job: Job, worker_id: impl Into<String>) -> Self {
        Self {
            inner: Arc::new(Inner {
                job,
                worker_id: worker_id.into(),
                cancel: CancellationToken::new(),
                progress: Mutex::new(None),
            }),
        }
    }

    /// The job: id, queue, kind, payload, attempt (1-based), timeout, lease...
    pub fn job(&self) -> &Job {
        &self.inner.job
    }

    /// The job's payload.
    pub fn payload(&self) -> &Value {
        &self.inner.job.payload
    }

    /// The payload decoded as `T`; a payload of the wrong shape is a fatal error.
    pub fn payload_as<T: DeserializeOwned>(&self) -> Result<T, JobError> {
        T::deserialize(&self.inner.job.payload)
            .map_err(|e| JobError::fatal(format!("payload does not match: {e}")))
    }

    /// The id of the worker running the job.
    pub fn worker_id(&self) -> &str {
        &self.inner.worker_id
    }

    /// Records progress (any JSON); it is sent with the next heartbeat, replacing any
    /// progress not sent yet.
    pub fn progress(&self, value: Value) {
        *lock(&self.inner.progress) = Some(value);
    }

    /// Resolves when the job must stop: the server cancelled it, its timeout passed, its
    /// lease was lost, or the worker is shutting down past its grace period. Whatever the
    /// handler returns after that is not reported as its result.
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.inner.cancel.cancelled()
    }

    /// Whether [`JobContext::cancelled`] has fired.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }

    /// The token behind [`JobContext::cancelled`], to hand to other tasks (or to cancel in
    /// tests).
    pub fn cancellation_token(&self) -> CancellationToken {
        self.inner.cancel.clone()
    }

    /// Takes the progress not sent yet.
    pub(crate) fn take_progress(&self) -> Option<Value> {
        lock(&self.inner.progress).take()
    }

    /// Puts back progress whose heartbeat failed, unless newer progress came meanwhile.
    pub(crate) fn restore_progress(&self, value: Value) {
        lock(&self.inner.progress).get_or_insert(value);
    }
}

/// Locks `m`, recovering from a poisoned lock (the data is plain values).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::job;
    use serde_json::json;

    #[tokio::test]
    async fn closures_are_handlers() {
        let handler = |ctx: JobContext| async move {
            ctx.progress(json!({"pct": 50}));
            Ok(json!({"echo": ctx.payload().clone()}))
        };
        let ctx = JobContext::new(job("echo", json!([1])), "w1");
        let out = Handler::call(&handler, ctx.clone()).await.unwrap();
        assert_eq!(out, json!({"echo": [1]}));
        assert_eq!(ctx.take_progress(), Some(json!({"pct": 50})));
        assert_eq!(ctx.take_progress(), None);
        ctx.restore_progress(json!(1));
        ctx.progress(json!(2));
        ctx.restore_progress(json!(1));
        assert_eq!(ctx.take_progress(), Some(json!(2)));
    }

    #[test]
    fn payload_of_the_wrong_shape_is_fatal() {
        #[derive(serde::Deserialize)]
        struct Email {
            #[allow(dead_code)]
            to: String,
        }
        let ctx = JobContext::new(job("email", json!({"to": 3})), "w1");
        let err = ctx.payload_as::<Email>().err().unwrap();
        assert!(!err.is_retryable());
        assert!(err.message().starts_with("payload does not match"));
    }
}
