//! The Python example (standard library only) against a real server: a producer enqueues,
//! a worker long-polls and reports; a division by zero is a non-retryable failure.

use std::path::PathBuf;
use std::process::Command;

use crate::support::{ServerProcess, get};

fn python(script: &str, args: &[&str]) -> String {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/python");
    let out = Command::new("python3")
        .arg(dir.join(script))
        .args(args)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_producer_and_worker() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path());
    let ids: Vec<String> = python("producer.py", &["--url", &server.url, "--count", "6"])
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(ids.len(), 6);
    let report = python(
        "worker.py",
        &[
            "--url",
            &server.url,
            "--concurrency",
            "3",
            "--exit-after",
            "6",
        ],
    );
    assert_eq!(report.lines().count(), 6, "{report}");

    let mut states = Vec::new();
    for id in &ids {
        let job = get(format!("{}/v1/jobs/{id}", server.url)).await;
        states.push(job["state"].as_str().unwrap().to_owned());
        if job["payload"]["b"] == 0 {
            assert_eq!(job["state"], "dead");
            assert!(
                job["errors"][0]["error"]
                    .as_str()
                    .unwrap()
                    .starts_with("cannot divide")
            );
        } else {
            assert_eq!(job["state"], "succeeded", "{job}");
            assert_eq!(
                job["result"]["quotient"].as_f64(),
                Some(100.0 / job["payload"]["b"].as_f64().unwrap())
            );
        }
    }
    assert_eq!(states.iter().filter(|s| *s == "succeeded").count(), 5);
}
