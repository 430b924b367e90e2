//! Starting `flotilla server` as a child process and talking to it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// A `flotilla server` child process, killed on drop.
pub(crate) struct ServerProcess {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub(crate) url: String,
}

impl ServerProcess {
    /// Starts a server on a free loopback port with its store in `dir`, and waits for its
    /// "ready" log line.
    pub(crate) fn start(dir: &Path) -> Self {
        Self::start_with(dir, &[], "http")
    }

    /// Like [`ServerProcess::start`], with more arguments and the URL scheme to expect.
    pub(crate) fn start_with(dir: &Path, args: &[&str], scheme: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .args(["server", "--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .arg("--store")
            .arg(format!("sqlite:{}", dir.join("flotilla.db").display()))
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .expect("start flotilla server");
        let (ready_tx, ready_rx) = mpsc::channel();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if line.contains("flotilla server ready") {
                    let _ = ready_tx.send(());
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the server reports ready");
        Self {
            child,
            url: format!("{scheme}://127.0.0.1:{port}"),
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A GET returning JSON.
pub(crate) async fn get(url: String) -> Value {
    reqwest::get(url)
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON")
}
