//! The smaller operations: [`Ffmpeg::poster`] (one JPEG frame), [`Ffmpeg::preview`]
//! (a short low-resolution clip) and [`Ffmpeg::hls`] (a VOD playlist and segments).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::process::{Args, run_ffmpeg};
use crate::spec::check_dimension;
use crate::transcode::{Encoding, KEYFRAME_INTERVAL_S, VideoOutput, seconds};
use crate::{DEFAULT_AUDIO_BITRATE_K, DEFAULT_PRESET, Ffmpeg, HlsSpec, RunControl, VideoError};

/// The playlist's file name in an HLS output directory.
pub const PLAYLIST_NAME: &str = "playlist.m3u8";
/// Where a poster is taken when no time is given: this fraction of the duration.
pub const POSTER_AT_FRACTION: f64 = 0.1;
/// The x264 CRF of previews: smaller files than the main rendition.
pub const PREVIEW_CRF: u8 = 28;

/// A poster frame that was written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PosterOutput {
    /// The JPEG file.
    pub path: PathBuf,
    /// Its width in pixels.
    pub width: u32,
    /// Its height in pixels.
    pub height: u32,
    /// The time of the frame in the input, in seconds.
    pub at_s: f64,
}

/// An HLS rendition that was written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HlsOutput {
    /// The playlist ([`PLAYLIST_NAME`] in the output directory).
    pub playlist: PathBuf,
    /// The segments, in play order.
    pub segments: Vec<PathBuf>,
    /// Whether the streams were copied (H.264/AAC input) rather than re-encoded.
    pub copied: bool,
}

impl Ffmpeg {
    /// Writes the frame at `at_s` (default: 10% into the video) as a JPEG `width`
    /// pixels wide, keeping the aspect ratio. A time past the end takes the last
    /// frames instead.
    pub async fn poster(
        &self,
        input: &Path,
        output: &Path,
        at_s: Option<f64>,
        width: u32,
        ctl: &RunControl,
    ) -> Result<PosterOutput, VideoError> {
        check_dimension("width", width, 7680)?;
        if let Some(at) = at_s.filter(|at| !(at.is_finite() && *at >= 0.0)) {
            return Err(VideoError::InvalidSpec(format!(
                "`at_s` must be ≥ 0, not {at}"
            )));
        }
        let info = ctl
            .unless_cancelled(self.probe_video(input, "input"))
            .await?;
        let duration = info.video_duration_s().unwrap_or_default();
        let at = at_s
            .unwrap_or(duration * POSTER_AT_FRACTION)
            .min((duration - 0.5).max(0.0));
        let mut args = Args::default();
        args.add(["-ss", &seconds(at)]).input(input);
        args.add([
            "-map",
            "0:v:0",
            "-frames:v",
            "1",
            "-vf",
            &format!("scale={width}:-2"),
        ]);
        args.add(["-q:v", "3", "-f", "image2", "-update", "1"])
            .output(output);
        let written = self.run_to_file(&args, output, None, ctl).await?;
        let video = written.media.video().ok_or_else(|| {
            VideoError::invalid_media(format!("no frame could be decoded at {at:.2} s"))
        })?;
        Ok(PosterOutput {
            path: written.path.clone(),
            width: video.width.unwrap_or_default(),
            height: video.height.unwrap_or_default(),
            at_s: at,
        })
    }

    /// Writes `duration_s` seconds from `start_s` as a small MP4, `height` pixels
    /// high (width to match the aspect ratio), with the input's audio if it has any.
    pub async fn preview(
        &self,
        input: &Path,
        output: &Path,
        start_s: f64,
        duration_s: f64,
        height: u32,
        ctl: &RunControl,
    ) -> Result<VideoOutput, VideoError> {
        check_dimension("height", height, 4320)?;
        if !(start_s.is_finite() && start_s >= 0.0 && duration_s.is_finite() && duration_s > 0.0) {
            return Err(VideoError::InvalidSpec(format!(
                "`start_s` must be ≥ 0 and `duration_s` > 0, not {start_s} and {duration_s}"
            )));
        }
        let info = ctl
            .unless_cancelled(self.probe_video(input, "input"))
            .await?;
        let total = info.video_duration_s().unwrap_or_default();
        if start_s >= total {
            return Err(VideoError::InvalidSpec(format!(
                "`start_s` {start_s} s is past the end of the {total:.2} s input"
            )));
        }
        let duration = duration_s.min(total - start_s);
        let mut args = Args::default();
        args.add(["-ss", &seconds(start_s), "-t", &seconds(duration)])
            .input(input);
        let filter = format!("scale=-2:{height},setsar=1,format=yuv420p");
        args.add(["-map", "0:v:0", "-map", "0:a:0?", "-vf", &filter]);
        let encoding = Encoding {
            preset: DEFAULT_PRESET,
            crf: PREVIEW_CRF,
            audio_bitrate_k: DEFAULT_AUDIO_BITRATE_K,
        };
        encoding.h264_aac_mp4(&mut args);
        args.output(output);
        self.run_to_file(&args, output, Some(duration), ctl).await
    }

