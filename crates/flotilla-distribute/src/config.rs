//! Target configuration, read from TOML or JSON and validated once, before any delivery.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use flotilla_objects::{ObjectKey, S3Location};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::Url;

use crate::DeliveryError;
use crate::secrets::SecretRef;

/// Placeholder in an HTTP target's URL replaced by the (percent-encoded) delivery name.
pub const NAME_PLACEHOLDER: &str = "{name}";
/// Characters percent-encoded in a name segment: everything but unreserved characters (RFC 3986).
const SEGMENT_ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// Default FTP control port.
pub const FTP_DEFAULT_PORT: u16 = 21;
/// FTP user when the URL names none.
pub const FTP_ANONYMOUS_USER: &str = "anonymous";

/// Where deliveries to one named target go. Tagged by `type`; unknown fields are refused.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum TargetConfig {
    /// A local (or mounted) directory: `{type="dir", path="/srv/out"}`.
    Dir(DirTarget),
    /// An S3-compatible bucket: `{type="s3", url="s3://bucket/prefix?endpoint=…"}`.
    S3(S3Target),
    /// An HTTP endpoint: `{type="http", url="https://host/upload/{name}", method="PUT", headers={…}}`.
    Http(HttpTarget),
    /// An FTP server: `{type="ftp", url="ftp://user@host:21/dir", password="env:FTP_PASSWORD"}`.
    Ftp(FtpTarget),
}

/// A directory target.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirTarget {
    /// Absolute directory path; created if missing.
    pub path: PathBuf,
}

/// An S3-compatible bucket target.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Target {
    /// `s3://bucket[/prefix]?endpoint=…&region=…[&allow_http=true]`.
    pub url: String,
    /// Access key id; defaults to `env:AWS_ACCESS_KEY_ID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<SecretRef>,
    /// Secret access key; defaults to `env:AWS_SECRET_ACCESS_KEY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<SecretRef>,
    /// Allow the endpoint to resolve to loopback/private addresses.
    #[serde(default)]
    pub allow_private: bool,
}

/// An HTTP endpoint target.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTarget {
    /// `https://host/path/{name}`; `{name}` is replaced by the delivery name. No credentials in the URL.
    pub url: String,
    /// `PUT` (default) or `POST`.
    #[serde(default)]
    pub method: HttpMethod,
    /// Extra request headers; values are literals or `env:VAR` references. Headers that carry credentials
    /// (`Authorization`, cookies, names with token/key/secret/password/auth) must be references.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, HeaderValueConfig>,
    /// Allow the host to resolve to loopback/private addresses.
    #[serde(default)]
    pub allow_private: bool,
}

/// An FTP server target.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FtpTarget {
    /// `ftp://user@host[:port]/dir`; no password in the URL.
    pub url: String,
    /// Password reference (`env:FTP_PASSWORD`); anonymous login when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretRef>,
    /// Allow the host to resolve to loopback/private addresses.
    #[serde(default)]
    pub allow_private: bool,
}

/// HTTP method used to send the file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    /// `PUT` (the default).
    #[default]
    Put,
    /// `POST`.
    Post,
}

/// A header value: a literal, or a secret reference resolved at delivery time.
#[derive(Clone, PartialEq, Eq)]
pub enum HeaderValueConfig {
    /// Sent as written.
    Literal(String),
    /// Looked up for each delivery.
    Secret(SecretRef),
}

impl fmt::Debug for HeaderValueConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Literal(value) => write!(f, "{value:?}"),
            Self::Secret(reference) => write!(f, "{reference}"),
        }
    }
}

impl Serialize for HeaderValueConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Literal(value) => serializer.serialize_str(value),
            Self::Secret(reference) => reference.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for HeaderValueConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.starts_with(SecretRef::PREFIX) {
            SecretRef::parse(&text)
                .map(Self::Secret)
                .map_err(serde::de::Error::custom)
        } else {
            Ok(Self::Literal(text))
        }
    }
}

/// Header names whose values must be secret references.
fn is_credential_header(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [
        "auth",
        "token",
        "key",
        "secret",
        "password",
        "cookie",
        "signature",
    ]
    .iter()
    .any(|word| lower.contains(word))
}

/// Headers the delivery sets itself.
const RESERVED_HEADERS: [&str; 6] = [
    "content-length",
    "host",
    "transfer-encoding",
    "digest",
    "x-checksum-sha256",
    "connection",
];

