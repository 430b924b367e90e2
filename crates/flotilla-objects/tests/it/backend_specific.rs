use flotilla_objects::testing::{MotoServer, free_loopback_addr};
use flotilla_objects::{ObjectKey, Objects, OpenOptions};

#[test]
fn open_creates_local_directories_from_urls_and_paths() {
    let dir = tempfile::tempdir().unwrap();
    let by_url = dir.path().join("by-url/objects");
    let objects = Objects::open(&format!("file://{}", by_url.display())).unwrap();
    assert!(by_url.is_dir());
    assert!(objects.description().contains("by-url/objects"));
    let by_path = dir.path().join("by-path");
    Objects::open(by_path.to_str().unwrap()).unwrap();
    assert!(by_path.is_dir());
}

#[test]
fn description_and_debug_never_show_credentials() {
    let options = OpenOptions {
        credentials: Some(flotilla_objects::S3Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI-secret".into(),
            session_token: Some("session-token-secret".into()),
        }),
        ..Default::default()
    };
    let shown = format!("{options:?}");
    assert!(
        !shown.contains("wJalrXUtnFEMI") && !shown.contains("session-token-secret"),
        "{shown}"
    );
    let objects = Objects::open_with(
        "s3://bucket-x/p?endpoint=https://s3.example.com&region=eu-west-3",
        options,
    )
    .unwrap();
    let described = format!("{} {objects:?}", objects.description());
    assert!(
        described.contains("s3://bucket-x/p") && described.contains("s3.example.com"),
        "{described}"
    );
    assert!(
        !described.contains("wJalrXUtnFEMI") && !described.contains("AKIDEXAMPLE"),
        "{described}"
    );
}

#[tokio::test]
async fn unreachable_s3_is_unavailable_and_retryable() {
    let closed = free_loopback_addr().unwrap();
    let options = OpenOptions {
        credentials: Some(MotoServer::credentials()),
        max_retries: 0,
        ..Default::default()
    };
    let url = format!("s3://bucket-y?endpoint=http://{closed}&allow_http=true");
    let objects = Objects::open_with(&url, options).unwrap();
    let k = ObjectKey::parse("uploads/a/b").unwrap();
    let err = objects.head(&k).await.unwrap_err();
    assert_eq!(err.code(), "unavailable", "{err}");
    assert!(err.is_retryable());
    let body = futures::stream::iter([Ok(bytes::Bytes::from_static(b"x"))]);
    let err = objects.put_stream(&k, body, None).await.unwrap_err();
    assert_eq!(err.code(), "unavailable", "{err}");
}

#[tokio::test]
async fn missing_bucket_is_refused_not_retried() {
    let server = MotoServer::shared();
    let options = OpenOptions {
        credentials: Some(MotoServer::credentials()),
        ..Default::default()
    };
    let objects =
        Objects::open_with(&server.store_url("no-such-bucket-here", ""), options).unwrap();
    let body = futures::stream::iter([Ok(bytes::Bytes::from_static(b"x"))]);
    let err = objects
        .put_stream(&ObjectKey::parse("a/b").unwrap(), body, None)
        .await
        .unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert!(matches!(err.code(), "not_found" | "rejected"), "{err}");
}
