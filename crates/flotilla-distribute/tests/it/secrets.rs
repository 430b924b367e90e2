use std::collections::BTreeMap;

use flotilla_distribute::{Distributor, StaticSecrets};

use crate::support::{Mode, Receiver, TOKEN, distributor, source, target};

const TOKEN_VALUE_PART: &str = "rcv-7f3a9c1e-secret-token";

fn config(url: &str) -> flotilla_distribute::TargetConfig {
    target(&format!(
        "type = \"http\"\nurl = \"{url}\"\nallow_private = true\nheaders = {{ Authorization = \"env:RECEIVER_TOKEN\" }}"
    ))
}

#[tokio::test]
async fn debug_of_the_config_and_distributor_shows_references_not_values() {
    let config = config("https://cdn.example.com/{name}");
    let shown = format!("{config:?}");
    assert!(shown.contains("env:RECEIVER_TOKEN"), "{shown}");
    let distributor = Distributor::with_secrets(
        BTreeMap::from([("cdn".to_owned(), config)]),
        std::sync::Arc::new(StaticSecrets::new([("RECEIVER_TOKEN", TOKEN)])),
    )
    .unwrap();
    let shown = format!("{distributor:?}");
    assert!(
        shown.contains("env:RECEIVER_TOKEN") && !shown.contains(TOKEN_VALUE_PART),
        "{shown}"
    );
}

#[tokio::test]
async fn a_receiver_echoing_the_token_does_not_leak_it_into_the_error() {
    let receiver = Receiver::start(Mode::BadRequest, 0).await;
    let distributor = distributor(
        "cdn",
        config(&receiver.url("127.0.0.1")),
        StaticSecrets::new([("RECEIVER_TOKEN", TOKEN)]),
    );
    let err = distributor
        .deliver("cdn", &source(10, "a.bin").delivery)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "rejected");
    let text = format!("{err} {err:?}");
    assert!(text.contains("[redacted]"), "the echo was scrubbed: {text}");
    assert!(!text.contains(TOKEN_VALUE_PART), "{text}");
    // The receiver really did get (and echo) the token: the request was authorised.
    assert_eq!(receiver.seen()[0].headers["authorization"], TOKEN);
}

#[tokio::test]
async fn a_missing_secret_names_the_variable_and_sends_nothing() {
    let receiver = Receiver::start(Mode::Store, 0).await;
    let distributor = distributor(
        "cdn",
        config(&receiver.url("127.0.0.1")),
        StaticSecrets::default(),
    );
    let err = distributor
        .deliver("cdn", &source(10, "a.bin").delivery)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "missing_secret");
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("RECEIVER_TOKEN"), "{err}");
    assert!(receiver.seen().is_empty());
}
