//! `flotilla models check`: load a model and run one inference, timing both.
//!
//! This is the start-up proof that a configured model works on this machine (runtime
//! library present, file intact, shapes as configured) before any job depends on it.

use std::path::Path;
use std::time::Instant;

use image::{DynamicImage, Rgb, RgbImage};
use serde::{Deserialize, Serialize};

use crate::config::{ModelConfig, ModelKind};
use crate::detect::{Detection, Detector};
use crate::error::AiError;

/// What a check measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    /// The model's name.
    pub name: String,
    /// Where it ran (`cpu`, `cuda:0`).
    pub device: String,
    /// Time to load the model, in milliseconds.
    pub load_ms: f64,
    /// Time of the first inference (pre-processing included), in milliseconds.
    pub infer_ms: f64,
    /// What that inference found.
    pub detections: Vec<Detection>,
}

/// Loads the model and runs one inference on a generated sample image.
pub fn check_model(config: &ModelConfig) -> Result<CheckReport, AiError> {
    check_model_on(config, &sample_image())
}

/// Loads the model and runs one inference on `image` (e.g. an installed sample photo).
pub fn check_model_on(config: &ModelConfig, image: &DynamicImage) -> Result<CheckReport, AiError> {
    if config.kind != ModelKind::Detector {
        let message = "is `speech`: speech models are checked by the speech crate";
        return Err(AiError::config(
            format!("models.{}.kind", config.name),
            message,
        ));
    }
    let started = Instant::now();
    let detector = Detector::load(config)?;
    let load_ms = millis(started);
    let started = Instant::now();
    let detections = detector.detect(image)?;
    Ok(CheckReport {
        name: config.name.clone(),
        device: detector.device().to_string(),
        load_ms,
        infer_ms: millis(started),
        detections,
    })
}

/// Opens an image file for detection, with a typed error.
pub fn open_image(path: &Path) -> Result<DynamicImage, AiError> {
    image::open(path).map_err(|e| AiError::Image {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// A 640 × 480 synthetic scene (gradient sky, dark ground, a few blocks): enough to run
/// every layer of a detector without shipping a photo.
pub fn sample_image() -> DynamicImage {
    let image = RgbImage::from_fn(640, 480, |x, y| {
        let block = (x / 80 + y / 80) % 3 == 0 && y > 240;
        match (y < 240, block) {
            (true, _) => Rgb([90, 140, (160 + y / 3) as u8]),
            (false, true) => Rgb([200, (x % 255) as u8, 40]),
            (false, false) => Rgb([60, 70, 50]),
        }
    });
    DynamicImage::ImageRgb8(image)
}

fn millis(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}
