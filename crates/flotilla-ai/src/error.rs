//! [`AiError`]: the one error type of this crate.
//!
//! Start-up problems (no runtime library, a missing or corrupt model file, a model whose
//! shapes do not match its configuration) each have their own variant, and their messages
//! say what to install or change, because they are shown to an operator running `flotilla
//! models check` or starting a worker, not to a developer.
//!
//! [`InstallError`] is the smaller error of the installation helpers that flotilla-speech
//! shares, so that each crate keeps its own variants and messages.

use std::io;
use std::path::PathBuf;

/// What to run to get the runtime and the default models; quoted by the start-up errors.
pub const INSTALL_HINT: &str = "run `flotilla models install` (or scripts/models.sh) to install \
     the ONNX Runtime library and the default models, or set FLOTILLA_ORT_DYLIB to a \
     libonnxruntime.so";

/// Everything that can go wrong while installing, loading or running a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AiError {
    /// The ONNX Runtime shared library is not configured, not there, or not loadable.
    #[error("ONNX Runtime library {}: {reason}; {install}", display_opt(path))]
    MissingRuntime {
        /// The path that was tried, if one was configured.
        path: Option<PathBuf>,
        /// Why it could not be used.
        reason: String,
        /// What to install or set to fix it.
        install: String,
    },
    /// The configured model file does not exist.
    #[error("model file {} does not exist; {INSTALL_HINT}, or fix the model's `path`", path.display())]
    MissingModel {
        /// The configured path.
        path: PathBuf,
    },
    /// The model file exists but ONNX Runtime cannot load it.
    #[error("model file {} is not a loadable ONNX model ({reason}); reinstall it with \
             `flotilla models install` or point `path` at a valid .onnx file", path.display())]
    CorruptModel {
        /// The configured path.
        path: PathBuf,
        /// ONNX Runtime's reason.
        reason: String,
    },
    /// The model's inputs or outputs do not match its configuration.
    #[error("model `{model}`: {what} is {found}, but the configuration expects {expected}")]
    WrongShape {
        /// The model's configured name.
        model: String,
        /// Which tensor or dimension differs.
        what: String,
        /// What the configuration implies.
        expected: String,
        /// What the model declares or returned.
        found: String,
    },
    /// A configuration value is invalid.
    #[error("model configuration: `{field}` {message}")]
    Config {
        /// The offending field, qualified by the model's name where known.
        field: String,
        /// What is wrong, in a sentence fragment.
        message: String,
    },
    /// The requested device cannot be used.
    #[error("device `{device}` cannot be used: {reason}")]
    Device {
        /// The configured device.
        device: String,
        /// Why, and what to install.
        reason: String,
    },
    /// An inference run failed after the model loaded.
    #[error("model `{model}`: inference failed: {reason}")]
    Inference {
        /// The model's configured name.
        model: String,
        /// ONNX Runtime's reason.
        reason: String,
    },
    /// Installing the runtime or a model failed.
    #[error("installing {what} failed: {reason}")]
    Install {
        /// The package or piece being installed.
        what: String,
        /// The installer's output or the missing tool.
        reason: String,
    },
    /// An image could not be decoded.
    #[error("image {}: {reason}", path.display())]
    Image {
        /// The image's path.
        path: PathBuf,
        /// The decoder's reason.
        reason: String,
    },
    /// Extracting video frames with FFmpeg failed.
    #[error("ffmpeg: {0}")]
    Ffmpeg(String),
    /// A file could not be read or written.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl AiError {
    /// Whether the same job may succeed on a retry: only I/O and inference failures may be
    /// transient; configuration, installation and model problems need an operator.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Io { .. } | Self::Inference { .. } | Self::Ffmpeg(_)
        )
    }

    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A failure of the installation helpers in [`crate::install`], which flotilla-speech's
/// installer shares: each crate turns it into its own error (`From<InstallError>`), an
/// [`AiError::Io`] or an [`AiError::Install`] here.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// A file or directory operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A Python command (pip or a script) could not be run or failed.
    #[error("{what}: {reason}")]
    Python {
        /// The package or step being installed.
        what: String,
        /// Why: the missing interpreter, or its exit status and stderr.
        reason: String,
    },
}

impl InstallError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<InstallError> for AiError {
    fn from(e: InstallError) -> Self {
        match e {
            InstallError::Io { context, source } => Self::Io { context, source },
            InstallError::Python { what, reason } => Self::Install { what, reason },
        }
    }
}

fn display_opt(path: &Option<PathBuf>) -> String {
    match path {
        Some(path) => format!("`{}`", path.display()),
        None => "not configured".to_owned(),
    }
}
