//! Loading the ONNX Runtime shared library, once per process.
//!
//! `ort` is built with `load-dynamic`: nothing links against ONNX Runtime at build time and
//! nothing is downloaded; the library (`libonnxruntime.so.*` from the PyPI `onnxruntime`
//! wheel, or an `onnxruntime-gpu` build for CUDA) is opened at run time. ONNX Runtime is
//! process-global, so the first successful [`Runtime::load`] wins and later calls return it.
//! Every path to it goes through here so that a missing library is a typed
//! [`AiError::MissingRuntime`] that names the install command, never `ort`'s panic.
//!
//! Resolution order ([`Runtime::resolve`]): the runtime already loaded in this process, then
//! `FLOTILLA_ORT_DYLIB`, then `ORT_DYLIB_PATH`, then the configured path (`runtime` in the
//! models configuration, as recorded by `flotilla models install`).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;

use crate::error::{AiError, INSTALL_HINT};

/// Environment variable naming the ONNX Runtime library; wins over the configuration.
pub const ORT_DYLIB_ENV: &str = "FLOTILLA_ORT_DYLIB";
/// `ort`'s own variable, honoured after [`ORT_DYLIB_ENV`].
pub const ORT_DYLIB_FALLBACK_ENV: &str = "ORT_DYLIB_PATH";

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
static LOADING: Mutex<()> = Mutex::new(());

/// The loaded ONNX Runtime: the library's path and the process's ORT environment.
#[derive(Clone)]
pub struct Runtime {
    library: PathBuf,
    environment: Environment,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("library", &self.library)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Loads the library at `library` (or returns the runtime already loaded in this process,
    /// logging a warning if it came from another path).
    pub fn load(library: &Path) -> Result<&'static Runtime, AiError> {
        if !library.is_file() {
            return Err(missing(Some(library), "no such file"));
        }
        let _guard = LOADING
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(runtime) = RUNTIME.get() {
            if runtime.library != library {
                tracing::warn!(
                    loaded = %runtime.library.display(),
                    requested = %library.display(),
                    "ONNX Runtime is already loaded in this process; keeping the loaded library"
                );
            }
            return Ok(runtime);
        }
        let environment = ort::init_from(library)
            .map_err(|e| missing(Some(library), &e.to_string()))?
            .with_name("flotilla")
            .build()
            .map_err(|e| missing(Some(library), &e.to_string()))?;
        tracing::info!(library = %library.display(), "loaded ONNX Runtime");
        Ok(RUNTIME.get_or_init(|| Runtime {
            library: library.to_path_buf(),
            environment,
        }))
    }

    /// The runtime already loaded, else the one named by the environment, else `configured`.
    pub fn resolve(configured: Option<&Path>) -> Result<&'static Runtime, AiError> {
        if let Some(runtime) = RUNTIME.get() {
            return Ok(runtime);
        }
        let from_env = [ORT_DYLIB_ENV, ORT_DYLIB_FALLBACK_ENV]
            .into_iter()
            .filter_map(std::env::var_os)
            .find(|value| !value.is_empty())
            .map(PathBuf::from);
        match from_env.as_deref().or(configured) {
            Some(path) => Self::load(path),
            None => Err(missing(None, "no ONNX Runtime library is configured")),
        }
    }

    /// The runtime loaded in this process, if any.
    pub fn current() -> Option<&'static Runtime> {
        RUNTIME.get()
    }

    /// The shared library it was loaded from.
    pub fn library(&self) -> &Path {
        &self.library
    }

    pub(crate) fn environment(&self) -> &Environment {
        &self.environment
    }
}

fn missing(path: Option<&Path>, reason: &str) -> AiError {
    AiError::MissingRuntime {
        path: path.map(Path::to_path_buf),
        reason: reason.to_owned(),
        install: INSTALL_HINT.to_owned(),
    }
}
