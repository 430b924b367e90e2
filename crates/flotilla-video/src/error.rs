//! [`VideoError`]: every way a probe or an FFmpeg run can fail, with a stable
//! [`code`](VideoError::code) and whether the job system should retry it.

use std::time::Duration;

/// Why a video operation failed.
///
/// Errors about the input itself (corrupt, too long, no video) and about the request
/// ([`InvalidSpec`](Self::InvalidSpec)) are not retryable: running again gives the same
/// answer. Errors about this machine or this run (FFmpeg missing, I/O, a signal,
/// cancellation, timeout) are.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VideoError {
    /// `ffmpeg` or `ffprobe` is not installed (or not on `PATH`).
    #[error("`{program}` was not found: install FFmpeg (Debian package `ffmpeg`)")]
    FfmpegMissing {
        /// The program that was looked for.
        program: String,
    },
    /// The input is not usable media: empty, truncated, corrupt, not media at all, or
    /// without the stream the operation needs. `reason` is meant for people.
    #[error("invalid media: {reason}")]
    InvalidMedia {
        /// What is wrong, e.g. "no video stream" or "the file is truncated or corrupt: …".
        reason: String,
    },
    /// The input is longer than [`Limits::max_duration_s`](crate::Limits).
    #[error("the video is {duration_s:.1} s long; the limit is {max_s:.0} s")]
    TooLong {
        /// The input's duration.
        duration_s: f64,
        /// The limit it exceeds.
        max_s: f64,
    },
    /// The input's frame is larger than [`Limits`](crate::Limits) allow.
    #[error("the video is {width}x{height}; the limit is {max_width}x{max_height}")]
    TooLarge {
        /// The input's width.
        width: u32,
        /// The input's height.
        height: u32,
        /// The widest frame allowed.
        max_width: u32,
        /// The tallest frame allowed.
        max_height: u32,
    },
    /// The request is wrong: a field out of range, a watermark or intro that does not
    /// exist, a trim that starts past the end. The message names the field.
    #[error("invalid request: {0}")]
    InvalidSpec(String),
    /// The run was cancelled through [`RunControl::cancel`](crate::RunControl); FFmpeg
    /// and its children were killed.
    #[error("cancelled: ffmpeg was stopped")]
    Cancelled,
    /// The run took longer than [`RunControl::timeout`](crate::RunControl); FFmpeg and
    /// its children were killed.
    #[error("timed out after {0:?}: ffmpeg was stopped")]
    TimedOut(Duration),
    /// FFmpeg failed for a reason not recognised as bad input: killed by a signal, out
    /// of disk, an encoder error. `stderr` is the tail of what it printed.
    #[error("{program} {status}: {stderr}")]
    FfmpegFailed {
        /// `ffmpeg` or `ffprobe`.
        program: &'static str,
        /// How it ended, e.g. "exited with status 1" or "was killed by signal 9".
        status: String,
        /// The last lines FFmpeg printed (at most [`STDERR_TAIL_LINES`](crate::STDERR_TAIL_LINES)).
        stderr: String,
    },
    /// Reading or writing a local file, or starting a process, failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl VideoError {
    /// The stable snake_case code for this error, e.g. `"invalid_media"`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::FfmpegMissing { .. } => "ffmpeg_missing",
            Self::InvalidMedia { .. } => "invalid_media",
            Self::TooLong { .. } => "too_long",
            Self::TooLarge { .. } => "too_large",
            Self::InvalidSpec(_) => "invalid_spec",
            Self::Cancelled => "cancelled",
            Self::TimedOut(_) => "timed_out",
            Self::FfmpegFailed { .. } => "ffmpeg_failed",
            Self::Io { .. } => "io",
        }
    }

    /// Whether running the same job again (maybe on another worker) could succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::InvalidMedia { .. }
            | Self::TooLong { .. }
            | Self::TooLarge { .. }
            | Self::InvalidSpec(_) => false,
            Self::FfmpegMissing { .. }
            | Self::Cancelled
            | Self::TimedOut(_)
            | Self::FfmpegFailed { .. }
            | Self::Io { .. } => true,
        }
    }

    pub(crate) fn invalid_media(reason: impl Into<String>) -> Self {
        Self::InvalidMedia {
            reason: reason.into(),
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_is_final_and_trouble_on_this_machine_is_retried() {
        assert!(!VideoError::invalid_media("no video stream").is_retryable());
        assert!(!VideoError::InvalidSpec("crf".into()).is_retryable());
        assert!(VideoError::Cancelled.is_retryable());
        assert!(VideoError::TimedOut(Duration::from_secs(1)).is_retryable());
        let io = VideoError::io("x", std::io::Error::other("disk"));
        assert_eq!(io.code(), "io");
        assert!(io.is_retryable());
    }
}
