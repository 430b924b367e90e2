//! Parsing of store URLs: a local directory or `s3://bucket[/prefix]?endpoint=…&region=…&allow_http=…`.

use std::fmt;
use std::path::{Path, PathBuf};

use url::Url;

use crate::ObjectsError;

/// Region used when the URL names none (moto, MinIO and most S3-compatible services accept it).
pub const DEFAULT_REGION: &str = "us-east-1";

/// Where a store lives, parsed from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A local directory (absolute).
    Local(PathBuf),
    /// An S3-compatible bucket.
    S3(S3Location),
}

impl Location {
    /// Parses `file:///abs/dir`, a plain path, or an `s3://` URL. Credentials in the URL are refused.
    pub fn parse(url: &str) -> Result<Self, ObjectsError> {
        if let Some(rest) = url.strip_prefix("s3://") {
            return S3Location::parse_after_scheme(rest).map(Self::S3);
        }
        if url.starts_with("file:") {
            let parsed = Url::parse(url).map_err(|e| config_error(format!("bad file URL: {e}")))?;
            let path = parsed
                .to_file_path()
                .map_err(|()| config_error("a file URL needs an absolute local path".into()))?;
            return Ok(Self::Local(path));
        }
        if url.contains("://") {
            return Err(config_error(
                "store URL must be file://, s3:// or a plain directory path".into(),
            ));
        }
        if url.is_empty() {
            return Err(config_error("store URL is empty".into()));
        }
        let path = std::path::absolute(Path::new(url))
            .map_err(|e| config_error(format!("cannot make {url:?} absolute: {e}")))?;
        Ok(Self::Local(path))
    }
}

/// An S3-compatible bucket, optional key prefix and service endpoint.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Location {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix inside the bucket (no leading or trailing `/`), empty for the whole bucket.
    pub prefix: String,
    /// Service endpoint (`http://127.0.0.1:9000`); `None` means AWS itself.
    pub endpoint: Option<Url>,
    /// Signing region.
    pub region: String,
    /// Whether plain `http://` endpoints are allowed.
    pub allow_http: bool,
}

impl S3Location {
    /// Parses a full `s3://` URL.
    pub fn parse(url: &str) -> Result<Self, ObjectsError> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| config_error("S3 URL must start with s3://".into()))?;
        Self::parse_after_scheme(rest)
    }

    /// The host and port requests go to: the endpoint's, or AWS's regional host.
    pub fn service_host(&self) -> (String, u16) {
        match &self.endpoint {
            Some(endpoint) => (
                endpoint.host_str().unwrap_or_default().to_owned(),
                endpoint.port_or_known_default().unwrap_or(443),
            ),
            None => (format!("s3.{}.amazonaws.com", self.region), 443),
        }
    }

    fn parse_after_scheme(rest: &str) -> Result<Self, ObjectsError> {
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        if bucket.contains('@') {
            return Err(config_error(
                "S3 credentials never go in the URL; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into(),
            ));
        }
        check_bucket_name(bucket)?;
        let prefix = prefix.trim_matches('/').to_owned();
        if !prefix.is_empty() {
            crate::ObjectKey::parse(&prefix)
                .map_err(|e| config_error(format!("bad S3 key prefix: {e}")))?;
        }
        let mut location = Self {
            bucket: bucket.to_owned(),
            prefix,
            endpoint: None,
            region: DEFAULT_REGION.to_owned(),
            allow_http: false,
        };
        location.apply_query(query)?;
        location.check_endpoint_scheme()?;
        Ok(location)
    }

    fn apply_query(&mut self, query: &str) -> Result<(), ObjectsError> {
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match name.as_ref() {
                "endpoint" => self.endpoint = Some(parse_endpoint(&value)?),
                "region" if !value.is_empty() => self.region = value.into_owned(),
                "allow_http" => {
                    self.allow_http = value
                        .parse()
                        .map_err(|_| config_error("allow_http must be true or false".into()))?;
                }
                other => {
                    return Err(config_error(format!(
                        "unknown S3 URL parameter {other:?} (expected endpoint, region, allow_http)"
                    )));
                }
            }
        }
        Ok(())
    }

    fn check_endpoint_scheme(&self) -> Result<(), ObjectsError> {
        match &self.endpoint {
            Some(endpoint) if endpoint.scheme() == "http" && !self.allow_http => Err(config_error(
                "endpoint is plain http; add allow_http=true to the S3 URL to permit it".into(),
            )),
            _ => Ok(()),
        }
    }
}

