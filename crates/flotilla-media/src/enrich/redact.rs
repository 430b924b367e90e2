//! `ai.redact_faces`: a copy of an image with every detected face blurred, with
//! `{"model": "faces", "classes": ["FACE_FEMALE", "FACE_MALE"], "min_score": 0.3,
//! "sigma": 12, "format": "jpeg", "quality": 85}`; written as the output
//! `redacted.<ext>`.
//!
//! Each face box is enlarged by [`MARGIN`] of its size on every side (a detector's box is
//! tight around the face; hair and ears identify people too), clamped to the image, and
//! replaced by its Gaussian blur. Pixels outside those regions are left as they were
//! (exactly so with a lossless format). The result lists each face and the region
//! blurred. Images only: a video fails without retries.

use std::sync::Arc;

use flotilla_ai::{BBox, Detection, DynamicImage};
use flotilla_image::{Image, OutputFormat};
use flotilla_worker::{JobContext, JobError};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Enrichment, MediaKind, detection};
use crate::Media;

/// How much each face box grows on every side, as a fraction of its width or height.
const MARGIN: f32 = 0.15;

/// The largest blur sigma accepted.
const MAX_SIGMA: f32 = 200.0;

/// The parameters of `ai.redact_faces`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default = "super::faces")]
    model: String,
    #[serde(default = "default_classes")]
    classes: Vec<String>,
    #[serde(default = "default_min_score")]
    min_score: f32,
    #[serde(default = "default_sigma")]
    sigma: f32,
    #[serde(default = "default_format")]
    format: String,
    #[serde(default)]
    quality: Option<u8>,
}

fn default_classes() -> Vec<String> {
    vec!["FACE_FEMALE".into(), "FACE_MALE".into()]
}

fn default_min_score() -> f32 {
    0.3
}

fn default_sigma() -> f32 {
    12.0
}

fn default_format() -> String {
    "jpeg".into()
}

/// A blurred region, in whole pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Region {
    x: u32,
    y: u32,
    width: u32,
    height: u32,
}

/// What redaction did: the image's size and each face with its blurred region.
struct Redacted {
    width: u32,
    height: u32,
    faces: Vec<(Detection, Region)>,
}

/// Runs one `ai.redact_faces` job.
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
    } = super::open_step(&media, &enrich, &ctx, "ai.redact_faces", |p: &Params| {
        (&p.model, &p.classes)
    })
    .await?;
    let ran_on = super::placement(&detector, gpu.as_ref());
    let min_score = super::unit("min_score", params.min_score)?;
    let sigma = check_sigma(params.sigma)?;
    let format = output_format(&params.format, params.quality)?;
    let (input, _) = step.download_input(&media).await?;
    if super::media_kind(&step, &input)? == MediaKind::Video {
        return Err(JobError::fatal(format!(
            "ai.redact_faces redacts images only, and {} is a video",
            step.input_name
        )));
    }
    let name = format!("redacted.{}", format.extension());
    let out = step.path(&name);
    let image = super::decode_image(&media, &step, input).await?;
    let found = detector
        .detect_images(&step.input_name, std::slice::from_ref(image.pixels()))
        .await?;
    let faces: Vec<Detection> = found
        .into_iter()
        .flatten()
        .filter(|d| d.score >= min_score && params.classes.contains(&d.label))
        .collect();
    let (input_name, file) = (step.input_name.clone(), out.clone());
    let done = super::blocking(move || {
        redact(image, faces, sigma, format, &file).map_err(|e| super::image_error(&input_name, e))
    })
    .await?;
    let details = json!({
        "type": "image", "width": done.width, "height": done.height,
        "format": format.extension(), "faces": done.faces.len(),
    });
    let output = step.upload_output(&media, &name, &out, details).await?;
    Ok(json!({
        "model": params.model,
        "media": "image",
        "sigma": sigma,
        "faces": done.faces.iter().map(|(d, r)| face(d, r)).collect::<Vec<_>>(),
        "outputs": [output],
        "ran_on": ran_on,
    }))
}

fn check_sigma(sigma: f32) -> Result<f32, JobError> {
    if sigma > 0.0 && sigma <= MAX_SIGMA {
        Ok(sigma)
    } else {
        Err(JobError::fatal(format!(
            "sigma is {sigma}; it must be in (0, {MAX_SIGMA}]"
        )))
    }
}

/// The output encoding from `format` (`jpeg`/`jpg`, `png`, `webp`) and a JPEG quality.
fn output_format(format: &str, quality: Option<u8>) -> Result<OutputFormat, JobError> {
    let format = match format {
        "jpeg" | "jpg" => OutputFormat::Jpeg {
            quality: quality.unwrap_or(flotilla_image::DEFAULT_JPEG_QUALITY),
        },
        "png" => OutputFormat::Png,
        "webp" => OutputFormat::Webp,
        other => {
            return Err(JobError::fatal(format!(
                "format is `{other}`; expected `jpeg`, `png` or `webp`"
            )));
        }
    };
    format
        .validate()
        .map_err(|e| JobError::fatal(format!("format: {e}")))?;
    Ok(format)
}

