//! `ai.detect`: objects in an image, or in a video's keyframes, with
//! `{"model": "objects", "min_score": 0.25, "every_s": null, "max_frames": 60}`.
//!
//! An image gives its detections (label, score, box in the image's pixels) and one
//! summary per label (how many boxes, the best score and its box). A video gives one
//! summary per label across its keyframes (`flotilla_ai::aggregate`: in how many frames,
//! the best score, first and last seen, the best frame's time and box). The result is
//! also written as the output `detections.json`, so it can be downloaded and delivered.
//! `min_score` filters what the model kept: it cannot go below the model's own
//! `score_threshold`, which applies first.

use std::sync::Arc;

use flotilla_ai::{Detection, LabelSummary};
use flotilla_worker::{JobContext, JobError};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Enrichment, Found, MediaKind, Sampling, bbox, detection, score};
use crate::Media;

/// The parameters of `ai.detect`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default = "objects")]
    model: String,
    #[serde(default)]
    min_score: Option<f32>,
    #[serde(default)]
    every_s: Option<f64>,
    #[serde(default = "super::default_max_frames")]
    max_frames: usize,
}

fn objects() -> String {
    flotilla_ai::config::OBJECTS_MODEL.to_owned()
}

/// Runs one `ai.detect` job.
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
    } = super::open_step(&media, &enrich, &ctx, "ai.detect", |p: &Params| {
        (&p.model, &[])
    })
    .await?;
    let ran_on = super::placement(&detector, gpu.as_ref());
    let min_score = params
        .min_score
        .map_or(Ok(detector.config().score_threshold), |s| {
            super::unit("min_score", s)
        })?;
    let sampling = Sampling::new(params.every_s, params.max_frames)?;
    let mut found = super::detect_input(&media, &step, detector, sampling).await?;
    for (_, detections) in &mut found.frames {
        detections.retain(|d| d.score >= min_score);
    }
    ctx.progress(json!({ "frames": found.frames.len() }));
    let mut result = summary(&params.model, min_score, &found);
    result["ran_on"] = ran_on;
    let file = super::write_json(&step, "detections.json", &result)?;
    let output = step
        .upload_output(&media, "detections.json", &file, json!({ "type": "json" }))
        .await?;
    result["outputs"] = json!([output]);
    Ok(result)
}

/// The step's result (and `detections.json`).
fn summary(model: &str, min_score: f32, found: &Found) -> Value {
    let mut result = json!({
        "model": model,
        "media": found.kind.as_str(),
        "min_score": score(min_score),
        "frames": found.frames.len(),
    });
    match found.kind {
        MediaKind::Image => {
            let detections: Vec<&Detection> = found.detections().collect();
            let (width, height) = found.size.unwrap_or_default();
            result["width"] = json!(width);
            result["height"] = json!(height);
            result["detections"] = detections.iter().map(|d| detection(d)).collect();
            result["labels"] = image_labels(&detections);
        }
        MediaKind::Video => {
            let labels = flotilla_ai::aggregate(&found.frames);
            result["labels"] = labels.iter().map(video_label).collect();
        }
    }
    result
}

/// Per label in one image: the number of boxes, the best score and its box; best first.
fn image_labels(detections: &[&Detection]) -> Value {
    let mut best: Vec<(&Detection, usize)> = Vec::new();
    for d in detections {
        match best.iter_mut().find(|(b, _)| b.label == d.label) {
            Some((b, count)) => {
                *count += 1;
                if d.score > b.score {
                    *b = d;
                }
            }
            None => best.push((d, 1)),
        }
    }
    best.sort_by(|a, b| b.0.score.total_cmp(&a.0.score));
    best.iter()
        .map(|(d, count)| {
            json!({
                "label": d.label, "count": count, "best_score": score(d.score),
                "best_box": bbox(&d.bbox),
            })
        })
        .collect()
}

/// One label across a video's keyframes.
fn video_label(s: &LabelSummary) -> Value {
    json!({
        "label": s.label,
        "count": s.count,
        "best_score": score(s.best_score),
        "first_seen_s": s.first_seen.as_secs_f64(),
        "last_seen_s": s.last_seen.as_secs_f64(),
        "best_box": bbox(&s.best_box),
        "best_frame_s": s.best_frame_at.as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use flotilla_ai::BBox;

    use super::*;

    fn det(label: &str, score: f32, x: f32) -> Detection {
        Detection {
            label: label.into(),
            class_id: 0,
            score,
            bbox: BBox {
                x,
                y: 1.0,
                width: 10.0,
                height: 20.0,
            },
        }
    }

    #[test]
    fn an_image_counts_boxes_per_label_and_keeps_the_best() {
        let found = Found {
            kind: MediaKind::Image,
            size: Some((100, 50)),
            frames: vec![(
                Duration::ZERO,
                vec![
                    det("cup", 0.4, 0.0),
                    det("cat", 0.9, 5.0),
                    det("cup", 0.7, 30.0),
                ],
            )],
        };
        let result = summary("objects", 0.25, &found);
        assert_eq!(
            (result["width"].clone(), result["height"].clone()),
            (json!(100), json!(50))
        );
        assert_eq!(result["detections"].as_array().unwrap().len(), 3);
        assert_eq!(result["detections"][1]["box"]["x"], 5.0);
        let labels = result["labels"].as_array().unwrap();
        assert_eq!(labels[0]["label"], "cat");
        assert_eq!(labels[1]["label"], "cup");
        assert_eq!(labels[1]["count"], 2);
        assert_eq!(labels[1]["best_score"], 0.7);
        assert_eq!(labels[1]["best_box"]["x"], 30.0);
    }

    #[test]
    fn a_video_summarises_each_label_in_seconds() {
        let found = Found {
            kind: MediaKind::Video,
            size: None,
            frames: vec![
                (Duration::ZERO, vec![det("cat", 0.6, 0.0)]),
                (Duration::from_secs(2), vec![det("cat", 0.8, 4.0)]),
                (Duration::from_secs(4), vec![]),
            ],
        };
        let result = summary("objects", 0.5, &found);
        assert_eq!(result["media"], "video");
        assert_eq!(result["frames"], 3);
        assert!(result.get("detections").is_none());
        let cat = &result["labels"][0];
        assert_eq!(cat["count"], 2);
        assert_eq!(
            (cat["first_seen_s"].clone(), cat["last_seen_s"].clone()),
            (json!(0.0), json!(2.0))
        );
        assert_eq!(
            (cat["best_frame_s"].clone(), cat["best_box"]["x"].clone()),
            (json!(2.0), json!(4.0))
        );
    }
}
