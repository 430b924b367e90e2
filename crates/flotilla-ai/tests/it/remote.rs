//! Inference service mode against a real KServe model server run locally: the PyPI
//! `kserve` package's ModelServer (Open Inference Protocol v2 REST) around the installed
//! `yolo11n.onnx`, run by onnxruntime in `tests/kserve_server.py`, on 127.0.0.1.
//!
//! kserve and onnxruntime are installed once per machine (a file lock and a marker) into
//! `kserve-site` beside the models, with pip, from PyPI.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use flotilla_ai::{
    Detection, Detector, KserveDetector, ModelConfig, RemoteError, ServiceConfig, ServiceProtocol,
};

use crate::fixture::{best, installed, model, models_dir, photo};

/// The server's packages (kserve pulls FastAPI, uvicorn, numpy and friends).
const SERVER_PACKAGES: [&str; 2] = ["kserve==0.21.0", "onnxruntime==1.31.1"];
/// The name the server gives the model.
const REMOTE_NAME: &str = "yolo11n";

/// Installs the server's packages once per machine.
fn install_server() -> PathBuf {
    let site = models_dir().join("kserve-site");
    std::fs::create_dir_all(models_dir()).unwrap();
    let lock = std::fs::File::create(models_dir().join(".kserve-install.lock")).unwrap();
    lock.lock().unwrap();
    if !site.join("kserve").is_dir() || !site.join("onnxruntime").is_dir() {
        let out = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .arg("--target")
            .arg(&site)
            .args(SERVER_PACKAGES)
            .env("PIP_ROOT_USER_ACTION", "ignore")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pip: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    site
}

/// A KServe server for one ONNX model on a free loopback port, killed on drop.
pub(crate) struct KserveServer {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub(crate) url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for KserveServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl KserveServer {
    /// Starts the server on `onnx` under `name` and waits until the model is ready.
    pub(crate) async fn start(onnx: &Path, name: &str) -> Self {
        let site = install_server();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("kserve.log");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kserve_server.py");
        let child = Command::new("python3")
            .arg(script)
            .arg(onnx)
            .args([name, &port.to_string()])
            .env("PYTHONPATH", &site)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut server = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
            _dir: dir,
        };
        server.wait_ready(name).await;
        server
    }

    /// Bounded polling of the readiness route (at most 120 s), failing early on exit.
    async fn wait_ready(&mut self, name: &str) {
        let http = reqwest::Client::new();
        let url = format!("{}/v2/models/{name}/ready", self.url);
        for _ in 0..480 {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "kserve exited ({status}): {}",
                    std::fs::read_to_string(&self.log).unwrap()
                );
            }
            if http
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!(
            "kserve not ready: {}",
            std::fs::read_to_string(&self.log).unwrap()
        );
    }

    /// Stops it now (the port then refuses connections).
    fn stop(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// The installed `objects` model, served by `server` under `remote_name`.
fn remote(server: &KserveServer, remote_name: &str) -> ModelConfig {
    let mut service = ServiceConfig::new(&server.url, ServiceProtocol::KserveV2);
    service.remote_name = Some(remote_name.to_owned());
    service.allow_private = true;
    ModelConfig {
        path: PathBuf::new(),
        service: Some(service),
        ..model("objects")
    }
}

async fn start_server() -> KserveServer {
    let onnx = installed().model("objects").unwrap().file.clone();
    KserveServer::start(&onnx, REMOTE_NAME).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_remote_detector_finds_the_cat_where_the_local_one_does() {
    let server = start_server().await;
    let detector = KserveDetector::connect(&remote(&server, REMOTE_NAME))
        .await
        .unwrap();
    let chelsea = photo("chelsea.png");
    let found = detector.detect(&chelsea).await.unwrap();
    let local = tokio::task::spawn_blocking(move || {
        Detector::load(&model("objects"))
            .unwrap()
            .detect(&photo("chelsea.png"))
            .unwrap()
    })
    .await
    .unwrap();
    let (cat, local_cat) = (best(&found, "cat"), best(&local, "cat"));
    assert!(cat.score > 0.5, "{cat:?}");
    assert!(
        (cat.score - local_cat.score).abs() < 0.01,
        "{cat:?} vs {local_cat:?}"
    );
    let (a, b) = (cat.bbox, local_cat.bbox);
    for (remote, local) in [
        (a.x, b.x),
        (a.y, b.y),
        (a.width, b.width),
        (a.height, b.height),
    ] {
        assert!((remote - local).abs() <= 2.0, "{a:?} vs {b:?}");
    }
    let labels = |d: &[Detection]| d.iter().map(|d| d.label.clone()).collect::<Vec<_>>();
    assert_eq!(labels(&found), labels(&local));
    // Two images in one request give the same as one at a time.
    let mut batched = remote(&server, REMOTE_NAME);
    batched.service.as_mut().unwrap().batch = 2;
    let batched = KserveDetector::connect(&batched).await.unwrap();
    let both = batched
        .detect_batch(&[photo("coffee.png"), chelsea])
        .await
        .unwrap();
    assert_eq!(labels(&both[1]), labels(&found));
    assert!(best(&both[0], "cup").score > 0.5, "{:?}", both[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_remote_name_is_a_start_up_error_naming_it() {
    let server = start_server().await;
    let err = KserveDetector::connect(&remote(&server, "yolo-nope"))
        .await
        .unwrap_err();
    assert!(matches!(err, RemoteError::NotReady { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("yolo-nope") && message.contains("404"),
        "{message}"
    );
    // A wrong input name is the server's 400: the request is wrong, retrying cannot help.
    let mut wrong_input = remote(&server, REMOTE_NAME);
    wrong_input.service.as_mut().unwrap().input_name = "pixels".into();
    let detector = KserveDetector::connect(&wrong_input).await.unwrap();
    let err = detector.detect(&photo("chelsea.png")).await.unwrap_err();
    assert!(
        matches!(err, RemoteError::Rejected { status: 400, .. }),
        "{err}"
    );
    assert!(
        !err.is_retryable() && err.to_string().contains("pixels"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_is_a_retryable_error() {
    let mut server = start_server().await;
    let detector = KserveDetector::connect(&remote(&server, REMOTE_NAME))
        .await
        .unwrap();
    server.stop();
    let err = detector.detect(&photo("chelsea.png")).await.unwrap_err();
    assert!(matches!(err, RemoteError::Unavailable { .. }), "{err}");
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("could not connect"), "{err}");
}

#[tokio::test]
async fn a_served_model_refuses_loopback_unless_allowed() {
    let mut config = ModelConfig {
        path: PathBuf::new(),
        service: Some(ServiceConfig::new(
            "http://localhost:9",
            ServiceProtocol::KserveV2,
        )),
        ..model("objects")
    };
    let err = KserveDetector::connect(&config).await.unwrap_err();
    assert!(matches!(err, RemoteError::PrivateAddress { .. }), "{err}");
    config.service.as_mut().unwrap().allow_private = true;
    let err = KserveDetector::connect(&config).await.unwrap_err();
    assert!(matches!(err, RemoteError::NotReady { .. }), "{err}");
}
