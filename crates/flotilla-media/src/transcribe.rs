//! `ai.transcribe`: speech to text with Whisper (`flotilla-speech`). The audio of the
//! upload is taken to 16 kHz mono by FFmpeg and sent to the model's long-lived helper
//! process; the transcript (language, segments, word timings) is written as
//! `transcript.json`, with `transcript.srt` and `transcript.vtt` beside it. An input without
//! an audio stream, or with only silence, succeeds with an empty transcript that says so.
//!
//! Parameters: `{"model": "tiny.en", "words": true}`. A helper that died fails the job
//! retryably (the next attempt starts a new one); a corrupt input fails it for good.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use flotilla_speech::{SpeechError, SpeechModel, Transcriber, Transcript};
use flotilla_worker::{JobContext, JobError};
use serde_json::{Value, json};

use crate::Media;
use crate::step::{Step, job_error};

/// The speech models a worker runs, each behind its started helper.
pub struct Speech {
    transcribers: BTreeMap<String, Transcriber>,
}

impl Speech {
    /// Starts a helper for every model; the first that cannot start is the error (it says
    /// what to install).
    pub async fn start(models: &[SpeechModel]) -> Result<Self, SpeechError> {
        let mut transcribers = BTreeMap::new();
        for model in models {
            transcribers.insert(model.name.clone(), Transcriber::start(model).await?);
        }
        Ok(Self { transcribers })
    }

    /// The names of the models running.
    pub fn models(&self) -> Vec<String> {
        self.transcribers.keys().cloned().collect()
    }

    fn get(&self, name: &str) -> Result<&Transcriber, JobError> {
        self.transcribers.get(name).ok_or_else(|| {
            JobError::fatal(format!(
                "no speech model {name:?} on this worker (it runs: {})",
                self.models().join(", ")
            ))
        })
    }

    /// Stops every helper.
    pub async fn shutdown(&self) {
        for transcriber in self.transcribers.values() {
            transcriber.shutdown().await;
        }
    }
}

/// The transcript's text in a result is cut to this many characters (the whole is in
/// `transcript.json`).
const RESULT_TEXT_CHARS: usize = 10_000;

/// Runs one `ai.transcribe` job.
pub(crate) async fn run(media: Arc<Media>, ctx: JobContext) -> Result<Value, JobError> {
    let speech = media.speech.as_ref().ok_or_else(|| {
        JobError::retryable("this worker runs no speech models (see `flotilla models install`)")
    })?;
    let step = Step::open(&media, &ctx)?;
    let name = step
        .params
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or(flotilla_speech::DEFAULT_MODEL)
        .to_owned();
    let words = step
        .params
        .get("words")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let transcriber = speech.get(&name)?;
    let (input, _) = step.download_input(&media).await?;
    let transcript = transcribe(transcriber, &input, &step.path("audio.wav"), words).await?;
    let outputs = write_outputs(&media, &step, &transcript).await?;
    let text = transcript.text();
    Ok(json!({
        "model": name,
        "transcript": {
            "language": transcript.language,
            "duration_s": transcript.duration_s,
            "segments": transcript.segments.len(),
            "empty": transcript.empty,
            "note": transcript.note,
            "text": text.chars().take(RESULT_TEXT_CHARS).collect::<String>(),
        },
        "outputs": outputs,
    }))
}

async fn transcribe(
    transcriber: &Transcriber,
    input: &Path,
    wav: &Path,
    words: bool,
) -> Result<Transcript, JobError> {
    let audio = flotilla_speech::extract_16k_mono(input, wav)
        .await
        .map_err(speech_error)?;
    let Some(wav) = audio.wav.filter(|_| audio.has_audio) else {
        return Ok(Transcript::no_audio(audio.source_duration_s.unwrap_or(0.0)));
    };
    transcriber
        .transcribe(&wav, words)
        .await
        .map_err(speech_error)
}

/// `transcript.json`, `.srt` and `.vtt` into `processed/<upload>/`.
async fn write_outputs(
    media: &Media,
    step: &Step,
    transcript: &Transcript,
) -> Result<Vec<Value>, JobError> {
    let json = serde_json::to_vec_pretty(transcript)
        .map_err(|e| JobError::fatal(format!("cannot write the transcript: {e}")))?;
    let files = [
        ("transcript.json", json),
        (
            "transcript.srt",
            flotilla_speech::to_srt(transcript).into_bytes(),
        ),
        (
            "transcript.vtt",
            flotilla_speech::to_vtt(transcript).into_bytes(),
        ),
    ];
    let mut outputs = Vec::with_capacity(files.len());
    for (name, bytes) in files {
        let path = step.path(name);
        tokio::fs::write(&path, bytes)
            .await
            .map_err(|e| JobError::retryable(format!("cannot write {name}: {e}")))?;
        let details = json!({ "type": "text" });
        outputs.push(step.upload_output(media, name, &path, details).await?);
    }
    Ok(outputs)
}

fn speech_error(e: SpeechError) -> JobError {
    job_error(e.is_retryable(), e.to_string())
}
