//! What a caller asks for: [`TranscodeSpec`] (with [`Trim`] and [`Watermark`]),
//! [`HlsSpec`], and the [`Limits`] an input must stay within. All deserialize with
//! defaults, so a job payload or a TOML table names only what differs.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{MediaInfo, VideoError};

/// Default output width (720p, 16:9).
pub const DEFAULT_WIDTH: u32 = 1280;
/// Default output height.
pub const DEFAULT_HEIGHT: u32 = 720;
/// Default x264 preset: 2.9–4.7× realtime for 1080p30 → 720p on two busy cores (the bench).
pub const DEFAULT_PRESET: &str = "veryfast";
/// Default x264 constant rate factor (lower is better and bigger; 23 is x264's default).
pub const DEFAULT_CRF: u8 = 23;
/// Default AAC bit rate in kbit/s.
pub const DEFAULT_AUDIO_BITRATE_K: u32 = 128;
/// The highest output frame rate chosen when [`TranscodeSpec::fps`] is not set: a
/// 60 fps source becomes 30 fps, which halves the encoding work.
pub const DEFAULT_MAX_FPS: f64 = 30.0;
/// Default HLS segment length in seconds.
pub const DEFAULT_SEGMENT_S: u32 = 4;
/// The x264 presets, fastest first.
pub const PRESETS: [&str; 9] = [
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
];

/// How to transcode: output frame, trim, watermark, intro/outro and encoder settings.
///
/// The output is always `width`×`height` (the picture scaled to fit, keeping its
/// aspect ratio, and padded with black bars), H.264 yuv420p at a constant frame rate,
/// AAC stereo 48 kHz, in an MP4 with the index first (`+faststart`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TranscodeSpec {
    /// Output width in pixels, even.
    pub width: u32,
    /// Output height in pixels, even.
    pub height: u32,
    /// Output frame rate; by default the main input's, at most [`DEFAULT_MAX_FPS`].
    pub fps: Option<f64>,
    /// Keep only part of the main input.
    pub trim: Option<Trim>,
    /// A logo drawn over the main input (not over the intro and outro).
    pub watermark: Option<Watermark>,
    /// A clip played before the main input (a local file).
    pub intro: Option<PathBuf>,
    /// A clip played after the main input (a local file).
    pub outro: Option<PathBuf>,
    /// The x264 preset, one of [`PRESETS`].
    pub preset: String,
    /// The x264 constant rate factor, 0–51.
    pub crf: u8,
    /// The AAC bit rate in kbit/s, 32–512.
    pub audio_bitrate_k: u32,
}

impl Default for TranscodeSpec {
    fn default() -> Self {
        Self {
            width: DEFAULT_WIDTH,
            height: DEFAULT_HEIGHT,
            fps: None,
            trim: None,
            watermark: None,
            intro: None,
            outro: None,
            preset: DEFAULT_PRESET.to_string(),
            crf: DEFAULT_CRF,
            audio_bitrate_k: DEFAULT_AUDIO_BITRATE_K,
        }
    }
}

/// Which part of the main input to keep.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Trim {
    /// Where to start, in seconds from the beginning.
    pub start_s: f64,
    /// The most to keep from `start_s` on, in seconds; `None` keeps the rest.
    pub max_duration_s: Option<f64>,
}

/// A logo (PNG with transparency, or any still image) drawn in a corner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Watermark {
    /// The image file (local).
    pub path: PathBuf,
    /// The corner it goes in.
    #[serde(default)]
    pub position: Corner,
    /// The logo's width as a fraction of the output width, in (0, 1].
    #[serde(default = "Watermark::default_scale")]
    pub scale: f64,
    /// The gap between the logo and the frame's edges, in output pixels.
    #[serde(default = "Watermark::default_margin")]
    pub margin: u32,
}

impl Watermark {
    /// Default [`scale`](Self::scale): the logo is 15% of the output width.
    pub const DEFAULT_SCALE: f64 = 0.15;
    /// Default [`margin`](Self::margin) in pixels.
    pub const DEFAULT_MARGIN: u32 = 24;

