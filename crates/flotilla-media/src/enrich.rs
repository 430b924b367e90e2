//! The AI enrichment steps on `q-ai-enrich`: `ai.detect`, `ai.moderate` and
//! `ai.redact_faces`, built on the detectors of `flotilla-ai`.
//!
//! Models are loaded once, when the worker starts ([`Enrichment::load`]), and stay warm:
//! no job pays for a load, and a missing runtime, a missing or corrupt model file or a
//! shape mismatch stops the worker at start with `flotilla-ai`'s typed error instead of
//! failing every job. Inference is blocking and CPU- (or GPU-) bound, so it runs on a
//! blocking section; a detector runs one inference at a time (ONNX Runtime already uses
//! the cores it is given: `--ai-threads`, every core by default), so more than one AI job
//! per CPU worker only queues inside the worker. With GPUs ([`Enrichment::load_on_gpus`])
//! the detectors are loaded once per GPU and each job takes a GPU of its own (`gpus`).
//!
//! A model with a `kserve-v2` service runs on an inference server instead
//! ([`DetectorModel::Remote`]): it is checked for readiness at start (a server without it
//! stops the worker, like a missing file), and the handlers call it through the same
//! [`DetectorModel`] as a local one. Such a worker is network-bound: run it with a high
//! `--concurrency`.
//!
//! An image is decoded with `flotilla-image` (size and pixel limits, EXIF orientation), so
//! boxes are in the upright image's pixels, the same space as its renditions. A video is
//! sampled into keyframes by FFmpeg (its I-frames, or one every `every_s` seconds, at most
//! `max_frames`), which are detected a batch at a time so memory stays bounded. Whether
//! the input is an image or a video comes from the ingest step's result (or an earlier AI
//! step's), and from the content when no such result is at hand.
//!
//! Failures: an unknown model or class, bad parameters, an input that does not decode and
//! a video given to an images-only step fail without retries (the same job fails the same
//! way); an inference or I/O failure, or FFmpeg missing on this worker, is retryable.
//!
//! # Layout
//! - this file: [`Enrichment`], the parameters and sampling the steps share, detection
//!   over an image or a video's keyframes.
//! - `model`: [`DetectorModel`], local or remote, and error mapping.
//! - `gpus`: [`GpuSlots`], one job per GPU, and finding the machine's GPUs.
//! - `detect`: `ai.detect`, detections and per-label summaries, `detections.json`.
//! - `moderate`: `ai.moderate`, flagging and the admin's release object.
//! - `redact`: `ai.redact_faces`, a copy of an image with the faces blurred.
//!
//! Speech-to-text (`ai.transcribe`) is in `crate::transcribe`; [`Enrichment::load`] skips
//! models of kind `speech`.

mod detect;
mod gpus;
mod model;
mod moderate;
mod redact;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flotilla_ai::error::INSTALL_HINT;
use flotilla_ai::{AiError, BBox, Backend, Detection, Detector, ModelConfig, ModelKind};
use flotilla_ai::{DynamicImage, ModelsConfig, Runtime};
use flotilla_worker::{JobContext, JobError, WorkerBuilder};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::Media;
use crate::step::{Step, job_error};
use model::ai_error;

pub use gpus::{GpuSlot, GpuSlots, detect_gpus};
pub use model::DetectorModel;
pub use moderate::{DEFAULT_MODERATED_CLASSES, RELEASE_OBJECT};

/// Most keyframes a step may ask for.
pub const MAX_FRAMES_LIMIT: usize = 1000;

/// The detectors a worker loaded (or connected to) at start, by model name.
#[derive(Debug)]
pub struct Enrichment {
    /// The detectors by name: one copy, or one per GPU (copy `i` on `cuda:i`).
    copies: Vec<BTreeMap<String, DetectorModel>>,
    /// With GPUs: which are free.
    gpus: Option<Arc<GpuSlots>>,
}

