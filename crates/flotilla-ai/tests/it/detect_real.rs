//! The default models on real photos (scikit-image's samples): the labels and boxes a
//! person would expect.

use flotilla_ai::{BBox, Detector, Device};

use crate::fixture::{best, model, photo};

fn contains(b: &BBox, x: f32, y: f32) -> bool {
    (b.x..=b.x + b.width).contains(&x) && (b.y..=b.y + b.height).contains(&y)
}

#[test]
fn yolo11n_finds_the_cat_in_chelsea_over_its_face() {
    let detector = Detector::load(&model("objects")).unwrap();
    let found = detector.detect(&photo("chelsea.png")).unwrap();
    let cat = best(&found, "cat");
    assert!(cat.score > 0.5, "{cat:?}");
    assert_eq!(cat.class_id, 15);
    // Both eyes and the nose of the cat (451 × 300 photo).
    for (x, y) in [(170.0, 115.0), (318.0, 137.0), (262.0, 243.0)] {
        assert!(contains(&cat.bbox, x, y), "{cat:?} misses ({x}, {y})");
    }
    assert!(
        cat.bbox.x + cat.bbox.width <= 451.0 && cat.bbox.y + cat.bbox.height <= 300.0,
        "{cat:?}"
    );
}

#[test]
fn yolo11n_finds_the_person_in_astronaut() {
    let detector = Detector::load(&model("objects")).unwrap();
    let found = detector.detect(&photo("astronaut.png")).unwrap();
    let person = best(&found, "person");
    assert!(person.score > 0.5, "{person:?}");
    // Her face and the chest of the suit.
    assert!(
        contains(&person.bbox, 225.0, 130.0) && contains(&person.bbox, 230.0, 320.0),
        "{person:?}"
    );
}

#[test]
fn yolo11n_finds_the_cup_in_coffee_and_no_cat() {
    let detector = Detector::load(&model("objects")).unwrap();
    let found = detector.detect(&photo("coffee.png")).unwrap();
    assert!(best(&found, "cup").score > 0.5, "{found:?}");
    assert!(
        found
            .iter()
            .all(|d| d.label != "cat" && d.label != "person"),
        "{found:?}"
    );
}

#[test]
fn nudenet_finds_the_astronauts_face() {
    let detector = Detector::load(&model("faces")).unwrap();
    assert_eq!(detector.classes().len(), 18);
    let found = detector.detect(&photo("astronaut.png")).unwrap();
    let face = found
        .iter()
        .find(|d| d.label.starts_with("FACE_"))
        .unwrap_or_else(|| panic!("no face in {found:?}"));
    assert!(face.score > 0.4, "{face:?}");
    // The face spans about x 175–275, y 75–185 of the 512 × 512 photo.
    let (cx, cy) = (
        face.bbox.x + face.bbox.width / 2.0,
        face.bbox.y + face.bbox.height / 2.0,
    );
    assert!(
        (185.0..265.0).contains(&cx) && (95.0..170.0).contains(&cy),
        "{face:?}"
    );
    assert!(
        (50.0..180.0).contains(&face.bbox.width) && (50.0..180.0).contains(&face.bbox.height),
        "{face:?}"
    );
}

#[test]
fn nudenet_finds_no_face_on_the_cat() {
    let detector = Detector::load(&model("faces")).unwrap();
    let found = detector.detect(&photo("chelsea.png")).unwrap();
    assert!(
        found.iter().all(|d| !d.label.starts_with("FACE_")),
        "{found:?}"
    );
}

#[test]
fn batch_results_match_single_runs_in_order() {
    let detector = Detector::load(&model("objects")).unwrap();
    assert_eq!(
        detector.batch_size(),
        flotilla_ai::detect::MAX_BATCH,
        "yolo11n's batch dimension is dynamic"
    );
    let photos = [photo("chelsea.png"), photo("coffee.png")];
    let batch = detector.detect_batch(&photos).unwrap();
    assert_eq!(batch.len(), 2);
    assert_eq!(batch[0], detector.detect(&photos[0]).unwrap());
    assert_eq!(batch[1], detector.detect(&photos[1]).unwrap());
    assert!(detector.detect_batch(&[]).unwrap().is_empty());
}

#[test]
fn one_detector_serves_several_threads() {
    let detector = Detector::load(&model("faces")).unwrap();
    let (astronaut, cat) = (photo("astronaut.png"), photo("chelsea.png"));
    let (faces, none) = std::thread::scope(|s| {
        let a = s.spawn(|| detector.detect(&astronaut).unwrap());
        let b = s.spawn(|| detector.detect(&cat).unwrap());
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(faces.iter().any(|d| d.label.starts_with("FACE_")));
    assert!(none.iter().all(|d| !d.label.starts_with("FACE_")));
}

#[test]
fn auto_device_falls_back_to_the_cpu_runtime() {
    let mut config = model("faces");
    config.device = Device::Auto;
    let detector = Detector::load(&config).unwrap();
    assert_eq!(
        detector.device(),
        Device::Cpu,
        "the PyPI onnxruntime wheel has no CUDA"
    );
    assert!(!detector.detect(&photo("astronaut.png")).unwrap().is_empty());
}

#[test]
fn grey_and_rgba_images_are_accepted() {
    let detector = Detector::load(&model("objects")).unwrap();
    let cat = photo("chelsea.png");
    let grey = flotilla_ai::DynamicImage::ImageLuma8(cat.to_luma8());
    assert!(
        detector
            .detect(&grey)
            .unwrap()
            .iter()
            .any(|d| d.label == "cat")
    );
    let rgba = flotilla_ai::DynamicImage::ImageRgba8(cat.to_rgba8());
    assert_eq!(
        detector.detect(&rgba).unwrap(),
        detector.detect(&cat).unwrap()
    );
}
