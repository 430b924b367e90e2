//! Audio for Whisper: 16 kHz mono 16-bit WAV extracted by FFmpeg.
//!
//! ffprobe runs first, so a video without an audio stream is a success with
//! `has_audio = false` (the caller writes an empty transcript saying so) rather than an
//! FFmpeg error. Input that ffprobe cannot read is [`SpeechError::BadAudio`], which is not
//! retried. Both tools run under a time limit and are killed when it passes or when the
//! caller gives up (media input is hostile by default).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::process::Command;

use crate::error::SpeechError;

/// The sample rate Whisper expects.
pub const SAMPLE_RATE: u32 = 16_000;
/// The default limit on ffprobe plus FFmpeg.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// What [`extract_16k_mono`] found and wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioInfo {
    /// Whether the input has an audio stream; when it has none, no WAV is written.
    pub has_audio: bool,
    /// The input's duration according to its container, when it declares one.
    pub source_duration_s: Option<f64>,
    /// The extracted audio's duration (0 when there is no audio).
    pub duration_s: f64,
    /// The WAV written, when there was audio.
    pub wav: Option<PathBuf>,
}

#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    streams: Vec<ProbeStream>,
    format: Option<ProbeFormat>,
}

#[derive(Deserialize)]
struct ProbeStream {
    codec_type: Option<String>,
}

#[derive(Deserialize)]
struct ProbeFormat {
    duration: Option<String>,
}

/// Extracts the first audio stream of `input` to `output_wav` as 16 kHz mono WAV, within
/// [`DEFAULT_TIMEOUT`].
pub async fn extract_16k_mono(input: &Path, output_wav: &Path) -> Result<AudioInfo, SpeechError> {
    extract_16k_mono_within(input, output_wav, DEFAULT_TIMEOUT).await
}

/// [`extract_16k_mono`] with an explicit time limit.
pub async fn extract_16k_mono_within(
    input: &Path,
    output_wav: &Path,
    timeout: Duration,
) -> Result<AudioInfo, SpeechError> {
    let work = async {
        let probe = probe(input).await?;
        let has_audio = probe
            .streams
            .iter()
            .any(|s| s.codec_type.as_deref() == Some("audio"));
        let source_duration_s = probe
            .format
            .and_then(|f| f.duration)
            .and_then(|d| d.parse::<f64>().ok());
        if !has_audio {
            return Ok(AudioInfo {
                has_audio,
                source_duration_s,
                duration_s: 0.0,
                wav: None,
            });
        }
        ffmpeg_extract(input, output_wav).await?;
        let duration_s = wav_duration(output_wav)?;
        Ok(AudioInfo {
            has_audio,
            source_duration_s,
            duration_s,
            wav: Some(output_wav.to_path_buf()),
        })
    };
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| {
            Err(SpeechError::Timeout {
                what: format!("extracting the audio of {}", input.display()),
                after: timeout,
            })
        })
}

async fn probe(input: &Path) -> Result<Probe, SpeechError> {
    let mut cmd = Command::new("ffprobe");
    cmd.args([
        "-v",
        "error",
        "-show_entries",
        "stream=codec_type:format=duration",
        "-of",
        "json",
    ])
    .arg(input);
    let stdout = run(cmd, "ffprobe", input).await?;
    serde_json::from_slice(&stdout).map_err(|e| SpeechError::BadAudio {
        path: input.into(),
        reason: format!("unreadable ffprobe output: {e}"),
    })
}

async fn ffmpeg_extract(input: &Path, output: &Path) -> Result<(), SpeechError> {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(input)
        .args([
            "-map",
            "0:a:0",
            "-vn",
            "-ac",
            "1",
            "-ar",
            "16000",
            "-c:a",
            "pcm_s16le",
        ])
        .args(["-f", "wav"])
        .arg(output);
    run(cmd, "ffmpeg", input).await.map(drop)
}

/// Runs a tool to completion; a failure is bad input, a missing tool is a start-up error.
async fn run(mut cmd: Command, tool: &str, input: &Path) -> Result<Vec<u8>, SpeechError> {
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    let out = cmd
        .output()
        .await
        .map_err(|source| SpeechError::ToolMissing {
            tool: tool.to_owned(),
            package: "ffmpeg".to_owned(),
            source,
        })?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(SpeechError::BadAudio {
        path: input.into(),
        reason: format!("{tool} {}: {}", out.status, stderr.trim()),
    })
}

/// The duration of a 16 kHz mono 16-bit WAV, from its `data` chunk's size.
pub fn wav_duration(path: &Path) -> Result<f64, SpeechError> {
    let bytes = std::fs::read(path)
        .map_err(|e| SpeechError::io(format!("reading {}", path.display()), e))?;
    let bad = |reason: &str| SpeechError::BadAudio {
        path: path.into(),
        reason: reason.into(),
    };
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(bad("not a RIFF/WAVE file"));
    }
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let size = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
        if &bytes[at..at + 4] == b"data" {
            let available = (bytes.len() - at - 8) as u64;
            return Ok(u64::from(size).min(available) as f64 / f64::from(SAMPLE_RATE * 2));
        }
        at += 8 + size as usize + (size as usize & 1);
    }
    Err(bad("no data chunk"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(samples: u32, extra_chunk: bool) -> Vec<u8> {
        let mut out = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
        out.extend(16u32.to_le_bytes());
        out.extend([1, 0, 1, 0]);
        out.extend(SAMPLE_RATE.to_le_bytes());
        out.extend((SAMPLE_RATE * 2).to_le_bytes());
        out.extend([2, 0, 16, 0]);
        if extra_chunk {
            out.extend(b"LIST\x03\0\0\0abc\0");
        }
        out.extend(b"data");
        out.extend((samples * 2).to_le_bytes());
        out.extend(vec![0u8; samples as usize * 2]);
        out
    }

    #[test]
    fn wav_duration_reads_the_data_chunk_past_other_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        std::fs::write(&path, wav(8000, true)).unwrap();
        assert_eq!(wav_duration(&path).unwrap(), 0.5);
        std::fs::write(&path, b"not a wav file").unwrap();
        assert!(matches!(
            wav_duration(&path),
            Err(SpeechError::BadAudio { .. })
        ));
    }
}
