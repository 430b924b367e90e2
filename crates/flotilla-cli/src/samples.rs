//! Sample media made with FFmpeg's test sources, for the demo and the media benchmark
//! (nothing is downloaded, nothing large is committed).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

/// Runs `ffmpeg` quietly with `args`, overwriting outputs; its error lines on failure.
pub(crate) fn ffmpeg(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .context("running ffmpeg (install it: apt-get install ffmpeg)")?;
    if !out.status.success() {
        bail!("ffmpeg failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// An H.264/AAC MP4 of `seconds` from the lavfi video `source`, with a 440 Hz tone.
pub(crate) fn clip(path: &Path, source: &str, seconds: u32) -> anyhow::Result<()> {
    let seconds = seconds.to_string();
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        source,
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440",
        "-t",
        &seconds,
        "-pix_fmt",
        "yuv420p",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-c:a",
        "aac",
        &path.display().to_string(),
    ])
}

/// A JPEG still of the lavfi test source at `size` (e.g. `4000x3000`).
pub(crate) fn photo(path: &Path, size: &str) -> anyhow::Result<()> {
    let source = format!("testsrc2=size={size}");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &source,
        "-frames:v",
        "1",
        "-q:v",
        "3",
        &path.display().to_string(),
    ])
}

/// An H.264/AAC MP4 of the test pattern whose sound is `sentence` spoken by espeak-ng.
pub(crate) fn spoken_clip(path: &Path, sentence: &str) -> anyhow::Result<()> {
    let wav = path.with_extension("wav");
    let status = Command::new("espeak-ng")
        .arg("-w")
        .arg(&wav)
        .arg(sentence)
        .status()
        .context("running espeak-ng (install it: apt-get install espeak-ng)")?;
    if !status.success() {
        bail!("espeak-ng failed ({status})");
    }
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=640x360:rate=25",
        "-i",
        &wav.display().to_string(),
        "-shortest",
        "-pix_fmt",
        "yuv420p",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-c:a",
        "aac",
        &path.display().to_string(),
    ])
}
