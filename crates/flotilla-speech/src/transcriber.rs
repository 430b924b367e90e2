//! [`Transcriber`]: one long-lived helper process per model, restarted after it dies.
//!
//! Loading a Whisper model takes seconds, so a worker keeps one helper per model and sends it
//! one request at a time (a tokio `Mutex` serialises callers; CTranslate2 already uses the
//! cores for one request). When the helper dies or times out, the call that saw it fails
//! with a retryable error carrying the exit status and the end of stderr, the process is
//! dropped, and the next call starts a new one. Load failures at [`Transcriber::start`] are
//! typed start-up errors, never a failure of the first job.

use std::path::Path;

use tokio::sync::Mutex;

use crate::config::SpeechModel;
use crate::error::SpeechError;
use crate::helper::{Helper, ReadyInfo};
use crate::transcript::Transcript;

/// A Whisper model served by a helper process.
pub struct Transcriber {
    config: SpeechModel,
    helper: Mutex<Option<Helper>>,
}

impl std::fmt::Debug for Transcriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transcriber")
            .field("model", &self.config.name)
            .finish()
    }
}

impl Transcriber {
    /// Validates `config`, starts its helper and waits until the model is loaded.
    pub async fn start(config: &SpeechModel) -> Result<Self, SpeechError> {
        config.validate()?;
        let helper = Helper::spawn(config).await?;
        Ok(Self {
            config: config.clone(),
            helper: Mutex::new(Some(helper)),
        })
    }

    /// The configuration it runs.
    pub fn model(&self) -> &SpeechModel {
        &self.config
    }

    /// The running helper's process id, if one is running.
    pub async fn pid(&self) -> Option<u32> {
        self.helper.lock().await.as_ref().and_then(|h| h.pid)
    }

    /// What the running helper reported when it became ready (its model load time).
    pub async fn ready_info(&self) -> Option<ReadyInfo> {
        self.helper.lock().await.as_ref().map(|h| h.ready)
    }

    /// Transcribes a WAV file (16 kHz mono, as [`crate::audio::extract_16k_mono`] writes),
    /// with word timings when asked. Starts a new helper first if the last one died.
    pub async fn transcribe(
        &self,
        wav: &Path,
        word_timestamps: bool,
    ) -> Result<Transcript, SpeechError> {
        let wav = std::path::absolute(wav)
            .map_err(|e| SpeechError::io(format!("resolving {}", wav.display()), e))?;
        // Taken out while in use: a call cancelled mid-request drops (and kills) the
        // helper instead of leaving an unread answer in its pipe for the next call.
        let mut slot = self.helper.lock().await;
        let mut helper = match slot.take() {
            Some(helper) => helper,
            None => {
                tracing::info!(model = %self.config.name, "restarting the speech helper");
                Helper::spawn(&self.config).await?
            }
        };
        let result = helper
            .request(&wav, word_timestamps, self.config.request_timeout)
            .await;
        match &result {
            Err(e) if e.is_retryable() => {
                tracing::warn!(model = %self.config.name, error = %e, "speech helper lost");
            }
            _ => *slot = Some(helper),
        }
        result
    }

    /// Stops the helper: closes its input and waits for it to exit.
    pub async fn shutdown(&self) {
        if let Some(helper) = self.helper.lock().await.take() {
            helper.shutdown().await;
        }
    }
}
