//! The minimal sequential producer of `flotilla bench e2e`: one keep-alive HTTP/1.1
//! connection, one `POST /v1/jobs` at a time, as a load generator such as `wrk` or
//! `sockperf` sends them. It waits for each answer by polling the socket (for up to
//! [`SPIN`], then sleeping), as latency benchmarks do, so that what it measures is the
//! server rather than the time a virtual machine takes to wake a sleeping client. The
//! same run also measures `flotilla-client`, an ordinary sleeping client with an async
//! runtime and a connection pool: the gap between the two is the client's.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use flotilla_core::NewJob;

/// How long the producer polls for an answer before it sleeps until one comes.
const SPIN: Duration = Duration::from_millis(2);

/// A connection to the server at `addr` (`host:port`).
pub(crate) struct RawProducer {
    stream: TcpStream,
    addr: String,
    buf: Vec<u8>,
}

impl RawProducer {
    pub(crate) fn connect(addr: &str) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_nonblocking(true)?;
        Ok(Self {
            stream,
            addr: addr.to_owned(),
            buf: Vec::with_capacity(4096),
        })
    }

    /// Enqueues `job`; fails unless the server answers 202.
    pub(crate) fn enqueue(&mut self, job: &NewJob) -> anyhow::Result<()> {
        let body = serde_json::to_vec(job)?;
        let mut request = format!(
            "POST /v1/jobs HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            self.addr,
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(&body);
        self.stream.write_all(&request)?;
        let (status, body) = self.read_response()?;
        if status != 202 {
            bail!(
                "the server answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(())
    }

    /// Reads one response: its status and body (by `content-length`).
    fn read_response(&mut self) -> anyhow::Result<(u16, Vec<u8>)> {
        self.buf.clear();
        let mut chunk = [0u8; 4096];
        loop {
            let n = self.read_polling(&mut chunk)?;
            if n == 0 {
                bail!("the server closed the connection");
            }
            self.buf.extend_from_slice(&chunk[..n]);
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            let httparse::Status::Complete(head) = response.parse(&self.buf)? else {
                continue;
            };
            let length = response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| {
                    std::str::from_utf8(h.value)
                        .ok()?
                        .trim()
                        .parse::<usize>()
                        .ok()
                })
                .context("a response without content-length")?;
            if self.buf.len() >= head + length {
                let status = response.code.unwrap_or(0);
                return Ok((status, self.buf[head..head + length].to_vec()));
            }
        }
    }

    /// Reads what has come, polling for up to [`SPIN`] and then blocking.
    fn read_polling(&mut self, chunk: &mut [u8]) -> std::io::Result<usize> {
        let start = Instant::now();
        loop {
            match self.stream.read(chunk) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if start.elapsed() < SPIN {
                        std::hint::spin_loop();
                        continue;
                    }
                    self.stream.set_nonblocking(false)?;
                    let read = self.stream.read(chunk);
                    self.stream.set_nonblocking(true)?;
                    return read;
                }
                other => return other,
            }
        }
    }
}

/// Enqueues `jobs` made by `job` one request at a time on a thread of its own; how long
/// they took (the connection is made before timing).
pub(crate) async fn enqueue_singles(
    addr: String,
    jobs: usize,
    job: fn(usize) -> NewJob,
) -> anyhow::Result<Duration> {
    tokio::task::spawn_blocking(move || {
        let mut producer = RawProducer::connect(&addr)?;
        producer.enqueue(&job(0))?;
        let start = Instant::now();
        for i in 1..=jobs {
            producer.enqueue(&job(i))?;
        }
        Ok(start.elapsed())
    })
    .await?
}
