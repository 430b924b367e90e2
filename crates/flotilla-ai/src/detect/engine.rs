//! The inference engines behind a [`Detector`](super::Detector): ONNX Runtime, and tract
//! (pure Rust) with the `tract` feature.
//!
//! Both are reduced to the two things a detector needs: a description of the model's
//! inputs and outputs ([`TensorInfo`], checked against the configuration at load) and one
//! run from a flat CHW batch to a flat output with its shape.

use std::fmt;
use std::sync::Mutex;

use ort::ep::{self, ExecutionProvider, ExecutionProviderDispatch};
use ort::session::Session;
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
    let tensor = Tensor::from_array((shape, input)).map_err(|e| e.to_string())?;
    let outputs = session
        .run(ort::inputs![tensor])
        .map_err(|e| e.to_string())?;
    let (shape, data) = outputs[0]
        .try_extract_tensor::<f32>()
        .map_err(|e| e.to_string())?;
    let dims = shape.iter().map(|&d| d.max(0) as usize).collect();
    Ok((dims, data.to_vec()))
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
        Err(AiError::Device { reason, .. }) if config.device == Device::Auto => {
            let model = config.name.as_str();
            tracing::warn!(model, %reason, "device auto: CUDA failed; using the CPU");
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
    let mut builder = builder
        .with_execution_providers(providers)
        .map_err(|e| device_error(&e))?;
    builder
        .commit_from_file(&config.path)
        .map_err(|e| AiError::CorruptModel {
            path: config.path.clone(),
            reason: e.to_string(),
        })
}
