//! [`MediaInfo`]: what `ffprobe -show_format -show_streams` says about a file, parsed
//! from its JSON into plain numbers. ffprobe prints most numbers as strings and "N/A"
//! for unknowns; both become `Option`s here.

use serde::{Deserialize, Serialize};

/// The technical metadata of a media file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaInfo {
    /// The demuxer's names for the container, e.g. `"mov,mp4,m4a,3gp,3g2,mj2"`.
    pub container: String,
    /// The duration in seconds, when known.
    pub duration_s: Option<f64>,
    /// The overall bit rate in bits per second, when known.
    pub bit_rate: Option<u64>,
    /// The file size in bytes.
    pub size_bytes: Option<u64>,
    /// Every stream, in file order.
    pub streams: Vec<StreamInfo>,
}

/// One stream of a media file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamInfo {
    /// The stream's index in the file.
    pub index: u32,
    /// Video, audio, subtitle or other (data, attachment).
    pub kind: StreamKind,
    /// The codec's short name, e.g. `"h264"` or `"aac"`.
    pub codec: String,
    /// Frame width in pixels (video).
    pub width: Option<u32>,
    /// Frame height in pixels (video).
    pub height: Option<u32>,
    /// Frames per second (video): the average rate, else the base rate.
    pub frame_rate: Option<f64>,
    /// Samples per second (audio).
    pub sample_rate: Option<u32>,
    /// Number of channels (audio).
    pub channels: Option<u32>,
    /// Bit rate in bits per second, when known.
    pub bit_rate: Option<u64>,
    /// The stream's duration in seconds, when known.
    pub duration_s: Option<f64>,
}

/// What a stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamKind {
    /// Pictures.
    Video,
    /// Sound.
    Audio,
    /// Subtitles.
    Subtitle,
    /// Data, attachments, cover art (an attached picture, which ffprobe calls video)
    /// and anything else.
    Other,
}

impl MediaInfo {
    /// The first video stream, if any (cover art is [`StreamKind::Other`], not video).
    pub fn video(&self) -> Option<&StreamInfo> {
        self.streams.iter().find(|s| s.kind == StreamKind::Video)
    }

    /// The first audio stream, if any.
    pub fn audio(&self) -> Option<&StreamInfo> {
        self.streams.iter().find(|s| s.kind == StreamKind::Audio)
    }

    /// Whether the file has a video stream with known dimensions.
    pub fn has_video(&self) -> bool {
        self.video()
            .is_some_and(|v| v.width.is_some() && v.height.is_some())
    }

    /// The duration of the video stream when known, else of the file.
    pub fn video_duration_s(&self) -> Option<f64> {
        self.video().and_then(|v| v.duration_s).or(self.duration_s)
    }

    /// Parses ffprobe's `-print_format json -show_format -show_streams` output.
    /// `None` when it has no `format` section (ffprobe could not open the file).
    pub fn from_ffprobe_json(json: &[u8]) -> Option<Self> {
        let raw: RawProbe = serde_json::from_slice(json).ok()?;
        let format = raw.format?;
        Some(Self {
            container: format.format_name.unwrap_or_default(),
            duration_s: number(format.duration.as_deref()),
            bit_rate: number(format.bit_rate.as_deref()),
            size_bytes: number(format.size.as_deref()),
            streams: raw.streams.into_iter().map(StreamInfo::from).collect(),
        })
    }
}

impl From<RawStream> for StreamInfo {
    fn from(raw: RawStream) -> Self {
        let cover_art = raw.disposition.is_some_and(|d| d.attached_pic == 1);
        let kind = match raw.codec_type.as_deref() {
            Some("video") if !cover_art => StreamKind::Video,
            Some("audio") => StreamKind::Audio,
            Some("subtitle") => StreamKind::Subtitle,
            _ => StreamKind::Other,
        };
        let frame_rate = rate(raw.avg_frame_rate.as_deref()).or(rate(raw.r_frame_rate.as_deref()));
        Self {
            index: raw.index,
            kind,
            codec: raw.codec_name.unwrap_or_default(),
            width: raw.width.filter(|w| *w > 0),
            height: raw.height.filter(|h| *h > 0),
            frame_rate: frame_rate.filter(|_| kind == StreamKind::Video),
            sample_rate: number(raw.sample_rate.as_deref()),
            channels: raw.channels.filter(|c| *c > 0),
            bit_rate: number(raw.bit_rate.as_deref()),
            duration_s: number(raw.duration.as_deref()),
        }
    }
}

