//! [`decode`]: full decoding with limits enforced and EXIF orientation applied, plus the
//! reduced-size JPEG decode that [`render_all`](crate::render_all) uses when every
//! rendition is small enough.

use std::fs::File;
use std::io::{Cursor, Read};
use std::path::Path;

use image::{DynamicImage, GrayImage, RgbImage, metadata::Orientation};

use crate::error::ImageError;
use crate::format::ImageFormat;
use crate::inspect::{ImageInfo, probe, swaps_axes};
use crate::limits::Limits;

/// Decoded pixels, upright (EXIF orientation already applied).
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pixels: DynamicImage,
}

impl Image {
    /// Wraps pixels that are already upright.
    pub fn new(pixels: DynamicImage) -> Self {
        Self { pixels }
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.pixels.width()
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.pixels.height()
    }

    /// The pixels.
    pub fn pixels(&self) -> &DynamicImage {
        &self.pixels
    }

    /// The pixels, by value.
    pub fn into_pixels(self) -> DynamicImage {
        self.pixels
    }
}

impl From<DynamicImage> for Image {
    fn from(pixels: DynamicImage) -> Self {
        Self::new(pixels)
    }
}

/// A file read into memory and probed: what the header says, and the bytes to decode.
#[derive(Debug)]
pub(crate) struct Source {
    pub(crate) info: ImageInfo,
    bytes: Vec<u8>,
}

/// Reads the file at `path` (refusing files over [`Limits::max_bytes`] before reading) and
/// probes it: format, dimensions against the limits, completeness, EXIF.
pub(crate) fn load(path: &Path, limits: &Limits) -> Result<Source, ImageError> {
    let file = File::open(path).map_err(|e| ImageError::io(path, e))?;
    let len = file.metadata().map_err(|e| ImageError::io(path, e))?.len();
    limits.check_file_size(len)?;
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(limits.max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| ImageError::io(path, e))?;
    limits.check_file_size(bytes.len() as u64)?;
    let info =
        probe(&mut Cursor::new(&bytes), bytes.len() as u64, limits).map_err(|e| e.at(path))?;
    Ok(Source { info, bytes })
}

/// Decodes the image at `path` with `limits` enforced from the header first, and returns it
/// upright: a portrait phone photo stored sideways with EXIF orientation 6 comes out portrait.
pub fn decode(path: &Path, limits: &Limits) -> Result<Image, ImageError> {
    decode_source(&load(path, limits)?, limits, None)
}

/// Decodes `source`. With `min_upright` set, a JPEG may be decoded at 1/2, 1/4 or 1/8 scale
/// in the DCT domain, as long as the result is at least that size in both directions.
pub(crate) fn decode_source(
    source: &Source,
    limits: &Limits,
    min_upright: Option<(u32, u32)>,
) -> Result<Image, ImageError> {
    let info = &source.info;
    let scaled = match (info.format, min_upright) {
        (ImageFormat::Jpeg, Some(min)) => decode_jpeg_scaled(&source.bytes, info, min),
        _ => None,
    };
    let mut pixels = match scaled {
        Some(pixels) => pixels,
        None => decode_full(&source.bytes, info.format, limits)?,
    };
    if let Some(orientation) = Orientation::from_exif(info.orientation) {
        pixels.apply_orientation(orientation);
    }
    Ok(Image::new(pixels))
}

fn decode_full(
    bytes: &[u8],
    format: ImageFormat,
    limits: &Limits,
) -> Result<DynamicImage, ImageError> {
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), format.to_image());
    reader.limits(limits.to_decoder_limits());
    reader
        .decode()
        .map_err(|e| ImageError::from_decoder(format, e))
}

/// The DCT scale (in eighths: 1, 2, 4 or 8) that gives the smallest image still covering
/// `min` (in stored orientation).
fn jpeg_scale_eighths(width: u32, height: u32, min: (u32, u32)) -> u32 {
    let scaled = |len: u32, eighths: u32| len.saturating_mul(eighths).div_ceil(8);
    [1, 2, 4]
        .into_iter()
        .find(|&e| scaled(width, e) >= min.0 && scaled(height, e) >= min.1)
        .unwrap_or(8)
}

/// Decodes a JPEG at reduced scale with `jpeg-decoder`. `None` when no reduction is
/// possible, the colour layout is one this path does not handle (CMYK, 16-bit), or the
/// decoder fails: the caller then decodes at full size, which reports any real corruption.
fn decode_jpeg_scaled(
    bytes: &[u8],
    info: &ImageInfo,
    min_upright: (u32, u32),
) -> Option<DynamicImage> {
    let min = if swaps_axes(info.orientation) {
        (min_upright.1, min_upright.0)
    } else {
        min_upright
    };
    let eighths = jpeg_scale_eighths(info.width, info.height, min);
    if eighths == 8 {
        return None;
    }
    let target = |len: u32| u16::try_from(len.saturating_mul(eighths).div_ceil(8)).ok();
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    decoder.read_info().ok()?;
    let format = decoder.info()?.pixel_format;
    if !matches!(
        format,
        jpeg_decoder::PixelFormat::RGB24 | jpeg_decoder::PixelFormat::L8
    ) {
        return None;
    }
    let (width, height) = decoder
        .scale(target(info.width)?, target(info.height)?)
        .ok()?;
    let pixels = decoder.decode().ok()?;
    let (width, height) = (u32::from(width), u32::from(height));
    match format {
        jpeg_decoder::PixelFormat::RGB24 => {
            RgbImage::from_raw(width, height, pixels).map(DynamicImage::ImageRgb8)
        }
        jpeg_decoder::PixelFormat::L8 => {
            GrayImage::from_raw(width, height, pixels).map(DynamicImage::ImageLuma8)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::jpeg_scale_eighths;

    #[test]
    fn scale_is_the_smallest_that_covers_both_axes() {
        assert_eq!(jpeg_scale_eighths(4000, 3000, (1920, 1440)), 4);
        assert_eq!(jpeg_scale_eighths(4000, 3000, (2001, 10)), 8);
        assert_eq!(jpeg_scale_eighths(4000, 3000, (320, 240)), 1);
        assert_eq!(jpeg_scale_eighths(4000, 3000, (320, 376)), 2);
    }
}
