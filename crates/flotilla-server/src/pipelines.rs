//! Pipelines: named DAGs of steps, each a job kind on a queue with parameters, turned into a
//! pipeline run (`flotilla_core::NewRun`) for each uploaded asset. Seven are built in:
//!
//! - `image` and `video`: transcoding on `q-transcode` and the AI steps on `q-ai-enrich` in
//!   parallel, joining before delivery (image: renditions and filters beside detection and
//!   moderation, then face redaction; video: 720p, poster and preview beside keyframe
//!   detection and transcription). They need a worker with models on `q-ai-enrich`.
//! - `image-basic`, `video-basic` and `anb-video`: transcoding only, for teams that run no AI
//!   worker (`image-basic` and `video-basic` are `image` and `video` without the AI steps).
//! - `image-ai` and `video-ai`: the AI steps only.
//!
//! Steps are shared between pipelines through small builders, so `image`'s detection is
//! `image-ai`'s. `flotilla.toml` may add more pipelines or replace these by name:
//!
//! ```toml
//! [[pipelines]]
//! name = "thumbs"
//! steps = [
//!   { name = "ingest", queue = "q-ingest", kind = "media.ingest" },
//!   { name = "thumb", queue = "q-transcode", kind = "image.render", after = ["ingest"],
//!     params = { renditions = [{ name = "thumb", ops = [{ op = "thumbnail", size = 256 }], format = "jpeg" }] } },
//! ]
//! ```
//!
//! Each step's job payload is its `params`, overridden key by key by the upload's
//! parameters for that step, plus `input` (the uploaded object) and, from the store,
//! `run` (the run's id, the step's name and its dependencies' results).

use std::time::Duration;

use flotilla_core::{NewJob, NewRun, NewStep, QueueConfig, RetryPolicy};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// A pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Its name, given when uploading (`?pipeline=`).
    pub name: String,
    /// Its steps.
    pub steps: Vec<PipelineStep>,
}

/// One step of a pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineStep {
    /// Unique within the pipeline.
    pub name: String,
    /// The queue its job goes to.
    pub queue: String,
    /// The job kind (handler) that runs it.
    pub kind: String,
    /// The steps that must succeed first.
    #[serde(default)]
    pub after: Vec<String>,
    /// The job's parameters (a JSON/TOML table).
    #[serde(default = "empty_object")]
    pub params: Value,
    /// Attempts allowed; the queue's retry policy when absent.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Longest an attempt may run; the queue's when absent.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

impl PipelineConfig {
    /// The run of this pipeline over `input` (the uploaded object, e.g. `{"key", "name"}`),
    /// with `meta` describing it, and per-step parameter overrides (`{step: {param: value}}`).
    pub fn run(&self, input: &Value, meta: Value, overrides: &Map<String, Value>) -> NewRun {
        let steps = self
            .steps
            .iter()
            .map(|s| {
                let mut payload = match &s.params {
                    Value::Object(map) => map.clone(),
                    _ => Map::new(),
                };
                if let Some(Value::Object(extra)) = overrides.get(&s.name) {
                    payload.extend(extra.clone());
                }
                payload.insert("input".into(), input.clone());
                let mut job = NewJob::new(&s.queue, &s.kind, Value::Object(payload));
                job.max_attempts = s.max_attempts;
                job.timeout_ms = s
                    .timeout
                    .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX));
                NewStep {
                    name: s.name.clone(),
                    after: s.after.clone(),
                    job,
                }
            })
            .collect();
        NewRun {
            pipeline: self.name.clone(),
            meta,
            steps,
        }
    }

    /// The queues its steps use.
    pub fn queues(&self) -> impl Iterator<Item = &str> {
        self.steps.iter().map(|s| s.queue.as_str())
    }
}

