//! [`Batcher`]: the outcomes waiting for the reporter, one request's worth at a time, and
//! what to do with the server's answer.

use std::collections::VecDeque;

use flotilla_client::ClientError;
use flotilla_core::{ErrorCode, JobId, LeaseToken};
use flotilla_proto::{AckBatchRequest, AckItemResult, CompleteItem, FailItem, ReleaseItem};
use serde_json::Value;
use tokio::time::sleep;
use tracing::{Span, debug, error, info, warn};

use crate::backoff::Backoff;
use crate::report::{Ack, MAX_BATCH, MAX_BATCH_BYTES, Report};
use crate::shared::Shared;

/// The outcomes waiting, and how many go in the next request.
pub(crate) struct Batcher {
    /// In the order they came.
    pub(crate) waiting: VecDeque<Ack>,
    /// Outcomes in the request in flight.
    pub(crate) in_flight: usize,
    /// The most outcomes the next request takes: halved after a request refused as too
    /// large, doubled after an answer, up to [`MAX_BATCH`].
    pub(crate) limit: usize,
    backoff: Backoff,
}

impl Batcher {
    pub(crate) fn new() -> Self {
        Self {
            waiting: VecDeque::new(),
            in_flight: 0,
            limit: MAX_BATCH,
            backoff: Backoff::new(Backoff::REPORT),
        }
    }

    /// Takes the outcomes of the next request: the first ones waiting, at most `limit`
    /// and about [`MAX_BATCH_BYTES`] (but at least one).
    fn take(&mut self) -> Vec<Ack> {
        let mut bytes = 0;
        let count = self
            .waiting
            .iter()
            .take(self.limit)
            .take_while(|ack| {
                bytes += ack.size;
                bytes <= MAX_BATCH_BYTES
            })
            .count()
            .max(1);
        self.waiting
            .drain(..count.min(self.waiting.len()))
            .collect()
    }

    /// Sends one request with the first outcomes waiting and deals with the answer;
    /// after a transport error or a 5xx, waits out the backoff.
    pub(crate) async fn round(&mut self, shared: &Shared) {
        let (mut request, metas) = request(self.take());
        request.worker_id = shared.registered_id();
        let count = metas.len();
        self.in_flight = count;
        let sent = shared.client.ack_batch(&request).await;
        self.in_flight = 0;
        match sent {
            Ok(answer) => {
                shared.stats.call_ok();
                self.backoff.reset();
                self.limit = (self.limit * 2).min(MAX_BATCH);
                let (mut complete, mut fail, mut release) = (vec![], vec![], vec![]);
                for meta in metas {
                    match meta.kind {
                        Kind::Complete => complete.push(meta),
                        Kind::Fail => fail.push(meta),
                        Kind::Release => release.push(meta),
                    }
                }
                answered(complete, answer.complete);
                answered(fail, answer.fail);
                answered(release, answer.release);
            }
            Err(err) if err.is_retryable() => {
                shared.stats.call_failed();
                self.put_back(rebuild(metas, request), true);
                let delay = self.backoff.next_delay();
                let attempt = self.backoff.attempts();
                warn!(error = %err, outcomes = count, attempt, ?delay, "could not report; retrying");
                sleep(delay).await;
            }
            Err(err) if err.status() == Some(413) && count > 1 => {
                self.limit = count / 2;
                self.put_back(rebuild(metas, request), false);
                debug!(
                    outcomes = count,
                    "too large for the server; sending fewer at once"
                );
            }
            Err(err)
                if err.status() == Some(413) && metas.iter().all(|m| m.kind == Kind::Complete) =>
            {
                for meta in metas {
                    meta.span.in_scope(|| {
                        warn!(error = %err, "the result was refused; failing the job instead");
                    });
                    let report = Report::fail(format!("result refused: {err}"), false);
                    self.waiting.push_front(meta.with(report));
                }
            }
            Err(err) => refused(metas, &err),
        }
    }

    /// Puts outcomes back in front, in order; `unanswered` when their request failed
    /// without an answer per item.
    fn put_back(&mut self, acks: Vec<Ack>, unanswered: bool) {
        for mut ack in acks.into_iter().rev() {
            ack.unanswered += u32::from(unanswered);
            self.waiting.push_front(ack);
        }
    }
}

/// What the worker keeps of an outcome while it is in a request: all but the report.
pub(crate) struct Meta {
    id: JobId,
    token: LeaseToken,
    span: Span,
    size: usize,
    unanswered: u32,
    kind: Kind,
}

/// Which list of the request an outcome went in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Complete,
    Fail,
    Release,
}

impl Meta {
    fn with(self, report: Report) -> Ack {
        Ack {
            id: self.id,
            token: self.token,
            report,
            span: self.span,
            size: self.size,
            unanswered: self.unanswered,
        }
    }
}

/// The request for `acks` (their reports move into it), and what is left of them.
pub(crate) fn request(acks: Vec<Ack>) -> (AckBatchRequest, Vec<Meta>) {
    let mut request = AckBatchRequest::default();
    let mut metas = Vec::with_capacity(acks.len());
    for ack in acks {
        let (id, token) = (ack.id, ack.token);
        let kind = match ack.report {
            Report::Complete(result) => {
                let result = Some(result);
                request.complete.push(CompleteItem { id, token, result });
                Kind::Complete
            }
            Report::Fail { error, retryable } => {
                let failed = FailItem {
                    id,
                    token,
                    error,
                    retryable,
                };
                request.fail.push(failed);
                Kind::Fail
            }
            Report::Release => {
                request.release.push(ReleaseItem { id, token });
                Kind::Release
            }
        };
        metas.push(Meta {
            id,
            token,
            span: ack.span,
            size: ack.size,
            unanswered: ack.unanswered,
            kind,
        });
    }
    (request, metas)
}

