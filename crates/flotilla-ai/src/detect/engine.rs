//! The inference engines behind a [`Detector`](super::Detector): ONNX Runtime, and tract
//! (pure Rust) with the `tract` feature.
//!
//! Both are reduced to the two things a detector needs: a description of the model's
//! inputs and outputs ([`TensorInfo`], checked against the configuration at load) and one
//! run from a flat CHW batch to a flat output with its shape.
//!
//! ONNX Runtime sessions are opened with every graph optimisation on, one intra-op thread
//! per core and operators run one after another (a YOLO graph is a chain, so inter-op
//! parallelism only adds thread hand-offs), with memory patterns reused between runs.
//!
//! It also keeps the per-thread stage clock
//! ([`Detector::take_stage_times`](super::Detector::take_stage_times)): the pure pieces and
//! the engine add their time to it, so `flotilla bench ai` can split a detection into
//! pre-processing, inference and post-processing without a second code path.

use std::cell::Cell;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ort::ep::{self, ExecutionProvider, ExecutionProviderDispatch};
use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::value::{Outlet, Tensor, TensorElementType, ValueType};

use crate::config::{Backend, Device, ModelConfig};
use crate::error::AiError;
use crate::runtime::Runtime;

/// A model input or output as declared: name, whether it is float32, dimensions (-1 when
/// dynamic).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TensorInfo {
    pub(crate) name: String,
    pub(crate) float32: bool,
    pub(crate) dims: Vec<i64>,
}

impl fmt::Display for TensorInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dims: Vec<String> = self
            .dims
            .iter()
            .map(|&d| if d < 0 { "?".to_owned() } else { d.to_string() })
            .collect();
        let ty = if self.float32 {
            "float32"
        } else {
            "non-float32"
        };
        write!(f, "`{}` {ty} [{}]", self.name, dims.join(", "))
    }
}

/// A stage of a detection, as the stage clock counts it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stage {
    /// Letterboxing into the input tensor.
    Pre = 0,
    /// The engine's run.
    Inference = 1,
    /// Decoding the output and NMS.
    Post = 2,
}

thread_local! {
    static STAGE_TIMES: Cell<[Duration; 3]> = const { Cell::new([Duration::ZERO; 3]) };
}

/// Adds the time since `started` to `stage` on this thread's stage clock.
pub(crate) fn record(stage: Stage, started: Instant) {
    let elapsed = started.elapsed();
    STAGE_TIMES.with(|times| {
        let mut all = times.get();
        all[stage as usize] += elapsed;
        times.set(all);
    });
}

impl super::Detector {
    /// The time this thread spent since the last call in pre-processing (letterbox),
    /// inference (the engine's run) and post-processing (decode and NMS), in that order;
    /// resets the clock. Detection runs on the calling thread, so taking the clock before
    /// and after one [`detect`](Self::detect) gives that detection's stages.
    pub fn take_stage_times() -> [Duration; 3] {
        STAGE_TIMES.with(|times| times.replace([Duration::ZERO; 3]))
    }
}

/// A loaded model, ready to run.
pub(crate) enum Engine {
    Ort {
        session: Mutex<Session>,
        device: Device,
    },
    #[cfg(feature = "tract")]
    Tract(super::tract_engine::TractModel),
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Engine({}, {})", self.backend(), self.device())
    }
}

impl Engine {
    /// Opens the model with ONNX Runtime on the configured device.
    pub(crate) fn ort(runtime: &Runtime, config: &ModelConfig) -> Result<Self, AiError> {
        let (session, device) = open_session(runtime, config)?;
        Ok(Self::Ort {
            session: Mutex::new(session),
            device,
        })
    }

    /// Which engine this is.
    pub(crate) fn backend(&self) -> Backend {
        match self {
            Self::Ort { .. } => Backend::Ort,
            #[cfg(feature = "tract")]
            Self::Tract(_) => Backend::Tract,
        }
    }

    /// Where it runs.
    pub(crate) fn device(&self) -> Device {
        match self {
            Self::Ort { device, .. } => *device,
            #[cfg(feature = "tract")]
            Self::Tract(_) => Device::Cpu,
        }
    }

    /// The declared inputs.
    pub(crate) fn inputs(&self) -> Vec<TensorInfo> {
        match self {
            Self::Ort { session, .. } => outlets(lock(session).inputs()),
            #[cfg(feature = "tract")]
            Self::Tract(model) => model.inputs(),
        }
    }

    /// The declared outputs.
    pub(crate) fn outputs(&self) -> Vec<TensorInfo> {
        match self {
            Self::Ort { session, .. } => outlets(lock(session).outputs()),
            #[cfg(feature = "tract")]
            Self::Tract(model) => model.outputs(),
        }
    }

