//! One running `flotilla_whisper.py` process and its JSON-lines protocol.
//!
//! The Python script is embedded in the binary ([`SCRIPT`]) and written to a per-user cache
//! file once per process, so an installed `flotilla` needs no source tree. stdout carries
//! only protocol lines; stderr is logged at debug level and its last lines are kept, to
//! explain a death. `Helper` knows nothing of restarts: the transcriber decides those.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::task::JoinHandle;

use crate::config::SpeechModel;
use crate::error::SpeechError;
use crate::transcript::Transcript;

/// The helper's source, embedded at build time.
pub const SCRIPT: &str = include_str!("../python/flotilla_whisper.py");
const STDERR_LINES: usize = 20;
const EXIT_WAIT: Duration = Duration::from_secs(5);

/// The first line a helper writes: ready, or why it could not load.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Hello {
    Ready { multilingual: bool, load_s: f64 },
    Error { kind: String, message: String },
}

/// The answer to one request.
#[derive(Debug, Deserialize)]
struct Answer {
    id: Option<u64>,
    ok: bool,
    transcript: Option<Transcript>,
    kind: Option<String>,
    message: Option<String>,
}

/// What the helper said when it became ready.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReadyInfo {
    /// Whether the model detects languages other than English.
    pub multilingual: bool,
    /// Seconds the helper spent importing faster-whisper and loading the model.
    pub load: Duration,
}

/// A live helper process with its pipes.
pub(crate) struct Helper {
    model: String,
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    stderr_task: JoinHandle<()>,
    next_id: u64,
    pub(crate) pid: Option<u32>,
    pub(crate) ready: ReadyInfo,
}

/// Writes [`SCRIPT`] to the cache directory (once per process) and returns its path.
pub fn script_path() -> Result<PathBuf, SpeechError> {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    if let Some(path) = PATH.get() {
        return Ok(path.clone());
    }
    let dir = cache_dir().join(format!("flotilla-speech-{:016x}", fnv1a(SCRIPT.as_bytes())));
    std::fs::create_dir_all(&dir)
        .map_err(|e| SpeechError::io(format!("creating {}", dir.display()), e))?;
    let path = dir.join("flotilla_whisper.py");
    let partial = dir.join(format!(
        "flotilla_whisper.py.{}.partial",
        std::process::id()
    ));
    std::fs::write(&partial, SCRIPT)
        .map_err(|e| SpeechError::io(format!("writing {}", partial.display()), e))?;
    std::fs::rename(&partial, &path)
        .map_err(|e| SpeechError::io(format!("writing {}", path.display()), e))?;
    Ok(PATH.get_or_init(|| path).clone())
}

