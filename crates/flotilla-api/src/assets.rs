//! Assets: a file uploaded into the object store under `uploads/` and the pipeline run
//! over it. The upload is streamed to the store (never held in memory) with its size
//! limit enforced while it streams; then the run is created, and the answer is 202 with
//! the asset's id (its run's id). An asset's status and outputs are read from its run:
//! each media step reports the files it wrote as `outputs` in its result.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flotilla_core::{ErrorCode, Run, RunId, RunState, StepState};
use flotilla_objects::{ObjectInfo, ObjectKey, Objects, ObjectsError};
use flotilla_proto::{
    AssetOutput, AssetPage, AssetStatus, AssetUploadQuery, AssetView, ErrorBody, ResourceView,
    RunListQuery,
};
use flotilla_server::pipelines::PipelineConfig;
use flotilla_store::{RunCreateParams, RunListParams, StoreError};
use futures::TryStreamExt;
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Path, Query};

/// What the asset routes need besides the engine.
pub struct Media {
    /// Where uploads and outputs live.
    pub objects: Objects,
    /// The pipelines an upload may name.
    pub pipelines: Vec<PipelineConfig>,
    /// Largest upload, in bytes.
    pub max_upload_bytes: u64,
}

/// The pipeline an upload runs when it names none.
pub const DEFAULT_PIPELINE: &str = "image";

fn media(s: &AppState) -> Result<&Arc<Media>, ApiError> {
    s.media.as_ref().ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            "this server has no object store configured for assets",
        )
    })
}

/// Upload a file (the raw request body) and run a pipeline over it.
#[utoipa::path(post, path = "/v1/assets", tag = "producers", params(AssetUploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 202, body = AssetView), (status = "4XX", body = ErrorBody)))]
pub(crate) async fn upload(
    State(s): State<AppState>,
    Query(q): Query<AssetUploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, axum::Json<AssetView>), ApiError> {
    let media = media(&s)?;
    let pipeline_name = q.pipeline.as_deref().unwrap_or(DEFAULT_PIPELINE);
    let pipeline = media
        .pipelines
        .iter()
        .find(|p| p.name == pipeline_name)
        .ok_or_else(|| unknown_pipeline(pipeline_name, &media.pipelines))?;
    let overrides = parse_overrides(q.params.as_deref())?;
    if q.name.trim().is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            "name: give the file's name",
        ));
    }
    let upload = format!("{:032x}", rand::random::<u128>());
    let key = ObjectKey::upload(&upload, &q.name);
    let info = store_body(media, &key, body).await?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let input = json!({ "key": key.as_str(), "name": q.name, "upload": upload });
    let meta = json!({ "asset": {
        "name": q.name, "key": key.as_str(), "size": info.size, "sha256": info.sha256,
        "content_type": content_type,
    }});
    let run = pipeline.run(&input, meta, &overrides);
    let params = RunCreateParams {
        run,
        now: s.engine.clock.now(),
    };
    let created = match s.engine.store.run_create(params).await {
        Ok(created) => created,
        Err(e) => {
            let _ = media.objects.delete(&key).await;
            return Err(e.into());
        }
    };
    for queue in &created.queues {
        s.engine.broker.wake(queue);
    }
    let run = s.engine.store.run_get(created.id).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(view(run)?)))
}

/// Streams a request body into the object store under `key`, within the upload limit.
async fn store_body(media: &Media, key: &ObjectKey, body: Body) -> Result<ObjectInfo, ApiError> {
    let stream = body
        .into_data_stream()
        .map_err(|e| std::io::Error::other(e.to_string()));
    media
        .objects
        .put_stream(key, stream, Some(media.max_upload_bytes))
        .await
        .map_err(objects_error)
}

fn unknown_pipeline(name: &str, pipelines: &[PipelineConfig]) -> ApiError {
    let known: Vec<&str> = pipelines.iter().map(|p| p.name.as_str()).collect();
    ApiError::new(
        ErrorCode::InvalidArgument,
        format!(
            "pipeline: no pipeline {name:?} (known: {})",
            known.join(", ")
        ),
    )
}

