//! The reporter: one task per worker that tells the server how jobs ended, many at a time
//! (`POST /v1/ack:batch`), group-commit style. Idle, it sends an outcome at once; while a
//! request is in flight, new outcomes wait and go together in the next one (at most
//! [`MAX_BATCH`]).
//!
//! An outcome is sent until the server answers it or refuses its lease: transport errors
//! and 5xx answers send the batch again after a backoff; an item the server accepted is
//! never sent again; an item it refused is logged and dropped.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use flotilla_core::{JobId, LeaseToken};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout_at};
use tracing::{Instrument, Span, error};

use crate::batch::Batcher;
use crate::shared::Shared;

/// The most outcomes one request carries, and how many may wait for the reporter before
/// job tasks wait to hand theirs over (holding their slots, so polling slows down too).
pub(crate) const MAX_BATCH: usize = 1000;
/// About the most bytes of results and errors one request carries (a single larger
/// outcome goes alone), well under the server's default body limit of 16 MiB.
pub(crate) const MAX_BATCH_BYTES: usize = 4 << 20;
/// What an outcome adds to a request besides its result or error.
const ITEM_OVERHEAD: usize = 64;
/// How long the reporter may go on after the handlers' time is up at shutdown.
pub(crate) const REPORT_GRACE: Duration = Duration::from_secs(10);

/// What the server is told about a job.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Report {
    /// Success, with the handler's result.
    Complete(Value),
    /// A failed attempt.
    Fail { error: String, retryable: bool },
    /// Handed back unrun: the attempt does not count.
    Release,
}

impl Report {
    /// A failure.
    pub(crate) fn fail(error: impl Into<String>, retryable: bool) -> Self {
        Self::Fail {
            error: error.into(),
            retryable,
        }
    }
}

/// One job's outcome, handed to the reporter.
pub(crate) struct Ack {
    pub(crate) id: JobId,
    pub(crate) token: LeaseToken,
    pub(crate) report: Report,
    /// The job's span: log lines about the outcome go there.
    pub(crate) span: Span,
    /// About how many bytes it adds to a request.
    pub(crate) size: usize,
    /// Requests it went in that failed without an answer per item (cut, timed out, or a
    /// 5xx): the server may have applied it all the same.
    pub(crate) unanswered: u32,
}

impl Ack {
    /// The outcome `report` of job `id` under lease `token`, logged in `span`. Measures
    /// the result (in the job's task, so the reporter does not have to).
    pub(crate) fn new(id: JobId, token: LeaseToken, report: Report, span: Span) -> Self {
        let size = ITEM_OVERHEAD
            + match &report {
                Report::Complete(result) => json_len(result),
                Report::Fail { error, .. } => error.len(),
                Report::Release => 0,
            };
        Self {
            id,
            token,
            report,
            span,
            size,
            unanswered: 0,
        }
    }
}

/// The length of `value` as JSON.
fn json_len(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// The channel job tasks hand their outcomes over on.
pub(crate) fn channel() -> (mpsc::Sender<Ack>, mpsc::Receiver<Ack>) {
    mpsc::channel(MAX_BATCH)
}

/// The running reporter task.
pub(crate) struct Reporter {
    task: JoinHandle<()>,
    finish: oneshot::Sender<Instant>,
}

impl Reporter {
    /// Starts reporting what arrives on `acks`.
    pub(crate) fn spawn(shared: Arc<Shared>, acks: mpsc::Receiver<Ack>) -> Self {
        let (finish, finish_rx) = oneshot::channel();
        let run = run(shared, acks, finish_rx).in_current_span();
        Self {
            task: tokio::spawn(run),
            finish,
        }
    }

    /// Takes no more outcomes, reports those it has until `deadline`, and returns once
    /// every one is answered (or the deadline passed, which it logs).
    pub(crate) async fn finish(self, deadline: Instant) {
        let _ = self.finish.send(deadline);
        if let Err(err) = self.task.await
            && err.is_panic()
        {
            error!("the reporter panicked: {err}");
        }
    }
}

async fn run(
    shared: Arc<Shared>,
    mut acks: mpsc::Receiver<Ack>,
    mut finish: oneshot::Receiver<Instant>,
) {
    let mut batcher = Batcher::new();
    let mut deadline = None;
    loop {
        if batcher.waiting.is_empty() {
            let next = match deadline {
                // Closed: what is buffered still comes, then `None`.
                Some(_) => acks.recv().await,
                None => tokio::select! {
                    next = acks.recv() => next,
                    at = &mut finish => {
                        deadline = Some(at.unwrap_or_else(|_| Instant::now()));
                        acks.close();
                        continue;
                    }
                },
            };
            let Some(ack) = next else { return };
            batcher.waiting.push_back(ack);
        }
        // Jobs of one poll tend to end together: while a turn of the scheduler brings more
        // outcomes, take them and give it another turn (no timer, and never without one
        // more outcome: it does not spin).
        loop {
            while batcher.waiting.len() < batcher.limit
                && let Ok(ack) = acks.try_recv()
            {
                batcher.waiting.push_back(ack);
            }
            if batcher.waiting.len() >= batcher.limit || deadline.is_some() {
                break;
            }
            tokio::task::yield_now().await;
            if acks.is_empty() {
                break;
            }
        }
        let answered = {
            let mut round = pin!(batcher.round(&shared));
            match deadline {
                Some(at) => timeout_at(at, round).await.is_ok(),
                None => tokio::select! {
                    () = &mut round => true,
                    at = &mut finish => {
                        let at = at.unwrap_or_else(|_| Instant::now());
                        deadline = Some(at);
                        acks.close();
                        timeout_at(at, round).await.is_ok()
                    }
                },
            }
        };
        if !answered {
            let left = batcher.in_flight + batcher.waiting.len() + acks.len();
            error!(
                left,
                "outcomes left unreported at shutdown; the server runs those jobs again once their leases expire"
            );
            return;
        }
    }
}
