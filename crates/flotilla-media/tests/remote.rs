//! Inference service mode end to end: the `image-ai` and `video-ai` pipelines over HTTP,
//! with the `objects` detector served by a real KServe model server (PyPI `kserve`,
//! Open Inference Protocol v2, around the installed `yolo11n.onnx`: the script in
//! `flotilla-ai/tests/kserve_server.py`) and Whisper `tiny.en` served by a real
//! OpenAI-compatible server (PyPI `faster-whisper-server`, as in flotilla-speech's tests).
//! `faces` stays local, so one worker mixes both kinds.
//!
//! The servers run on loopback (so the models set `allow_private`), are installed once per
//! machine under file locks beside the models, started once per test process, and exit
//! with it. Each test connects its own worker to them, as a worker does at start.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::{Rig, installed, models_dir, step};
use flotilla_ai::{ModelConfig, ModelKind, ModelsConfig};
use flotilla_ai::{ServiceConfig, ServiceProtocol};
use flotilla_media::{DetectorModel, Enrichment, Speech};
use flotilla_speech::InstalledSpeech;
use serde_json::json;
use tokio::sync::OnceCell;

/// Exits the Python process when the test process that started it goes away.
const EXIT_WITH_PARENT: &str = "import os, threading, time\n\
def _watch(parent=os.getppid()):\n    while os.getppid() == parent: time.sleep(0.5)\n    os._exit(0)\n\
threading.Thread(target=_watch, daemon=True).start()\n";

fn speech_installed() -> &'static InstalledSpeech {
    static INSTALLED: OnceLock<InstalledSpeech> = OnceLock::new();
    INSTALLED.get_or_init(|| flotilla_speech::install_defaults(&models_dir()).expect("installing"))
}

/// `pip install --target SITE ARGS` once per machine, under `LOCK`, unless `marker` exists.
fn pip_once(python: &Path, site: &str, marker: &str, lock: &str, installs: &[&[&str]]) -> PathBuf {
    let site = models_dir().join(site);
    let lock = std::fs::File::create(models_dir().join(lock)).unwrap();
    lock.lock().unwrap();
    for args in installs.iter().filter(|_| !site.join(marker).is_dir()) {
        let out = Command::new(python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--target",
            ])
            .arg(&site)
            .args(*args)
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

/// A server process on a free loopback port.
struct Server {
    _child: Child,
    url: String,
}

impl Server {
    /// Starts `python -c EXIT_WITH_PARENT + code` and polls `ready_path` (at most 120 s).
    async fn start(python: &Path, pythonpath: &[&Path], code: &str, ready_path: &str) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::env::temp_dir().join(format!("flotilla-remote-{port}.log"));
        let mut child = Command::new(python)
            .arg("-c")
            .arg(format!(
                "{EXIT_WITH_PARENT}{}",
                code.replace("{port}", &port.to_string())
            ))
            .env("PYTHONPATH", std::env::join_paths(pythonpath).unwrap())
            .env("HF_HUB_OFFLINE", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..480 {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "server exited ({status}): {}",
                    std::fs::read_to_string(&log).unwrap()
                );
            }
            let ready = http.get(format!("{url}{ready_path}")).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return Self { _child: child, url };
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!(
            "server not ready: {}",
            std::fs::read_to_string(&log).unwrap()
        );
    }
}

/// KServe serving the installed `yolo11n.onnx` as `yolo11n`.
async fn kserve() -> &'static Server {
    static SERVER: OnceCell<Server> = OnceCell::const_new();
    SERVER
        .get_or_init(|| async {
            let python = Path::new("python3");
            let install: &[&str] = &["kserve==0.21.0", "onnxruntime==1.31.1"];
            let site = pip_once(
                python,
                "kserve-site",
                "kserve",
                ".kserve-install.lock",
                &[install],
            );
            let script =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../flotilla-ai/tests/kserve_server.py");
            let onnx = installed().model("objects").unwrap().file.clone();
            let code = format!(
                "import runpy, sys\nsys.argv = [{script:?}, {onnx:?}, 'yolo11n', '{{port}}']\n\
                 runpy.run_path({script:?}, run_name='__main__')\n"
            );
            Server::start(python, &[&site], &code, "/v2/models/yolo11n/ready").await
        })
        .await
}

