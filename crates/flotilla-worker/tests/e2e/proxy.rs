//! A TCP proxy the tests can cut and reconnect, or point at another server, to play a
//! server that goes away and comes back. It notes the request line of every request it
//! forwards, and can swallow the answer to a request and cut its connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

/// What the proxy saw of the requests, and the answer it is to swallow.
#[derive(Default)]
pub(crate) struct Tap {
    lines: Mutex<Vec<String>>,
    cut: Mutex<Option<String>>,
}

impl Tap {
    /// How many requests had a request line starting with `prefix` ("POST /v1/poll").
    pub(crate) fn requests(&self, prefix: &str) -> usize {
        let lines = self.lines.lock().unwrap();
        lines.iter().filter(|l| l.starts_with(prefix)).count()
    }

    /// The request lines seen, in order.
    pub(crate) fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Forwards the next request starting with `prefix`, but cuts its connection instead
    /// of passing the answer on: the server acted on it, the client never learns.
    pub(crate) fn cut_answer_to_next(&self, prefix: &str) {
        *self.cut.lock().unwrap() = Some(prefix.into());
    }

    /// Whether a cut asked for is still to come.
    pub(crate) fn armed(&self) -> bool {
        self.cut.lock().unwrap().is_some()
    }

    /// Notes a request line; whether its answer is to be cut.
    fn saw(&self, line: String) -> bool {
        let mut cut = self.cut.lock().unwrap();
        let hit = cut.as_ref().is_some_and(|p| line.starts_with(p.as_str()));
        if hit {
            *cut = None;
        }
        self.lines.lock().unwrap().push(line);
        hit
    }
}

#[derive(Default)]
struct Route {
    backend: Option<SocketAddr>,
    open: Vec<AbortHandle>,
}

/// Forwards connections to a backend, or refuses them while it has none.
pub(crate) struct Proxy {
    /// `http://127.0.0.1:PORT`.
    pub(crate) url: String,
    route: Arc<Mutex<Route>>,
    /// One message per refused connection.
    pub(crate) refused: mpsc::UnboundedReceiver<()>,
    /// The requests forwarded.
    pub(crate) tap: Arc<Tap>,
    accept: AbortHandle,
}

impl Proxy {
    /// A proxy to `backend` (refusing everything when `None`).
    pub(crate) async fn start(backend: Option<SocketAddr>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let route = Arc::new(Mutex::new(Route {
            backend,
            open: Vec::new(),
        }));
        let (refused_tx, refused) = mpsc::unbounded_channel();
        let shared = route.clone();
        let tap = Arc::new(Tap::default());
        let tapped = tap.clone();
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let mut route = shared.lock().unwrap();
                let Some(backend) = route.backend else {
                    drop(inbound);
                    let _ = refused_tx.send(());
                    continue;
                };
                let tap = tapped.clone();
                let pipe = tokio::spawn(async move {
                    if let Ok(outbound) = TcpStream::connect(backend).await {
                        pipe(inbound, outbound, tap).await;
                    }
                });
                route.open.push(pipe.abort_handle());
            }
        });
        Proxy {
            url,
            route,
            refused,
            tap,
            accept: accept.abort_handle(),
        }
    }

    /// Sends new connections to `backend`, or refuses them; cuts every open connection.
    pub(crate) fn route_to(&self, backend: Option<SocketAddr>) {
        let mut route = self.route.lock().unwrap();
        route.backend = backend;
        for conn in route.open.drain(..) {
            conn.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.route_to(None);
        self.accept.abort();
    }
}

/// Forwards both ways, noting request lines, until either side closes or an answer is to
/// be cut.
async fn pipe(inbound: TcpStream, outbound: TcpStream, tap: Arc<Tap>) {
    let (from_client, to_client) = inbound.into_split();
    let (from_server, to_server) = outbound.into_split();
    let cut = Arc::new(AtomicBool::new(false));
    let up = requests(from_client, to_server, tap, cut.clone());
    let down = answers(from_server, to_client, cut);
    tokio::pin!(up, down);
    tokio::select! {
        () = &mut down => {}
        () = &mut up => down.await,
    }
}

/// Client to server: notes each request line: from its method to " HTTP/1.1\r\n" (a
/// body ends without a line break, so the line may follow one directly).
async fn requests(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    tap: Arc<Tap>,
    cut: Arc<AtomicBool>,
) {
    const END: &[u8] = b" HTTP/1.1\r\n";
    let mut buf = vec![0; 64 * 1024];
    let mut scan = Vec::new();
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        scan.extend_from_slice(&buf[..n]);
        while let Some(end) = scan.windows(END.len()).position(|w| w == END) {
            let text = String::from_utf8_lossy(&scan[..end]);
            let start = ["GET ", "POST ", "PUT ", "DELETE "]
                .iter()
                .filter_map(|method| text.rfind(method))
                .max()
                .unwrap_or(0);
            let line = text[start..].to_owned();
            if tap.saw(line) {
                cut.store(true, Ordering::SeqCst);
            }
            scan.drain(..end + END.len());
        }
        let keep = scan.len().saturating_sub(1024);
        scan.drain(..keep);
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// Server to client, unless the answer is to be cut: then nothing more passes.
async fn answers(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, cut: Arc<AtomicBool>) {
    let mut buf = vec![0; 64 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 || cut.load(Ordering::SeqCst) || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
}
