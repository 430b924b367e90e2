//! The AI enrichment steps end to end: uploads over HTTP to a real server running the
//! `image-ai` and `video-ai` pipelines (AI only) and the full `image` and `video` ones
//! (transcoding and AI in parallel), a real worker with the media and AI handlers and
//! the real default models (YOLO11n `objects`, NudeNet `faces`) on ONNX Runtime, and real
//! photographs that the installer takes from the scikit-image wheel (chelsea: a cat;
//! astronaut: a woman's face).
//!
//! The models are installed once per machine (`flotilla_ai::install_defaults`, into
//! `.flotilla/models` or `$FLOTILLA_MODELS_DIR`) and loaded once per test process, as a
//! worker loads them once at start.
//!
//! The `issue_8_*` tests feed bad inputs end to end: an audio stream with no samples, and a
//! Whisper helper killed with SIGKILL while it transcribes (found through `/proc`, since
//! `Speech` keeps its helpers' ids to itself).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::{
    FAST_H264_AAC, Rig, ffmpeg, installed, models_config, models_dir, output_names, step,
};
use flotilla_ai::{ModelConfig, ModelKind};
use flotilla_media::{DEFAULT_MODERATED_CLASSES, Enrichment, RELEASE_OBJECT, Speech};
use flotilla_objects::ObjectKey;
use serde_json::{Value, json};

/// The models, loaded once for every worker of this process.
fn enrichment() -> Arc<Enrichment> {
    static LOADED: OnceLock<Arc<Enrichment>> = OnceLock::new();
    LOADED
        .get_or_init(|| Arc::new(Enrichment::load(&models_config()).expect("loading the models")))
        .clone()
}

/// Whisper tiny.en's configuration (installed once, like the detectors).
async fn tiny_en() -> flotilla_speech::SpeechModel {
    let dir = models_dir();
    let installed = tokio::task::spawn_blocking(move || flotilla_speech::install_defaults(&dir))
        .await
        .unwrap()
        .expect("installing the speech models");
    flotilla_speech::SpeechModel::from_installed(&installed, "tiny.en").unwrap()
}

/// Whisper tiny.en behind its helper.
async fn speech() -> Speech {
    Speech::start(&[tiny_en().await])
        .await
        .expect("starting tiny.en")
}

fn sample(name: &str) -> PathBuf {
    installed().sample(name)
}

/// What the spoken test videos say: a sentence Whisper tiny.en hears right from espeak-ng.
const SPOKEN: &str = "hello world, this is a test of the flotilla transcription";

/// This file's rigs: a worker with the media and AI handlers on every built-in queue
/// (ingest, transcode, AI enrichment, distribution).
impl Rig {
    async fn start() -> Rig {
        Rig::start_with(speech().await).await
    }

    /// A rig whose worker runs `speech` for `ai.transcribe`.
    async fn start_with(speech: Speech) -> Rig {
        let enrich = tokio::task::spawn_blocking(enrichment).await.unwrap();
        let queues = ["q-ingest", "q-transcode", "q-ai-enrich", "q-distribution"];
        Rig::launch(&queues, 2, |media| {
            media.enrich = Some(enrich);
            media.speech = Some(Arc::new(speech));
        })
        .await
    }

    /// Runs one `q-ai-enrich` step of `kind` over `file` (no ingest before it), to the end.
    async fn run_step(&self, file: &Path, kind: &str, params: Value) -> Value {
        let name = file.file_name().unwrap().to_str().unwrap();
        let key = ObjectKey::upload("direct", name);
        self.objects.put_file(&key, file).await.unwrap();
        let mut payload = params;
        payload["input"] = json!({ "key": key.as_str(), "name": name, "upload": "direct" });
        let run = json!({ "pipeline": "direct", "steps": [
            { "name": "step", "job": { "queue": "q-ai-enrich", "kind": kind, "payload": payload } },
        ]});
        self.run(&run).await
    }
}

