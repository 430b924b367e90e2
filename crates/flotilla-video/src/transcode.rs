//! [`Ffmpeg::transcode`]: intro + trimmed main (with watermark) + outro into one
//! 720p H.264/AAC MP4, in a single FFmpeg run. Every input is probed and checked
//! first, so bad input fails fast with a clear reason instead of halfway through.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::ffmpeg::require_file;
use crate::graph::{self, Clip, Frame, Logo, SAMPLE_RATE};
use crate::process::{Args, run_ffmpeg};
use crate::spec::DEFAULT_MAX_FPS;
use crate::{Ffmpeg, MediaInfo, RunControl, TranscodeSpec, VideoError};

/// Key frames are forced this often (seconds), so the output can be cut into HLS
/// segments without re-encoding.
pub const KEYFRAME_INTERVAL_S: u32 = 2;

/// What a transcode or preview wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoOutput {
    /// The output file.
    pub path: PathBuf,
    /// ffprobe's view of the output.
    pub media: MediaInfo,
    /// How long FFmpeg ran, in seconds.
    pub elapsed_s: f64,
}

/// Encoder settings shared by transcode and preview.
pub(crate) struct Encoding<'a> {
    pub(crate) preset: &'a str,
    pub(crate) crf: u8,
    pub(crate) audio_bitrate_k: u32,
}

impl Ffmpeg {
    /// Transcodes `input` to `output` as described by `spec` (see [`TranscodeSpec`]).
    ///
    /// Checks the spec, then probes every input (main, intro, outro, watermark) against
    /// the [`Limits`](crate::Limits) before FFmpeg starts. On any failure the partial
    /// output is removed.
    pub async fn transcode(
        &self,
        input: &Path,
        output: &Path,
        spec: &TranscodeSpec,
        ctl: &RunControl,
    ) -> Result<VideoOutput, VideoError> {
        spec.validate()?;
        let plan = ctl.unless_cancelled(self.plan(input, spec)).await?;
        let mut args = Args::default();
        for (path, trim) in &plan.inputs {
            if let Some((start_s, duration_s)) = trim {
                args.add(["-ss", &seconds(*start_s), "-t", &seconds(*duration_s)]);
            }
            args.input(path);
        }
        if let (Some(mark), Some(decoder)) = (&spec.watermark, &plan.logo_decoder) {
            // One still image, decoded as what ffprobe found (not by its extension);
            // a "%d" in its name is not a pattern.
            args.add(["-f", "image2", "-pattern_type", "none", "-c:v", decoder]);
            args.input(&mark.path);
        }
        let graph = graph::build(&plan.clips, &plan.frame, plan.logo.as_ref());
        args.add([
            "-filter_complex",
            &graph.text,
            "-map",
            graph.video,
            "-map",
            graph.audio,
        ]);
        let encoding = Encoding {
            preset: &spec.preset,
            crf: spec.crf,
            audio_bitrate_k: spec.audio_bitrate_k,
        };
        encoding.h264_aac_mp4(&mut args);
        args.output(output);
        let expected_s = plan.clips.iter().map(|c| c.duration_s).sum();
        self.run_to_file(&args, output, Some(expected_s), ctl).await
    }

    /// Runs ffmpeg to write `output`, probes it, and removes it on failure.
    pub(crate) async fn run_to_file(
        &self,
        args: &Args,
        output: &Path,
        expected_s: Option<f64>,
        ctl: &RunControl,
    ) -> Result<VideoOutput, VideoError> {
        let started = Instant::now();
        let result = run_ffmpeg(self.ffmpeg(), args, expected_s, ctl).await;
        let elapsed_s = started.elapsed().as_secs_f64();
        let media = match result {
            Ok(_) => self.probe_written(output).await,
            Err(e) => Err(e),
        };
        match media {
            Ok(media) => Ok(VideoOutput {
                path: output.to_path_buf(),
                media,
                elapsed_s,
            }),
            Err(e) => {
                let _ = tokio::fs::remove_file(output).await;
                Err(e)
            }
        }
    }

    /// Probes a file FFmpeg just wrote; nothing written means no frame was decoded.
    async fn probe_written(&self, output: &Path) -> Result<MediaInfo, VideoError> {
        let written = tokio::fs::metadata(output).await.is_ok_and(|m| m.len() > 0);
        if !written {
            return Err(VideoError::invalid_media("no frame could be decoded"));
        }
        self.probe(output).await
    }

