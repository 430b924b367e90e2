//! `media.distribute`: delivers every output of the steps it waited for to each target the
//! parameters name (`{"targets": ["archive", "cdn"]}`), through `flotilla-distribute`. A
//! target that is down fails the job retryably (the queue's long exponential retries then
//! apply); one that refuses the file, or an unknown target, fails it for good.

use std::sync::Arc;

use flotilla_distribute::Delivery;
use flotilla_objects::ObjectKey;
use flotilla_worker::{JobContext, JobError};
use serde_json::{Value, json};

use crate::Media;
use crate::step::{Step, job_error, objects_error};

/// Runs one `media.distribute` job.
pub(crate) async fn run(media: Arc<Media>, ctx: JobContext) -> Result<Value, JobError> {
    let step = Step::open(&media, &ctx)?;
    let targets: Vec<String> = step
        .params
        .get("targets")
        .cloned()
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| JobError::fatal(format!("targets: a list of target names: {e}")))?
        .unwrap_or_default();
    let outputs: Vec<Value> = step
        .inputs
        .values()
        .filter_map(|r| r.get("outputs").and_then(Value::as_array))
        .flatten()
        .cloned()
        .collect();
    let mut receipts = Vec::new();
    for (i, output) in outputs.iter().enumerate() {
        let (Some(name), Some(key)) = (output["name"].as_str(), output["key"].as_str()) else {
            continue;
        };
        let key = ObjectKey::parse(key).map_err(|e| JobError::fatal(e.to_string()))?;
        let local = step.path(&format!("deliver-{i}"));
        let info = media
            .objects
            .get_to_file(&key, &local)
            .await
            .map_err(|e| objects_error(name, e))?;
        let delivery = Delivery {
            file: local,
            name: format!("{}/{name}", step.upload),
            size: info.size,
            sha256: info.sha256.unwrap_or_default(),
        };
        for target in &targets {
            let receipt = media
                .distributor
                .deliver(target, &delivery)
                .await
                .map_err(|e| job_error(e.is_retryable(), format!("{name} to {target}: {e}")))?;
            receipts.push(json!(receipt));
        }
        ctx.progress(json!({ "delivered": receipts.len(), "outputs": outputs.len() }));
    }
    Ok(json!({ "targets": targets, "deliveries": receipts }))
}
