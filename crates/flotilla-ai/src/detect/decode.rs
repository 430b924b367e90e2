//! Decoding a YOLOv8/11-style output tensor into scored candidate boxes.
//!
//! The tensor is `[1, 4 + C, N]`: for each of N anchors, the box centre and size (cx, cy,
//! w, h) in input pixels, then C class scores that are already probabilities (no objectness
//! column, no NMS in the graph). Some exports transpose it to `[1, N, 4 + C]`; the layout
//! is decided from the shape. Each anchor yields at most one candidate: its best class, if
//! that score reaches the threshold.

use super::{BBox, Candidate};
use crate::error::AiError;

/// Decodes one image's output (`shape[0]` must be 1: slice batches per image first).
pub fn decode_yolo(
    output: &[f32],
    shape: [usize; 3],
    classes: usize,
    score_threshold: f32,
) -> Result<Vec<Candidate>, AiError> {
    let layout = Layout::of(shape, classes)?;
    if output.len() != shape.iter().product::<usize>() {
        return Err(shape_error(
            "output data length",
            shape.iter().product::<usize>().to_string(),
            output.len().to_string(),
        ));
    }
    let value = |anchor: usize, row: usize| output[layout.index(anchor, row)];
    let mut candidates = Vec::new();
    for anchor in 0..layout.anchors {
        let (class_id, score) = (0..classes).map(|c| (c, value(anchor, 4 + c))).fold(
            (0, f32::NEG_INFINITY),
            |best, next| {
                if next.1 > best.1 { next } else { best }
            },
        );
        if score >= score_threshold {
            let bbox = BBox::from_center(
                value(anchor, 0),
                value(anchor, 1),
                value(anchor, 2),
                value(anchor, 3),
            );
            candidates.push(Candidate {
                class_id: class_id as u32,
                score,
                bbox,
            });
        }
    }
    Ok(candidates)
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