impl Enrichment {
    /// Loads every detector model of `config` (speech models are left to the speech
    /// crate) and connects to the served ones. The ONNX Runtime library is resolved once,
    /// from `FLOTILLA_ORT_DYLIB`, `ORT_DYLIB_PATH` or `config.runtime`; models with backend
    /// `tract` or a service do not need it. Fails on the first model that does not load or
    /// whose service does not have it ready, with that model's error. Blocking: call it
    /// from blocking code (`spawn_blocking`), as the worker does.
    pub fn load(config: &ModelsConfig) -> Result<Self, AiError> {
        Ok(Self {
            copies: vec![load_detectors(config)?],
            gpus: None,
        })
    }

    /// Like [`Enrichment::load`], once per GPU `0..gpus`: each copy of a model left on
    /// `auto` is pinned to its GPU (and runs on the CPU, with a logged warning, when that
    /// GPU cannot be used), and each job takes a GPU of its own ([`GpuSlots`]). `gpus` 0
    /// is [`Enrichment::load`].
    pub fn load_on_gpus(config: &ModelsConfig, gpus: u32) -> Result<Self, AiError> {
        if gpus == 0 {
            return Self::load(config);
        }
        let on_gpu = |index: u32| ModelsConfig {
            runtime: config.runtime.clone(),
            models: config.models.iter().map(|m| m.on_gpu(index)).collect(),
        };
        let copies = (0..gpus)
            .map(|index| load_detectors(&on_gpu(index)))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            copies,
            gpus: Some(GpuSlots::new(gpus)),
        })
    }

    /// The GPU slots, when loaded on GPUs.
    pub fn gpus(&self) -> Option<&Arc<GpuSlots>> {
        self.gpus.as_ref()
    }

    /// The detector loaded (or connected to) under `name` (its first copy).
    pub fn detector(&self, name: &str) -> Option<&DetectorModel> {
        self.copies[0].get(name)
    }

    /// The names of the loaded models, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.copies[0].keys().map(String::as_str).collect()
    }

    /// The detector a step names, in the copy of the GPU `gpu` holds (or the only copy);
    /// a model not loaded here fails the job for good.
    fn model(&self, name: &str, gpu: Option<&GpuSlot>) -> Result<DetectorModel, JobError> {
        let copy = gpu.map_or(0, |slot| slot.index() as usize);
        self.copies[copy].get(name).cloned().ok_or_else(|| {
            JobError::fatal(format!(
                "model `{name}` is not loaded on this worker; loaded models: {}",
                self.names().join(", ")
            ))
        })
    }
}

/// Loads every detector model of `config` (see [`Enrichment::load`]).
fn load_detectors(config: &ModelsConfig) -> Result<BTreeMap<String, DetectorModel>, AiError> {
    config.validate()?;
    let wanted: Vec<&ModelConfig> = config
        .models
        .iter()
        .filter(|m| m.kind == ModelKind::Detector)
        .collect();
    if wanted.is_empty() {
        return Err(AiError::Config {
            field: "models".into(),
            message: format!("names no model of kind `detector`; {INSTALL_HINT}"),
        });
    }
    let mut runtime = wanted
        .iter()
        .any(|m| m.backend != Backend::Tract && !m.is_remote())
        .then(|| Runtime::resolve(config.runtime.as_deref()));
    let mut detectors = BTreeMap::new();
    for model in wanted {
        let detector = match model.is_remote() {
            true => DetectorModel::connect_blocking(model)?,
            false => DetectorModel::Local(Arc::new(load_detector(model, &mut runtime)?)),
        };
        detectors.insert(model.name.clone(), detector);
    }
    Ok(detectors)
}

