//! `flotilla bench ai`: the AI figures issue 8 sets targets for, measured on this machine.
//!
//! Per default detector (`objects`, YOLO11n at 640; `faces`, NudeNet 320n at 320): the load
//! time and the per-image latency p50/p95 on the installed real photos (astronaut, chelsea,
//! coffee), split by the detector's stage clock into pre-processing (letterbox), inference
//! (the ONNX Runtime run) and post-processing (decode + NMS), after warm-up runs, and the
//! images/s one worker gets from it. Keyframes: a 60 s 720p video (made with FFmpeg from
//! a real photo) sampled as `ai.detect` samples it (one frame every 2 s) and detected by
//! `objects` in its batches: extraction and detection times, frames/s, and how long a
//! minute of video takes. Per Whisper model (`tiny.en`, `base`): the helper's start and
//! model load times and the real-time factor (audio seconds / processing seconds) on a
//! ~60 s clip spoken by espeak-ng, after one warm-up. Each figure with a target is printed
//! next to it. Models are installed first when missing. Prints figures; asserts nothing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use flotilla_ai::install::SAMPLE_PHOTOS;
use flotilla_ai::{Detector, DynamicImage, InstalledModels, ModelsConfig, Runtime};
use flotilla_speech::{InstalledSpeech, SpeechModel, Transcriber};

/// Detection warm-up runs before timing.
const WARM_UP: usize = 3;
/// Timed transcriptions per Whisper model (after one warm-up).
const SPEECH_RUNS: usize = 3;
/// The spoken clip, about 60 s at espeak-ng's 140 words per minute: different sentences,
/// since Whisper decodes a repeated one again and again (its repetition guard).
const CLIP_TEXT: &str = "The morning train to the harbour was late again, so the captain \
    walked along the river and bought fresh bread and coffee. \
    At noon the market square filled with farmers selling apples, cheese and honey from the \
    hills, while children chased pigeons around the old stone fountain. \
    In the afternoon a storm rolled in from the west, and the fishing boats hurried back \
    before the first heavy drops of rain began to fall on the deck. \
    The library stayed open late on Thursdays, so students could borrow books about \
    astronomy, chemistry and the history of ancient maps. \
    Later that evening the orchestra rehearsed a new symphony, and the conductor asked the \
    violins to play the slow movement more softly. \
    Before going to sleep, the old sailor wrote a letter to his daughter describing the \
    lighthouse, the seals and the bright green northern lights.";
/// Length of the keyframe video, and its sampling (as `ai.detect` with `every_s`).
const KEYFRAME_VIDEO_S: u32 = 60;
const KEYFRAME_EVERY_S: u64 = 2;

/// Targets from issue 8's acceptance: (model, bound, whether the bound is a maximum).
const TARGETS: [(&str, f64, bool); 4] = [
    ("objects", 60.0, true),
    ("faces", 25.0, true),
    ("tiny.en", 6.0, false),
    ("base", 2.0, false),
];

/// Options of `flotilla bench ai`.
#[derive(clap::Args, Debug)]
pub(crate) struct BenchAiArgs {
    /// Where the runtime, models and sample photos are (installed there when missing).
    #[arg(long, env = "FLOTILLA_MODELS", default_value = ".flotilla/models")]
    models_dir: PathBuf,
    /// Timed passes over the sample photos per detector.
    #[arg(long, default_value_t = 30)]
    iterations: usize,
}

pub(crate) async fn run(args: BenchAiArgs) -> anyhow::Result<()> {
    let dir = args.models_dir.clone();
    let (installed, speech) = tokio::task::spawn_blocking(move || install(&dir)).await??;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!("flotilla bench ai ({cores} cores, CPU; {})", load_average());
    let iterations = args.iterations.max(1);
    tokio::task::spawn_blocking(move || detection(&installed, iterations)).await??;
    transcription(&speech).await?;
    println!("after: {}", load_average());
    Ok(())
}

/// Installs what is missing (a no-op when everything is there).
fn install(dir: &Path) -> anyhow::Result<(InstalledModels, InstalledSpeech)> {
    let speech = flotilla_speech::install_defaults(dir).context("installing speech models")?;
    let ai = flotilla_ai::install_defaults(dir).context("installing detectors")?;
    Ok((ai, speech))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "load average unknown".to_owned(),
        |text| {
            let fields: Vec<&str> = text.split_whitespace().take(3).collect();
            format!("load average {}", fields.join(" "))
        },
    )
}

/// One detection's wall time and stages.
#[derive(Debug, Clone, Copy)]
struct Sample {
    total: Duration,
    stages: [Duration; 3],
}

