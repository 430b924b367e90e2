//! The OpenAI-compatible client against a real implementation run locally:
//! faster-whisper-server (PyPI, MIT), serving the installed tiny.en on 127.0.0.1.
//!
//! faster-whisper-server 0.0.3 implements `verbose_json` with segments but ignores
//! `timestamp_granularities[]` (no `words`) and reads the model from its `model_name` form
//! field (single-model mode serves its one model whatever the client asks for), so the
//! checks here are the ones that contract supports. Failure mapping is checked against it
//! too: an unknown path is its 404, an undecodable upload its 500.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use flotilla_speech::{OpenAiConfig, OpenAiTranscriber, SpeechError};

use crate::fixture::{installed, models_dir, speech_wav};
use crate::local::assert_hello_test;

const SERVER_PACKAGE: &str = "faster-whisper-server==0.0.3";
/// Its web dependencies; faster-whisper itself comes from the speech install.
const SERVER_DEPS: [&str; 4] = ["fastapi", "uvicorn", "python-multipart", "pyyaml"];

/// Installs the server once per machine (file lock + marker) into its own directory.
fn install_server() -> PathBuf {
    let site = models_dir().join("speech-server-site");
    let lock = std::fs::File::create(models_dir().join(".speech-server-install.lock")).unwrap();
    lock.lock().unwrap();
    if !site.join("faster_whisper_server").is_dir() {
        let pip = |args: &[&str]| {
            let out = Command::new(&installed().python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "--target",
                ])
                .arg(&site)
                .args(args)
                .env("PIP_ROOT_USER_ACTION", "ignore")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "pip: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        pip(&SERVER_DEPS);
        pip(&["--no-deps", SERVER_PACKAGE]);
    }
    site
}

/// A running server, killed on drop.
struct Server {
    child: Child,
    base_url: String,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    async fn start(dir: &Path) -> Self {
        let site = install_server();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = dir.join("server.log");
        let paths = std::env::join_paths([&site, &installed().pythonpath]).unwrap();
        let child = Command::new(&installed().python)
            .args(["-m", "faster_whisper_server"])
            .arg(&installed().model("tiny.en").unwrap().dir)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--log-level",
                "info",
            ])
            .env("PYTHONPATH", paths)
            .env("HF_HUB_OFFLINE", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut server = Self {
            child,
            base_url: format!("http://127.0.0.1:{port}"),
            log,
        };
        server.wait_healthy().await;
        server
    }

    /// Bounded polling of `/health` (at most 120 s), failing early if the server exits.
    async fn wait_healthy(&mut self) {
        let http = reqwest::Client::new();
        for _ in 0..480 {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "server exited ({status}): {}",
                    std::fs::read_to_string(&self.log).unwrap()
                );
            }
            let health = http.get(format!("{}/health", self.base_url)).send().await;
            if health.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!(
            "server not healthy: {}",
            std::fs::read_to_string(&self.log).unwrap()
        );
    }
}

fn client(base_url: &str, timeout: Duration) -> OpenAiTranscriber {
    OpenAiTranscriber::new(OpenAiConfig {
        base_url: base_url.to_owned(),
        model: "whisper-1".into(),
        api_key_env: None,
        language: None,
        timeout,
    })
    .unwrap()
}

#[tokio::test]
async fn the_client_transcribes_through_faster_whisper_server() {
    let dir = tempfile::tempdir().unwrap();
    let wav = speech_wav(dir.path()).await;
    let server = Server::start(dir.path()).await;
    let remote = client(&server.base_url, Duration::from_secs(300));

    let t = remote.transcribe(&wav, true).await.unwrap();
    let audio_s = flotilla_speech::audio::wav_duration(&wav).unwrap();
    assert_hello_test(&t, audio_s);
    assert_eq!(t.language.as_deref(), Some("en"));
    assert!((t.duration_s - audio_s).abs() < 0.05, "{t:?}");

    let garbage = dir.path().join("garbage.wav");
    std::fs::write(&garbage, b"RIFF nonsense that no decoder accepts").unwrap();
    let err = remote.transcribe(&garbage, false).await.unwrap_err();
    assert!(
        matches!(err, SpeechError::Remote { status: 500.., .. }),
        "{err}"
    );
    assert!(err.is_retryable());

    let wrong = client(
        &format!("{}/not-here", server.base_url),
        Duration::from_secs(30),
    );
    let err = wrong.transcribe(&wav, false).await.unwrap_err();
    assert!(
        matches!(err, SpeechError::Remote { status: 404, .. }),
        "{err}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn an_unreachable_service_is_retryable() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("a.wav");
    std::fs::write(&wav, b"RIFF").unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = client(&format!("http://127.0.0.1:{port}"), Duration::from_secs(30))
        .transcribe(&wav, false)
        .await
        .unwrap_err();
    assert!(matches!(err, SpeechError::RemoteTransport(_)), "{err}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_service_that_never_answers_times_out_retryably() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("a.wav");
    std::fs::write(&wav, b"RIFF").unwrap();
    // Accepts connections (the kernel's backlog) and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let err = client(&url, Duration::from_millis(300))
        .transcribe(&wav, false)
        .await
        .unwrap_err();
    assert!(matches!(err, SpeechError::Timeout { .. }), "{err}");
    assert!(err.is_retryable());
}

#[test]
fn an_api_key_variable_that_is_not_set_is_a_configuration_error() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let remote = OpenAiTranscriber::new(OpenAiConfig {
        base_url: "http://127.0.0.1:9".into(),
        model: "whisper-1".into(),
        api_key_env: Some("FLOTILLA_TEST_UNSET_SPEECH_KEY".into()),
        language: None,
        timeout: Duration::from_secs(1),
    })
    .unwrap();
    let err = runtime
        .block_on(remote.transcribe(Path::new("/dev/null"), false))
        .unwrap_err();
    assert!(
        err.to_string().contains("FLOTILLA_TEST_UNSET_SPEECH_KEY"),
        "{err}"
    );
    assert!(!err.is_retryable());
}
