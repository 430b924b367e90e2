//! Inference service mode: a detector run by a KServe/Triton server instead of this process.
//!
//! Why: a GPU node serving many workers keeps its accelerator busy while the workers only
//! move pixels and JSON; such a worker is network-bound, so its operator runs it with a
//! high `--concurrency`. Only the model runs remotely: letterbox, [`decode_yolo`] and
//! [`nms_per_class`] stay on the worker, the same functions as the local [`Detector`], so
//! a remote and a local detector over the same ONNX model give the same boxes.
//!
//! The protocol is the Open Inference Protocol v2 REST, JSON form: `GET
//! {url}/v2/models/{name}/ready` once at [`KserveDetector::connect`] (a model the server
//! does not have is a start-up error naming it, like a missing local file), then `POST
//! {url}/v2/models/{name}/infer` with `{"id", "inputs": [{"name": "images", "shape": [N, 3,
//! S, S], "datatype": "FP32", "data": [...]}]}`, reading `outputs[0]`'s `shape` and flat
//! row-major `data` (`[N, 4 + C, A]` or transposed).
//!
//! Calls follow the distribution worker's rules (`flotilla-distribute`): its connect
//! timeout, the service's per-request `timeout`, no redirects, no proxy, and no loopback,
//! private or link-local address unless `allow_private` is set (host names resolve
//! through its [`GuardedResolver`], so the address checked is the one connected to).
//! Connection failures, timeouts, 408, 429 and 5xx are retryable ([`RemoteError::is_retryable`]);
//! any other 4xx, a redirect, or an answer that is not the tensor expected is not, and
//! quotes the server's message. The bearer token from `api_key_env` is read per request
//! and never logged.

use std::net::IpAddr;
use std::sync::Arc;

use flotilla_distribute::CONNECT_TIMEOUT;
use flotilla_distribute::address::{GuardedResolver, ResolveError, find_refusal, resolve_checked};
use image::DynamicImage;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

use crate::config::{ModelConfig, ModelKind, ServiceConfig, ServiceProtocol};
use crate::detect::{Candidate, Detection, Letterbox, decode_yolo, letterbox, nms_per_class};
use crate::error::AiError;

/// Most characters of a server's answer quoted in an error.
const EXCERPT_CHARS: usize = 300;

