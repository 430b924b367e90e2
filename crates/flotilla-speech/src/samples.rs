//! Sample audio made offline: speech from `espeak-ng` (Debian package `espeak-ng`),
//! resampled by FFmpeg to the 16 kHz mono WAV Whisper expects. Used by
//! [`crate::check::write_sample`], the tests and the example.

use std::path::Path;
use std::process::Stdio;

use tokio::process::Command;

use crate::error::SpeechError;

/// Speaks `text` into `out_wav` (16 kHz mono). espeak-ng runs at 140 words per minute with
/// short pauses between words, which Whisper tiny.en follows more reliably than the default.
pub async fn espeak(text: &str, out_wav: &Path) -> Result<(), SpeechError> {
    let raw = out_wav.with_extension("espeak.wav");
    let mut cmd = Command::new("espeak-ng");
    cmd.args(["-s", "140", "-g", "5", "-w"]).arg(&raw).arg(text);
    run(cmd, "espeak-ng", "espeak-ng").await?;
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-loglevel", "error", "-y", "-i"])
        .arg(&raw)
        .args(["-ac", "1", "-ar", "16000", "-c:a", "pcm_s16le", "-f", "wav"])
        .arg(out_wav);
    let result = run(cmd, "ffmpeg", "ffmpeg").await;
    let _ = std::fs::remove_file(&raw);
    result
}

async fn run(mut cmd: Command, tool: &str, package: &str) -> Result<(), SpeechError> {
    let out = cmd
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|source| SpeechError::ToolMissing {
            tool: tool.to_owned(),
            package: package.to_owned(),
            source,
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(SpeechError::Install {
        what: format!("running {tool}"),
        reason: format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    })
}
