//! [`Op`]: one step of a chain, and [`apply`], which runs a chain.
//!
//! Every op takes an image and returns a new one; parameters are validated for the whole
//! chain before the first op runs, so a bad chain fails before any expensive work.

mod filters;
mod resize;
mod watermark;

use std::borrow::Cow;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::decode::Image;
use crate::error::ImageError;

pub(crate) use resize::ResizePlan;

/// The largest width, height or thumbnail size an op may ask for.
pub const MAX_OUTPUT_DIMENSION: u32 = 30_000;

/// One operation of a chain. Serialised with an `op` tag, e.g.
/// `{"op":"resize","width":1280,"height":720,"fit":"contain"}`, `{"op":"thumbnail","size":256}`,
/// `{"op":"blur","sigma":2.0}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    /// Resizes with a Lanczos3 filter. With only `width` or only `height`, the other side
    /// follows the aspect ratio. Never enlarges unless `enlarge` is set.
    Resize {
        /// Target width in pixels.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        width: Option<u32>,
        /// Target height in pixels.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        height: Option<u32>,
        /// How to fit into a `width`×`height` box; irrelevant when only one is given.
        #[serde(default)]
        fit: Fit,
        /// Allow the output to be larger than the input.
        #[serde(default)]
        enlarge: bool,
    },
    /// Fits the image within a `size`×`size` square, aspect kept, never enlarging.
    Thumbnail {
        /// The square's side in pixels.
        size: u32,
    },
    /// Converts to grayscale (one luma channel, alpha kept).
    Grayscale,
    /// Gaussian-like blur (a fast box-blur approximation) with standard deviation `sigma`
    /// in pixels, 0 < sigma ≤ 100.
    Blur {
        /// Standard deviation in pixels.
        sigma: f32,
    },
    /// Adds `delta` (-255..=255) to every colour channel, clamped.
    Brightness {
        /// The amount added to each channel.
        delta: i32,
    },
    /// Sobel edge magnitude on the luma channel: bright where intensity changes.
    Edges,
    /// Alpha-blends a logo (PNG or any readable image), scaled to `scale` × the image
    /// width, at a corner (or the centre) with a margin of 2% of the image width.
    Watermark {
        /// The logo file. Resolved by the caller; this crate opens it as given.
        logo: PathBuf,
        /// Where the logo goes.
        #[serde(default)]
        position: Position,
        /// 0 (invisible) to 1 (the logo's own alpha).
        #[serde(default = "default_opacity")]
        opacity: f32,
        /// Logo width as a fraction of the image width, 0 < scale ≤ 1.
        #[serde(default = "default_logo_scale")]
        scale: f32,
    },
}

/// How [`Op::Resize`] fits an image into a `width`×`height` box.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fit {
    /// Scale to fit inside the box, aspect kept (the output may be smaller on one side).
    #[default]
    Contain,
    /// Scale to cover the box, aspect kept, then crop the centre to the box.
    Cover,
    /// Stretch to the box exactly, aspect not kept.
    Fill,
}

/// Where [`Op::Watermark`] places the logo.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Position {
    /// Top-left corner.
    TopLeft,
    /// Top-right corner.
    TopRight,
    /// Bottom-left corner.
    BottomLeft,
    /// Bottom-right corner.
    #[default]
    BottomRight,
    /// Centred.
    Center,
}

fn default_opacity() -> f32 {
    0.5
}

fn default_logo_scale() -> f32 {
    0.15
}

impl Op {
    /// Checks the parameters, naming the op and the field in the message.
    pub fn validate(&self) -> Result<(), ImageError> {
        match self {
            Self::Resize { width, height, .. } => resize::validate(*width, *height),
            Self::Thumbnail { size } => check_dimension("thumbnail", "size", *size),
            Self::Blur { sigma } => check_range("blur", "sigma", *sigma, 0.0, 100.0, false),
            Self::Brightness { delta } if !(-255..=255).contains(delta) => {
                Err(ImageError::invalid(format!(
                    "brightness: delta must be between -255 and 255, got {delta}"
                )))
            }
            Self::Watermark { opacity, scale, .. } => {
                check_range("watermark", "opacity", *opacity, 0.0, 1.0, true)?;
                check_range("watermark", "scale", *scale, 0.0, 1.0, false)
            }
            Self::Brightness { .. } | Self::Grayscale | Self::Edges => Ok(()),
        }
    }

