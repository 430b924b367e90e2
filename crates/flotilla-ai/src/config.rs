//! Models as configuration: the `[[models]]` tables of `flotilla.toml`.
//!
//! A model is named, has a kind, a file, class names, an input size, thresholds, a device
//! and an optional licence note. Everything is validated once, with the field's name in the
//! message, so a typo fails at start-up rather than on the first job. The defaults
//! ([`ModelsConfig::defaults`]) are the two detectors `flotilla models install` puts in
//! place: `objects` (COCO-80 YOLO11n) and `faces` (NudeNet 320n).
//!
//! A model may also name an inference service (`service = { url, protocol, ... }`, a
//! [`ServiceConfig`]) instead of a file: detectors through the KServe/Triton Open Inference
//! Protocol v2 (`kserve-v2`), speech through OpenAI's `/v1/audio/transcriptions`
//! (`openai`). Such a detector still needs its classes and input size, because letterbox,
//! decoding and NMS stay on the worker (see [`crate::remote`]).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::AiError;
use crate::install::InstalledModels;

/// Default minimum class score for a detection to be kept.
pub const DEFAULT_SCORE_THRESHOLD: f32 = 0.25;
/// Default IoU above which a lower-scoring box of the same class is suppressed.
pub const DEFAULT_IOU_THRESHOLD: f32 = 0.45;
/// Default square input size (pixels) of a detector.
pub const DEFAULT_INPUT_SIZE: u32 = 640;
/// Name of the default COCO-80 object detector.
pub const OBJECTS_MODEL: &str = "objects";
/// Name of the default face and nudity detector.
pub const FACES_MODEL: &str = "faces";
/// Default limit on one detection request to an inference service.
pub const DEFAULT_SERVICE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default limit on one transcription request (a whole recording) to a speech service.
pub const DEFAULT_SPEECH_SERVICE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Default name of a detector's input tensor on an inference service (YOLO exports').
pub const DEFAULT_SERVICE_INPUT: &str = "images";

/// What a model does, which decides how it is loaded and run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// A YOLOv8/11-style ONNX detector: one image input, output `[1, 4 + classes, N]`.
    Detector,
    /// A Whisper speech-to-text model (run by another crate; configured here).
    Speech,
}

/// Where a model runs: `auto`, `cpu`, `cuda` (device 0) or `cuda:N`.
///
/// The one device type of Flotilla's models: detectors here and flotilla-speech's Whisper
/// models are configured in the same `[[models]]` tables, so they share its spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Device {
    /// CUDA device 0 when the runtime has CUDA, otherwise the CPU (logged).
    #[default]
    Auto,
    /// The CPU execution provider.
    Cpu,
    /// The CUDA execution provider on the numbered GPU; fails if it cannot be used.
    Cuda(u32),
}

/// A device name that is not `auto`, `cpu`, `cuda` or `cuda:N`. Each crate turns it into
/// its own configuration error (`From<ParseDeviceError>` for [`AiError`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`device` {}", self.problem())]
pub struct ParseDeviceError {
    rejected: String,
}

impl ParseDeviceError {
    /// The text that is not a device (trimmed).
    pub fn rejected(&self) -> &str {
        &self.rejected
    }

    /// What is wrong, as a sentence fragment after the field's name.
    pub fn problem(&self) -> String {
        format!(
            "is `{}`; expected `auto`, `cpu` or `cuda:N` (e.g. `cuda:0`)",
            self.rejected
        )
    }
}

impl From<ParseDeviceError> for AiError {
    fn from(e: ParseDeviceError) -> Self {
        AiError::config("device", e.problem())
    }
}

impl FromStr for Device {
    type Err = ParseDeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| ParseDeviceError {
                    rejected: other.to_owned(),
                }),
        }
    }
}

/// Serde's way in: a bad device in `flotilla.toml` is a configuration error.
impl TryFrom<String> for Device {
    type Error = AiError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Ok(s.parse()?)
    }
}

impl From<Device> for String {
    fn from(device: Device) -> Self {
        device.to_string()
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Which inference engine runs a detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// ONNX Runtime when its library is available, else tract if built in.
    #[default]
    Auto,
    /// ONNX Runtime only (`load-dynamic`: the library from `flotilla models install`).
    Ort,
    /// tract, pure Rust on the CPU (needs the crate's `tract` feature).
    Tract,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Ort => "ort",
            Self::Tract => "tract",
        })
    }
}

