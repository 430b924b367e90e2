use std::collections::BTreeMap;

use flotilla_distribute::{Distributor, HeaderValueConfig, HttpMethod, TargetConfig};

#[derive(serde::Deserialize)]
struct File {
    targets: BTreeMap<String, TargetConfig>,
}

const ALL_TYPES: &str = r#"
[targets.archive]
type = "dir"
path = "/srv/out"

[targets.bucket]
type = "s3"
url = "s3://media/out?endpoint=https://s3.example.com&region=eu-west-1"
access_key_id = "env:MEDIA_KEY_ID"
secret_access_key = "env:MEDIA_SECRET"

[targets.cdn]
type = "http"
url = "https://cdn.example.com/upload/{name}"
method = "POST"
headers = { Authorization = "env:RECEIVER_TOKEN", X-Team = "media" }

[targets.legacy]
type = "ftp"
url = "ftp://user@ftp.example.com:2121/incoming"
password = "env:FTP_PASSWORD"
allow_private = true
"#;

#[test]
fn every_target_type_parses_from_toml() {
    let file: File = toml::from_str(ALL_TYPES).unwrap();
    let t = &file.targets;
    assert!(matches!(&t["archive"], TargetConfig::Dir(d) if d.path.to_str() == Some("/srv/out")));
    let TargetConfig::Http(http) = &t["cdn"] else {
        panic!("cdn is not http")
    };
    assert_eq!(http.method, HttpMethod::Post);
    assert!(
        matches!(&http.headers["Authorization"], HeaderValueConfig::Secret(r) if r.variable() == "RECEIVER_TOKEN")
    );
    assert_eq!(
        http.headers["X-Team"],
        HeaderValueConfig::Literal("media".into())
    );
    assert!(!http.allow_private);
    let TargetConfig::Ftp(ftp) = &t["legacy"] else {
        panic!("legacy is not ftp")
    };
    assert!(ftp.allow_private);
    let endpoint = ftp.endpoint().unwrap();
    assert_eq!(
        (
            endpoint.host.as_str(),
            endpoint.port,
            endpoint.user.as_str()
        ),
        ("ftp.example.com", 2121, "user")
    );
    assert_eq!(endpoint.dir, ["incoming"]);
    assert!(Distributor::new(file.targets).is_ok());
}

#[test]
fn json_works_too_and_method_defaults_to_put() {
    let config: TargetConfig =
        serde_json::from_str(r#"{"type":"http","url":"https://h.example/in/{name}"}"#).unwrap();
    let TargetConfig::Http(http) = config else {
        panic!("not http")
    };
    assert_eq!(http.method, HttpMethod::Put);
}

#[test]
fn unknown_fields_and_types_are_refused_with_their_names() {
    for (text, expected) in [
        (r#"{"type":"dir","pth":"/x"}"#, "pth"),
        (
            r#"{"type":"dir","path":"/x","allow_private":true}"#,
            "allow_private",
        ),
        (r#"{"type":"s3","url":"s3://b","region":"x"}"#, "region"),
        (r#"{"type":"gopher","url":"gopher://x"}"#, "gopher"),
        (
            r#"{"type":"http","url":"https://x/{name}","method":"PATCH"}"#,
            "PATCH",
        ),
        (
            r#"{"type":"ftp","url":"ftp://h/d","password":"plain-text"}"#,
            "env:VAR",
        ),
    ] {
        let err = serde_json::from_str::<TargetConfig>(text)
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{text}: {err}");
        assert!(!err.contains("plain-text"), "{err}");
    }
}

#[test]
fn validation_names_the_target_and_field() {
    for (text, field) in [
        (r#"{"type":"dir","path":"relative/out"}"#, "path"),
        (
            r#"{"type":"http","url":"https://user:pw@h.example/{name}"}"#,
            "url",
        ),
        (r#"{"type":"http","url":"ftp://h.example/{name}"}"#, "url"),
        (
            r#"{"type":"http","url":"https://h.example/{name}","headers":{"Authorization":"Bearer literal"}}"#,
            "headers",
        ),
        (
            r#"{"type":"http","url":"https://h.example/{name}","headers":{"Content-Length":"1"}}"#,
            "headers",
        ),
        (r#"{"type":"ftp","url":"ftp://u:pw@h.example/d"}"#, "url"),
        (
            r#"{"type":"ftp","url":"ftp://h.example/a%2F..%2Fb"}"#,
            "url",
        ),
        (
            r#"{"type":"s3","url":"s3://b?endpoint=http://h:9000"}"#,
            "url",
        ),
    ] {
        let config: TargetConfig = serde_json::from_str(text).unwrap();
        let err = Distributor::new(BTreeMap::from([("t1".to_owned(), config)])).unwrap_err();
        assert_eq!(err.code(), "invalid_config", "{text}");
        assert!(!err.is_retryable());
        let message = err.to_string();
        assert!(
            message.contains("t1") && message.contains(field),
            "{text}: {message}"
        );
        assert!(
            !message.contains("Bearer literal") && !message.contains(":pw@"),
            "{message}"
        );
    }
}

#[test]
fn target_names_are_checked() {
    let config: TargetConfig = serde_json::from_str(r#"{"type":"dir","path":"/x"}"#).unwrap();
    let err = Distributor::new(BTreeMap::from([("bad name!".to_owned(), config)])).unwrap_err();
    assert_eq!(err.code(), "invalid_config");
}