fn parse_overrides(params: Option<&str>) -> Result<Map<String, Value>, ApiError> {
    let Some(text) = params.filter(|t| !t.trim().is_empty()) else {
        return Ok(Map::new());
    };
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) if map.values().all(Value::is_object) => Ok(map),
        _ => Err(ApiError::new(
            ErrorCode::InvalidArgument,
            "params: give a JSON object of step name to parameters, e.g. {\"transcode\": {\"crf\": 20}}",
        )),
    }
}

fn objects_error(e: ObjectsError) -> ApiError {
    let code = match e.code() {
        "too_large" => ErrorCode::BodyTooLarge,
        "invalid_key" => ErrorCode::InvalidArgument,
        "not_found" => ErrorCode::NotFound,
        _ if e.is_retryable() => ErrorCode::Unavailable,
        _ => ErrorCode::Internal,
    };
    ApiError::new(code, e.to_string())
}

/// One asset: its status, steps and outputs.
#[utoipa::path(get, path = "/v1/assets/{id}", tag = "producers", params(("id" = i64, Path, description = "Asset id")),
    responses((status = 200, body = AssetView), (status = "4XX", body = ErrorBody)))]
pub(crate) async fn get(
    State(s): State<AppState>,
    Path(id): Path<i64>,
) -> Result<axum::Json<AssetView>, ApiError> {
    media(&s)?;
    let run = s.engine.store.run_get(RunId(id)).await?;
    Ok(axum::Json(view(run)?))
}

/// Assets, newest first, a page at a time.
#[utoipa::path(get, path = "/v1/assets", tag = "producers", params(RunListQuery),
    responses((status = 200, body = AssetPage), (status = "4XX", body = ErrorBody)))]
pub(crate) async fn list(
    State(s): State<AppState>,
    Query(q): Query<RunListQuery>,
) -> Result<axum::Json<AssetPage>, ApiError> {
    media(&s)?;
    let params = RunListParams {
        pipeline: q.pipeline,
        cursor: q.cursor,
        limit: q.limit.unwrap_or(0),
    };
    let page = s.engine.store.run_list(params).await?;
    let assets = page
        .runs
        .into_iter()
        .filter(|r| r.meta.get("asset").is_some())
        .map(view)
        .collect::<Result<_, _>>()?;
    Ok(axum::Json(AssetPage {
        assets,
        next_cursor: page.next,
    }))
}

/// Download one of an asset's outputs.
#[utoipa::path(get, path = "/v1/assets/{id}/outputs/{name}", tag = "producers",
    params(("id" = i64, Path, description = "Asset id"), ("name" = String, Path, description = "Output name")),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>), (status = "4XX", body = ErrorBody)))]
pub(crate) async fn output(
    State(s): State<AppState>,
    Path((id, name)): Path<(i64, String)>,
) -> Result<Response, ApiError> {
    let media = media(&s)?;
    let asset = view(s.engine.store.run_get(RunId(id)).await?)?;
    let found = asset
        .outputs
        .iter()
        .find(|o| o.name == name)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotFound,
                format!("asset {id} has no output {name:?}"),
            )
        })?;
    let key = ObjectKey::parse(&found.key).map_err(objects_error)?;
    let (info, stream) = media
        .objects
        .get_stream(&key)
        .await
        .map_err(objects_error)?;
    let body = Body::from_stream(stream.map_err(|e| std::io::Error::other(e.to_string())));
    Ok((
        [
            (header::CONTENT_TYPE, content_type(&name).to_owned()),
            (header::CONTENT_LENGTH, info.size.to_string()),
        ],
        body,
    )
        .into_response())
}

/// The MIME type of the output formats the media steps write.
fn content_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("webp") => "image/webp",
        Some("mp4") => "video/mp4",
        Some("m3u8") => "application/vnd.apple.mpegurl",
        Some("ts") => "video/mp2t",
        Some("json") => "application/json",
        Some("vtt") => "text/vtt",
        _ => "application/octet-stream",
    }
}

