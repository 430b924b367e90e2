//! Alert delivery to a real HTTP receiver on 127.0.0.1: the body, ordering, retries, giving
//! up, and the acceptance case of issue 9 point 5 (an alert fires when a pool crash-loops and
//! when the oldest job is too old, and resolves afterwards), driven by the real alert engine.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use flotilla_fleet::alerts::{
    Alert, AlertEngine, AlertEvent, AlertPolicy, AlertRule, AlertStatus, PoolSnapshot, Severity,
};
use flotilla_supervisor::webhook::{
    DeliveryStats, RetryPolicy, WebhookBody, WebhookError, WebhookNotifier,
};
use serde_json::Value;

/// What the receiver answers and what it saw.
#[derive(Default)]
struct Inbox {
    /// Statuses to answer, in order; 200 once empty.
    script: VecDeque<u16>,
    /// Every request's body, accepted or not.
    requests: Vec<Value>,
}

struct Receiver {
    url: String,
    inbox: Arc<Mutex<Inbox>>,
}

impl Receiver {
    /// Bodies of all requests so far.
    fn requests(&self) -> Vec<Value> {
        self.inbox.lock().unwrap().requests.clone()
    }
}

async fn receive(State(inbox): State<Arc<Mutex<Inbox>>>, body: axum::Json<Value>) -> StatusCode {
    let mut inbox = inbox.lock().unwrap();
    inbox.requests.push(body.0);
    let code = inbox.script.pop_front().unwrap_or(200);
    StatusCode::from_u16(code).unwrap()
}

/// A receiver on `127.0.0.1:0` answering `script` then 200s.
async fn receiver(script: &[u16]) -> Receiver {
    let inbox = Arc::new(Mutex::new(Inbox {
        script: script.iter().copied().collect(),
        requests: Vec::new(),
    }));
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(inbox.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver { url, inbox }
}

/// Quick retries so tests run fast.
fn quick(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        attempts,
        first_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        request_timeout: Duration::from_secs(5),
    }
}

fn event(status: AlertStatus, since_s: u64, at_s: u64) -> AlertEvent {
    AlertEvent {
        status,
        alert: Alert {
            rule: AlertRule::CrashLoop,
            pool: "transcode".into(),
            severity: Severity::High,
            message: "pool transcode: crash-looping (9 crashes since the supervisor started)"
                .into(),
            value: 9.0,
            since: Duration::from_secs(since_s),
        },
        at: Duration::from_secs(at_s),
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test]
async fn firing_then_resolved_arrive_in_order_with_the_documented_json() {
    let rx = receiver(&[]).await;
    let notifier = WebhookNotifier::new(vec![rx.url.clone()], quick(3)).unwrap();
    let before = unix_ms();
    notifier.notify(&event(AlertStatus::Firing, 10, 10));
    notifier.notify(&event(AlertStatus::Resolved, 10, 100));
    notifier.flush().await;

    let got = rx.requests();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0]["status"], "firing");
    assert_eq!(got[1]["status"], "resolved");
    let firing = &got[0];
    assert_eq!(firing["source"], "flotilla-fleet");
    assert_eq!(firing["alert"]["rule"], "crash_loop");
    assert_eq!(firing["alert"]["pool"], "transcode");
    assert_eq!(firing["alert"]["severity"], "high");
    assert_eq!(firing["alert"]["value"], 9.0);
    assert_eq!(
        firing["alert"]["message"],
        "pool transcode: crash-looping (9 crashes since the supervisor started)"
    );
    let at = firing["at_unix_ms"].as_u64().unwrap();
    assert!(
        at >= before,
        "at_unix_ms {at} is before the notify at {before}"
    );
    assert_eq!(firing["alert"]["since_unix_ms"].as_u64(), Some(at));
    let resolved: WebhookBody = serde_json::from_value(got[1].clone()).unwrap();
    assert_eq!(resolved.at_unix_ms - resolved.alert.since_unix_ms, 90_000);
    let keys: Vec<&str> = firing
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 4, "unexpected keys {keys:?}");
    assert_eq!(
        notifier.stats(),
        DeliveryStats {
            delivered: 2,
            failed: 0,
            attempts: 2
        }
    );
}

#[tokio::test]
async fn a_503_twice_then_200_is_delivered_on_attempt_3() {
    let rx = receiver(&[503, 503]).await;
    let notifier = WebhookNotifier::new(vec![rx.url.clone()], quick(5)).unwrap();
    notifier.notify(&event(AlertStatus::Firing, 0, 0));
    notifier.flush().await;
    assert_eq!(rx.requests().len(), 3);
    assert_eq!(
        notifier.stats(),
        DeliveryStats {
            delivered: 1,
            failed: 0,
            attempts: 3
        }
    );
}

#[tokio::test]
async fn a_429_is_retried() {
    let rx = receiver(&[429]).await;
    let notifier = WebhookNotifier::new(vec![rx.url.clone()], quick(5)).unwrap();
    notifier.notify(&event(AlertStatus::Firing, 0, 0));
    notifier.flush().await;
    assert_eq!(rx.requests().len(), 2);
    assert_eq!(notifier.stats().delivered, 1);
}

#[tokio::test]
async fn a_400_is_not_retried() {
    let rx = receiver(&[400]).await;
    let notifier = WebhookNotifier::new(vec![rx.url.clone()], quick(5)).unwrap();
    notifier.notify(&event(AlertStatus::Firing, 0, 0));
    notifier.flush().await;
    assert_eq!(rx.requests().len(), 1);
    assert_eq!(
        notifier.stats(),
        DeliveryStats {
            delivered: 0,
            failed: 1,
            attempts: 1
        }
    );
}

