//! HTTP targets: the file streamed as the request body with its length, type and checksum in headers.
//!
//! 2xx succeeds (the receiver's reported size/sha256, if any, must match); 408, 429 and 5xx are retryable;
//! redirects are not followed (a streamed body cannot be replayed, and a redirect could point anywhere);
//! other statuses are rejections quoting a short, scrubbed excerpt of the answer.

use base64::Engine;
use futures::StreamExt;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use crate::address::{check_literal_host, find_refusal};
use crate::config::{HeaderValueConfig, HttpMethod, HttpTarget};
use crate::distributor::{Attempt, transfer_timeout};
use crate::secrets::{Secret, scrub};
use crate::{DeliveryError, Receipt};

/// Most of a response body read (for the checksum answer or an error excerpt).
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Longest excerpt of a response quoted in an error.
const EXCERPT_CHARS: usize = 200;
/// Read size when streaming the file.
const BODY_CHUNK_BYTES: usize = 64 * 1024;
/// Header carrying the delivery name (percent-encoded), for receivers whose URL has no `{name}`.
pub const NAME_HEADER: &str = "x-flotilla-name";
/// Header carrying the SHA-256 as hex.
pub const CHECKSUM_HEADER: &str = "x-checksum-sha256";
/// Characters percent-encoded in the name header: controls, non-ASCII, and space.
const NAME_HEADER_ENCODE_SET: &AsciiSet = &CONTROLS.add(b' ').add(b'%');

pub(crate) async fn deliver(
    attempt: &Attempt<'_>,
    target: &HttpTarget,
    client: &reqwest::Client,
) -> Result<Receipt, DeliveryError> {
    let errors = attempt.errors;
    let url = target
        .url_for(attempt.name.as_str())
        .map_err(|e| errors.invalid_config(e))?;
    check_literal_host(
        errors,
        url.host_str().unwrap_or_default(),
        target.allow_private,
    )
    .await?;
    let (headers, secrets) = request_headers(attempt, target)?;
    let file = tokio::fs::File::open(&attempt.delivery.file)
        .await
        .map_err(|e| errors.io("opening the source", e))?;
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
        file,
        BODY_CHUNK_BYTES,
    ));
    let method = match target.method {
        HttpMethod::Put => Method::PUT,
        HttpMethod::Post => Method::POST,
    };
    let mut location = url.clone();
    location.set_query(None);
    let response = client
        .request(method, url)
        .headers(headers)
        .timeout(transfer_timeout(attempt.delivery.size))
        .body(body)
        .send()
        .await
        .map_err(|e| send_error(attempt, e))?;
    let status = response.status();
    let answer = read_answer(response).await;
    let answer = scrub(&answer, &secrets);
    check_status(attempt, status, &answer)?;
    let verified = verify_answer(attempt, &answer)?;
    Ok(attempt.receipt(location.to_string(), &verified))
}

