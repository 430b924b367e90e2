use flotilla_image::{ImageFormat, Limits, OutputFormat, inspect};
use image::ImageFormat as Codec;

use crate::support::{Dir, Value, jpeg_bytes, photo, tiff, with_exif, write};

#[test]
fn detects_jpeg_png_and_webp_with_their_dimensions() {
    let dir = Dir::new();
    let cases = [
        (
            "a.jpg",
            OutputFormat::Jpeg { quality: 90 },
            ImageFormat::Jpeg,
        ),
        ("b.png", OutputFormat::Png, ImageFormat::Png),
        ("c.webp", OutputFormat::Webp, ImageFormat::Webp),
    ];
    for (name, output, expected) in cases {
        let path = write(&dir, name, photo(321, 123), output);
        let info = inspect(&path, &Limits::default()).unwrap();
        assert_eq!(
            (info.format, info.width, info.height),
            (expected, 321, 123),
            "{name}"
        );
        assert_eq!(info.orientation, 1);
        assert_eq!(info.file_size, std::fs::metadata(&path).unwrap().len());
    }
}

#[test]
fn format_comes_from_content_not_the_file_name() {
    let dir = Dir::new();
    let png_named_jpg = write(&dir, "x.jpg", photo(10, 7), OutputFormat::Png);
    let webp_named_png = write(&dir, "y.png", photo(10, 7), OutputFormat::Webp);
    let jpeg_without_extension = write(&dir, "z", photo(10, 7), OutputFormat::Jpeg { quality: 80 });
    let limits = Limits::default();
    assert_eq!(
        inspect(&png_named_jpg, &limits).unwrap().format,
        ImageFormat::Png
    );
    assert_eq!(
        inspect(&webp_named_png, &limits).unwrap().format,
        ImageFormat::Webp
    );
    assert_eq!(
        inspect(&jpeg_without_extension, &limits).unwrap().format,
        ImageFormat::Jpeg
    );
}

#[test]
fn detects_gif_tiff_and_bmp() {
    let dir = Dir::new();
    for (codec, expected) in [
        (Codec::Gif, ImageFormat::Gif),
        (Codec::Tiff, ImageFormat::Tiff),
        (Codec::Bmp, ImageFormat::Bmp),
    ] {
        let path = dir.path("image.bin");
        photo(33, 44).save_with_format(&path, codec).unwrap();
        let info = inspect(&path, &Limits::default()).unwrap();
        assert_eq!((info.format, info.width, info.height), (expected, 33, 44));
    }
}

#[test]
fn reads_orientation_and_selected_exif_tags() {
    let dir = Dir::new();
    let exif = tiff(
        &[
            (0x010F, Value::Ascii("Flotilla Optics")),
            (0x0110, Value::Ascii("Model F-1")),
            (0x0112, Value::Short(6)),
        ],
        &[
            (0x829A, Value::Rational(1, 125)),
            (0x829D, Value::Rational(28, 10)),
            (0x9003, Value::Ascii("2024:05:06 07:08:09")),
        ],
    );
    let path = dir.write("phone.jpg", &with_exif(&jpeg_bytes(photo(64, 32)), &exif));
    let info = inspect(&path, &Limits::default()).unwrap();
    assert_eq!(info.orientation, 6);
    assert_eq!((info.width, info.height), (64, 32));
    assert_eq!(info.upright_dimensions(), (32, 64));
    assert_eq!(info.exif["Make"], "Flotilla Optics");
    assert_eq!(info.exif["Model"], "Model F-1");
    assert_eq!(info.exif["DateTimeOriginal"], "2024-05-06 07:08:09");
    assert!(
        info.exif["ExposureTime"].starts_with("1/125"),
        "{:?}",
        info.exif
    );
    assert!(info.exif["FNumber"].contains("2.8"), "{:?}", info.exif);
}

#[test]
fn info_serializes_for_job_results() {
    let dir = Dir::new();
    let path = write(&dir, "a.png", photo(5, 4), OutputFormat::Png);
    let json = serde_json::to_value(inspect(&path, &Limits::default()).unwrap()).unwrap();
    assert_eq!(json["format"], "png");
    assert_eq!(json["width"], 5);
}
