//! [`Rendition`] and [`render_all`]: decode once, then produce every named output.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::decode::{Image, decode_source, load};
use crate::encode::encode;
use crate::error::ImageError;
use crate::format::{DEFAULT_JPEG_QUALITY, OutputFormat};
use crate::limits::Limits;
use crate::ops::{Op, apply, min_source_size};

/// Longest rendition name; names become file names.
const MAX_NAME_LEN: usize = 64;

/// A named output: a chain of ops, then an encoding. Serialised as
/// `{"name":"large","ops":[…],"format":"jpeg","quality":85}` (`quality` only for JPEG,
/// default 85; `ops` may be omitted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RenditionSpec", into = "RenditionSpec")]
pub struct Rendition {
    /// The output's name: 1 to 64 of `A-Z a-z 0-9 _ -`; the file is `<name>.<ext>`.
    pub name: String,
    /// Ops applied in order to the decoded input.
    pub ops: Vec<Op>,
    /// The encoding.
    pub format: OutputFormat,
}

impl Rendition {
    /// Checks the name, the encoding and every op.
    pub fn validate(&self) -> Result<(), ImageError> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= MAX_NAME_LEN
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !name_ok {
            return Err(ImageError::invalid(format!(
                "rendition name {:?} must be 1 to {MAX_NAME_LEN} letters, digits, '_' or '-'",
                self.name
            )));
        }
        self.format.validate()?;
        self.ops.iter().try_for_each(Op::validate)
    }

    /// The file name this rendition is written to: `<name>.<ext>`.
    pub fn file_name(&self) -> String {
        format!("{}.{}", self.name, self.format.extension())
    }
}

/// The wire form of a [`Rendition`], with the format and quality side by side.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RenditionSpec {
    name: String,
    #[serde(default)]
    ops: Vec<Op>,
    format: FormatName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    quality: Option<u8>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum FormatName {
    Jpeg,
    Png,
    Webp,
}

impl TryFrom<RenditionSpec> for Rendition {
    type Error = ImageError;

    fn try_from(spec: RenditionSpec) -> Result<Self, ImageError> {
        let format = match (spec.format, spec.quality) {
            (FormatName::Jpeg, quality) => OutputFormat::Jpeg {
                quality: quality.unwrap_or(DEFAULT_JPEG_QUALITY),
            },
            (_, Some(_)) => {
                return Err(ImageError::invalid(format!(
                    "rendition {:?}: quality applies only to the jpeg format",
                    spec.name
                )));
            }
            (FormatName::Png, None) => OutputFormat::Png,
            (FormatName::Webp, None) => OutputFormat::Webp,
        };
        let rendition = Rendition {
            name: spec.name,
            ops: spec.ops,
            format,
        };
        rendition.validate()?;
        Ok(rendition)
    }
}

impl From<Rendition> for RenditionSpec {
    fn from(rendition: Rendition) -> Self {
        let (format, quality) = match rendition.format {
            OutputFormat::Jpeg { quality } => (FormatName::Jpeg, Some(quality)),
            OutputFormat::Png => (FormatName::Png, None),
            OutputFormat::Webp => (FormatName::Webp, None),
        };
        Self {
            name: rendition.name,
            ops: rendition.ops,
            format,
            quality,
        }
    }
}

/// A file [`render_all`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderedOutput {
    /// The rendition's name.
    pub name: String,
    /// Where the file is.
    pub path: PathBuf,
    /// Its encoding.
    #[serde(flatten)]
    pub format: OutputFormat,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Size in bytes.
    pub bytes: u64,
}

/// Decodes `input` once and writes every rendition into `out_dir` (created if missing) as
/// `<name>.<ext>`, returning what was written, in the order given.
///
/// Everything is validated before decoding. When every rendition starts with a resize
/// (after only per-pixel ops) to at most 1/2, 1/4 or 1/8 of a JPEG's size, the JPEG is
/// decoded at that scale in the DCT domain, which is several times faster than a full
/// decode and gives the same outputs up to resampling noise.
pub fn render_all(
    input: &Path,
    renditions: &[Rendition],
    out_dir: &Path,
    limits: &Limits,
) -> Result<Vec<RenderedOutput>, ImageError> {
    validate_all(renditions)?;
    let source = load(input, limits)?;
    let (width, height) = source.info.upright_dimensions();
    let min_size = renditions
        .iter()
        .map(|r| min_source_size(&r.ops, width, height))
        .try_fold((0, 0), |acc, size| {
            size.map(|(w, h)| (acc.0.max(w), acc.1.max(h)))
        });
    let image = decode_source(&source, limits, min_size)?;
    drop(source);
    std::fs::create_dir_all(out_dir).map_err(|e| ImageError::io(out_dir, e))?;
    renditions
        .iter()
        .map(|rendition| render_one(&image, rendition, out_dir))
        .collect()
}

fn validate_all(renditions: &[Rendition]) -> Result<(), ImageError> {
    let mut names = HashSet::new();
    for rendition in renditions {
        rendition.validate()?;
        if !names.insert(rendition.name.as_str()) {
            return Err(ImageError::invalid(format!(
                "two renditions are named {:?}",
                rendition.name
            )));
        }
    }
    Ok(())
}

fn render_one(
    image: &Image,
    rendition: &Rendition,
    out_dir: &Path,
) -> Result<RenderedOutput, ImageError> {
    let output = apply(image, &rendition.ops)?;
    let path = out_dir.join(rendition.file_name());
    let bytes = encode(&output, rendition.format, &path)?;
    Ok(RenderedOutput {
        name: rendition.name.clone(),
        path,
        format: rendition.format,
        width: output.width(),
        height: output.height(),
        bytes,
    })
}
