//! [`Transcriber`]: one long-lived helper process per model, restarted after it dies.
//!
//! Loading a Whisper model takes seconds, so a worker keeps one helper per model and sends it
//! one request at a time (a tokio `Mutex` serialises callers; CTranslate2 already uses the
//! cores for one request). When the helper dies or times out, the call that saw it fails
//! with a retryable error carrying the exit status and the end of stderr, the process is
//! dropped, and the next call starts a new one. Load failures at [`Transcriber::start`] are
//! typed start-up errors, never a failure of the first job.
//!
//! Deaths are remembered for [`DEATH_WINDOW`]: a helper that died [`DEATHS_DEGRADED`] times
//! in that window (or cannot be restarted) makes [`Transcriber::keeps_dying`] say so, which
//! the worker turns into a degraded health.

use std::collections::VecDeque;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::config::SpeechModel;
use crate::error::SpeechError;
use crate::helper::{Helper, ReadyInfo};
use crate::transcript::Transcript;

/// How long a helper's death counts against it.
pub const DEATH_WINDOW: Duration = Duration::from_secs(600);
/// Deaths within [`DEATH_WINDOW`] that make the worker degraded.
pub const DEATHS_DEGRADED: usize = 3;

/// A Whisper model served by a helper process.
pub struct Transcriber {
    config: SpeechModel,
    helper: Mutex<Option<Helper>>,
    /// When helpers died or failed to restart, newest last, within [`DEATH_WINDOW`].
    deaths: std::sync::Mutex<VecDeque<Instant>>,
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
            deaths: std::sync::Mutex::new(VecDeque::new()),
        })
    }

    /// Why this model's helper counts as failing: it died [`DEATHS_DEGRADED`] times or
    /// more within [`DEATH_WINDOW`]; `None` otherwise.
    pub fn keeps_dying(&self) -> Option<String> {
        let mut deaths = self.deaths.lock().unwrap_or_else(|e| e.into_inner());
        forget_old(&mut deaths, Instant::now());
        (deaths.len() >= DEATHS_DEGRADED).then(|| {
            format!(
                "speech helper for `{}` died {} times in the last {} min",
                self.config.name,
                deaths.len(),
                DEATH_WINDOW.as_secs() / 60
            )
        })
    }

    fn record_death(&self) {
        let mut deaths = self.deaths.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        forget_old(&mut deaths, now);
        deaths.push_back(now);
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
                Helper::spawn(&self.config)
                    .await
                    .inspect_err(|_| self.record_death())?
            }
        };
        let result = helper
            .request(&wav, word_timestamps, self.config.request_timeout)
            .await;
        match &result {
            Err(e) if e.is_retryable() => {
                tracing::warn!(model = %self.config.name, error = %e, "speech helper lost");
                self.record_death();
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

/// Drops the deaths older than [`DEATH_WINDOW`].
fn forget_old(deaths: &mut VecDeque<Instant>, now: Instant) {
    while deaths
        .front()
        .is_some_and(|t| now.duration_since(*t) > DEATH_WINDOW)
    {
        deaths.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deaths_older_than_the_window_are_forgotten() {
        let now = Instant::now() + DEATH_WINDOW * 2;
        let mut deaths: VecDeque<Instant> = [
            now - DEATH_WINDOW - Duration::from_secs(1),
            now - DEATH_WINDOW,
            now - Duration::from_secs(1),
        ]
        .into();
        forget_old(&mut deaths, now);
        assert_eq!(deaths.len(), 2);
    }
}