/// The queue of ingest steps: I/O-bound, many jobs at once.
pub const Q_INGEST: &str = "q-ingest";
/// The queue of transcode steps: CPU-bound, one job per slot.
pub const Q_TRANSCODE: &str = "q-transcode";
/// The queue of deliveries: network-bound, long retries.
pub const Q_DISTRIBUTION: &str = "q-distribution";
/// The queue of AI enrichment steps (detection, moderation, redaction, later speech):
/// CPU- or GPU-bound, slow to warm up, few attempts.
pub const Q_AI_ENRICH: &str = "q-ai-enrich";

/// The settings a built-in media queue gets when the config does not set it.
pub fn default_media_queue(name: &str) -> QueueConfig {
    let mut queue = QueueConfig::new(name);
    match name {
        Q_TRANSCODE => {
            queue.lease = Duration::from_secs(120);
            queue.timeout = Some(Duration::from_secs(3600));
            queue.retry = doubling(3, 5, 300);
        }
        Q_DISTRIBUTION => {
            queue.lease = Duration::from_secs(120);
            queue.retry = doubling(12, 5, 3600);
        }
        // A keyframe batch on a CPU can take minutes between heartbeats' chances; an
        // inference that failed three times is a model or input problem, not bad luck.
        Q_AI_ENRICH => {
            queue.lease = Duration::from_secs(300);
            queue.timeout = Some(Duration::from_secs(1800));
            queue.retry = doubling(3, 10, 600);
        }
        _ => {
            queue.lease = Duration::from_secs(60);
            queue.retry = doubling(5, 2, 120);
        }
    }
    queue
}

/// Exponential backoff from `initial_s`, doubling up to `max_s`, with full jitter.
fn doubling(max_attempts: u32, initial_s: u64, max_s: u64) -> RetryPolicy {
    RetryPolicy::Exponential {
        max_attempts,
        initial: Duration::from_secs(initial_s),
        factor: 2.0,
        max_interval: Duration::from_secs(max_s),
        jitter: true,
    }
}

fn step(name: &str, queue: &str, kind: &str, after: &[&str], params: Value) -> PipelineStep {
    PipelineStep {
        name: name.into(),
        queue: queue.into(),
        kind: kind.into(),
        after: after.iter().map(|s| (*s).into()).collect(),
        params,
        max_attempts: None,
        timeout: None,
    }
}

fn ingest() -> PipelineStep {
    step("ingest", Q_INGEST, "media.ingest", &[], json!({}))
}

fn deliver(after: &[&str]) -> PipelineStep {
    step(
        "deliver",
        Q_DISTRIBUTION,
        "media.distribute",
        after,
        json!({ "targets": [] }),
    )
}

/// The built-in pipelines (DESIGN.md §7, seed 004, issue 8): `image` and `video`
/// (transcoding and AI side by side), `image-basic`, `video-basic` and `anb-video`
/// (transcoding only, for media workers alone), and `image-ai` and `video-ai` (AI only).
/// Every pipeline with an AI step needs a worker on `q-ai-enrich` started with models.
pub fn builtin() -> Vec<PipelineConfig> {
    vec![
        image(),
        video(),
        image_basic(),
        video_basic(),
        anb_video(),
        image_ai(),
        video_ai(),
    ]
}

fn pipeline(name: &str, steps: Vec<PipelineStep>) -> PipelineConfig {
    PipelineConfig {
        name: name.into(),
        steps,
    }
}

/// Renditions and filters beside detection and moderation; a flagged image stops before
/// redaction and delivery, as in `image-ai`.
fn image() -> PipelineConfig {
    let steps = vec![
        ingest(),
        image_renditions(),
        image_filters(),
        detect_objects(),
        moderate_faces(),
        redact_faces(),
        deliver(&["renditions", "filters", "detect", "redact"]),
    ];
    pipeline("image", steps)
}

/// 720p, poster and preview beside keyframe detection and transcription.
fn video() -> PipelineConfig {
    let steps = vec![
        ingest(),
        video_transcode(),
        video_poster(),
        video_preview(),
        detect_keyframes(),
        transcribe_speech(),
        deliver(&["transcode", "poster", "preview", "detect", "transcribe"]),
    ];
    pipeline("video", steps)
}

