//! The checked-in `docs/openapi.json` is the document the server serves. Regenerate it
//! with `FLOTILLA_BLESS=1 cargo test -p flotilla-api --test it openapi`.

use std::path::PathBuf;

#[test]
fn checked_in_openapi_matches_the_code() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    let generated = flotilla_api::openapi::json() + "\n";
    if std::env::var_os("FLOTILLA_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "docs/openapi.json is out of date; run FLOTILLA_BLESS=1 cargo test -p flotilla-api --test it openapi"
    );
}

#[tokio::test]
async fn the_server_serves_the_document() {
    let server = flotilla_api::testing::spawn(&["default"]).await;
    let (status, doc) =
        crate::call("GET", format!("{}/v1/openapi.json", server.url), None, None).await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/v1/poll"]["post"].is_object());
    // What is served is the checked-in document.
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    let checked_in: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(
        doc == checked_in,
        "the served document differs from docs/openapi.json"
    );
}