#[tokio::test]
async fn an_unreachable_url_gives_up_after_the_attempts() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let notifier = WebhookNotifier::new(vec![url], quick(4)).unwrap();
    notifier.notify(&event(AlertStatus::Firing, 0, 0));
    notifier.flush().await;
    assert_eq!(
        notifier.stats(),
        DeliveryStats {
            delivered: 0,
            failed: 1,
            attempts: 4
        }
    );
}

#[tokio::test]
async fn every_url_gets_the_event_even_when_another_fails() {
    let (good, bad) = (receiver(&[]).await, receiver(&[500, 500, 500]).await);
    let urls = vec![bad.url.clone(), good.url.clone()];
    let notifier = WebhookNotifier::new(urls, quick(3)).unwrap();
    notifier.notify(&event(AlertStatus::Firing, 0, 0));
    notifier.flush().await;
    assert_eq!(good.requests().len(), 1);
    assert_eq!(bad.requests().len(), 3);
    let stats = notifier.stats();
    assert_eq!((stats.delivered, stats.failed, stats.attempts), (1, 1, 4));
}

#[tokio::test]
async fn bad_urls_and_zero_attempts_are_refused_at_start() {
    for url in ["not a url", "ftp://example.com/hook", "file:///tmp/x"] {
        let err = WebhookNotifier::new(vec![url.into()], RetryPolicy::default()).unwrap_err();
        assert!(
            matches!(&err, WebhookError::InvalidUrl { url: u, .. } if u == url),
            "{url}: {err}"
        );
    }
    let err = WebhookNotifier::new(Vec::new(), quick(0)).unwrap_err();
    assert!(matches!(err, WebhookError::ZeroAttempts));
}

#[test]
fn without_webhooks_no_runtime_is_needed_and_notify_only_logs() {
    let notifier = WebhookNotifier::new(Vec::new(), RetryPolicy::default()).unwrap();
    notifier.notify(&event(AlertStatus::Firing, 0, 0));
    assert_eq!(notifier.stats(), DeliveryStats::default());
    let err = WebhookNotifier::new(vec!["http://127.0.0.1:9/".into()], RetryPolicy::default())
        .unwrap_err();
    assert!(matches!(err, WebhookError::NoRuntime));
}

#[test]
fn retry_delays_double_with_jitter_up_to_the_max() {
    let policy = RetryPolicy {
        first_delay: Duration::from_millis(500),
        max_delay: Duration::from_secs(30),
        ..RetryPolicy::default()
    };
    for (attempt, base_ms) in [(1, 500), (2, 1000), (3, 2000), (7, 30_000), (40, 30_000)] {
        let base = Duration::from_millis(base_ms);
        for _ in 0..20 {
            let delay = policy.delay(attempt);
            assert!(
                delay >= base / 2 && delay <= base,
                "attempt {attempt}: {delay:?} outside [{:?}, {base:?}]",
                base / 2
            );
        }
    }
}

/// A pool as the supervisor would report it; healthy unless changed.
fn pool() -> PoolSnapshot {
    PoolSnapshot {
        pool: "transcode".into(),
        replicas: 2,
        max_replicas: 4,
        ..PoolSnapshot::default()
    }
}

/// (status, rule) of every request the receiver saw.
fn seen(rx: &Receiver) -> Vec<(String, String)> {
    rx.requests()
        .iter()
        .map(|b| {
            let field = |v: &Value| v.as_str().unwrap().to_owned();
            (field(&b["status"]), field(&b["alert"]["rule"]))
        })
        .collect()
}

#[tokio::test]
async fn issue_9_crash_loop_and_old_job_alerts_fire_and_resolve_at_a_real_receiver() {
    let rx = receiver(&[]).await;
    let notifier = WebhookNotifier::new(vec![rx.url.clone()], quick(3)).unwrap();
    let mut engine = AlertEngine::new(AlertPolicy::default());
    let mut observe = |at_s: u64, snap: &PoolSnapshot| {
        for event in engine.observe(Duration::from_secs(at_s), std::slice::from_ref(snap)) {
            notifier.notify(&event);
        }
    };
    let mut snap = pool();
    observe(0, &snap);
    // The pool crash-loops: crash-loop and crash-rate alerts fire.
    snap.crashes_total = 6;
    snap.crash_loop = true;
    observe(30, &snap);
    // The supervisor stops the loop; the oldest job is now 5m30s old.
    snap.crash_loop = false;
    snap.oldest_available_age = Some(Duration::from_secs(330));
    observe(60, &snap);
    // The backlog drains; crashes leave the 10-minute window; everything resolves.
    snap.oldest_available_age = Some(Duration::from_secs(5));
    for at in (90..=900).step_by(30) {
        observe(at, &snap);
    }
    notifier.flush().await;

    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(s, r)| (s.to_string(), r.to_string()))
            .collect()
    };
    assert_eq!(
        seen(&rx),
        pairs(&[
            ("firing", "crash_rate"),
            ("firing", "crash_loop"),
            ("firing", "processing_delay"),
            ("resolved", "crash_loop"),
            ("resolved", "processing_delay"),
            ("resolved", "crash_rate"),
        ])
    );
    assert!(engine.firing().is_empty());
}
