//! [`Ffmpeg`]: where the programs are and which [`Limits`] inputs must meet, plus
//! [`probe`](Ffmpeg::probe) and the checks every operation makes before FFmpeg runs.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::process::{self, file_url, os, strip_context};
use crate::{Limits, MediaInfo, VideoError};

/// Demuxers that read other files named inside the input (playlists): an uploaded
/// "video" must not make FFmpeg open files of the worker's choosing.
const PLAYLIST_FORMATS: [&str; 5] = ["hls", "applehttp", "concat", "dash", "ffconcat"];

/// The FFmpeg installation used to probe and transcode, and the limits on inputs.
#[derive(Debug, Clone)]
pub struct Ffmpeg {
    ffmpeg: PathBuf,
    ffprobe: PathBuf,
    limits: Limits,
}

impl Ffmpeg {
    /// Finds `ffmpeg` and `ffprobe` on `PATH`; fails with `ffmpeg_missing` when either
    /// is absent. Uses the default [`Limits`].
    pub fn from_path() -> Result<Self, VideoError> {
        let find = |program: &str| {
            which::which(program).map_err(|_| VideoError::FfmpegMissing {
                program: program.to_string(),
            })
        };
        Ok(Self::new(find("ffmpeg")?, find("ffprobe")?))
    }

    /// Uses the given programs, with the default [`Limits`].
    pub fn new(ffmpeg: PathBuf, ffprobe: PathBuf) -> Self {
        Self {
            ffmpeg,
            ffprobe,
            limits: Limits::default(),
        }
    }

    /// Replaces the limits inputs are checked against.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The limits inputs are checked against.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The `ffmpeg` program.
    pub fn ffmpeg_path(&self) -> &Path {
        &self.ffmpeg
    }

    /// The `ffprobe` program.
    pub fn ffprobe_path(&self) -> &Path {
        &self.ffprobe
    }

    /// Runs `ffprobe -print_format json -show_format -show_streams` on `input` and
    /// parses the result. Empty files, non-media, truncated or corrupt files and
    /// playlists fail with `invalid_media`.
    pub async fn probe(&self, input: &Path) -> Result<MediaInfo, VideoError> {
        let metadata = tokio::fs::metadata(input)
            .await
            .map_err(|e| VideoError::io(format!("reading {}", input.display()), e))?;
        if !metadata.is_file() {
            return Err(VideoError::invalid_media("not a regular file"));
        }
        if metadata.len() == 0 {
            return Err(VideoError::invalid_media("the file is empty"));
        }
        let args: Vec<OsString> = ["-protocol_whitelist", "file", "-print_format", "json"]
            .into_iter()
            .chain(["-show_format", "-show_streams"])
            .map(os)
            .chain([file_url(input)])
            .collect();
        let url = file_url(input);
        let json = process::run_ffprobe(&self.ffprobe, &args)
            .await
            .map_err(|e| not_media(e, &url.to_string_lossy()))?;
        let info = MediaInfo::from_ffprobe_json(&json)
            .ok_or_else(|| VideoError::invalid_media("not a media file"))?;
        let container = info
            .container
            .split(',')
            .find(|f| PLAYLIST_FORMATS.contains(f));
        if let Some(format) = container {
            return Err(VideoError::invalid_media(format!(
                "a playlist ({format}), not a media file"
            )));
        }
        Ok(info)
    }

    /// Probes `input` and checks that it can be an operation's video: a video stream,
    /// a known positive duration, and within [`Limits`]. `role` ("input", "intro",
    /// "outro") names the file in `invalid_media` messages.
    pub(crate) async fn probe_video(
        &self,
        input: &Path,
        role: &str,
    ) -> Result<MediaInfo, VideoError> {
        let info = self.probe(input).await.map_err(|e| with_role(e, role))?;
        if !info.has_video() {
            return Err(with_role(
                VideoError::invalid_media("no video stream"),
                role,
            ));
        }
        if !info.video_duration_s().is_some_and(|d| d > 0.0) {
            return Err(with_role(
                VideoError::invalid_media("unknown duration"),
                role,
            ));
        }
        self.limits.check(&info)?;
        Ok(info)
    }

    /// Probes a still image (the watermark): one video stream within [`Limits`].
    pub(crate) async fn probe_image(&self, path: &Path) -> Result<MediaInfo, VideoError> {
        require_file(path, "watermark.path").await?;
        let info = self
            .probe(path)
            .await
            .map_err(|e| with_role(e, "watermark"))?;
        if !info.has_video() {
            return Err(with_role(
                VideoError::invalid_media("not an image"),
                "watermark",
            ));
        }
        self.limits.check(&info)?;
        Ok(info)
    }

    pub(crate) fn ffmpeg(&self) -> &Path {
        &self.ffmpeg
    }
}

/// Fails with `invalid_spec` when `path`, named by the request's `field`, is not an
/// existing file: a missing watermark or intro is the request's fault.
pub(crate) async fn require_file(path: &Path, field: &str) -> Result<(), VideoError> {
    match tokio::fs::metadata(path).await {
        Ok(metadata) if metadata.is_file() => Ok(()),
        Ok(_) => Err(VideoError::InvalidSpec(format!(
            "`{field}` {} is not a file",
            path.display()
        ))),
        Err(e) => Err(VideoError::InvalidSpec(format!(
            "`{field}` {}: {e}",
            path.display()
        ))),
    }
}

/// ffprobe exiting with an error on a readable, non-empty file means it is not media
/// we can use; its error lines, without the file's name, say why.
fn not_media(error: VideoError, url: &str) -> VideoError {
    match error {
        VideoError::FfmpegFailed { stderr, status, .. }
            if !status.contains("signal") && !stderr.contains("Permission denied") =>
        {
            let prefix = format!("{url}: ");
            let lines: Vec<&str> = stderr
                .lines()
                .map(|line| strip_context(line).trim_start_matches(prefix.as_str()))
                .collect();
            let why = if lines.is_empty() {
                status
            } else {
                lines.join("; ")
            };
            VideoError::invalid_media(format!("not a media file, or truncated or corrupt: {why}"))
        }
        other => other,
    }
}

fn with_role(error: VideoError, role: &str) -> VideoError {
    match error {
        VideoError::InvalidMedia { reason } if role != "input" => {
            VideoError::invalid_media(format!("{role}: {reason}"))
        }
        other => other,
    }
}
