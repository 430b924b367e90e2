//! The built-in media handlers that `flotilla worker` runs, one job kind each:
//!
//! | kind | queue | what it does |
//! |---|---|---|
//! | `media.ingest` | `q-ingest` | SHA-256 and BLAKE3, type by content, image/EXIF or ffprobe metadata, limits |
//! | `image.render` | `q-transcode` | renditions and filter chains (`flotilla-image`) |
//! | `video.transcode` | `q-transcode` | 720p H.264/AAC, trim, watermark, intro/outro (`flotilla-video`) |
//! | `video.poster`, `video.preview` | `q-transcode` | a poster frame, a short clip |
//! | `video.hls` | `q-transcode` | HLS playlist and segments of a step's MP4 (or the upload) |
//! | `media.distribute` | `q-distribution` | every output of the steps before it, to named targets |
//! | `ai.detect` | `q-ai-enrich` | objects in an image or a video's keyframes, per-label summary, `detections.json` |
//! | `ai.moderate` | `q-ai-enrich` | flags (fails) an asset whose configured classes score over a threshold, unless released |
//! | `ai.redact_faces` | `q-ai-enrich` | a copy of an image with every detected face blurred |
//! | `ai.transcribe` | `q-ai-enrich` | speech to text (Whisper): `transcript.json`, `.srt`, `.vtt` |
//!
//! The `ai.*` handlers ([`AI_KINDS`]) are registered only when the worker loaded models
//! ([`Media::enrich`], [`Enrichment::load`]); see the `enrich` module.
//!
//! Each job is a step of a pipeline run over an uploaded asset (see
//! `flotilla_server::pipelines`): its payload names the uploaded object (`input.key`),
//! its parameters, and, under `run.inputs`, its dependencies' results. A handler downloads
//! what it reads into a scratch directory of its own (removed when it ends), writes its
//! files to `processed/<upload>/<name>` in the object store, and returns them as
//! `outputs: [{name, key, size, sha256, …}]`, which the asset API lists and serves.
//!
//! Hostile input fails non-retryably with a reason a person understands (the libraries'
//! typed errors say which); a store or network hiccup fails retryably.

mod distribute;
mod enrich;
mod image;
mod ingest;
mod step;
mod transcribe;
mod video;

use std::path::PathBuf;
use std::sync::Arc;

use flotilla_distribute::Distributor;
use flotilla_objects::Objects;
use flotilla_video::Ffmpeg;
use flotilla_worker::WorkerBuilder;

pub use enrich::{
    DEFAULT_MODERATED_CLASSES, DetectorModel, Enrichment, GpuSlot, GpuSlots, MAX_FRAMES_LIMIT,
    RELEASE_OBJECT, detect_gpus,
};
pub use ingest::IngestLimits;
pub use transcribe::Speech;

/// What the handlers share: the object store, FFmpeg, the delivery targets, limits.
pub struct Media {
    /// Where uploads, resources and outputs live.
    pub objects: Objects,
    /// FFmpeg and ffprobe; `None` when they are not installed (video jobs then fail
    /// retryably, saying so, and ingest cannot read audio/video metadata).
    pub ffmpeg: Option<Ffmpeg>,
    /// Delivery targets by name.
    pub distributor: Distributor,
    /// Where jobs make their scratch directories (the system's temporary directory by
    /// default).
    pub scratch: PathBuf,
    /// Limits ingest enforces.
    pub limits: IngestLimits,
    /// The models loaded at start for the `ai.*` steps; `None` on a worker without them
    /// (those kinds are then not registered).
    pub enrich: Option<Arc<Enrichment>>,
    /// The speech models started for `ai.transcribe`; `None` on a worker without them
    /// (the kind is then not registered).
    pub speech: Option<Arc<Speech>>,
}

impl Media {
    /// Handlers over `objects` with no delivery targets, FFmpeg from the `PATH` when
    /// found, and default limits.
    pub fn new(objects: Objects) -> Self {
        Self {
            objects,
            ffmpeg: Ffmpeg::from_path().ok(),
            distributor: Distributor::new(Default::default()).expect("no targets is valid"),
            scratch: std::env::temp_dir(),
            limits: IngestLimits::default(),
            enrich: None,
            speech: None,
        }
    }
}

/// The job kinds [`register`] adds.
pub const KINDS: [&str; 7] = [
    "media.ingest",
    "image.render",
    "video.transcode",
    "video.poster",
    "video.preview",
    "video.hls",
    "media.distribute",
];

/// The job kind [`register`] adds when [`Media::speech`] runs models.
pub const SPEECH_KIND: &str = "ai.transcribe";

/// The job kinds [`register`] adds when [`Media::enrich`] holds models.
pub const AI_KINDS: [&str; 3] = ["ai.detect", "ai.moderate", "ai.redact_faces"];

/// Adds every media handler to `builder`, and the AI ones ([`AI_KINDS`]) when
/// [`Media::enrich`] holds models.
pub fn register(builder: WorkerBuilder, media: Arc<Media>) -> WorkerBuilder {
    let builder = match &media.enrich {
        Some(enrich) => enrich::register(builder, &media, enrich),
        None => builder,
    };
    let builder = match &media.speech {
        Some(_) => {
            let m = media.clone();
            builder.handler("ai.transcribe", move |ctx| transcribe::run(m.clone(), ctx))
        }
        None => builder,
    };
    let m = media.clone();
    let builder = builder.handler("media.ingest", move |ctx| ingest::run(m.clone(), ctx));
    let m = media.clone();
    let builder = builder.handler("image.render", move |ctx| image::render(m.clone(), ctx));
    let m = media.clone();
    let builder = builder.handler("video.transcode", move |ctx| {
        video::transcode(m.clone(), ctx)
    });
    let m = media.clone();
    let builder = builder.handler("video.poster", move |ctx| video::poster(m.clone(), ctx));
    let m = media.clone();
    let builder = builder.handler("video.preview", move |ctx| video::preview(m.clone(), ctx));
    let m = media.clone();
    let builder = builder.handler("video.hls", move |ctx| video::hls(m.clone(), ctx));
    let m = media;
    builder.handler("media.distribute", move |ctx| {
        distribute::run(m.clone(), ctx)
    })
}
