//! SubRip (`.srt`) and WebVTT (`.vtt`) subtitles from a [`Transcript`].
//!
//! One cue per non-empty segment. The formats differ in small ways that players check:
//! SRT numbers its cues from 1 and writes `hh:mm:ss,mmm`; WebVTT starts with a `WEBVTT`
//! line and writes `hh:mm:ss.mmm`. A cue's text is kept on one line, and WebVTT's `-->`
//! separator is never left inside a cue's text. An empty transcript gives an empty SRT and a
//! WebVTT file with only its header, both valid.

use crate::transcript::Transcript;

/// The transcript as SubRip subtitles.
pub fn to_srt(transcript: &Transcript) -> String {
    let mut out = String::new();
    for (n, (start, end, text)) in cues(transcript).enumerate() {
        out.push_str(&format!(
            "{}\n{} --> {}\n{}\n\n",
            n + 1,
            timestamp(start, ','),
            timestamp(end, ','),
            text
        ));
    }
    out
}

/// The transcript as WebVTT subtitles.
pub fn to_vtt(transcript: &Transcript) -> String {
    let mut out = String::from("WEBVTT\n\n");
    for (start, end, text) in cues(transcript) {
        out.push_str(&format!(
            "{} --> {}\n{}\n\n",
            timestamp(start, '.'),
            timestamp(end, '.'),
            text.replace("-->", "->")
        ));
    }
    out
}

/// `(start, end, one-line text)` of each segment with text.
fn cues(transcript: &Transcript) -> impl Iterator<Item = (f64, f64, String)> + '_ {
    transcript.segments.iter().filter_map(|s| {
        let text = s.text.split_whitespace().collect::<Vec<_>>().join(" ");
        (!text.is_empty()).then(|| (s.start, s.end.max(s.start), text))
    })
}

/// `hh:mm:ss<sep>mmm`, rounded to the millisecond; negative and non-finite times are 0.
fn timestamp(seconds: f64, sep: char) -> String {
    let ms = if seconds.is_finite() && seconds > 0.0 {
        (seconds * 1000.0).round() as u64
    } else {
        0
    };
    let (h, m, s, ms) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    format!("{h:02}:{m:02}:{s:02}{sep}{ms:03}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transcript::Segment;

    fn transcript(segments: &[(f64, f64, &str)]) -> Transcript {
        Transcript {
            language: Some("en".into()),
            language_probability: Some(1.0),
            duration_s: 4000.0,
            segments: segments
                .iter()
                .map(|&(start, end, text)| Segment {
                    start,
                    end,
                    text: text.into(),
                    words: vec![],
                })
                .collect(),
            empty: segments.is_empty(),
            note: None,
        }
    }

    #[test]
    fn timestamps_use_a_comma_in_srt_and_a_dot_in_vtt() {
        assert_eq!(timestamp(0.0, ','), "00:00:00,000");
        assert_eq!(timestamp(1.5, ','), "00:00:01,500");
        assert_eq!(timestamp(3725.0424, '.'), "01:02:05.042");
        assert_eq!(timestamp(59.9996, '.'), "00:01:00.000");
        assert_eq!(timestamp(-1.0, ','), "00:00:00,000");
        assert_eq!(timestamp(f64::NAN, ','), "00:00:00,000");
    }

    #[test]
    fn srt_numbers_cues_from_one() {
        let t = transcript(&[
            (0.0, 1.25, " Hello world. "),
            (1.25, 3.0, "This is\na test."),
        ]);
        assert_eq!(
            to_srt(&t),
            "1\n00:00:00,000 --> 00:00:01,250\nHello world.\n\n\
             2\n00:00:01,250 --> 00:00:03,000\nThis is a test.\n\n"
        );
    }

    #[test]
    fn vtt_has_a_header_and_no_numbers() {
        let t = transcript(&[(61.5, 3700.0, "a --> b")]);
        assert_eq!(
            to_vtt(&t),
            "WEBVTT\n\n00:01:01.500 --> 01:01:40.000\na -> b\n\n"
        );
    }

    #[test]
    fn empty_segments_are_skipped_and_numbering_stays_continuous() {
        let t = transcript(&[(0.0, 1.0, "one"), (1.0, 2.0, "  "), (2.0, 3.0, "two")]);
        let srt = to_srt(&t);
        assert!(srt.contains("1\n00:00:00,000"));
        assert!(srt.contains("2\n00:00:02,000 --> 00:00:03,000\ntwo"));
        assert!(!srt.contains("\n3\n"));
    }

    #[test]
    fn an_empty_transcript_gives_valid_empty_files() {
        let t = Transcript::empty(3.0, "silence");
        assert_eq!(to_srt(&t), "");
        assert_eq!(to_vtt(&t), "WEBVTT\n\n");
    }

    #[test]
    fn an_end_before_its_start_is_clamped() {
        let t = transcript(&[(2.0, 1.0, "x")]);
        assert!(to_srt(&t).contains("00:00:02,000 --> 00:00:02,000"));
    }
}
