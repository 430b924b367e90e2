//! With `[tls]` configured the server speaks HTTPS (rustls) and nothing else.

use crate::support::ServerProcess;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let issued =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, issued.cert.pem()).unwrap();
    std::fs::write(&key, issued.signing_key.serialize_pem()).unwrap();
    let config = dir.path().join("flotilla.toml");
    std::fs::write(
        &config,
        format!("[tls]\ncert = {:?}\nkey = {:?}\n", cert, key),
    )
    .unwrap();
    let server =
        ServerProcess::start_with(dir.path(), &["--config", config.to_str().unwrap()], "https");

    let root = reqwest::Certificate::from_pem(issued.cert.pem().as_bytes()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(root)
        .build()
        .unwrap();
    let resp = client
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);

    let plain = server.url.replace("https://", "http://");
    assert!(
        reqwest::get(format!("{plain}/healthz")).await.is_err(),
        "plain HTTP must not be served"
    );
}