/// The asset a run over an upload stands for; a run that is not over an upload is
/// `run_not_found` here.
fn view(run: Run) -> Result<AssetView, ApiError> {
    let Some(asset) = run.meta.get("asset") else {
        return Err(StoreError::RunNotFound(run.id).into());
    };
    let text = |k: &str| asset.get(k).and_then(Value::as_str).map(str::to_owned);
    let outputs = run
        .steps
        .iter()
        .flat_map(|step| {
            let listed = step
                .result
                .as_ref()
                .and_then(|r| r.get("outputs"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            listed.into_iter().filter_map(move |o| {
                Some(AssetOutput {
                    step: step.name.clone(),
                    name: o.get("name")?.as_str()?.to_owned(),
                    key: o.get("key")?.as_str()?.to_owned(),
                    size: o.get("size").and_then(Value::as_u64),
                    details: o,
                })
            })
        })
        .collect();
    Ok(AssetView {
        id: run.id,
        name: text("name").unwrap_or_default(),
        pipeline: run.pipeline.clone(),
        status: status(&run),
        size: asset.get("size").and_then(Value::as_u64).unwrap_or(0),
        sha256: text("sha256"),
        key: text("key").unwrap_or_default(),
        outputs,
        created_at: run.created_at,
        steps: run.steps,
    })
}

fn status(run: &Run) -> AssetStatus {
    match run.state {
        RunState::Succeeded => AssetStatus::Processed,
        RunState::Failed | RunState::Cancelled => AssetStatus::Failed,
        RunState::Running => {
            let started = run.steps.iter().any(|s| {
                s.attempt > 0 || s.state != StepState::Queued && s.state != StepState::Waiting
            });
            if started {
                AssetStatus::Processing
            } else {
                AssetStatus::Uploaded
            }
        }
    }
}

/// Store a resource (a logo, an intro or outro clip) under `resources/{name}` for the
/// pipelines' steps to use; replaces one of the same name.
#[utoipa::path(put, path = "/v1/resources/{name}", tag = "admin",
    params(("name" = String, Path, description = "Resource name, e.g. logo.png")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, body = ResourceView), (status = "4XX", body = ErrorBody)))]
pub(crate) async fn put_resource(
    State(s): State<AppState>,
    Path(name): Path<String>,
    body: Body,
) -> Result<axum::Json<ResourceView>, ApiError> {
    let media = media(&s)?;
    let key = ObjectKey::resource(&name).map_err(objects_error)?;
    let info = store_body(media, &key, body).await?;
    Ok(axum::Json(ResourceView {
        key: key.as_str().to_owned(),
        size: info.size,
        sha256: info.sha256,
    }))
}

/// The object whose presence releases an asset held by moderation (see `ai.moderate`):
/// `processed/<upload>/moderation-release.json`.
pub const MODERATION_RELEASE: &str = "moderation-release.json";

/// Releases an asset that moderation held: records the release beside its outputs and
/// runs its failed steps again, so the moderation step passes (saying it was released)
/// and the pipeline goes on to distribution.
#[utoipa::path(post, path = "/v1/assets/{id}/release", tag = "admin", params(("id" = i64, Path, description = "Asset id")),
    responses((status = 200, body = AssetView), (status = "4XX", body = ErrorBody)))]
pub(crate) async fn release(
    State(s): State<AppState>,
    axum::Extension(caller): axum::Extension<crate::auth::Caller>,
    Path(id): Path<i64>,
) -> Result<axum::Json<AssetView>, ApiError> {
    let media = media(&s)?;
    let run = s.engine.store.run_get(RunId(id)).await?;
    let asset = view(run.clone())?;
    let upload = asset.key.split('/').nth(1).unwrap_or_default().to_owned();
    let failed: Vec<_> = run
        .steps
        .iter()
        .filter(|step| step.state == StepState::Failed)
        .filter_map(|step| step.job_id)
        .collect();
    if failed.is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            "this asset has no failed step to release",
        ));
    }
    let record = json!({
        "released_at": s.engine.clock.now(),
        "released_by": caller.name.unwrap_or_else(|| "admin".into()),
    });
    let body = futures::stream::once(async move { Ok(bytes::Bytes::from(record.to_string())) });
    let key = ObjectKey::processed(&upload, MODERATION_RELEASE);
    media
        .objects
        .put_stream(&key, body, None)
        .await
        .map_err(objects_error)?;
    for job_id in failed {
        let params = flotilla_store::JobRetryParams {
            job_id,
            now: s.engine.clock.now(),
        };
        let job = s.engine.store.job_retry(params).await?;
        s.engine.broker.wake(&job.queue);
    }
    let run = s.engine.store.run_get(RunId(id)).await?;
    Ok(axum::Json(view(run)?))
}