fn image_basic() -> PipelineConfig {
    let steps = vec![
        ingest(),
        image_renditions(),
        image_filters(),
        deliver(&["renditions", "filters"]),
    ];
    pipeline("image-basic", steps)
}

fn video_basic() -> PipelineConfig {
    let steps = vec![
        ingest(),
        video_transcode(),
        video_poster(),
        video_preview(),
        deliver(&["transcode", "poster", "preview"]),
    ];
    pipeline("video-basic", steps)
}

fn anb_video() -> PipelineConfig {
    let spec = json!({
        "trim": { "start_s": 0.0, "max_duration_s": 30.0 },
        "watermark": { "resource": "logo.png" },
        "intro": { "resource": "intro.mp4" },
        "outro": { "resource": "outro.mp4" },
    });
    let transcode = step(
        "transcode",
        Q_TRANSCODE,
        "video.transcode",
        &["ingest"],
        spec,
    );
    pipeline(
        "anb-video",
        vec![ingest(), transcode, deliver(&["transcode"])],
    )
}

/// Detection and moderation side by side; redaction only once moderation passed (or an
/// admin released the asset), so a flagged asset is neither redacted nor delivered.
fn image_ai() -> PipelineConfig {
    let steps = vec![
        ingest(),
        detect_objects(),
        moderate_faces(),
        redact_faces(),
        deliver(&["detect", "redact"]),
    ];
    pipeline("image-ai", steps)
}

fn video_ai() -> PipelineConfig {
    let steps = vec![
        ingest(),
        detect_keyframes(),
        transcribe_speech(),
        deliver(&["detect", "transcribe"]),
    ];
    pipeline("video-ai", steps)
}

/// Three renditions: large JPEG, medium WebP, square-ish thumbnail.
fn image_renditions() -> PipelineStep {
    let renditions = json!({ "renditions": [
        { "name": "large", "ops": [{ "op": "resize", "width": 1920, "height": 1920, "fit": "contain" }],
          "format": "jpeg", "quality": 85 },
        { "name": "medium", "ops": [{ "op": "resize", "width": 1280, "height": 1280, "fit": "contain" }],
          "format": "webp" },
        { "name": "thumb", "ops": [{ "op": "thumbnail", "size": 320 }], "format": "jpeg", "quality": 80 },
    ]});
    step(
        "renditions",
        Q_TRANSCODE,
        "image.render",
        &["ingest"],
        renditions,
    )
}

/// One filtered PNG: grayscale, blur, edges, brightness.
fn image_filters() -> PipelineStep {
    let filters = json!({ "renditions": [
        { "name": "filtered", "ops": [
            { "op": "resize", "width": 1280, "height": 1280, "fit": "contain" },
            { "op": "grayscale" }, { "op": "blur", "sigma": 1.5 },
            { "op": "edges" }, { "op": "brightness", "delta": 20 },
        ], "format": "png" },
    ]});
    step("filters", Q_TRANSCODE, "image.render", &["ingest"], filters)
}

fn video_transcode() -> PipelineStep {
    step(
        "transcode",
        Q_TRANSCODE,
        "video.transcode",
        &["ingest"],
        json!({}),
    )
}

fn video_poster() -> PipelineStep {
    step(
        "poster",
        Q_TRANSCODE,
        "video.poster",
        &["ingest"],
        json!({ "width": 640 }),
    )
}

fn video_preview() -> PipelineStep {
    step(
        "preview",
        Q_TRANSCODE,
        "video.preview",
        &["ingest"],
        json!({ "start_s": 0.0, "duration_s": 5.0, "height": 360 }),
    )
}

/// Object detection (YOLO11n `objects`) on an image.
fn detect_objects() -> PipelineStep {
    step(
        "detect",
        Q_AI_ENRICH,
        "ai.detect",
        &["ingest"],
        json!({ "model": "objects" }),
    )
}

