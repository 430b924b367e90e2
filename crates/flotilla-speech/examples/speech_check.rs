//! Installs the speech models (if needed), makes a spoken sample and prints, for each
//! model, the helper's start and model-load time and the real-time factor of one
//! transcription: what `flotilla models check` reports for speech.
//!
//! `cargo run -p flotilla-speech --example speech_check [MODELS_DIR]`

use std::path::PathBuf;

use flotilla_speech::check::{check_model, write_sample};
use flotilla_speech::{Device, SpeechModel, install_defaults};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .map_or_else(|| PathBuf::from(".flotilla/models"), PathBuf::from);
    let installed = tokio::task::spawn_blocking(move || install_defaults(&dir)).await??;
    let scratch = tempfile::tempdir()?;
    let sample = scratch.path().join("sample.wav");
    let kind = write_sample(&sample).await?;
    println!("sample: {kind:?}");
    for m in &installed.models {
        let config = SpeechModel {
            device: Device::Cpu,
            ..SpeechModel::from_installed(&installed, &m.name)?
        };
        let r = check_model(&config, &sample).await?;
        println!(
            "{}: helper start {:.2} s (model load {:.2} s), {:.2} s of audio in {:.2} s, \
             real-time factor {:.3}: {:?}",
            r.model,
            r.start.as_secs_f64(),
            r.load.as_secs_f64(),
            r.audio_s,
            r.infer.as_secs_f64(),
            r.real_time_factor(),
            r.text
        );
    }
    Ok(())
}
