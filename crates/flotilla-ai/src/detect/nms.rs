//! Per-class non-maximum suppression: of boxes of the same class that overlap by more than
//! the IoU threshold, only the highest-scoring one survives; boxes of different classes
//! never suppress each other (a person holding a cup keeps both).

use std::time::Instant;

use super::Candidate;
use super::engine::{Stage, record};

/// At most this many detections are kept per image (the Ultralytics default `max_det`).
pub const MAX_DETECTIONS: usize = 300;

/// Greedy NMS per class; the result is sorted by descending score, at most
/// [`MAX_DETECTIONS`] long.
pub fn nms_per_class(mut candidates: Vec<Candidate>, iou_threshold: f32) -> Vec<Candidate> {
    let started = Instant::now();
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Candidate> = Vec::new();
    for candidate in candidates {
        let suppressed = kept.iter().any(|k| {
            k.class_id == candidate.class_id && k.bbox.iou(&candidate.bbox) > iou_threshold
        });
        if !suppressed {
            kept.push(candidate);
            if kept.len() == MAX_DETECTIONS {
                break;
            }
        }
    }
    record(Stage::Post, started);
    kept
}

#[cfg(test)]
mod tests {
    use super::super::BBox;
    use super::*;

    fn cand(class_id: u32, score: f32, x: f32) -> Candidate {
        Candidate {
            class_id,
            score,
            bbox: BBox {
                x,
                y: 0.0,
                width: 10.0,
                height: 10.0,
            },
        }
    }

    #[test]
    fn overlapping_boxes_of_one_class_keep_the_best() {
        let kept = nms_per_class(
            vec![cand(0, 0.6, 1.0), cand(0, 0.9, 0.0), cand(0, 0.7, 2.0)],
            0.45,
        );
        assert_eq!(kept, vec![cand(0, 0.9, 0.0)]);
    }

    #[test]
    fn different_classes_are_kept_even_when_identical() {
        let kept = nms_per_class(vec![cand(0, 0.8, 0.0), cand(1, 0.7, 0.0)], 0.45);
        assert_eq!(kept, vec![cand(0, 0.8, 0.0), cand(1, 0.7, 0.0)]);
    }

    #[test]
    fn overlap_at_or_below_the_threshold_is_kept() {
        // x = 5: IoU = 50 / 150 = 0.33.
        let kept = nms_per_class(
            vec![cand(0, 0.8, 0.0), cand(0, 0.7, 5.0), cand(0, 0.6, 20.0)],
            0.45,
        );
        assert_eq!(kept.len(), 3);
        let strict = nms_per_class(vec![cand(0, 0.8, 0.0), cand(0, 0.7, 5.0)], 0.3);
        assert_eq!(strict, vec![cand(0, 0.8, 0.0)]);
    }

    #[test]
    fn output_is_sorted_and_capped() {
        let many: Vec<_> = (0..400)
            .map(|i| cand(0, i as f32 / 400.0, i as f32 * 20.0))
            .collect();
        let kept = nms_per_class(many, 0.45);
        assert_eq!(kept.len(), MAX_DETECTIONS);
        assert!(kept.windows(2).all(|w| w[0].score >= w[1].score));
        assert_eq!(kept[0].score, 399.0 / 400.0);
    }
}