/// Loads one detector with the runtime resolved once for all (`None` when no model
/// needs it). A runtime that failed to resolve is reported by the first model needing it.
fn load_detector(
    model: &ModelConfig,
    runtime: &mut Option<Result<&'static Runtime, AiError>>,
) -> Result<Detector, AiError> {
    let loaded = runtime.as_ref().and_then(|r| r.as_ref().ok()).copied();
    match (model.backend, loaded) {
        (Backend::Tract, _) => Detector::load_tract(model),
        (_, Some(runtime)) => Detector::load_with(runtime, model),
        (Backend::Ort, None) => Err(runtime_error(runtime)),
        // `auto` without ONNX Runtime: tract when flotilla-ai is built with it.
        _ => match Detector::load(model) {
            Err(AiError::MissingRuntime { .. }) => Err(runtime_error(runtime)),
            other => other,
        },
    }
}

fn runtime_error(runtime: &mut Option<Result<&'static Runtime, AiError>>) -> AiError {
    match runtime.take() {
        Some(Err(e)) => e,
        _ => AiError::MissingRuntime {
            path: None,
            reason: "no ONNX Runtime library is configured".into(),
            install: INSTALL_HINT.into(),
        },
    }
}

/// Adds the AI handlers to `builder`, sharing the loaded models.
pub(crate) fn register(
    builder: WorkerBuilder,
    media: &Arc<Media>,
    enrich: &Arc<Enrichment>,
) -> WorkerBuilder {
    let (m, e) = (media.clone(), enrich.clone());
    let builder = builder.handler("ai.detect", move |ctx: JobContext| {
        detect::run(m.clone(), e.clone(), ctx)
    });
    let (m, e) = (media.clone(), enrich.clone());
    let builder = builder.handler("ai.moderate", move |ctx: JobContext| {
        moderate::run(m.clone(), e.clone(), ctx)
    });
    let (m, e) = (media.clone(), enrich.clone());
    builder.handler("ai.redact_faces", move |ctx: JobContext| {
        redact::run(m.clone(), e.clone(), ctx)
    })
}

/// What an input is, as far as detection goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MediaKind {
    Image,
    Video,
}

impl MediaKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Image => "image",
            Self::Video => "video",
        }
    }
}

/// The input's kind: from a dependency's result (`type` from ingest, `media` from an AI
/// step), else from its content.
fn media_kind(step: &Step, path: &Path) -> Result<MediaKind, JobError> {
    let declared = step.inputs.values().find_map(|result| {
        ["type", "media"]
            .iter()
            .find_map(|k| result.get(*k).and_then(Value::as_str))
            .map(str::to_owned)
    });
    let kind = match declared {
        Some(kind) => kind,
        None => sniff(path)?.to_owned(),
    };
    match kind.as_str() {
        "image" => Ok(MediaKind::Image),
        "video" => Ok(MediaKind::Video),
        other => Err(JobError::fatal(format!(
            "{} is {other}: detection needs an image or a video",
            step.input_name
        ))),
    }
}

fn sniff(path: &Path) -> Result<&'static str, JobError> {
    let kind = infer::get_from_path(path)
        .map_err(|e| JobError::retryable(format!("cannot read the input: {e}")))?;
    Ok(match kind.map(|k| k.matcher_type()) {
        Some(infer::MatcherType::Image) => "image",
        Some(infer::MatcherType::Video) => "video",
        Some(infer::MatcherType::Audio) => "audio",
        _ => "not an image, audio or video format",
    })
}

/// An `ai.*` job opened by [`open_step`].
struct Opened<P> {
    step: Step,
    params: P,
    detector: DetectorModel,
    /// The GPU the job holds until it ends, on a worker with GPUs.
    gpu: Option<GpuSlot>,
}

