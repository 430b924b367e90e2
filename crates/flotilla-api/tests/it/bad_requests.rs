//! Hostile and mistaken requests: each gets a 4xx with its documented code, never a 5xx.

use flotilla_api::Auth;
use flotilla_api::testing::{TestServer, spawn, spawn_with};
use flotilla_server::{Credential, Role};
use serde_json::{Value, json};

use crate::call;

struct Setup {
    server: TestServer,
    worker: String,
    succeeded: i64,
    running: i64,
    token: i64,
}

/// A server with one succeeded and one running job, and a registered worker.
async fn setup() -> Setup {
    let server = spawn(&["default"]).await;
    let url = &server.url;
    let register =
        json!({"host": "h", "pid": 1, "queues": ["default"], "concurrency": 2, "version": "t"});
    let (_, reg) = call("POST", format!("{url}/v1/workers"), Some(register), None).await;
    let worker = reg["worker_id"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        crate::enqueue(url, "default", "k").await;
    }
    let poll = json!({"worker_id": worker, "queues": ["default"], "max_jobs": 2});
    let (_, jobs) = call("POST", format!("{url}/v1/poll"), Some(poll), None).await;
    let first = &jobs["jobs"][0];
    let second = &jobs["jobs"][1];
    let done = json!({"token": first["lease"]["token"]});
    call(
        "POST",
        format!("{url}/v1/jobs/{}/complete", first["id"]),
        Some(done),
        None,
    )
    .await;
    Setup {
        worker,
        succeeded: first["id"].as_i64().unwrap(),
        running: second["id"].as_i64().unwrap(),
        token: second["lease"]["token"].as_i64().unwrap(),
        server,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_request_gets_its_code() {
    let s = setup().await;
    let big = "x".repeat(300 * 1024);
    let job = |extra: Value| {
        let mut base = json!({"queue": "default", "kind": "k"});
        base.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        base
    };
    let (w, ok, run, tok) = (&s.worker, s.succeeded, s.running, s.token);
    let cases: Vec<(&str, String, Option<Value>, u16, &str)> = vec![
        (
            "POST",
            "/v1/jobs".into(),
            Some(json!({"queue": "default"})),
            400,
            "malformed_request",
        ),
        (
            "POST",
            "/v1/jobs".into(),
            Some(job(json!({"priority": "high"}))),
            400,
            "malformed_request",
        ),
        (
            "POST",
            "/v1/jobs".into(),
            Some(job(json!({"prio": 1}))),
            400,
            "malformed_request",
        ),
        (
            "POST",
            "/v1/jobs".into(),
            Some(json!([1, 2])),
            400,
            "malformed_request",
        ),
        (
            "POST",
            "/v1/jobs".into(),
            Some(job(json!({"queue": ""}))),
            400,
            "invalid_queue_name",
        ),
        (
            "POST",
            "/v1/jobs".into(),
            Some(job(json!({"queue": "a b"}))),
            400,
            "invalid_queue_name",
        ),
        (
            "POST",
            "/v1/jobs".into(),
            Some(job(json!({"queue": "nope"}))),
            404,
            "queue_not_found",
        ),
        (
            "POST",
            "/v1/jobs".into(),
            Some(job(json!({"kind": ""}))),
            400,
            "invalid_kind",
        ),
        (
            "POST",
            "/v1/jobs".into(),
            Some(job(json!({"priority": -1}))),
            400,
            "invalid_priority",
        ),
        (
            "POST",
            "/v1/jobs".into(),
            Some(job(json!({"priority": 10}))),
            400,
            "invalid_priority",
        ),
        (
            "POST",
            "/v1/jobs".into(),
            Some(job(json!({"payload": {"blob": big}}))),
            413,
            "payload_too_large",
        ),
        (
            "POST",
            "/v1/jobs".into(),
            Some(job(
                json!({"delay_ms": 5, "run_at": "2030-01-01T00:00:00Z"}),
            )),
            400,
            "invalid_argument",
        ),
        (
            "POST",
            "/v1/jobs".into(),
            Some(job(json!({"max_attempts": 0}))),
            400,
            "invalid_argument",
        ),
        (
            "POST",
            "/v1/jobs".into(),
            Some(job(json!({"retry": {"policy": "sometimes"}}))),
            400,
            "malformed_request",
        ),
        (
            "POST",
            "/v1/jobs:batch".into(),
            Some(json!({"jobs": [job(json!({})), job(json!({"priority": 11}))]})),
            400,
            "invalid_priority",
        ),
        ("GET", "/v1/jobs/999999".into(), None, 404, "job_not_found"),
        ("GET", "/v1/jobs/abc".into(), None, 400, "malformed_request"),
        (
            "GET",
            "/v1/jobs?state=bogus".into(),
            None,
            400,
            "malformed_request",
        ),
        (
            "GET",
            "/v1/jobs?limit=-3".into(),
            None,
            400,
            "malformed_request",
        ),
        (
            "POST",
            "/v1/jobs/999999/cancel".into(),
            None,
            404,
            "job_not_found",
        ),
        (
            "POST",
            format!("/v1/jobs/{ok}/cancel"),
            None,
            409,
            "invalid_transition",
        ),
        (
            "POST",
            format!("/v1/jobs/{run}/retry"),
            None,
            409,
            "invalid_transition",
        ),
        (
            "POST",
            format!("/v1/jobs/{run}/heartbeat"),
            Some(json!({"token": tok + 1000})),
            409,
            "lease_mismatch",
        ),
        (
            "POST",
            format!("/v1/jobs/{run}/complete"),
            Some(json!({"token": tok - 1})),
            409,
            "lease_mismatch",
        ),
        (
            "POST",
            format!("/v1/jobs/{ok}/complete"),
            Some(json!({"token": tok})),
            409,
            "lease_mismatch",
        ),
        (
            "POST",
            "/v1/jobs/999999/fail".into(),
            Some(json!({"token": 1, "error": "x"})),
            404,
            "job_not_found",
        ),
        (
            "POST",
            format!("/v1/jobs/{run}/fail"),
            Some(json!({"token": tok})),
            400,
            "malformed_request",
        ),
        (
            "POST",
            "/v1/poll".into(),
            Some(json!({"worker_id": "ghost", "queues": ["default"], "max_jobs": 1})),
            404,
            "worker_not_found",
        ),
        (
            "POST",
            "/v1/poll".into(),
            Some(json!({"worker_id": w, "queues": [], "max_jobs": 1})),
            400,
            "invalid_argument",
        ),
        (
            "POST",
            "/v1/poll".into(),
            Some(json!({"worker_id": w, "queues": ["default"], "max_jobs": 5000})),
            400,
            "invalid_argument",
        ),
        (
            "POST",
            "/v1/poll".into(),
            Some(json!({"worker_id": w, "queues": ["nope"], "max_jobs": 1})),
            404,
            "queue_not_found",
        ),
        (
            "POST",
            "/v1/workers".into(),
            Some(
                json!({"host": "h", "pid": 1, "queues": ["default"], "concurrency": 0, "version": "t"}),
            ),
            400,
            "invalid_argument",
        ),
        (
            "POST",
            "/v1/workers".into(),
            Some(
                json!({"host": "h", "pid": 1, "queues": ["nope"], "concurrency": 1, "version": "t"}),
            ),
            404,
            "queue_not_found",
        ),
        (
            "POST",
            "/v1/workers/ghost/status".into(),
            Some(json!({"health": "healthy", "running": [], "succeeded": 0, "failed": 0})),
            404,
            "worker_not_found",
        ),
        (
            "POST",
            "/v1/queues/nope/pause".into(),
            None,
            404,
            "queue_not_found",
        ),
        ("GET", "/v1/nope".into(), None, 404, "not_found"),
        ("DELETE", "/v1/jobs".into(), None, 405, "method_not_allowed"),
    ];
    assert!(cases.len() >= 25);
    for (method, path, body, status, code) in cases {
        let (got, answer) = call(
            method,
            format!("{}{path}", s.server.url),
            body.clone(),
            None,
        )
        .await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{method} {path} {body:?} → {answer}"
        );
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    // Nothing of the refused batch was inserted, and the running job is untouched.
    let (_, page) = call("GET", format!("{}/v1/jobs", s.server.url), None, None).await;
    assert_eq!(page["jobs"].as_array().unwrap().len(), 2);
    let (_, job) = call("GET", format!("{}/v1/jobs/{run}", s.server.url), None, None).await;
    assert_eq!(job["state"], "running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_untyped_bodies_are_refused() {
    let s = setup().await;
    // A connection the server answered early (413 before reading the body) is not reused.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let huge = vec![b'x'; 17 * 1024 * 1024];
    let resp = client
        .post(format!("{}/v1/jobs", s.server.url))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "body_too_large");
    let json = Some("application/json");
    for (content_type, body, what) in [
        (None, r#"{"queue":"default","kind":"k"}"#, "no content-type"),
        (json, "{", "truncated JSON"),
        (
            json,
            r#"{"queue":"default","kind":"k",}"#,
            "a trailing comma",
        ),
        (json, "queue=default&kind=k", "a form body"),
        (json, "", "an empty body"),
    ] {
        let mut req = client.post(format!("{}/v1/jobs", s.server.url)).body(body);
        if let Some(content_type) = content_type {
            req = req.header("content-type", content_type);
        }
        assert_malformed(req.send().await.unwrap(), what).await;
    }
    // Nothing of it was enqueued: the setup's two jobs are all there is.
    let (_, page) = call("GET", format!("{}/v1/jobs", s.server.url), None, None).await;
    assert_eq!(page["jobs"].as_array().unwrap().len(), 2);
}

/// A 400 with the code `malformed_request` and a message saying what is wrong.
async fn assert_malformed(resp: reqwest::Response, what: &str) {
    assert_eq!(resp.status().as_u16(), 400, "{what}");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "malformed_request", "{what}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "{what}: no message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_are_enforced() {
    let tokens = vec![
        credential("producer-secret-0123456789", Role::Producer, "p"),
        credential("worker-secret-0123456789ab", Role::Worker, "w"),
        credential("admin-secret-0123456789abc", Role::Admin, "a"),
    ];
    let server = spawn_with(&["default"], Auth::new(tokens)).await;
    let url = &server.url;
    let job = Some(json!({"queue": "default", "kind": "k"}));
    let (producer, worker, admin) = (
        Some("producer-secret-0123456789"),
        Some("worker-secret-0123456789ab"),
        Some("admin-secret-0123456789abc"),
    );
    let cases = [
        (
            "POST",
            "/v1/jobs",
            job.clone(),
            None,
            401,
            Some("unauthorized"),
        ),
        (
            "POST",
            "/v1/jobs",
            job.clone(),
            Some("wrong-token-0123456789abc"),
            401,
            Some("unauthorized"),
        ),
        ("POST", "/v1/jobs", job.clone(), producer, 202, None),
        ("POST", "/v1/jobs", job.clone(), admin, 202, None),
        (
            "POST",
            "/v1/jobs",
            job.clone(),
            worker,
            403,
            Some("forbidden"),
        ),
        (
            "POST",
            "/v1/poll",
            Some(json!({"worker_id": "w", "queues": ["default"], "max_jobs": 1})),
            producer,
            403,
            Some("forbidden"),
        ),
        ("GET", "/v1/queues", None, worker, 403, Some("forbidden")),
        ("GET", "/v1/workers", None, worker, 403, Some("forbidden")),
        ("GET", "/v1/queues", None, admin, 200, None),
        ("GET", "/metrics", None, producer, 403, Some("forbidden")),
        ("GET", "/healthz", None, None, 200, None),
    ];
    for (method, path, body, token, status, code) in cases {
        let (got, answer) = call(method, format!("{url}{path}"), body, token).await;
        assert_eq!(got, status, "{method} {path} as {token:?}: {answer}");
        assert_eq!(answer["error"]["code"].as_str(), code, "{method} {path}");
    }
}

fn credential(secret: &str, role: Role, name: &str) -> Credential {
    Credential {
        secret: secret.into(),
        role,
        name: name.into(),
    }
}

/// A producer sees only the jobs it enqueued: another producer's job is `job_not_found`
/// (read, cancel, retry) and absent from its lists; it may not forge an owner tag. An
/// admin sees everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_see_only_their_own_jobs() {
    let (alice, bob, admin) = (
        "alice-secret-0123456789",
        "bob-secret-0123456789ab",
        "admin-secret-0123456789abc",
    );
    let tokens = vec![
        credential(alice, Role::Producer, "alice"),
        credential(bob, Role::Producer, "bob"),
        credential(admin, Role::Admin, "root"),
    ];
    let server = spawn_with(&["default"], Auth::new(tokens)).await;
    let url = &server.url;
    let job = json!({"queue": "default", "kind": "k", "tags": ["blue"]});
    let (status, mine) = call(
        "POST",
        format!("{url}/v1/jobs"),
        Some(job.clone()),
        Some(alice),
    )
    .await;
    assert_eq!(status, 202, "{mine}");
    let (status, theirs) = call("POST", format!("{url}/v1/jobs"), Some(job), Some(bob)).await;
    assert_eq!(status, 202, "{theirs}");
    let (mine, theirs) = (mine["id"].as_i64().unwrap(), theirs["id"].as_i64().unwrap());

    let (status, got) = call("GET", format!("{url}/v1/jobs/{mine}"), None, Some(alice)).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["tags"], json!(["blue", "owner:alice"]));
    for (method, path) in [
        ("GET", format!("/v1/jobs/{theirs}")),
        ("POST", format!("/v1/jobs/{theirs}/cancel")),
        ("POST", format!("/v1/jobs/{theirs}/retry")),
    ] {
        let (status, answer) = call(method, format!("{url}{path}"), None, Some(alice)).await;
        assert_eq!(status, 404, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["code"], "job_not_found", "{method} {path}");
    }
    let ids = |page: &Value| -> Vec<i64> {
        page["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_i64().unwrap())
            .collect()
    };
    let (_, page) = call("GET", format!("{url}/v1/jobs"), None, Some(alice)).await;
    assert_eq!(ids(&page), vec![mine]);
    let (_, page) = call("GET", format!("{url}/v1/jobs?tag=blue"), None, Some(bob)).await;
    assert_eq!(ids(&page), vec![theirs]);
    let (_, page) = call("GET", format!("{url}/v1/jobs"), None, Some(admin)).await;
    assert_eq!(ids(&page), vec![theirs, mine]);
    let (status, _) = call("GET", format!("{url}/v1/jobs/{theirs}"), None, Some(admin)).await;
    assert_eq!(status, 200);

    let forged = json!({"queue": "default", "kind": "k", "tags": ["owner:bob"]});
    let (status, answer) = call("POST", format!("{url}/v1/jobs"), Some(forged), Some(alice)).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_argument");
}
