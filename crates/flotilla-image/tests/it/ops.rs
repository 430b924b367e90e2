use flotilla_image::{Fit, Image, Op, Position, apply};
use image::{GenericImageView, Rgb, RgbImage};

use crate::support::{Dir, image, logo_png, luma_variance, mean, photo, solid};

fn resize(width: Option<u32>, height: Option<u32>, fit: Fit) -> Op {
    Op::Resize {
        width,
        height,
        fit,
        enlarge: false,
    }
}

fn size(image: &Image) -> (u32, u32) {
    (image.width(), image.height())
}

#[test]
fn grayscale_makes_channels_equal_with_luma_weights() {
    let gray = apply(&image(solid(8, 8, [255, 0, 0])), &[Op::Grayscale]).unwrap();
    for Rgb([r, g, b]) in gray.pixels().to_rgb8().pixels() {
        assert!(r == g && g == b);
        assert!((50..=60).contains(r), "red has about 21% luma, got {r}");
    }
    let photo_gray = apply(&image(photo(40, 30)), &[Op::Grayscale])
        .unwrap()
        .into_pixels()
        .to_rgb8();
    assert!(
        photo_gray
            .pixels()
            .all(|p| p.0[0] == p.0[1] && p.0[1] == p.0[2])
    );
}

#[test]
fn brightness_raises_and_lowers_the_mean() {
    let source = image(photo(50, 50));
    let before = mean(source.pixels());
    let brighter = mean(
        apply(&source, &[Op::Brightness { delta: 30 }])
            .unwrap()
            .pixels(),
    );
    let darker = mean(
        apply(&source, &[Op::Brightness { delta: -30 }])
            .unwrap()
            .pixels(),
    );
    assert!(brighter > before + 20.0, "{before} -> {brighter}");
    assert!(darker < before - 20.0, "{before} -> {darker}");
}

#[test]
fn edges_light_only_the_boundary_between_black_and_white() {
    let half = RgbImage::from_fn(40, 20, |x, _| Rgb(if x < 20 { [0; 3] } else { [255; 3] }));
    let edges = apply(&image(half), &[Op::Edges])
        .unwrap()
        .into_pixels()
        .to_luma8();
    for (x, y, pixel) in edges.enumerate_pixels() {
        if x == 19 || x == 20 {
            assert_eq!(pixel.0[0], 255, "boundary column {x} at row {y}");
        } else {
            assert_eq!(pixel.0[0], 0, "flat area at ({x}, {y}), borders included");
        }
    }
}

#[test]
fn blur_lowers_variance() {
    let checker = RgbImage::from_fn(64, 64, |x, y| {
        Rgb(if (x / 2 + y / 2) % 2 == 0 {
            [0; 3]
        } else {
            [255; 3]
        })
    });
    let source = image(checker);
    let blurred = apply(&source, &[Op::Blur { sigma: 2.0 }]).unwrap();
    assert_eq!(size(&blurred), (64, 64));
    let (before, after) = (
        luma_variance(source.pixels()),
        luma_variance(blurred.pixels()),
    );
    assert!(after < before / 4.0, "variance {before} -> {after}");
}

#[test]
fn watermark_blends_the_logo_into_its_corner_only() {
    let dir = Dir::new();
    let logo = logo_png(&dir);
    let white = image(solid(400, 300, [255, 255, 255]));
    let op = Op::Watermark {
        logo,
        position: Position::BottomRight,
        opacity: 0.5,
        scale: 0.15,
    };
    let marked = apply(&white, &[op]).unwrap().into_pixels();
    // Logo 60x60 (15% of 400) with an 8-pixel margin: x 332..392, y 232..292.
    let centre = marked.get_pixel(362, 262).0;
    assert_eq!(centre[0], 255);
    assert!(
        (110..=145).contains(&centre[1]),
        "half-opaque red over white: {centre:?}"
    );
    assert_eq!(
        marked.get_pixel(396, 296).0[..3],
        [255, 255, 255],
        "margin untouched"
    );
    assert_eq!(
        marked.get_pixel(20, 20).0[..3],
        [255, 255, 255],
        "opposite corner untouched"
    );
    assert_eq!(
        marked.get_pixel(334, 234).0[..3],
        [255, 255, 255],
        "transparent logo border"
    );
}

#[test]
fn watermark_top_left_goes_to_the_top_left() {
    let dir = Dir::new();
    let op = Op::Watermark {
        logo: logo_png(&dir),
        position: Position::TopLeft,
        opacity: 1.0,
        scale: 0.15,
    };
    let marked = apply(&image(solid(400, 300, [255; 3])), &[op])
        .unwrap()
        .into_pixels();
    assert_eq!(marked.get_pixel(38, 38).0[..3], [255, 0, 0]);
    assert_eq!(marked.get_pixel(362, 262).0[..3], [255, 255, 255]);
}

