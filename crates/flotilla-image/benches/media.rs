//! Image pipeline figures, printed rather than asserted (`cargo bench -p flotilla-image`):
//!
//! 1. a 4000x3000 photo-like JPEG (q90) to three renditions (1920 JPEG q85, 1280 WebP or
//!    JPEG, 320 thumbnail), including decode and encode: mean, p50 and max;
//! 2. the seed-001 comparison: ten 1920x1080 images through grayscale, blur, edges and
//!    brightness, sequentially and on one thread per core.
//!
//! Set `FLOTILLA_BENCH_RUNS` to change the number of runs of part 1 (default 10).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flotilla_image::{
    Limits, Op, OutputFormat, Rendition, encode, process_file, render_all, seed_filter_chain,
};
use image::{DynamicImage, Rgb, RgbImage};

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runs = std::env::var("FLOTILLA_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    println!("flotilla-image bench ({} cores)", available_cores());
    bench_renditions(dir.path(), runs, OutputFormat::Jpeg { quality: 85 });
    bench_renditions(dir.path(), runs, OutputFormat::Webp);
    bench_seed_filters(dir.path());
}

/// A photo-like picture: smooth gradients and waves plus a little sensor-like noise.
fn photo_like(width: u32, height: u32, seed: u32) -> RgbImage {
    let mut state = seed.wrapping_mul(2_654_435_761).max(1);
    RgbImage::from_fn(width, height, |x, y| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let noise = (state % 17) as f32 - 8.0;
        let (fx, fy) = (x as f32 / width as f32, y as f32 / height as f32);
        let wave = (fx * 23.0 + seed as f32).sin() * (fy * 17.0).cos();
        let channel = |v: f32| (v + noise).clamp(0.0, 255.0) as u8;
        Rgb([
            channel(40.0 + 180.0 * fx + 20.0 * wave),
            channel(30.0 + 160.0 * fy + 40.0 * wave),
            channel(128.0 + 90.0 * wave),
        ])
    })
}

fn write_jpeg(image: RgbImage, path: &Path, quality: u8) -> u64 {
    let image = flotilla_image::Image::new(DynamicImage::ImageRgb8(image));
    encode(&image, OutputFormat::Jpeg { quality }, path).expect("encode input")
}

fn bench_renditions(dir: &Path, runs: usize, middle: OutputFormat) {
    let input = dir.join("photo-4000x3000.jpg");
    if !input.exists() {
        let bytes = write_jpeg(photo_like(4000, 3000, 1), &input, 90);
        println!(
            "input: 4000x3000 JPEG q90, {:.1} MiB",
            bytes as f64 / 1048576.0
        );
    }
    let renditions = vec![
        rendition("large", 1920, OutputFormat::Jpeg { quality: 85 }),
        rendition("medium", 1280, middle),
        Rendition {
            name: "thumb".into(),
            ops: vec![Op::Thumbnail { size: 320 }],
            format: OutputFormat::Jpeg { quality: 80 },
        },
    ];
    let out = dir.join("renditions");
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        render_all(&input, &renditions, &out, &Limits::default()).expect("render");
        times.push(start.elapsed());
    }
    times.sort();
    let mean = times.iter().sum::<Duration>() / runs.max(1) as u32;
    let label = match middle {
        OutputFormat::Webp => "1280 WebP lossless",
        _ => "1280 JPEG q85",
    };
    println!(
        "4000x3000 JPEG -> 3 renditions (1920 JPEG q85, {label}, 320 thumb): mean {:.0} ms, p50 {:.0} ms, max {:.0} ms over {runs} runs",
        ms(mean),
        ms(times[runs / 2]),
        ms(times[runs - 1]),
    );
}

fn rendition(name: &str, width: u32, format: OutputFormat) -> Rendition {
    Rendition {
        name: name.into(),
        ops: vec![Op::Resize {
            width: Some(width),
            height: None,
            fit: Default::default(),
            enlarge: false,
        }],
        format,
    }
}

fn bench_seed_filters(dir: &Path) {
    const IMAGES: usize = 10;
    let inputs: Vec<PathBuf> = (0..IMAGES)
        .map(|i| {
            let path = dir.join(format!("seed-{i}.jpg"));
            write_jpeg(photo_like(1920, 1080, i as u32 + 7), &path, 90);
            path
        })
        .collect();
    let chain = seed_filter_chain();
    let out_dir = dir.join("filtered");
    std::fs::create_dir_all(&out_dir).expect("out dir");
    let run_one = |i: usize| {
        let output = out_dir.join(format!("seed-{i}.jpg"));
        process_file(
            &inputs[i],
            &chain,
            &output,
            OutputFormat::Jpeg { quality: 85 },
            &Limits::default(),
        )
        .expect("filter");
    };

    let start = Instant::now();
    (0..IMAGES).for_each(run_one);
    report("sequential", start.elapsed(), IMAGES);

    let threads = available_cores();
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= IMAGES {
                        break;
                    }
                    run_one(i);
                }
            });
        }
    });
    report(&format!("threads ({threads})"), start.elapsed(), IMAGES);
}

fn report(label: &str, elapsed: Duration, images: usize) {
    println!(
        "seed-001 filters (grayscale+blur+edges+brightness), 10x 1920x1080, {label}: {:.2} s, {:.1} images/s",
        elapsed.as_secs_f64(),
        images as f64 / elapsed.as_secs_f64()
    );
}

fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}
