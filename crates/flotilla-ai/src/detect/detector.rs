//! [`Detector`]: a YOLOv8/11-style ONNX model behind an inference [`Engine`].
//!
//! Loading checks everything that could otherwise fail on the first job: the file exists
//! and parses, the single input is float `[B, 3, S, S]` with S the configured input size
//! (or dynamic), and the output is `[B, 4 + C, N]` (or transposed) with C the number of
//! configured class names. ONNX Runtime's `Session::run` needs `&mut`, so the session sits
//! in a `Mutex`: a `Detector` is `Send + Sync` and can be shared by `spawn_blocking`
//! tasks, which run one at a time on it (ONNX Runtime already uses every core in a run).

use image::DynamicImage;

use super::engine::{Engine, TensorInfo};
use super::{Candidate, Detection, Letterbox, decode_yolo, letterbox, nms_per_class};
use crate::config::{Backend, Device, ModelConfig, ModelKind};
use crate::error::AiError;
use crate::runtime::Runtime;

/// Images per inference run when the model's batch dimension is dynamic.
pub const MAX_BATCH: usize = 8;

/// A loaded detector.
#[derive(Debug)]
pub struct Detector {
    config: ModelConfig,
    classes: Vec<String>,
    /// Images per run: 1 when the model's batch dimension is fixed at 1.
    batch: usize,
    engine: Engine,
}

impl Detector {
    /// Loads the model with the engine its `backend` asks for. `auto` uses ONNX Runtime:
    /// the one already loaded in this process, or the one named by `FLOTILLA_ORT_DYLIB` /
    /// `ORT_DYLIB_PATH` (see [`Runtime::resolve`]); without one, it falls back to tract
    /// when built with the `tract` feature, and otherwise fails with
    /// [`AiError::MissingRuntime`].
    pub fn load(config: &ModelConfig) -> Result<Self, AiError> {
        match config.backend {
            Backend::Ort => Self::load_with(Runtime::resolve(None)?, config),
            Backend::Tract => Self::load_tract(config),
            Backend::Auto => match Runtime::resolve(None) {
                Ok(runtime) => Self::load_with(runtime, config),
                Err(e) if cfg!(feature = "tract") => {
                    tracing::warn!(model = %config.name, error = %e, "backend auto: using tract");
                    Self::load_tract(config)
                }
                Err(e) => Err(e),
            },
        }
    }

    /// Loads the model with ONNX Runtime from an explicit runtime.
    pub fn load_with(runtime: &Runtime, config: &ModelConfig) -> Result<Self, AiError> {
        let classes = preflight(config)?;
        Self::checked(config, classes, Engine::ort(runtime, config)?)
    }

    /// Loads the model with tract (pure Rust, CPU); needs the `tract` feature.
    pub fn load_tract(config: &ModelConfig) -> Result<Self, AiError> {
        let classes = preflight(config)?;
        #[cfg(feature = "tract")]
        {
            let model = super::tract_engine::TractModel::load(config)?;
            Self::checked(config, classes, Engine::Tract(model))
        }
        #[cfg(not(feature = "tract"))]
        {
            let _ = classes;
            let message = "is `tract`, but flotilla-ai was built without its `tract` feature";
            Err(AiError::config(
                format!("models.{}.backend", config.name),
                message,
            ))
        }
    }

    fn checked(
        config: &ModelConfig,
        classes: Vec<String>,
        engine: Engine,
    ) -> Result<Self, AiError> {
        let batch = check_input(config, &engine.inputs())?;
        check_output(config, classes.len(), &engine.outputs())?;
        tracing::info!(
            model = %config.name,
            backend = %engine.backend(),
            device = %engine.device(),
            batch,
            classes = classes.len(),
            "detector loaded"
        );
        Ok(Self {
            config: config.clone(),
            classes,
            batch,
            engine,
        })
    }

    /// Detects objects in one image; boxes are in the image's pixels.
    pub fn detect(&self, image: &DynamicImage) -> Result<Vec<Detection>, AiError> {
        Ok(self
            .detect_batch(std::slice::from_ref(image))?
            .pop()
            .unwrap_or_default())
    }

    /// Detects objects in several images, one result per image in order. Runs up to
    /// [`MAX_BATCH`] images at once when the model's batch dimension is dynamic (as it is
    /// for both default models), one per run when it is fixed at 1.
    pub fn detect_batch(&self, images: &[DynamicImage]) -> Result<Vec<Vec<Detection>>, AiError> {
        let mut results = Vec::with_capacity(images.len());
        for group in images.chunks(self.batch) {
            results.extend(self.run_group(group)?);
        }
        Ok(results)
    }

    /// The configuration it was loaded from.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The class names, in index order.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// The device it runs on (`auto` resolved to `cuda:0` or `cpu`).
    pub fn device(&self) -> Device {
        self.engine.device()
    }

    /// The engine it runs on (`auto` resolved to `ort` or `tract`).
    pub fn backend(&self) -> Backend {
        self.engine.backend()
    }

    /// Images per inference run.
    pub fn batch_size(&self) -> usize {
        self.batch
    }

