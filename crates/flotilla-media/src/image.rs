//! `image.render`: decodes the upload once and writes each rendition of the parameters
//! (`{"renditions": [{name, ops, format}]}`, see `flotilla_image::Rendition`), with EXIF
//! orientation applied and the decode bounded by the image limits. A watermark op may
//! name a logo in `resources/` (`{"op": "watermark", "logo": "logo.png"}`).

use std::sync::Arc;

use flotilla_image::Rendition;
use flotilla_worker::{JobContext, JobError};
use serde_json::{Value, json};

use crate::Media;
use crate::step::{Step, job_error};

/// Runs one `image.render` job.
pub(crate) async fn render(media: Arc<Media>, ctx: JobContext) -> Result<Value, JobError> {
    let step = Step::open(&media, &ctx)?;
    let mut renditions = step
        .params
        .get("renditions")
        .cloned()
        .ok_or_else(|| JobError::fatal("image.render needs `renditions`"))?;
    resolve_logos(&media, &step, &mut renditions).await?;
    let renditions: Vec<Rendition> = serde_json::from_value(renditions)
        .map_err(|e| JobError::fatal(format!("bad renditions: {e}")))?;
    let (input, _) = step.download_input(&media).await?;
    let out_dir = step.path("out");
    let limits = media.limits.image;
    let (dir, list) = (out_dir.clone(), renditions.clone());
    let rendered = tokio::task::spawn_blocking(move || {
        flotilla_image::render_all(&input, &list, &dir, &limits)
    })
    .await
    .map_err(|e| JobError::retryable(format!("rendering stopped: {e}")))?
    .map_err(|e| job_error(e.is_retryable(), format!("{}: {e}", step.input_name)))?;
    let mut outputs = Vec::with_capacity(rendered.len());
    for (done, rendition) in rendered.iter().zip(&renditions) {
        let details = json!({
            "type": "image", "width": done.width, "height": done.height,
            "format": done.format.extension(),
        });
        let name = rendition.file_name();
        outputs.push(
            step.upload_output(&media, &name, &done.path, details)
                .await?,
        );
    }
    Ok(json!({ "outputs": outputs }))
}

/// Downloads the logos that watermark ops name and puts their local paths in place.
async fn resolve_logos(media: &Media, step: &Step, renditions: &mut Value) -> Result<(), JobError> {
    let Some(list) = renditions.as_array_mut() else {
        return Ok(());
    };
    for rendition in list {
        let Some(ops) = rendition.get_mut("ops").and_then(Value::as_array_mut) else {
            continue;
        };
        for op in ops.iter_mut().filter(|op| op["op"] == "watermark") {
            if let Some(name) = op.get("logo").and_then(Value::as_str).map(str::to_owned) {
                let local = step.resource(media, &name).await?;
                op["logo"] = Value::String(local.display().to_string());
            }
        }
    }
    Ok(())
}
