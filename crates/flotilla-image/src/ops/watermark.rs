//! [`Op::Watermark`](super::Op::Watermark): alpha-blending a scaled logo onto a corner.

use std::path::Path;

use image::{DynamicImage, RgbaImage};

use super::{Position, resize};
use crate::decode::decode;
use crate::error::ImageError;
use crate::limits::Limits;

/// Margin between the logo and the image's edges, as a fraction of the image width.
const MARGIN_FRACTION: f64 = 0.02;

/// Blends the logo at `logo_path`, `scale` × the image width wide and with its alpha
/// multiplied by `opacity`, at `position`. Grayscale images become colour so the logo
/// keeps its colours.
pub(super) fn watermark(
    image: &DynamicImage,
    logo_path: &Path,
    position: Position,
    opacity: f32,
    scale: f32,
) -> Result<DynamicImage, ImageError> {
    let logo = decode(logo_path, &Limits::default())?.into_pixels();
    let logo_width = ((f64::from(image.width()) * f64::from(scale)).round() as u32).max(1);
    let plan = super::ResizePlan::for_box(
        logo.width(),
        logo.height(),
        Some(logo_width),
        None,
        super::Fit::Contain,
        true,
    );
    let mut logo = resize::resize(&DynamicImage::ImageRgba8(logo.to_rgba8()), plan)?.to_rgba8();
    fade(&mut logo, opacity);
    let mut output = match image {
        DynamicImage::ImageLuma8(_) => DynamicImage::ImageRgb8(image.to_rgb8()),
        DynamicImage::ImageLumaA8(_) => DynamicImage::ImageRgba8(image.to_rgba8()),
        other => other.clone(),
    };
    let (x, y) = placement(image, &logo, position);
    image::imageops::overlay(&mut output, &DynamicImage::ImageRgba8(logo), x, y);
    Ok(output)
}

fn fade(logo: &mut RgbaImage, opacity: f32) {
    for pixel in logo.pixels_mut() {
        pixel.0[3] = (f32::from(pixel.0[3]) * opacity).round() as u8;
    }
}

/// Top-left corner of the logo for `position`, with the margin.
fn placement(image: &DynamicImage, logo: &RgbaImage, position: Position) -> (i64, i64) {
    let margin = (f64::from(image.width()) * MARGIN_FRACTION).round() as i64;
    let (w, h) = (i64::from(image.width()), i64::from(image.height()));
    let (lw, lh) = (i64::from(logo.width()), i64::from(logo.height()));
    let (left, right) = (margin, w - lw - margin);
    let (top, bottom) = (margin, h - lh - margin);
    match position {
        Position::TopLeft => (left, top),
        Position::TopRight => (right, top),
        Position::BottomLeft => (left, bottom),
        Position::BottomRight => (right, bottom),
        Position::Center => ((w - lw) / 2, (h - lh) / 2),
    }
}
