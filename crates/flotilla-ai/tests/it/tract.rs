//! The tract engine (feature `tract`) on the same models and photos: the same labels and
//! boxes as ONNX Runtime, within floating-point noise.

use flotilla_ai::{Backend, Detection, Detector, ModelConfig};

use crate::fixture::{model, photo};

fn both(config: &ModelConfig, photo_name: &str) -> (Vec<Detection>, Vec<Detection>) {
    let image = photo(photo_name);
    let ort = Detector::load(config).unwrap();
    assert_eq!(ort.backend(), Backend::Ort);
    let tract = Detector::load(&ModelConfig {
        backend: Backend::Tract,
        ..config.clone()
    })
    .unwrap();
    assert_eq!((tract.backend(), tract.batch_size()), (Backend::Tract, 1));
    (ort.detect(&image).unwrap(), tract.detect(&image).unwrap())
}

fn assert_same(ort: &[Detection], tract: &[Detection], label: &str) {
    let find = |found: &[Detection]| found.iter().find(|d| d.label == label).cloned();
    let (a, b) = (
        find(ort).expect("ort finds it"),
        find(tract).expect("tract finds it"),
    );
    assert!((a.score - b.score).abs() < 0.02, "{a:?} vs {b:?}");
    assert!(a.bbox.iou(&b.bbox) > 0.95, "{a:?} vs {b:?}");
}

#[test]
fn tract_finds_the_same_cat_as_onnx_runtime() {
    let (ort, tract) = both(&model("objects"), "chelsea.png");
    assert_same(&ort, &tract, "cat");
}

#[test]
fn tract_finds_the_same_face_as_onnx_runtime() {
    let (ort, tract) = both(&model("faces"), "astronaut.png");
    assert_same(&ort, &tract, "FACE_FEMALE");
}

#[test]
fn tract_reports_corrupt_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.onnx");
    std::fs::write(&path, b"garbage, not protobuf").unwrap();
    let config = ModelConfig {
        path,
        backend: Backend::Tract,
        ..model("objects")
    };
    let err = Detector::load(&config).unwrap_err();
    assert!(
        matches!(err, flotilla_ai::AiError::CorruptModel { .. }),
        "{err}"
    );
}
