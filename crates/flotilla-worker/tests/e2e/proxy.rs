//! A TCP proxy the tests can cut and reconnect, or point at another server, to play a
//! server that goes away and comes back.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

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
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut route = shared.lock().unwrap();
                let Some(backend) = route.backend else {
                    drop(inbound);
                    let _ = refused_tx.send(());
                    continue;
                };
                let pipe = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(backend).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                route.open.push(pipe.abort_handle());
            }
        });
        Proxy {
            url,
            route,
            refused,
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
