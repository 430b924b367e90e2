//! Object detection: the pure pieces (letterbox, decode, per-class NMS) and the
//! [`Detector`] that runs a YOLOv8/11-style ONNX model with them.
//!
//! The pure pieces are written once and unit-tested here; the detector only moves tensors
//! in and out of ONNX Runtime. Coordinates go through three spaces: the original image's
//! pixels, the letterboxed input's pixels (what the model sees and returns), and back;
//! [`Letterbox::to_original`] is the only way back, and clamps to the image.

mod decode;
mod detector;
mod engine;
mod letterbox;
mod nms;
#[cfg(feature = "tract")]
mod tract_engine;

use serde::{Deserialize, Serialize};

pub use decode::decode_yolo;
pub use detector::{Detector, MAX_BATCH};
pub use letterbox::{LETTERBOX_GREY, Letterbox, letterbox};
pub use nms::{MAX_DETECTIONS, nms_per_class};

/// An axis-aligned box: top-left corner and size, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct BBox {
    /// Left edge.
    pub x: f32,
    /// Top edge.
    pub y: f32,
    /// Width (never negative).
    pub width: f32,
    /// Height (never negative).
    pub height: f32,
}

impl BBox {
    /// A box from its centre and size, as YOLO models output them.
    pub fn from_center(cx: f32, cy: f32, width: f32, height: f32) -> Self {
        Self {
            x: cx - width / 2.0,
            y: cy - height / 2.0,
            width,
            height,
        }
    }

    /// Its area.
    pub fn area(&self) -> f32 {
        self.width.max(0.0) * self.height.max(0.0)
    }

    /// Intersection over union with another box (0 when either is empty).
    pub fn iou(&self, other: &BBox) -> f32 {
        let w = (self.x + self.width).min(other.x + other.width) - self.x.max(other.x);
        let h = (self.y + self.height).min(other.y + other.height) - self.y.max(other.y);
        let inter = w.max(0.0) * h.max(0.0);
        let union = self.area() + other.area() - inter;
        if union > 0.0 { inter / union } else { 0.0 }
    }
}

/// A scored box before NMS, in the model input's pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Index into the model's class list.
    pub class_id: u32,
    /// The class score (already a probability for YOLOv8/11 outputs).
    pub score: f32,
    /// The box.
    pub bbox: BBox,
}

/// One detected object, in the original image's pixels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// The class name.
    pub label: String,
    /// Index into the model's class list.
    pub class_id: u32,
    /// The class score, 0–1.
    pub score: f32,
    /// The box, clamped to the image.
    pub bbox: BBox,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_of_identical_disjoint_and_half_overlapping_boxes() {
        let a = BBox {
            x: 0.0,
            y: 0.0,
            width: 10.0,
            height: 10.0,
        };
        assert_eq!(a.iou(&a), 1.0);
        assert_eq!(a.iou(&BBox { x: 20.0, ..a }), 0.0);
        let half = BBox { x: 5.0, ..a };
        assert!((a.iou(&half) - 50.0 / 150.0).abs() < 1e-6);
        assert_eq!(BBox::default().iou(&BBox::default()), 0.0);
    }

    #[test]
    fn from_center_puts_the_corner_half_a_size_back() {
        let b = BBox::from_center(50.0, 40.0, 20.0, 10.0);
        assert_eq!(
            b,
            BBox {
                x: 40.0,
                y: 35.0,
                width: 20.0,
                height: 10.0
            }
        );
    }
}
