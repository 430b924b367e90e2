//! `ai.transcribe`: speech to text with Whisper (`flotilla-speech`). The audio of the
//! upload is taken to 16 kHz mono by FFmpeg and sent to the model's long-lived helper
//! process; the transcript (language, segments, word timings) is written as
//! `transcript.json`, with `transcript.srt` and `transcript.vtt` beside it. An input without
//! an audio stream, or with only silence, succeeds with an empty transcript that says so.
//!
//! Parameters: `{"model": "tiny.en", "words": true}`. A helper that died fails the job
//! retryably (the next attempt starts a new one); a corrupt input fails it for good.
//!
//! A model may instead be served by an OpenAI-compatible service (`service = { protocol =
//! "openai", url, remote_name, ... }` on a `speech` model): the 16 kHz WAV is uploaded to
//! `POST /v1/audio/transcriptions` by `flotilla-speech`'s [`OpenAiTranscriber`], and the
//! outputs are the same. Such a worker is network-bound — run it with a high
//! `--concurrency`. Its calls follow the distribution worker's rules: the service's address
//! is checked against the private-address policy at start, each request has the service's
//! `timeout`, an unreachable service, 429 and 5xx fail the job retryably, other 4xx for good.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use flotilla_ai::{ModelConfig, ServiceProtocol};
use flotilla_speech::{OpenAiConfig, OpenAiTranscriber};
use flotilla_speech::{SpeechError, SpeechModel, Transcriber, Transcript};
use flotilla_worker::{JobContext, JobError};
use serde_json::{Value, json};

use crate::Media;
use crate::step::{Step, job_error};

/// A speech model a worker runs: its own helper process, or a remote service.
enum Engine {
    Local(Box<Transcriber>),
    Remote(OpenAiTranscriber),
}

impl Engine {
    async fn transcribe(&self, wav: &Path, words: bool) -> Result<Transcript, SpeechError> {
        match self {
            Self::Local(t) => t.transcribe(wav, words).await,
            Self::Remote(t) => t.transcribe(wav, words).await,
        }
    }
}

/// The speech models a worker runs, each behind its started helper or its service.
pub struct Speech {
    engines: BTreeMap<String, Engine>,
}

impl Speech {
    /// Starts a helper for every model; the first that cannot start is the error (it says
    /// what to install).
    pub async fn start(models: &[SpeechModel]) -> Result<Self, SpeechError> {
        Self::start_with_services(models, &[]).await
    }

    /// Starts a helper for every local model and a client for every model of `served`
    /// (kind `speech` with an `openai` service; one with the name of a local model
    /// replaces it). The first that cannot start is the error: a served model's invalid
    /// configuration, private address (without `allow_private`) or unset `api_key_env`
    /// stops the worker at start.
    pub async fn start_with_services(
        models: &[SpeechModel],
        served: &[ModelConfig],
    ) -> Result<Self, SpeechError> {
        let mut engines = BTreeMap::new();
        for config in served {
            engines.insert(config.name.clone(), Engine::Remote(connect(config).await?));
        }
        for model in models {
            if engines.contains_key(&model.name) {
                continue;
            }
            let engine = Engine::Local(Box::new(Transcriber::start(model).await?));
            engines.insert(model.name.clone(), engine);
        }
        Ok(Self { engines })
    }

    /// The names of the models running.
    pub fn models(&self) -> Vec<String> {
        self.engines.keys().cloned().collect()
    }

    /// The names of the models served remotely.
    pub fn remote_models(&self) -> Vec<String> {
        let remote = self
            .engines
            .iter()
            .filter(|(_, e)| matches!(e, Engine::Remote(_)));
        remote.map(|(name, _)| name.clone()).collect()
    }

    fn get(&self, name: &str) -> Result<&Engine, JobError> {
        self.engines.get(name).ok_or_else(|| {
            JobError::fatal(format!(
                "no speech model {name:?} on this worker (it runs: {})",
                self.models().join(", ")
            ))
        })
    }

    /// Why the local helpers count as failing (one that keeps dying); empty when fine.
    /// The worker reports itself degraded while this is not empty.
    pub fn degraded(&self) -> Vec<String> {
        let local = self.engines.values().filter_map(|e| match e {
            Engine::Local(transcriber) => transcriber.keeps_dying(),
            Engine::Remote(_) => None,
        });
        local.collect()
    }

    /// Stops every helper (a remote model has nothing to stop).
    pub async fn shutdown(&self) {
        for engine in self.engines.values() {
            if let Engine::Local(transcriber) = engine {
                transcriber.shutdown().await;
            }
        }
    }
}

/// A client for a served speech model, after the start-up checks.
async fn connect(config: &ModelConfig) -> Result<OpenAiTranscriber, SpeechError> {
    let start_up = |field: &str, message: String| SpeechError::Config {
        field: format!("models.{}.{field}", config.name),
        message,
    };
    config
        .validate()
        .map_err(|e| start_up("service", e.to_string()))?;
    let service = match &config.service {
        Some(s) if s.protocol == ServiceProtocol::Openai => s,
        _ => {
            return Err(start_up(
                "service",
                "must be an `openai` service".to_owned(),
            ));
        }
    };
    flotilla_ai::remote::check_address(config, service)
        .await
        .map_err(|e| start_up("service.url", e.to_string()))?;
    flotilla_ai::remote::bearer(config, service)
        .map_err(|e| start_up("service.api_key_env", e.to_string()))?;
    let client = OpenAiTranscriber::new(OpenAiConfig {
        base_url: service.base_url().to_owned(),
        model: service.remote_name(&config.name).to_owned(),
        api_key_env: service.api_key_env.clone(),
        language: None,
        timeout: service.timeout(),
    })?;
    tracing::info!(model = %config.name, endpoint = %client.endpoint(), "remote speech model");
    Ok(client)
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
    let engine = speech.get(&name)?;
    let (input, _) = step.download_input(&media).await?;
    let transcript = transcribe(engine, &input, &step.path("audio.wav"), words).await?;
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
    engine: &Engine,
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
    engine.transcribe(&wav, words).await.map_err(speech_error)
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
