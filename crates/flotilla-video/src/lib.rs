//! Flotilla's video toolkit: a thin, typed wrapper around the system `ffprobe` and
//! `ffmpeg` for the built-in video handlers. It knows nothing of queues or HTTP; a
//! handler downloads the inputs, calls one operation and uploads what it wrote.
//!
//! It drives the FFmpeg programs rather than linking libav*: the programs are what
//! operators install and trust, a crash or hang stays in a child process that can be
//! killed, and the filter graph stays readable in one place (the `graph` module builds it).
//!
//! # Layout
//! - [`ffmpeg`]: [`Ffmpeg`] (where the programs are, [`Limits`]) and [`Ffmpeg::probe`].
//! - [`media`]: [`MediaInfo`] and [`StreamInfo`], parsed from ffprobe's JSON.
//! - [`spec`]: [`TranscodeSpec`], [`Trim`], [`Watermark`], [`HlsSpec`], [`Limits`].
//! - [`transcode`]: [`Ffmpeg::transcode`]: intro + trimmed, watermarked main + outro → 720p MP4.
//! - [`extras`]: [`Ffmpeg::poster`], [`Ffmpeg::preview`] and [`Ffmpeg::hls`].
//! - [`control`]: [`RunControl`] (progress, cancellation, timeout) and [`Progress`].
//! - `process`: spawning, supervising and killing FFmpeg; turning its exit into errors.
//! - [`error`]: [`VideoError`], with a stable `code()` and `is_retryable()`.
//!
//! # Invariants
//! - Inputs are probed and checked (video stream, duration, [`Limits`]) before FFmpeg runs.
//! - No shell: paths are whole arguments, passed as `file:` URLs, and inputs may use
//!   only the `file` protocol; playlists (HLS, concat) are refused as inputs.
//! - Cancellation, timeouts and dropping a running future kill FFmpeg's whole process
//!   group, and the child is reaped before the call returns.
//! - A failed run leaves no output file behind (except a partial HLS directory).

pub mod control;
pub mod error;
pub mod extras;
pub mod ffmpeg;
mod graph;
pub mod media;
mod process;
pub mod spec;
pub mod transcode;

pub use control::{PROGRESS_INTERVAL, Progress, ProgressFn, RunControl};
pub use error::VideoError;
pub use extras::{HlsOutput, PLAYLIST_NAME, POSTER_AT_FRACTION, PREVIEW_CRF, PosterOutput};
pub use ffmpeg::Ffmpeg;
pub use media::{MediaInfo, StreamInfo, StreamKind};
pub use process::{PROBE_TIMEOUT, STDERR_TAIL_BYTES, STDERR_TAIL_LINES};
pub use spec::TranscodeSpec;
pub use spec::{
    Corner, DEFAULT_AUDIO_BITRATE_K, DEFAULT_CRF, DEFAULT_HEIGHT, DEFAULT_MAX_FPS, DEFAULT_PRESET,
    DEFAULT_SEGMENT_S, DEFAULT_WIDTH, HlsSpec, Limits, PRESETS, Trim, Watermark,
};
pub use transcode::{KEYFRAME_INTERVAL_S, VideoOutput};
