use flotilla_image::{
    Fit, ImageFormat, Limits, Op, OutputFormat, Rendition, apply, decode, inspect, render_all,
};

use crate::support::{Dir, magic, photo, write};

fn resize(width: Option<u32>, height: Option<u32>, fit: Fit) -> Vec<Op> {
    vec![Op::Resize {
        width,
        height,
        fit,
        enlarge: false,
    }]
}

fn rendition(name: &str, ops: Vec<Op>, format: OutputFormat) -> Rendition {
    Rendition {
        name: name.into(),
        ops,
        format,
    }
}

#[test]
fn writes_every_rendition_with_its_size_and_format() {
    let dir = Dir::new();
    let input = write(
        &dir,
        "in.jpg",
        photo(1600, 1200),
        OutputFormat::Jpeg { quality: 92 },
    );
    let renditions = [
        rendition(
            "large",
            resize(Some(800), None, Fit::Contain),
            OutputFormat::Jpeg { quality: 85 },
        ),
        rendition(
            "boxed",
            resize(Some(300), Some(300), Fit::Contain),
            OutputFormat::Webp,
        ),
        rendition(
            "square",
            resize(Some(200), Some(200), Fit::Cover),
            OutputFormat::Jpeg { quality: 70 },
        ),
        rendition(
            "thumb",
            vec![Op::Thumbnail { size: 128 }],
            OutputFormat::Png,
        ),
    ];
    let out_dir = dir.path("out/nested");
    let outputs = render_all(&input, &renditions, &out_dir, &Limits::default()).unwrap();

    let expected = [
        ("large", "jpg", (800, 600), ImageFormat::Jpeg),
        ("boxed", "webp", (300, 225), ImageFormat::Webp),
        ("square", "jpg", (200, 200), ImageFormat::Jpeg),
        ("thumb", "png", (128, 96), ImageFormat::Png),
    ];
    assert_eq!(outputs.len(), expected.len());
    for (output, (name, ext, size, format)) in outputs.iter().zip(expected) {
        assert_eq!(output.name, name);
        assert_eq!(output.path, out_dir.join(format!("{name}.{ext}")));
        assert_eq!((output.width, output.height), size, "{name}");
        assert_eq!(output.bytes, std::fs::metadata(&output.path).unwrap().len());
        let info = inspect(&output.path, &Limits::default()).unwrap();
        assert_eq!(
            (info.format, info.width, info.height),
            (format, size.0, size.1),
            "{name}"
        );
    }
    assert_eq!(magic(&outputs[0].path, 3), [0xFF, 0xD8, 0xFF]);
    let webp = magic(&outputs[1].path, 12);
    assert_eq!((&webp[..4], &webp[8..]), (&b"RIFF"[..], &b"WEBP"[..]));
    assert_eq!(magic(&outputs[3].path, 8), b"\x89PNG\r\n\x1a\n");
    let leftovers: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 4, "no temporary files left: {leftovers:?}");
}

#[test]
fn reduced_scale_decode_matches_a_full_decode() {
    let dir = Dir::new();
    let input = write(
        &dir,
        "in.jpg",
        photo(2000, 1500),
        OutputFormat::Jpeg { quality: 95 },
    );
    let ops = resize(Some(400), None, Fit::Contain);
    let outputs = render_all(
        &input,
        &[rendition("r", ops.clone(), OutputFormat::Png)],
        &dir.path("out"),
        &Limits::default(),
    )
    .unwrap();
    let fast = image::open(&outputs[0].path).unwrap().to_rgb8();
    let reference = apply(&decode(&input, &Limits::default()).unwrap(), &ops)
        .unwrap()
        .into_pixels()
        .to_rgb8();
    assert_eq!(fast.dimensions(), reference.dimensions());
    let diff: f64 = fast
        .as_raw()
        .iter()
        .zip(reference.as_raw())
        .map(|(a, b)| f64::from(a.abs_diff(*b)))
        .sum::<f64>()
        / fast.as_raw().len() as f64;
    assert!(diff < 2.0, "mean absolute difference {diff}");
}

