//! One file through one chain: [`process_file`], and the seed's filter chain
//! ([`seed_filter_chain`]) used to compare sequential, threaded and process-pool runs.

use std::path::Path;

use crate::decode::decode;
use crate::encode::encode;
use crate::error::ImageError;
use crate::format::OutputFormat;
use crate::limits::Limits;
use crate::ops::{Op, apply};
use crate::rendition::RenderedOutput;

/// The filter chain of the seed's benchmark: grayscale, blur (sigma 2), Sobel edges, then
/// brightness +20.
pub fn seed_filter_chain() -> Vec<Op> {
    vec![
        Op::Grayscale,
        Op::Blur { sigma: 2.0 },
        Op::Edges,
        Op::Brightness { delta: 20 },
    ]
}

/// Decodes `input`, applies `ops` and encodes the result as `format` into `output`. The
/// unit of work of one filter job, whatever runs it (a loop, a thread, a worker process).
pub fn process_file(
    input: &Path,
    ops: &[Op],
    output: &Path,
    format: OutputFormat,
    limits: &Limits,
) -> Result<RenderedOutput, ImageError> {
    ops.iter().try_for_each(Op::validate)?;
    format.validate()?;
    let image = apply(&decode(input, limits)?, ops)?;
    let bytes = encode(&image, format, output)?;
    let name = output
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(RenderedOutput {
        name,
        path: output.to_path_buf(),
        format,
        width: image.width(),
        height: image.height(),
        bytes,
    })
}