    /// Cuts `input` into HLS (MPEG-TS segments of about `spec.segment_s` and a VOD
    /// [`PLAYLIST_NAME`]) in `out_dir`, which is created if needed. H.264/AAC input
    /// (such as [`transcode`](Self::transcode)'s output) is copied, anything else is
    /// encoded with the default settings at its own size.
    pub async fn hls(
        &self,
        input: &Path,
        out_dir: &Path,
        spec: &HlsSpec,
        ctl: &RunControl,
    ) -> Result<HlsOutput, VideoError> {
        spec.validate()?;
        let info = ctl
            .unless_cancelled(self.probe_video(input, "input"))
            .await?;
        tokio::fs::create_dir_all(out_dir)
            .await
            .map_err(|e| VideoError::io(format!("creating {}", out_dir.display()), e))?;
        let input = std::path::absolute(input)
            .map_err(|e| VideoError::io(format!("resolving {}", input.display()), e))?;
        let copy = info.video().is_some_and(|v| v.codec == "h264")
            && info.audio().is_none_or(|a| a.codec == "aac");
        // FFmpeg runs in `out_dir` and names files relative to it: the segment name is
        // a pattern, and a `%` in the directory's name must not be read as part of it.
        let mut args = Args {
            cwd: Some(out_dir.to_path_buf()),
            ..Args::default()
        };
        args.input(&input).add(["-map", "0:v:0", "-map", "0:a:0?"]);
        if copy {
            args.add(["-c", "copy"]);
        } else {
            hls_encoding(&mut args, spec.segment_s);
        }
        args.add(["-f", "hls", "-hls_time", &spec.segment_s.to_string()]);
        args.add(["-hls_playlist_type", "vod", "-hls_segment_type", "mpegts"]);
        args.add(["-hls_segment_filename", SEGMENT_PATTERN]);
        args.output(Path::new(PLAYLIST_NAME));
        let tail = run_ffmpeg(self.ffmpeg(), &args, info.video_duration_s(), ctl).await?;
        let playlist = out_dir.join(PLAYLIST_NAME);
        let segments = read_segments(&playlist, out_dir).await?;
        if segments.is_empty() || !segments.iter().all(|s| s.is_file()) {
            return Err(VideoError::FfmpegFailed {
                program: "ffmpeg",
                status: "wrote no HLS segments".into(),
                stderr: tail,
            });
        }
        Ok(HlsOutput {
            playlist,
            segments,
            copied: copy,
        })
    }
}

/// The segment files' names (a pattern for the HLS muxer), in the output directory.
/// No `file:` here: the playlist lists the segments by this name.
const SEGMENT_PATTERN: &str = "segment_%05d.ts";

/// Re-encodes for HLS with a key frame at every segment boundary.
fn hls_encoding(args: &mut Args, segment_s: u32) {
    let keyframes = format!(
        "expr:gte(t,n_forced*{})",
        segment_s.min(KEYFRAME_INTERVAL_S)
    );
    args.add([
        "-c:v",
        "libx264",
        "-preset",
        DEFAULT_PRESET,
        "-pix_fmt",
        "yuv420p",
    ]);
    args.add(["-force_key_frames", &keyframes]);
    args.add([
        "-c:a",
        "aac",
        "-b:a",
        &format!("{DEFAULT_AUDIO_BITRATE_K}k"),
        "-ac",
        "2",
    ]);
}

/// The segment files the playlist names, as paths in `dir`.
async fn read_segments(playlist: &Path, dir: &Path) -> Result<Vec<PathBuf>, VideoError> {
    let text = tokio::fs::read_to_string(playlist)
        .await
        .map_err(|e| VideoError::io(format!("reading {}", playlist.display()), e))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|name| dir.join(name))
        .collect())
}