fn detection(installed: &InstalledModels, iterations: usize) -> anyhow::Result<()> {
    let runtime = Runtime::load(&installed.runtime)?;
    let photos = photos(installed)?;
    let names: Vec<&str> = photos.iter().map(|(name, _)| name.as_str()).collect();
    println!(
        "detection: {} photos ({}), {WARM_UP} warm-up runs, {iterations} timed passes",
        photos.len(),
        names.join(", ")
    );
    for config in &ModelsConfig::defaults(installed).models {
        let started = Instant::now();
        let detector = Detector::load_with(runtime, config)?;
        let load = started.elapsed();
        let samples = time_detector(&detector, &photos, iterations)?;
        report_detector(&detector, load, &samples);
        found(&detector, &photos)?;
        if config.name == flotilla_ai::config::OBJECTS_MODEL {
            keyframes(&detector, &installed.sample("chelsea.png"))?;
        }
    }
    Ok(())
}

/// Keyframe detection over a 60 s video, extracted and batched as `ai.detect` does it.
fn keyframes(detector: &Detector, photo: &Path) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let video = dir.path().join("minute.mp4");
    let status = std::process::Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-loglevel",
            "error",
            "-y",
            "-loop",
            "1",
            "-framerate",
            "25",
        ])
        .arg("-i")
        .arg(photo)
        .args(["-t", &KEYFRAME_VIDEO_S.to_string()])
        .args(["-vf", "scale=1280:720,format=yuv420p", "-c:v", "libx264"])
        .args(["-preset", "ultrafast", "-g", "50"])
        .arg(&video)
        .status()
        .context("running ffmpeg to make the keyframe video")?;
    anyhow::ensure!(status.success(), "ffmpeg could not make the keyframe video");
    let every = Duration::from_secs(KEYFRAME_EVERY_S);
    let started = Instant::now();
    let frames = flotilla_ai::keyframes(&video, Some(every), 1000)?;
    let extraction = started.elapsed();
    let started = Instant::now();
    for batch in frames.frames.chunks(detector.batch_size().max(1)) {
        let open = |(_, file): &(Duration, PathBuf)| flotilla_ai::check::open_image(file);
        let images: Vec<DynamicImage> = batch.iter().map(open).collect::<Result<_, _>>()?;
        detector.detect_batch(&images)?;
    }
    let detection = started.elapsed();
    let n = frames.frames.len();
    let total = extraction + detection;
    println!(
        "    keyframes: {KEYFRAME_VIDEO_S} s 1280x720 video, one frame every {KEYFRAME_EVERY_S} s: \
         {n} frames, batches of {}",
        detector.batch_size()
    );
    println!(
        "      extraction {:.0} ms, decode + detection {:.0} ms ({:.1} frames/s); \
         a minute of video in {:.2} s",
        ms(extraction),
        ms(detection),
        n as f64 / detection.as_secs_f64().max(f64::EPSILON),
        total.as_secs_f64() * 60.0 / f64::from(KEYFRAME_VIDEO_S)
    );
    Ok(())
}

fn photos(installed: &InstalledModels) -> anyhow::Result<Vec<(String, DynamicImage)>> {
    SAMPLE_PHOTOS
        .iter()
        .map(|name| {
            let image = flotilla_ai::check::open_image(&installed.sample(name))?;
            let stem = name.trim_end_matches(".png").to_owned();
            Ok((stem, image))
        })
        .collect()
}

fn time_detector(
    detector: &Detector,
    photos: &[(String, DynamicImage)],
    iterations: usize,
) -> anyhow::Result<Vec<Sample>> {
    for (_, image) in photos.iter().cycle().take(WARM_UP) {
        detector.detect(image)?;
    }
    let mut samples = Vec::with_capacity(iterations * photos.len());
    for _ in 0..iterations {
        for (_, image) in photos {
            Detector::take_stage_times();
            let started = Instant::now();
            detector.detect(image)?;
            let total = started.elapsed();
            let stages = Detector::take_stage_times();
            samples.push(Sample { total, stages });
        }
    }
    Ok(samples)
}

fn report_detector(detector: &Detector, load: Duration, samples: &[Sample]) {
    let config = detector.config();
    let size = config.input_size;
    println!(
        "  {} ({size}x{size}, {} classes, {}, {}): load {:.0} ms",
        config.name,
        detector.classes().len(),
        detector.backend(),
        detector.device(),
        ms(load)
    );
    let column = |what: &str, pick: &dyn Fn(&Sample) -> Duration| {
        let mut values: Vec<Duration> = samples.iter().map(pick).collect();
        let (p50, p95) = (percentile(&mut values, 50), percentile(&mut values, 95));
        println!(
            "    {what:<34} p50 {:7.2} ms   p95 {:7.2} ms",
            ms(p50),
            ms(p95)
        );
        p50
    };
    let p50 = column("per image (total)", &|s| s.total);
    column("  pre-processing (letterbox)", &|s| s.stages[0]);
    column("  inference (session run)", &|s| s.stages[1]);
    column("  post-processing (decode + NMS)", &|s| s.stages[2]);
    println!(
        "    {:<34} {:.1} images/s at p50",
        "throughput, one worker",
        1000.0 / ms(p50).max(f64::EPSILON)
    );
    verdict(&config.name, ms(p50), "ms per image (p50)");
}

