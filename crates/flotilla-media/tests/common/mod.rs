//! The rig shared by this crate's end-to-end tests (`enrich.rs`, `pipelines.rs`,
//! `remote.rs`): a real server serving assets, one real worker with the media handlers
//! polling it over HTTP, and the calls a producer makes (upload through a pipeline, create
//! a run, poll until it ends, download an output).
//!
//! Each test file sets up its worker's [`Media`] (the AI models, speech, delivery targets)
//! through [`Rig::launch`] and adds its own constructors in an `impl Rig` block of its own.
//! The installed models ([`models_dir`], [`installed`]) are here too, installed once per
//! machine by the installer's lock and idempotence, and once per test process.
//!
//! Every test binary uses only part of this module, hence `dead_code` is allowed.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use flotilla_ai::{Device, InstalledModels, ModelsConfig};
use flotilla_api::testing::{TestServer, spawn_media};
use flotilla_media::Media;
use flotilla_objects::Objects;
use flotilla_worker::Worker;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// The largest upload the test server takes.
const MAX_UPLOAD: u64 = 64 * 1024 * 1024;
/// How long an asset or a run may take before a test gives up on it.
const DEADLINE: Duration = Duration::from_secs(240);

/// Where the models are installed: `$FLOTILLA_MODELS_DIR` or `.flotilla/models`.
pub(crate) fn models_dir() -> PathBuf {
    std::env::var_os("FLOTILLA_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.flotilla/models"))
}

/// The default detectors and sample photos, installed once per process.
pub(crate) fn installed() -> &'static InstalledModels {
    static INSTALLED: OnceLock<InstalledModels> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        flotilla_ai::install_defaults(&models_dir()).expect("installing the default models")
    })
}

/// The default models' configuration, on the CPU.
pub(crate) fn models_config() -> ModelsConfig {
    let mut config = ModelsConfig::defaults(installed());
    for model in &mut config.models {
        model.device = Device::Cpu;
    }
    config
}

/// A server with the built-in pipelines and one worker with the media handlers.
pub(crate) struct Rig {
    pub(crate) server: TestServer,
    /// The server's object store, as the worker sees it.
    pub(crate) objects: Objects,
    /// The worker's scratch directory, where tests also make their inputs.
    pub(crate) dir: tempfile::TempDir,
    stop: CancellationToken,
    worker: tokio::task::JoinHandle<()>,
}

impl Rig {
    /// Starts the server and a worker polling `queues` with `concurrency` slots, whose
    /// handlers' [`Media`] (scratch in the rig's `dir`) is finished by `configure`.
    pub(crate) async fn launch(
        queues: &[&str],
        concurrency: u32,
        configure: impl FnOnce(&mut Media),
    ) -> Rig {
        let server = spawn_media(MAX_UPLOAD).await;
        let objects = Objects::local(&server.objects_dir).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut media = Media::new(objects.clone());
        media.scratch = dir.path().to_owned();
        configure(&mut media);
        let client = flotilla_client::Client::new(&server.url, None).unwrap();
        let builder = Worker::builder(client)
            .queues(queues.iter().copied())
            .concurrency(concurrency)
            .poll_wait(Duration::from_secs(1));
        let worker = flotilla_media::register(builder, Arc::new(media))
            .build()
            .unwrap();
        let stop = CancellationToken::new();
        let until = stop.clone();
        let worker = tokio::spawn(async move {
            worker.run(until.cancelled_owned()).await.unwrap();
        });
        Rig {
            server,
            objects,
            dir,
            stop,
            worker,
        }
    }

    /// A file in the scratch directory.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Uploads `file` (under its own name) through `pipeline` with per-step `params` and
    /// waits for the end.
    pub(crate) async fn process(&self, file: &Path, pipeline: &str, params: Value) -> Value {
        let name = file.file_name().unwrap().to_str().unwrap();
        let params = params.to_string();
        let resp = reqwest::Client::new()
            .post(format!("{}/v1/assets", self.server.url))
            .query(&[("name", name), ("pipeline", pipeline), ("params", &params)])
            .body(std::fs::read(file).unwrap())
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let asset: Value = resp.json().await.unwrap();
        assert_eq!(status, 202, "{asset}");
        self.wait_asset(&asset["id"]).await
    }

    /// Polls the asset until it is processed or failed (bounded).
    pub(crate) async fn wait_asset(&self, id: &Value) -> Value {
        let url = format!("{}/v1/assets/{id}", self.server.url);
        self.poll(&url, |a| {
            a["status"] == "processed" || a["status"] == "failed"
        })
        .await
    }

    /// Creates a run (`POST /v1/runs`) and polls it until it is no longer running.
    pub(crate) async fn run(&self, run: &Value) -> Value {
        let resp = reqwest::Client::new()
            .post(format!("{}/v1/runs", self.server.url))
            .json(run)
            .send()
            .await
            .unwrap();
        let created: Value = resp.json().await.unwrap();
        let url = format!("{}/v1/runs/{}", self.server.url, created["id"]);
        self.poll(&url, |r| r["state"] != "running").await
    }

    /// GETs `url` until `done` holds for its JSON (bounded).
    pub(crate) async fn poll(&self, url: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let value: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
            if done(&value) {
                return value;
            }
            assert!(tokio::time::Instant::now() < deadline, "still {value}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Downloads an output of an asset into the scratch directory.
    pub(crate) async fn output(&self, asset: &Value, name: &str) -> PathBuf {
        let url = format!(
            "{}/v1/assets/{}/outputs/{name}",
            self.server.url, asset["id"]
        );
        let resp = reqwest::get(url).await.unwrap();
        assert_eq!(resp.status(), 200, "{name}");
        let path = self.path(&format!("{}-{name}", asset["id"]));
        std::fs::write(&path, resp.bytes().await.unwrap()).unwrap();
        path
    }

    /// A 320×240 test-pattern video whose sound is `said`, spoken by espeak-ng.
    pub(crate) fn spoken_video(&self, said: &str) -> PathBuf {
        let speech = self.path("speech.wav");
        let status = Command::new("espeak-ng")
            .args(["-w", speech.to_str().unwrap(), said])
            .status()
            .expect("espeak-ng is installed (scripts/prereqs.sh)");
        assert!(status.success());
        let video = self.path("talk.mp4");
        let pattern = "testsrc=size=320x240:rate=25";
        let inputs = ["-f", "lavfi", "-i", pattern, "-i", speech.to_str().unwrap()];
        ffmpeg(
            &[
                &inputs[..],
                &["-shortest"],
                &FAST_H264_AAC,
                &[video.to_str().unwrap()],
            ]
            .concat(),
        );
        video
    }

    /// Stops the worker and waits for it to drain.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        self.worker.await.unwrap();
    }
}

/// The step called `name` of an asset or run.
pub(crate) fn step<'a>(asset: &'a Value, name: &str) -> &'a Value {
    asset["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {asset}"))
}

/// The names of an asset's outputs, sorted.
pub(crate) fn output_names(asset: &Value) -> Vec<String> {
    let mut names: Vec<String> = asset["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

/// FFmpeg's output options for a quick test video: H.264 (ultrafast, yuv420p) and AAC.
pub(crate) const FAST_H264_AAC: [&str; 8] = [
    "-c:v",
    "libx264",
    "-preset",
    "ultrafast",
    "-pix_fmt",
    "yuv420p",
    "-c:a",
    "aac",
];

/// Runs FFmpeg quietly, overwriting its output; panics with its stderr if it fails.
pub(crate) fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg is installed (scripts/prereqs.sh)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
