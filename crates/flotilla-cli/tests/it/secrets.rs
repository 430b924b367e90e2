//! Tokens never reach the log, even at the most verbose level, whether they are right,
//! wrong, or sent to a route the role may not use.

use crate::support::{ServerProcess, WorkerProcess, config, eventually, flotilla};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_appears_in_any_log_line() {
    let admin = "admin-token-that-must-stay-secret-1";
    let producer = "producer-token-that-must-stay-secret";
    let wrong = "wrong-token-that-must-stay-secret-2";
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[[tokens]]\nrole = \"admin\"\ntoken = \"{admin}\"\n\n[[tokens]]\nrole = \"producer\"\ntoken = \"{producer}\"\n"
    );
    let config = config(dir.path(), &toml);
    let server = ServerProcess::start_verbose(dir.path(), &["--config", &config]);
    let client = reqwest::Client::new();
    let job = serde_json::json!({"queue": "default", "kind": "k"});
    for token in [admin, producer, wrong] {
        client
            .post(format!("{}/v1/jobs", server.url))
            .bearer_auth(token)
            .json(&job)
            .send()
            .await
            .unwrap();
        client
            .get(format!("{}/v1/queues", server.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
    }
    let log = server.log.lock().unwrap().join("\n");
    assert!(
        log.contains("uri=/v1/jobs") || log.contains("/v1/jobs"),
        "the requests were traced"
    );
    for secret in [admin, producer, wrong] {
        assert!(!log.contains(secret), "a token appears in the log");
    }
}

/// A command run by `flotilla worker --exec` does not inherit the worker's token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_commands_do_not_get_the_worker_token() {
    let admin = "admin-token-for-the-exec-test-0001";
    let worker = "worker-token-for-the-exec-test-0002";
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[[tokens]]\nrole = \"admin\"\ntoken = \"{admin}\"\n\n[[tokens]]\nrole = \"worker\"\ntoken = \"{worker}\"\n\n[[queues]]\nname = \"q\"\n"
    );
    let config = config(dir.path(), &toml);
    let server = ServerProcess::start_with(dir.path(), &["--config", &config], "http");
    let _worker = WorkerProcess::start_env(
        &server.url,
        &[
            "--queues",
            "q",
            "--exec",
            "echo \"[${FLOTILLA_TOKEN:-none}]\"",
        ],
        &[("FLOTILLA_TOKEN", worker)],
    );
    let client = reqwest::Client::new();
    let job: serde_json::Value = client
        .post(format!("{}/v1/jobs", server.url))
        .bearer_auth(admin)
        .json(&serde_json::json!({"queue": "q", "kind": "k"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = format!("{}/v1/jobs/{}", server.url, job["id"]);
    let fetch = || async {
        client
            .get(&url)
            .bearer_auth(admin)
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    };
    eventually("the job to succeed", || async {
        fetch().await["state"] == "succeeded"
    })
    .await;
    assert_eq!(fetch().await["result"], "[none]");
}

/// The worker's own log, at the most verbose level, holds neither its token (given in
/// `FLOTILLA_TOKEN`) while it runs a job and drains, nor a wrong one (given with
/// `--token`) that the server refuses; nor does a CLI command's error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_appears_in_the_worker_log() {
    let admin = "admin-token-for-the-worker-log-0001";
    let worker = "worker-token-for-the-worker-log-0002";
    let wrong = "wrong-token-for-the-worker-log-0003";
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[[tokens]]\nrole = \"admin\"\ntoken = \"{admin}\"\n\n[[tokens]]\nrole = \"worker\"\ntoken = \"{worker}\"\n\n[[queues]]\nname = \"q\"\n"
    );
    let config = config(dir.path(), &toml);
    let server = ServerProcess::start_with(dir.path(), &["--config", &config], "http");
    let url = &server.url;
    let args = ["--queues", "q", "--exec", "echo done"];
    let mut good = WorkerProcess::start_logging(url, &args, &[("FLOTILLA_TOKEN", worker)], "trace");
    let refused = WorkerProcess::start_logging(
        url,
        &[&args[..], &["--token", wrong]].concat(),
        &[],
        "trace",
    );

    let enqueue = ["enqueue", "q", "k", "--token", admin, "--json"];
    let id = flotilla(url, &enqueue).await.json()["id"].to_string();
    eventually("the job to succeed", || async {
        let shown = flotilla(url, &["jobs", "get", &id, "--token", admin, "--json"]).await;
        shown.json()["state"] == "succeeded"
    })
    .await;
    refused.wait_for_line("the wrong token to be refused", |l| {
        l.contains("register refused") && l.contains("unauthorized")
    });
    let cli = flotilla(url, &["jobs", "get", &id, "--token", wrong]).await;
    assert!(cli.failure().contains("unauthorized"), "{cli:?}");
    good.sigterm();
    assert!(good.wait_exit().success());

    let good_log = good.log().join("\n");
    assert!(
        good_log.contains("job succeeded") && good_log.contains("worker stopped"),
        "the job and the drain were logged"
    );
    let logs = [good_log, refused.log().join("\n"), cli.stderr, cli.stdout];
    for log in &logs {
        for secret in [admin, worker, wrong] {
            assert!(!log.contains(secret), "a token appears in a log");
        }
    }
}