/// Object detection on keyframes: one frame every 2 s, at most 60.
fn detect_keyframes() -> PipelineStep {
    step(
        "detect",
        Q_AI_ENRICH,
        "ai.detect",
        &["ingest"],
        json!({ "model": "objects", "every_s": 2.0, "max_frames": 60 }),
    )
}

fn moderate_faces() -> PipelineStep {
    step(
        "moderate",
        Q_AI_ENRICH,
        "ai.moderate",
        &["ingest"],
        json!({ "model": "faces" }),
    )
}

/// Face redaction, after moderation only.
fn redact_faces() -> PipelineStep {
    step(
        "redact",
        Q_AI_ENRICH,
        "ai.redact_faces",
        &["moderate"],
        json!({ "model": "faces" }),
    )
}

/// Speech to text (Whisper tiny.en, with word timings).
fn transcribe_speech() -> PipelineStep {
    step(
        "transcribe",
        Q_AI_ENRICH,
        "ai.transcribe",
        &["ingest"],
        json!({ "model": "tiny.en", "words": true }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_pipelines_are_valid_runs() {
        for pipeline in builtin() {
            let run = pipeline.run(&json!({"key": "uploads/x/a"}), json!({}), &Map::new());
            assert_eq!(
                flotilla_core::validate_run(&run),
                Ok(()),
                "{}",
                pipeline.name
            );
        }
    }

    #[test]
    fn overrides_replace_params_of_their_step_only() {
        let pipeline = anb_video();
        let overrides = json!({"transcode": {"trim": {"start_s": 0.0, "max_duration_s": 5.0}}});
        let run = pipeline.run(
            &json!({"key": "k"}),
            json!({}),
            overrides.as_object().unwrap(),
        );
        let transcode = &run.steps[1].job.payload;
        assert_eq!(transcode["trim"]["max_duration_s"], 5.0);
        assert_eq!(transcode["watermark"]["resource"], "logo.png");
        assert_eq!(transcode["input"]["key"], "k");
        assert_eq!(run.steps[0].job.payload, json!({"input": {"key": "k"}}));
    }

    fn steps_of(pipeline: &PipelineConfig) -> Vec<(&str, &str, Vec<&str>)> {
        pipeline
            .steps
            .iter()
            .map(|s| {
                let after = s.after.iter().map(String::as_str).collect();
                (s.name.as_str(), s.kind.as_str(), after)
            })
            .collect()
    }

    #[test]
    fn image_ai_moderates_before_redacting_and_delivering() {
        let pipeline = image_ai();
        assert_eq!(
            steps_of(&pipeline),
            [
                ("ingest", "media.ingest", vec![]),
                ("detect", "ai.detect", vec!["ingest"]),
                ("moderate", "ai.moderate", vec!["ingest"]),
                ("redact", "ai.redact_faces", vec!["moderate"]),
                ("deliver", "media.distribute", vec!["detect", "redact"]),
            ]
        );
        let ai: Vec<&str> = pipeline
            .steps
            .iter()
            .filter(|s| s.kind.starts_with("ai."))
            .map(|s| s.queue.as_str())
            .collect();
        assert_eq!(ai, [Q_AI_ENRICH; 3]);
        assert_eq!(pipeline.steps[1].params["model"], "objects");
        assert_eq!(pipeline.steps[2].params["model"], "faces");
    }

    #[test]
    fn video_ai_samples_keyframes_every_two_seconds_and_transcribes() {
        let pipeline = video_ai();
        assert_eq!(
            steps_of(&pipeline),
            [
                ("ingest", "media.ingest", vec![]),
                ("detect", "ai.detect", vec!["ingest"]),
                ("transcribe", "ai.transcribe", vec!["ingest"]),
                ("deliver", "media.distribute", vec!["detect", "transcribe"]),
            ]
        );
        let detect = &pipeline.steps[1].params;
        assert_eq!(
            (&detect["every_s"], &detect["max_frames"]),
            (&json!(2.0), &json!(60))
        );
    }

    #[test]
    fn issue_8_image_runs_transcoding_and_ai_in_parallel_joining_before_delivery() {
        assert_eq!(
            steps_of(&image()),
            [
                ("ingest", "media.ingest", vec![]),
                ("renditions", "image.render", vec!["ingest"]),
                ("filters", "image.render", vec!["ingest"]),
                ("detect", "ai.detect", vec!["ingest"]),
                ("moderate", "ai.moderate", vec!["ingest"]),
                ("redact", "ai.redact_faces", vec!["moderate"]),
                (
                    "deliver",
                    "media.distribute",
                    vec!["renditions", "filters", "detect", "redact"]
                ),
            ]
        );
    }

    #[test]
    fn issue_8_video_runs_transcoding_keyframes_and_speech_joining_before_delivery() {
        assert_eq!(
            steps_of(&video()),
            [
                ("ingest", "media.ingest", vec![]),
                ("transcode", "video.transcode", vec!["ingest"]),
                ("poster", "video.poster", vec!["ingest"]),
                ("preview", "video.preview", vec!["ingest"]),
                ("detect", "ai.detect", vec!["ingest"]),
                ("transcribe", "ai.transcribe", vec!["ingest"]),
                (
                    "deliver",
                    "media.distribute",
                    vec!["transcode", "poster", "preview", "detect", "transcribe"]
                ),
            ]
        );
    }

    /// The steps of `pipeline` on `queue`.
    fn on_queue<'a>(pipeline: &'a PipelineConfig, queue: &str) -> Vec<&'a PipelineStep> {
        pipeline.steps.iter().filter(|s| s.queue == queue).collect()
    }

    #[test]
    fn the_full_pipelines_are_the_basic_ones_plus_the_ai_ones() {
        for (full, basic, ai) in [
            (image(), image_basic(), image_ai()),
            (video(), video_basic(), video_ai()),
        ] {
            assert_eq!(
                on_queue(&full, Q_TRANSCODE),
                on_queue(&basic, Q_TRANSCODE),
                "{}",
                full.name
            );
            assert_eq!(
                on_queue(&full, Q_AI_ENRICH),
                on_queue(&ai, Q_AI_ENRICH),
                "{}",
                full.name
            );
            assert!(on_queue(&basic, Q_AI_ENRICH).is_empty(), "{}", basic.name);
        }
    }

    #[test]
    fn the_basic_pipelines_deliver_after_transcoding_only() {
        assert_eq!(
            steps_of(&image_basic()).last().unwrap().2,
            ["renditions", "filters"]
        );
        assert_eq!(
            steps_of(&video_basic()).last().unwrap().2,
            ["transcode", "poster", "preview"]
        );
        let names: Vec<String> = builtin().into_iter().map(|p| p.name).collect();
        assert_eq!(
            names,
            [
                "image",
                "video",
                "image-basic",
                "video-basic",
                "anb-video",
                "image-ai",
                "video-ai"
            ]
        );
    }

    #[test]
    fn the_ai_queue_has_a_long_lease_a_timeout_and_few_attempts() {
        let queue = default_media_queue(Q_AI_ENRICH);
        assert_eq!(queue.lease, Duration::from_secs(300));
        assert_eq!(queue.timeout, Some(Duration::from_secs(1800)));
        assert_eq!(queue.retry.max_attempts(), 3);
        assert!(queue.validate().is_ok());
        let ingest = default_media_queue(Q_INGEST);
        assert!(queue.lease > ingest.lease);
    }

    #[test]
    fn the_ai_pipelines_bring_their_queue_into_the_server() {
        let config = crate::ServerConfig::default();
        let names: Vec<String> = config
            .queues_to_create()
            .into_iter()
            .map(|q| q.name)
            .collect();
        assert!(names.iter().any(|n| n == Q_AI_ENRICH), "{names:?}");
        let ai = config
            .queues_to_create()
            .into_iter()
            .find(|q| q.name == Q_AI_ENRICH)
            .unwrap();
        assert_eq!(ai, default_media_queue(Q_AI_ENRICH));
    }
}