/// The outcomes back from `metas` and their `request`, in order.
pub(crate) fn rebuild(metas: Vec<Meta>, request: AckBatchRequest) -> Vec<Ack> {
    let mut complete = request.complete.into_iter();
    let mut fail = request.fail.into_iter();
    let mut release = request.release.into_iter();
    let mut acks = Vec::with_capacity(metas.len());
    for meta in metas {
        let report = match meta.kind {
            Kind::Complete => complete
                .next()
                .map(|c| Report::Complete(c.result.unwrap_or(Value::Null))),
            Kind::Fail => fail.next().map(|f| Report::fail(f.error, f.retryable)),
            Kind::Release => release.next().map(|_| Report::Release),
        };
        if let Some(report) = report {
            acks.push(meta.with(report));
        }
    }
    acks
}

/// Logs the server's answer to each outcome sent. An answer that does not match the
/// request (a server bug) is logged and the outcome dropped: it may have been applied.
fn answered(sent: Vec<Meta>, answers: Vec<AckItemResult>) {
    let mut answers = answers.into_iter();
    for meta in sent {
        let _span = meta.span.enter();
        match answers.next().filter(|a| a.id == meta.id) {
            Some(AckItemResult {
                state: Some(state), ..
            }) => debug!(%state, "reported"),
            Some(AckItemResult {
                error: Some(err), ..
            }) if lost_lease(&err.code) => {
                if meta.unanswered > 0 {
                    info!(
                        code = %err.code,
                        "outcome refused after an earlier request failed: that one must have applied it"
                    );
                } else {
                    warn!(
                        code = %err.code,
                        "the lease was lost before the outcome was reported; the server moved the job on"
                    );
                }
            }
            Some(AckItemResult {
                error: Some(err), ..
            }) => {
                error!(code = %err.code, message = %err.message, "the server refused the outcome")
            }
            _ => error!("the server's answer does not cover the outcome; dropping it"),
        }
    }
}

/// Whether an item's error code says the lease is gone: give up on the outcome.
fn lost_lease(code: &str) -> bool {
    code == ErrorCode::LeaseMismatch.as_str() || code == ErrorCode::JobNotFound.as_str()
}

/// Logs every outcome of a request the server refused as a whole; they are dropped.
fn refused(metas: Vec<Meta>, err: &ClientError) {
    for meta in metas {
        let _span = meta.span.enter();
        error!(error = %err, "the server refused the outcome");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ack(id: i64, report: Report) -> Ack {
        Ack::new(JobId(id), LeaseToken(id + 100), report, Span::none())
    }

    fn ids(acks: &[Ack]) -> Vec<i64> {
        acks.iter().map(|a| a.id.0).collect()
    }

    #[test]
    fn a_request_and_back_keeps_every_outcome_in_order() {
        let acks = vec![
            ack(1, Report::Complete(json!({"a": 1}))),
            ack(2, Report::fail("boom", true)),
            ack(3, Report::Complete(Value::Null)),
            ack(4, Report::fail("bad", false)),
        ];
        let (request, metas) = request(acks);
        let complete: Vec<i64> = request.complete.iter().map(|c| c.id.0).collect();
        assert_eq!(complete, [1, 3]);
        assert_eq!(request.fail[1].token, LeaseToken(104));
        assert!(!request.fail[1].retryable);
        let back = rebuild(metas, request);
        assert_eq!(ids(&back), [1, 2, 3, 4]);
        assert_eq!(back[0].report, Report::Complete(json!({"a": 1})));
        assert_eq!(back[1].report, Report::fail("boom", true));
    }

    #[test]
    fn a_request_takes_at_most_the_limit_and_about_the_byte_budget() {
        let mut batcher = Batcher::new();
        batcher
            .waiting
            .extend((0..5).map(|i| ack(i, Report::Complete(json!(i)))));
        batcher.limit = 2;
        assert_eq!(ids(&batcher.take()), [0, 1]);
        batcher.limit = MAX_BATCH;
        let big = || Report::Complete(json!("x".repeat(MAX_BATCH_BYTES / 2)));
        batcher.waiting.push_back(ack(5, big()));
        batcher.waiting.push_back(ack(6, big()));
        assert_eq!(
            ids(&batcher.take()),
            [2, 3, 4, 5],
            "the second big one waits"
        );
        let huge = Report::Complete(json!("x".repeat(MAX_BATCH_BYTES)));
        batcher.waiting.push_back(ack(7, huge));
        assert_eq!(
            ids(&batcher.take()),
            [6],
            "alone: too much with the next one"
        );
        assert_eq!(ids(&batcher.take()), [7], "too large alone still goes");
        assert!(batcher.take().is_empty());
    }

    #[test]
    fn outcomes_put_back_go_first_and_remember_an_unanswered_request() {
        let mut batcher = Batcher::new();
        batcher
            .waiting
            .extend((0..3).map(|i| ack(i, Report::Complete(json!(i)))));
        let taken = batcher.take();
        batcher
            .waiting
            .push_back(ack(9, Report::fail("late", true)));
        batcher.put_back(taken, true);
        let again = batcher.take();
        assert_eq!(ids(&again), [0, 1, 2, 9]);
        let unanswered: Vec<u32> = again.iter().map(|a| a.unanswered).collect();
        assert_eq!(unanswered, [1, 1, 1, 0]);
    }
}