/// What each photo contains according to the detector (a sanity line, not timed).
fn found(detector: &Detector, photos: &[(String, DynamicImage)]) -> anyhow::Result<()> {
    let mut lines = Vec::new();
    for (name, image) in photos {
        let mut labels: Vec<String> = Vec::new();
        for d in detector.detect(image)? {
            if !labels.contains(&d.label) {
                labels.push(d.label);
            }
        }
        lines.push(format!("{name}: {}", labels.join(" ")));
    }
    println!("    found: {}", lines.join("; "));
    Ok(())
}

/// Prints the target next to `value` and whether it is met (nothing when no target).
fn verdict(model: &str, value: f64, unit: &str) {
    let Some(&(_, bound, at_most)) = TARGETS.iter().find(|(name, ..)| *name == model) else {
        return;
    };
    let met = if at_most {
        value <= bound
    } else {
        value >= bound
    };
    let sign = if at_most { "<=" } else { ">=" };
    let word = if met { "MET" } else { "NOT MET" };
    println!("    target {sign} {bound} {unit}: {value:.1} -> {word}");
}

/// The nearest-rank percentile (sorts `values`).
fn percentile(values: &mut [Duration], p: usize) -> Duration {
    values.sort();
    let rank = (p * values.len()).div_ceil(100).max(1);
    values.get(rank - 1).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn transcription(installed: &InstalledSpeech) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let clip = dir.path().join("clip.wav");
    flotilla_speech::samples::espeak(CLIP_TEXT, &clip)
        .await
        .context("speaking the clip with espeak-ng")?;
    let audio_s = flotilla_speech::audio::wav_duration(&clip)?;
    println!(
        "speech: {audio_s:.1} s espeak-ng clip, word timings on, 1 warm-up, {SPEECH_RUNS} timed runs"
    );
    for model in &installed.models {
        let config = SpeechModel::from_installed(installed, &model.name)?;
        transcribe_model(&config, &clip, audio_s).await?;
    }
    Ok(())
}

async fn transcribe_model(config: &SpeechModel, clip: &Path, audio_s: f64) -> anyhow::Result<()> {
    let started = Instant::now();
    let transcriber = Transcriber::start(config).await?;
    let start = started.elapsed();
    let load = transcriber.ready_info().await.map(|r| r.load);
    let result = time_transcriptions(&transcriber, clip).await;
    transcriber.shutdown().await;
    let (mut runs, text) = result?;
    let best = percentile(&mut runs, 0);
    let median = percentile(&mut runs, 50);
    let load = load.map_or_else(String::new, |l| format!(", model load {:.0} ms", ms(l)));
    println!(
        "  {} ({}): helper start {:.0} ms{load}",
        config.name,
        config.device,
        ms(start)
    );
    let factor = |d: Duration| audio_s / d.as_secs_f64().max(f64::EPSILON);
    println!(
        "    processing best {:.0} ms ({:.1}x realtime), median {:.0} ms ({:.1}x realtime)",
        ms(best),
        factor(best),
        ms(median),
        factor(median)
    );
    let shown: String = text.chars().take(100).collect();
    println!("    text: {shown}...");
    verdict(&config.name, factor(median), "x realtime (median)");
    Ok(())
}

/// One warm-up, then [`SPEECH_RUNS`] timed runs; the times and the last text.
async fn time_transcriptions(
    transcriber: &Transcriber,
    clip: &Path,
) -> anyhow::Result<(Vec<Duration>, String)> {
    transcriber.transcribe(clip, true).await?;
    let mut runs = Vec::with_capacity(SPEECH_RUNS);
    let mut text = String::new();
    for _ in 0..SPEECH_RUNS {
        let started = Instant::now();
        let transcript = transcriber.transcribe(clip, true).await?;
        runs.push(started.elapsed());
        text = transcript.text();
    }
    Ok((runs, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|&v| Duration::from_millis(v)).collect()
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut values = millis(&[50, 10, 40, 20, 30, 60, 70, 80, 90, 100]);
        assert_eq!(percentile(&mut values, 50), Duration::from_millis(50));
        assert_eq!(percentile(&mut values, 95), Duration::from_millis(100));
        assert_eq!(percentile(&mut values, 0), Duration::from_millis(10));
        assert_eq!(percentile(&mut [], 50), Duration::ZERO);
    }
}