    /// A watermark at `path` with the default corner, scale and margin.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            position: Corner::default(),
            scale: Self::DEFAULT_SCALE,
            margin: Self::DEFAULT_MARGIN,
        }
    }

    fn default_scale() -> f64 {
        Self::DEFAULT_SCALE
    }

    fn default_margin() -> u32 {
        Self::DEFAULT_MARGIN
    }
}

/// A corner of the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Corner {
    /// Top left.
    TopLeft,
    /// Top right.
    TopRight,
    /// Bottom left.
    BottomLeft,
    /// Bottom right (the default).
    #[default]
    BottomRight,
}

/// How to segment for HLS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HlsSpec {
    /// Target segment length in seconds (segments start at key frames).
    pub segment_s: u32,
}

impl Default for HlsSpec {
    fn default() -> Self {
        Self {
            segment_s: DEFAULT_SEGMENT_S,
        }
    }
}

/// What an input may be, checked with ffprobe before FFmpeg runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// The longest input, in seconds.
    pub max_duration_s: f64,
    /// The widest input frame.
    pub max_width: u32,
    /// The tallest input frame.
    pub max_height: u32,
}

impl Default for Limits {
    /// Four hours, 8K.
    fn default() -> Self {
        Self {
            max_duration_s: 4.0 * 3600.0,
            max_width: 7680,
            max_height: 4320,
        }
    }
}

impl Limits {
    /// Checks a probed input's duration and frame size against the limits.
    pub fn check(&self, info: &MediaInfo) -> Result<(), VideoError> {
        if let Some(duration_s) = info.duration_s.filter(|d| *d > self.max_duration_s) {
            return Err(VideoError::TooLong {
                duration_s,
                max_s: self.max_duration_s,
            });
        }
        for video in info.streams.iter().filter(|s| s.width.is_some()) {
            let (width, height) = (video.width.unwrap_or(0), video.height.unwrap_or(0));
            // A portrait video is fine when it fits turned.
            let fits = |w, h| w <= self.max_width && h <= self.max_height;
            if !fits(width, height) && !fits(height, width) {
                return Err(VideoError::TooLarge {
                    width,
                    height,
                    max_width: self.max_width,
                    max_height: self.max_height,
                });
            }
        }
        Ok(())
    }
}

impl TranscodeSpec {
    /// Checks every field's range; the error names the field.
    pub fn validate(&self) -> Result<(), VideoError> {
        check_dimension("width", self.width, 7680)?;
        check_dimension("height", self.height, 4320)?;
        if let Some(fps) = self.fps {
            ensure((1.0..=120.0).contains(&fps), || {
                format!("`fps` must be between 1 and 120, not {fps}")
            })?;
        }
        ensure(PRESETS.contains(&self.preset.as_str()), || {
            format!(
                "`preset` must be one of {}, not {:?}",
                PRESETS.join(", "),
                self.preset
            )
        })?;
        ensure(self.crf <= 51, || {
            format!("`crf` must be 0–51, not {}", self.crf)
        })?;
        ensure((32..=512).contains(&self.audio_bitrate_k), || {
            format!(
                "`audio_bitrate_k` must be 32–512, not {}",
                self.audio_bitrate_k
            )
        })?;
        if let Some(trim) = &self.trim {
            trim.validate()?;
        }
        if let Some(watermark) = &self.watermark {
            watermark.validate(self.width, self.height)?;
        }
        Ok(())
    }
}

impl Trim {
    fn validate(&self) -> Result<(), VideoError> {
        let start = self.start_s;
        ensure(start.is_finite() && start >= 0.0, || {
            format!("`trim.start_s` must be a number ≥ 0, not {start}")
        })?;
        if let Some(max) = self.max_duration_s {
            ensure(max.is_finite() && max > 0.0, || {
                format!("`trim.max_duration_s` must be a number > 0, not {max}")
            })?;
        }
        Ok(())
    }
}

