//! [`Transcript`]: what a transcription produces, whichever engine made it.
//!
//! It is the JSON written next to the subtitles in `processed/`, so its field names are part
//! of the output format. An empty transcript (no audio stream, silence) is a success that
//! says why it is empty in `note`, never an error.

use serde::{Deserialize, Serialize};

/// The note of a transcript made for a file without an audio stream.
pub const NO_AUDIO_NOTE: &str = "the input has no audio stream";

/// A transcript with its language, segments and (optionally) word timings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transcript {
    /// The spoken (or forced) language, as the engine names it (`en` locally; OpenAI's own
    /// service answers full names such as `english`). `None` when nothing was analysed.
    pub language: Option<String>,
    /// The language detector's confidence, when the engine reports one.
    pub language_probability: Option<f64>,
    /// The audio's duration in seconds.
    pub duration_s: f64,
    /// The recognised segments, in time order.
    pub segments: Vec<Segment>,
    /// Whether no text was recognised.
    pub empty: bool,
    /// Why the transcript is empty (no audio stream, silence), if it is.
    pub note: Option<String>,
}

/// One segment of speech.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// Start, in seconds from the beginning of the audio.
    pub start: f64,
    /// End, in seconds.
    pub end: f64,
    /// The text, trimmed.
    pub text: String,
    /// Word timings, empty when not requested or not provided.
    #[serde(default)]
    pub words: Vec<Word>,
}

/// One word with its timing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Word {
    /// Start, in seconds.
    pub start: f64,
    /// End, in seconds.
    pub end: f64,
    /// The word as the engine spells it (Whisper keeps a leading space).
    pub word: String,
    /// The engine's confidence, when it reports one.
    pub probability: Option<f64>,
}

impl Transcript {
    /// An empty transcript of `duration_s` seconds that says why it is empty.
    pub fn empty(duration_s: f64, note: impl Into<String>) -> Self {
        Self {
            language: None,
            language_probability: None,
            duration_s,
            segments: Vec::new(),
            empty: true,
            note: Some(note.into()),
        }
    }

    /// The transcript for a file without an audio stream.
    pub fn no_audio(duration_s: f64) -> Self {
        Self::empty(duration_s, NO_AUDIO_NOTE)
    }

    /// The whole text: the segments' texts joined by spaces.
    pub fn text(&self) -> String {
        let texts: Vec<&str> = self.segments.iter().map(|s| s.text.as_str()).collect();
        texts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_joins_segments_and_no_audio_says_so() {
        let mut t = Transcript::no_audio(2.0);
        assert!(t.empty);
        assert_eq!(t.note.as_deref(), Some(NO_AUDIO_NOTE));
        assert_eq!(t.text(), "");
        for (start, text) in [(0.0, "hello"), (1.0, "world")] {
            t.segments.push(Segment {
                start,
                end: start + 1.0,
                text: text.into(),
                words: vec![],
            });
        }
        assert_eq!(t.text(), "hello world");
    }

    #[test]
    fn round_trips_through_json() {
        let json = r#"{"language":"en","language_probability":1.0,"duration_s":3.5,
            "segments":[{"start":0.0,"end":1.5,"text":"hi","words":[
            {"start":0.0,"end":0.5,"word":" hi","probability":0.9}]}],
            "empty":false,"note":null}"#;
        let t: Transcript = serde_json::from_str(json).unwrap();
        assert_eq!(t.segments[0].words[0].probability, Some(0.9));
        let again: Transcript = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(again, t);
    }
}
