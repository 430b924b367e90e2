//! Keyframes from a real video (made with FFmpeg from the cat photo), detected and
//! aggregated per label.

use std::process::Command;
use std::time::Duration;

use flotilla_ai::check::open_image;
use flotilla_ai::{Detector, aggregate, keyframes};

use crate::fixture::{installed, model};

/// A 3-second, 5 fps video of the cat photo with an I-frame every second.
fn cat_video(dir: &std::path::Path) -> std::path::PathBuf {
    let out = dir.join("cat.mp4");
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-loop", "1", "-i"])
        .arg(installed().sample("chelsea.png"))
        .args([
            "-vf",
            "scale=450:300,format=yuv420p",
            "-t",
            "3",
            "-r",
            "5",
            "-c:v",
            "mpeg4",
            "-g",
            "5",
        ])
        .arg(&out)
        .status()
        .expect("running ffmpeg");
    assert!(status.success());
    out
}

#[test]
fn i_frames_are_detected_and_aggregated() {
    let dir = tempfile::tempdir().unwrap();
    let video = cat_video(dir.path());
    let frames = keyframes(&video, None, 10).unwrap();
    let times: Vec<_> = frames.frames.iter().map(|(at, _)| *at).collect();
    assert_eq!(times, [0, 1, 2].map(Duration::from_secs));
    let detector = Detector::load(&model("objects")).unwrap();
    let detected: Vec<_> = frames
        .frames
        .iter()
        .map(|(at, file)| (*at, detector.detect(&open_image(file).unwrap()).unwrap()))
        .collect();
    let summary = aggregate(&detected);
    let cat = summary
        .iter()
        .find(|s| s.label == "cat")
        .expect("a cat summary");
    assert_eq!(
        (cat.count, cat.first_seen, cat.last_seen),
        (3, Duration::ZERO, Duration::from_secs(2))
    );
    assert!(
        cat.best_score > 0.5 && cat.best_box.width > 200.0,
        "{cat:?}"
    );
}

#[test]
fn every_n_seconds_is_capped() {
    let dir = tempfile::tempdir().unwrap();
    let video = cat_video(dir.path());
    let frames = keyframes(&video, Some(Duration::from_millis(500)), 4).unwrap();
    assert_eq!(frames.frames.len(), 4);
    assert!(
        frames.frames.windows(2).all(|w| w[0].0 < w[1].0),
        "{:?}",
        frames.frames
    );
    assert!(frames.frames.iter().all(|(_, file)| file.is_file()));
}

#[test]
fn a_missing_video_is_an_ffmpeg_error() {
    let err = keyframes("/nonexistent/video.mp4".as_ref(), None, 5).unwrap_err();
    assert!(
        matches!(err, flotilla_ai::AiError::Ffmpeg(ref m) if m.contains("/nonexistent/video.mp4")),
        "{err}"
    );
}
