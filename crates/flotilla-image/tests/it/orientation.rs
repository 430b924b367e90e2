use flotilla_image::{Limits, Op, OutputFormat, Rendition, decode, inspect, render_all};
use image::{Rgb, RgbImage};

use crate::support::{Dir, Value, jpeg_bytes, tiff, with_exif};

const RED: [u8; 3] = [230, 20, 20];
const BLUE: [u8; 3] = [20, 40, 200];

/// Blue, with a red `block`×`block` square at the stored top-left corner.
fn marked(width: u32, height: u32, block: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        Rgb(if x < block && y < block { RED } else { BLUE })
    })
}

fn is_red(pixel: &Rgb<u8>) -> bool {
    pixel.0[0] > 180 && pixel.0[1] < 80 && pixel.0[2] < 80
}

fn sideways_phone_photo(dir: &Dir, width: u32, height: u32, block: u32) -> std::path::PathBuf {
    let exif = tiff(&[(0x0112, Value::Short(6))], &[]);
    dir.write(
        "sideways.jpg",
        &with_exif(&jpeg_bytes(marked(width, height, block)), &exif),
    )
}

#[test]
fn decode_applies_orientation_6_as_a_quarter_turn_clockwise() {
    let dir = Dir::new();
    let path = sideways_phone_photo(&dir, 64, 32, 8);
    let upright = decode(&path, &Limits::default())
        .unwrap()
        .into_pixels()
        .to_rgb8();
    assert_eq!(upright.dimensions(), (32, 64), "width and height swap");
    // The stored top-left corner is now the top-right corner.
    assert!(
        is_red(upright.get_pixel(28, 3)),
        "{:?}",
        upright.get_pixel(28, 3)
    );
    assert!(!is_red(upright.get_pixel(3, 3)));
    assert!(!is_red(upright.get_pixel(28, 60)));
}

#[test]
fn render_all_keeps_orientation_when_decoding_at_reduced_scale() {
    let dir = Dir::new();
    let path = sideways_phone_photo(&dir, 800, 400, 160);
    assert_eq!(
        inspect(&path, &Limits::default())
            .unwrap()
            .upright_dimensions(),
        (400, 800)
    );
    let renditions = [Rendition {
        name: "small".into(),
        ops: vec![Op::Resize {
            width: Some(100),
            height: None,
            fit: Default::default(),
            enlarge: false,
        }],
        format: OutputFormat::Png,
    }];
    let outputs = render_all(&path, &renditions, &dir.path("out"), &Limits::default()).unwrap();
    assert_eq!((outputs[0].width, outputs[0].height), (100, 200));
    let small = image::open(&outputs[0].path).unwrap().to_rgb8();
    assert!(
        is_red(small.get_pixel(90, 10)),
        "{:?}",
        small.get_pixel(90, 10)
    );
    assert!(!is_red(small.get_pixel(10, 10)));
}

#[test]
fn invalid_orientation_values_are_ignored() {
    let dir = Dir::new();
    let exif = tiff(&[(0x0112, Value::Short(42))], &[]);
    let path = dir.write("odd.jpg", &with_exif(&jpeg_bytes(marked(64, 32, 8)), &exif));
    assert_eq!(inspect(&path, &Limits::default()).unwrap().orientation, 1);
    let image = decode(&path, &Limits::default()).unwrap();
    assert_eq!((image.width(), image.height()), (64, 32));
}