impl Watermark {
    fn validate(&self, width: u32, height: u32) -> Result<(), VideoError> {
        let scale = self.scale;
        ensure(scale > 0.0 && scale <= 1.0, || {
            format!("`watermark.scale` must be in (0, 1], not {scale}")
        })?;
        ensure(self.margin < width.min(height) / 2, || {
            format!(
                "`watermark.margin` {} does not fit a {width}x{height} frame",
                self.margin
            )
        })
    }

    /// The logo's width in output pixels: even, at least 2.
    pub(crate) fn logo_width(&self, output_width: u32) -> u32 {
        let width = (f64::from(output_width) * self.scale / 2.0).round() as u32 * 2;
        width.max(2)
    }
}

impl HlsSpec {
    /// Checks the segment length (1–60 s).
    pub fn validate(&self) -> Result<(), VideoError> {
        ensure((1..=60).contains(&self.segment_s), || {
            format!("`segment_s` must be 1–60, not {}", self.segment_s)
        })
    }
}

/// Fails with `invalid_spec` unless `value` (the field `field`) is even and 16–`max`.
pub(crate) fn check_dimension(field: &str, value: u32, max: u32) -> Result<(), VideoError> {
    ensure(
        value.is_multiple_of(2) && (16..=max).contains(&value),
        || format!("`{field}` must be even and 16–{max}, not {value}"),
    )
}

fn ensure(ok: bool, message: impl FnOnce() -> String) -> Result<(), VideoError> {
    if ok {
        Ok(())
    } else {
        Err(VideoError::InvalidSpec(message()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_720p_veryfast_and_valid() {
        let spec = TranscodeSpec::default();
        assert_eq!(
            (spec.width, spec.height, spec.preset.as_str()),
            (1280, 720, "veryfast")
        );
        spec.validate().unwrap();
    }

    #[test]
    fn bad_fields_are_named() {
        let cases: [(&str, TranscodeSpec); 4] = [
            (
                "width",
                TranscodeSpec {
                    width: 1281,
                    ..Default::default()
                },
            ),
            (
                "crf",
                TranscodeSpec {
                    crf: 60,
                    ..Default::default()
                },
            ),
            (
                "preset",
                TranscodeSpec {
                    preset: "warp".into(),
                    ..Default::default()
                },
            ),
            (
                "trim.max_duration_s",
                TranscodeSpec {
                    trim: Some(Trim {
                        start_s: 0.0,
                        max_duration_s: Some(-1.0),
                    }),
                    ..Default::default()
                },
            ),
        ];
        for (field, spec) in cases {
            let err = spec.validate().unwrap_err();
            assert_eq!(err.code(), "invalid_spec");
            assert!(err.to_string().contains(field), "{err}");
        }
    }

    #[test]
    fn a_toml_table_names_only_what_differs() {
        let spec: TranscodeSpec = toml::from_str(
            "intro = \"intro.mp4\"\n\
             [trim]\nmax_duration_s = 30\n\
             [watermark]\npath = \"logo.png\"\nposition = \"top_left\"\n",
        )
        .unwrap();
        assert_eq!(
            spec.trim,
            Some(Trim {
                start_s: 0.0,
                max_duration_s: Some(30.0)
            })
        );
        let mark = spec.watermark.as_ref().unwrap();
        assert_eq!(
            (mark.position, mark.scale, mark.margin),
            (Corner::TopLeft, 0.15, 24)
        );
        assert_eq!((spec.width, spec.crf), (DEFAULT_WIDTH, DEFAULT_CRF));
        let typo = toml::from_str::<TranscodeSpec>("heigth = 480").unwrap_err();
        assert!(typo.to_string().contains("heigth"), "{typo}");
        let json: TranscodeSpec = serde_json::from_str(r#"{"height": 480, "width": 854}"#).unwrap();
        assert_eq!((json.width, json.height), (854, 480));
    }

    #[test]
    fn logo_width_is_even() {
        let mut mark = Watermark::new("logo.png");
        mark.scale = 0.1;
        assert_eq!(mark.logo_width(1280), 128);
        mark.scale = 0.001;
        assert_eq!(mark.logo_width(1280), 2);
    }
}