/// Issue 8, item 7, on a machine without a GPU: a worker given two GPUs loads the models
/// twice, each copy falls back to the CPU (CUDA cannot be used with this runtime), and a
/// job takes a GPU of its own: with GPU `held` taken, the job runs on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_8_two_gpu_slots_fall_back_to_the_cpu_and_each_job_takes_a_free_one() {
    let mut config = models_config();
    for model in &mut config.models {
        model.device = flotilla_ai::Device::Auto;
    }
    let load = move || Enrichment::load_on_gpus(&config, 2);
    let enrich = tokio::task::spawn_blocking(load).await.unwrap();
    let enrich = Arc::new(enrich.expect("CUDA unusable here: both copies on the CPU"));
    let slots = enrich.gpus().expect("two GPU slots").clone();
    assert_eq!(slots.free(), 2);
    let objects = enrich.detector("objects").unwrap().clone();
    let flotilla_media::DetectorModel::Local(local) = objects else {
        panic!("a local detector")
    };
    assert_eq!(local.device().to_string(), "cpu");

    let in_worker = enrich.clone();
    let rig = Rig::launch(&["q-ai-enrich"], 2, |media| media.enrich = Some(in_worker)).await;
    // Hold one GPU, then the other: each time the job runs on the one left free.
    let held = slots.acquire().await;
    let x = u64::from(held.index());
    assert_eq!(detect_on_a_free_gpu(&rig, &slots).await, 1 - x);
    let other = slots.acquire().await;
    assert_eq!(u64::from(other.index()), 1 - x);
    drop(held);
    assert_eq!(detect_on_a_free_gpu(&rig, &slots).await, x);
    drop(other);
    assert_eq!(slots.free(), 2);
    rig.stop().await;
}

/// Runs `ai.detect` on the cat photo; returns the GPU it ran on, checking it found the cat
/// on the CPU and gave the GPU back.
async fn detect_on_a_free_gpu(rig: &Rig, slots: &flotilla_media::GpuSlots) -> u64 {
    let free_before = slots.free();
    let run = rig
        .run_step(&sample("chelsea.png"), "ai.detect", json!({}))
        .await;
    let result = &step(&run, "step")["result"];
    assert!(label(result, "cat").is_some(), "{run}");
    assert_eq!(result["ran_on"]["device"], "cpu", "{run}");
    assert_eq!(slots.free(), free_before, "the job gave its GPU back");
    result["ran_on"]["gpu"].as_u64().expect("a GPU slot")
}

fn label<'a>(result: &'a Value, name: &str) -> Option<&'a Value> {
    result["labels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["label"] == name)
}

/// Asserts a JSON box lies inside a `width` × `height` image and is not empty.
fn assert_inside(b: &Value, width: f64, height: f64) {
    let (x, y) = (b["x"].as_f64().unwrap(), b["y"].as_f64().unwrap());
    let (w, h) = (b["width"].as_f64().unwrap(), b["height"].as_f64().unwrap());
    assert!(x >= 0.0 && y >= 0.0 && w > 0.0 && h > 0.0, "{b}");
    assert!(
        x + w <= width + 0.5 && y + h <= height + 0.5,
        "{b} in {width}x{height}"
    );
}