    fn run_group(&self, group: &[DynamicImage]) -> Result<Vec<Vec<Detection>>, AiError> {
        let size = self.config.input_size as usize;
        let mut input = Vec::with_capacity(group.len() * 3 * size * size);
        let mut placements = Vec::with_capacity(group.len());
        for image in group {
            let (tensor, placement) = letterbox(&image.to_rgb8(), self.config.input_size);
            input.extend_from_slice(&tensor);
            placements.push(placement);
        }
        let candidates = self.infer(input, group.len())?;
        Ok(candidates
            .into_iter()
            .zip(&placements)
            .map(|(found, placement)| self.to_detections(found, placement))
            .collect())
    }

    /// One run over `n` letterboxed images; the candidates of each after NMS.
    fn infer(&self, input: Vec<f32>, n: usize) -> Result<Vec<Vec<Candidate>>, AiError> {
        let size = self.config.input_size as usize;
        let (shape, data) = self
            .engine
            .run(input, [n, 3, size, size])
            .map_err(|reason| AiError::Inference {
                model: self.config.name.clone(),
                reason,
            })?;
        let [_, rows, anchors] = self.output_dims(&shape, n)?;
        data.chunks(rows * anchors)
            .map(|one| {
                let found = decode_yolo(
                    one,
                    [1, rows, anchors],
                    self.classes.len(),
                    self.config.score_threshold,
                )
                .map_err(|e| self.rename(e))?;
                Ok(nms_per_class(found, self.config.iou_threshold))
            })
            .collect()
    }

    fn output_dims(&self, shape: &[usize], n: usize) -> Result<[usize; 3], AiError> {
        match *shape {
            [b, r, a] if b == n && r > 0 && a > 0 => Ok([n, r, a]),
            _ => Err(AiError::WrongShape {
                model: self.config.name.clone(),
                what: "output".to_owned(),
                expected: format!("[{n}, {}, N]", 4 + self.classes.len()),
                found: format!("{shape:?}"),
            }),
        }
    }

    fn to_detections(&self, found: Vec<Candidate>, placement: &Letterbox) -> Vec<Detection> {
        found
            .into_iter()
            .map(|c| Detection {
                label: self.classes[c.class_id as usize].clone(),
                class_id: c.class_id,
                score: c.score,
                bbox: placement.to_original(c.bbox),
            })
            .filter(|d| d.bbox.area() > 0.0)
            .collect()
    }

    fn rename(&self, e: AiError) -> AiError {
        match e {
            AiError::WrongShape {
                what,
                expected,
                found,
                ..
            } => AiError::WrongShape {
                model: self.config.name.clone(),
                what,
                expected,
                found,
            },
            other => other,
        }
    }
}

/// Validates the configuration, checks the file is there and reads the class names.
fn preflight(config: &ModelConfig) -> Result<Vec<String>, AiError> {
    config.validate()?;
    if config.kind != ModelKind::Detector {
        let message = "is `speech`; only `detector` models load as a Detector";
        return Err(AiError::config(
            format!("models.{}.kind", config.name),
            message,
        ));
    }
    if !config.path.is_file() {
        return Err(AiError::MissingModel {
            path: config.path.clone(),
        });
    }
    let classes = config.classes.resolve()?;
    if classes.is_empty() {
        return Err(AiError::config(
            format!("models.{}.classes", config.name),
            "names no classes",
        ));
    }
    Ok(classes)
}

/// Checks the image input; returns the number of images per run.
pub(super) fn check_input(config: &ModelConfig, inputs: &[TensorInfo]) -> Result<usize, AiError> {
    let size = i64::from(config.input_size);
    let wrong = || AiError::WrongShape {
        model: config.name.clone(),
        what: "input".to_owned(),
        expected: format!("a float32 tensor [1, 3, {size}, {size}]"),
        found: describe(inputs),
    };
    let [input] = inputs else { return Err(wrong()) };
    let fits = |dim: i64, want: i64| dim == want || dim < 0;
    match *input.dims {
        [b, c, h, w]
            if input.float32
                && (b == 1 || b < 0)
                && fits(c, 3)
                && fits(h, size)
                && fits(w, size) =>
        {
            Ok(if b == 1 { 1 } else { MAX_BATCH })
        }
        _ => Err(wrong()),
    }
}

/// Checks that the first output has room for 4 box values and one score per class.
fn check_output(
    config: &ModelConfig,
    classes: usize,
    outputs: &[TensorInfo],
) -> Result<(), AiError> {
    let rows = 4 + classes as i64;
    let wrong = || AiError::WrongShape {
        model: config.name.clone(),
        what: "output".to_owned(),
        expected: format!("[1, {rows}, N] or [1, N, {rows}] (4 box values + {classes} classes)"),
        found: describe(outputs),
    };
    match outputs.first() {
        // A dynamic dimension could be either; a known one that fits neither is wrong.
        Some(TensorInfo {
            float32: true,
            dims,
            ..
        }) => match **dims {
            [_, r, n] if r == rows || n == rows || (r < 0 && n < 0) => Ok(()),
            _ => Err(wrong()),
        },
        _ => Err(wrong()),
    }
}

fn describe(tensors: &[TensorInfo]) -> String {
    tensors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn detector_is_send_and_sync() {
        assert_send_sync::<Detector>();
    }
}
