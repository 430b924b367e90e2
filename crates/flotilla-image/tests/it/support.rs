//! Test inputs built in the test: pictures, files of each format, EXIF blocks, bombs.

use std::path::{Path, PathBuf};

use flotilla_image::{DynamicImage, Image, OutputFormat, encode};
use image::{Rgb, RgbImage, Rgba, RgbaImage};
use tempfile::TempDir;

/// A temporary directory that lives as long as the test.
pub(crate) struct Dir {
    dir: TempDir,
}

impl Dir {
    pub(crate) fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

/// A smooth, colourful picture with some texture, like a photo.
pub(crate) fn photo(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        let (fx, fy) = (x as f32 / width as f32, y as f32 / height as f32);
        let wave = ((fx * 31.0).sin() * (fy * 19.0).cos() * 40.0) as i32;
        let channel = |v: i32| (v + wave).clamp(0, 255) as u8;
        Rgb([
            channel((200.0 * fx) as i32 + 20),
            channel((180.0 * fy) as i32 + 30),
            channel(120),
        ])
    })
}

/// A `width`×`height` image of one colour.
pub(crate) fn solid(width: u32, height: u32, color: [u8; 3]) -> RgbImage {
    RgbImage::from_pixel(width, height, Rgb(color))
}

pub(crate) fn image(pixels: RgbImage) -> Image {
    Image::new(DynamicImage::ImageRgb8(pixels))
}

/// Encodes `pixels` into `name` in `dir` with `format`.
pub(crate) fn write(dir: &Dir, name: &str, pixels: RgbImage, format: OutputFormat) -> PathBuf {
    let path = dir.path(name);
    encode(&image(pixels), format, &path).unwrap();
    path
}

/// JPEG bytes of `pixels` at quality 95.
pub(crate) fn jpeg_bytes(pixels: RgbImage) -> Vec<u8> {
    let dir = Dir::new();
    let path = write(&dir, "x.jpg", pixels, OutputFormat::Jpeg { quality: 95 });
    std::fs::read(path).unwrap()
}

/// An opaque red 20×20 logo with a transparent 2-pixel border, as PNG.
pub(crate) fn logo_png(dir: &Dir) -> PathBuf {
    let logo = RgbaImage::from_fn(20, 20, |x, y| {
        let inside = (2..18).contains(&x) && (2..18).contains(&y);
        Rgba(if inside {
            [255, 0, 0, 255]
        } else {
            [0, 0, 0, 0]
        })
    });
    let path = dir.path("logo.png");
    encode(
        &Image::new(DynamicImage::ImageRgba8(logo)),
        OutputFormat::Png,
        &path,
    )
    .unwrap();
    path
}

/// A value in a hand-built TIFF/EXIF directory.
#[derive(Clone, Copy)]
pub(crate) enum Value<'a> {
    Short(u16),
    Long(u32),
    Ascii(&'a str),
    Rational(u32, u32),
}