/// Opens an `ai.*` job of `kind`, the start every handler shares: its step, its
/// parameters, a GPU of its own when the worker has GPUs (waiting for one to be free), and
/// the loaded detector they name, which must know the classes they name (`names` picks
/// the model's name and those classes out of the parameters). Each failure is fatal: the
/// same job would fail the same way.
async fn open_step<P: DeserializeOwned>(
    media: &Media,
    enrich: &Enrichment,
    ctx: &JobContext,
    kind: &str,
    names: fn(&P) -> (&str, &[String]),
) -> Result<Opened<P>, JobError> {
    let step = Step::open(media, ctx)?;
    let params: P = params(&step, kind)?;
    let gpu = match enrich.gpus() {
        Some(slots) => Some(slots.acquire().await),
        None => None,
    };
    let (model, classes) = names(&params);
    let detector = enrich.model(model, gpu.as_ref())?;
    known_classes(&detector, classes)?;
    Ok(Opened {
        step,
        params,
        detector,
        gpu,
    })
}

/// Where a job's detector ran: `{"device": "cpu"}` or `{"device": "cuda:1", "gpu": 1}`.
fn placement(detector: &DetectorModel, gpu: Option<&GpuSlot>) -> Value {
    let device = match detector {
        DetectorModel::Local(d) => d.device().to_string(),
        DetectorModel::Remote(d) => format!("service {}", d.config().name),
    };
    match gpu {
        Some(slot) => json!({ "device": device, "gpu": slot.index() }),
        None => json!({ "device": device }),
    }
}

/// Reads a step's parameters into `T` (unknown keys refused).
fn params<T: DeserializeOwned>(step: &Step, kind: &str) -> Result<T, JobError> {
    serde_json::from_value(Value::Object(step.params.clone()))
        .map_err(|e| JobError::fatal(format!("{kind} parameters: {e}")))
}

/// Checks a score parameter is in (0, 1].
fn unit(name: &str, value: f32) -> Result<f32, JobError> {
    if value > 0.0 && value <= 1.0 {
        Ok(value)
    } else {
        Err(JobError::fatal(format!(
            "{name} is {value}; it must be in (0, 1]"
        )))
    }
}

/// Checks every class name is one of the model's.
fn known_classes(detector: &DetectorModel, classes: &[String]) -> Result<(), JobError> {
    let known = detector.classes();
    match classes.iter().find(|c| !known.contains(c)) {
        None => Ok(()),
        Some(unknown) => Err(JobError::fatal(format!(
            "class `{unknown}` is not one of model `{}`'s classes: {}",
            detector.config().name,
            known.join(", ")
        ))),
    }
}

/// How a video is sampled: every keyframe or one every `every`, at most `cap`.
#[derive(Debug, Clone, Copy)]
struct Sampling {
    every: Option<Duration>,
    cap: usize,
}

impl Sampling {
    fn new(every_s: Option<f64>, max_frames: usize) -> Result<Self, JobError> {
        let every = every_s
            .map(|s| {
                Duration::try_from_secs_f64(s)
                    .ok()
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| JobError::fatal(format!("every_s is {s}; it must be > 0")))
            })
            .transpose()?;
        if !(1..=MAX_FRAMES_LIMIT).contains(&max_frames) {
            return Err(JobError::fatal(format!(
                "max_frames is {max_frames}; it must be between 1 and {MAX_FRAMES_LIMIT}"
            )));
        }
        Ok(Self {
            every,
            cap: max_frames,
        })
    }
}

fn default_max_frames() -> usize {
    60
}

/// The default model of the face steps.
fn faces() -> String {
    flotilla_ai::config::FACES_MODEL.to_owned()
}

/// What a detector found in an input: one frame for an image, its keyframes for a video.
struct Found {
    kind: MediaKind,
    /// The image's upright size (images only).
    size: Option<(u32, u32)>,
    frames: Vec<(Duration, Vec<Detection>)>,
}

impl Found {
    fn detections(&self) -> impl Iterator<Item = &Detection> {
        self.frames.iter().flat_map(|(_, found)| found)
    }
}

