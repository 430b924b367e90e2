//! Integration tests of the HTTP API against a real server on a loopback port.

mod assets;
mod bad_requests;
mod fleet;
mod flow;
mod openapi;

use serde_json::{Value, json};

/// A JSON request and its answer.
pub(crate) async fn call(
    method: &str,
    url: String,
    body: Option<Value>,
    token: Option<&str>,
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut req = client.request(method.parse().unwrap(), url);
    if let Some(body) = body {
        req = req.json(&body);
    }
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(json!({ "raw": text })),
    )
}

/// Enqueues a job of `kind` into `queue` (no payload) and checks it was accepted.
pub(crate) async fn enqueue(url: &str, queue: &str, kind: &str) {
    let job = json!({"queue": queue, "kind": kind});
    let (status, answer) = call("POST", format!("{url}/v1/jobs"), Some(job), None).await;
    assert_eq!(status, 202, "{answer}");
}
