//! The fleet routes: the scaling signal autoscalers read and the supervisors' reports.

use flotilla_api::auth::Auth;
use flotilla_api::testing::spawn_with;
use flotilla_server::{Credential, Role};
use serde_json::json;

use crate::call;

fn credential(secret: &str, role: Role) -> Credential {
    Credential {
        secret: secret.into(),
        role,
        name: format!("{role:?}").to_lowercase(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scaling_signal_counts_a_queues_work_for_worker_tokens() {
    let tokens = vec![
        credential("w", Role::Worker),
        credential("p", Role::Producer),
        credential("a", Role::Admin),
    ];
    let server = spawn_with(&["q-a"], Auth::new(tokens)).await;
    let url = &server.url;
    for n in 0..3 {
        let job = json!({"queue": "q-a", "kind": "k", "payload": {"n": n}});
        let (status, _) = call("POST", format!("{url}/v1/jobs"), Some(job), Some("p")).await;
        assert_eq!(status, 202);
    }
    let later = json!({"queue": "q-a", "kind": "k", "run_at": "2999-01-01T00:00:00Z"});
    call("POST", format!("{url}/v1/jobs"), Some(later), Some("p")).await;
    let reg = json!({"host": "t", "pid": 1, "queues": ["q-a"], "concurrency": 1, "version": "t"});
    let (_, reg) = call("POST", format!("{url}/v1/workers"), Some(reg), Some("w")).await;
    let poll =
        json!({"worker_id": reg["worker_id"], "queues": ["q-a"], "max_jobs": 1, "wait_ms": 0});
    call("POST", format!("{url}/v1/poll"), Some(poll), Some("w")).await;

    let (status, signal) = call(
        "GET",
        format!("{url}/v1/queues/q-a/scaling"),
        None,
        Some("w"),
    )
    .await;
    assert_eq!(status, 200, "{signal}");
    assert_eq!(
        (
            &signal["available"],
            &signal["running"],
            &signal["scheduled"],
            &signal["backlog"]
        ),
        (&json!(2), &json!(1), &json!(1), &json!(3))
    );
    assert!(signal["oldest_available_age_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(signal["paused"], json!(false));

    let (status, _) = call(
        "GET",
        format!("{url}/v1/queues/q-a/scaling"),
        None,
        Some("p"),
    )
    .await;
    assert_eq!(status, 403, "producers do not scale fleets");
    let (status, err) = call(
        "GET",
        format!("{url}/v1/queues/nope/scaling"),
        None,
        Some("w"),
    )
    .await;
    assert_eq!(
        (status, &err["error"]["code"]),
        (404, &json!("queue_not_found"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisors_report_is_shown_to_admins() {
    let tokens = vec![credential("w", Role::Worker), credential("a", Role::Admin)];
    let server = spawn_with(&["q-a"], Auth::new(tokens)).await;
    let url = &server.url;
    let report = json!({
        "name": "edge-1", "host": "edge", "pid": 42, "started_at": "2026-11-25T00:00:00Z",
        "pools": [{
            "name": "transcode", "queues": ["q-a"], "concurrency": 1, "min_replicas": 1,
            "max_replicas": 3, "desired_replicas": 2, "state": "running", "depth": 14,
            "crashes": 0, "restarts": 0,
            "processes": [{"id": "transcode-1", "pid": 7, "state": "running", "uptime_ms": 5,
                           "restarts": 0, "current_jobs": [9]}],
            "decisions": [{"at": "2026-11-25T00:01:00Z", "action": "scale_out", "from": 1, "to": 2,
                           "reason": "depth 14 > 10 for 3m"}]
        }],
        "alerts": []
    });
    let (status, body) = call(
        "PUT",
        format!("{url}/v1/fleet/edge-1"),
        Some(report.clone()),
        Some("w"),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let (status, _) = call(
        "PUT",
        format!("{url}/v1/fleet/other"),
        Some(report),
        Some("w"),
    )
    .await;
    assert_eq!(
        status, 400,
        "the path and the report must name the same supervisor"
    );

    let (status, _) = call("GET", format!("{url}/v1/fleet"), None, Some("w")).await;
    assert_eq!(status, 403);
    let (status, fleets) = call("GET", format!("{url}/v1/fleet"), None, Some("a")).await;
    assert_eq!(status, 200);
    let fleet = &fleets[0];
    assert_eq!(fleet["stale"], json!(false));
    assert_eq!(
        fleet["report"]["pools"][0]["processes"][0]["current_jobs"],
        json!([9])
    );
    assert_eq!(
        fleet["report"]["pools"][0]["decisions"][0]["reason"],
        json!("depth 14 > 10 for 3m")
    );
}
