//! [`OpenAiTranscriber`]: speech-to-text through an OpenAI-compatible service.
//!
//! `POST {base_url}/v1/audio/transcriptions` takes a multipart form (`file`, `model`,
//! `response_format=verbose_json`, `timestamp_granularities[]`, optional `language`) and
//! answers `{task, language, duration, text, segments: [{start, end, text, ...}], words:
//! [{word, start, end}]}`. OpenAI's service and several open Whisper servers (speaches,
//! faster-whisper-server) implement it; servers that ignore `timestamp_granularities` send no
//! `words`, and the transcript then has none. Words arrive as one list and are placed into
//! the segment they start in.
//!
//! Such a worker is network-bound and follows the distribution worker's rules: a per-request
//! timeout; timeouts, connection failures, HTTP 429 and 5xx are retryable; any other 4xx
//! is not (the request itself is wrong). The API key is read from an environment variable at
//! each call and never logged.

use std::path::Path;
use std::time::Duration;

use reqwest::multipart::{Form, Part};
use serde::Deserialize;

use crate::error::SpeechError;
use crate::transcript::{Segment, Transcript, Word};

/// The note of a transcript for which the service returned no text.
pub const SERVICE_NO_SPEECH_NOTE: &str = "the transcription service found no speech";
/// The default per-request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// Where and how to reach the service.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAiConfig {
    /// The service's root, without `/v1` (e.g. `http://127.0.0.1:8000`).
    pub base_url: String,
    /// The `model` form field (`whisper-1` for OpenAI).
    pub model: String,
    /// The environment variable holding the bearer token, if the service needs one.
    pub api_key_env: Option<String>,
    /// Force this language (ISO 639-1); `None` lets the service detect it.
    pub language: Option<String>,
    /// The limit on one request, upload to answer.
    pub timeout: Duration,
}