#[test]
fn resize_keeps_aspect_unless_asked_to_fill() {
    let source = image(photo(400, 300));
    let cases = [
        (resize(Some(200), None, Fit::Contain), (200, 150)),
        (resize(None, Some(60), Fit::Contain), (80, 60)),
        (resize(Some(200), Some(200), Fit::Contain), (200, 150)),
        (resize(Some(200), Some(200), Fit::Cover), (200, 200)),
        (resize(Some(100), Some(30), Fit::Fill), (100, 30)),
        (resize(Some(800), None, Fit::Contain), (400, 300)),
        (
            Op::Resize {
                width: Some(800),
                height: None,
                fit: Fit::Contain,
                enlarge: true,
            },
            (800, 600),
        ),
        (Op::Thumbnail { size: 64 }, (64, 48)),
        (Op::Thumbnail { size: 1000 }, (400, 300)),
    ];
    for (op, expected) in cases {
        assert_eq!(
            size(&apply(&source, std::slice::from_ref(&op)).unwrap()),
            expected,
            "{op:?}"
        );
    }
}

#[test]
fn cover_crops_the_centre() {
    // Left third red, middle green, right third blue; covering a square keeps the middle.
    let bands = RgbImage::from_fn(300, 100, |x, _| {
        Rgb([[255, 0, 0], [0, 255, 0], [0, 0, 255]][(x / 100) as usize])
    });
    let square = apply(&image(bands), &[resize(Some(50), Some(50), Fit::Cover)])
        .unwrap()
        .into_pixels()
        .to_rgb8();
    assert_eq!(square.dimensions(), (50, 50));
    assert!(
        square
            .pixels()
            .all(|p| p.0[1] > 200 && p.0[0] < 40 && p.0[2] < 40)
    );
}

#[test]
fn chains_run_in_order() {
    let out = apply(
        &image(photo(400, 300)),
        &[Op::Grayscale, Op::Thumbnail { size: 100 }, Op::Edges],
    )
    .unwrap();
    assert_eq!(size(&out), (100, 75));
    assert!(matches!(out.pixels(), image::DynamicImage::ImageLuma8(_)));
}

#[test]
fn invalid_parameters_are_refused_before_any_work() {
    let source = image(photo(10, 10));
    let bad = [
        Op::Blur { sigma: 0.0 },
        Op::Blur { sigma: f32::NAN },
        Op::Brightness { delta: 300 },
        Op::Thumbnail { size: 0 },
        resize(None, None, Fit::Contain),
        resize(Some(40_000), None, Fit::Contain),
        Op::Watermark {
            logo: "logo.png".into(),
            position: Position::Center,
            opacity: 1.5,
            scale: 0.1,
        },
        Op::Watermark {
            logo: "logo.png".into(),
            position: Position::Center,
            opacity: 0.5,
            scale: 0.0,
        },
    ];
    for op in bad {
        // The valid-looking grayscale first must not matter: validation covers the chain.
        let err = apply(&source, &[Op::Grayscale, op.clone()]).unwrap_err();
        assert_eq!(err.code(), "invalid_operation", "{op:?}: {err}");
        assert!(!err.is_retryable());
    }
}

#[test]
fn missing_logo_is_an_io_error() {
    let dir = Dir::new();
    let op = Op::Watermark {
        logo: dir.path("absent.png"),
        position: Position::Center,
        opacity: 1.0,
        scale: 0.1,
    };
    let err = apply(&image(photo(10, 10)), &[op]).unwrap_err();
    assert_eq!(err.code(), "io");
    assert!(err.to_string().contains("absent.png"), "{err}");
}

#[test]
fn tiny_images_survive_every_op_at_extreme_parameters() {
    let dir = Dir::new();
    let logo = logo_png(&dir);
    for (width, height) in [(1, 1), (1, 7), (3, 2)] {
        let ops = [
            Op::Blur { sigma: 100.0 },
            Op::Edges,
            Op::Brightness { delta: -255 },
            resize(Some(30_000), Some(1), Fit::Cover),
            Op::Thumbnail { size: 1 },
            Op::Watermark {
                logo: logo.clone(),
                position: Position::Center,
                opacity: 1.0,
                scale: 1.0,
            },
        ];
        for op in ops {
            let out = apply(&image(photo(width, height)), std::slice::from_ref(&op)).unwrap();
            assert!(
                out.width() >= 1 && out.height() >= 1,
                "{op:?} on {width}x{height}"
            );
        }
    }
}