/// One directory (IFD) at `offset` in a big-endian TIFF stream: entries sorted by tag,
/// values over 4 bytes stored after the directory.
fn ifd(entries: &[(u16, Value<'_>)], offset: u32) -> Vec<u8> {
    let data_start = offset + 2 + 12 * entries.len() as u32 + 4;
    let (mut head, mut data) = (Vec::new(), Vec::new());
    head.extend_from_slice(&(entries.len() as u16).to_be_bytes());
    for (tag, value) in entries {
        let (kind, count, bytes): (u16, u32, Vec<u8>) = match value {
            Value::Short(v) => (3, 1, v.to_be_bytes().to_vec()),
            Value::Long(v) => (4, 1, v.to_be_bytes().to_vec()),
            Value::Ascii(s) => {
                let mut b = s.as_bytes().to_vec();
                b.push(0);
                (2, b.len() as u32, b)
            }
            Value::Rational(n, d) => (5, 1, [n.to_be_bytes(), d.to_be_bytes()].concat()),
        };
        head.extend_from_slice(&tag.to_be_bytes());
        head.extend_from_slice(&kind.to_be_bytes());
        head.extend_from_slice(&count.to_be_bytes());
        if bytes.len() <= 4 {
            let mut inline = bytes.clone();
            inline.resize(4, 0);
            head.extend_from_slice(&inline);
        } else {
            head.extend_from_slice(&(data_start + data.len() as u32).to_be_bytes());
            data.extend_from_slice(&bytes);
            if data.len() % 2 == 1 {
                data.push(0);
            }
        }
    }
    head.extend_from_slice(&0u32.to_be_bytes());
    head.extend(data);
    head
}

/// A TIFF stream (the body of an EXIF block) with `primary` tags in IFD0 and `exif` tags
/// in the Exif sub-directory.
pub(crate) fn tiff(primary: &[(u16, Value<'_>)], exif: &[(u16, Value<'_>)]) -> Vec<u8> {
    const EXIF_IFD_POINTER: u16 = 0x8769;
    let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08".to_vec();
    let mut entries: Vec<(u16, Value<'_>)> = primary.to_vec();
    entries.push((EXIF_IFD_POINTER, Value::Long(0)));
    entries.sort_by_key(|(tag, _)| *tag);
    let ifd0_len = ifd(&entries, 8).len() as u32;
    for entry in &mut entries {
        if entry.0 == EXIF_IFD_POINTER {
            entry.1 = Value::Long(8 + ifd0_len);
        }
    }
    tiff.extend(ifd(&entries, 8));
    tiff.extend(ifd(exif, 8 + ifd0_len));
    tiff
}

/// `jpeg` with an APP1 EXIF segment holding `tiff` inserted right after SOI.
pub(crate) fn with_exif(jpeg: &[u8], tiff: &[u8]) -> Vec<u8> {
    let mut payload = b"Exif\x00\x00".to_vec();
    payload.extend_from_slice(tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    out.extend(payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// A PNG of a few hundred bytes whose header declares `width`×`height` 1-bit grayscale
/// pixels; its data stream holds only the first rows of zeros.
pub(crate) fn png_bomb(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[1, 0, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &ihdr);
    let rows = vec![0u8; (width as usize / 8 + 1) * 64];
    chunk(
        &mut png,
        b"IDAT",
        &miniz_oxide::deflate::compress_to_vec_zlib(&rows, 9),
    );
    chunk(&mut png, b"IEND", &[]);
    png
}

fn chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    png.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = png.len();
    png.extend_from_slice(kind);
    png.extend_from_slice(data);
    let crc = crc32fast::hash(&png[start..]);
    png.extend_from_slice(&crc.to_be_bytes());
}

/// `jpeg` with its frame header (SOF0) rewritten to declare `width`×`height`.
pub(crate) fn jpeg_claiming(jpeg: &[u8], width: u16, height: u16) -> Vec<u8> {
    let sof = jpeg
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("baseline JPEG has SOF0");
    let mut out = jpeg.to_vec();
    out[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    out[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    out
}

/// The first bytes of the file at `path`.
pub(crate) fn magic(path: &Path, len: usize) -> Vec<u8> {
    std::fs::read(path).unwrap()[..len].to_vec()
}

/// Mean of all channel values.
pub(crate) fn mean(image: &DynamicImage) -> f64 {
    let bytes = image.to_rgb8().into_raw();
    bytes.iter().map(|&b| f64::from(b)).sum::<f64>() / bytes.len() as f64
}

/// Variance of the luma channel.
pub(crate) fn luma_variance(image: &DynamicImage) -> f64 {
    let luma = image.to_luma8().into_raw();
    let n = luma.len() as f64;
    let m = luma.iter().map(|&b| f64::from(b)).sum::<f64>() / n;
    luma.iter()
        .map(|&b| (f64::from(b) - m).powi(2))
        .sum::<f64>()
        / n
}