/// A client for one OpenAI-compatible transcription service.
#[derive(Debug, Clone)]
pub struct OpenAiTranscriber {
    config: OpenAiConfig,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct VerboseJson {
    language: Option<String>,
    #[serde(default)]
    duration: f64,
    #[serde(default)]
    segments: Vec<VerboseSegment>,
    #[serde(default)]
    words: Vec<VerboseWord>,
}

#[derive(Deserialize)]
struct VerboseSegment {
    start: f64,
    end: f64,
    text: String,
}

#[derive(Deserialize)]
struct VerboseWord {
    word: String,
    start: f64,
    end: f64,
}

impl OpenAiTranscriber {
    /// A client for `config`.
    pub fn new(config: OpenAiConfig) -> Result<Self, SpeechError> {
        if !(config.base_url.starts_with("http://") || config.base_url.starts_with("https://")) {
            return Err(SpeechError::config(
                "base_url",
                "must start with http:// or https://",
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| SpeechError::config("remote", e.to_string()))?;
        Ok(Self { config, http })
    }

    /// The endpoint it posts to.
    pub fn endpoint(&self) -> String {
        format!(
            "{}/v1/audio/transcriptions",
            self.config.base_url.trim_end_matches('/')
        )
    }

    /// Uploads `wav` and maps the service's verbose_json answer to a [`Transcript`].
    pub async fn transcribe(
        &self,
        wav: &Path,
        word_timestamps: bool,
    ) -> Result<Transcript, SpeechError> {
        let mut request = self
            .http
            .post(self.endpoint())
            .multipart(self.form(wav, word_timestamps).await?);
        if let Some(var) = &self.config.api_key_env {
            let key = std::env::var(var).map_err(|_| {
                SpeechError::config("api_key_env", format!("names `{var}`, which is not set"))
            })?;
            request = request.bearer_auth(key);
        }
        let response = request
            .send()
            .await
            .map_err(|e| transport(e, self.config.timeout))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| transport(e, self.config.timeout))?;
        if !status.is_success() {
            return Err(SpeechError::Remote {
                status: status.as_u16(),
                message: error_message(&body),
            });
        }
        let verbose: VerboseJson =
            serde_json::from_slice(&body).map_err(|e| SpeechError::Protocol {
                model: self.config.model.clone(),
                reason: format!("the answer is not verbose_json: {e}"),
            })?;
        Ok(to_transcript(verbose))
    }

    async fn form(&self, wav: &Path, word_timestamps: bool) -> Result<Form, SpeechError> {
        let path = wav.to_path_buf();
        let read = tokio::task::spawn_blocking(move || std::fs::read(path)).await;
        let bytes = read
            .map_err(std::io::Error::other)
            .and_then(|r| r)
            .map_err(|e| SpeechError::io(format!("reading {}", wav.display()), e))?;
        let name = wav
            .file_name()
            .map_or("audio.wav".into(), |n| n.to_string_lossy().into_owned());
        let file = Part::bytes(bytes)
            .file_name(name)
            .mime_str("audio/wav")
            .map_err(|e| SpeechError::config("remote", e.to_string()))?;
        let mut form = Form::new()
            .part("file", file)
            .text("model", self.config.model.clone())
            .text("response_format", "verbose_json")
            .text("timestamp_granularities[]", "segment");
        if word_timestamps {
            form = form.text("timestamp_granularities[]", "word");
        }
        if let Some(lang) = &self.config.language {
            form = form.text("language", lang.clone());
        }
        Ok(form)
    }
}

fn transport(e: reqwest::Error, timeout: Duration) -> SpeechError {
    if e.is_timeout() {
        SpeechError::Timeout {
            what: "the transcription request".into(),
            after: timeout,
        }
    } else {
        SpeechError::RemoteTransport(e.without_url().to_string())
    }
}

/// OpenAI's `{"error": {"message"}}`, FastAPI's `{"detail": ...}`, or the body's start.
fn error_message(body: &[u8]) -> String {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let found = json.as_ref().and_then(|v| {
        let message = |v: &serde_json::Value| {
            v.pointer("/error/message")
                .and_then(|m| m.as_str())
                .map(str::to_owned)
        };
        message(v)
            .or_else(|| v.get("detail").and_then(message))
            .or_else(|| {
                v.get("detail")
                    .map(|d| d.as_str().map_or_else(|| d.to_string(), str::to_owned))
            })
    });
    found.unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(500).collect())
}

fn to_transcript(v: VerboseJson) -> Transcript {
    let mut segments: Vec<Segment> = v
        .segments
        .into_iter()
        .map(|s| Segment {
            start: s.start,
            end: s.end,
            text: s.text.trim().to_owned(),
            words: vec![],
        })
        .collect();
    for w in v.words {
        let word = Word {
            start: w.start,
            end: w.end,
            word: w.word,
            probability: None,
        };
        let at = segments
            .iter()
            .rposition(|s| s.start <= w.start + 1e-3)
            .unwrap_or(0);
        if let Some(segment) = segments.get_mut(at) {
            segment.words.push(word);
        }
    }
    let empty = segments.iter().all(|s| s.text.is_empty());
    Transcript {
        language: v.language,
        language_probability: None,
        duration_s: v.duration,
        segments,
        empty,
        note: empty.then(|| SERVICE_NO_SPEECH_NOTE.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_go_into_the_segment_they_start_in() {
        let v: VerboseJson = serde_json::from_str(
            r#"{"task":"transcribe","language":"english","duration":4.0,"text":"a b c",
            "segments":[{"id":0,"start":0.0,"end":2.0,"text":" a b"},{"id":1,"start":2.0,"end":4.0,"text":" c"}],
            "words":[{"word":"a","start":0.0,"end":0.5},{"word":"b","start":1.0,"end":1.9},
                     {"word":"c","start":2.1,"end":3.0}]}"#,
        )
        .unwrap();
        let t = to_transcript(v);
        assert_eq!(t.language.as_deref(), Some("english"));
        assert_eq!(t.segments[0].text, "a b");
        let words: Vec<Vec<&str>> = t
            .segments
            .iter()
            .map(|s| s.words.iter().map(|w| w.word.as_str()).collect())
            .collect();
        assert_eq!(words, vec![vec!["a", "b"], vec!["c"]]);
        assert!(!t.empty);
    }

    #[test]
    fn no_segments_is_an_empty_transcript_with_a_note() {
        let v: VerboseJson =
            serde_json::from_str(r#"{"language":"en","duration":3.0,"text":"","segments":[]}"#)
                .unwrap();
        let t = to_transcript(v);
        assert!(t.empty);
        assert_eq!(t.note.as_deref(), Some(SERVICE_NO_SPEECH_NOTE));
    }

    #[test]
    fn error_messages_come_from_openai_and_fastapi_shapes() {
        assert_eq!(
            error_message(br#"{"error":{"message":"bad file"}}"#),
            "bad file"
        );
        assert_eq!(
            error_message(br#"{"detail":{"error":{"message":"unknown model"}}}"#),
            "unknown model"
        );
        assert_eq!(error_message(br#"{"detail":"Not Found"}"#), "Not Found");
        assert_eq!(error_message(b"oops"), "oops");
    }

    #[test]
    fn a_base_url_needs_a_scheme() {
        let config = OpenAiConfig {
            base_url: "localhost:8000".into(),
            model: "whisper-1".into(),
            api_key_env: None,
            language: None,
            timeout: DEFAULT_TIMEOUT,
        };
        assert!(
            OpenAiTranscriber::new(config)
                .unwrap_err()
                .to_string()
                .contains("base_url")
        );
    }
}
