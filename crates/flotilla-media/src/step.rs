//! What every media handler does around its work: read the step's payload, make a
//! scratch directory, download inputs and resources, upload outputs, and turn the
//! libraries' typed errors into retryable or fatal job errors.

use std::path::{Path, PathBuf};

use flotilla_objects::{ObjectKey, ObjectsError};
use flotilla_worker::{JobContext, JobError};
use serde_json::{Map, Value, json};

use crate::Media;

/// A running step: its payload's parts and its scratch directory.
pub(crate) struct Step {
    /// The uploaded object's key.
    pub(crate) input_key: ObjectKey,
    /// The uploaded file's name.
    pub(crate) input_name: String,
    /// The upload's id: outputs go under `processed/<upload>/`.
    pub(crate) upload: String,
    /// The step's own parameters (the payload without `input` and `run`).
    pub(crate) params: Map<String, Value>,
    /// The results of the steps it waited for, by step name.
    pub(crate) inputs: Map<String, Value>,
    /// Removed when the step ends.
    pub(crate) scratch: tempfile::TempDir,
}

impl Step {
    /// Reads the payload of a pipeline step.
    pub(crate) fn open(media: &Media, ctx: &JobContext) -> Result<Self, JobError> {
        let mut params = match ctx.payload() {
            Value::Object(map) => map.clone(),
            _ => return Err(JobError::fatal("the payload must be a JSON object")),
        };
        let input = params.remove("input").unwrap_or(Value::Null);
        let run = params.remove("run").unwrap_or(Value::Null);
        let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let key = text(&input, "key")
            .ok_or_else(|| JobError::fatal("the payload has no input.key (the uploaded object)"))?;
        let input_key = ObjectKey::parse(&key).map_err(|e| JobError::fatal(e.to_string()))?;
        let upload = text(&input, "upload").unwrap_or_else(|| ctx.job().id.to_string());
        let scratch = tempfile::Builder::new()
            .prefix("flotilla-job-")
            .tempdir_in(&media.scratch)
            .map_err(|e| JobError::retryable(format!("cannot make a scratch directory: {e}")))?;
        Ok(Self {
            input_name: text(&input, "name").unwrap_or_else(|| "input".into()),
            input_key,
            upload,
            params,
            inputs: run
                .get("inputs")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            scratch,
        })
    }

    /// A path in the scratch directory.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.scratch.path().join(name)
    }

    /// Downloads the uploaded object into the scratch directory; its path and SHA-256.
    pub(crate) async fn download_input(
        &self,
        media: &Media,
    ) -> Result<(PathBuf, Option<String>), JobError> {
        let path = self.path("input");
        let info = media
            .objects
            .get_to_file(&self.input_key, &path)
            .await
            .map_err(|e| objects_error("the uploaded file", e))?;
        Ok((path, info.sha256))
    }

    /// Downloads `resources/<name>` (a logo, an intro clip) into the scratch directory.
    pub(crate) async fn resource(&self, media: &Media, name: &str) -> Result<PathBuf, JobError> {
        let key = ObjectKey::resource(name).map_err(|e| JobError::fatal(e.to_string()))?;
        let local = self.path(&format!("resource-{}", ObjectKey::sanitize_segment(name)));
        media
            .objects
            .get_to_file(&key, &local)
            .await
            .map_err(|e| objects_error(&format!("the resource {}", key.as_str()), e))?;
        Ok(local)
    }

    /// Uploads a file the step made as output `name`; its description for the result,
    /// with `details` merged in.
    pub(crate) async fn upload_output(
        &self,
        media: &Media,
        name: &str,
        file: &Path,
        details: Value,
    ) -> Result<Value, JobError> {
        let key = ObjectKey::processed(&self.upload, name);
        let info = media
            .objects
            .put_file(&key, file)
            .await
            .map_err(|e| objects_error("an output", e))?;
        let mut output = json!({
            "name": name, "key": key.as_str(), "size": info.size, "sha256": info.sha256,
        });
        if let (Some(out), Value::Object(extra)) = (output.as_object_mut(), details) {
            out.extend(extra);
        }
        Ok(output)
    }
}

/// A failed object-store call: a missing object is fatal (a retry finds it missing too),
/// an unreachable store is retryable.
pub(crate) fn objects_error(what: &str, e: ObjectsError) -> JobError {
    let message = format!("{what}: {e}");
    if e.is_retryable() {
        JobError::retryable(message)
    } else {
        JobError::fatal(message)
    }
}

/// A library error with `is_retryable`, as a job error.
pub(crate) fn job_error(retryable: bool, message: impl Into<String>) -> JobError {
    if retryable {
        JobError::retryable(message)
    } else {
        JobError::fatal(message)
    }
}
