use flotilla_distribute::StaticSecrets;

use crate::support::{FtpServer, closed_port, distributor, files_under, source, target};

fn ftp_target(url: &str) -> flotilla_distribute::TargetConfig {
    target(&format!(
        "type = \"ftp\"\nurl = \"{url}\"\npassword = \"env:FTP_PASSWORD\"\nallow_private = true"
    ))
}

fn password(value: &str) -> StaticSecrets {
    StaticSecrets::new([("FTP_PASSWORD", value)])
}

#[tokio::test]
async fn ftp_upload_lands_with_the_right_bytes() {
    let server = FtpServer::start();
    let distributor = distributor(
        "legacy",
        ftp_target(&server.url("127.0.0.1", "incoming")),
        password(FtpServer::PASSWORD),
    );
    // Contains every byte value, including \n and \r, which an ASCII-mode transfer would mangle.
    let src = source(2 * 1024 * 1024 + 3, "renditions/720p/clip.mp4");

    let receipt = distributor.deliver("legacy", &src.delivery).await.unwrap();
    assert_eq!(receipt.verified, ["size"]);
    assert_eq!(
        receipt.location,
        format!(
            "ftp://127.0.0.1:{}/incoming/renditions/720p/clip.mp4",
            server.port
        )
    );
    assert!(
        !receipt.location.contains(FtpServer::PASSWORD)
            && !receipt.location.contains(FtpServer::USER)
    );
    let landed = server.root.path().join("incoming/renditions/720p/clip.mp4");
    assert_eq!(std::fs::read(&landed).unwrap(), src.bytes);
    assert_eq!(
        files_under(server.root.path()),
        ["incoming/renditions/720p/clip.mp4"],
        "no temp files left"
    );

    // Delivering again replaces the file.
    let other = source(17, "renditions/720p/clip.mp4");
    distributor
        .deliver("legacy", &other.delivery)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&landed).unwrap(), other.bytes);
}

#[tokio::test]
async fn a_wrong_password_is_rejected_without_showing_it() {
    let server = FtpServer::start();
    let distributor = distributor(
        "legacy",
        ftp_target(&server.url("127.0.0.1", "")),
        password("wrong-pw-5c1f"),
    );
    let err = distributor
        .deliver("legacy", &source(10, "a.bin").delivery)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "rejected", "{err}");
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("530"), "{err}");
    assert!(!format!("{err} {err:?}").contains("wrong-pw-5c1f"));
    assert!(files_under(server.root.path()).is_empty());
}

#[tokio::test]
async fn a_closed_ftp_port_is_unavailable() {
    let url = format!("ftp://user@127.0.0.1:{}/", closed_port());
    let distributor = distributor("legacy", ftp_target(&url), password("x"));
    let err = distributor
        .deliver("legacy", &source(10, "a.bin").delivery)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "unavailable", "{err}");
    assert!(err.is_retryable());
}
