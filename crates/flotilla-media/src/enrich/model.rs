//! [`DetectorModel`]: a detector this worker runs, or one an inference service runs for
//! it, behind the one call the `ai.*` handlers make ([`DetectorModel::detect_images`]).
//!
//! A local detector is CPU- (or GPU-) bound: its inference runs on a blocking section of
//! the runtime, one at a time per model. A remote one (`service = { protocol =
//! "kserve-v2", ... }`) is network-bound: it only letterboxes and decodes, so many jobs can
//! wait on the service at once — the operator gives such a worker a high `--concurrency`
//! (e.g. 32) instead of one job per core, and the service's own capacity sets the pace.
//! Remote calls follow the distribution worker's rules (see `flotilla_ai::remote`): a
//! refused request or a malformed answer fails the job for good, an unreachable or
//! overloaded service fails it retryably, within the step's own job timeout.

use std::sync::Arc;

use flotilla_ai::{AiError, Detection, Detector, DynamicImage, KserveDetector, ModelConfig};
use flotilla_ai::{RemoteError, ServiceConfig};
use flotilla_worker::JobError;

use crate::step::job_error;

/// A detector a worker holds, by where it runs.
#[derive(Debug, Clone)]
pub enum DetectorModel {
    /// Loaded into this process (ONNX Runtime or tract).
    Local(Arc<Detector>),
    /// Served by a KServe/Triton server over the Open Inference Protocol v2.
    Remote(Arc<KserveDetector>),
}

impl DetectorModel {
    /// Connects to a served detector (readiness check included) on a runtime of its own,
    /// so it can be called from blocking code; a failure is a start-up error naming the
    /// model's service.
    pub(super) fn connect_blocking(config: &ModelConfig) -> Result<Self, AiError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| AiError::Config {
                field: service_field(config),
                message: format!("cannot start a runtime to reach the service: {e}"),
            })?;
        let detector = runtime
            .block_on(KserveDetector::connect(config))
            .map_err(|e| start_up_error(config, e))?;
        Ok(Self::Remote(Arc::new(detector)))
    }

    /// The configuration it was loaded from.
    pub fn config(&self) -> &ModelConfig {
        match self {
            Self::Local(d) => d.config(),
            Self::Remote(d) => d.config(),
        }
    }

    /// The class names, in index order.
    pub fn classes(&self) -> &[String] {
        match self {
            Self::Local(d) => d.classes(),
            Self::Remote(d) => d.classes(),
        }
    }

    /// The inference service, for a remote detector.
    pub fn service(&self) -> Option<&ServiceConfig> {
        self.config().service.as_ref()
    }

    /// Images per inference run (or request).
    pub(super) fn batch_size(&self) -> usize {
        match self {
            Self::Local(d) => d.batch_size(),
            Self::Remote(d) => d.batch_size(),
        }
        .max(1)
    }

    /// Detects objects in `images` (one result per image, boxes in its pixels); `input`
    /// names the step's input in error messages.
    pub(super) async fn detect_images(
        &self,
        input: &str,
        images: &[DynamicImage],
    ) -> Result<Vec<Vec<Detection>>, JobError> {
        match self {
            Self::Local(detector) => {
                run_blocking(|| detector.detect_batch(images)).map_err(|e| ai_error(input, e))
            }
            Self::Remote(detector) => detector
                .detect_batch(images)
                .await
                .map_err(|e| remote_error(input, e)),
        }
    }
}

/// Runs CPU-bound work without stalling the runtime's other tasks: on a multi-threaded
/// runtime the worker thread hands its tasks over first (`block_in_place`).
fn run_blocking<T>(work: impl FnOnce() -> T) -> T {
    let multi = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi {
        tokio::task::block_in_place(work)
    } else {
        work()
    }
}

/// A detection library error as a job error: an inference or I/O failure may pass on a
/// retry; a frame that does not decode, a video FFmpeg cannot read or a model that
/// returns the wrong shape fails the same way every time.
pub(super) fn ai_error(input: &str, e: AiError) -> JobError {
    let retryable = matches!(e, AiError::Inference { .. } | AiError::Io { .. });
    job_error(retryable, format!("{input}: {e}"))
}

/// A service error as a job error, retryable when the service was unavailable.
fn remote_error(input: &str, e: RemoteError) -> JobError {
    job_error(e.is_retryable(), format!("{input}: {e}"))
}

fn service_field(config: &ModelConfig) -> String {
    format!("models.{}.service", config.name)
}

/// A failure to reach a served model at start, as the start-up error of its service.
fn start_up_error(config: &ModelConfig, e: RemoteError) -> AiError {
    match e {
        RemoteError::Config(e) => e,
        other => AiError::Config {
            field: service_field(config),
            message: other.to_string(),
        },
    }
}