/// Downloads the input and runs `detector` over it (the image, or the video's keyframes).
async fn detect_input(
    media: &Media,
    step: &Step,
    detector: DetectorModel,
    sampling: Sampling,
) -> Result<Found, JobError> {
    let (path, _) = step.download_input(media).await?;
    let kind = media_kind(step, &path)?;
    if kind == MediaKind::Video && media.ffmpeg.is_none() {
        return Err(JobError::retryable(
            "FFmpeg is not installed on this worker: it samples a video's keyframes",
        ));
    }
    let input = step.input_name.as_str();
    match kind {
        MediaKind::Image => {
            let image = decode_image(media, step, path).await?;
            let pixels = std::slice::from_ref(image.pixels());
            let found = detector.detect_images(input, pixels).await?;
            Ok(Found {
                kind,
                size: Some((image.width(), image.height())),
                frames: vec![(Duration::ZERO, found.into_iter().next().unwrap_or_default())],
            })
        }
        MediaKind::Video => Ok(Found {
            kind,
            size: None,
            frames: detect_video(&detector, input, path, sampling).await?,
        }),
    }
}

/// Decodes the step's input image (size and pixel limits, EXIF orientation).
async fn decode_image(
    media: &Media,
    step: &Step,
    path: PathBuf,
) -> Result<flotilla_image::Image, JobError> {
    let (limits, name) = (media.limits.image, step.input_name.clone());
    blocking(move || flotilla_image::decode(&path, &limits).map_err(|e| image_error(&name, e)))
        .await
}

/// Extracts keyframes and detects them a batch at a time (only one batch decoded at once).
async fn detect_video(
    detector: &DetectorModel,
    input: &str,
    path: PathBuf,
    sampling: Sampling,
) -> Result<Vec<(Duration, Vec<Detection>)>, JobError> {
    let name = input.to_owned();
    let keyframes = blocking(move || {
        flotilla_ai::keyframes(&path, sampling.every, sampling.cap).map_err(|e| ai_error(&name, e))
    })
    .await?;
    let mut frames = Vec::with_capacity(keyframes.frames.len());
    for batch in keyframes.frames.chunks(detector.batch_size()) {
        let (files, name): (Vec<PathBuf>, _) = (
            batch.iter().map(|(_, f)| f.clone()).collect(),
            input.to_owned(),
        );
        let images: Vec<DynamicImage> = blocking(move || {
            let open = |file: &PathBuf| flotilla_ai::check::open_image(file);
            files
                .iter()
                .map(open)
                .collect::<Result<_, _>>()
                .map_err(|e| ai_error(&name, e))
        })
        .await?;
        let found = detector.detect_images(input, &images).await?;
        frames.extend(batch.iter().map(|(at, _)| *at).zip(found));
    }
    Ok(frames)
}

/// Runs blocking work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, JobError> + Send + 'static,
) -> Result<T, JobError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| JobError::retryable(format!("inference stopped: {e}")))?
}

fn image_error(input: &str, e: flotilla_image::ImageError) -> JobError {
    job_error(e.is_retryable(), format!("{input}: {e}"))
}

/// Writes `value` as pretty JSON to a scratch file; its path.
fn write_json(step: &Step, name: &str, value: &Value) -> Result<PathBuf, JobError> {
    let path = step.path(name);
    let text = serde_json::to_vec_pretty(value)?;
    std::fs::write(&path, text)
        .map_err(|e| JobError::retryable(format!("cannot write {name}: {e}")))?;
    Ok(path)
}

/// A score for JSON, to 4 decimals.
fn score(value: f32) -> f64 {
    (f64::from(value) * 1e4).round() / 1e4
}

/// A box for JSON, to 0.1 pixel.
fn bbox(b: &BBox) -> Value {
    let r = |v: f32| (f64::from(v) * 10.0).round() / 10.0;
    json!({ "x": r(b.x), "y": r(b.y), "width": r(b.width), "height": r(b.height) })
}

/// One detection for JSON.
fn detection(d: &Detection) -> Value {
    json!({ "label": d.label, "score": score(d.score), "box": bbox(&d.bbox) })
}
