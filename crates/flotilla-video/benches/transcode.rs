//! Times the video operations on a generated 60 s 1080p30 H.264/AAC source and prints
//! wall time and realtime factor (source seconds per wall second). Nothing is asserted.
//!
//! Run with `cargo bench -p flotilla-video`; set `FLOTILLA_BENCH_SECONDS` for a
//! shorter or longer source and `FLOTILLA_BENCH_PRESETS=veryfast,faster` to compare
//! presets.

use std::path::Path;
use std::time::{Duration, Instant};

use flotilla_video::{Ffmpeg, RunControl, TranscodeSpec};

const DEFAULT_SECONDS: f64 = 60.0;

#[tokio::main]
async fn main() {
    let seconds = std::env::var("FLOTILLA_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SECONDS);
    let ffmpeg = Ffmpeg::from_path().expect("ffmpeg and ffprobe on PATH");
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source-1080p30.mp4");
    let made = Instant::now();
    generate_source(&source, seconds).await;
    println!(
        "source: {seconds} s 1080p30 H.264 + AAC, generated in {:.1} s",
        made.elapsed().as_secs_f64()
    );

    for preset in presets() {
        let spec = TranscodeSpec {
            preset: preset.clone(),
            ..TranscodeSpec::default()
        };
        let output = dir.path().join(format!("720p-{preset}.mp4"));
        let (wall, done) =
            timed(ffmpeg.transcode(&source, &output, &spec, &RunControl::new())).await;
        let done = done.expect("transcode");
        let size_mb = done.media.size_bytes.unwrap_or(0) as f64 / 1e6;
        println!(
            "transcode to 720p (preset {preset}, crf {}): {:.2} s wall, {:.2}x realtime, {size_mb:.1} MB",
            spec.crf,
            wall.as_secs_f64(),
            seconds / wall.as_secs_f64()
        );
    }

    let poster = dir.path().join("poster.jpg");
    let (wall, done) = timed(ffmpeg.poster(&source, &poster, None, 1280, &RunControl::new())).await;
    done.expect("poster");
    println!(
        "poster (1280 wide, at 10%): {:.3} s wall",
        wall.as_secs_f64()
    );

    let preview = dir.path().join("preview.mp4");
    let (wall, done) =
        timed(ffmpeg.preview(&source, &preview, 5.0, 6.0, 360, &RunControl::new())).await;
    done.expect("preview");
    println!("preview (6 s at 360p): {:.3} s wall", wall.as_secs_f64());
}

/// The presets to time: `FLOTILLA_BENCH_PRESETS`, else the default.
fn presets() -> Vec<String> {
    match std::env::var("FLOTILLA_BENCH_PRESETS") {
        Ok(list) => list.split(',').map(|p| p.trim().to_string()).collect(),
        Err(_) => vec![TranscodeSpec::default().preset],
    }
}

async fn timed<T>(work: impl Future<Output = T>) -> (Duration, T) {
    let started = Instant::now();
    let value = work.await;
    (started.elapsed(), value)
}

/// testsrc2 + a sine tone, H.264 ultrafast + AAC, before anything is timed.
async fn generate_source(path: &Path, seconds: f64) {
    let video = format!("testsrc2=size=1920x1080:rate=30:duration={seconds}");
    let audio = format!("sine=frequency=440:sample_rate=48000:duration={seconds}");
    let status = tokio::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-y"])
        .args(["-f", "lavfi", "-i", &video, "-f", "lavfi", "-i", &audio])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-c:a", "aac", "-ac", "2"])
        .arg(path)
        .status()
        .await
        .expect("running ffmpeg");
    assert!(status.success(), "generating the source failed");
}
