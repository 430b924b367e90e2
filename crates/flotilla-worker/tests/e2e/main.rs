//! End to end: a real server (`flotilla_api::testing`) on a loopback port and a real
//! worker runtime. Tests observe through handler signals and the worker's own drain: once
//! `Worker::run` returns, every job it took has been reported, so states are final.
//!
//! Modules:
//! - `run`: success, fatal errors, cancel, timeout, exec commands, unknown kinds.
//! - `batch`: outcomes reported in batches, and exactly once when an answer is lost.
//! - `drain`: shutdown with jobs in flight, within and past the grace period.
//! - `outage`: the server goes away and comes back (through `proxy`), or restarts.
//! - `health`: the health port, and the client's own calls.

mod batch;
mod drain;
mod health;
mod outage;
mod proxy;
mod run;

use std::time::Duration;

use flotilla_api::testing::{TestServer, spawn};
use flotilla_client::{Client, NewJob};
use flotilla_core::JobId;
use flotilla_worker::{JobContext, Worker, WorkerBuilder};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Every test finishes well within this, or fails.
const LIMIT: Duration = Duration::from_secs(30);

pub(crate) struct Harness {
    pub(crate) server: TestServer,
    pub(crate) client: Client,
}

pub(crate) async fn setup() -> Harness {
    let server = spawn(&["high", "default"]).await;
    let client = Client::new(&server.url, None).unwrap();
    Harness { server, client }
}

impl Harness {
    pub(crate) fn worker(&self) -> WorkerBuilder {
        Worker::builder(self.client.clone())
            .queues(["high", "default"])
            .cancel_grace(Duration::from_secs(2))
    }

    pub(crate) async fn enqueue(&self, job: NewJob) -> JobId {
        self.client.enqueue(&job).await.unwrap().id
    }

    pub(crate) async fn job(&self, id: JobId) -> flotilla_client::Job {
        self.client.job(id).await.unwrap()
    }
}

/// Runs `worker` until `stop` fires (or its sender is dropped).
pub(crate) fn start(worker: Worker, stop: oneshot::Receiver<()>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.await;
        };
        worker.run(shutdown).await.unwrap();
    })
}

pub(crate) async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: no progress within {LIMIT:?}"))
}

pub(crate) fn job(kind: &str, payload: Value) -> NewJob {
    NewJob::new("default", kind, payload)
}

/// A handler that signals on `tx` each time it runs.
pub(crate) fn signalling(
    tx: mpsc::Sender<JobId>,
) -> impl Fn(JobContext) -> flotilla_worker::HandlerFuture {
    move |ctx: JobContext| {
        let tx = tx.clone();
        Box::pin(async move {
            let _ = tx.send(ctx.job().id).await;
            Ok(Value::Null)
        })
    }
}
