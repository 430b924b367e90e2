//! Test support (feature `test-support`): a real S3-compatible server, moto, spawned on a free loopback port.
//!
//! The server runs as `python3 -c <script> PORT`; the script exits when its stdin closes, so even a server held
//! in a `static` (never dropped) goes away with the test process. [`MotoServer`] kills it on drop as well.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::{Objects, OpenOptions, S3Credentials};

/// How long a spawned server may take to answer.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
const POLL_INTERVAL: Duration = Duration::from_millis(50);
const MISSING_MOTO: &str =
    "python3 cannot import moto.server; run scripts/media-services.sh to install moto[server]";

const SERVER_SCRIPT: &str = r#"
import os, sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=int(sys.argv[1]), verbose=False)
server.start()
sys.stdin.read()
os._exit(0)
"#;

/// A moto S3 server on loopback, killed on drop.
pub struct MotoServer {
    child: Child,
    _stdin: ChildStdin,
    addr: SocketAddr,
    log: tempfile::NamedTempFile,
}

impl MotoServer {
    /// Spawns a server and waits (at most [`STARTUP_TIMEOUT`]) until it answers HTTP.
    pub fn start() -> Result<Self, String> {
        check_python_module("moto.server", MISSING_MOTO)?;
        let addr = free_loopback_addr()?;
        let log = tempfile::NamedTempFile::new().map_err(|e| format!("log file: {e}"))?;
        let stderr = log.reopen().map_err(|e| format!("log file: {e}"))?;
        let mut child = Command::new("python3")
            .args(["-c", SERVER_SCRIPT, &addr.port().to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot spawn python3: {e}"))?;
        let stdin = child.stdin.take().ok_or("no stdin pipe")?;
        let mut server = Self {
            child,
            _stdin: stdin,
            addr,
            log,
        };
        server.wait_until_answering()?;
        Ok(server)
    }

    /// One server per test process, started on first use; panics with instructions when moto is missing.
    pub fn shared() -> &'static MotoServer {
        static SHARED: OnceLock<MotoServer> = OnceLock::new();
        SHARED.get_or_init(|| Self::start().unwrap_or_else(|e| panic!("moto S3 server: {e}")))
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Credentials moto accepts (any will do).
    pub fn credentials() -> S3Credentials {
        S3Credentials {
            access_key_id: "flotilla-test".into(),
            secret_access_key: "flotilla-test-secret".into(),
            session_token: None,
        }
    }

    /// `s3://bucket[/prefix]?endpoint=…&region=us-east-1&allow_http=true` for this server.
    pub fn store_url(&self, bucket: &str, prefix: &str) -> String {
        let path = if prefix.is_empty() {
            bucket.to_owned()
        } else {
            format!("{bucket}/{prefix}")
        };
        format!(
            "s3://{path}?endpoint={}&region=us-east-1&allow_http=true",
            self.endpoint()
        )
    }

    /// Creates a bucket with a unique name (PUT on the bucket) and returns the name.
    pub async fn create_bucket(&self) -> Result<String, String> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "flotilla-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let response = reqwest::Client::new()
            .put(format!("{}/{name}", self.endpoint()))
            .send()
            .await
            .map_err(|e| format!("create bucket: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("create bucket: HTTP {}", response.status()));
        }
        Ok(name)
    }

    /// A fresh bucket opened as a store, with this server's credentials.
    pub async fn fresh_store(&self, prefix: &str) -> Result<Objects, String> {
        let bucket = self.create_bucket().await?;
        let options = OpenOptions {
            credentials: Some(Self::credentials()),
            ..OpenOptions::default()
        };
        Objects::open_with(&self.store_url(&bucket, prefix), options).map_err(|e| e.to_string())
    }

    fn wait_until_answering(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("moto exited with {status}: {}", self.log_tail()));
            }
            if answers_http(self.addr) {
                return Ok(());
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        Err(format!(
            "moto did not answer on {} within {STARTUP_TIMEOUT:?}: {}",
            self.addr,
            self.log_tail()
        ))
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log.path()).unwrap_or_default();
        let start = text.len().saturating_sub(2000);
        text.get(start..).unwrap_or_default().to_owned()
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fails with `hint` when `python3 -c 'import <module>'` fails.
pub fn check_python_module(module: &str, hint: &str) -> Result<(), String> {
    let status = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match status {
        Ok(status) if status.success() => Ok(()),
        _ => Err(hint.to_owned()),
    }
}

/// A loopback address whose port was free a moment ago.
pub fn free_loopback_addr() -> Result<SocketAddr, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    listener
        .local_addr()
        .map_err(|e| format!("local_addr: {e}"))
}

/// Whether something at `addr` answers an HTTP request with a status line.
fn answers_http(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, POLL_INTERVAL) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
}
