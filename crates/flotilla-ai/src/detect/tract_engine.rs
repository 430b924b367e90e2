//! The tract engine: pure-Rust ONNX inference on the CPU, for machines without the ONNX
//! Runtime library (feature `tract`).
//!
//! tract optimises the graph for concrete input shapes, so the input is fixed at
//! `[1, 3, S, S]` (one image per run) before optimising; the declared input is checked
//! against the configuration first, so a mismatch is still [`AiError::WrongShape`] rather
//! than a shape-inference failure.

use std::sync::Arc;

use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

use super::detector::check_input;
use super::engine::TensorInfo;
use crate::config::ModelConfig;
use crate::error::AiError;

/// An optimised, runnable tract plan and its input and output descriptions.
pub(crate) struct TractModel {
    plan: Arc<TypedRunnableModel>,
    inputs: Vec<TensorInfo>,
    outputs: Vec<TensorInfo>,
}

impl TractModel {
    /// Parses, checks, fixes the input shape and optimises the model.
    pub(crate) fn load(config: &ModelConfig) -> Result<Self, AiError> {
        let corrupt = |e: TractError| AiError::CorruptModel {
            path: config.path.clone(),
            reason: format!("{e:#}"),
        };
        // Intermediate and output shapes in the file name a symbolic batch that would not
        // unify with the fixed input; tract re-infers them all from the input.
        let model = tract_onnx::onnx()
            .with_ignore_output_shapes(true)
            .with_ignore_value_info(true)
            .model_for_path(&config.path)
            .map_err(corrupt)?;
        check_input(config, &declared_inputs(&model).map_err(corrupt)?)?;
        let size = config.input_size as usize;
        let fixed = [1, 3, size, size];
        let typed = model
            .with_input_fact(0, f32::fact(fixed).into())
            .and_then(|m| m.into_optimized())
            .map_err(corrupt)?;
        let outputs = typed_outputs(&typed).map_err(corrupt)?;
        let plan = typed.into_runnable().map_err(corrupt)?;
        let input = TensorInfo {
            name: "input".to_owned(),
            float32: true,
            dims: fixed.iter().map(|&d| d as i64).collect(),
        };
        Ok(Self {
            plan,
            inputs: vec![input],
            outputs,
        })
    }

    pub(crate) fn inputs(&self) -> Vec<TensorInfo> {
        self.inputs.clone()
    }

    pub(crate) fn outputs(&self) -> Vec<TensorInfo> {
        self.outputs.clone()
    }

    /// Runs one batch; returns the first output's shape and values.
    pub(crate) fn run(
        &self,
        input: Vec<f32>,
        shape: [usize; 4],
    ) -> Result<(Vec<usize>, Vec<f32>), String> {
        let tensor = Tensor::from_shape(&shape, &input).map_err(|e| format!("{e:#}"))?;
        let outputs = self
            .plan
            .run(tvec!(tensor.into()))
            .map_err(|e| format!("{e:#}"))?;
        let view = outputs[0]
            .to_plain_array_view::<f32>()
            .map_err(|e| format!("{e:#}"))?;
        Ok((view.shape().to_vec(), view.iter().copied().collect()))
    }
}

/// The inputs as the file declares them (-1 for dynamic dimensions).
fn declared_inputs(model: &InferenceModel) -> TractResult<Vec<TensorInfo>> {
    (0..model.input_outlets()?.len())
        .map(|i| {
            let fact = model.input_fact(i)?;
            let dims = fact
                .shape
                .dims()
                .map(|d| d.concretize().and_then(|d| d.to_i64().ok()).unwrap_or(-1))
                .collect();
            let float32 = fact
                .datum_type
                .concretize()
                .is_none_or(|t| t == f32::datum_type());
            Ok(TensorInfo {
                name: model.node(model.input_outlets()?[i].node).name.clone(),
                float32,
                dims,
            })
        })
        .collect()
}

/// The outputs after typing with the fixed input (concrete where tract could infer them).
fn typed_outputs(model: &TypedModel) -> TractResult<Vec<TensorInfo>> {
    (0..model.output_outlets()?.len())
        .map(|i| {
            let fact = model.output_fact(i)?;
            let dims = fact
                .shape
                .iter()
                .map(|d| d.to_i64().unwrap_or(-1))
                .collect();
            Ok(TensorInfo {
                name: model.node(model.output_outlets()?[i].node).name.clone(),
                float32: fact.datum_type == f32::datum_type(),
                dims,
            })
        })
        .collect()
}
