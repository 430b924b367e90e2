//! Decoding a YOLOv8/11-style output tensor into scored candidate boxes.
//!
//! The tensor is `[1, 4 + C, N]`: for each of N anchors, the box centre and size (cx, cy,
//! w, h) in input pixels, then C class scores that are already probabilities (no objectness
//! column, no NMS in the graph). Some exports transpose it to `[1, N, 4 + C]`; the layout
//! is decided from the shape. Each anchor yields at most one candidate: its best class, if
//! that score reaches the threshold.
//!
//! The best class is found for all anchors first, a class row at a time (rows are
//! contiguous in the usual `[1, 4 + C, N]` layout), and boxes are read only for anchors
//! whose best score reaches the threshold: a handful of the 8400.

use std::time::Instant;

use super::engine::{Stage, record};
use super::{BBox, Candidate};
use crate::error::AiError;

/// Decodes one image's output (`shape[0]` must be 1: slice batches per image first).
pub fn decode_yolo(
    output: &[f32],
    shape: [usize; 3],
    classes: usize,
    score_threshold: f32,
) -> Result<Vec<Candidate>, AiError> {
    let started = Instant::now();
    let layout = Layout::of(shape, classes)?;
    if output.len() != shape.iter().product::<usize>() {
        return Err(shape_error(
            "output data length",
            shape.iter().product::<usize>().to_string(),
            output.len().to_string(),
        ));
    }
    let best = if layout.channels_first {
        best_per_anchor_by_row(output, layout.anchors, classes)
    } else {
        best_per_anchor(output, layout.rows, classes)
    };
    let value = |anchor: usize, row: usize| output[layout.index(anchor, row)];
    let candidates = best
        .into_iter()
        .enumerate()
        .filter(|(_, (_, score))| *score >= score_threshold)
        .map(|(anchor, (class_id, score))| Candidate {
            class_id,
            score,
            bbox: BBox::from_center(
                value(anchor, 0),
                value(anchor, 1),
                value(anchor, 2),
                value(anchor, 3),
            ),
        })
        .collect();
    record(Stage::Post, started);
    Ok(candidates)
}

/// Each anchor's best (class, score) from a `[4 + C, N]` output, one class row at a time:
/// the rows are contiguous, so this streams through memory instead of striding by N.
/// Ties keep the lower class; NaN never wins (as the per-anchor scan).
fn best_per_anchor_by_row(output: &[f32], anchors: usize, classes: usize) -> Vec<(u32, f32)> {
    if anchors == 0 {
        return Vec::new();
    }
    let mut best = vec![(0u32, f32::NEG_INFINITY); anchors];
    let rows = output[4 * anchors..].chunks_exact(anchors).take(classes);
    for (class_id, row) in rows.enumerate() {
        for (slot, &score) in best.iter_mut().zip(row) {
            if score > slot.1 {
                *slot = (class_id as u32, score);
            }
        }
    }
    best
}

/// Each anchor's best (class, score) from an `[N, 4 + C]` output.
fn best_per_anchor(output: &[f32], rows: usize, classes: usize) -> Vec<(u32, f32)> {
    output
        .chunks_exact(rows)
        .map(|anchor| {
            anchor[4..4 + classes].iter().enumerate().fold(
                (0u32, f32::NEG_INFINITY),
                |best, (class_id, &score)| {
                    if score > best.1 {
                        (class_id as u32, score)
                    } else {
                        best
                    }
                },
            )
        })
        .collect()
}

/// Where anchor `a`'s row `r` lives in the flat output.
struct Layout {
    anchors: usize,
    rows: usize,
    channels_first: bool,
}

impl Layout {
    fn of(shape: [usize; 3], classes: usize) -> Result<Self, AiError> {
        let rows = 4 + classes;
        let expected =
            || format!("[1, {rows}, N] or [1, N, {rows}] (4 box values + {classes} classes)");
        if shape[0] != 1 {
            return Err(shape_error(
                "output batch",
                "1".to_owned(),
                format!("{shape:?}"),
            ));
        }
        match shape {
            [_, r, n] if r == rows => Ok(Self {
                anchors: n,
                rows,
                channels_first: true,
            }),
            [_, n, r] if r == rows => Ok(Self {
                anchors: n,
                rows,
                channels_first: false,
            }),
            _ => Err(shape_error("output", expected(), format!("{shape:?}"))),
        }
    }

