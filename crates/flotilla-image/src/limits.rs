//! [`Limits`] against hostile input, checked from the file size and the header before any
//! pixel is decoded, so a decompression bomb costs a few bytes of reading, not gigabytes.

use serde::{Deserialize, Serialize};

use crate::error::ImageError;

/// Size limits applied to every input (and to watermark logos).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest width × height accepted.
    pub max_pixels: u64,
    /// Largest width or height accepted.
    pub max_dimension: u32,
    /// Largest file accepted, in bytes.
    pub max_bytes: u64,
}

impl Limits {
    /// Default for [`Limits::max_pixels`]: 100 megapixels.
    pub const DEFAULT_MAX_PIXELS: u64 = 100_000_000;
    /// Default for [`Limits::max_dimension`]: 30 000 pixels.
    pub const DEFAULT_MAX_DIMENSION: u32 = 30_000;
    /// Default for [`Limits::max_bytes`]: 200 MiB.
    pub const DEFAULT_MAX_BYTES: u64 = 200 * 1024 * 1024;

    /// Fails with `too_large` when a file of `len` bytes exceeds [`Limits::max_bytes`].
    pub fn check_file_size(&self, len: u64) -> Result<(), ImageError> {
        if len > self.max_bytes {
            return Err(ImageError::TooLarge {
                reason: format!(
                    "the file is {} bytes; the limit is {} bytes",
                    len, self.max_bytes
                ),
            });
        }
        Ok(())
    }

    /// Fails with `too_large` when a `width`×`height` image breaks the dimension or pixel
    /// limit. Zero-sized images are corrupt.
    pub fn check_dimensions(&self, width: u32, height: u32) -> Result<(), ImageError> {
        if width == 0 || height == 0 {
            return Err(ImageError::corrupt(format!(
                "the header declares an empty image ({width}x{height})"
            )));
        }
        if width.max(height) > self.max_dimension {
            return Err(ImageError::TooLarge {
                reason: format!(
                    "the image is {width}x{height} pixels; the largest side allowed is {} pixels",
                    self.max_dimension
                ),
            });
        }
        let pixels = u64::from(width) * u64::from(height);
        if pixels > self.max_pixels {
            return Err(ImageError::TooLarge {
                reason: format!(
                    "the image is {width}x{height} = {pixels} pixels; the limit is {} pixels",
                    self.max_pixels
                ),
            });
        }
        Ok(())
    }

    /// The same limits in the form the `image` crate's decoders enforce, as a second line
    /// of defence for allocations the header did not announce.
    pub(crate) fn to_decoder_limits(self) -> image::Limits {
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(self.max_dimension);
        limits.max_image_height = Some(self.max_dimension);
        // Up to 16 bytes a pixel (RGBA, 32-bit float) plus decoder working buffers.
        limits.max_alloc = Some(self.max_pixels.saturating_mul(16).max(64 * 1024 * 1024));
        limits
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_pixels: Self::DEFAULT_MAX_PIXELS,
            max_dimension: Self::DEFAULT_MAX_DIMENSION,
            max_bytes: Self::DEFAULT_MAX_BYTES,
        }
    }
}