fn rgb(path: &Path) -> image::RgbImage {
    flotilla_image::decode(path, &Default::default())
        .unwrap()
        .pixels()
        .to_rgb8()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_ai_finds_the_cat_and_passes_moderation() {
    let rig = Rig::start().await;
    let asset = rig
        .process(&sample("chelsea.png"), "image-ai", json!({}))
        .await;
    assert_eq!(asset["status"], "processed", "{asset}");
    assert_eq!(output_names(&asset), ["detections.json", "redacted.jpg"]);
    let detect = &step(&asset, "detect")["result"];
    assert_eq!(
        (&detect["model"], &detect["media"]),
        (&json!("objects"), &json!("image"))
    );
    let (width, height) = rgb(&sample("chelsea.png")).dimensions();
    assert_eq!(
        (&detect["width"], &detect["height"]),
        (&json!(width), &json!(height))
    );
    let cat = label(detect, "cat").unwrap_or_else(|| panic!("no cat in {detect}"));
    assert!(cat["best_score"].as_f64().unwrap() > 0.5, "{cat}");
    assert_inside(&cat["best_box"], f64::from(width), f64::from(height));
    assert!(!detect["detections"].as_array().unwrap().is_empty());
    let file = rig.output(&asset, "detections.json").await;
    let written: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    assert_eq!(
        written["labels"], detect["labels"],
        "detections.json is the result"
    );
    let moderate = &step(&asset, "moderate")["result"];
    assert_eq!(moderate["flagged"], false, "{moderate}");
    let scored: Vec<&str> = moderate["max_scores"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = DEFAULT_MODERATED_CLASSES.to_vec();
    expected.sort();
    assert_eq!(scored, expected);
    assert_eq!(step(&asset, "deliver")["state"], "succeeded");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redaction_blurs_the_face_and_leaves_the_rest_unchanged() {
    let rig = Rig::start().await;
    let original = sample("astronaut.png");
    let params = json!({ "redact": { "format": "png" } });
    let asset = rig.process(&original, "image-ai", params).await;
    assert_eq!(asset["status"], "processed", "{asset}");
    let redact = &step(&asset, "redact")["result"];
    let faces = redact["faces"].as_array().unwrap();
    assert!(
        faces.iter().any(|f| f["label"] == "FACE_FEMALE"),
        "her face is found: {redact}"
    );
    let (before, after) = (
        rgb(&original),
        rgb(&rig.output(&asset, "redacted.png").await),
    );
    assert_eq!(before.dimensions(), after.dimensions());
    let regions: Vec<[u32; 4]> = faces
        .iter()
        .map(|f| {
            let r = &f["region"];
            ["x", "y", "width", "height"].map(|k| r[k].as_u64().unwrap() as u32)
        })
        .collect();
    let blurred = |x: u32, y: u32| {
        regions
            .iter()
            .any(|[rx, ry, w, h]| (*rx..rx + w).contains(&x) && (*ry..ry + h).contains(&y))
    };
    let (mut outside, mut diff, mut inside) = (0u64, 0u64, 0u64);
    for (x, y, p) in after.enumerate_pixels() {
        let q = before.get_pixel(x, y);
        if blurred(x, y) {
            diff +=
                p.0.iter()
                    .zip(q.0)
                    .map(|(a, b)| u64::from(a.abs_diff(b)))
                    .sum::<u64>();
            inside += 3;
        } else {
            assert_eq!(p, q, "({x}, {y}) is outside every face and must not change");
            outside += 1;
        }
    }
    assert!(outside > 0 && inside > 0);
    let mean = diff as f64 / inside as f64;
    assert!(
        mean > 4.0,
        "the face region is blurred: mean change {mean:.2} per channel"
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_ai_summarises_the_cat_across_keyframes() {
    let rig = Rig::start().await;
    let video = rig.path("cat.mp4");
    let still = sample("chelsea.png");
    ffmpeg(&[
        "-loop",
        "1",
        "-i",
        still.to_str().unwrap(),
        "-t",
        "4",
        "-r",
        "25",
        "-vf",
        "scale=450:300,format=yuv420p",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        video.to_str().unwrap(),
    ]);
    let asset = rig.process(&video, "video-ai", json!({})).await;
    assert_eq!(asset["status"], "processed", "{asset}");
    let detect = &step(&asset, "detect")["result"];
    assert_eq!(detect["media"], "video");
    assert!(detect["frames"].as_u64().unwrap() >= 2, "{detect}");
    let cat = label(detect, "cat").unwrap_or_else(|| panic!("no cat in {detect}"));
    assert!(cat["count"].as_u64().unwrap() >= 2, "{cat}");
    let (first, last) = (
        cat["first_seen_s"].as_f64().unwrap(),
        cat["last_seen_s"].as_f64().unwrap(),
    );
    assert!(first < last && last <= 4.0, "{cat}");
    assert!(cat["best_score"].as_f64().unwrap() > 0.5, "{cat}");
    assert_inside(&cat["best_box"], 450.0, 300.0);
    let transcript = &step(&asset, "transcribe")["result"]["transcript"];
    assert_eq!(
        transcript["empty"], true,
        "a video without sound: {transcript}"
    );
    assert!(
        transcript["note"].as_str().unwrap().contains("no audio"),
        "{transcript}"
    );
    assert_eq!(
        output_names(&asset),
        [
            "detections.json",
            "transcript.json",
            "transcript.srt",
            "transcript.vtt"
        ]
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_ai_transcribes_what_is_said_with_subtitles() {
    let rig = Rig::start().await;
    let video = rig.spoken_video(SPOKEN);
    let asset = rig.process(&video, "video-ai", json!({})).await;
    assert_eq!(asset["status"], "processed", "{asset}");
    let transcript = &step(&asset, "transcribe")["result"]["transcript"];
    let text = transcript["text"].as_str().unwrap().to_lowercase();
    assert!(
        text.contains("hello") && text.contains("test"),
        "{transcript}"
    );
    assert_eq!(transcript["language"], "en");
    let srt = std::fs::read_to_string(rig.output(&asset, "transcript.srt").await).unwrap();
    assert!(srt.starts_with("1\n00:00:0"), "{srt}");
    assert!(srt.to_lowercase().contains("hello"), "{srt}");
    let vtt = std::fs::read_to_string(rig.output(&asset, "transcript.vtt").await).unwrap();
    assert!(vtt.starts_with("WEBVTT"), "{vtt}");
    let full: Value = serde_json::from_slice(
        &std::fs::read(rig.output(&asset, "transcript.json").await).unwrap(),
    )
    .unwrap();
    let words = full["segments"][0]["words"].as_array().unwrap();
    assert!(words.len() >= 3, "word timings: {full}");
    assert!(
        words
            .windows(2)
            .all(|w| w[0]["start"].as_f64() <= w[1]["start"].as_f64()),
        "{full}"
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_8_the_image_pipeline_renders_and_finds_the_cat_before_delivery() {
    let rig = Rig::start().await;
    let asset = rig
        .process(&sample("chelsea.png"), "image", json!({}))
        .await;
    assert_eq!(asset["status"], "processed", "{asset}");
    assert_eq!(
        output_names(&asset),
        [
            "detections.json",
            "filtered.png",
            "large.jpg",
            "medium.webp",
            "redacted.jpg",
            "thumb.jpg"
        ],
        "renditions, filters, detections and the redacted copy"
    );
    let detect = &step(&asset, "detect")["result"];
    let cat = label(detect, "cat").unwrap_or_else(|| panic!("no cat in {detect}"));
    assert!(cat["best_score"].as_f64().unwrap() > 0.5, "{cat}");
    assert_eq!(step(&asset, "moderate")["result"]["flagged"], false);
    let thumb = rig.output(&asset, "thumb.jpg").await;
    let info = flotilla_image::inspect(&thumb, &Default::default()).unwrap();
    assert_eq!(info.width.max(info.height), 320, "{info:?}");
    assert_eq!(step(&asset, "deliver")["state"], "succeeded");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_8_the_video_pipeline_transcodes_and_transcribes_what_is_said() {
    let rig = Rig::start().await;
    let video = rig.spoken_video(SPOKEN);
    let asset = rig.process(&video, "video", json!({})).await;
    assert_eq!(asset["status"], "processed", "{asset}");
    assert_eq!(
        output_names(&asset),
        [
            "detections.json",
            "poster.jpg",
            "preview.mp4",
            "transcript.json",
            "transcript.srt",
            "transcript.vtt",
            "video-720p.mp4"
        ]
    );
    let transcoded = rig.output(&asset, "video-720p.mp4").await;
    let info = flotilla_video::Ffmpeg::from_path()
        .unwrap()
        .probe(&transcoded)
        .await
        .unwrap();
    let stream = info.video().unwrap();
    assert_eq!((stream.codec.as_str(), stream.height), ("h264", Some(720)));
    let transcript = &step(&asset, "transcribe")["result"]["transcript"];
    let text = transcript["text"].as_str().unwrap().to_lowercase();
    assert!(
        text.contains("hello") && text.contains("test"),
        "{transcript}"
    );
    assert_eq!(step(&asset, "detect")["result"]["media"], "video");
    assert_eq!(step(&asset, "deliver")["state"], "succeeded");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flagged_asset_stops_before_delivery_until_an_admin_releases_it() {
    let rig = Rig::start().await;
    let params = json!({ "moderate": { "classes": ["FACE_FEMALE"], "threshold": 0.5 } });
    let asset = rig
        .process(&sample("astronaut.png"), "image-ai", params)
        .await;
    assert_eq!(asset["status"], "failed", "{asset}");
    let moderate = step(&asset, "moderate");
    assert_eq!(
        (&moderate["state"], &moderate["attempt"]),
        (&json!("failed"), &json!(1))
    );
    let error = moderate["error"].as_str().unwrap();
    assert!(
        error.contains("flagged by moderation: FACE_FEMALE"),
        "{error}"
    );
    assert!(
        error.contains("(threshold 0.5); an admin can release it"),
        "{error}"
    );
    for later in ["redact", "deliver"] {
        let s = step(&asset, later);
        assert_eq!(
            (&s["state"], &s["job_id"]),
            (&json!("waiting"), &Value::Null),
            "{later}"
        );
    }
    // An admin releases it: the API records the release and runs the step again.
    let release = format!("{}/v1/assets/{}/release", rig.server.url, asset["id"]);
    let resp = reqwest::Client::new().post(release).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let upload = asset["key"].as_str().unwrap().split('/').nth(1).unwrap();
    let recorded = ObjectKey::processed(upload, RELEASE_OBJECT);
    assert!(
        rig.objects.head(&recorded).await.is_ok(),
        "the release is recorded"
    );
    let asset = rig.wait_asset(&asset["id"]).await;
    assert_eq!(asset["status"], "processed", "{asset}");
    let result = &step(&asset, "moderate")["result"];
    assert_eq!(
        (&result["flagged"], &result["released"]),
        (&json!(true), &json!(true))
    );
    assert_eq!(result["release"]["released_by"], "admin");
    assert!(result["max_scores"]["FACE_FEMALE"].as_f64().unwrap() >= 0.5);
    assert_eq!(step(&asset, "deliver")["state"], "succeeded");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_models_classes_and_inputs_fail_without_retries_and_say_why() {
    let rig = Rig::start().await;
    let params = json!({
        "detect": { "model": "coco" },
        "moderate": { "classes": ["FACE"] },
    });
    let asset = rig
        .process(&sample("chelsea.png"), "image-ai", params)
        .await;
    assert_eq!(asset["status"], "failed", "{asset}");
    let detect = step(&asset, "detect");
    assert_eq!(detect["attempt"], 1);
    let error = detect["error"].as_str().unwrap();
    assert!(
        error.contains("model `coco` is not loaded on this worker; loaded models: faces, objects"),
        "{error}"
    );
    let error = step(&asset, "moderate")["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        error.contains("class `FACE` is not one of model `faces`'s classes")
            && error.contains("FACE_FEMALE"),
        "{error}"
    );

    let png = std::fs::read(sample("coffee.png")).unwrap();
    let truncated = rig.path("truncated.png");
    std::fs::write(&truncated, &png[..png.len() / 3]).unwrap();
    let run = rig.run_step(&truncated, "ai.detect", json!({})).await;
    let failed = step(&run, "step");
    assert_eq!(
        (&failed["state"], &failed["attempt"]),
        (&json!("failed"), &json!(1)),
        "{run}"
    );
    assert!(
        failed["error"].as_str().unwrap().contains("truncated.png"),
        "{run}"
    );

    let video = rig.path("clip.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=25",
        "-t",
        "1",
        "-pix_fmt",
        "yuv420p",
        video.to_str().unwrap(),
    ]);
    let run = rig.run_step(&video, "ai.redact_faces", json!({})).await;
    let failed = step(&run, "step");
    assert_eq!(failed["attempt"], 1, "{run}");
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("redacts images only, and clip.mp4 is a video"),
        "{error}"
    );
    rig.stop().await;
}

#[test]
fn loading_skips_speech_models_and_reports_a_missing_file_by_path() {
    let mut config = models_config();
    config.models.push(ModelConfig {
        kind: ModelKind::Speech,
        classes: Default::default(),
        ..ModelConfig::detector("whisper", "/nowhere/whisper", Default::default(), 640)
    });
    let loaded = Enrichment::load(&config).unwrap();
    assert_eq!(loaded.names(), ["faces", "objects"]);
    let faces = loaded.detector("faces").unwrap().classes().to_vec();
    for class in DEFAULT_MODERATED_CLASSES {
        assert!(faces.iter().any(|c| c == class), "{class} in {faces:?}");
    }
    let mut broken = models_config();
    broken.models[0].path = PathBuf::from("/nowhere/yolo.onnx");
    let error = Enrichment::load(&broken).unwrap_err().to_string();
    assert!(
        error.contains("/nowhere/yolo.onnx") && error.contains("flotilla models install"),
        "{error}"
    );
    config.models.retain(|m| m.kind == ModelKind::Speech);
    let error = Enrichment::load(&config).unwrap_err().to_string();
    assert!(error.contains("no model of kind `detector`"), "{error}");
}

/// The number of packets ffprobe reads from each audio stream of `file`.
fn audio_packets(file: &Path) -> Vec<String> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_packets", "-select_streams", "a"])
        .args(["-show_entries", "stream=nb_read_packets", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .expect("ffprobe is installed (scripts/prereqs.sh)");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().map(|l| l.trim().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_8_an_audio_stream_without_samples_gives_an_empty_transcript() {
    let rig = Rig::start().await;
    // Two seconds of video with an AAC stream trimmed to nothing: Matroska keeps the
    // stream's header, so ffprobe lists an audio stream that has no packets at all.
    let video = rig.path("mute.mkv");
    let (pattern, no_samples) = (
        "testsrc=size=320x240:rate=25",
        "anullsrc=r=44100:cl=mono,atrim=end_sample=0",
    );
    let inputs = [
        "-f", "lavfi", "-i", pattern, "-f", "lavfi", "-i", no_samples,
    ];
    let streams = ["-map", "0:v", "-map", "1:a", "-t", "2"];
    ffmpeg(
        &[
            &inputs[..],
            &streams,
            &FAST_H264_AAC,
            &[video.to_str().unwrap()],
        ]
        .concat(),
    );
    let packets = audio_packets(&video);
    assert!(
        packets.len() == 1 && (packets[0] == "N/A" || packets[0] == "0"),
        "one audio stream without packets: {packets:?}"
    );
    // Documented: a stream with no sound is silence, which succeeds with an empty
    // transcript that says so (flotilla-speech extracts a 0-sample WAV; Whisper finds no
    // speech in it).
    let asset = rig.process(&video, "video-ai", json!({})).await;
    assert_eq!(asset["status"], "processed", "{asset}");
    let transcribe = step(&asset, "transcribe");
    assert_eq!(transcribe["attempt"], 1, "{transcribe}");
    let transcript = &transcribe["result"]["transcript"];
    assert_eq!(
        (
            &transcript["empty"],
            &transcript["segments"],
            &transcript["text"]
        ),
        (&json!(true), &json!(0), &json!("")),
        "{transcript}"
    );
    assert_eq!(transcript["duration_s"].as_f64(), Some(0.0), "{transcript}");
    let note = transcript["note"].as_str().unwrap();
    assert!(note.contains("no speech"), "{note}");
    let srt = std::fs::read_to_string(rig.output(&asset, "transcript.srt").await).unwrap();
    let vtt = std::fs::read_to_string(rig.output(&asset, "transcript.vtt").await).unwrap();
    assert_eq!((srt.as_str(), vtt.as_str()), ("", "WEBVTT\n\n"));
    assert_eq!(step(&asset, "detect")["state"], "succeeded");
    rig.stop().await;
}

/// The ids of this process's children running the Whisper helper on `model_dir`.
fn helper_pids(model_dir: &Path) -> Vec<u32> {
    let me = std::process::id().to_string();
    let model_dir = model_dir.to_str().unwrap();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let (Ok(cmdline), Some(stat)) =
            (std::fs::read(entry.path().join("cmdline")), proc_stat(pid))
        else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let helper = args.iter().any(|a| a.ends_with(b"flotilla_whisper.py"));
        let ours = args.contains(&model_dir.as_bytes());
        if helper && ours && stat.get(1).map(String::as_str) == Some(me.as_str()) {
            pids.push(pid);
        }
    }
    pids
}

/// The fields of `/proc/<pid>/stat` after the command name (state, ppid, ...).
fn proc_stat(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(") ")?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// User plus system CPU time of `pid`, in clock ticks (`None` once it is gone).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let fields = proc_stat(pid)?;
    // utime and stime are fields 14 and 15 of stat; 12 and 13 after the name.
    let (user, system) = (fields.get(11)?, fields.get(12)?);
    Some(user.parse::<u64>().ok()? + system.parse::<u64>().ok()?)
}

/// Waits (bounded) until the idle helper `pid` has used `ticks` more CPU — it is
/// transcribing — and kills it with SIGKILL.
async fn kill_when_busy(pid: u32, ticks: u64) {
    let idle = cpu_ticks(pid).expect("the helper is running");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    while cpu_ticks(pid).expect("the helper is alive until killed") < idle + ticks {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the helper never got busy"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
}

/// A job of a run, read through the jobs API (with its failed attempts' errors).
async fn job_of(rig: &Rig, step: &Value) -> Value {
    let url = format!("{}/v1/jobs/{}", rig.server.url, step["job_id"]);
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_8_a_helper_killed_mid_job_fails_it_retryably_and_the_worker_keeps_serving() {
    // The helper runs the installed tiny.en through a link private to this test, so its
    // command line tells it apart from the helpers of tests running beside it.
    let models = tempfile::tempdir().unwrap();
    let mut model = tiny_en().await;
    let link = models.path().join("tiny.en-killed-mid-job");
    std::os::unix::fs::symlink(&model.model_dir, &link).unwrap();
    model.model_dir = link.clone();
    let speech = Speech::start(&[model]).await.expect("starting tiny.en");
    let rig = Rig::start_with(speech).await;
    let [pid] = helper_pids(&link)[..] else {
        panic!("one helper: {:?}", helper_pids(&link));
    };

    // About forty seconds of speech: the helper works for seconds, long enough to be
    // caught in the middle.
    let long = rig.path("long.wav");
    let text = "hello world, this is a test of the flotilla transcription. ".repeat(6);
    flotilla_speech::samples::espeak(&text, &long)
        .await
        .unwrap();
    let (run, ()) = tokio::join!(
        rig.run_step(&long, "ai.transcribe", json!({})),
        kill_when_busy(pid, 30)
    );
    let transcribe = step(&run, "step");
    assert_eq!(
        (&run["state"], &transcribe["state"], &transcribe["attempt"]),
        (&json!("succeeded"), &json!("succeeded"), &json!(2)),
        "the retry succeeds: {run}"
    );
    let text = transcribe["result"]["transcript"]["text"].as_str().unwrap();
    assert!(text.to_lowercase().contains("hello"), "{text}");
    let job = job_of(&rig, transcribe).await;
    let errors = job["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{job}");
    let error = errors[0]["error"].as_str().unwrap();
    assert_eq!(errors[0]["attempt"], 1, "{job}");
    assert!(
        error.contains("speech helper for `tiny.en` died") && error.contains("signal: 9"),
        "the helper's exit reason: {error}"
    );
    let restarted = helper_pids(&link);
    assert!(
        restarted.len() == 1 && restarted[0] != pid,
        "a new helper: {restarted:?} (killed {pid})"
    );

    // The worker keeps serving: another asset goes through on the first attempt.
    let short = rig.path("short.wav");
    let said = "hello world, this is a test of the flotilla transcription";
    flotilla_speech::samples::espeak(said, &short)
        .await
        .unwrap();
    let run = rig.run_step(&short, "ai.transcribe", json!({})).await;
    let next = step(&run, "step");
    assert_eq!(
        (&next["state"], &next["attempt"]),
        (&json!("succeeded"), &json!(1)),
        "{run}"
    );
    let text = next["result"]["transcript"]["text"].as_str().unwrap();
    assert!(text.to_lowercase().contains("test"), "{text}");
    assert_eq!(helper_pids(&link), restarted, "the same helper serves it");
    rig.stop().await;
}
