//! [`inspect`]: what a file's header and EXIF say, with limits checked, without decoding pixels.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::ImageError;
use crate::format::{ImageFormat, detect_format};
use crate::limits::Limits;
use crate::metadata::read_exif;
use crate::structure::check_complete;

/// What an image file's header and EXIF block say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// The format, detected from the content (never from the file name).
    pub format: ImageFormat,
    /// Width as stored, before EXIF orientation is applied.
    pub width: u32,
    /// Height as stored, before EXIF orientation is applied.
    pub height: u32,
    /// EXIF orientation, 1..=8; 1 when absent. 5..=8 swap width and height when applied.
    pub orientation: u8,
    /// Selected EXIF tags by name (`Make`, `Model`, `DateTimeOriginal`, `ExposureTime`,
    /// `FNumber`, `GPSLatitude` in signed decimal degrees, …), with readable values.
    pub exif: BTreeMap<String, String>,
    /// The file's size in bytes.
    pub file_size: u64,
}

impl ImageInfo {
    /// Width and height once EXIF orientation is applied, as a person sees the picture.
    pub fn upright_dimensions(&self) -> (u32, u32) {
        if swaps_axes(self.orientation) {
            (self.height, self.width)
        } else {
            (self.width, self.height)
        }
    }
}

/// Whether EXIF orientation `orientation` turns the picture a quarter turn.
pub(crate) fn swaps_axes(orientation: u8) -> bool {
    (5..=8).contains(&orientation)
}

/// Reads the header and EXIF of the image at `path`, enforcing `limits` from the file size
/// and the declared dimensions, and checks the container is complete (a truncated JPEG,
/// PNG or WebP fails with `corrupt_image`). Pixels are never decoded, so a decompression
/// bomb is rejected after reading a few bytes.
pub fn inspect(path: &Path, limits: &Limits) -> Result<ImageInfo, ImageError> {
    let file = File::open(path).map_err(|e| ImageError::io(path, e))?;
    let len = file.metadata().map_err(|e| ImageError::io(path, e))?.len();
    limits.check_file_size(len)?;
    probe(&mut BufReader::new(file), len, limits).map_err(|e| e.at(path))
}

/// An error from [`probe`]: either about the data, or an I/O error still without a path.
#[derive(Debug)]
pub(crate) enum ProbeError {
    Image(ImageError),
    Io(std::io::Error),
}

impl ProbeError {
    pub(crate) fn at(self, path: &Path) -> ImageError {
        match self {
            Self::Image(e) => e,
            Self::Io(e) => ImageError::io(path, e),
        }
    }
}

impl From<ImageError> for ProbeError {
    fn from(e: ImageError) -> Self {
        Self::Image(e)
    }
}

impl From<std::io::Error> for ProbeError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// Detects the format, reads and checks the dimensions, walks the structure and reads EXIF,
/// in that order, so the cheapest checks reject hostile input first.
pub(crate) fn probe<R: BufRead + Seek>(
    reader: &mut R,
    len: u64,
    limits: &Limits,
) -> Result<ImageInfo, ProbeError> {
    let format = detect_format(reader.fill_buf()?)?;
    let (width, height) = match header_dimensions(reader, format) {
        Ok(dimensions) => dimensions,
        Err(e) => {
            // A header cut short is better reported as truncation than as a decoder message.
            reader.seek(SeekFrom::Start(0))?;
            check_complete(format, reader, len)??;
            return Err(e.into());
        }
    };
    limits.check_dimensions(width, height)?;
    reader.seek(SeekFrom::Start(0))?;
    check_complete(format, reader, len)??;
    reader.seek(SeekFrom::Start(0))?;
    let exif = read_exif(reader);
    Ok(ImageInfo {
        format,
        width,
        height,
        orientation: exif.orientation,
        exif: exif.tags,
        file_size: len,
    })
}

fn header_dimensions<R: BufRead + Seek>(
    reader: &mut R,
    format: ImageFormat,
) -> Result<(u32, u32), ImageError> {
    image::ImageReader::with_format(reader, format.to_image())
        .into_dimensions()
        .map_err(|e| ImageError::from_decoder(format, e))
}
