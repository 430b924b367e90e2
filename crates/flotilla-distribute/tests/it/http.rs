use base64::Engine;
use flotilla_distribute::{Distributor, StaticSecrets};

use crate::support::{Mode, Receiver, TOKEN, closed_port, distributor, source, target};

fn http_target(url: &str, method: &str) -> flotilla_distribute::TargetConfig {
    target(&format!(
        "type = \"http\"\nurl = \"{url}\"\nmethod = \"{method}\"\nallow_private = true\n\
         headers = {{ Authorization = \"env:RECEIVER_TOKEN\", X-Team = \"media\" }}"
    ))
}

fn token() -> StaticSecrets {
    StaticSecrets::new([("RECEIVER_TOKEN", TOKEN)])
}

async fn setup(mode: Mode, unavailable_first: u32) -> (Receiver, Distributor) {
    let receiver = Receiver::start(mode, unavailable_first).await;
    let distributor = distributor(
        "cdn",
        http_target(&receiver.url("127.0.0.1"), "PUT"),
        token(),
    );
    (receiver, distributor)
}

#[tokio::test]
async fn put_streams_the_file_with_length_type_and_checksums() {
    let (receiver, distributor) = setup(Mode::Store, 0).await;
    let src = source(3 * 1024 * 1024 + 1, "renditions/clip one.mp4");

    let receipt = distributor.deliver("cdn", &src.delivery).await.unwrap();
    assert_eq!(receipt.verified, ["size", "sha256"]);
    assert_eq!(receipt.bytes, src.delivery.size);
    assert_eq!(
        receipt.location,
        format!(
            "http://127.0.0.1:{}/upload/renditions/clip%20one.mp4",
            receiver.addr.port()
        )
    );
    assert_eq!(
        std::fs::read(receiver.dir.path().join("renditions/clip one.mp4")).unwrap(),
        src.bytes
    );

    let seen = receiver.seen();
    assert_eq!(seen.len(), 1);
    let headers = &seen[0].headers;
    let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(seen[0].method, "PUT");
    assert_eq!(seen[0].name, "renditions/clip one.mp4");
    assert_eq!(
        header("content-length"),
        Some(src.delivery.size.to_string())
    );
    assert_eq!(
        header("transfer-encoding"),
        None,
        "sent with a length, not chunked"
    );
    assert_eq!(header("content-type").as_deref(), Some("video/mp4"));
    assert_eq!(
        header("x-checksum-sha256"),
        Some(src.delivery.sha256.clone())
    );
    let raw = hex::decode(&src.delivery.sha256).unwrap();
    let expected_digest = format!(
        "sha-256={}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    );
    assert_eq!(header("digest"), Some(expected_digest));
    assert_eq!(header("x-team").as_deref(), Some("media"));
    assert_eq!(
        header("x-flotilla-name").as_deref(),
        Some("renditions/clip%20one.mp4")
    );
}

#[tokio::test]
async fn post_works_and_a_silent_receiver_verifies_size_only() {
    let receiver = Receiver::start(Mode::StoreSilently, 0).await;
    let distributor = distributor(
        "cdn",
        http_target(&receiver.url("127.0.0.1"), "POST"),
        token(),
    );
    let src = source(1000, "poster.jpg");
    let receipt = distributor.deliver("cdn", &src.delivery).await.unwrap();
    assert_eq!(receipt.verified, ["size"]);
    assert_eq!(receiver.seen()[0].method, "POST");
    assert_eq!(
        std::fs::read(receiver.dir.path().join("poster.jpg")).unwrap(),
        src.bytes
    );
}

#[tokio::test]
async fn two_503s_are_retryable_then_the_third_attempt_succeeds() {
    let (receiver, distributor) = setup(Mode::Store, 2).await;
    let src = source(200_000, "a.webp");
    for attempt in 1..=2 {
        let err = distributor.deliver("cdn", &src.delivery).await.unwrap_err();
        assert_eq!(err.code(), "unavailable", "attempt {attempt}: {err}");
        assert!(err.is_retryable());
        assert!(err.to_string().contains("503"), "{err}");
    }
    let receipt = distributor.deliver("cdn", &src.delivery).await.unwrap();
    assert_eq!(receipt.verified, ["size", "sha256"]);
    let statuses: Vec<u16> = receiver.seen().iter().map(|s| s.status).collect();
    assert_eq!(statuses, [503, 503, 200]);
}

#[tokio::test]
async fn a_400_is_a_non_retryable_rejection_quoting_the_answer() {
    let (_receiver, distributor) = setup(Mode::BadRequest, 0).await;
    let src = source(100, "a.webp");
    let err = distributor.deliver("cdn", &src.delivery).await.unwrap_err();
    assert_eq!(err.code(), "rejected");
    assert!(!err.is_retryable());
    let message = err.to_string();
    assert!(
        message.contains("400") && message.contains("refusing upload"),
        "{message}"
    );
}

#[tokio::test]
async fn a_wrong_checksum_report_is_an_integrity_mismatch() {
    let (_receiver, distributor) = setup(Mode::WrongChecksum, 0).await;
    let src = source(5000, "a.webp");
    let err = distributor.deliver("cdn", &src.delivery).await.unwrap_err();
    assert_eq!(err.code(), "integrity_mismatch", "{err}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let (receiver, distributor) = setup(Mode::RedirectToMetadata, 0).await;
    let err = distributor
        .deliver("cdn", &source(100, "a.bin").delivery)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "rejected", "{err}");
    assert!(
        err.to_string().contains("redirects are not followed"),
        "{err}"
    );
    assert_eq!(receiver.seen().len(), 1);
}

#[tokio::test]
async fn a_wrong_token_is_rejected() {
    let receiver = Receiver::start(Mode::Store, 0).await;
    let secrets = StaticSecrets::new([("RECEIVER_TOKEN", "Bearer wrong-token")]);
    let distributor = distributor(
        "cdn",
        http_target(&receiver.url("127.0.0.1"), "PUT"),
        secrets,
    );
    let err = distributor
        .deliver("cdn", &source(10, "a.bin").delivery)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "rejected");
    assert!(err.to_string().contains("401"), "{err}");
}

#[tokio::test]
async fn a_closed_port_is_unavailable() {
    let url = format!("http://127.0.0.1:{}/upload/{{name}}", closed_port());
    let distributor = distributor("cdn", http_target(&url, "PUT"), token());
    let err = distributor
        .deliver("cdn", &source(10, "a.bin").delivery)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "unavailable", "{err}");
    assert!(err.is_retryable());
}
