//! `ai.moderate`: flags an image or a video whose configured classes score at or above a
//! threshold, with `{"model": "faces", "classes": [...], "threshold": 0.6, "every_s":
//! null, "max_frames": 60}`; the classes default to NudeNet's exposed-body classes
//! ([`DEFAULT_MODERATED_CLASSES`]).
//!
//! A flagged asset fails the step without retries, saying which classes scored what, so
//! the run stops before the steps after it (redaction, distribution) ever run. An admin
//! releases it by writing the object `processed/<upload>/`[`RELEASE_OBJECT`] (the API's
//! release route does, then retries this step): the step then succeeds with
//! `"flagged": true, "released": true` and the release's content. A step that is not
//! flagged succeeds with `"flagged": false` and each class's highest score.

use std::collections::BTreeMap;
use std::sync::Arc;

use flotilla_objects::{ObjectKey, ObjectsError};
use flotilla_worker::{JobContext, JobError};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Enrichment, Found, Sampling, score};
use crate::Media;
use crate::step::{Step, objects_error};

/// NudeNet's exposed-body classes, which `ai.moderate` checks by default.
pub const DEFAULT_MODERATED_CLASSES: [&str; 5] = [
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "BUTTOCKS_EXPOSED",
    "ANUS_EXPOSED",
];

/// The object, under `processed/<upload>/`, whose presence releases a flagged asset.
pub const RELEASE_OBJECT: &str = "moderation-release.json";

/// The parameters of `ai.moderate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default = "super::faces")]
    model: String,
    #[serde(default = "default_classes")]
    classes: Vec<String>,
    #[serde(default = "default_threshold")]
    threshold: f32,
    #[serde(default)]
    every_s: Option<f64>,
    #[serde(default = "super::default_max_frames")]
    max_frames: usize,
}

fn default_classes() -> Vec<String> {
    DEFAULT_MODERATED_CLASSES.map(str::to_owned).to_vec()
}

fn default_threshold() -> f32 {
    0.6
}

/// Runs one `ai.moderate` job.
pub(super) async fn run(
    media: Arc<Media>,
    enrich: Arc<Enrichment>,
    ctx: JobContext,
) -> Result<Value, JobError> {
    let super::Opened {
        step,
        params,
        detector,
        gpu,
    } = super::open_step(&media, &enrich, &ctx, "ai.moderate", |p: &Params| {
        (&p.model, &p.classes)
    })
    .await?;
    let ran_on = super::placement(&detector, gpu.as_ref());
    let threshold = super::unit("threshold", params.threshold)?;
    let sampling = Sampling::new(params.every_s, params.max_frames)?;
    let found = super::detect_input(&media, &step, detector, sampling).await?;
    let max_scores = max_scores(&found, &params.classes);
    let mut result = json!({
        "model": params.model,
        "media": found.kind.as_str(),
        "frames": found.frames.len(),
        "classes": params.classes,
        "threshold": score(threshold),
        "max_scores": max_scores.iter().map(|(c, s)| (c.clone(), json!(score(*s)))).collect::<serde_json::Map<_, _>>(),
        "flagged": false,
        "ran_on": ran_on,
    });
    let Some(reason) = flag_reason(&max_scores, threshold) else {
        return Ok(result);
    };
    let Some(release) = release(&media, &step).await? else {
        return Err(JobError::fatal(reason));
    };
    tracing::info!(upload = %step.upload, %reason, "moderation: released by an admin");
    result["flagged"] = json!(true);
    result["released"] = json!(true);
    result["reason"] = json!(reason);
    result["release"] = release;
    Ok(result)
}

/// Each class's highest score over every frame (0 when the model did not report it above
/// its own score threshold).
fn max_scores(found: &Found, classes: &[String]) -> BTreeMap<String, f32> {
    let mut scores: BTreeMap<String, f32> = classes.iter().map(|c| (c.clone(), 0.0)).collect();
    for d in found.detections() {
        if let Some(best) = scores.get_mut(&d.label) {
            *best = best.max(d.score);
        }
    }
    scores
}

/// Why the asset is flagged (classes at or above the threshold, highest first), if it is.
fn flag_reason(max_scores: &BTreeMap<String, f32>, threshold: f32) -> Option<String> {
    let mut hits: Vec<(&String, f32)> = max_scores
        .iter()
        .filter(|(_, s)| **s >= threshold)
        .map(|(c, s)| (c, *s))
        .collect();
    if hits.is_empty() {
        return None;
    }
    hits.sort_by(|a, b| b.1.total_cmp(&a.1));
    let hits: Vec<String> = hits.iter().map(|(c, s)| format!("{c} {s:.2}")).collect();
    Some(format!(
        "flagged by moderation: {} (threshold {threshold}); an admin can release it",
        hits.join(", ")
    ))
}

/// The admin's release of this upload, if there is one: its JSON content (or `true` when
/// it is not JSON; its presence is what counts).
async fn release(media: &Media, step: &Step) -> Result<Option<Value>, JobError> {
    let key = ObjectKey::processed(&step.upload, RELEASE_OBJECT);
    let local = step.path("release.json");
    match media.objects.get_to_file(&key, &local).await {
        Ok(_) => {
            let bytes = std::fs::read(&local)
                .map_err(|e| JobError::retryable(format!("cannot read the release: {e}")))?;
            Ok(Some(serde_json::from_slice(&bytes).unwrap_or(json!(true))))
        }
        Err(ObjectsError::NotFound { .. }) => Ok(None),
        Err(e) => Err(objects_error("the moderation release", e)),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use flotilla_ai::{BBox, Detection};

    use super::*;
    use crate::enrich::MediaKind;

    fn found(labels: &[(&str, f32)]) -> Found {
        let detections = labels
            .iter()
            .map(|(label, score)| Detection {
                label: (*label).into(),
                class_id: 0,
                score: *score,
                bbox: BBox::default(),
            })
            .collect();
        Found {
            kind: MediaKind::Video,
            size: None,
            frames: vec![
                (Duration::ZERO, detections),
                (Duration::from_secs(2), vec![]),
            ],
        }
    }

    #[test]
    fn scores_only_the_configured_classes_and_keep_the_highest() {
        let classes = vec!["BUTTOCKS_EXPOSED".to_owned(), "ANUS_EXPOSED".to_owned()];
        let scores = max_scores(
            &found(&[
                ("BUTTOCKS_EXPOSED", 0.4),
                ("FACE_FEMALE", 0.9),
                ("BUTTOCKS_EXPOSED", 0.7),
            ]),
            &classes,
        );
        assert_eq!(
            scores,
            BTreeMap::from([
                ("ANUS_EXPOSED".to_owned(), 0.0),
                ("BUTTOCKS_EXPOSED".to_owned(), 0.7)
            ])
        );
    }

    #[test]
    fn flags_at_or_above_the_threshold_and_names_the_classes() {
        let scores = BTreeMap::from([
            ("A".to_owned(), 0.61_f32),
            ("B".to_owned(), 0.83),
            ("C".to_owned(), 0.59),
        ]);
        let reason = flag_reason(&scores, 0.6).unwrap();
        assert_eq!(
            reason,
            "flagged by moderation: B 0.83, A 0.61 (threshold 0.6); an admin can release it"
        );
        assert!(flag_reason(&scores, 0.9).is_none());
        assert!(flag_reason(&BTreeMap::from([("A".to_owned(), 0.5)]), 0.5).is_some());
    }
}
