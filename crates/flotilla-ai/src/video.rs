//! Video detections: keyframe extraction with FFmpeg and per-label aggregation.
//!
//! A video is sampled into keyframes (its I-frames, or one every N seconds, capped), each
//! is run through a detector, and the per-frame results are folded into one summary per
//! label: in how many frames it was seen, its best score, when it was first and last
//! seen, and the best frame's box. The aggregation is pure and does not care about frame
//! order.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::detect::{BBox, Detection};
use crate::error::AiError;

/// One label's presence across a video.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelSummary {
    /// The class name.
    pub label: String,
    /// Number of frames it was detected in (several boxes in one frame count once).
    pub count: usize,
    /// Its highest score.
    pub best_score: f32,
    /// The earliest frame time it was seen at.
    #[serde(with = "seconds")]
    pub first_seen: Duration,
    /// The latest frame time it was seen at.
    #[serde(with = "seconds")]
    pub last_seen: Duration,
    /// The box of its highest-scoring detection.
    pub best_box: BBox,
    /// The time of the frame holding that detection.
    #[serde(with = "seconds")]
    pub best_frame_at: Duration,
}

/// Folds per-frame detections into one summary per label, sorted by best score
/// (descending), then label.
pub fn aggregate(frames: &[(Duration, Vec<Detection>)]) -> Vec<LabelSummary> {
    let mut summaries: Vec<LabelSummary> = Vec::new();
    for (at, detections) in frames {
        let mut seen_here: Vec<&str> = Vec::new();
        for d in detections {
            let first_in_frame = !seen_here.contains(&d.label.as_str());
            if first_in_frame {
                seen_here.push(&d.label);
            }
            match summaries.iter_mut().find(|s| s.label == d.label) {
                Some(summary) => summary.add(*at, d, first_in_frame),
                None => summaries.push(LabelSummary::new(*at, d)),
            }
        }
    }
    summaries.sort_by(|a, b| {
        b.best_score
            .total_cmp(&a.best_score)
            .then_with(|| a.label.cmp(&b.label))
    });
    summaries
}

impl LabelSummary {
    fn new(at: Duration, d: &Detection) -> Self {
        Self {
            label: d.label.clone(),
            count: 1,
            best_score: d.score,
            first_seen: at,
            last_seen: at,
            best_box: d.bbox,
            best_frame_at: at,
        }
    }

    fn add(&mut self, at: Duration, d: &Detection, first_in_frame: bool) {
        if first_in_frame {
            self.count += 1;
        }
        self.first_seen = self.first_seen.min(at);
        self.last_seen = self.last_seen.max(at);
        if d.score > self.best_score {
            self.best_score = d.score;
            self.best_box = d.bbox;
            self.best_frame_at = at;
        }
    }
}

/// Frames extracted from a video into a temporary directory (removed on drop).
#[derive(Debug)]
pub struct Keyframes {
    /// Each frame's presentation time and PNG file, in order.
    pub frames: Vec<(Duration, PathBuf)>,
    _dir: tempfile::TempDir,
}

/// Extracts keyframes with `ffmpeg`: the I-frames when `every` is `None`, otherwise one
/// frame every `every`; at most `cap` frames.
pub fn keyframes(path: &Path, every: Option<Duration>, cap: usize) -> Result<Keyframes, AiError> {
    let dir = tempfile::tempdir().map_err(|e| AiError::io("creating a temporary directory", e))?;
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-hide_banner", "-nostats", "-loglevel", "info"]);
    if every.is_none() {
        cmd.args(["-skip_frame", "nokey"]);
    }
    cmd.arg("-i").arg(path);
    let filter = match every {
        Some(every) => format!("fps=1/{},showinfo", every.as_secs_f64()),
        None => "showinfo".to_owned(),
    };
    cmd.args([
        "-vf",
        &filter,
        "-fps_mode",
        "passthrough",
        "-frames:v",
        &cap.to_string(),
    ])
    .arg(dir.path().join("frame-%06d.png"));
    let output = cmd
        .output()
        .map_err(|e| AiError::Ffmpeg(format!("cannot run ffmpeg ({e}); install FFmpeg")))?;
    let log = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        return Err(AiError::Ffmpeg(format!(
            "{} failed: {}",
            path.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        )));
    }
    let times = frame_times(&log);
    let frames = times
        .into_iter()
        .enumerate()
        .map(|(i, at)| (at, dir.path().join(format!("frame-{:06}.png", i + 1))))
        .filter(|(_, file)| file.is_file())
        .collect();
    Ok(Keyframes { frames, _dir: dir })
}

/// The `pts_time:` of each frame in FFmpeg's `showinfo` log, in order.
fn frame_times(log: &str) -> Vec<Duration> {
    log.lines()
        .filter(|line| line.contains("Parsed_showinfo") && line.contains(" n:"))
        .filter_map(|line| {
            line.split("pts_time:")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<f64>()
                .ok()
        })
        .map(|secs| Duration::from_secs_f64(secs.max(0.0)))
        .collect()
}

/// Durations as seconds (a float) in JSON and TOML.
mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(label: &str, score: f32, x: f32) -> Detection {
        Detection {
            label: label.to_owned(),
            class_id: 0,
            score,
            bbox: BBox {
                x,
                y: 0.0,
                width: 1.0,
                height: 1.0,
            },
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn summarises_each_label_across_frames() {
        let frames = vec![
            (
                secs(4),
                vec![
                    det("cat", 0.6, 4.0),
                    det("cat", 0.5, 40.0),
                    det("dog", 0.3, 0.0),
                ],
            ),
            (secs(0), vec![det("cat", 0.7, 0.0)]),
            (secs(8), vec![det("cup", 0.9, 8.0)]),
            (secs(2), vec![]),
        ];
        let summary = aggregate(&frames);
        let labels: Vec<_> = summary.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels, ["cup", "cat", "dog"]);
        let cat = &summary[1];
        assert_eq!(cat.count, 2, "two boxes in one frame count once");
        assert_eq!(
            (cat.first_seen, cat.last_seen),
            (secs(0), secs(4)),
            "order of frames does not matter"
        );
        assert_eq!(
            (cat.best_score, cat.best_frame_at, cat.best_box.x),
            (0.7, secs(0), 0.0)
        );
        let cup = &summary[0];
        assert_eq!(
            (cup.count, cup.first_seen, cup.last_seen, cup.best_frame_at),
            (1, secs(8), secs(8), secs(8))
        );
    }

    #[test]
    fn no_frames_or_no_detections_give_nothing() {
        assert!(aggregate(&[]).is_empty());
        assert!(aggregate(&[(secs(1), vec![])]).is_empty());
    }

    #[test]
    fn serialises_times_as_seconds() {
        let summary = &aggregate(&[(Duration::from_millis(1500), vec![det("cat", 0.5, 0.0)])])[0];
        let json = serde_json::to_value(summary).unwrap();
        assert_eq!(json["first_seen"], 1.5);
        let back: LabelSummary = serde_json::from_value(json).unwrap();
        assert_eq!(&back, summary);
    }

    #[test]
    fn reads_frame_times_from_showinfo() {
        let log = "[Parsed_showinfo_1 @ 0x1] config in time_base: 1/25\n\
                   [Parsed_showinfo_1 @ 0x1] n:   0 pts:      0 pts_time:0       duration:1\n\
                   [Parsed_showinfo_1 @ 0x1] n:   1 pts:     50 pts_time:2.5     duration:1\n";
        assert_eq!(frame_times(log), [secs(0), Duration::from_millis(2500)]);
    }
}
