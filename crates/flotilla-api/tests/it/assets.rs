//! Assets over HTTP: a streamed upload lands under `uploads/` and starts its pipeline; bad
//! uploads are refused and leave nothing; outputs reported by the steps are downloadable.

use flotilla_api::testing::spawn_media;
use serde_json::{Value, json};

use crate::call;

async fn upload(url: &str, query: &str, body: Vec<u8>) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{url}/v1/assets?{query}"))
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_is_stored_and_starts_its_pipeline() {
    let server = spawn_media(1024 * 1024).await;
    let url = &server.url;
    let bytes = b"not really a jpeg, the ingest step decides".to_vec();
    let (status, asset) = upload(url, "name=..%2F..%2Fcat.jpg&pipeline=image", bytes.clone()).await;
    assert_eq!(status, 202, "{asset}");
    assert_eq!(asset["status"], "uploaded");
    assert_eq!(asset["pipeline"], "image");
    assert_eq!(asset["size"], bytes.len());
    let key = asset["key"].as_str().unwrap();
    let segments: Vec<&str> = key.split('/').collect();
    assert_eq!(segments.len(), 3, "uploads/<id>/<name>: {key}");
    assert!(
        segments[0] == "uploads" && !segments.iter().any(|s| *s == ".." || *s == "."),
        "{key}"
    );
    let stored = std::fs::read(server.objects_dir.join(key)).unwrap();
    assert_eq!(stored, bytes);
    let steps: Vec<&str> = asset["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap())
        .collect();
    // `image`: ingest, then renditions, filters, detect, moderate, redact and deliver.
    assert_eq!(steps[0], "queued");
    assert_eq!(steps[1..], ["waiting"; 6]);

    // A worker takes the ingest step and reports an output; the output is downloadable.
    let reg =
        json!({"host": "t", "pid": 1, "queues": ["q-ingest"], "concurrency": 1, "version": "t"});
    let (_, reg) = call("POST", format!("{url}/v1/workers"), Some(reg), None).await;
    let poll = json!({"worker_id": reg["worker_id"], "queues": ["q-ingest"], "max_jobs": 1, "wait_ms": 1000});
    let (_, polled) = call("POST", format!("{url}/v1/poll"), Some(poll), None).await;
    let job = &polled["jobs"][0];
    assert_eq!(job["kind"], "media.ingest");
    assert_eq!(job["payload"]["input"]["key"], key);
    let out_key = format!("processed/{}/report.json", asset["id"]);
    let out_path = server.objects_dir.join(&out_key);
    std::fs::create_dir_all(out_path.parent().unwrap()).unwrap();
    std::fs::write(&out_path, b"{\"ok\":true}").unwrap();
    let result = json!({"outputs": [{"name": "report.json", "key": out_key, "size": 11}]});
    let done = json!({"token": job["lease"]["token"], "result": result});
    let (status, _) = call(
        "POST",
        format!("{url}/v1/jobs/{}/complete", job["id"]),
        Some(done),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (_, asset) = call(
        "GET",
        format!("{url}/v1/assets/{}", asset["id"]),
        None,
        None,
    )
    .await;
    assert_eq!(asset["status"], "processing", "{asset}");
    assert_eq!(asset["outputs"][0]["name"], "report.json");
    let resp = reqwest::get(format!(
        "{url}/v1/assets/{}/outputs/report.json",
        asset["id"]
    ))
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"{\"ok\":true}");
    let (status, missing) = call(
        "GET",
        format!("{url}/v1/assets/{}/outputs/nope.jpg", asset["id"]),
        None,
        None,
    )
    .await;
    assert_eq!(
        (status, missing["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (_, page) = call("GET", format!("{url}/v1/assets"), None, None).await;
    assert_eq!(page["assets"][0]["id"], asset["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_are_refused_and_leave_nothing() {
    let server = spawn_media(1000).await;
    let url = &server.url;
    let cases = [
        (
            "name=big.mp4&pipeline=video",
            vec![0u8; 5000],
            413,
            "body_too_large",
        ),
        (
            "name=a.jpg&pipeline=nope",
            vec![1, 2, 3],
            400,
            "invalid_argument",
        ),
        ("pipeline=image", vec![1, 2, 3], 400, "malformed_request"),
        (
            "name=a.jpg&params=%5B1%5D",
            vec![1, 2, 3],
            400,
            "invalid_argument",
        ),
        ("name=%20&pipeline=image", vec![1], 400, "invalid_argument"),
    ];
    for (query, body, status, code) in cases {
        let (got, answer) = upload(url, query, body).await;
        assert_eq!(got, status, "{query}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{query}");
    }
    assert_eq!(
        files_under(&server.objects_dir),
        Vec::<std::path::PathBuf>::new()
    );
    let (status, answer) = call("GET", format!("{url}/v1/assets/12345"), None, None).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (404, Some("run_not_found"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_are_stored_under_resources() {
    let server = spawn_media(1000).await;
    let client = reqwest::Client::new();
    let put = |name: &str, body: Vec<u8>| {
        client
            .put(format!("{}/v1/resources/{name}", server.url))
            .body(body)
            .send()
    };
    let resp = put("logo.png", b"png bytes".to_vec()).await.unwrap();
    assert_eq!(resp.status(), 200);
    let view: Value = resp.json().await.unwrap();
    assert_eq!(view["key"], "resources/logo.png");
    let stored = std::fs::read(server.objects_dir.join("resources/logo.png")).unwrap();
    assert_eq!(stored, b"png bytes");
    for (name, body, status) in [
        ("..%2Fescape.png", b"x".to_vec(), 400),
        ("big.mp4", vec![0u8; 5000], 413),
    ] {
        let resp = put(name, body).await.unwrap();
        assert_eq!(resp.status(), status, "{name}");
    }
    assert!(!server.objects_dir.join("escape.png").exists());
    assert!(!server.objects_dir.join("resources/big.mp4").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releasing_a_held_asset_records_it_and_runs_its_failed_step_again() {
    let server = spawn_media(1024 * 1024).await;
    let url = &server.url;
    let (_, asset) = upload(url, "name=a.jpg&pipeline=image", b"held".to_vec()).await;
    let id = asset["id"].as_i64().unwrap();
    let (status, body) = call("POST", format!("{url}/v1/assets/{id}/release"), None, None).await;
    assert_eq!(status, 400, "nothing failed yet: {body}");

    // A worker fails the first step for good, as ai.moderate does with a flagged asset.
    let reg =
        json!({"host": "t", "pid": 1, "queues": ["q-ingest"], "concurrency": 1, "version": "t"});
    let (_, reg) = call("POST", format!("{url}/v1/workers"), Some(reg), None).await;
    let poll = json!({"worker_id": reg["worker_id"], "queues": ["q-ingest"], "max_jobs": 1, "wait_ms": 1000});
    let (_, polled) = call("POST", format!("{url}/v1/poll"), Some(poll), None).await;
    let job = &polled["jobs"][0];
    let fail = json!({"token": job["lease"]["token"], "error": "flagged by moderation", "retryable": false});
    let (status, _) = call(
        "POST",
        format!("{url}/v1/jobs/{}/fail", job["id"]),
        Some(fail),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (_, held) = call("GET", format!("{url}/v1/assets/{id}"), None, None).await;
    assert_eq!(held["status"], "failed");

    let (status, released) =
        call("POST", format!("{url}/v1/assets/{id}/release"), None, None).await;
    assert_eq!(status, 200, "{released}");
    assert_ne!(released["status"], "failed", "{released}");
    assert_eq!(released["steps"][0]["state"], "queued");
    let upload_id = asset["key"].as_str().unwrap().split('/').nth(1).unwrap();
    let record = server
        .objects_dir
        .join(format!("processed/{upload_id}/moderation-release.json"));
    let record: Value = serde_json::from_slice(&std::fs::read(record).unwrap()).unwrap();
    assert!(record["released_at"].is_string(), "{record}");
}
