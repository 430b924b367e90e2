//! [`check_model`]: start a model's helper and run one transcription, with timings, for
//! `flotilla models check` and start-up checks.
//!
//! The sample is spoken English made by `espeak-ng` when it is installed; otherwise a
//! two-second tone written here, which still exercises loading, the VAD and the decoder
//! (and gives an empty transcript). Either way a missing runtime or model fails here, at
//! start-up, with the error that says what to install.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::audio::SAMPLE_RATE;
use crate::config::SpeechModel;
use crate::error::SpeechError;
use crate::transcriber::Transcriber;

/// The sentence spoken into the sample.
pub const SAMPLE_SENTENCE: &str = "hello world, this is a test of the flotilla transcription";

/// What [`check_model`] measured.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    /// The model's name.
    pub model: String,
    /// Wall time from spawning the helper to its ready line.
    pub start: Duration,
    /// The part of `start` the helper spent importing and loading the model.
    pub load: Duration,
    /// Wall time of the transcription.
    pub infer: Duration,
    /// The sample's duration in seconds.
    pub audio_s: f64,
    /// The text recognised.
    pub text: String,
}

impl CheckReport {
    /// The real-time factor: processing time over audio time (below 1 is faster than real time).
    pub fn real_time_factor(&self) -> f64 {
        self.infer.as_secs_f64() / self.audio_s.max(f64::EPSILON)
    }
}

/// Which kind of sample [`write_sample`] made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleKind {
    /// [`SAMPLE_SENTENCE`] spoken by espeak-ng.
    Speech,
    /// A 440 Hz tone (espeak-ng is not installed).
    Tone,
}

/// Writes a 16 kHz mono WAV sample to `path`.
pub async fn write_sample(path: &Path) -> Result<SampleKind, SpeechError> {
    if crate::samples::espeak(SAMPLE_SENTENCE, path).await.is_ok() {
        return Ok(SampleKind::Speech);
    }
    std::fs::write(path, tone_wav(2.0))
        .map_err(|e| SpeechError::io(format!("writing {}", path.display()), e))?;
    Ok(SampleKind::Tone)
}

/// Starts `config`'s helper, transcribes `sample` (16 kHz mono WAV) once, and stops it.
pub async fn check_model(config: &SpeechModel, sample: &Path) -> Result<CheckReport, SpeechError> {
    let started = Instant::now();
    let transcriber = Transcriber::start(config).await?;
    let start = started.elapsed();
    let load = transcriber
        .ready_info()
        .await
        .map_or(Duration::ZERO, |r| r.load);
    let began = Instant::now();
    let result = transcriber.transcribe(sample, false).await;
    let infer = began.elapsed();
    transcriber.shutdown().await;
    let transcript = result?;
    Ok(CheckReport {
        model: config.name.clone(),
        start,
        load,
        infer,
        audio_s: transcript.duration_s,
        text: transcript.text(),
    })
}

/// A 16-bit mono WAV of a 440 Hz tone.
fn tone_wav(seconds: f64) -> Vec<u8> {
    let samples = (seconds * f64::from(SAMPLE_RATE)) as u32;
    let mut out = b"RIFF".to_vec();
    out.extend((36 + samples * 2).to_le_bytes());
    out.extend(b"WAVEfmt ");
    out.extend(16u32.to_le_bytes());
    out.extend([1, 0, 1, 0]);
    out.extend(SAMPLE_RATE.to_le_bytes());
    out.extend((SAMPLE_RATE * 2).to_le_bytes());
    out.extend([2, 0, 16, 0]);
    out.extend(b"data");
    out.extend((samples * 2).to_le_bytes());
    for n in 0..samples {
        let t = f64::from(n) / f64::from(SAMPLE_RATE);
        let v = (t * 440.0 * std::f64::consts::TAU).sin() * 8000.0;
        out.extend((v as i16).to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tone_is_a_wav_of_the_asked_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tone.wav");
        std::fs::write(&path, tone_wav(2.0)).unwrap();
        assert_eq!(crate::audio::wav_duration(&path).unwrap(), 2.0);
    }
}