impl TargetConfig {
    /// Whether the target may reach loopback/private addresses.
    pub fn allow_private(&self) -> bool {
        match self {
            Self::Dir(_) => false,
            Self::S3(target) => target.allow_private,
            Self::Http(target) => target.allow_private,
            Self::Ftp(target) => target.allow_private,
        }
    }

    /// Checks everything that can be checked without the network; errors name the target and the field.
    pub fn validate(&self, name: &str) -> Result<(), DeliveryError> {
        let invalid = |detail: String| DeliveryError::InvalidConfig {
            target: name.to_owned(),
            detail,
        };
        check_target_name(name).map_err(invalid)?;
        match self {
            Self::Dir(target) if !target.path.is_absolute() => {
                Err(invalid("`path` must be an absolute directory".into()))
            }
            Self::Dir(_) => Ok(()),
            Self::S3(target) => S3Location::parse(&target.url)
                .map(drop)
                .map_err(|e| invalid(format!("`url`: {e}"))),
            Self::Http(target) => target.validate().map_err(invalid),
            Self::Ftp(target) => target.endpoint().map(drop).map_err(invalid),
        }
    }
}

fn check_target_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else {
        Err("target names are 1-64 characters of [A-Za-z0-9._-]".into())
    }
}

impl HttpTarget {
    fn validate(&self) -> Result<(), String> {
        self.url_for("check")?;
        for (header, value) in &self.headers {
            reqwest::header::HeaderName::from_bytes(header.as_bytes())
                .map_err(|_| format!("`headers`: {header:?} is not a valid header name"))?;
            if RESERVED_HEADERS.contains(&header.to_ascii_lowercase().as_str()) {
                return Err(format!("`headers`: {header} is set by the delivery itself"));
            }
            if let HeaderValueConfig::Literal(literal) = value {
                if is_credential_header(header) {
                    return Err(format!(
                        "`headers`: {header} carries credentials; use a reference like env:VAR"
                    ));
                }
                reqwest::header::HeaderValue::from_str(literal).map_err(|_| {
                    format!("`headers`: the value of {header} is not a valid header value")
                })?;
            }
        }
        Ok(())
    }

    /// The request URL for a delivery name: `{name}` replaced by the name, each segment percent-encoded.
    pub fn url_for(&self, name: &str) -> Result<Url, String> {
        let encoded: Vec<String> = name
            .split('/')
            .map(|segment| utf8_percent_encode(segment, SEGMENT_ENCODE_SET).to_string())
            .collect();
        let url = Url::parse(&self.url.replace(NAME_PLACEHOLDER, &encoded.join("/")))
            .map_err(|e| format!("`url`: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("`url` must be http:// or https://".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("`url` must not contain credentials; use `headers` with env:VAR".into());
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("`url` has no host".into());
        }
        Ok(url)
    }
}

/// Where an FTP target lives, parsed from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FtpEndpoint {
    /// Host name or IP address.
    pub host: String,
    /// Control port.
    pub port: u16,
    /// Login user.
    pub user: String,
    /// Directory segments below the login directory.
    pub dir: Vec<String>,
}

impl FtpTarget {
    /// Parses and checks the URL: `ftp://` only, no password, a directory that cannot climb out.
    pub fn endpoint(&self) -> Result<FtpEndpoint, String> {
        let url = Url::parse(&self.url).map_err(|e| format!("`url`: {e}"))?;
        if url.scheme() != "ftp" {
            return Err("`url` must be ftp://".into());
        }
        if url.password().is_some() {
            return Err("`url` must not contain a password; use `password = \"env:VAR\"`".into());
        }
        let host = match url.host() {
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            Some(host) => host.to_string(),
            None => return Err("`url` has no host".into()),
        };
        let user = match url.username() {
            "" => FTP_ANONYMOUS_USER.to_owned(),
            user => percent_decode(user)?,
        };
        let path = percent_decode(url.path().trim_matches('/'))?;
        let dir = if path.is_empty() {
            Vec::new()
        } else {
            ObjectKey::parse(&path).map_err(|e| format!("`url` directory: {e}"))?;
            path.split('/').map(str::to_owned).collect()
        };
        Ok(FtpEndpoint {
            host,
            port: url.port().unwrap_or(FTP_DEFAULT_PORT),
            user,
            dir,
        })
    }
}

fn percent_decode(text: &str) -> Result<String, String> {
    percent_decode_str(text)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| "`url` is not valid UTF-8 once decoded".to_owned())
}