/// A model's class names: inline in the configuration, or a file with one name per line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ClassList {
    /// The names, in class-index order.
    Inline(Vec<String>),
    /// A text file with one name per line (blank lines ignored), in class-index order.
    File(PathBuf),
}

impl Default for ClassList {
    fn default() -> Self {
        Self::Inline(Vec::new())
    }
}

impl ClassList {
    /// The class names in index order, reading the file if there is one.
    pub fn resolve(&self) -> Result<Vec<String>, AiError> {
        match self {
            Self::Inline(names) => Ok(names.clone()),
            Self::File(path) => read_class_file(path),
        }
    }
}

fn read_class_file(path: &Path) -> Result<Vec<String>, AiError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| AiError::io(format!("reading class list {}", path.display()), e))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect())
}

/// One named model (a `[[models]]` table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The name steps and handlers refer to (`objects`, `faces`, ...).
    pub name: String,
    /// What the model does.
    pub kind: ModelKind,
    /// The model file (a directory for some speech models); empty, and not needed, when
    /// the model is served by an inference service.
    #[serde(default, skip_serializing_if = "path_is_empty")]
    pub path: PathBuf,
    /// Class names; required for detectors.
    #[serde(default)]
    pub classes: ClassList,
    /// Square input size in pixels (the letterbox target).
    #[serde(default = "default_input_size")]
    pub input_size: u32,
    /// Minimum class score kept.
    #[serde(default = "default_score_threshold")]
    pub score_threshold: f32,
    /// IoU above which same-class boxes are suppressed.
    #[serde(default = "default_iou_threshold")]
    pub iou_threshold: f32,
    /// Where the model runs.
    #[serde(default)]
    pub device: Device,
    /// Which engine runs it.
    #[serde(default, skip_serializing_if = "is_auto")]
    pub backend: Backend,
    /// A licence note shown by `flotilla models list`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub licence: Option<String>,
    /// The inference service that runs the model instead of this worker, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceConfig>,
    /// Threads one inference may use on the CPU; when absent, the worker gives each model
    /// its share (the cores divided by its concurrency, or `--ai-threads`), so that its
    /// jobs together do not oversubscribe the machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// Run on the CPU, with a logged warning, when the CUDA device cannot be used: set for
    /// the GPU slots a worker assigns (`--gpus`); `auto` always falls back.
    #[serde(skip)]
    pub cpu_fallback: bool,
}

fn path_is_empty(path: &Path) -> bool {
    path.as_os_str().is_empty()
}

fn is_auto(backend: &Backend) -> bool {
    *backend == Backend::Auto
}

fn default_input_size() -> u32 {
    DEFAULT_INPUT_SIZE
}

fn default_score_threshold() -> f32 {
    DEFAULT_SCORE_THRESHOLD
}

fn default_iou_threshold() -> f32 {
    DEFAULT_IOU_THRESHOLD
}

impl ModelConfig {
    /// A detector with default thresholds and device.
    pub fn detector(
        name: &str,
        path: impl Into<PathBuf>,
        classes: ClassList,
        input_size: u32,
    ) -> Self {
        Self {
            name: name.to_owned(),
            kind: ModelKind::Detector,
            path: path.into(),
            classes,
            input_size,
            score_threshold: DEFAULT_SCORE_THRESHOLD,
            iou_threshold: DEFAULT_IOU_THRESHOLD,
            device: Device::Auto,
            backend: Backend::Auto,
            licence: None,
            service: None,
            threads: None,
            cpu_fallback: false,
        }
    }

    /// This model on GPU `index`: a model left on `auto` is pinned to `cuda:{index}`,
    /// falling back to the CPU if that device cannot be used; an explicit device stays.
    pub fn on_gpu(&self, index: u32) -> Self {
        let mut model = self.clone();
        if model.device == Device::Auto {
            model.device = Device::Cuda(index);
            model.cpu_fallback = true;
        }
        model
    }

    /// Whether an inference service runs it (rather than this worker).
    pub fn is_remote(&self) -> bool {
        self.service.is_some()
    }

