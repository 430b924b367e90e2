//! The `-filter_complex` graph of a transcode, built as a string from plain numbers
//! (never from user text): each clip is normalised to the same frame, rate, pixel
//! format and audio layout, the main clip gets the watermark, and the clips are
//! concatenated.

use std::fmt::Write as _;

use crate::Corner;

/// Output audio sample rate.
pub(crate) const SAMPLE_RATE: u32 = 48_000;

/// One clip of the output (intro, main or outro), as FFmpeg input `input`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Clip {
    /// The FFmpeg input index.
    pub(crate) input: usize,
    /// How long the clip plays, in seconds (its video's duration after trimming).
    pub(crate) duration_s: f64,
    /// Whether the input has an audio stream; silence is made when it has not.
    pub(crate) has_audio: bool,
    /// Whether the watermark goes over this clip.
    pub(crate) watermarked: bool,
}

/// The logo: its FFmpeg input index, width in pixels, corner and margin.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Logo {
    pub(crate) input: usize,
    pub(crate) width: u32,
    pub(crate) corner: Corner,
    pub(crate) margin: u32,
}

/// The output frame every clip is fitted into.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Frame {
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) fps: f64,
}

/// The graph's text and its two output labels (video, audio).
pub(crate) struct Graph {
    pub(crate) text: String,
    pub(crate) video: &'static str,
    pub(crate) audio: &'static str,
}

/// Builds the graph for `clips`, in play order.
pub(crate) fn build(clips: &[Clip], frame: &Frame, logo: Option<&Logo>) -> Graph {
    let mut chains = Vec::new();
    if let Some(logo) = logo {
        chains.push(format!(
            "[{}:v:0]scale={}:-2,format=rgba[logo]",
            logo.input, logo.width
        ));
    }
    for (i, clip) in clips.iter().enumerate() {
        chains.push(video_chain(i, clip, frame, logo));
        chains.push(audio_chain(i, clip));
    }
    if clips.len() == 1 {
        return Graph {
            text: chains.join(";"),
            video: "[v0]",
            audio: "[a0]",
        };
    }
    let mut concat = String::new();
    for i in 0..clips.len() {
        let _ = write!(concat, "[v{i}][a{i}]");
    }
    let _ = write!(concat, "concat=n={}:v=1:a=1[vout][aout]", clips.len());
    chains.push(concat);
    Graph {
        text: chains.join(";"),
        video: "[vout]",
        audio: "[aout]",
    }
}

/// Fit inside the frame keeping the aspect ratio, pad with black to exactly the frame,
/// square pixels, constant rate, yuv420p; then the logo when the clip takes it.
fn video_chain(i: usize, clip: &Clip, frame: &Frame, logo: Option<&Logo>) -> String {
    let Frame {
        width: w,
        height: h,
        fps,
    } = frame;
    let fitted = format!(
        "[{input}:v:0]setpts=PTS-STARTPTS,\
         scale={w}:{h}:force_original_aspect_ratio=decrease:force_divisible_by=2,\
         pad={w}:{h}:(ow-iw)/2:(oh-ih)/2:color=black,setsar=1,fps={fps},format=yuv420p",
        input = clip.input,
    );
    match logo.filter(|_| clip.watermarked) {
        None => format!("{fitted}[v{i}]"),
        Some(logo) => {
            let (x, y) = overlay_position(logo);
            format!(
                "{fitted}[main{i}];[main{i}][logo]overlay={x}:{y}:format=auto,format=yuv420p[v{i}]"
            )
        }
    }
}

/// The clip's audio as 48 kHz stereo, padded or cut to the clip's duration; silence
/// of that duration when the input has none, so concat lines up.
fn audio_chain(i: usize, clip: &Clip) -> String {
    let end = format!("{:.6}", clip.duration_s);
    let normalise =
        format!("aformat=sample_fmts=fltp:sample_rates={SAMPLE_RATE}:channel_layouts=stereo");
    if clip.has_audio {
        format!(
            "[{input}:a:0]asetpts=PTS-STARTPTS,aresample={SAMPLE_RATE},{normalise},apad,atrim=end={end}[a{i}]",
            input = clip.input
        )
    } else {
        format!("anullsrc=r={SAMPLE_RATE}:cl=stereo,{normalise},atrim=end={end}[a{i}]")
    }
}

/// The overlay filter's x and y expressions (W/H: frame, w/h: logo).
fn overlay_position(logo: &Logo) -> (String, String) {
    let m = logo.margin;
    let (left, top) = (format!("{m}"), format!("{m}"));
    let (right, bottom) = (format!("W-w-{m}"), format!("H-h-{m}"));
    match logo.corner {
        Corner::TopLeft => (left, top),
        Corner::TopRight => (right, top),
        Corner::BottomLeft => (left, bottom),
        Corner::BottomRight => (right, bottom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip(input: usize, has_audio: bool, watermarked: bool) -> Clip {
        Clip {
            input,
            duration_s: 2.5,
            has_audio,
            watermarked,
        }
    }

    const FRAME: Frame = Frame {
        width: 1280,
        height: 720,
        fps: 25.0,
    };

    #[test]
    fn a_single_clip_maps_its_own_labels() {
        let graph = build(&[clip(0, true, false)], &FRAME, None);
        assert_eq!((graph.video, graph.audio), ("[v0]", "[a0]"));
        assert!(
            graph
                .text
                .contains("pad=1280:720:(ow-iw)/2:(oh-ih)/2:color=black")
        );
        assert!(graph.text.contains("[0:a:0]asetpts"));
        assert!(!graph.text.contains("concat"));
    }

    #[test]
    fn intro_main_outro_concat_with_silence_and_logo_on_main() {
        let logo = Logo {
            input: 3,
            width: 192,
            corner: Corner::TopLeft,
            margin: 10,
        };
        let clips = [
            clip(1, true, false),
            clip(0, false, true),
            clip(2, true, false),
        ];
        let graph = build(&clips, &FRAME, Some(&logo));
        assert_eq!((graph.video, graph.audio), ("[vout]", "[aout]"));
        assert!(
            graph
                .text
                .ends_with("[v0][a0][v1][a1][v2][a2]concat=n=3:v=1:a=1[vout][aout]")
        );
        assert!(graph.text.contains("anullsrc=r=48000:cl=stereo"));
        assert!(graph.text.contains("atrim=end=2.500000[a1]"));
        assert!(graph.text.contains("[3:v:0]scale=192:-2"));
        assert!(graph.text.contains("[main1][logo]overlay=10:10"));
        assert_eq!(graph.text.matches("overlay").count(), 1);
    }
}
