//! `media.ingest`: checks an upload before anything else touches it. Streaming SHA-256
//! (computed while downloading) and BLAKE3; the file's type from its content (magic
//! bytes), never its name; technical metadata (image header and EXIF, or ffprobe's view of
//! audio and video); limits on size, pixels and duration. An empty, truncated, corrupt or
//! unsupported file fails without retries, saying why.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use flotilla_worker::{JobContext, JobError};
use serde_json::{Value, json};

use crate::Media;
use crate::step::{Step, job_error};

/// What ingest refuses.
#[derive(Debug, Clone)]
pub struct IngestLimits {
    /// Largest file, in bytes.
    pub max_bytes: u64,
    /// Longest audio or video, in seconds.
    pub max_duration_s: f64,
    /// Image limits (pixels, dimensions), checked from the header.
    pub image: flotilla_image::Limits,
}

impl Default for IngestLimits {
    fn default() -> Self {
        Self {
            max_bytes: 2 * 1024 * 1024 * 1024,
            max_duration_s: 4.0 * 3600.0,
            image: flotilla_image::Limits::default(),
        }
    }
}

/// Runs one ingest job.
pub(crate) async fn run(media: Arc<Media>, ctx: JobContext) -> Result<Value, JobError> {
    let step = Step::open(&media, &ctx)?;
    let (path, sha256) = step.download_input(&media).await?;
    ctx.progress(json!({"step": "downloaded"}));
    let size = std::fs::metadata(&path)
        .map_err(|e| JobError::retryable(format!("cannot read the downloaded file: {e}")))?
        .len();
    if size == 0 {
        return Err(JobError::fatal(format!("{} is empty", step.input_name)));
    }
    if size > media.limits.max_bytes {
        return Err(JobError::fatal(format!(
            "{} is {size} bytes, over the limit of {} bytes",
            step.input_name, media.limits.max_bytes
        )));
    }
    let hashed = path.clone();
    let blake3 = tokio::task::spawn_blocking(move || blake3_file(&hashed))
        .await
        .map_err(|e| JobError::retryable(format!("hashing stopped: {e}")))?
        .map_err(|e| JobError::retryable(format!("cannot hash the file: {e}")))?;
    let kind = infer::get_from_path(&path)
        .map_err(|e| JobError::retryable(format!("cannot read the file: {e}")))?;
    let (mime, class) = match kind {
        Some(k) => (k.mime_type(), k.matcher_type()),
        None => {
            return Err(JobError::fatal(format!(
                "{}: unsupported file type: its content is not an image, audio or video format \
                 (the name is not taken into account)",
                step.input_name
            )));
        }
    };
    let (kind, metadata) = match class {
        infer::MatcherType::Image => ("image", image_metadata(&media, &path, &step).await?),
        infer::MatcherType::Video | infer::MatcherType::Audio => {
            media_metadata(&media, &path, &step, &ctx).await?
        }
        _ => {
            return Err(JobError::fatal(format!(
                "{}: unsupported file type {mime}: only images, audio and video are processed",
                step.input_name
            )));
        }
    };
    Ok(json!({
        "name": step.input_name, "size": size, "sha256": sha256, "blake3": blake3,
        "mime": mime, "type": kind, "metadata": metadata,
    }))
}

fn blake3_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().to_hex().to_string())
}

async fn image_metadata(media: &Media, path: &Path, step: &Step) -> Result<Value, JobError> {
    let (path, limits) = (path.to_owned(), media.limits.image);
    let info = tokio::task::spawn_blocking(move || flotilla_image::inspect(&path, &limits))
        .await
        .map_err(|e| JobError::retryable(format!("inspection stopped: {e}")))?
        .map_err(|e| job_error(e.is_retryable(), format!("{}: {e}", step.input_name)))?;
    let (width, height) = info.upright_dimensions();
    let mut value = serde_json::to_value(&info).unwrap_or(Value::Null);
    if let Some(map) = value.as_object_mut() {
        map.insert("upright_width".into(), json!(width));
        map.insert("upright_height".into(), json!(height));
    }
    Ok(value)
}

async fn media_metadata(
    media: &Media,
    path: &Path,
    step: &Step,
    ctx: &JobContext,
) -> Result<(&'static str, Value), JobError> {
    let ffmpeg = media
        .ffmpeg
        .as_ref()
        .ok_or_else(|| JobError::retryable("ffprobe is not installed on this worker"))?;
    let probe = tokio::select! {
        probed = ffmpeg.probe(path) => probed,
        () = ctx.cancelled() => return Err(JobError::retryable("cancelled")),
    };
    let info =
        probe.map_err(|e| job_error(e.is_retryable(), format!("{}: {e}", step.input_name)))?;
    let duration = info.duration_s.unwrap_or(0.0);
    if duration > media.limits.max_duration_s {
        return Err(JobError::fatal(format!(
            "{} lasts {duration:.0} s, over the limit of {:.0} s",
            step.input_name, media.limits.max_duration_s
        )));
    }
    let kind = if info.has_video() {
        "video"
    } else if info.audio().is_some() {
        "audio"
    } else {
        return Err(JobError::fatal(format!(
            "{} has no audio or video stream",
            step.input_name
        )));
    };
    Ok((kind, serde_json::to_value(&info).unwrap_or(Value::Null)))
}