    /// Probes and checks every input and lays out the clips in play order.
    async fn plan(&self, input: &Path, spec: &TranscodeSpec) -> Result<Plan, VideoError> {
        let main = self.probe_video(input, "input").await?;
        let (start_s, duration_s) = main_window(&main, spec)?;
        let mut plan = Plan {
            inputs: vec![(input.to_path_buf(), Some((start_s, duration_s)))],
            clips: Vec::new(),
            frame: Frame {
                width: spec.width,
                height: spec.height,
                fps: output_fps(&main, spec),
            },
            logo: None,
            logo_decoder: None,
        };
        let main_clip = Clip {
            input: 0,
            duration_s,
            has_audio: main.audio().is_some(),
            watermarked: true,
        };
        if let Some(intro) = &spec.intro {
            plan.clips
                .push(self.side_clip(intro, "intro", &mut plan.inputs).await?);
        }
        plan.clips.push(main_clip);
        if let Some(outro) = &spec.outro {
            plan.clips
                .push(self.side_clip(outro, "outro", &mut plan.inputs).await?);
        }
        if let Some(mark) = &spec.watermark {
            let image = self.probe_image(&mark.path).await?;
            plan.logo_decoder = image.video().map(|v| v.codec.clone());
            plan.logo = Some(Logo {
                input: plan.inputs.len(),
                width: mark.logo_width(spec.width),
                corner: mark.position,
                margin: mark.margin,
            });
        }
        Ok(plan)
    }

    /// Checks an intro or outro and adds it as the next input.
    async fn side_clip(
        &self,
        path: &Path,
        role: &str,
        inputs: &mut Vec<(PathBuf, Option<(f64, f64)>)>,
    ) -> Result<Clip, VideoError> {
        require_file(path, role).await?;
        let info = self.probe_video(path, role).await?;
        inputs.push((path.to_path_buf(), None));
        Ok(Clip {
            input: inputs.len() - 1,
            duration_s: info.video_duration_s().unwrap_or_default(),
            has_audio: info.audio().is_some(),
            watermarked: false,
        })
    }
}

/// The inputs (path, optional start and duration) and how they play.
struct Plan {
    inputs: Vec<(PathBuf, Option<(f64, f64)>)>,
    clips: Vec<Clip>,
    frame: Frame,
    logo: Option<Logo>,
    /// The decoder for the logo image, e.g. `png`.
    logo_decoder: Option<String>,
}

/// Where the main clip starts and how long it plays, after the trim.
fn main_window(main: &MediaInfo, spec: &TranscodeSpec) -> Result<(f64, f64), VideoError> {
    let total = main.video_duration_s().unwrap_or_default();
    let (start, max) = spec
        .trim
        .as_ref()
        .map_or((0.0, None), |t| (t.start_s, t.max_duration_s));
    if start >= total {
        return Err(VideoError::InvalidSpec(format!(
            "`trim.start_s` {start} s is past the end of the {total:.2} s input"
        )));
    }
    let rest = total - start;
    Ok((start, max.map_or(rest, |max| max.min(rest))))
}

/// The spec's frame rate, else the main input's capped at [`DEFAULT_MAX_FPS`].
fn output_fps(main: &MediaInfo, spec: &TranscodeSpec) -> f64 {
    let source = main
        .video()
        .and_then(|v| v.frame_rate)
        .filter(|f| *f >= 1.0);
    let fps = spec
        .fps
        .unwrap_or_else(|| source.map_or(DEFAULT_MAX_FPS, |f| f.min(DEFAULT_MAX_FPS)));
    (fps * 1000.0).round() / 1000.0
}

impl Encoding<'_> {
    /// H.264 (yuv420p, high profile, forced key frames) + AAC stereo 48 kHz in an MP4
    /// with the index first; metadata (GPS, names) is not copied.
    pub(crate) fn h264_aac_mp4(&self, args: &mut Args) {
        let keyframes = format!("expr:gte(t,n_forced*{KEYFRAME_INTERVAL_S})");
        args.add([
            "-c:v",
            "libx264",
            "-preset",
            self.preset,
            "-crf",
            &self.crf.to_string(),
        ]);
        args.add([
            "-profile:v",
            "high",
            "-pix_fmt",
            "yuv420p",
            "-force_key_frames",
            &keyframes,
        ]);
        args.add(["-c:a", "aac", "-b:a", &format!("{}k", self.audio_bitrate_k)]);
        args.add(["-ar", &SAMPLE_RATE.to_string(), "-ac", "2"]);
        args.add([
            "-map_metadata",
            "-1",
            "-map_chapters",
            "-1",
            "-movflags",
            "+faststart",
        ]);
        args.add(["-max_muxing_queue_size", "4096", "-f", "mp4"]);
    }
}

/// Seconds as FFmpeg reads them, to the microsecond.
pub(crate) fn seconds(value: f64) -> String {
    format!("{value:.6}")
}
