//! `video.transcode`, `video.poster`, `video.preview`, `video.hls`: FFmpeg through
//! `flotilla-video`.
//! Resources the parameters name (`{"resource": "logo.png"}` for the watermark, the intro
//! and the outro) are downloaded from `resources/` first. FFmpeg's progress goes out
//! through the job's heartbeats; a cancelled job or a timeout kills FFmpeg.

use std::sync::Arc;
use std::time::Duration;

use flotilla_objects::ObjectKey;
use flotilla_video::{Ffmpeg, HlsSpec, RunControl, TranscodeSpec, VideoError};
use flotilla_worker::{JobContext, JobError};
use serde_json::{Map, Value, json};

use crate::Media;
use crate::step::{Step, job_error, objects_error};

fn ffmpeg(media: &Media) -> Result<&Ffmpeg, JobError> {
    media
        .ffmpeg
        .as_ref()
        .ok_or_else(|| JobError::retryable("ffmpeg is not installed on this worker"))
}

/// FFmpeg's progress as the job's progress; cancellation and the job's timeout.
fn control(ctx: &JobContext, what: &'static str) -> RunControl {
    let progress_ctx = ctx.clone();
    let mut ctl = RunControl::new()
        .with_cancel(ctx.cancellation_token())
        .with_progress(move |p| {
            progress_ctx.progress(json!({
                "step": what, "fraction": p.fraction, "out_time_s": p.out_time_s, "speed": p.speed,
            }));
        });
    if let Some(ms) = ctx.job().timeout_ms {
        ctl = ctl.with_timeout(Duration::from_millis(ms));
    }
    ctl
}

fn video_error(step: &Step, e: VideoError) -> JobError {
    job_error(e.is_retryable(), format!("{}: {e}", step.input_name))
}

/// Replaces `{"resource": NAME}` under `field` of `params` by the downloaded file's path
/// (for the watermark, under `field.path`).
async fn resolve_resource(
    media: &Media,
    step: &Step,
    params: &mut Map<String, Value>,
    field: &str,
) -> Result<(), JobError> {
    let Some(value) = params.get_mut(field) else {
        return Ok(());
    };
    let Some(name) = value
        .get("resource")
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return Ok(());
    };
    let local = step.resource(media, &name).await?;
    let path = Value::String(local.display().to_string());
    match value.as_object_mut() {
        Some(map) if field == "watermark" => {
            map.remove("resource");
            map.insert("path".into(), path);
        }
        _ => *value = path,
    }
    Ok(())
}

/// Runs one `video.transcode` job: the parameters are a `TranscodeSpec`.
pub(crate) async fn transcode(media: Arc<Media>, ctx: JobContext) -> Result<Value, JobError> {
    let ffmpeg = ffmpeg(&media)?;
    let step = Step::open(&media, &ctx)?;
    let mut params = step.params.clone();
    for field in ["watermark", "intro", "outro"] {
        resolve_resource(&media, &step, &mut params, field).await?;
    }
    let spec: TranscodeSpec = serde_json::from_value(Value::Object(params))
        .map_err(|e| JobError::fatal(format!("bad transcode parameters: {e}")))?;
    let (input, _) = step.download_input(&media).await?;
    let output = step.path("video-720p.mp4");
    let done = ffmpeg
        .transcode(&input, &output, &spec, &control(&ctx, "transcode"))
        .await
        .map_err(|e| video_error(&step, e))?;
    let details = json!({ "type": "video", "media": done.media, "elapsed_s": done.elapsed_s });
    let name = format!("{}.mp4", output_stem(&spec));
    let out = step.upload_output(&media, &name, &output, details).await?;
    Ok(json!({ "outputs": [out] }))
}

fn output_stem(spec: &TranscodeSpec) -> String {
    format!("video-{}p", spec.height)
}

