//! A real server for tests: an embedded SQLite store in a temporary directory, the engine's
//! services, and the HTTP API bound to a loopback port.

use std::net::SocketAddr;
use std::sync::Arc;

use flotilla_core::{QueueConfig, SystemClock};
use flotilla_server::Engine;
use flotilla_server::services::ServiceIntervals;
use flotilla_store::Store;
use flotilla_store_sqlite::{SqliteOptions, SqliteStore};
use tokio_util::sync::CancellationToken;

use crate::assets::Media;
use crate::{Auth, Limits, router_with_media};

/// A running test server; stops when dropped.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The bound address.
    pub addr: SocketAddr,
    /// The engine behind it (store, broker, workers).
    pub engine: Engine,
    /// The object store's directory (uploads and outputs), when it serves assets.
    pub objects_dir: std::path::PathBuf,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts a server with `queues` (default settings each) and `auth`.
pub async fn spawn_with(queues: &[&str], auth: Auth) -> TestServer {
    start(queues, auth, None).await
}

/// Starts a server that serves assets: the built-in pipelines and their queues, and an
/// object store in a temporary directory; uploads up to `max_upload_bytes`.
pub async fn spawn_media(max_upload_bytes: u64) -> TestServer {
    let config = flotilla_server::ServerConfig::default();
    let pipelines = config.all_pipelines();
    let queues: Vec<String> = config
        .queues_to_create()
        .into_iter()
        .map(|q| q.name)
        .collect();
    let queues: Vec<&str> = queues.iter().map(String::as_str).collect();
    start(
        &queues,
        Auth::default(),
        Some((pipelines, max_upload_bytes)),
    )
    .await
}

type MediaSettings = (Vec<flotilla_server::pipelines::PipelineConfig>, u64);

async fn start(queues: &[&str], auth: Auth, media: Option<MediaSettings>) -> TestServer {
    let dir = tempfile::tempdir().expect("temporary directory");
    let objects_dir = dir.path().join("objects");
    let media = media.map(|(pipelines, max_upload_bytes)| Media {
        objects: flotilla_objects::Objects::local(&objects_dir).expect("object store"),
        pipelines,
        max_upload_bytes,
    });
    let store = SqliteStore::open(dir.path().join("flotilla.db"), SqliteOptions::default())
        .expect("open store");
    let store: Arc<dyn Store> = Arc::new(store);
    for q in queues {
        store
            .queue_upsert(QueueConfig::new(*q))
            .await
            .expect("queue");
    }
    let engine = Engine::new(store, Arc::new(SystemClock));
    let shutdown = CancellationToken::new();
    let intervals = ServiceIntervals {
        promote: std::time::Duration::from_millis(50),
        ..ServiceIntervals::default()
    };
    let services = engine.start_services(&intervals, &shutdown);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let app = router_with_media(engine.clone(), auth, Limits::default(), media);
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _services = services;
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
    });
    TestServer {
        url: format!("http://{addr}"),
        addr,
        engine,
        objects_dir,
        shutdown,
        _dir: dir,
    }
}

/// Starts a server with `queues` and no authentication.
pub async fn spawn(queues: &[&str]) -> TestServer {
    spawn_with(queues, Auth::default()).await
}
