//! [`SpeechError`]: the one error type of this crate, and whether a job should retry.
//!
//! Start-up problems (no Python, no faster-whisper, a missing or corrupt model, a device
//! that cannot be used) each have their own variant whose message says what to install,
//! because an operator reads it from `flotilla models check` or a worker's start-up, not a
//! developer. Failures of a running job are split by [`SpeechError::is_retryable`]: a helper
//! that died, a timeout or a service that is down or throttling may succeed on the next
//! attempt; bad input or a refused request never will.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use flotilla_ai::{InstallError, ParseDeviceError};

/// What to run to get the speech runtime and the default models; quoted by start-up errors.
pub const INSTALL_HINT: &str = "run `flotilla models install` (or scripts/speech-models.sh) to \
     install faster-whisper and the default Whisper models";

/// Everything that can go wrong while installing, starting or running speech-to-text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpeechError {
    /// The model directory does not exist or lacks a model file.
    #[error("speech model `{model}`: {} is missing or incomplete ({reason}); {INSTALL_HINT}, \
             or fix the model's `model_dir`", path.display())]
    ModelMissing {
        /// The model's configured name.
        model: String,
        /// Its configured directory.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// The model files are there but CTranslate2 cannot load them.
    #[error("speech model `{model}`: {} cannot be loaded ({reason}); reinstall it with \
             `flotilla models install`", path.display())]
    ModelCorrupt {
        /// The model's configured name.
        model: String,
        /// Its configured directory.
        path: PathBuf,
        /// The loader's reason.
        reason: String,
    },
    /// Python, faster-whisper or one of its libraries is missing.
    #[error("speech runtime: {reason}; {INSTALL_HINT}")]
    RuntimeMissing {
        /// What could not be found or imported.
        reason: String,
    },
    /// The configured device cannot be used.
    #[error("speech model `{model}`: device `{device}` cannot be used: {reason}")]
    Device {
        /// The model's configured name.
        model: String,
        /// The configured device.
        device: String,
        /// The loader's reason (for CUDA: install the CUDA 12 runtime and cuDNN 9).
        reason: String,
    },
    /// The helper process exited or closed its pipes; the next call starts a new one.
    #[error("speech helper for `{model}` died ({status}); stderr: {stderr_tail}")]
    HelperDied {
        /// The model's configured name.
        model: String,
        /// Its exit status, as text.
        status: String,
        /// The last lines it wrote to stderr.
        stderr_tail: String,
    },
    /// The helper said something that is not the protocol.
    #[error("speech helper for `{model}`: protocol error: {reason}")]
    Protocol {
        /// The model's configured name.
        model: String,
        /// What was wrong.
        reason: String,
    },
    /// An operation did not finish in time.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// The limit.
        after: Duration,
    },
    /// The input cannot be decoded as audio.
    #[error("audio {}: {reason}", path.display())]
    BadAudio {
        /// The input file.
        path: PathBuf,
        /// The decoder's reason.
        reason: String,
    },
    /// Inference failed after the audio was decoded.
    #[error("speech model `{model}`: inference failed: {reason}")]
    Inference {
        /// The model's configured name.
        model: String,
        /// The helper's reason.
        reason: String,
    },
    /// A tool (ffmpeg, ffprobe, python3) could not be run.
    #[error("cannot run `{tool}` ({source}); install it (Debian: `apt-get install {package}`)")]
    ToolMissing {
        /// The program.
        tool: String,
        /// The Debian package providing it.
        package: String,
        /// The spawn error.
        #[source]
        source: io::Error,
    },
    /// Installing the runtime or the models failed.
    #[error("installing speech models: {what}: {reason}")]
    Install {
        /// The step.
        what: String,
        /// The reason, with the tool's stderr.
        reason: String,
    },
    /// A configuration value is invalid.
    #[error("speech configuration: `{field}` {message}")]
    Config {
        /// The offending field.
        field: String,
        /// What is wrong, in a sentence fragment.
        message: String,
    },
    /// A remote transcription service answered with an error status.
    #[error("transcription service answered {status}: {message}")]
    Remote {
        /// The HTTP status.
        status: u16,
        /// The service's message (its `error.message` when it sends one).
        message: String,
    },
    /// A remote transcription service could not be reached or the exchange broke.
    #[error("transcription service unreachable: {0}")]
    RemoteTransport(String),
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

impl SpeechError {
    /// Whether the job that hit this error should be tried again: a dead helper, a timeout,
    /// a protocol error (the helper is restarted), an unreachable service, HTTP 429 and 5xx,
    /// and I/O errors are; bad input, missing installs, bad configuration and other 4xx
    /// answers are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::HelperDied { .. }
            | Self::Protocol { .. }
            | Self::Timeout { .. }
            | Self::RemoteTransport(_)
            | Self::Io { .. } => true,
            Self::Remote { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
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

/// A bad device name, in this crate's words.
impl From<ParseDeviceError> for SpeechError {
    fn from(e: ParseDeviceError) -> Self {
        let message = format!("is `{}`: use auto, cpu or cuda:N", e.rejected());
        Self::config("device", message)
    }
}

/// A failure of flotilla-ai's installation helpers, which [`crate::install`] uses.
impl From<InstallError> for SpeechError {
    fn from(e: InstallError) -> Self {
        match e {
            InstallError::Io { context, source } => Self::Io { context, source },
            InstallError::Python { what, reason } => Self::Install { what, reason },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(status: u16) -> SpeechError {
        SpeechError::Remote {
            status,
            message: String::new(),
        }
    }

    #[test]
    fn throttling_and_server_errors_retry_other_client_errors_do_not() {
        assert!(remote(429).is_retryable());
        assert!(remote(500).is_retryable());
        assert!(remote(503).is_retryable());
        assert!(!remote(400).is_retryable());
        assert!(!remote(401).is_retryable());
        assert!(!remote(413).is_retryable());
    }

    #[test]
    fn a_missing_model_names_the_install_command_and_does_not_retry() {
        let err = SpeechError::ModelMissing {
            model: "tiny.en".into(),
            path: "/nowhere".into(),
            reason: "no such directory".into(),
        };
        assert!(err.to_string().contains("flotilla models install"));
        assert!(!err.is_retryable());
    }
}
