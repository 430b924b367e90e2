//! Shared test setup: files to deliver, an axum HTTP receiver and a pyftpdlib FTP server, all on loopback.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use flotilla_distribute::{Delivery, Distributor, StaticSecrets, TargetConfig};
use futures::StreamExt;
use rand::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;

/// The token the receiver expects, as the full `Authorization` value.
pub(crate) const TOKEN: &str = "Bearer rcv-7f3a9c1e-secret-token";

/// A file on disk with its delivery description.
pub(crate) struct Source {
    pub(crate) _dir: TempDir,
    pub(crate) bytes: Vec<u8>,
    pub(crate) delivery: Delivery,
}

/// Writes `len` pseudo-random bytes to a temp file and describes its delivery as `name`.
pub(crate) fn source(len: usize, name: &str) -> Source {
    let mut bytes = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(len as u64).fill_bytes(&mut bytes);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("source.bin");
    std::fs::write(&file, &bytes).unwrap();
    let delivery = Delivery {
        file,
        name: name.to_owned(),
        size: len as u64,
        sha256: sha256_hex(&bytes),
    };
    Source {
        _dir: dir,
        bytes,
        delivery,
    }
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Parses one target from TOML.
pub(crate) fn target(toml_text: &str) -> TargetConfig {
    toml::from_str(toml_text).unwrap()
}

/// A distributor with one target named `name`, secrets from `secrets`.
pub(crate) fn distributor(name: &str, config: TargetConfig, secrets: StaticSecrets) -> Distributor {
    Distributor::with_secrets(
        BTreeMap::from([(name.to_owned(), config)]),
        Arc::new(secrets),
    )
    .unwrap()
}

/// Every file under `root`, as paths relative to it.
pub(crate) fn files_under(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    found.sort();
    found
}

/// A port nothing listens on.
pub(crate) fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How the receiver answers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Store and report `{bytes, sha256}`.
    Store,
    /// Store and answer with an empty body.
    StoreSilently,
    /// Answer 400, echoing the Authorization header back.
    BadRequest,
    /// Store and report a wrong sha256.
    WrongChecksum,
    /// Redirect to the cloud metadata address.
    RedirectToMetadata,
}

/// What the receiver saw in one request.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub(crate) method: String,
    pub(crate) name: String,
    pub(crate) headers: HeaderMap,
    pub(crate) status: u16,
}

pub(crate) struct ReceiverState {
    mode: Mode,
    dir: PathBuf,
    unavailable_first: AtomicU32,
    pub(crate) seen: Mutex<Vec<Seen>>,
}