/// The configured headers (secrets resolved and marked sensitive) plus length, type and checksums.
fn request_headers(
    attempt: &Attempt<'_>,
    target: &HttpTarget,
) -> Result<(HeaderMap, Vec<Secret>), DeliveryError> {
    let errors = attempt.errors;
    let delivery = attempt.delivery;
    let mut headers = HeaderMap::new();
    let mut secrets = Vec::new();
    for (name, value) in &target.headers {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| errors.invalid_config(format!("bad header name {name:?}")))?;
        let value = match value {
            HeaderValueConfig::Literal(literal) => HeaderValue::from_str(literal)
                .map_err(|_| errors.invalid_config(format!("bad value for header {name}")))?,
            HeaderValueConfig::Secret(reference) => {
                let secret = reference
                    .resolve(attempt.secrets)
                    .ok_or_else(|| errors.missing_secret(reference.variable()))?;
                let mut value = HeaderValue::from_str(secret.expose()).map_err(|_| {
                    errors.invalid_config(format!(
                        "secret {} is not a valid header value",
                        reference.variable()
                    ))
                })?;
                value.set_sensitive(true);
                secrets.push(secret);
                value
            }
        };
        headers.insert(header, value);
    }
    let sha_hex = delivery.sha256.to_ascii_lowercase();
    let sha_raw =
        hex::decode(&sha_hex).map_err(|_| errors.invalid_delivery("sha256 is not hex"))?;
    let digest = format!(
        "sha-256={}",
        base64::engine::general_purpose::STANDARD.encode(sha_raw)
    );
    let content_type = mime_guess::from_path(attempt.name.as_str()).first_or_octet_stream();
    let encoded_name =
        utf8_percent_encode(attempt.name.as_str(), NAME_HEADER_ENCODE_SET).to_string();
    for (name, value) in [
        ("content-length", delivery.size.to_string()),
        (CHECKSUM_HEADER, sha_hex),
        ("digest", digest),
        (NAME_HEADER, encoded_name),
    ] {
        let value = HeaderValue::from_str(&value)
            .map_err(|_| errors.invalid_delivery(format!("bad {name}")))?;
        headers.insert(HeaderName::from_static(name), value);
    }
    if !headers.contains_key(CONTENT_TYPE) {
        let value = HeaderValue::from_str(content_type.essence_str())
            .unwrap_or(HeaderValue::from_static("application/octet-stream"));
        headers.insert(CONTENT_TYPE, value);
    }
    Ok((headers, secrets))
}

fn send_error(attempt: &Attempt<'_>, error: reqwest::Error) -> DeliveryError {
    if let Some(refused) = find_refusal(&error) {
        return attempt.errors.private(refused);
    }
    let error = error.without_url();
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    attempt
        .errors
        .unavailable(format!("{what}: {error}"), Some(Box::new(error)))
}

/// Up to [`MAX_ANSWER_BYTES`] of the response body, lossily decoded; a broken body reads as empty.
async fn read_answer(response: reqwest::Response) -> String {
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        let room = MAX_ANSWER_BYTES - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_ANSWER_BYTES {
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

fn check_status(
    attempt: &Attempt<'_>,
    status: StatusCode,
    answer: &str,
) -> Result<(), DeliveryError> {
    let detail = || format!("HTTP {status}: {}", excerpt(answer));
    if status.is_success() {
        Ok(())
    } else if status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
    {
        Err(attempt.errors.unavailable(detail(), None))
    } else if status.is_redirection() {
        Err(attempt
            .errors
            .rejected(format!("HTTP {status}: redirects are not followed")))
    } else {
        Err(attempt.errors.rejected(detail()))
    }
}

/// What a receiver may report about what it stored.
#[derive(Deserialize)]
struct StoredReport {
    #[serde(alias = "size")]
    bytes: Option<u64>,
    sha256: Option<String>,
}

/// Checks the receiver's report, if it sent one: a 2xx on a request with `Content-Length` already means the
/// receiver took exactly that many bytes, so "size" is always verified.
fn verify_answer(attempt: &Attempt<'_>, answer: &str) -> Result<Vec<&'static str>, DeliveryError> {
    let delivery = attempt.delivery;
    let mut verified = vec!["size"];
    let Ok(report) = serde_json::from_str::<StoredReport>(answer) else {
        return Ok(verified);
    };
    if let Some(bytes) = report.bytes.filter(|bytes| *bytes != delivery.size) {
        return Err(attempt.errors.mismatch(format!(
            "receiver stored {bytes} bytes, sent {}",
            delivery.size
        )));
    }
    if let Some(sha256) = report.sha256 {
        if !sha256.eq_ignore_ascii_case(&delivery.sha256) {
            return Err(attempt.errors.mismatch(format!(
                "receiver reports sha256 {}, sent {}",
                excerpt(&sha256),
                delivery.sha256
            )));
        }
        verified.push("sha256");
    }
    Ok(verified)
}

/// The first [`EXCERPT_CHARS`] characters, with control characters replaced.
fn excerpt(text: &str) -> String {
    let mut shown: String = text
        .trim()
        .chars()
        .take(EXCERPT_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.trim().chars().count() > EXCERPT_CHARS {
        shown.push('…');
    }
    shown
}