#[test]
fn chains_that_need_full_resolution_still_work_from_png() {
    let dir = Dir::new();
    let input = write(&dir, "in.png", photo(300, 200), OutputFormat::Png);
    let ops = vec![
        Op::Blur { sigma: 1.5 },
        Op::Thumbnail { size: 90 },
        Op::Grayscale,
    ];
    let outputs = render_all(
        &input,
        &[rendition("soft", ops, OutputFormat::Jpeg { quality: 80 })],
        &dir.path("o"),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!((outputs[0].width, outputs[0].height), (90, 60));
}

#[test]
fn bad_rendition_lists_fail_before_writing_anything() {
    let dir = Dir::new();
    let input = write(&dir, "in.png", photo(30, 20), OutputFormat::Png);
    let thumb = vec![Op::Thumbnail { size: 10 }];
    let cases = [
        vec![
            rendition("a", thumb.clone(), OutputFormat::Png),
            rendition("a", thumb.clone(), OutputFormat::Webp),
        ],
        vec![rendition("../escape", thumb.clone(), OutputFormat::Png)],
        vec![rendition("", thumb.clone(), OutputFormat::Png)],
        vec![rendition(
            "q",
            thumb.clone(),
            OutputFormat::Jpeg { quality: 0 },
        )],
        vec![
            rendition("ok", thumb.clone(), OutputFormat::Png),
            rendition("bad", vec![Op::Blur { sigma: -1.0 }], OutputFormat::Png),
        ],
    ];
    for renditions in cases {
        let out = dir.path("never");
        let err = render_all(&input, &renditions, &out, &Limits::default()).unwrap_err();
        assert_eq!(err.code(), "invalid_operation", "{err}");
        assert!(!out.exists());
    }
}

#[test]
fn renditions_parse_from_json_and_toml() {
    let json = r#"[
        {"name":"large","ops":[{"op":"resize","width":1280,"height":720,"fit":"contain"}],"format":"jpeg","quality":85},
        {"name":"thumb","ops":[{"op":"thumbnail","size":256},{"op":"grayscale"}],"format":"webp"},
        {"name":"art","ops":[{"op":"blur","sigma":2.0},{"op":"brightness","delta":20},{"op":"edges"},
            {"op":"watermark","logo":"resources/logo.png","position":"bottom-right","opacity":0.5,"scale":0.15}],"format":"png"}
    ]"#;
    let parsed: Vec<Rendition> = serde_json::from_str(json).unwrap();
    assert_eq!(parsed[0].format, OutputFormat::Jpeg { quality: 85 });
    assert_eq!(parsed[0].ops, resize(Some(1280), Some(720), Fit::Contain));
    assert_eq!(
        parsed[1].ops,
        vec![Op::Thumbnail { size: 256 }, Op::Grayscale]
    );
    assert_eq!(parsed[2].format, OutputFormat::Png);
    assert_eq!(parsed[2].ops.len(), 4);

    let toml_text = r#"
        name = "medium"
        format = "jpeg"
        ops = [ { op = "resize", width = 640 } ]
    "#;
    let medium: Rendition = toml::from_str(toml_text).unwrap();
    assert_eq!(
        medium.format,
        OutputFormat::Jpeg {
            quality: flotilla_image::DEFAULT_JPEG_QUALITY
        }
    );
    assert_eq!(medium.ops, resize(Some(640), None, Fit::Contain));

    let round_trip: Vec<Rendition> =
        serde_json::from_str(&serde_json::to_string(&parsed).unwrap()).unwrap();
    assert_eq!(round_trip, parsed);
}

#[test]
fn malformed_rendition_specs_are_rejected_with_the_reason() {
    let cases = [
        (
            r#"{"name":"a","format":"png","quality":80}"#,
            "quality applies only",
        ),
        (r#"{"name":"a","format":"gif"}"#, "unknown variant"),
        (
            r#"{"name":"a","format":"png","colour":"red"}"#,
            "unknown field",
        ),
        (
            r#"{"name":"a","format":"png","ops":[{"op":"sharpen"}]}"#,
            "unknown variant",
        ),
        (
            r#"{"name":"a","format":"png","ops":[{"op":"blur","sigma":2,"radius":3}]}"#,
            "unknown field",
        ),
        (
            r#"{"name":"a","format":"jpeg","quality":101}"#,
            "between 1 and 100",
        ),
        (r#"{"name":"a b","format":"png"}"#, "letters, digits"),
    ];
    for (json, reason) in cases {
        let err = serde_json::from_str::<Rendition>(json)
            .unwrap_err()
            .to_string();
        assert!(err.contains(reason), "{json}: {err}");
    }
}
