//! `flotilla bench media`: the media figures. The seed-001 comparison (10 images through
//! grayscale + blur + edges + brightness: one after another, on threads in one process,
//! and in a pool of worker processes), the time per 4000×3000 JPEG → three renditions,
//! and the realtime factor of a 1080p → 720p H.264 transcode. Inputs are generated with
//! FFmpeg's test sources first, outside the timings. Prints figures; asserts nothing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::samples::{clip, ffmpeg, photo as photo_of};
use flotilla_image::{Limits, OutputFormat, Rendition};
use flotilla_video::{Ffmpeg, RunControl, TranscodeSpec};

/// Options of `flotilla bench media`.
#[derive(clap::Args, Debug)]
pub(crate) struct MediaBenchArgs {
    /// Images for the filter comparison.
    #[arg(long, default_value_t = 10)]
    images: usize,
    /// Seconds of 1080p video for the transcode figure.
    #[arg(long, default_value_t = 60)]
    video_secs: u32,
    /// Internal: run the filter chain over these files and exit (a pool process).
    #[arg(long, hide = true, num_args = 1.., value_delimiter = ',')]
    child: Option<Vec<PathBuf>>,
}

pub(crate) async fn run(args: MediaBenchArgs) -> anyhow::Result<()> {
    if let Some(files) = &args.child {
        return filter_all(files);
    }
    let dir = tempfile::tempdir()?;
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    println!("flotilla bench media ({cores} cores)");
    let images = frames(dir.path(), args.images)?;
    filters(&images, cores)?;
    renditions(dir.path())?;
    video(dir.path(), args.video_secs).await
}

/// The seed-001 chain over one file, written beside it.
fn filter_one(input: &Path) -> anyhow::Result<()> {
    let output = input.with_extension("filtered.png");
    flotilla_image::process_file(
        input,
        &flotilla_image::seed_filter_chain(),
        &output,
        OutputFormat::Png,
        &Limits::default(),
    )?;
    Ok(())
}

fn filter_all(files: &[PathBuf]) -> anyhow::Result<()> {
    files.iter().try_for_each(|f| filter_one(f))
}

fn filters(images: &[PathBuf], cores: usize) -> anyhow::Result<()> {
    let n = images.len();
    let line = |what: &str, took: Duration| {
        let secs = took.as_secs_f64();
        println!(
            "  {what:<52} {n} images in {secs:6.2} s = {:6.1} images/s",
            n as f64 / secs
        );
    };
    println!("seed-001 filters (grayscale, blur, edges, brightness), 1920x1080 JPEG → PNG:");
    let start = Instant::now();
    filter_all(images)?;
    line("sequential, one thread", start.elapsed());

    let start = Instant::now();
    let chunks: Vec<&[PathBuf]> = images.chunks(n.div_ceil(cores).max(1)).collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = chunks.iter().map(|c| s.spawn(|| filter_all(c))).collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().map_err(|_| anyhow::anyhow!("a thread panicked"))?)
    })?;
    line(
        &format!("concurrent, {cores} threads in one worker"),
        start.elapsed(),
    );

    let start = Instant::now();
    let children = chunks
        .iter()
        .map(|chunk| {
            let list: Vec<String> = chunk.iter().map(|p| p.display().to_string()).collect();
            Command::new(std::env::current_exe()?)
                .args(["bench", "media", "--child", &list.join(",")])
                .spawn()
                .context("starting a pool process")
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    for mut child in children {
        if !child.wait()?.success() {
            bail!("a pool process failed");
        }
    }
    line(
        &format!("pool of {cores} worker processes"),
        start.elapsed(),
    );
    Ok(())
}

fn renditions(dir: &Path) -> anyhow::Result<()> {
    let photo = dir.join("photo-4000x3000.jpg");
    photo_of(&photo, "4000x3000")?;
    let renditions: Vec<Rendition> = serde_json::from_value(serde_json::json!([
        { "name": "large", "ops": [{ "op": "resize", "width": 1920, "height": 1920 }], "format": "jpeg", "quality": 85 },
        { "name": "medium", "ops": [{ "op": "resize", "width": 1280, "height": 1280 }], "format": "jpeg", "quality": 85 },
        { "name": "thumb", "ops": [{ "op": "thumbnail", "size": 320 }], "format": "jpeg", "quality": 80 },
    ]))?;
    let mut times = Vec::new();
    for i in 0..10 {
        let out = dir.join(format!("renditions-{i}"));
        let start = Instant::now();
        flotilla_image::render_all(&photo, &renditions, &out, &Limits::default())?;
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    println!(
        "4000x3000 JPEG → 3 renditions (1920, 1280 JPEG, 320 thumb): mean {mean:.0} ms, p50 {:.0} ms, max {:.0} ms (10 runs)",
        times[times.len() / 2],
        times[times.len() - 1]
    );
    Ok(())
}

async fn video(dir: &Path, secs: u32) -> anyhow::Result<()> {
    let source = dir.join("source-1080p.mp4");
    clip(&source, "testsrc2=size=1920x1080:rate=30", secs)?;
    let ffmpeg = Ffmpeg::from_path()?;
    let spec = TranscodeSpec::default();
    let start = Instant::now();
    ffmpeg
        .transcode(
            &source,
            &dir.join("out-720p.mp4"),
            &spec,
            &RunControl::new(),
        )
        .await?;
    let took = start.elapsed().as_secs_f64();
    println!(
        "{secs} s 1080p30 → 720p H.264/AAC (preset {}, crf {}): {took:.1} s = {:.2}x realtime",
        spec.preset,
        spec.crf,
        f64::from(secs) / took
    );
    Ok(())
}

/// `n` distinct 1920x1080 frames of FFmpeg's test source, as JPEG files.
fn frames(dir: &Path, n: usize) -> anyhow::Result<Vec<PathBuf>> {
    let pattern = dir.join("image-%02d.jpg");
    let count = n.to_string();
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=1920x1080:rate=1",
        "-frames:v",
        &count,
        "-q:v",
        "3",
        &path(&pattern),
    ])?;
    Ok((1..=n)
        .map(|i| dir.join(format!("image-{i:02}.jpg")))
        .collect())
}

fn path(p: &Path) -> String {
    p.display().to_string()
}
