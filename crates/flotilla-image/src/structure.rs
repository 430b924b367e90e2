//! Cheap completeness checks that walk a file's container structure without decoding pixels.
//!
//! Decoders are lenient: given a JPEG cut in half, they return an image whose bottom is
//! grey. A job system should instead fail such a file with "truncated", so [`check_complete`]
//! walks JPEG markers to the end-of-image marker, PNG chunks to `IEND`, and compares a WebP
//! RIFF size with the file's length.

use std::io::{self, BufRead, Read};

use crate::error::ImageError;
use crate::format::ImageFormat;

/// Outcome of a structural walk.
#[derive(Debug, PartialEq, Eq)]
enum Walk {
    Complete,
    Truncated,
}

/// Fails with `corrupt_image` when the data of `format` ends before its closing marker.
/// `reader` is at the start of the file, `len` is the file's length. I/O errors are
/// returned as `Err(io)` for the caller to attach a path to.
pub(crate) fn check_complete<R: BufRead>(
    format: ImageFormat,
    reader: &mut R,
    len: u64,
) -> io::Result<Result<(), ImageError>> {
    let walk = match format {
        ImageFormat::Jpeg => walk_jpeg(reader)?,
        ImageFormat::Png => walk_png(reader)?,
        ImageFormat::Webp => walk_webp(reader, len)?,
        ImageFormat::Gif | ImageFormat::Tiff | ImageFormat::Bmp => Walk::Complete,
    };
    Ok(match walk {
        Walk::Complete => Ok(()),
        Walk::Truncated => Err(ImageError::truncated(format)),
    })
}

const JPEG_EOI: u8 = 0xD9;
const JPEG_SOS: u8 = 0xDA;

/// Follows JPEG segments (skipping them by their length) and entropy-coded scans until EOI.
fn walk_jpeg<R: BufRead>(reader: &mut R) -> io::Result<Walk> {
    let mut marker = match next_marker(reader)? {
        Some(marker) => marker,
        None => return Ok(Walk::Truncated),
    };
    loop {
        if marker == JPEG_EOI {
            return Ok(Walk::Complete);
        }
        if has_length(marker) {
            let Some(length) = read_u16(reader)? else {
                return Ok(Walk::Truncated);
            };
            if !skip(reader, u64::from(length.saturating_sub(2)))? {
                return Ok(Walk::Truncated);
            }
        }
        let next = if marker == JPEG_SOS {
            end_of_scan(reader)?
        } else {
            next_marker(reader)?
        };
        match next {
            Some(next) => marker = next,
            None => return Ok(Walk::Truncated),
        }
    }
}

/// SOI, RST0-7 and TEM carry no length; every other marker does.
fn has_length(marker: u8) -> bool {
    !matches!(marker, 0xD8 | 0xD0..=0xD7 | 0x01)
}

/// Skips to the next `FF xx` marker (tolerating stray bytes and fill `FF`s) and returns `xx`.
fn next_marker<R: BufRead>(reader: &mut R) -> io::Result<Option<u8>> {
    let mut seen_ff = false;
    while let Some(byte) = read_u8(reader)? {
        match byte {
            0xFF => seen_ff = true,
            0x00 => seen_ff = false,
            marker if seen_ff => return Ok(Some(marker)),
            _ => {}
        }
    }
    Ok(None)
}

/// Scans entropy-coded data for the marker that ends it: `FF` followed by neither a stuffed
/// `00` nor a restart marker.
fn end_of_scan<R: BufRead>(reader: &mut R) -> io::Result<Option<u8>> {
    let mut pending_ff = false;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(None);
        }
        if pending_ff {
            let byte = buf[0];
            reader.consume(1);
            match byte {
                0xFF => {}
                0x00 | 0xD0..=0xD7 => pending_ff = false,
                marker => return Ok(Some(marker)),
            }
            continue;
        }
        match buf.iter().position(|&b| b == 0xFF) {
            Some(pos) => {
                reader.consume(pos + 1);
                pending_ff = true;
            }
            None => {
                let len = buf.len();
                reader.consume(len);
            }
        }
    }
}

/// Follows PNG chunks by their lengths until `IEND`.
fn walk_png<R: BufRead>(reader: &mut R) -> io::Result<Walk> {
    if !skip(reader, 8)? {
        return Ok(Walk::Truncated);
    }
    loop {
        let mut header = [0u8; 8];
        if !read_exact_or_eof(reader, &mut header)? {
            return Ok(Walk::Truncated);
        }
        if &header[4..] == b"IEND" {
            return Ok(Walk::Complete);
        }
        let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        // Data plus the 4-byte CRC.
        if !skip(reader, u64::from(length) + 4)? {
            return Ok(Walk::Truncated);
        }
    }
}

/// A WebP file is complete when it holds as many bytes as its RIFF header declares.
fn walk_webp<R: BufRead>(reader: &mut R, len: u64) -> io::Result<Walk> {
    let mut header = [0u8; 8];
    if !read_exact_or_eof(reader, &mut header)? {
        return Ok(Walk::Truncated);
    }
    let riff_size = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    Ok(if len >= u64::from(riff_size) + 8 {
        Walk::Complete
    } else {
        Walk::Truncated
    })
}

fn read_u8<R: BufRead>(reader: &mut R) -> io::Result<Option<u8>> {
    let buf = reader.fill_buf()?;
    let Some(&byte) = buf.first() else {
        return Ok(None);
    };
    reader.consume(1);
    Ok(Some(byte))
}

fn read_u16<R: BufRead>(reader: &mut R) -> io::Result<Option<u16>> {
    let mut bytes = [0u8; 2];
    Ok(read_exact_or_eof(reader, &mut bytes)?.then(|| u16::from_be_bytes(bytes)))
}

/// Fills `out`; `Ok(false)` when the data ends first.
fn read_exact_or_eof<R: BufRead>(reader: &mut R, out: &mut [u8]) -> io::Result<bool> {
    match reader.read_exact(out) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// Skips `count` bytes; `Ok(false)` when the data ends first.
fn skip<R: BufRead>(reader: &mut R, count: u64) -> io::Result<bool> {
    let skipped = io::copy(&mut Read::take(&mut *reader, count), &mut io::sink())?;
    Ok(skipped == count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg_walk(bytes: &[u8]) -> Walk {
        walk_jpeg(&mut io::Cursor::new(bytes)).unwrap()
    }

    #[test]
    fn jpeg_with_stuffed_bytes_and_restarts_is_complete() {
        let jpeg = [
            0xFF, 0xD8, // SOI
            0xFF, 0xE0, 0x00, 0x04, 0xFF, 0xD9, // APP0 whose payload looks like EOI
            0xFF, 0xDA, 0x00, 0x02, // SOS
            0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56, // data, stuffed FF, RST0
            0xFF, 0xD9, // EOI
        ];
        assert_eq!(jpeg_walk(&jpeg), Walk::Complete);
    }

    #[test]
    fn jpeg_cut_inside_scan_or_segment_is_truncated() {
        let cut_in_scan = [0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02, 0x12, 0xFF, 0x00, 0x34];
        assert_eq!(jpeg_walk(&cut_in_scan), Walk::Truncated);
        let cut_in_segment = [0xFF, 0xD8, 0xFF, 0xE1, 0x10, 0x00, 0x45];
        assert_eq!(jpeg_walk(&cut_in_segment), Walk::Truncated);
    }
}