/// Runs one `video.poster` job: `{"width": 640, "at_s": null}`.
pub(crate) async fn poster(media: Arc<Media>, ctx: JobContext) -> Result<Value, JobError> {
    let ffmpeg = ffmpeg(&media)?;
    let step = Step::open(&media, &ctx)?;
    let width = number(&step.params, "width").unwrap_or(640.0) as u32;
    let at = number(&step.params, "at_s");
    let (input, _) = step.download_input(&media).await?;
    let output = step.path("poster.jpg");
    let done = ffmpeg
        .poster(&input, &output, at, width, &control(&ctx, "poster"))
        .await
        .map_err(|e| video_error(&step, e))?;
    let details = json!({
        "type": "image", "width": done.width, "height": done.height, "at_s": done.at_s,
    });
    let out = step
        .upload_output(&media, "poster.jpg", &output, details)
        .await?;
    Ok(json!({ "outputs": [out] }))
}

/// Runs one `video.preview` job: `{"start_s": 0, "duration_s": 5, "height": 360}`.
pub(crate) async fn preview(media: Arc<Media>, ctx: JobContext) -> Result<Value, JobError> {
    let ffmpeg = ffmpeg(&media)?;
    let step = Step::open(&media, &ctx)?;
    let start = number(&step.params, "start_s").unwrap_or(0.0);
    let duration = number(&step.params, "duration_s").unwrap_or(5.0);
    let height = number(&step.params, "height").unwrap_or(360.0) as u32;
    let (input, _) = step.download_input(&media).await?;
    let output = step.path("preview.mp4");
    let done = ffmpeg
        .preview(
            &input,
            &output,
            start,
            duration,
            height,
            &control(&ctx, "preview"),
        )
        .await
        .map_err(|e| video_error(&step, e))?;
    let details = json!({ "type": "video", "media": done.media });
    let out = step
        .upload_output(&media, "preview.mp4", &output, details)
        .await?;
    Ok(json!({ "outputs": [out] }))
}

fn number(params: &Map<String, Value>, key: &str) -> Option<f64> {
    params.get(key).and_then(Value::as_f64)
}

/// Runs one `video.hls` job: `{"segment_s": 4}`. It segments the MP4 that a step it waited
/// for produced (e.g. `transcode`), or else the upload; the playlist and its segments
/// become outputs `hls/<file>`, side by side under `processed/<upload>/hls/`.
pub(crate) async fn hls(media: Arc<Media>, ctx: JobContext) -> Result<Value, JobError> {
    let ffmpeg = ffmpeg(&media)?;
    let step = Step::open(&media, &ctx)?;
    let spec: HlsSpec = serde_json::from_value(Value::Object(step.params.clone()))
        .map_err(|e| JobError::fatal(format!("bad hls parameters: {e}")))?;
    let input = match produced_video(&step) {
        Some(key) => {
            let local = step.path("source.mp4");
            let key = ObjectKey::parse(&key).map_err(|e| JobError::fatal(e.to_string()))?;
            media
                .objects
                .get_to_file(&key, &local)
                .await
                .map_err(|e| objects_error("the video to segment", e))?;
            local
        }
        None => step.download_input(&media).await?.0,
    };
    let out_dir = step.path("hls");
    let done = ffmpeg
        .hls(&input, &out_dir, &spec, &control(&ctx, "hls"))
        .await
        .map_err(|e| video_error(&step, e))?;
    let mut outputs = Vec::new();
    for file in std::iter::once(&done.playlist).chain(&done.segments) {
        let file_name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let details = json!({ "type": "hls", "copied": done.copied });
        let name = format!("hls/{file_name}");
        outputs.push(step.upload_output(&media, &name, file, details).await?);
    }
    Ok(json!({ "outputs": outputs }))
}

/// The key of the first MP4 output among the results of the steps waited for.
fn produced_video(step: &Step) -> Option<String> {
    step.inputs
        .values()
        .filter_map(|r| r.get("outputs").and_then(Value::as_array))
        .flatten()
        .find(|o| o["name"].as_str().is_some_and(|n| n.ends_with(".mp4")))
        .and_then(|o| o["key"].as_str())
        .map(str::to_owned)
}
