//! Input formats detected by content ([`ImageFormat`], [`detect_format`]) and output
//! encodings ([`OutputFormat`]).

use serde::{Deserialize, Serialize};

use crate::error::ImageError;

/// An input format this crate reads, as detected from the file's first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ImageFormat {
    /// JPEG (JFIF or EXIF).
    Jpeg,
    /// PNG.
    Png,
    /// WebP (lossy or lossless; the first frame if animated).
    Webp,
    /// GIF (the first frame if animated).
    Gif,
    /// TIFF (the first page).
    Tiff,
    /// Windows bitmap.
    Bmp,
}

/// The supported input formats, for messages.
const SUPPORTED: &str = "JPEG, PNG, WebP, GIF, TIFF or BMP";

impl ImageFormat {
    /// The format's usual name, e.g. `"JPEG"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Jpeg => "JPEG",
            Self::Png => "PNG",
            Self::Webp => "WebP",
            Self::Gif => "GIF",
            Self::Tiff => "TIFF",
            Self::Bmp => "BMP",
        }
    }

    /// The format's MIME type, e.g. `"image/jpeg"`.
    pub fn mime_type(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Webp => "image/webp",
            Self::Gif => "image/gif",
            Self::Tiff => "image/tiff",
            Self::Bmp => "image/bmp",
        }
    }

    pub(crate) fn to_image(self) -> image::ImageFormat {
        match self {
            Self::Jpeg => image::ImageFormat::Jpeg,
            Self::Png => image::ImageFormat::Png,
            Self::Webp => image::ImageFormat::WebP,
            Self::Gif => image::ImageFormat::Gif,
            Self::Tiff => image::ImageFormat::Tiff,
            Self::Bmp => image::ImageFormat::Bmp,
        }
    }

    fn from_image(format: image::ImageFormat) -> Option<Self> {
        match format {
            image::ImageFormat::Jpeg => Some(Self::Jpeg),
            image::ImageFormat::Png => Some(Self::Png),
            image::ImageFormat::WebP => Some(Self::Webp),
            image::ImageFormat::Gif => Some(Self::Gif),
            image::ImageFormat::Tiff => Some(Self::Tiff),
            image::ImageFormat::Bmp => Some(Self::Bmp),
            _ => None,
        }
    }
}

impl std::fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Detects the format from the first bytes of a file (a few dozen are enough), never from
/// its name. An empty prefix is a corrupt (empty) file; anything unrecognised is unsupported.
pub fn detect_format(prefix: &[u8]) -> Result<ImageFormat, ImageError> {
    if prefix.is_empty() {
        return Err(ImageError::corrupt("the file is empty (0 bytes)"));
    }
    match image::guess_format(prefix) {
        Ok(format) => {
            ImageFormat::from_image(format).ok_or_else(|| ImageError::UnsupportedFormat {
                detail: format!(
                    "the file is {format:?}, which is not supported (supported: {SUPPORTED})"
                ),
            })
        }
        Err(_) if looks_like_text(prefix) => Err(ImageError::UnsupportedFormat {
            detail: format!("the file looks like text, not an image (expected {SUPPORTED})"),
        }),
        Err(_) => Err(ImageError::UnsupportedFormat {
            detail: format!(
                "the content is not a recognised image (expected {SUPPORTED}); it starts with bytes {}",
                hex_prefix(prefix)
            ),
        }),
    }
}

fn looks_like_text(prefix: &[u8]) -> bool {
    let sample = &prefix[..prefix.len().min(512)];
    match std::str::from_utf8(sample) {
        Ok(text) => text.chars().all(|c| !c.is_control() || c.is_whitespace()),
        // A multi-byte character cut at the end of the sample is still text.
        Err(e) => e.error_len().is_none() && looks_like_text(&sample[..e.valid_up_to()]),
    }
}

fn hex_prefix(prefix: &[u8]) -> String {
    prefix
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// An output encoding. Serialised with a `format` tag: `{"format":"jpeg","quality":85}`,
/// `{"format":"png"}`, `{"format":"webp"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "format", rename_all = "lowercase")]
pub enum OutputFormat {
    /// Baseline JPEG at a quality from 1 to 100. Alpha is flattened onto white.
    Jpeg {
        /// 1 (smallest) to 100 (best).
        #[serde(default = "default_jpeg_quality")]
        quality: u8,
    },
    /// PNG, lossless, keeping alpha and 16-bit depth.
    Png,
    /// WebP, **lossless** (the `image` crate's pure-Rust encoder; no lossy pure-Rust
    /// encoder is maintained well enough to depend on). At most 16383 pixels a side.
    Webp,
}

/// The JPEG quality used when a rendition names none.
pub const DEFAULT_JPEG_QUALITY: u8 = 85;

fn default_jpeg_quality() -> u8 {
    DEFAULT_JPEG_QUALITY
}

impl OutputFormat {
    /// The file extension written by [`render_all`](crate::render_all), e.g. `"jpg"`.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Jpeg { .. } => "jpg",
            Self::Png => "png",
            Self::Webp => "webp",
        }
    }

    /// The MIME type of the encoded file.
    pub fn mime_type(self) -> &'static str {
        match self {
            Self::Jpeg { .. } => "image/jpeg",
            Self::Png => "image/png",
            Self::Webp => "image/webp",
        }
    }

    /// Checks the parameters (JPEG quality within 1..=100).
    pub fn validate(self) -> Result<(), ImageError> {
        match self {
            Self::Jpeg { quality } if !(1..=100).contains(&quality) => Err(ImageError::invalid(
                format!("JPEG quality must be between 1 and 100, got {quality}"),
            )),
            _ => Ok(()),
        }
    }
}