    /// Checks every field without touching the files, naming the field on failure.
    pub fn validate(&self) -> Result<(), AiError> {
        let valid_name = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !valid_name {
            return Err(AiError::config(
                "name",
                format!(
                    "`{}` must be non-empty ASCII letters, digits, `_`, `-` or `.` \
                     (Whisper models are named like `tiny.en`)",
                    self.name
                ),
            ));
        }
        let field = |f: &str| format!("models.{}.{f}", self.name);
        match &self.service {
            Some(service) => service.validate(&self.name, self.kind)?,
            None if self.path.as_os_str().is_empty() => {
                return Err(AiError::config(
                    field("path"),
                    "must not be empty (or set `service` to use an inference service)",
                ));
            }
            None => {}
        }
        if self.kind == ModelKind::Detector {
            if !(32..=4096).contains(&self.input_size) || !self.input_size.is_multiple_of(32) {
                return Err(AiError::config(
                    field("input_size"),
                    format!(
                        "is {}; must be a multiple of 32 between 32 and 4096",
                        self.input_size
                    ),
                ));
            }
            if matches!(&self.classes, ClassList::Inline(names) if names.is_empty()) {
                return Err(AiError::config(
                    field("classes"),
                    "must list the class names or name a file of them",
                ));
            }
        }
        check_unit(&field("score_threshold"), self.score_threshold)?;
        check_unit(&field("iou_threshold"), self.iou_threshold)
    }
}

fn check_unit(field: &str, value: f32) -> Result<(), AiError> {
    if value > 0.0 && value <= 1.0 {
        Ok(())
    } else {
        Err(AiError::config(
            field,
            format!("is {value}; must be in (0, 1]"),
        ))
    }
}

/// The protocol an inference service speaks; it must suit the model's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceProtocol {
    /// KServe/Triton Open Inference Protocol v2 REST (`POST /v2/models/{name}/infer`):
    /// for detectors.
    KserveV2,
    /// OpenAI-compatible `POST /v1/audio/transcriptions`: for speech models.
    Openai,
}

impl ServiceProtocol {
    /// The model kind this protocol serves.
    pub fn kind(self) -> ModelKind {
        match self {
            Self::KserveV2 => ModelKind::Detector,
            Self::Openai => ModelKind::Speech,
        }
    }
}

/// Where and how a model is served remotely (the `service` table of a model).
///
/// Requests follow the distribution worker's rules: a connect timeout and a per-request
/// `timeout`, no redirects, no proxies, and no loopback, private or link-local addresses
/// unless `allow_private` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// The service's root, `http://` or `https://` (e.g. `http://kserve.ai:8080`).
    pub url: String,
    /// What it speaks.
    pub protocol: ServiceProtocol,
    /// The model's name on the service; the model's own name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_name: Option<String>,
    /// The limit on one request, upload to answer; by default
    /// [`DEFAULT_SERVICE_TIMEOUT`] for detection, [`DEFAULT_SPEECH_SERVICE_TIMEOUT`] for
    /// speech.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// The environment variable holding a bearer token (the token is never logged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// Whether the service may be on a loopback, private or link-local address.
    #[serde(default)]
    pub allow_private: bool,
    /// The detector's input tensor name on the service (`kserve-v2` only).
    #[serde(default = "default_service_input")]
    pub input_name: String,
    /// Images per inference request (`kserve-v2` only; 1 unless the served model takes
    /// batches).
    #[serde(default = "default_service_batch")]
    pub batch: usize,
}

fn default_service_input() -> String {
    DEFAULT_SERVICE_INPUT.to_owned()
}

fn default_service_batch() -> usize {
    1
}

impl ServiceConfig {
    /// A service at `url` with the defaults, under the model's own name.
    pub fn new(url: impl Into<String>, protocol: ServiceProtocol) -> Self {
        Self {
            url: url.into(),
            protocol,
            remote_name: None,
            timeout: None,
            api_key_env: None,
            allow_private: false,
            input_name: default_service_input(),
            batch: default_service_batch(),
        }
    }

    /// The model's name on the service: `remote_name`, else `model`.
    pub fn remote_name<'a>(&'a self, model: &'a str) -> &'a str {
        self.remote_name.as_deref().unwrap_or(model)
    }