/// faster-whisper-server serving the installed tiny.en.
async fn whisper() -> &'static Server {
    static SERVER: OnceCell<Server> = OnceCell::const_new();
    SERVER
        .get_or_init(|| async {
            let speech = speech_installed();
            let deps: &[&str] = &["fastapi", "uvicorn", "python-multipart", "pyyaml"];
            let server: &[&str] = &["--no-deps", "faster-whisper-server==0.0.3"];
            let site = pip_once(
                &speech.python,
                "speech-server-site",
                "faster_whisper_server",
                ".speech-server-install.lock",
                &[deps, server],
            );
            let model = speech.model("tiny.en").unwrap().dir.display().to_string();
            let code = format!(
                "import runpy, sys\nsys.argv = ['faster_whisper_server', {model:?}, '--host', \
                 '127.0.0.1', '--port', '{{port}}']\n\
                 runpy.run_module('faster_whisper_server', run_name='__main__')\n"
            );
            Server::start(
                &speech.python,
                &[&site, &speech.pythonpath],
                &code,
                "/health",
            )
            .await
        })
        .await
}

/// The default models, with `objects` served by KServe under `remote_name`.
fn models_config(url: &str, remote_name: &str) -> ModelsConfig {
    let mut config = common::models_config();
    let objects = config
        .models
        .iter_mut()
        .find(|m| m.name == "objects")
        .unwrap();
    let mut service = ServiceConfig::new(url, ServiceProtocol::KserveV2);
    service.remote_name = Some(remote_name.to_owned());
    service.allow_private = true;
    objects.path = PathBuf::new();
    objects.service = Some(service);
    config
}

/// `tiny.en` served over the OpenAI-compatible API at `url`.
fn served_speech(url: &str, allow_private: bool) -> ModelConfig {
    let mut service = ServiceConfig::new(url, ServiceProtocol::Openai);
    service.remote_name = Some("whisper-1".into());
    service.allow_private = allow_private;
    ModelConfig {
        kind: ModelKind::Speech,
        classes: Default::default(),
        service: Some(service),
        ..ModelConfig::detector("tiny.en", "", Default::default(), 640)
    }
}

/// This file's rig: `objects` served by KServe, `faces` local, tiny.en served over the
/// OpenAI-compatible API, on a worker with room for several remote calls at once.
impl Rig {
    async fn start() -> Rig {
        let config = models_config(&kserve().await.url, "yolo11n");
        let enrich = tokio::task::spawn_blocking(move || Enrichment::load(&config))
            .await
            .unwrap()
            .expect("loading the models");
        assert!(matches!(
            enrich.detector("objects"),
            Some(DetectorModel::Remote(_))
        ));
        let served = [served_speech(&whisper().await.url, true)];
        let speech = Speech::start_with_services(&[], &served).await.unwrap();
        assert_eq!(speech.remote_models(), ["tiny.en"]);
        let queues = ["q-ingest", "q-ai-enrich", "q-distribution"];
        Rig::launch(&queues, 4, |media| {
            media.enrich = Some(Arc::new(enrich));
            media.speech = Some(Arc::new(speech));
        })
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_ai_finds_the_cat_with_objects_served_by_kserve() {
    let rig = Rig::start().await;
    let asset = rig
        .process(&installed().sample("chelsea.png"), "image-ai", json!({}))
        .await;
    assert_eq!(asset["status"], "processed", "{asset}");
    let detect = &step(&asset, "detect")["result"];
    let labels = detect["labels"].as_array().unwrap();
    let cat = labels
        .iter()
        .find(|l| l["label"] == "cat")
        .unwrap_or_else(|| panic!("{detect}"));
    assert!(cat["best_score"].as_f64().unwrap() > 0.5, "{cat}");
    assert_eq!(step(&asset, "moderate")["result"]["flagged"], false);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_ai_hears_hello_through_an_openai_compatible_service() {
    let rig = Rig::start().await;
    let said = "hello world, this is a test of the flotilla transcription";
    let video = rig.spoken_video(said);
    let asset = rig.process(&video, "video-ai", json!({})).await;
    assert_eq!(asset["status"], "processed", "{asset}");
    let transcript = &step(&asset, "transcribe")["result"]["transcript"];
    let text = transcript["text"].as_str().unwrap().to_lowercase();
    assert!(text.contains("hello"), "{transcript}");
    assert_eq!(step(&asset, "detect")["result"]["media"], "video");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_remote_name_stops_the_worker_at_start_naming_it() {
    let config = models_config(&kserve().await.url, "yolo-missing");
    let err = tokio::task::spawn_blocking(move || Enrichment::load(&config))
        .await
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("models.objects.service") && err.contains("yolo-missing"),
        "{err}"
    );
}

#[tokio::test]
async fn a_served_speech_model_on_loopback_needs_allow_private() {
    let served = [served_speech("http://127.0.0.1:9", false)];
    let err = Speech::start_with_services(&[], &served)
        .await
        .err()
        .expect("refused");
    let err = err.to_string();
    assert!(
        err.contains("models.tiny.en.service") && err.contains("allow_private"),
        "{err}"
    );
}