    fn index(&self, anchor: usize, row: usize) -> usize {
        if self.channels_first {
            row * self.anchors + anchor
        } else {
            anchor * self.rows + row
        }
    }
}

fn shape_error(what: &str, expected: String, found: String) -> AiError {
    AiError::WrongShape {
        model: "(decode)".to_owned(),
        what: what.to_owned(),
        expected,
        found,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two classes, three anchors, as `[1, 6, 3]` (rows: cx, cy, w, h, score0, score1).
    fn channels_first() -> Vec<f32> {
        vec![
            10.0, 50.0, 90.0, // cx
            20.0, 60.0, 95.0, // cy
            4.0, 10.0, 2.0, // w
            6.0, 20.0, 2.0, // h
            0.9, 0.1, 0.2, // class 0
            0.3, 0.7, 0.1, // class 1
        ]
    }

    fn transpose(data: &[f32], rows: usize, anchors: usize) -> Vec<f32> {
        (0..anchors)
            .flat_map(|a| (0..rows).map(move |r| data[r * anchors + a]))
            .collect()
    }

    #[test]
    fn keeps_the_best_class_per_anchor_above_the_threshold() {
        let found = decode_yolo(&channels_first(), [1, 6, 3], 2, 0.25).unwrap();
        assert_eq!(
            found.len(),
            2,
            "the third anchor's best score 0.2 is below 0.25"
        );
        assert_eq!((found[0].class_id, found[0].score), (0, 0.9));
        assert_eq!(
            found[0].bbox,
            BBox {
                x: 8.0,
                y: 17.0,
                width: 4.0,
                height: 6.0
            }
        );
        assert_eq!((found[1].class_id, found[1].score), (1, 0.7));
        assert_eq!(
            found[1].bbox,
            BBox {
                x: 45.0,
                y: 50.0,
                width: 10.0,
                height: 20.0
            }
        );
    }

    #[test]
    fn threshold_is_inclusive_and_can_drop_everything() {
        assert_eq!(
            decode_yolo(&channels_first(), [1, 6, 3], 2, 0.2)
                .unwrap()
                .len(),
            3
        );
        assert!(
            decode_yolo(&channels_first(), [1, 6, 3], 2, 0.95)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn transposed_layout_decodes_the_same() {
        let transposed = transpose(&channels_first(), 6, 3);
        let a = decode_yolo(&channels_first(), [1, 6, 3], 2, 0.25).unwrap();
        let b = decode_yolo(&transposed, [1, 3, 6], 2, 0.25).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn ties_keep_the_lower_class_nan_never_wins_and_no_anchors_is_empty() {
        // Anchor 0: both classes 0.5; anchor 1: NaN then 0.4.
        let data = vec![
            1.0,
            2.0,
            1.0,
            2.0,
            1.0,
            1.0,
            1.0,
            1.0,
            0.5,
            f32::NAN,
            0.5,
            0.4,
        ];
        for (output, shape) in [
            (data.clone(), [1, 6, 2]),
            (transpose(&data, 6, 2), [1, 2, 6]),
        ] {
            let found = decode_yolo(&output, shape, 2, 0.3).unwrap();
            let classes: Vec<_> = found.iter().map(|c| (c.class_id, c.score)).collect();
            assert_eq!(classes, vec![(0, 0.5), (1, 0.4)], "{shape:?}");
        }
        assert!(decode_yolo(&[], [1, 6, 0], 2, 0.0).unwrap().is_empty());
    }

    #[test]
    fn wrong_class_count_or_length_is_a_shape_error() {
        let err = decode_yolo(&channels_first(), [1, 6, 3], 3, 0.25).unwrap_err();
        assert!(
            matches!(err, AiError::WrongShape { ref expected, .. } if expected.contains("[1, 7, N]")),
            "{err}"
        );
        let err = decode_yolo(&channels_first()[..17], [1, 6, 3], 2, 0.25).unwrap_err();
        assert!(matches!(err, AiError::WrongShape { .. }), "{err}");
        let err = decode_yolo(&channels_first(), [2, 6, 3], 2, 0.25).unwrap_err();
        assert!(matches!(err, AiError::WrongShape { .. }), "{err}");
    }
}
