use std::path::Path;

use flotilla_image::{
    ImageError, Limits, Op, OutputFormat, Rendition, decode, inspect, render_all,
};
use rand::{RngCore, SeedableRng, rngs::StdRng};

use crate::support::{Dir, jpeg_bytes, jpeg_claiming, photo, png_bomb, write};

/// Every entry point refuses `path` with `code`, non-retryably, and a message containing
/// `says`; render_all writes nothing.
fn assert_refused(path: &Path, code: &str, says: &str) -> ImageError {
    let limits = Limits::default();
    let out = path.with_extension("out");
    let thumb = [Rendition {
        name: "t".into(),
        ops: vec![Op::Thumbnail { size: 64 }],
        format: OutputFormat::Png,
    }];
    let errors = [
        inspect(path, &limits).unwrap_err(),
        decode(path, &limits).unwrap_err(),
        render_all(path, &thumb, &out, &limits).unwrap_err(),
    ];
    for err in &errors {
        assert_eq!(err.code(), code, "{}: {err}", path.display());
        assert!(!err.is_retryable(), "{err}");
        assert!(
            err.to_string().contains(says),
            "message {:?} should say {says:?}",
            err.to_string()
        );
    }
    assert!(!out.exists());
    errors.into_iter().next().unwrap()
}

#[test]
fn empty_file_is_corrupt() {
    let dir = Dir::new();
    let err = assert_refused(
        &dir.write("empty.jpg", b""),
        "corrupt_image",
        "the file is empty",
    );
    assert_eq!(
        err.to_string(),
        "corrupt image: the file is empty (0 bytes)"
    );
}

#[test]
fn truncated_jpeg_says_so() {
    let dir = Dir::new();
    let jpeg = jpeg_bytes(photo(200, 150));
    let path = dir.write("cut.jpg", &jpeg[..jpeg.len() * 6 / 10]);
    let err = assert_refused(&path, "corrupt_image", "truncated");
    assert_eq!(
        err.to_string(),
        "corrupt image: the JPEG data ends early: the file is truncated"
    );
    // Cut inside the header too.
    assert_refused(
        &dir.write("header.jpg", &jpeg[..40]),
        "corrupt_image",
        "truncated",
    );
}

#[test]
fn truncated_png_and_webp_say_so() {
    let dir = Dir::new();
    for (name, format, says) in [
        ("p.png", OutputFormat::Png, "the PNG data ends early"),
        ("w.webp", OutputFormat::Webp, "the WebP data ends early"),
    ] {
        let full = std::fs::read(write(&dir, name, photo(120, 90), format)).unwrap();
        let path = dir.write(&format!("cut-{name}"), &full[..full.len() / 2]);
        assert_refused(&path, "corrupt_image", says);
    }
}

#[test]
fn random_bytes_are_not_an_image() {
    let dir = Dir::new();
    let mut bytes = vec![0u8; 4096];
    StdRng::seed_from_u64(7).fill_bytes(&mut bytes);
    bytes[0] = 0x13; // make sure no magic number matches by chance
    assert_refused(
        &dir.write("noise.jpg", &bytes),
        "unsupported_format",
        "not a recognised image",
    );
}

#[test]
fn jpeg_marker_followed_by_garbage_is_corrupt() {
    let dir = Dir::new();
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0];
    let mut noise = vec![0u8; 4096];
    StdRng::seed_from_u64(9).fill_bytes(&mut noise);
    bytes.extend(noise);
    assert_refused(&dir.write("garbage.jpg", &bytes), "corrupt_image", "JPEG");
}

#[test]
fn text_file_is_unsupported() {
    let dir = Dir::new();
    let path = dir.write(
        "notes.png",
        "Shopping list:\n- milk\n- bread — fresh\n".as_bytes(),
    );
    let err = assert_refused(&path, "unsupported_format", "looks like text");
    assert!(err.to_string().contains("JPEG, PNG, WebP"), "{err}");
}

#[test]
fn png_decompression_bomb_is_refused_from_its_header() {
    let dir = Dir::new();
    let bomb = png_bomb(50_000, 50_000);
    assert!(
        bomb.len() < 10_000,
        "the bomb is a small file: {} bytes",
        bomb.len()
    );
    let path = dir.write("bomb.png", &bomb);
    // Refused as too large from the header: a decode of 2.5 gigapixels is never tried.
    let err = assert_refused(&path, "too_large", "50000x50000");
    assert!(err.to_string().contains("30000"), "{err}");
}

#[test]
fn pixel_count_limit_applies_below_the_dimension_limit() {
    let dir = Dir::new();
    let path = dir.write("wide.png", &png_bomb(20_000, 20_000));
    let err = assert_refused(&path, "too_large", "400000000 pixels");
    assert!(err.to_string().contains("100000000"), "{err}");
}

#[test]
fn jpeg_claiming_huge_dimensions_is_refused() {
    let dir = Dir::new();
    let path = dir.write(
        "huge.jpg",
        &jpeg_claiming(&jpeg_bytes(photo(64, 64)), 60_000, 40_000),
    );
    assert_refused(&path, "too_large", "60000x40000");
}

#[test]
fn files_over_the_byte_limit_are_refused_before_reading() {
    let dir = Dir::new();
    let path = write(&dir, "big.png", photo(100, 100), OutputFormat::Png);
    let limits = Limits {
        max_bytes: 1000,
        ..Limits::default()
    };
    let err = decode(&path, &limits).unwrap_err();
    assert_eq!(err.code(), "too_large");
    assert!(err.to_string().contains("the limit is 1000 bytes"), "{err}");
}

#[test]
fn broken_exif_does_not_fail_a_good_image() {
    let dir = Dir::new();
    let jpeg = jpeg_bytes(photo(32, 16));
    let mut bytes = jpeg[..2].to_vec();
    bytes.extend_from_slice(&[0xFF, 0xE1, 0x00, 0x12]);
    bytes.extend_from_slice(b"Exif\0\0MM\0\x2a\xff\xff\xff\xff\x01\x02");
    bytes.extend_from_slice(&jpeg[2..]);
    let path = dir.write("badexif.jpg", &bytes);
    let info = inspect(&path, &Limits::default()).unwrap();
    assert_eq!((info.orientation, info.exif.len()), (1, 0));
    assert_eq!(decode(&path, &Limits::default()).unwrap().width(), 32);
}

#[test]
fn missing_file_is_a_retryable_io_error() {
    let dir = Dir::new();
    let err = inspect(&dir.path("nope.jpg"), &Limits::default()).unwrap_err();
    assert_eq!(err.code(), "io");
    assert!(err.is_retryable());
    assert!(err.to_string().contains("nope.jpg"), "{err}");
}
