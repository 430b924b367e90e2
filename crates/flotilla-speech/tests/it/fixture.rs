//! The shared installation (once per process, and once per machine thanks to the
//! installer's lock), and media made offline for the tests.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use flotilla_speech::{InstalledSpeech, SpeechModel, install_defaults};

/// The sentence the speech tests say.
pub(crate) const SENTENCE: &str = flotilla_speech::check::SAMPLE_SENTENCE;

/// Where the tests install: `$FLOTILLA_MODELS_DIR` or `.flotilla/models` at the repo root.
pub(crate) fn models_dir() -> PathBuf {
    std::env::var_os("FLOTILLA_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.flotilla/models"))
}

/// The installation.
pub(crate) fn installed() -> &'static InstalledSpeech {
    static INSTALLED: OnceLock<InstalledSpeech> = OnceLock::new();
    INSTALLED.get_or_init(|| install_defaults(&models_dir()).expect("installing the speech models"))
}

/// The installed model `name`, on the CPU.
pub(crate) fn model(name: &str) -> SpeechModel {
    let mut model = SpeechModel::from_installed(installed(), name).expect("an installed model");
    model.device = flotilla_speech::Device::Cpu;
    model
}

/// [`SENTENCE`] spoken by espeak-ng, as 16 kHz mono WAV in `dir`.
pub(crate) async fn speech_wav(dir: &Path) -> PathBuf {
    let wav = dir.join("speech.wav");
    flotilla_speech::samples::espeak(SENTENCE, &wav)
        .await
        .expect("espeak-ng makes the test speech: install it with `apt-get install espeak-ng`");
    wav
}

/// Runs FFmpeg with `args` (quiet, overwriting) and panics if it fails.
pub(crate) fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .expect("running ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A path inside `dir` as a `&str` for FFmpeg arguments.
pub(crate) fn arg(dir: &Path, name: &str) -> String {
    dir.join(name).to_string_lossy().into_owned()
}
