//! Flotilla's AI enrichment library: named models as configuration, their installation by
//! package name, and object detection with YOLOv8/11-style ONNX models on ONNX Runtime.
//!
//! It knows nothing of queues or HTTP: the CLI (`flotilla models list|install|check`), the
//! pipeline steps and the job handlers are built on this interface. Every call is blocking
//! and CPU-bound (or GPU-bound), so async callers use `spawn_blocking`.
//!
//! ONNX Runtime is opened at run time (`ort` with `load-dynamic`), from the
//! `libonnxruntime.so` of the PyPI `onnxruntime` wheel that [`install::install_defaults`]
//! (or `scripts/models.sh`) puts in a project-local directory: nothing is downloaded at
//! build time and no weights are committed. The default models are `objects` (YOLO11n,
//! COCO-80, 640) and `faces` (NudeNet 320n, 18 classes including `FACE_FEMALE` and
//! `FACE_MALE`), both AGPL-3.0; any YOLOv8/11-style ONNX model with a class list works.
//! With the `tract` feature, tract-onnx runs the same models in pure Rust on the CPU
//! (backend `tract`, or `auto` when no ONNX Runtime library can be found).
//!
//! A detector may instead be served by a KServe/Triton server (`service = { protocol =
//! "kserve-v2", ... }`): [`KserveDetector`] sends the letterboxed tensor over the Open
//! Inference Protocol v2 and decodes the answer with the same functions, asynchronously.
//!
//! # Layout
//! - [`error`]: [`AiError`], one variant per start-up failure, each saying what to install.
//! - [`config`]: [`ModelConfig`], [`ModelsConfig`], [`Device`] (shared with
//!   flotilla-speech), [`Backend`], [`ClassList`], [`ServiceConfig`]: the `[[models]]`
//!   tables, validated.
//! - [`install`]: [`install_defaults`], [`InstalledModels`] (`models.toml`), and the
//!   pip, lock and manifest helpers flotilla-speech's installer shares.
//! - [`runtime`]: [`Runtime`], the ONNX Runtime library loaded once per process.
//! - [`detect`]: [`letterbox()`], [`decode_yolo`], [`nms_per_class`], [`Detector`],
//!   [`Detection`].
//! - [`check`]: [`check_model`], the load-and-infer smoke test with timings.
//! - [`video`]: [`aggregate`] (per-label summaries of frame detections) and [`keyframes`].
//! - [`remote`]: [`KserveDetector`] and [`RemoteError`], inference service mode.
//!
//! # Invariants
//! - Boxes handed out are in the original image's pixels and inside the image.
//! - A missing runtime, a missing or corrupt model and a shape mismatch are errors from
//!   [`Detector::load`], never a panic or a failure on the first image.
//! - Non-maximum suppression is per class: different classes never suppress each other.
//! - A remote detector refuses private addresses unless its service allows them, and
//!   reports whether each failure is worth a retry.

pub mod check;
pub mod config;
pub mod detect;
pub mod error;
pub mod install;
pub mod remote;
pub mod runtime;
pub mod video;

pub use check::{CheckReport, check_model, check_model_on};
pub use config::{
    Backend, ClassList, Device, ModelConfig, ModelKind, ModelsConfig, ParseDeviceError,
    ServiceConfig, ServiceProtocol,
};
pub use detect::{
    BBox, Candidate, Detection, Detector, Letterbox, decode_yolo, letterbox, nms_per_class,
};
pub use error::{AiError, InstallError};
pub use image::DynamicImage;
pub use install::{InstalledModel, InstalledModels, install_defaults};
pub use remote::{KserveDetector, RemoteError};
pub use runtime::Runtime;
pub use video::{Keyframes, LabelSummary, aggregate, keyframes};