    /// The limit on one request: `timeout`, else the protocol's default.
    pub fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(match self.protocol {
            ServiceProtocol::KserveV2 => DEFAULT_SERVICE_TIMEOUT,
            ServiceProtocol::Openai => DEFAULT_SPEECH_SERVICE_TIMEOUT,
        })
    }

    /// The root URL without a trailing `/`.
    pub fn base_url(&self) -> &str {
        self.url.trim_end_matches('/')
    }

    /// Checks the table of model `name` of kind `kind`, naming the field on failure.
    pub fn validate(&self, name: &str, kind: ModelKind) -> Result<(), AiError> {
        let field = |f: &str| format!("models.{name}.service.{f}");
        let parsed = reqwest::Url::parse(&self.url).ok();
        let web = parsed
            .as_ref()
            .is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        if !web || parsed.is_some_and(|u| !u.username().is_empty() || u.password().is_some()) {
            let message = format!(
                "is `{}`; it must be an http:// or https:// URL with a host and no credentials \
                 (use `api_key_env` for a token)",
                self.url
            );
            return Err(AiError::config(field("url"), message));
        }
        if self.protocol.kind() != kind {
            let message = format!(
                "is `{}`, which serves {} models, but the model is a {kind}; use `kserve-v2` \
                 for detectors and `openai` for speech",
                self.protocol,
                self.protocol.kind()
            );
            return Err(AiError::config(field("protocol"), message));
        }
        let remote = self.remote_name(name);
        // A KServe name is a path segment; an OpenAI model is a form field, where names
        // such as `Systran/faster-whisper-tiny.en` are usual.
        let in_path = self.protocol == ServiceProtocol::KserveV2;
        if remote.is_empty() || (in_path && remote.contains(['/', '?', '#'])) {
            let message = format!(
                "is `{remote}`; it must be non-empty (and, for kserve-v2, without `/`, `?` or `#`)"
            );
            return Err(AiError::config(field("remote_name"), message));
        }
        self.validate_limits(&field)
    }

    fn validate_limits(&self, field: &dyn Fn(&str) -> String) -> Result<(), AiError> {
        if self.timeout().is_zero() {
            return Err(AiError::config(field("timeout"), "must be above zero"));
        }
        if self.api_key_env.as_deref().is_some_and(str::is_empty) {
            return Err(AiError::config(field("api_key_env"), "must not be empty"));
        }
        if self.input_name.is_empty() {
            return Err(AiError::config(field("input_name"), "must not be empty"));
        }
        if !(1..=crate::detect::MAX_BATCH).contains(&self.batch) {
            let message = format!(
                "is {}; it must be between 1 and {}",
                self.batch,
                crate::detect::MAX_BATCH
            );
            return Err(AiError::config(field("batch"), message));
        }
        Ok(())
    }
}

impl fmt::Display for ServiceProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::KserveV2 => "kserve-v2",
            Self::Openai => "openai",
        })
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Detector => "detector",
            Self::Speech => "speech",
        })
    }
}

/// The AI section of the configuration: the runtime library and the named models.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsConfig {
    /// The ONNX Runtime library (`libonnxruntime.so.*`); `FLOTILLA_ORT_DYLIB` or
    /// `ORT_DYLIB_PATH` override it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<PathBuf>,
    /// The models, by name.
    #[serde(default)]
    pub models: Vec<ModelConfig>,
}