    /// Runs this op on `image`, returning a new image.
    fn run(&self, image: &image::DynamicImage) -> Result<image::DynamicImage, ImageError> {
        match self {
            Self::Resize { .. } | Self::Thumbnail { .. } => {
                let plan = self.resize_plan(image.width(), image.height());
                resize::resize(image, plan.unwrap_or(ResizePlan::identity(image)))
            }
            Self::Grayscale => Ok(image.grayscale()),
            Self::Blur { sigma } => Ok(image.fast_blur(*sigma)),
            Self::Brightness { delta } => Ok(image.brighten(*delta)),
            Self::Edges => Ok(filters::sobel_edges(image)),
            Self::Watermark {
                logo,
                position,
                opacity,
                scale,
            } => watermark::watermark(image, logo, *position, *opacity, *scale),
        }
    }

    /// For resizing ops, what they would do to a `width`×`height` image.
    pub(crate) fn resize_plan(&self, width: u32, height: u32) -> Option<ResizePlan> {
        match *self {
            Self::Resize {
                width: w,
                height: h,
                fit,
                enlarge,
            } => Some(ResizePlan::for_box(width, height, w, h, fit, enlarge)),
            Self::Thumbnail { size } => Some(ResizePlan::for_box(
                width,
                height,
                Some(size),
                Some(size),
                Fit::Contain,
                false,
            )),
            _ => None,
        }
    }

    /// Ops whose result does not depend on the image's resolution (per-pixel ops), so they
    /// may run before a resize on an image decoded at reduced scale.
    pub(crate) fn is_per_pixel(&self) -> bool {
        matches!(self, Self::Grayscale | Self::Brightness { .. })
    }
}

fn check_dimension(op: &str, field: &str, value: u32) -> Result<(), ImageError> {
    if value == 0 || value > MAX_OUTPUT_DIMENSION {
        return Err(ImageError::invalid(format!(
            "{op}: {field} must be between 1 and {MAX_OUTPUT_DIMENSION}, got {value}"
        )));
    }
    Ok(())
}

fn check_range(
    op: &str,
    field: &str,
    value: f32,
    low: f32,
    high: f32,
    low_inclusive: bool,
) -> Result<(), ImageError> {
    let above_low = if low_inclusive {
        value >= low
    } else {
        value > low
    };
    if !(above_low && value <= high) {
        let bracket = if low_inclusive { "[" } else { "(" };
        return Err(ImageError::invalid(format!(
            "{op}: {field} must be in {bracket}{low}, {high}], got {value}"
        )));
    }
    Ok(())
}

/// Validates every op of `ops`, then runs them in order on `image`.
pub fn apply(image: &Image, ops: &[Op]) -> Result<Image, ImageError> {
    ops.iter().try_for_each(Op::validate)?;
    let mut current = Cow::Borrowed(image.pixels());
    for op in ops {
        current = Cow::Owned(op.run(&current)?);
    }
    Ok(Image::new(current.into_owned()))
}

/// The smallest upright size an input may be decoded at so that `ops` give the same result
/// as on the full image: the size the first resize works from, if only per-pixel ops come
/// before it. `None` when the chain needs full resolution.
pub(crate) fn min_source_size(ops: &[Op], width: u32, height: u32) -> Option<(u32, u32)> {
    for op in ops {
        if let Some(plan) = op.resize_plan(width, height) {
            return Some(plan.min_source_size(width, height));
        }
        if !op.is_per_pixel() {
            return None;
        }
    }
    None
}