/// A number ffprobe printed as a string; `None` for "N/A", negatives, NaN.
fn number<T: std::str::FromStr>(text: Option<&str>) -> Option<T> {
    let text = text?.trim();
    if text.starts_with('-') {
        return None;
    }
    text.parse()
        .ok()
        .filter(|_| !text.eq_ignore_ascii_case("nan"))
}

/// A rate such as `"30000/1001"`; `None` for `"0/0"` and other non-rates.
fn rate(text: Option<&str>) -> Option<f64> {
    let (num, den) = text?.split_once('/')?;
    let (num, den): (f64, f64) = (num.parse().ok()?, den.parse().ok()?);
    let value = num / den;
    (value.is_finite() && value > 0.0).then_some(value)
}

#[derive(Deserialize)]
struct RawProbe {
    #[serde(default)]
    streams: Vec<RawStream>,
    format: Option<RawFormat>,
}

#[derive(Deserialize)]
struct RawFormat {
    format_name: Option<String>,
    duration: Option<String>,
    size: Option<String>,
    bit_rate: Option<String>,
}

#[derive(Deserialize)]
struct RawStream {
    index: u32,
    codec_name: Option<String>,
    codec_type: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    avg_frame_rate: Option<String>,
    r_frame_rate: Option<String>,
    sample_rate: Option<String>,
    channels: Option<u32>,
    bit_rate: Option<String>,
    duration: Option<String>,
    disposition: Option<RawDisposition>,
}

#[derive(Deserialize)]
struct RawDisposition {
    #[serde(default)]
    attached_pic: u8,
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{
      "streams": [
        {"index": 0, "codec_name": "h264", "codec_type": "video", "width": 640, "height": 480,
         "r_frame_rate": "30000/1001", "avg_frame_rate": "0/0", "duration": "4.000000", "bit_rate": "N/A"},
        {"index": 1, "codec_name": "aac", "codec_type": "audio", "sample_rate": "48000",
         "channels": 2, "r_frame_rate": "0/0", "avg_frame_rate": "0/0", "bit_rate": "128000"},
        {"index": 2, "codec_type": "data"},
        {"index": 3, "codec_name": "mjpeg", "codec_type": "video", "width": 300, "height": 300,
         "disposition": {"default": 0, "attached_pic": 1}}
      ],
      "format": {"format_name": "mov,mp4,m4a,3gp,3g2,mj2", "duration": "4.010000",
                 "size": "123456", "bit_rate": "246000"}
    }"#;

    #[test]
    fn parses_strings_rates_and_unknowns() {
        let info = MediaInfo::from_ffprobe_json(SAMPLE.as_bytes()).unwrap();
        assert_eq!(info.container, "mov,mp4,m4a,3gp,3g2,mj2");
        assert_eq!(info.size_bytes, Some(123_456));
        let video = info.video().unwrap();
        assert!((video.frame_rate.unwrap() - 29.97).abs() < 0.01);
        assert_eq!(video.bit_rate, None);
        assert_eq!(info.video_duration_s(), Some(4.0));
        let audio = info.audio().unwrap();
        assert_eq!((audio.sample_rate, audio.channels), (Some(48_000), Some(2)));
        assert_eq!(audio.frame_rate, None);
        assert_eq!(info.streams[2].kind, StreamKind::Other);
        assert_eq!(
            info.streams[3].kind,
            StreamKind::Other,
            "cover art is not video"
        );
        assert!(info.has_video());
    }

    #[test]
    fn no_format_section_means_not_media() {
        assert_eq!(MediaInfo::from_ffprobe_json(b"{\n\n}"), None);
        assert_eq!(MediaInfo::from_ffprobe_json(b"not json"), None);
    }
}
