//! [`encode`]: writing an image as JPEG, PNG or WebP, atomically.

use std::borrow::Cow;
use std::io::{BufWriter, Write};
use std::path::Path;

use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::{DynamicImage, ImageEncoder, Rgb, RgbImage};

use crate::decode::Image;
use crate::error::ImageError;
use crate::format::OutputFormat;

/// The largest side a WebP image can have.
const WEBP_MAX_DIMENSION: u32 = 16_383;
/// The largest side a JPEG image can have.
const JPEG_MAX_DIMENSION: u32 = 65_535;

/// Encodes `image` as `format` into `path` and returns the number of bytes written.
///
/// The file is written under a temporary name in the same directory and renamed into
/// place, so a reader (or a retried job) never sees half a file.
pub fn encode(image: &Image, format: OutputFormat, path: &Path) -> Result<u64, ImageError> {
    format.validate()?;
    check_encodable(image, format)?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let temp = tempfile::Builder::new()
        .prefix(".partial-")
        .tempfile_in(dir)
        .map_err(|e| ImageError::io(dir, e))?;
    let mut writer = BufWriter::with_capacity(256 * 1024, temp.as_file());
    write_encoded(image.pixels(), format, &mut writer, path)?;
    writer.flush().map_err(|e| ImageError::io(path, e))?;
    drop(writer);
    let file = temp
        .persist(path)
        .map_err(|e| ImageError::io(path, e.error))?;
    let len = file.metadata().map_err(|e| ImageError::io(path, e))?.len();
    Ok(len)
}

fn check_encodable(image: &Image, format: OutputFormat) -> Result<(), ImageError> {
    let (name, max) = match format {
        OutputFormat::Webp => ("WebP", WEBP_MAX_DIMENSION),
        OutputFormat::Jpeg { .. } => ("JPEG", JPEG_MAX_DIMENSION),
        OutputFormat::Png => return Ok(()),
    };
    if image.width().max(image.height()) > max {
        return Err(ImageError::invalid(format!(
            "{name} images can be at most {max} pixels on a side; this one is {}x{}",
            image.width(),
            image.height()
        )));
    }
    Ok(())
}

fn write_encoded<W: Write>(
    pixels: &DynamicImage,
    format: OutputFormat,
    writer: &mut W,
    path: &Path,
) -> Result<(), ImageError> {
    let name = match format {
        OutputFormat::Jpeg { .. } => "JPEG",
        OutputFormat::Png => "PNG",
        OutputFormat::Webp => "WebP",
    };
    let result = match format {
        OutputFormat::Jpeg { quality } => return write_jpeg(pixels, quality, writer, path),
        OutputFormat::Png => {
            let pixels = png_compatible(pixels);
            PngEncoder::new(writer).write_image(
                pixels.as_bytes(),
                pixels.width(),
                pixels.height(),
                pixels.color().into(),
            )
        }
        OutputFormat::Webp => {
            let pixels = eight_bit(pixels);
            WebPEncoder::new_lossless(writer).write_image(
                pixels.as_bytes(),
                pixels.width(),
                pixels.height(),
                pixels.color().into(),
            )
        }
    };
    result.map_err(|e| match e {
        image::ImageError::IoError(source) => ImageError::io(path, source),
        other => ImageError::Encode {
            format: name,
            reason: other.to_string(),
        },
    })
}

/// JPEG through `jpeg-encoder` (AVX2 DCT and colour conversion where the CPU has them,
/// several times faster than the `image` crate's encoder), with box-averaged 4:2:0 chroma
/// below quality 90.
fn write_jpeg<W: Write>(
    pixels: &DynamicImage,
    quality: u8,
    writer: &mut W,
    path: &Path,
) -> Result<(), ImageError> {
    let pixels = jpeg_compatible(pixels);
    let color = match pixels.as_ref() {
        DynamicImage::ImageLuma8(_) => jpeg_encoder::ColorType::Luma,
        _ => jpeg_encoder::ColorType::Rgb,
    };
    // Both sides are at most JPEG_MAX_DIMENSION, checked before.
    let side = |len: u32| u16::try_from(len).unwrap_or(u16::MAX);
    let mut encoder = jpeg_encoder::Encoder::new(writer, quality);
    encoder.set_chroma_subsampling_method(jpeg_encoder::ChromaSubsamplingMethod::Average);
    encoder
        .encode(
            pixels.as_bytes(),
            side(pixels.width()),
            side(pixels.height()),
            color,
        )
        .map_err(|e| match e {
            jpeg_encoder::EncodingError::IoError(source) => ImageError::io(path, source),
            other => ImageError::Encode {
                format: "JPEG",
                reason: other.to_string(),
            },
        })
}

/// 8-bit gray or RGB: what baseline JPEG holds. Alpha is flattened onto white.
fn jpeg_compatible(pixels: &DynamicImage) -> Cow<'_, DynamicImage> {
    match pixels {
        DynamicImage::ImageLuma8(_) | DynamicImage::ImageRgb8(_) => Cow::Borrowed(pixels),
        DynamicImage::ImageLuma16(_) => Cow::Owned(DynamicImage::ImageLuma8(pixels.to_luma8())),
        other if other.color().has_alpha() => {
            Cow::Owned(DynamicImage::ImageRgb8(flatten_on_white(other)))
        }
        other => Cow::Owned(DynamicImage::ImageRgb8(other.to_rgb8())),
    }
}

fn flatten_on_white(pixels: &DynamicImage) -> RgbImage {
    let rgba = pixels.to_rgba8();
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let blend =
            |c: u8| ((u16::from(c) * u16::from(a) + 255 * (255 - u16::from(a)) + 127) / 255) as u8;
        Rgb([blend(r), blend(g), blend(b)])
    })
}

/// 8-bit layouts, which is all the WebP encoder takes.
fn eight_bit(pixels: &DynamicImage) -> Cow<'_, DynamicImage> {
    match pixels {
        DynamicImage::ImageLuma8(_)
        | DynamicImage::ImageLumaA8(_)
        | DynamicImage::ImageRgb8(_)
        | DynamicImage::ImageRgba8(_) => Cow::Borrowed(pixels),
        other if other.color().has_alpha() => {
            Cow::Owned(DynamicImage::ImageRgba8(other.to_rgba8()))
        }
        other => Cow::Owned(DynamicImage::ImageRgb8(other.to_rgb8())),
    }
}

/// PNG holds 8- and 16-bit integers; floating-point images become 16-bit.
fn png_compatible(pixels: &DynamicImage) -> Cow<'_, DynamicImage> {
    match pixels {
        DynamicImage::ImageRgb32F(_) => Cow::Owned(DynamicImage::ImageRgb16(pixels.to_rgb16())),
        DynamicImage::ImageRgba32F(_) => Cow::Owned(DynamicImage::ImageRgba16(pixels.to_rgba16())),
        other => Cow::Borrowed(other),
    }
}
