use flotilla_distribute::StaticSecrets;
use flotilla_objects::testing::MotoServer;
use flotilla_objects::{ObjectKey, Objects, OpenOptions};

use crate::support::{distributor, source, target};

fn moto_secrets(key_var: &str, secret_var: &str) -> StaticSecrets {
    let credentials = MotoServer::credentials();
    StaticSecrets::new([
        (key_var, credentials.access_key_id.as_str()),
        (secret_var, credentials.secret_access_key.as_str()),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_delivery_lands_in_the_bucket_and_is_verified() {
    let server = MotoServer::shared();
    let bucket = server.create_bucket().await.unwrap();
    let url = server.store_url(&bucket, "published");
    let config = target(&format!(
        "type = \"s3\"\nurl = \"{url}\"\nallow_private = true"
    ));
    let distributor = distributor(
        "bucket",
        config,
        moto_secrets("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
    );
    // Larger than one multipart part, so the multipart path is exercised.
    let src = source(9 * 1024 * 1024 + 7, "renditions/720p.mp4");

    let receipt = distributor.deliver("bucket", &src.delivery).await.unwrap();
    assert_eq!(
        receipt.location,
        format!("s3://{bucket}/published/renditions/720p.mp4")
    );
    assert_eq!(receipt.verified, ["size", "sha256", "etag"]);

    let objects = Objects::open_with(
        &url,
        OpenOptions {
            credentials: Some(MotoServer::credentials()),
            ..Default::default()
        },
    )
    .unwrap();
    let check = tempfile::tempdir().unwrap();
    let fetched = objects
        .get_to_file(
            &ObjectKey::parse("renditions/720p.mp4").unwrap(),
            &check.path().join("x"),
        )
        .await
        .unwrap();
    assert_eq!(
        fetched.sha256.as_deref(),
        Some(src.delivery.sha256.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_credentials_come_from_the_configured_references() {
    let server = MotoServer::shared();
    let bucket = server.create_bucket().await.unwrap();
    let config = target(&format!(
        "type = \"s3\"\nurl = \"{}\"\nallow_private = true\naccess_key_id = \"env:MEDIA_KEY\"\nsecret_access_key = \"env:MEDIA_SECRET\"",
        server.store_url(&bucket, "")
    ));
    let src = source(100, "a.txt");

    let with_refs = distributor(
        "bucket",
        config.clone(),
        moto_secrets("MEDIA_KEY", "MEDIA_SECRET"),
    );
    with_refs.deliver("bucket", &src.delivery).await.unwrap();

    let without = distributor(
        "bucket",
        config,
        moto_secrets("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
    );
    let err = without.deliver("bucket", &src.delivery).await.unwrap_err();
    assert_eq!(err.code(), "missing_secret");
    assert!(err.to_string().contains("MEDIA_KEY"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_is_rejected_and_a_dead_endpoint_unavailable() {
    let server = MotoServer::shared();
    let secrets = || moto_secrets("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY");
    let src = source(100, "a.txt");

    let config = target(&format!(
        "type = \"s3\"\nurl = \"{}\"\nallow_private = true",
        server.store_url("never-created", "")
    ));
    let err = distributor("bucket", config, secrets())
        .deliver("bucket", &src.delivery)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "rejected", "{err}");

    let url = format!(
        "s3://b-x?endpoint=http://127.0.0.1:{}&allow_http=true",
        crate::support::closed_port()
    );
    let config = target(&format!(
        "type = \"s3\"\nurl = \"{url}\"\nallow_private = true"
    ));
    let err = distributor("bucket", config, secrets())
        .deliver("bucket", &src.delivery)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "unavailable", "{err}");
    assert!(err.is_retryable());
}