impl fmt::Debug for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "S3Location({self})")
    }
}

impl fmt::Display for S3Location {
    /// `s3://bucket/prefix (endpoint http://…, region …)`: no credentials, safe to log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}", self.bucket)?;
        if !self.prefix.is_empty() {
            write!(f, "/{}", self.prefix)?;
        }
        match &self.endpoint {
            Some(endpoint) => write!(f, " (endpoint {endpoint}, region {})", self.region),
            None => write!(f, " (region {})", self.region),
        }
    }
}

fn parse_endpoint(value: &str) -> Result<Url, ObjectsError> {
    let endpoint = Url::parse(value).map_err(|e| config_error(format!("bad S3 endpoint: {e}")))?;
    if !matches!(endpoint.scheme(), "http" | "https") {
        return Err(config_error(
            "S3 endpoint must be http:// or https://".into(),
        ));
    }
    if !endpoint.username().is_empty() || endpoint.password().is_some() {
        return Err(config_error(
            "S3 credentials never go in the endpoint URL; use the AWS_* environment variables"
                .into(),
        ));
    }
    if endpoint.host_str().is_none_or(str::is_empty) {
        return Err(config_error("S3 endpoint has no host".into()));
    }
    Ok(endpoint)
}

/// Bucket names: 3–63 characters of lowercase letters, digits, `.` and `-`.
fn check_bucket_name(bucket: &str) -> Result<(), ObjectsError> {
    let valid_chars = bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    if (3..=63).contains(&bucket.len()) && valid_chars {
        Ok(())
    } else {
        Err(config_error(format!(
            "bad S3 bucket name {:?} (3-63 characters: a-z, 0-9, '.', '-')",
            bucket.escape_debug().to_string()
        )))
    }
}

fn config_error(message: String) -> ObjectsError {
    ObjectsError::InvalidConfig(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_s3_urls_with_endpoint_region_and_prefix() {
        let location = Location::parse(
            "s3://media-bucket/tenant/a?endpoint=http://127.0.0.1:9000&region=eu-west-1&allow_http=true",
        )
        .unwrap();
        let Location::S3(s3) = location else {
            panic!("not s3")
        };
        assert_eq!(s3.bucket, "media-bucket");
        assert_eq!(s3.prefix, "tenant/a");
        assert_eq!(s3.region, "eu-west-1");
        assert!(s3.allow_http);
        assert_eq!(s3.service_host(), ("127.0.0.1".to_owned(), 9000));
    }

    #[test]
    fn aws_host_is_regional_without_endpoint() {
        let s3 = S3Location::parse("s3://bucket-1").unwrap();
        assert_eq!(
            s3.service_host(),
            ("s3.us-east-1.amazonaws.com".to_owned(), 443)
        );
        assert_eq!(s3.to_string(), "s3://bucket-1 (region us-east-1)");
    }

    #[test]
    fn refuses_credentials_unknown_parameters_and_plain_http_by_default() {
        for url in [
            "s3://key:hunter2@bucket",
            "s3://bucket?endpoint=http://user:hunter2@host:9000&allow_http=true",
            "s3://bucket?secret_access_key=hunter2",
            "s3://bucket?endpoint=http://127.0.0.1:9000",
            "s3://Bad_Bucket",
            "s3://bucket/../x",
            "ftp://host/dir",
            "",
        ] {
            let err = Location::parse(url).unwrap_err();
            assert_eq!(err.code(), "invalid_config", "{url}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn local_paths_and_file_urls() {
        assert_eq!(
            Location::parse("file:///srv/objects").unwrap(),
            Location::Local(PathBuf::from("/srv/objects"))
        );
        assert_eq!(
            Location::parse("/srv/objects").unwrap(),
            Location::Local(PathBuf::from("/srv/objects"))
        );
        let Location::Local(relative) = Location::parse("data/objects").unwrap() else {
            panic!("not local")
        };
        assert!(relative.is_absolute());
    }
}