impl ModelsConfig {
    /// Parses and validates a TOML document with `runtime = "..."` and `[[models]]` tables.
    pub fn from_toml_str(text: &str) -> Result<Self, AiError> {
        let config: Self =
            toml::from_str(text).map_err(|e| AiError::config("models", e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// The two default detectors, `objects` and `faces`, from an installation.
    pub fn defaults(installed: &InstalledModels) -> Self {
        let models = installed
            .models
            .iter()
            .map(|m| ModelConfig {
                licence: Some(m.licence.clone()),
                ..ModelConfig::detector(
                    &m.name,
                    &m.file,
                    ClassList::File(m.classes.clone()),
                    m.input_size,
                )
            })
            .collect();
        Self {
            runtime: Some(installed.runtime.clone()),
            models,
        }
    }

    /// Validates every model and checks that names are unique.
    pub fn validate(&self) -> Result<(), AiError> {
        for (i, model) in self.models.iter().enumerate() {
            model.validate()?;
            if self.models[..i].iter().any(|m| m.name == model.name) {
                return Err(AiError::config(
                    format!("models.{}", model.name),
                    "is defined twice",
                ));
            }
        }
        Ok(())
    }

    /// The model with this name.
    pub fn get(&self, name: &str) -> Option<&ModelConfig> {
        self.models.iter().find(|m| m.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
runtime = "/opt/ort/libonnxruntime.so.1.31.1"

[[models]]
name = "objects"
kind = "detector"
path = "/models/yolo11n.onnx"
classes = "/models/coco.txt"
device = "cuda:1"
backend = "ort"
licence = "AGPL-3.0"

[[models]]
name = "signs"
kind = "detector"
path = "/models/signs.onnx"
classes = ["stop", "yield"]
input_size = 320
score_threshold = 0.5
"#;

    #[test]
    fn parses_models_with_defaults_filled_in() {
        let config = ModelsConfig::from_toml_str(EXAMPLE).unwrap();
        let objects = config.get("objects").unwrap();
        assert_eq!(
            (objects.device, objects.backend),
            (Device::Cuda(1), Backend::Ort)
        );
        assert_eq!(objects.classes, ClassList::File("/models/coco.txt".into()));
        assert_eq!(objects.input_size, DEFAULT_INPUT_SIZE);
        assert_eq!(objects.iou_threshold, DEFAULT_IOU_THRESHOLD);
        let signs = config.get("signs").unwrap();
        assert_eq!(signs.classes.resolve().unwrap(), ["stop", "yield"]);
        assert_eq!((signs.input_size, signs.score_threshold), (320, 0.5));
        assert_eq!((signs.device, signs.backend), (Device::Auto, Backend::Auto));
        assert_eq!(signs.licence, None);
    }

    #[test]
    fn round_trips_through_toml() {
        let config = ModelsConfig::from_toml_str(EXAMPLE).unwrap();
        let text = toml::to_string(&config).unwrap();
        assert_eq!(ModelsConfig::from_toml_str(&text).unwrap(), config);
    }

    #[test]
    fn parses_devices() {
        assert_eq!("auto".parse::<Device>().unwrap(), Device::Auto);
        assert_eq!("cpu".parse::<Device>().unwrap(), Device::Cpu);
        assert_eq!("cuda:0".parse::<Device>().unwrap(), Device::Cuda(0));
        assert_eq!("cuda:3".parse::<Device>().unwrap().to_string(), "cuda:3");
        for bad in ["gpu", "cuda:", "cuda:x", "cuda:-1"] {
            let err = bad.parse::<Device>().unwrap_err().to_string();
            assert!(err.contains("`device`") && err.contains(bad), "{err}");
        }
    }

    #[test]
    fn rejects_invalid_fields_by_name() {
        let cases = [
            ("input_size = 300", "models.signs.input_size"),
            ("score_threshold = 0.0", "models.signs.score_threshold"),
            ("iou_threshold = 1.5", "models.signs.iou_threshold"),
            ("classes = []", "models.signs.classes"),
        ];
        for (line, field) in cases {
            let text = format!(
                "[[models]]\nname = \"signs\"\nkind = \"detector\"\npath = \"m.onnx\"\nclasses = [\"a\"]\n{line}\n"
            );
            let text = if line.starts_with("classes") {
                text.replacen("classes = [\"a\"]\n", "", 1)
            } else {
                text
            };
            let err = ModelsConfig::from_toml_str(&text).unwrap_err().to_string();
            assert!(err.contains(field), "{line}: {err}");
        }
    }

    #[test]
    fn rejects_unknown_keys_and_duplicate_names() {
        let unknown = "[[models]]\nname = \"a\"\nkind = \"detector\"\npath = \"m\"\nclasses = [\"x\"]\nthreshold = 0.3\n";
        assert!(
            ModelsConfig::from_toml_str(unknown)
                .unwrap_err()
                .to_string()
                .contains("threshold")
        );
        let one =
            "[[models]]\nname = \"a\"\nkind = \"detector\"\npath = \"m\"\nclasses = [\"x\"]\n";
        let err = ModelsConfig::from_toml_str(&format!("{one}{one}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("defined twice"), "{err}");
    }

    #[test]
    fn speech_models_need_no_classes() {
        let text =
            "[[models]]\nname = \"whisper\"\nkind = \"speech\"\npath = \"/models/whisper-base\"\n";
        let config = ModelsConfig::from_toml_str(text).unwrap();
        assert_eq!(config.models[0].kind, ModelKind::Speech);
    }

    const REMOTE: &str =
        "[[models]]\nname = \"objects\"\nkind = \"detector\"\nclasses = [\"cat\"]\n";

    #[test]
    fn a_served_detector_needs_no_path_and_round_trips() {
        let text = format!(
            "{REMOTE}service = {{ url = \"http://gpu.internal:8080/\", protocol = \"kserve-v2\", \
             remote_name = \"yolo11n\", timeout = \"15s\", api_key_env = \"KSERVE_TOKEN\" }}\n"
        );
        let config = ModelsConfig::from_toml_str(&text).unwrap();
        let model = config.get("objects").unwrap();
        assert!(model.is_remote());
        let service = model.service.as_ref().unwrap();
        assert_eq!(service.remote_name("objects"), "yolo11n");
        assert_eq!(service.base_url(), "http://gpu.internal:8080");
        assert_eq!(service.timeout(), Duration::from_secs(15));
        assert_eq!((service.batch, service.allow_private), (1, false));
        assert_eq!(service.input_name, DEFAULT_SERVICE_INPUT);
        let again = toml::to_string(&config).unwrap();
        assert!(!again.contains("path"), "{again}");
        assert_eq!(ModelsConfig::from_toml_str(&again).unwrap(), config);
    }

    #[test]
    fn service_fields_are_checked_by_name() {
        let cases = [
            (
                "url = \"ftp://h/\", protocol = \"kserve-v2\"",
                "service.url",
            ),
            (
                "url = \"http://u:p@h/\", protocol = \"kserve-v2\"",
                "service.url",
            ),
            ("url = \"h:80\", protocol = \"kserve-v2\"", "service.url"),
            (
                "url = \"http://h/\", protocol = \"openai\"",
                "service.protocol",
            ),
            (
                "url = \"http://h/\", protocol = \"kserve-v2\", timeout = \"0s\"",
                "service.timeout",
            ),
            (
                "url = \"http://h/\", protocol = \"kserve-v2\", batch = 0",
                "service.batch",
            ),
            (
                "url = \"http://h/\", protocol = \"kserve-v2\", remote_name = \"a/b\"",
                "service.remote_name",
            ),
        ];
        for (service, field) in cases {
            let text = format!("{REMOTE}service = {{ {service} }}\n");
            let err = ModelsConfig::from_toml_str(&text).unwrap_err().to_string();
            assert!(
                err.contains(&format!("models.objects.{field}")),
                "{service}: {err}"
            );
        }
        let no_path = ModelsConfig::from_toml_str(REMOTE).unwrap_err().to_string();
        assert!(no_path.contains("models.objects.path"), "{no_path}");
    }

    #[test]
    fn a_speech_model_may_be_served_over_openai() {
        let text = "[[models]]\nname = \"tiny.en\"\nkind = \"speech\"\n\
                    service = { url = \"https://stt.example\", protocol = \"openai\", remote_name = \"whisper-1\" }\n";
        let config = ModelsConfig::from_toml_str(text).unwrap();
        let service = config.models[0].service.as_ref().unwrap();
        assert_eq!(service.protocol, ServiceProtocol::Openai);
        assert_eq!(service.timeout(), DEFAULT_SPEECH_SERVICE_TIMEOUT);
        let wrong = text.replace("openai", "kserve-v2");
        let err = ModelsConfig::from_toml_str(&wrong).unwrap_err().to_string();
        assert!(
            err.contains("service.protocol") && err.contains("speech"),
            "{err}"
        );
        // An OpenAI model name is a form field: faster-whisper-server's have a slash.
        let slashed = text.replace("whisper-1", "Systran/faster-whisper-tiny.en");
        assert!(ModelsConfig::from_toml_str(&slashed).is_ok());
    }

    #[test]
    fn class_file_skips_blank_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("classes.txt");
        std::fs::write(&path, "person\n bicycle \n\ncar\n").unwrap();
        assert_eq!(
            ClassList::File(path).resolve().unwrap(),
            ["person", "bicycle", "car"]
        );
        let missing = ClassList::File(dir.path().join("none.txt"))
            .resolve()
            .unwrap_err();
        assert!(missing.to_string().contains("none.txt"), "{missing}");
    }
}