fn cache_dir() -> PathBuf {
    let home_cache = || std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache"));
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(home_cache)
        .unwrap_or_else(std::env::temp_dir)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Fails with [`SpeechError::ModelMissing`] unless `dir` holds a CTranslate2 Whisper model.
pub(crate) fn check_model_dir(config: &SpeechModel) -> Result<(), SpeechError> {
    let missing = |reason: String| SpeechError::ModelMissing {
        model: config.name.clone(),
        path: config.model_dir.clone(),
        reason,
    };
    if !config.model_dir.is_dir() {
        return Err(missing("no such directory".into()));
    }
    for file in ["model.bin", "config.json", "tokenizer.json"] {
        if !config.model_dir.join(file).is_file() {
            return Err(missing(format!("no {file}")));
        }
    }
    Ok(())
}

impl Helper {
    /// Starts a helper for `config` and waits for its ready line.
    pub(crate) async fn spawn(config: &SpeechModel) -> Result<Self, SpeechError> {
        check_model_dir(config)?;
        let mut child =
            command(config, &script_path()?)?
                .spawn()
                .map_err(|e| SpeechError::RuntimeMissing {
                    reason: format!("cannot run {} ({e})", config.python.display()),
                })?;
        let (stdin, stdout, stderr) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let (Some(stdin), Some(stdout), Some(stderr)) = (stdin, stdout, stderr) else {
            return Err(protocol(&config.name, "the helper's pipes are missing"));
        };
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let stderr_task = tokio::spawn(drain_stderr(
            config.name.clone(),
            stderr,
            stderr_tail.clone(),
        ));
        let mut helper = Self {
            model: config.name.clone(),
            pid: child.id(),
            child,
            stdin,
            stdout: BufReader::new(stdout).lines(),
            stderr_tail,
            stderr_task,
            next_id: 1,
            ready: ReadyInfo {
                multilingual: false,
                load: Duration::ZERO,
            },
        };
        helper.ready = helper.wait_ready(config).await?;
        tracing::info!(model = %config.name, pid = ?helper.pid, load = ?helper.ready.load, "speech helper ready");
        Ok(helper)
    }

    async fn wait_ready(&mut self, config: &SpeechModel) -> Result<ReadyInfo, SpeechError> {
        let line = match tokio::time::timeout(config.start_timeout, self.stdout.next_line()).await {
            Err(_) => {
                return Err(SpeechError::Timeout {
                    what: format!("starting the speech helper for `{}`", config.name),
                    after: config.start_timeout,
                });
            }
            Ok(Ok(Some(line))) => line,
            Ok(_) => return Err(self.died_at_start().await),
        };
        match serde_json::from_str::<Hello>(&line) {
            Ok(Hello::Ready {
                multilingual,
                load_s,
            }) => Ok(ReadyInfo {
                multilingual,
                load: Duration::from_secs_f64(load_s.max(0.0)),
            }),
            Ok(Hello::Error { kind, message }) => Err(load_error(config, &kind, message)),
            Err(e) => Err(protocol(
                &config.name,
                format!("bad ready line {line:?}: {e}"),
            )),
        }
    }

    async fn died_at_start(&mut self) -> SpeechError {
        match self.died().await {
            SpeechError::HelperDied {
                status,
                stderr_tail,
                ..
            } => SpeechError::RuntimeMissing {
                reason: format!("the speech helper exited at start ({status}): {stderr_tail}"),
            },
            other => other,
        }
    }

    /// Sends one request and reads its answer. Any error but a bad-input one leaves the
    /// helper unusable; the caller drops it.
    pub(crate) async fn request(
        &mut self,
        wav: &Path,
        word_timestamps: bool,
        timeout: Duration,
    ) -> Result<Transcript, SpeechError> {
        let id = self.next_id;
        self.next_id += 1;
        let line = serde_json::json!({ "id": id, "wav": wav, "word_timestamps": word_timestamps });
        if self.send(&line.to_string()).await.is_err() {
            return Err(self.died().await);
        }
        let answer = match tokio::time::timeout(timeout, self.stdout.next_line()).await {
            Err(_) => return Err(self.timed_out(timeout).await),
            Ok(Ok(Some(line))) => line,
            Ok(_) => return Err(self.died().await),
        };
        self.parse_answer(id, wav, &answer)
    }

    async fn send(&mut self, line: &str) -> std::io::Result<()> {
        self.stdin.write_all(line.as_bytes()).await?;
        self.stdin.write_all(b"\n").await?;
        self.stdin.flush().await
    }

    fn parse_answer(&self, id: u64, wav: &Path, line: &str) -> Result<Transcript, SpeechError> {
        let answer: Answer = serde_json::from_str(line)
            .map_err(|e| protocol(&self.model, format!("bad answer {line:?}: {e}")))?;
        if answer.id != Some(id) {
            return Err(protocol(
                &self.model,
                format!("answer for {:?}, expected {id}", answer.id),
            ));
        }
        let message = answer.message.unwrap_or_default();
        match (answer.ok, answer.transcript, answer.kind.as_deref()) {
            (true, Some(t), _) => Ok(t),
            (true, None, _) => Err(protocol(&self.model, "an ok answer without a transcript")),
            (false, _, Some("bad_audio")) => Err(SpeechError::BadAudio {
                path: wav.into(),
                reason: message,
            }),
            (false, _, _) => Err(SpeechError::Inference {
                model: self.model.clone(),
                reason: message,
            }),
        }
    }

    async fn timed_out(&mut self, after: Duration) -> SpeechError {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        SpeechError::Timeout {
            what: format!("transcription with `{}`", self.model),
            after,
        }
    }

    /// Waits for the exit status and the end of stderr, and says how the helper died.
    pub(crate) async fn died(&mut self) -> SpeechError {
        let status = match tokio::time::timeout(EXIT_WAIT, self.child.wait()).await {
            Ok(Ok(status)) => status.to_string(),
            Ok(Err(e)) => format!("exit status unknown: {e}"),
            Err(_) => {
                let _ = self.child.start_kill();
                "closed its output but did not exit; killed".to_owned()
            }
        };
        let _ = tokio::time::timeout(EXIT_WAIT, &mut self.stderr_task).await;
        let tail = self
            .stderr_tail
            .lock()
            .map(|t| t.iter().cloned().collect::<Vec<_>>());
        SpeechError::HelperDied {
            model: self.model.clone(),
            status,
            stderr_tail: tail.unwrap_or_default().join(" | "),
        }
    }

    /// Closes stdin (the helper exits at end of input) and waits for it.
    pub(crate) async fn shutdown(mut self) {
        drop(self.stdin);
        if tokio::time::timeout(EXIT_WAIT, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

fn command(config: &SpeechModel, script: &Path) -> Result<Command, SpeechError> {
    let mut cmd = Command::new(&config.python);
    cmd.arg(script)
        .arg("--model")
        .arg(&config.model_dir)
        .args(["--device", &config.device.to_string()])
        .args(["--compute-type", &config.compute_type]);
    if let Some(lang) = &config.language {
        cmd.args(["--language", lang]);
    }
    cmd.args(["--chunk-s", &config.chunk_s.max(1).to_string()]);
    if let Some(threads) = config.threads {
        cmd.args(["--threads", &threads.max(1).to_string()]);
    }
    if let Some(dir) = &config.pythonpath {
        let mut paths = vec![dir.clone()];
        paths.extend(
            std::env::var_os("PYTHONPATH")
                .iter()
                .flat_map(std::env::split_paths),
        );
        let joined = std::env::join_paths(paths)
            .map_err(|e| SpeechError::config("pythonpath", e.to_string()))?;
        cmd.env("PYTHONPATH", joined);
    }
    cmd.env("HF_HUB_OFFLINE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    Ok(cmd)
}

async fn drain_stderr(
    model: String,
    stderr: tokio::process::ChildStderr,
    tail: Arc<Mutex<VecDeque<String>>>,
) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::debug!(model = %model, "speech helper: {line}");
        if let Ok(mut tail) = tail.lock() {
            if tail.len() == STDERR_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    }
}

fn load_error(config: &SpeechModel, kind: &str, reason: String) -> SpeechError {
    let (model, path) = (config.name.clone(), config.model_dir.clone());
    match kind {
        "runtime_missing" => SpeechError::RuntimeMissing { reason },
        "model_missing" => SpeechError::ModelMissing {
            model,
            path,
            reason,
        },
        "device" => SpeechError::Device {
            model,
            device: config.device.to_string(),
            reason,
        },
        _ => SpeechError::ModelCorrupt {
            model,
            path,
            reason,
        },
    }
}

fn protocol(model: &str, reason: impl Into<String>) -> SpeechError {
    SpeechError::Protocol {
        model: model.to_owned(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_is_written_once_with_the_embedded_text() {
        let path = script_path().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), SCRIPT);
        assert_eq!(script_path().unwrap(), path);
    }

    #[test]
    fn load_errors_map_to_their_variants() {
        let config = SpeechModel::new("tiny.en", "/m");
        let err = load_error(
            &config,
            "runtime_missing",
            "no module named ctranslate2".into(),
        );
        assert!(matches!(err, SpeechError::RuntimeMissing { .. }));
        assert!(err.to_string().contains("flotilla models install"));
        let err = load_error(&config, "model_corrupt", "bad header".into());
        assert!(matches!(err, SpeechError::ModelCorrupt { .. }));
        assert!(!err.is_retryable());
    }
}
