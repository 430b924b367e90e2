//! Installs (if needed) and checks the default models, printing load and per-image
//! inference times measured on the sample photos, for ONNX Runtime and (with the `tract`
//! feature) tract.
//!
//! `cargo run --release -p flotilla-ai [--features tract] --example check_models [DIR] [RUNS]`

use std::time::Instant;

use flotilla_ai::check::open_image;
use flotilla_ai::{
    Backend, Detector, DynamicImage, ModelConfig, ModelsConfig, Runtime, check_model_on,
    install_defaults,
};

const PHOTOS: [&str; 3] = ["chelsea.png", "astronaut.png", "coffee.png"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| ".flotilla/models".to_owned());
    let runs: u32 = args.next().map_or(Ok(10), |n| n.parse())?;
    let installed = install_defaults(dir.as_ref())?;
    let started = Instant::now();
    Runtime::load(&installed.runtime)?;
    println!(
        "runtime {} loaded in {:.1} ms",
        installed.runtime.display(),
        ms(started)
    );
    let photos = PHOTOS
        .iter()
        .map(|name| open_image(&installed.sample(name)))
        .collect::<Result<Vec<_>, _>>()?;
    let backends: &[Backend] = if cfg!(feature = "tract") {
        &[Backend::Ort, Backend::Tract]
    } else {
        &[Backend::Ort]
    };
    for model in ModelsConfig::defaults(&installed).models {
        for &backend in backends {
            measure(
                &ModelConfig {
                    backend,
                    ..model.clone()
                },
                &photos,
                runs,
            )?;
        }
    }
    Ok(())
}

fn measure(
    model: &ModelConfig,
    photos: &[DynamicImage],
    runs: u32,
) -> Result<(), Box<dyn std::error::Error>> {
    let report = check_model_on(model, &photos[0])?;
    println!(
        "{:<8} input {:>3}  {:<5} {:<6}  load {:>7.1} ms  first inference {:>7.1} ms",
        report.name,
        model.input_size,
        model.backend,
        report.device,
        report.load_ms,
        report.infer_ms
    );
    let detector = Detector::load(model)?;
    for (name, photo) in PHOTOS.iter().zip(photos) {
        let started = Instant::now();
        let mut found = Vec::new();
        for _ in 0..runs {
            found = detector.detect(photo)?;
        }
        let labels: Vec<String> = found
            .iter()
            .map(|d| format!("{} {:.2}", d.label, d.score))
            .collect();
        println!(
            "  {name:<14} {:>7.1} ms/image  {}",
            ms(started) / f64::from(runs),
            labels.join(", ")
        );
    }
    let started = Instant::now();
    for _ in 0..runs {
        detector.detect_batch(photos)?;
    }
    let per_image = ms(started) / f64::from(runs) / photos.len() as f64;
    println!(
        "  batch of {} ({} per run) {per_image:>7.1} ms/image",
        photos.len(),
        detector.batch_size()
    );
    Ok(())
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}
