use flotilla_distribute::{StaticSecrets, TargetConfig};
use flotilla_objects::testing::MotoServer;

use crate::support::{FtpServer, Mode, Receiver, TOKEN, distributor, files_under, source, target};

async fn assert_private(config: TargetConfig, secrets: StaticSecrets) {
    let distributor = distributor("t", config, secrets);
    let err = distributor
        .deliver("t", &source(100, "a.bin").delivery)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "private_address", "{err}");
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("allow_private"), "{err}");
}

fn http(url: &str) -> TargetConfig {
    target(&format!(
        "type = \"http\"\nurl = \"{url}\"\nheaders = {{ Authorization = \"env:RECEIVER_TOKEN\" }}"
    ))
}

#[tokio::test]
async fn http_to_loopback_is_refused_by_literal_and_by_name() {
    let receiver = Receiver::start(Mode::Store, 0).await;
    for host in ["127.0.0.1", "localhost"] {
        assert_private(
            http(&receiver.url(host)),
            StaticSecrets::new([("RECEIVER_TOKEN", TOKEN)]),
        )
        .await;
    }
    assert!(receiver.seen().is_empty(), "nothing may reach the receiver");
}

#[tokio::test]
async fn http_to_the_metadata_address_and_private_ranges_is_refused() {
    for host in [
        "169.254.169.254",
        "10.0.0.7",
        "192.168.1.20",
        "[::1]",
        "[fd00::1]",
        "0.0.0.0",
    ] {
        let config = http(&format!("http://{host}/latest/meta-data/{{name}}"));
        assert_private(config, StaticSecrets::new([("RECEIVER_TOKEN", TOKEN)])).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_on_loopback_is_refused_by_literal_and_by_name() {
    let server = MotoServer::shared();
    let bucket = server.create_bucket().await.unwrap();
    let credentials = MotoServer::credentials();
    let secrets = || {
        StaticSecrets::new([
            ("AWS_ACCESS_KEY_ID", credentials.access_key_id.as_str()),
            (
                "AWS_SECRET_ACCESS_KEY",
                credentials.secret_access_key.as_str(),
            ),
        ])
    };
    let by_ip = server.store_url(&bucket, "");
    let by_name = by_ip.replace("127.0.0.1", "localhost");
    for url in [by_ip, by_name] {
        assert_private(
            target(&format!("type = \"s3\"\nurl = \"{url}\"")),
            secrets(),
        )
        .await;
    }
}

#[tokio::test]
async fn ftp_on_loopback_is_refused_by_literal_and_by_name() {
    let server = FtpServer::start();
    for host in ["127.0.0.1", "localhost"] {
        let config = target(&format!(
            "type = \"ftp\"\nurl = \"{}\"\npassword = \"env:P\"",
            server.url(host, "in")
        ));
        assert_private(config, StaticSecrets::new([("P", FtpServer::PASSWORD)])).await;
    }
    assert!(files_under(server.root.path()).is_empty());
}
