//! The shared installation: installed once per process (and once per machine, thanks to
//! the installer's lock and idempotence), with the runtime loaded; and the helpers the
//! test modules share.

use std::path::PathBuf;
use std::sync::OnceLock;

use flotilla_ai::{
    Detection, DynamicImage, InstalledModels, ModelConfig, ModelsConfig, Runtime, install_defaults,
};

/// Where the tests install: `$FLOTILLA_MODELS_DIR` or `.flotilla/models` at the repo root.
pub(crate) fn models_dir() -> PathBuf {
    std::env::var_os("FLOTILLA_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.flotilla/models"))
}

/// The installation, with ONNX Runtime loaded into this process.
pub(crate) fn installed() -> &'static InstalledModels {
    static INSTALLED: OnceLock<InstalledModels> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let installed = install_defaults(&models_dir()).expect("installing the default models");
        Runtime::load(&installed.runtime).expect("loading the installed ONNX Runtime");
        installed
    })
}

/// The default configuration of one model, on the CPU.
pub(crate) fn model(name: &str) -> ModelConfig {
    let config = ModelsConfig::defaults(installed());
    let mut model = config
        .get(name)
        .unwrap_or_else(|| panic!("no default model {name}"))
        .clone();
    model.device = flotilla_ai::Device::Cpu;
    model
}

/// One of the installed sample photos.
pub(crate) fn photo(name: &str) -> DynamicImage {
    flotilla_ai::check::open_image(&installed().sample(name)).expect("opening a sample photo")
}

/// The best-scoring detection labelled `label`; panics, listing what was found, if none is.
pub(crate) fn best<'a>(found: &'a [Detection], label: &str) -> &'a Detection {
    found
        .iter()
        .filter(|d| d.label == label)
        .max_by(|a, b| a.score.total_cmp(&b.score))
        .unwrap_or_else(|| panic!("no {label} in {found:?}"))
}