/// An axum server that stores uploads under a temp dir and checks the token.
pub(crate) struct Receiver {
    pub(crate) addr: SocketAddr,
    pub(crate) state: Arc<ReceiverState>,
    pub(crate) dir: TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Starts a receiver that answers 503 to the first `unavailable_first` authorised requests.
    pub(crate) async fn start(mode: Mode, unavailable_first: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let state = Arc::new(ReceiverState {
            mode,
            dir: dir.path().to_owned(),
            unavailable_first: AtomicU32::new(unavailable_first),
            seen: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/upload/{*name}", put(receive).post(receive))
            .layer(DefaultBodyLimit::disable())
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            addr,
            state,
            dir,
            task,
        }
    }

    pub(crate) fn url(&self, host: &str) -> String {
        format!("http://{host}:{}/upload/{{name}}", self.addr.port())
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    method: axum::http::Method,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let response = answer(&state, &name, &headers, body).await;
    state.seen.lock().unwrap().push(Seen {
        method: method.to_string(),
        name,
        headers,
        status: response.status().as_u16(),
    });
    response
}

async fn answer(state: &ReceiverState, name: &str, headers: &HeaderMap, body: Body) -> Response {
    match refusal(state, name, headers) {
        Some(refused) => {
            // Read the body before answering, as well-behaved servers do: closing a connection with unread
            // data resets it, and the client may then see a transport error instead of the status.
            let _ = axum::body::to_bytes(body, usize::MAX).await;
            refused
        }
        None => {
            let (bytes, sha256) = store(&state.dir.join(name), body).await;
            match state.mode {
                Mode::StoreSilently => StatusCode::NO_CONTENT.into_response(),
                Mode::WrongChecksum => {
                    axum::Json(serde_json::json!({"bytes": bytes, "sha256": "0".repeat(64)}))
                        .into_response()
                }
                _ => axum::Json(serde_json::json!({"bytes": bytes, "sha256": sha256}))
                    .into_response(),
            }
        }
    }
}

/// The answer when the upload is not stored: wrong token, "busy", a redirect or a bad request.
fn refusal(state: &ReceiverState, name: &str, headers: &HeaderMap) -> Option<Response> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if auth != TOKEN {
        return Some((StatusCode::UNAUTHORIZED, "missing or wrong token").into_response());
    }
    let remaining = state.unavailable_first.load(Ordering::SeqCst);
    if remaining > 0 {
        state
            .unavailable_first
            .store(remaining - 1, Ordering::SeqCst);
        return Some((StatusCode::SERVICE_UNAVAILABLE, "busy, try later").into_response());
    }
    match state.mode {
        Mode::RedirectToMetadata => {
            let to_metadata = [("location", "http://169.254.169.254/latest/meta-data/")];
            Some((StatusCode::TEMPORARY_REDIRECT, to_metadata).into_response())
        }
        Mode::BadRequest => {
            let text =
                format!("refusing upload: credentials {auth} are not allowed to write {name}");
            Some((StatusCode::BAD_REQUEST, text).into_response())
        }
        _ => None,
    }
}

/// Streams the body to `path`, returning size and sha256.
async fn store(path: &Path, body: Body) -> (u64, String) {
    tokio::fs::create_dir_all(path.parent().unwrap())
        .await
        .unwrap();
    let mut file = tokio::fs::File::create(path).await.unwrap();
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        hasher.update(&chunk);
        size += chunk.len() as u64;
        file.write_all(&chunk).await.unwrap();
    }
    file.flush().await.unwrap();
    (size, hex::encode(hasher.finalize()))
}

const FTP_SCRIPT: &str = r#"
import os, sys, threading
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer
root, user, password = sys.argv[1:4]
authorizer = DummyAuthorizer()
authorizer.add_user(user, password, root, perm="elradfmwMT")
handler = FTPHandler
handler.authorizer = authorizer
handler.auth_failed_timeout = 0
server = FTPServer(("127.0.0.1", 0), handler)
print(server.socket.getsockname()[1], flush=True)
threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
server.serve_forever()
"#;

/// A pyftpdlib server on loopback serving a temp dir; exits when dropped (or when the test process ends).
pub(crate) struct FtpServer {
    pub(crate) port: u16,
    pub(crate) root: TempDir,
    child: Child,
    _stdin: ChildStdin,
}

impl FtpServer {
    pub(crate) const USER: &str = "deliver";
    pub(crate) const PASSWORD: &str = "ftp-p4ss-9d2b";

    pub(crate) fn start() -> Self {
        flotilla_objects::testing::check_python_module(
            "pyftpdlib",
            "python3 cannot import pyftpdlib; run scripts/media-services.sh",
        )
        .unwrap_or_else(|hint| panic!("{hint}"));
        let root = tempfile::tempdir().unwrap();
        let mut child = Command::new("python3")
            .args([
                "-c",
                FTP_SCRIPT,
                root.path().to_str().unwrap(),
                Self::USER,
                Self::PASSWORD,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn python3");
        let stdin = child.stdin.take().unwrap();
        let port = read_port(child.stdout.take().unwrap());
        Self {
            port,
            root,
            child,
            _stdin: stdin,
        }
    }

    pub(crate) fn url(&self, host: &str, dir: &str) -> String {
        format!("ftp://{}@{host}:{}/{dir}", Self::USER, self.port)
    }
}

impl Drop for FtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads the port the server prints once it listens, waiting at most 20 s.
fn read_port(stdout: std::process::ChildStdout) -> u16 {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = sender.send(line);
    });
    let line = receiver
        .recv_timeout(Duration::from_secs(20))
        .expect("pyftpdlib did not start within 20 s");
    line.trim()
        .parse()
        .unwrap_or_else(|_| panic!("pyftpdlib failed to start: {line:?}"))
}