    /// Runs the model on a `shape` batch; returns the first output's shape and values.
    pub(crate) fn run(
        &self,
        input: Vec<f32>,
        shape: [usize; 4],
    ) -> Result<(Vec<usize>, Vec<f32>), String> {
        match self {
            Self::Ort { session, .. } => run_ort(&mut lock(session), input, shape),
            #[cfg(feature = "tract")]
            Self::Tract(model) => model.run(input, shape),
        }
    }
}

fn lock(session: &Mutex<Session>) -> std::sync::MutexGuard<'_, Session> {
    session
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn run_ort(
    session: &mut Session,
    input: Vec<f32>,
    shape: [usize; 4],
) -> Result<(Vec<usize>, Vec<f32>), String> {
    let started = Instant::now();
    let tensor = Tensor::from_array((shape, input)).map_err(|e| e.to_string())?;
    let outputs = session
        .run(ort::inputs![tensor])
        .map_err(|e| e.to_string())?;
    let (shape, data) = outputs[0]
        .try_extract_tensor::<f32>()
        .map_err(|e| e.to_string())?;
    let dims = shape.iter().map(|&d| d.max(0) as usize).collect();
    let data = data.to_vec();
    record(Stage::Inference, started);
    Ok((dims, data))
}

fn outlets(outlets: &[Outlet]) -> Vec<TensorInfo> {
    outlets
        .iter()
        .map(|o| match o.dtype() {
            ValueType::Tensor { ty, shape, .. } => TensorInfo {
                name: o.name().to_owned(),
                float32: *ty == TensorElementType::Float32,
                dims: shape.to_vec(),
            },
            _ => TensorInfo {
                name: o.name().to_owned(),
                float32: false,
                dims: Vec::new(),
            },
        })
        .collect()
}

/// Opens the session on the configured device; `auto` falls back to the CPU with a log line.
fn open_session(runtime: &Runtime, config: &ModelConfig) -> Result<(Session, Device), AiError> {
    let (providers, device) = match config.device {
        Device::Cpu => (Vec::new(), Device::Cpu),
        Device::Cuda(n) => (vec![cuda(n)?], Device::Cuda(n)),
        Device::Auto => match ep::CUDA::is_available() {
            Ok(true) => (vec![cuda(0)?], Device::Cuda(0)),
            _ => {
                let model = config.name.as_str();
                tracing::info!(
                    model,
                    "device auto: this ONNX Runtime has no CUDA; using the CPU"
                );
                (Vec::new(), Device::Cpu)
            }
        },
    };
    match commit(runtime, config, &providers) {
        Err(AiError::Device { reason, .. })
            if config.device == Device::Auto || config.cpu_fallback =>
        {
            let model = config.name.as_str();
            let device = config.device.to_string();
            tracing::warn!(model, device, %reason, "CUDA cannot be used; using the CPU");
            Ok((commit(runtime, config, &[])?, Device::Cpu))
        }
        other => other.map(|session| (session, device)),
    }
}

fn cuda(device_id: u32) -> Result<ExecutionProviderDispatch, AiError> {
    let id = i32::try_from(device_id)
        .map_err(|_| AiError::config("device", format!("cuda:{device_id} is out of range")))?;
    Ok(ep::CUDA::default()
        .with_device_id(id)
        .build()
        .error_on_failure())
}

/// CPU options: full graph optimisation, the model's `threads` intra-op threads (one per
/// core when unset), no spinning while idle (so that several workers or jobs on one
/// machine share its cores instead of burning them), sequential operators, memory
/// patterns on.
fn tuned(builder: SessionBuilder, threads: Option<usize>) -> Result<SessionBuilder, String> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let text = |e: ort::Error<SessionBuilder>| e.to_string();
    builder
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(text)?
        .with_intra_threads(threads.unwrap_or(cores).max(1))
        .map_err(text)?
        .with_intra_op_spinning(false)
        .map_err(text)?
        .with_inter_threads(1)
        .map_err(text)?
        .with_parallel_execution(false)
        .map_err(text)?
        .with_memory_pattern(true)
        .map_err(text)
}

fn commit(
    runtime: &Runtime,
    config: &ModelConfig,
    providers: &[ExecutionProviderDispatch],
) -> Result<Session, AiError> {
    let device_error = |e: &dyn fmt::Display| AiError::Device {
        device: config.device.to_string(),
        reason: format!(
            "{e}; CUDA needs an onnxruntime-gpu runtime library \
             (FLOTILLA_ORT_DYLIB) and the CUDA libraries"
        ),
    };
    let builder = Session::builder(runtime.environment()).map_err(|e| device_error(&e))?;
    let mut builder = tuned(builder, config.threads)
        .map_err(|e| device_error(&e))?
        .with_execution_providers(providers)
        .map_err(|e| device_error(&e))?;
    builder
        .commit_from_file(&config.path)
        .map_err(|e| AiError::CorruptModel {
            path: config.path.clone(),
            reason: e.to_string(),
        })
}
