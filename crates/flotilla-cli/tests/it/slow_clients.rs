//! A client that never finishes its headers is cut off after `header_timeout`, and does not
//! hold up anyone else meanwhile.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::{ServerProcess, config, get};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_sends_its_headers_is_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "header_timeout = \"1s\"\n");
    let server = ServerProcess::start_with(dir.path(), &["--config", &config], "http");

    let mut slow = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: slow\r\n")
        .unwrap();
    // Others are served while it dawdles.
    assert_eq!(get(format!("{}/healthz", server.url)).await["status"], "ok");

    // The server closes the connection; our own limit is only there so a failure cannot hang.
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut answer = Vec::new();
    let read = slow.read_to_end(&mut answer);
    assert!(
        read.is_ok(),
        "the server should have closed the connection: {read:?}"
    );
}