/// Why a call to an inference service failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// The model's configuration is invalid (or its `api_key_env` is not set).
    #[error(transparent)]
    Config(#[from] AiError),
    /// The service's host is a private address and the service does not allow it.
    #[error(
        "model `{model}`: {host} resolves to {address}, a private address (set \
         `allow_private = true` in its service to permit it)"
    )]
    PrivateAddress {
        /// The model's configured name.
        model: String,
        /// The host in the URL.
        host: String,
        /// The refused address.
        address: IpAddr,
    },
    /// At start: the server does not have the model, or it is not ready.
    #[error("model `{model}`: remote model `{remote}` is not ready at {url}: {detail}")]
    NotReady {
        /// The model's configured name.
        model: String,
        /// Its name on the server.
        remote: String,
        /// The readiness URL asked.
        url: String,
        /// The status and the server's message, or why it could not be asked.
        detail: String,
    },
    /// The service could not be reached or failed temporarily: retryable.
    #[error("model `{model}`: inference service unavailable: {detail}")]
    Unavailable {
        /// The model's configured name.
        model: String,
        /// What failed.
        detail: String,
    },
    /// The service refused the request (4xx other than 408/429, or a redirect).
    #[error("model `{model}`: inference service refused the request: HTTP {status}: {message}")]
    Rejected {
        /// The model's configured name.
        model: String,
        /// The HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// The answer is not the tensor expected (not JSON, no output, wrong shape or type).
    #[error("model `{model}`: malformed answer from the inference service: {reason}")]
    Malformed {
        /// The model's configured name.
        model: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl RemoteError {
    /// Whether another attempt may succeed: only when the service was unavailable.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// A detector served by a KServe/Triton (Open Inference Protocol v2) server.
#[derive(Debug, Clone)]
pub struct KserveDetector {
    config: ModelConfig,
    service: ServiceConfig,
    classes: Vec<String>,
    http: reqwest::Client,
    infer_url: String,
}

#[derive(Serialize)]
struct InferRequest<'a> {
    id: String,
    inputs: [InputTensor<'a>; 1],
}

#[derive(Serialize)]
struct InputTensor<'a> {
    name: &'a str,
    shape: [usize; 4],
    datatype: &'static str,
    data: Vec<f32>,
}

#[derive(Deserialize)]
struct InferResponse {
    #[serde(default)]
    outputs: Vec<OutputTensor>,
}

#[derive(Deserialize)]
struct OutputTensor {
    shape: Vec<usize>,
    datatype: String,
    data: Vec<f32>,
}

impl KserveDetector {
    /// Validates `config` (a detector with a `kserve-v2` service), checks the address
    /// policy and asks the server whether the model is ready. Every failure here is a
    /// start-up error.
    pub async fn connect(config: &ModelConfig) -> Result<Self, RemoteError> {
        let service = detector_service(config)?;
        let classes = config.classes.resolve()?;
        check_address(config, &service).await?;
        bearer(config, &service)?;
        let http = http_client(&service)?;
        let remote = service.remote_name(&config.name);
        let infer_url = format!("{}/v2/models/{remote}/infer", service.base_url());
        let detector = Self {
            config: config.clone(),
            classes,
            http,
            infer_url,
            service,
        };
        detector.check_ready().await?;
        tracing::info!(model = %config.name, url = %detector.infer_url, "remote detector ready");
        Ok(detector)
    }

    /// The configuration it was connected from.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The class names, in index order.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// Images per inference request.
    pub fn batch_size(&self) -> usize {
        self.service.batch
    }

    /// The URL it posts images to.
    pub fn infer_url(&self) -> &str {
        &self.infer_url
    }

    /// Detects objects in several images, one result per image in order, with boxes in
    /// each image's pixels; [`Self::batch_size`] images per request.
    pub async fn detect_batch(
        &self,
        images: &[DynamicImage],
    ) -> Result<Vec<Vec<Detection>>, RemoteError> {
        let mut results = Vec::with_capacity(images.len());
        for group in images.chunks(self.batch_size()) {
            results.extend(self.run_group(group).await?);
        }
        Ok(results)
    }

    /// Detects objects in one image.
    pub async fn detect(&self, image: &DynamicImage) -> Result<Vec<Detection>, RemoteError> {
        let mut found = self.detect_batch(std::slice::from_ref(image)).await?;
        Ok(found.pop().unwrap_or_default())
    }

    async fn check_ready(&self) -> Result<(), RemoteError> {
        let remote = self.service.remote_name(&self.config.name).to_owned();
        let url = format!("{}/v2/models/{remote}/ready", self.service.base_url());
        let not_ready = |detail: String| RemoteError::NotReady {
            model: self.config.name.clone(),
            remote: remote.clone(),
            url: url.clone(),
            detail,
        };
        // A client of its own: a pooled connection must not outlive a caller's runtime.
        let http = http_client(&self.service)?;
        let response = self
            .authorized(http.get(&url))?
            .send()
            .await
            .map_err(|e| not_ready(self.transport(e).to_string()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.bytes().await.unwrap_or_default();
        Err(not_ready(format!(
            "HTTP {status}: {}",
            server_message(&body)
        )))
    }

    async fn run_group(&self, group: &[DynamicImage]) -> Result<Vec<Vec<Detection>>, RemoteError> {
        let size = self.config.input_size;
        let side = size as usize;
        let mut data = Vec::with_capacity(group.len() * 3 * side * side);
        let mut placements = Vec::with_capacity(group.len());
        for image in group {
            let (tensor, placement) = letterbox(&image.to_rgb8(), size);
            data.extend_from_slice(&tensor);
            placements.push(placement);
        }
        let request = InferRequest {
            id: format!("{}-{}", self.config.name, std::process::id()),
            inputs: [InputTensor {
                name: &self.service.input_name,
                shape: [group.len(), 3, side, side],
                datatype: "FP32",
                data,
            }],
        };
        let body = serde_json::to_vec(&request).map_err(|e| self.malformed(e.to_string()))?;
        let answer = self.post(body).await?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.decode_answer(&answer, &placements))
            .await
            .map_err(|e| self.unavailable(format!("decoding stopped: {e}")))?
    }

    /// Posts one request; the answer's body on success.
    async fn post(&self, body: Vec<u8>) -> Result<Vec<u8>, RemoteError> {
        let request = self
            .http
            .post(&self.infer_url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        let response = self
            .authorized(request)?
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| self.transport(e))?;
        self.check_status(status, &body)?;
        Ok(body.to_vec())
    }

    fn authorized(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, RemoteError> {
        Ok(match bearer(&self.config, &self.service)? {
            Some(token) => request.bearer_auth(token),
            None => request,
        })
    }

    fn check_status(&self, status: StatusCode, body: &[u8]) -> Result<(), RemoteError> {
        let message = || server_message(body);
        if status.is_success() {
            Ok(())
        } else if status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
        {
            Err(self.unavailable(format!("HTTP {status}: {}", message())))
        } else if status.is_redirection() {
            Err(self.rejected(status, "redirects are not followed".to_owned()))
        } else {
            Err(self.rejected(status, message()))
        }
    }

    /// Parses the answer and turns each image's output into detections.
    fn decode_answer(
        &self,
        body: &[u8],
        placements: &[Letterbox],
    ) -> Result<Vec<Vec<Detection>>, RemoteError> {
        let answer: InferResponse = serde_json::from_slice(body)
            .map_err(|e| self.malformed(format!("not an inference response: {e}")))?;
        let output = answer
            .outputs
            .into_iter()
            .next()
            .ok_or_else(|| self.malformed("it has no outputs".to_owned()))?;
        if !matches!(output.datatype.as_str(), "FP32" | "FP64" | "FP16") {
            return Err(self.malformed(format!(
                "output datatype is {}, not a float",
                output.datatype
            )));
        }
        let [rows, anchors] = self.output_dims(&output, placements.len())?;
        output
            .data
            .chunks(rows * anchors)
            .zip(placements)
            .map(|(one, placement)| {
                let found = decode_yolo(
                    one,
                    [1, rows, anchors],
                    self.classes.len(),
                    self.config.score_threshold,
                )
                .map_err(|e| self.malformed(e.to_string()))?;
                let kept = nms_per_class(found, self.config.iou_threshold);
                Ok(self.to_detections(kept, placement))
            })
            .collect()
    }

    /// The per-image dims of an output that must be `[n, R, A]` with all its data.
    fn output_dims(&self, output: &OutputTensor, n: usize) -> Result<[usize; 2], RemoteError> {
        match *output.shape {
            [b, r, a] if b == n && r > 0 && a > 0 && output.data.len() == n * r * a => Ok([r, a]),
            _ => Err(self.malformed(format!(
                "output shape {:?} with {} values; expected [{n}, {}, N] or [{n}, N, {}] \
                 and all their values",
                output.shape,
                output.data.len(),
                4 + self.classes.len(),
                4 + self.classes.len()
            ))),
        }
    }

    fn to_detections(&self, found: Vec<Candidate>, placement: &Letterbox) -> Vec<Detection> {
        found
            .into_iter()
            .filter_map(|c| {
                let label = self.classes.get(c.class_id as usize)?.clone();
                let bbox = placement.to_original(c.bbox);
                (bbox.area() > 0.0).then_some(Detection {
                    label,
                    class_id: c.class_id,
                    score: c.score,
                    bbox,
                })
            })
            .collect()
    }

    fn transport(&self, e: reqwest::Error) -> RemoteError {
        transport_error(&self.config.name, &self.service, e)
    }

    fn unavailable(&self, detail: String) -> RemoteError {
        RemoteError::Unavailable {
            model: self.config.name.clone(),
            detail,
        }
    }

    fn rejected(&self, status: StatusCode, message: String) -> RemoteError {
        RemoteError::Rejected {
            model: self.config.name.clone(),
            status: status.as_u16(),
            message,
        }
    }

    fn malformed(&self, reason: String) -> RemoteError {
        RemoteError::Malformed {
            model: self.config.name.clone(),
            reason,
        }
    }
}

/// The validated `kserve-v2` service of a detector.
fn detector_service(config: &ModelConfig) -> Result<ServiceConfig, RemoteError> {
    config.validate()?;
    let field = format!("models.{}.service", config.name);
    match &config.service {
        Some(service)
            if config.kind == ModelKind::Detector
                && service.protocol == ServiceProtocol::KserveV2 =>
        {
            Ok(service.clone())
        }
        _ => Err(AiError::Config {
            field,
            message: "must be a `kserve-v2` service of a detector".to_owned(),
        }
        .into()),
    }
}

/// Checks a model's service against the private-address policy, resolving its host now
/// (IP literals never reach the guarded resolver, so this is their only check). A host
/// that does not resolve is a start-up error too.
pub async fn check_address(
    config: &ModelConfig,
    service: &ServiceConfig,
) -> Result<(), RemoteError> {
    let url = reqwest::Url::parse(&service.url).map_err(|e| AiError::Config {
        field: format!("models.{}.service.url", config.name),
        message: e.to_string(),
    })?;
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or(80);
    match resolve_checked(host, port, service.allow_private).await {
        Ok(_) => Ok(()),
        Err(ResolveError::Private(refused)) => Err(RemoteError::PrivateAddress {
            model: config.name.clone(),
            host: refused.host,
            address: refused.address,
        }),
        Err(ResolveError::Failed(e)) => Err(RemoteError::Unavailable {
            model: config.name.clone(),
            detail: format!("cannot resolve {host}: {e}"),
        }),
    }
}

/// The bearer token from `api_key_env`, if the service has one; an unset variable is a
/// configuration error.
pub fn bearer(config: &ModelConfig, service: &ServiceConfig) -> Result<Option<String>, AiError> {
    let Some(var) = &service.api_key_env else {
        return Ok(None);
    };
    std::env::var(var).map(Some).map_err(|_| AiError::Config {
        field: format!("models.{}.service.api_key_env", config.name),
        message: format!("names `{var}`, which is not set in the environment"),
    })
}

/// A client with the distribution worker's rules for this service.
fn http_client(service: &ServiceConfig) -> Result<reqwest::Client, RemoteError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(service.timeout())
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(concat!("flotilla-ai/", env!("CARGO_PKG_VERSION")));
    if !service.allow_private {
        builder = builder.dns_resolver(Arc::new(GuardedResolver));
    }
    builder.build().map_err(|e| {
        AiError::Config {
            field: "service".to_owned(),
            message: format!("cannot build the HTTP client: {e}"),
        }
        .into()
    })
}

fn transport_error(model: &str, service: &ServiceConfig, e: reqwest::Error) -> RemoteError {
    if let Some(refused) = find_refusal(&e) {
        return RemoteError::PrivateAddress {
            model: model.to_owned(),
            host: refused.host.clone(),
            address: refused.address,
        };
    }
    let what = if e.is_timeout() {
        format!("timed out after {:?}", service.timeout())
    } else if e.is_connect() {
        "could not connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    RemoteError::Unavailable {
        model: model.to_owned(),
        detail: format!("{what}: {}", e.without_url()),
    }
}

/// The v2 protocol's `{"error": "..."}`, FastAPI's `{"detail": ...}`, or the body's start.
fn server_message(body: &[u8]) -> String {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let found = json.as_ref().and_then(|v| {
        ["error", "detail"].iter().find_map(|key| {
            v.get(*key)
                .map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_owned))
        })
    });
    let text = found.unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    text.trim()
        .chars()
        .take(EXCERPT_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClassList;

    fn remote(url: &str) -> ModelConfig {
        let mut config =
            ModelConfig::detector("objects", "", ClassList::Inline(vec!["a".into()]), 64);
        config.service = Some(ServiceConfig::new(url, ServiceProtocol::KserveV2));
        config
    }

    #[test]
    fn server_messages_come_from_v2_and_fastapi_shapes() {
        assert_eq!(
            server_message(br#"{"error":"Model nope not found"}"#),
            "Model nope not found"
        );
        assert_eq!(server_message(br#"{"detail":"Not Found"}"#), "Not Found");
        assert_eq!(server_message(b"plain\ntext"), "plain text");
    }

    #[tokio::test]
    async fn loopback_is_refused_unless_allowed() {
        let config = remote("http://127.0.0.1:9/");
        let err = KserveDetector::connect(&config).await.unwrap_err();
        assert!(matches!(err, RemoteError::PrivateAddress { .. }), "{err}");
        assert!(err.to_string().contains("allow_private"), "{err}");
        assert!(!err.is_retryable());
    }

    #[tokio::test]
    async fn an_unset_api_key_variable_is_a_start_up_error() {
        let mut config = remote("http://127.0.0.1:9/");
        let service = config.service.as_mut().unwrap();
        service.allow_private = true;
        service.api_key_env = Some("FLOTILLA_TEST_SURELY_UNSET_KEY".into());
        let err = KserveDetector::connect(&config).await.unwrap_err();
        assert!(
            err.to_string().contains("FLOTILLA_TEST_SURELY_UNSET_KEY"),
            "{err}"
        );
    }

    #[test]
    fn statuses_map_like_deliveries() {
        let detector = KserveDetector {
            config: remote("http://example.invalid"),
            service: ServiceConfig::new("http://example.invalid", ServiceProtocol::KserveV2),
            classes: vec!["a".into()],
            http: reqwest::Client::new(),
            infer_url: String::new(),
        };
        let body = br#"{"error":"why"}"#;
        for (code, retryable) in [
            (500, true),
            (503, true),
            (429, true),
            (408, true),
            (400, false),
            (404, false),
            (302, false),
        ] {
            let status = StatusCode::from_u16(code).unwrap();
            let err = detector.check_status(status, body).unwrap_err();
            assert_eq!(err.is_retryable(), retryable, "{code}: {err}");
        }
        let wrong = detector.decode_answer(
            br#"{"outputs":[{"name":"o","shape":[1,6,2],"datatype":"FP32","data":[0,0,0,0,0,0,0,0,0,0,0,0]}]}"#,
            &[Letterbox::fit(64, 64, 64).0],
        );
        assert!(
            matches!(wrong, Err(RemoteError::Malformed { .. })),
            "{wrong:?}"
        );
    }
}
