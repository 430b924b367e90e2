//! A tiny detector with fixed shapes, written as ONNX protobuf by hand: a single Reshape
//! from the image input `[1, 3, S, S]` to `[1, 4 + C, 3·S·S / (4 + C)]`. Its "boxes" and
//! "scores" are pixel values, so the whole pipeline (letterbox, run, decode, NMS, mapping
//! back) can be checked exactly, on a model whose batch is fixed at 1 (unlike the default
//! models, whose shapes are all dynamic).

use std::path::{Path, PathBuf};

use flotilla_ai::{AiError, BBox, ClassList, Detector, DynamicImage, ModelConfig};
use image::{Rgb, RgbImage};

use crate::fixture::installed;

const SIZE: i64 = 32;
const CLASSES: i64 = 2;

#[test]
fn fixed_batch_model_detects_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let detector = Detector::load(&config(&write_model(dir.path()), 32, 2)).unwrap();
    assert_eq!(detector.batch_size(), 1);
    // White: every anchor is a box at (0.5, 0.5) of size 1 with score 1 for both classes;
    // the first class wins each anchor and NMS keeps one of the identical boxes.
    let white = DynamicImage::ImageRgb8(RgbImage::from_pixel(32, 32, Rgb([255, 255, 255])));
    // Black: every score is 0, below the threshold.
    let black = DynamicImage::ImageRgb8(RgbImage::from_pixel(32, 32, Rgb([0, 0, 0])));
    let found = detector
        .detect_batch(&[white.clone(), black, white])
        .unwrap();
    assert_eq!(found.len(), 3);
    assert_eq!(found[0], found[2]);
    assert!(found[1].is_empty(), "{:?}", found[1]);
    assert_eq!(found[0].len(), 1, "{:?}", found[0]);
    let d = &found[0][0];
    assert_eq!((d.label.as_str(), d.class_id, d.score), ("a", 0, 1.0));
    assert_eq!(
        d.bbox,
        BBox {
            x: 0.5,
            y: 0.5,
            width: 1.0,
            height: 1.0
        }
    );
}

#[cfg(feature = "tract")]
#[test]
fn tract_runs_the_fixed_model_identically() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_model(dir.path());
    let white = DynamicImage::ImageRgb8(RgbImage::from_pixel(32, 32, Rgb([255, 255, 255])));
    let ort = Detector::load(&config(&path, 32, 2))
        .unwrap()
        .detect(&white)
        .unwrap();
    let tract_config = ModelConfig {
        backend: flotilla_ai::Backend::Tract,
        ..config(&path, 32, 2)
    };
    let tract = Detector::load(&tract_config)
        .unwrap()
        .detect(&white)
        .unwrap();
    assert_eq!(ort, tract);
    let wrong = ModelConfig {
        input_size: 64,
        ..tract_config
    };
    let err = Detector::load(&wrong).unwrap_err();
    assert!(
        matches!(&err, AiError::WrongShape { what, .. } if what == "input"),
        "{err}"
    );
}

#[test]
fn input_size_other_than_the_models_is_wrong_shape() {
    let dir = tempfile::tempdir().unwrap();
    let err = Detector::load(&config(&write_model(dir.path()), 64, 2)).unwrap_err();
    assert!(
        matches!(&err, AiError::WrongShape { what, found, .. } if what == "input" && found.contains("[1, 3, 32, 32]")),
        "{err}"
    );
}

#[test]
fn class_count_other_than_the_models_is_wrong_shape() {
    let dir = tempfile::tempdir().unwrap();
    let err = Detector::load(&config(&write_model(dir.path()), 32, 3)).unwrap_err();
    assert!(
        matches!(&err, AiError::WrongShape { what, .. } if what == "output"),
        "{err}"
    );
}

fn config(path: &Path, input_size: u32, classes: usize) -> ModelConfig {
    installed();
    let names = ["a", "b", "c"][..classes]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut config = ModelConfig::detector("tiny", path, ClassList::Inline(names), input_size);
    config.score_threshold = 0.5;
    config.device = flotilla_ai::Device::Cpu;
    config
}

fn write_model(dir: &Path) -> PathBuf {
    let rows = 4 + CLASSES;
    let anchors = 3 * SIZE * SIZE / rows;
    let mut shape = Vec::new();
    int(&mut shape, 1, 3); // dims: a vector of 3
    int(&mut shape, 2, 7); // data_type INT64
    for dim in [1, rows, anchors] {
        int(&mut shape, 7, dim as u64); // int64_data
    }
    bytes(&mut shape, 8, b"shape");
    let mut node = Vec::new();
    bytes(&mut node, 1, b"images");
    bytes(&mut node, 1, b"shape");
    bytes(&mut node, 2, b"output0");
    bytes(&mut node, 4, b"Reshape");
    let mut graph = Vec::new();
    bytes(&mut graph, 1, &node);
    bytes(&mut graph, 2, b"tiny");
    bytes(&mut graph, 5, &shape);
    bytes(&mut graph, 11, &value_info("images", &[1, 3, SIZE, SIZE]));
    bytes(&mut graph, 12, &value_info("output0", &[1, rows, anchors]));
    let mut opset = Vec::new();
    int(&mut opset, 2, 13);
    let mut model = Vec::new();
    int(&mut model, 1, 8); // ir_version
    bytes(&mut model, 7, &graph);
    bytes(&mut model, 8, &opset);
    let path = dir.join("tiny.onnx");
    std::fs::write(&path, model).unwrap();
    path
}

/// A float tensor's ValueInfoProto with fixed dimensions.
fn value_info(name: &str, dims: &[i64]) -> Vec<u8> {
    let mut shape = Vec::new();
    for &d in dims {
        let mut dim = Vec::new();
        int(&mut dim, 1, d as u64);
        bytes(&mut shape, 1, &dim);
    }
    let mut tensor = Vec::new();
    int(&mut tensor, 1, 1); // elem_type FLOAT
    bytes(&mut tensor, 2, &shape);
    let mut ty = Vec::new();
    bytes(&mut ty, 1, &tensor);
    let mut info = Vec::new();
    bytes(&mut info, 1, name.as_bytes());
    bytes(&mut info, 2, &ty);
    info
}

fn varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn int(buf: &mut Vec<u8>, field: u64, v: u64) {
    varint(buf, field << 3);
    varint(buf, v);
}

fn bytes(buf: &mut Vec<u8>, field: u64, data: &[u8]) {
    varint(buf, (field << 3) | 2);
    varint(buf, data.len() as u64);
    buf.extend_from_slice(data);
}