/// Blurs each face's region and encodes the result to `file`.
fn redact(
    image: Image,
    faces: Vec<Detection>,
    sigma: f32,
    format: OutputFormat,
    file: &std::path::Path,
) -> Result<Redacted, flotilla_image::ImageError> {
    let (width, height) = (image.width(), image.height());
    let mut pixels = image.into_pixels();
    let faces: Vec<(Detection, Region)> = faces
        .into_iter()
        .filter_map(|d| region(&d.bbox, width, height).map(|r| (d, r)))
        .collect();
    for (_, r) in &faces {
        blur_region(&mut pixels, r, sigma);
    }
    flotilla_image::encode(&Image::new(pixels), format, file)?;
    Ok(Redacted {
        width,
        height,
        faces,
    })
}

/// The box grown by [`MARGIN`] on each side, in whole pixels inside the image; `None` when
/// nothing of it is inside.
fn region(b: &BBox, width: u32, height: u32) -> Option<Region> {
    let (dx, dy) = (b.width * MARGIN, b.height * MARGIN);
    let clamp = |v: f32, max: u32| v.clamp(0.0, max as f32) as u32;
    let (x0, y0) = (
        clamp((b.x - dx).floor(), width),
        clamp((b.y - dy).floor(), height),
    );
    let x1 = clamp((b.x + b.width + dx).ceil(), width);
    let y1 = clamp((b.y + b.height + dy).ceil(), height);
    (x1 > x0 && y1 > y0).then_some(Region {
        x: x0,
        y: y0,
        width: x1 - x0,
        height: y1 - y0,
    })
}

/// Replaces the region by its Gaussian blur.
fn blur_region(pixels: &mut DynamicImage, r: &Region, sigma: f32) {
    let blurred = pixels.crop_imm(r.x, r.y, r.width, r.height).blur(sigma);
    image::imageops::replace(pixels, &blurred, i64::from(r.x), i64::from(r.y));
}

fn face(d: &Detection, r: &Region) -> Value {
    let mut value = detection(d);
    value["region"] = json!({ "x": r.x, "y": r.y, "width": r.width, "height": r.height });
    value
}

#[cfg(test)]
mod tests {
    use image::{Rgb, RgbImage};

    use super::*;

    fn bbox(x: f32, y: f32, width: f32, height: f32) -> BBox {
        BBox {
            x,
            y,
            width,
            height,
        }
    }

    #[test]
    fn regions_grow_by_the_margin_and_stay_inside_the_image() {
        let r = region(&bbox(20.0, 40.0, 20.0, 40.0), 100, 100).unwrap();
        assert_eq!((r.x, r.y, r.width, r.height), (17, 34, 26, 52));
        let edge = region(&bbox(90.0, -5.0, 20.0, 20.0), 100, 100).unwrap();
        assert_eq!((edge.x, edge.y, edge.width, edge.height), (87, 0, 13, 18));
        assert_eq!(region(&bbox(0.0, 0.0, 0.0, 0.0), 100, 100), None);
    }

    #[test]
    fn blurring_changes_the_region_only() {
        // A checkerboard: blurring it greys the region out.
        let board = RgbImage::from_fn(64, 64, |x, y| {
            if (x / 2 + y / 2) % 2 == 0 {
                Rgb([255, 255, 255])
            } else {
                Rgb([0, 0, 0])
            }
        });
        let original = DynamicImage::ImageRgb8(board);
        let mut pixels = original.clone();
        let r = Region {
            x: 8,
            y: 8,
            width: 24,
            height: 16,
        };
        blur_region(&mut pixels, &r, 4.0);
        let (before, after) = (original.to_rgb8(), pixels.to_rgb8());
        let inside = |x: u32, y: u32| (8..32).contains(&x) && (8..24).contains(&y);
        for (x, y, p) in after.enumerate_pixels() {
            if !inside(x, y) {
                assert_eq!(p, before.get_pixel(x, y), "({x}, {y}) outside changed");
            }
        }
        let centre = after.get_pixel(20, 16).0[0];
        assert!((64..=192).contains(&centre), "centre greyed: {centre}");
    }

    #[test]
    fn formats_and_their_errors() {
        assert_eq!(
            output_format("jpg", None).unwrap(),
            OutputFormat::Jpeg { quality: 85 }
        );
        assert_eq!(output_format("png", None).unwrap().extension(), "png");
        assert!(
            output_format("gif", None)
                .unwrap_err()
                .message()
                .contains("gif")
        );
        assert!(output_format("jpeg", Some(0)).is_err());
        assert!(check_sigma(0.0).is_err() && check_sigma(12.0).is_ok());
    }
}
