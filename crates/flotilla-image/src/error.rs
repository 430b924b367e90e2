//! [`ImageError`]: the one error type of this crate, with a stable code and a retry verdict.
//!
//! Messages are written for a person reading a failed job: they say what is wrong with the
//! file ("the JPEG data ends early: the file is truncated"), never a decoder's internals alone.

use std::io;
use std::path::{Path, PathBuf};

use crate::format::ImageFormat;

/// Everything that can go wrong while inspecting, decoding, transforming or encoding an image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// The content is not an image in a format this crate reads (decided by content, not name).
    #[error("unsupported format: {detail}")]
    UnsupportedFormat {
        /// What the content looked like and what is supported.
        detail: String,
    },
    /// The content claims to be an image but is truncated, garbled or empty.
    #[error("corrupt image: {reason}")]
    Corrupt {
        /// What is wrong with the data, in words a person understands.
        reason: String,
    },
    /// The file or the image its header declares exceeds the [`Limits`](crate::Limits).
    #[error("image too large: {reason}")]
    TooLarge {
        /// The offending size and the limit it breaks.
        reason: String,
    },
    /// An operation or rendition has parameters that cannot work (zero width, negative blur…).
    #[error("invalid operation: {reason}")]
    InvalidOperation {
        /// Which parameter is wrong and why.
        reason: String,
    },
    /// The encoder refused the image (for example a colour layout the format cannot hold).
    #[error("could not encode {format}: {reason}")]
    Encode {
        /// The output format's name.
        format: &'static str,
        /// The encoder's reason.
        reason: String,
    },
    /// Reading or writing a file failed; the data itself may be fine.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file being read or written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl ImageError {
    /// The stable, snake_case code for this error, for API responses and job error records.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnsupportedFormat { .. } => "unsupported_format",
            Self::Corrupt { .. } => "corrupt_image",
            Self::TooLarge { .. } => "too_large",
            Self::InvalidOperation { .. } => "invalid_operation",
            Self::Encode { .. } => "encode_failed",
            Self::Io { .. } => "io",
        }
    }

    /// Whether running the same job again could succeed. Only I/O failures qualify: the
    /// same bytes and the same parameters always give the same verdict.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Io { .. })
    }

    pub(crate) fn corrupt(reason: impl Into<String>) -> Self {
        Self::Corrupt {
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        Self::InvalidOperation {
            reason: reason.into(),
        }
    }

    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn truncated(format: ImageFormat) -> Self {
        Self::corrupt(format!(
            "the {} data ends early: the file is truncated",
            format.name()
        ))
    }

    /// Maps an error from the `image` crate raised while decoding data of `format`.
    pub(crate) fn from_decoder(format: ImageFormat, err: image::ImageError) -> Self {
        use image::ImageError as E;
        match err {
            E::IoError(e) if e.kind() == io::ErrorKind::UnexpectedEof => Self::truncated(format),
            E::Limits(e) => Self::TooLarge {
                reason: format!(
                    "decoding the {} image would need more memory than allowed ({e})",
                    format.name()
                ),
            },
            E::Unsupported(e) => Self::UnsupportedFormat {
                detail: format!("this {} variant is not supported: {e}", format.name()),
            },
            other => Self::corrupt(format!(
                "the {} data could not be decoded ({})",
                format.name(),
                other
            )),
        }
    }
}
