use flotilla_distribute::StaticSecrets;

use crate::support::{distributor, files_under, source, target};

#[tokio::test]
async fn dir_delivery_copies_verifies_and_renames_into_place() {
    let out = tempfile::tempdir().unwrap();
    let config = target(&format!(
        "type = \"dir\"\npath = \"{}\"",
        out.path().join("made").display()
    ));
    let distributor = distributor("archive", config, StaticSecrets::default());
    let src = source(3 * 1024 * 1024 + 5, "renditions/720p/clip.mp4");

    let receipt = distributor.deliver("archive", &src.delivery).await.unwrap();
    let landed = out.path().join("made/renditions/720p/clip.mp4");
    assert_eq!(receipt.location, landed.display().to_string());
    assert_eq!(receipt.bytes, src.delivery.size);
    assert_eq!(receipt.verified, ["size", "sha256"]);
    assert_eq!(std::fs::read(&landed).unwrap(), src.bytes);
    assert_eq!(
        files_under(out.path()),
        ["made/renditions/720p/clip.mp4"],
        "no temp files left"
    );

    // A second delivery of different bytes under the same name replaces the file.
    let other = source(10, "renditions/720p/clip.mp4");
    distributor
        .deliver("archive", &other.delivery)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&landed).unwrap(), other.bytes);
}

#[tokio::test]
async fn dir_delivery_with_a_wrong_checksum_leaves_nothing() {
    let out = tempfile::tempdir().unwrap();
    let config = target(&format!(
        "type = \"dir\"\npath = \"{}\"",
        out.path().display()
    ));
    let distributor = distributor("archive", config, StaticSecrets::default());
    let mut src = source(1000, "a.bin");
    src.delivery.sha256 = "ab".repeat(32);
    let err = distributor
        .deliver("archive", &src.delivery)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "integrity_mismatch", "{err}");
    assert!(!err.is_retryable());
    assert!(
        files_under(out.path()).is_empty(),
        "{:?}",
        files_under(out.path())
    );
}

#[tokio::test]
async fn bad_deliveries_are_refused_before_any_write() {
    let out = tempfile::tempdir().unwrap();
    let config = target(&format!(
        "type = \"dir\"\npath = \"{}\"",
        out.path().display()
    ));
    let distributor = distributor("archive", config, StaticSecrets::default());
    let src = source(100, "ok.bin");

    let mut escaping = src.delivery.clone();
    escaping.name = "../outside.bin".into();
    assert_eq!(
        distributor
            .deliver("archive", &escaping)
            .await
            .unwrap_err()
            .code(),
        "invalid_delivery"
    );

    let mut wrong_size = src.delivery.clone();
    wrong_size.size = 99;
    assert_eq!(
        distributor
            .deliver("archive", &wrong_size)
            .await
            .unwrap_err()
            .code(),
        "integrity_mismatch"
    );

    let mut missing = src.delivery.clone();
    missing.file = out.path().join("does-not-exist");
    assert_eq!(
        distributor
            .deliver("archive", &missing)
            .await
            .unwrap_err()
            .code(),
        "io"
    );

    let mut bad_sha = src.delivery.clone();
    bad_sha.sha256 = "not-hex".into();
    assert_eq!(
        distributor
            .deliver("archive", &bad_sha)
            .await
            .unwrap_err()
            .code(),
        "invalid_delivery"
    );

    let err = distributor
        .deliver("nowhere", &src.delivery)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "unknown_target");
    assert!(!err.is_retryable());
    assert!(files_under(out.path()).is_empty());
    assert!(!out.path().parent().unwrap().join("outside.bin").exists());
}
