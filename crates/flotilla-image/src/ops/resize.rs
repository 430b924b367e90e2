//! Resizing with `fast_image_resize` (SIMD convolution, Lanczos3), and the geometry of
//! [`Op::Resize`](super::Op::Resize) and [`Op::Thumbnail`](super::Op::Thumbnail).

use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::DynamicImage;

use super::{Fit, check_dimension};
use crate::error::ImageError;

/// What a resize does to a given input: the output size, the scale factors, and whether
/// the centre is cropped to the output's aspect ratio.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ResizePlan {
    width: u32,
    height: u32,
    scale_x: f64,
    scale_y: f64,
    crop: bool,
}

impl ResizePlan {
    /// A plan that keeps `image` as it is.
    pub(super) fn identity(image: &DynamicImage) -> Self {
        Self {
            width: image.width(),
            height: image.height(),
            scale_x: 1.0,
            scale_y: 1.0,
            crop: false,
        }
    }

    /// The plan for fitting a `src_w`×`src_h` image to a box of which at least one side is
    /// given (validated before).
    pub(super) fn for_box(
        src_w: u32,
        src_h: u32,
        box_w: Option<u32>,
        box_h: Option<u32>,
        fit: Fit,
        enlarge: bool,
    ) -> Self {
        let (sw, sh) = (f64::from(src_w), f64::from(src_h));
        let ratio_w = box_w.map(|w| f64::from(w) / sw);
        let ratio_h = box_h.map(|h| f64::from(h) / sh);
        let cap = |s: f64| if enlarge { s } else { s.min(1.0) };
        let (scale_x, scale_y) = match (ratio_w, ratio_h, fit) {
            (Some(rw), Some(rh), Fit::Fill) => (cap(rw), cap(rh)),
            (Some(rw), Some(rh), Fit::Cover) => {
                let s = rw.max(rh);
                return Self::cover(
                    src_w,
                    src_h,
                    box_w.unwrap_or(src_w),
                    box_h.unwrap_or(src_h),
                    cap(s) / s,
                );
            }
            (Some(rw), Some(rh), Fit::Contain) => (cap(rw.min(rh)), cap(rw.min(rh))),
            (Some(r), None, _) | (None, Some(r), _) => (cap(r), cap(r)),
            (None, None, _) => (1.0, 1.0),
        };
        Self {
            width: scaled(src_w, scale_x),
            height: scaled(src_h, scale_y),
            scale_x,
            scale_y,
            crop: false,
        }
    }

    /// Cover: the output is the box (shrunk by `shrink` ≤ 1 when enlarging is not allowed).
    fn cover(src_w: u32, src_h: u32, box_w: u32, box_h: u32, shrink: f64) -> Self {
        let (width, height) = (scaled(box_w, shrink), scaled(box_h, shrink));
        let scale = (f64::from(width) / f64::from(src_w)).max(f64::from(height) / f64::from(src_h));
        Self {
            width,
            height,
            scale_x: scale,
            scale_y: scale,
            crop: true,
        }
    }

    /// The output size.
    pub(crate) fn output_size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// The smallest input (same aspect as `src`) that this plan can work from without
    /// enlarging: the input scaled by the plan's factors, before any crop.
    pub(crate) fn min_source_size(&self, src_w: u32, src_h: u32) -> (u32, u32) {
        let need = |len: u32, scale: f64| ((f64::from(len) * scale).ceil() as u32).clamp(1, len);
        (need(src_w, self.scale_x), need(src_h, self.scale_y))
    }
}

fn scaled(len: u32, scale: f64) -> u32 {
    ((f64::from(len) * scale).round() as u32).max(1)
}

pub(super) fn validate(width: Option<u32>, height: Option<u32>) -> Result<(), ImageError> {
    if width.is_none() && height.is_none() {
        return Err(ImageError::invalid(
            "resize: give a width, a height, or both",
        ));
    }
    if let Some(width) = width {
        check_dimension("resize", "width", width)?;
    }
    if let Some(height) = height {
        check_dimension("resize", "height", height)?;
    }
    Ok(())
}

/// Resizes `image` as `plan` says (a copy when the plan keeps the size).
pub(super) fn resize(image: &DynamicImage, plan: ResizePlan) -> Result<DynamicImage, ImageError> {
    if plan.output_size() == (image.width(), image.height()) {
        return Ok(image.clone());
    }
    let source = match image {
        DynamicImage::ImageLuma8(_)
        | DynamicImage::ImageLumaA8(_)
        | DynamicImage::ImageRgb8(_)
        | DynamicImage::ImageRgba8(_)
        | DynamicImage::ImageLuma16(_)
        | DynamicImage::ImageLumaA16(_)
        | DynamicImage::ImageRgb16(_)
        | DynamicImage::ImageRgba16(_)
        | DynamicImage::ImageRgb32F(_)
        | DynamicImage::ImageRgba32F(_) => std::borrow::Cow::Borrowed(image),
        // Any future layout: convert to one the resizer knows.
        other => std::borrow::Cow::Owned(DynamicImage::ImageRgba8(other.to_rgba8())),
    };
    let mut output = DynamicImage::new(plan.width, plan.height, source.color());
    let mut options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
    if plan.crop {
        options = options.fit_into_destination(Some((0.5, 0.5)));
    }
    Resizer::new()
        .resize(source.as_ref(), &mut output, &options)
        .map_err(|e| {
            ImageError::invalid(format!(
                "resize to {}x{} failed: {e}",
                plan.width, plan.height
            ))
        })?;
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(
        src: (u32, u32),
        w: Option<u32>,
        h: Option<u32>,
        fit: Fit,
        enlarge: bool,
    ) -> (u32, u32) {
        ResizePlan::for_box(src.0, src.1, w, h, fit, enlarge).output_size()
    }

    #[test]
    fn box_geometry() {
        let src = (4000, 3000);
        assert_eq!(
            size(src, Some(1920), None, Fit::Contain, false),
            (1920, 1440)
        );
        assert_eq!(size(src, None, Some(300), Fit::Contain, false), (400, 300));
        assert_eq!(
            size(src, Some(1280), Some(720), Fit::Contain, false),
            (960, 720)
        );
        assert_eq!(
            size(src, Some(1280), Some(720), Fit::Cover, false),
            (1280, 720)
        );
        assert_eq!(
            size(src, Some(100), Some(100), Fit::Fill, false),
            (100, 100)
        );
        assert_eq!(
            size((100, 50), Some(400), None, Fit::Contain, false),
            (100, 50)
        );
        assert_eq!(
            size((100, 50), Some(400), None, Fit::Contain, true),
            (400, 200)
        );
        assert_eq!(
            size((100, 50), Some(400), Some(400), Fit::Cover, false),
            (50, 50)
        );
    }

    #[test]
    fn min_source_is_the_scaled_input_before_cropping() {
        let plan = ResizePlan::for_box(4000, 3000, Some(1000), Some(1000), Fit::Cover, false);
        assert_eq!(plan.min_source_size(4000, 3000), (1334, 1000));
        let plan = ResizePlan::for_box(4000, 3000, Some(320), Some(320), Fit::Contain, false);
        assert_eq!(plan.min_source_size(4000, 3000), (320, 240));
    }
}
