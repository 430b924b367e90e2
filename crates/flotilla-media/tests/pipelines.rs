//! The built-in transcoding pipelines (`image-basic`, `video-basic`, `anb-video`) end to
//! end: uploads over HTTP to a real server, the media handlers in a real worker (polling
//! over HTTP), real FFmpeg and real image codecs, and the outputs probed. Media is
//! generated here with FFmpeg's test sources. The worker runs no AI handlers, so the full
//! `image` and `video` pipelines are tested in `enrich.rs`.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{Rig, ffmpeg, output_names as outputs};
use flotilla_objects::{ObjectKey, Objects};
use flotilla_video::Ffmpeg;
use serde_json::json;

/// This file's rigs: a worker with the media handlers on every media queue but AI.
impl Rig {
    async fn start() -> Rig {
        Rig::start_with(None).await
    }

    /// A rig whose worker delivers to these targets.
    async fn start_with(targets: Option<flotilla_distribute::Distributor>) -> Rig {
        let queues = ["q-ingest", "q-transcode", "q-distribution"];
        Rig::launch(&queues, 2, |media| {
            if let Some(distributor) = targets {
                media.distributor = distributor;
            }
        })
        .await
    }

    async fn resource(&self, name: &str, file: &Path) {
        let key = ObjectKey::resource(name).unwrap();
        self.objects.put_file(&key, file).await.unwrap();
    }
}

fn clip(path: &Path, size: &str, seconds: &str, audio: bool) {
    let video = format!("testsrc2=size={size}:rate=25");
    let mut args = vec!["-f", "lavfi", "-i", &video];
    if audio {
        args.extend(["-f", "lavfi", "-i", "sine=frequency=440"]);
    }
    let path = path.to_str().unwrap();
    args.extend([
        "-t",
        seconds,
        "-pix_fmt",
        "yuv420p",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
    ]);
    args.push(path);
    ffmpeg(&args);
}

fn photo(path: &Path, size: &str) {
    let source = format!("testsrc2=size={size}");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &source,
        "-frames:v",
        "1",
        path.to_str().unwrap(),
    ]);
}

async fn probe(file: &Path) -> flotilla_video::MediaInfo {
    Ffmpeg::from_path().unwrap().probe(file).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_basic_pipeline_makes_renditions_and_filters() {
    let rig = Rig::start().await;
    let input = rig.path("photo.jpg");
    photo(&input, "1600x1200");
    let asset = rig.process(&input, "image-basic", json!({})).await;
    assert_eq!(asset["status"], "processed", "{asset}");
    assert_eq!(
        outputs(&asset),
        ["filtered.png", "large.jpg", "medium.webp", "thumb.jpg"]
    );
    let ingest = &asset["steps"][0]["result"];
    assert_eq!(ingest["type"], "image");
    assert_eq!(ingest["mime"], "image/jpeg");
    assert_eq!(ingest["metadata"]["width"], 1600);
    assert_eq!(ingest["sha256"], asset["sha256"], "checksums recorded");
    assert_eq!(ingest["blake3"].as_str().unwrap().len(), 64);
    let thumb = rig.output(&asset, "thumb.jpg").await;
    let info = flotilla_image::inspect(&thumb, &Default::default()).unwrap();
    assert_eq!((info.width, info.height), (320, 240));
    let medium = rig.output(&asset, "medium.webp").await;
    let info = flotilla_image::inspect(&medium, &Default::default()).unwrap();
    assert_eq!(
        (info.format, info.width),
        (flotilla_image::ImageFormat::Webp, 1280)
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_video_basic_pipeline_makes_720p_poster_and_preview() {
    let rig = Rig::start().await;
    let input = rig.path("clip.mp4");
    clip(&input, "640x480", "3", true);
    let asset = rig.process(&input, "video-basic", json!({})).await;
    assert_eq!(asset["status"], "processed", "{asset}");
    assert_eq!(
        outputs(&asset),
        ["poster.jpg", "preview.mp4", "video-720p.mp4"]
    );
    let video = probe(&rig.output(&asset, "video-720p.mp4").await).await;
    let stream = video.video().unwrap();
    assert_eq!(
        (stream.codec.as_str(), stream.width, stream.height),
        ("h264", Some(1280), Some(720))
    );
    assert_eq!(video.audio().unwrap().codec, "aac");
    let poster = rig.output(&asset, "poster.jpg").await;
    let info = flotilla_image::inspect(&poster, &Default::default()).unwrap();
    assert_eq!(info.width, 640);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_anb_pipeline_trims_letterboxes_watermarks_and_adds_intro_and_outro() {
    let rig = Rig::start().await;
    let (intro, outro, logo) = (
        rig.path("intro.mp4"),
        rig.path("outro.mp4"),
        rig.path("logo.png"),
    );
    clip(&intro, "1280x720", "1", true);
    clip(&outro, "320x240", "1", false);
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=red:size=200x100",
        "-frames:v",
        "1",
        logo.to_str().unwrap(),
    ]);
    rig.resource("intro.mp4", &intro).await;
    rig.resource("outro.mp4", &outro).await;
    rig.resource("logo.png", &logo).await;
    let input = rig.path("talk.mp4");
    clip(&input, "640x480", "5", true);
    // Keep at most the first 3 s (the default is 30 s; this file is shorter than that).
    let params = json!({ "transcode": { "trim": { "start_s": 0, "max_duration_s": 3 } } });
    let asset = rig.process(&input, "anb-video", params).await;
    assert_eq!(asset["status"], "processed", "{asset}");
    let out = rig.output(&asset, "video-720p.mp4").await;
    let info = probe(&out).await;
    let duration = info.duration_s.unwrap();
    assert!(
        (duration - 5.0).abs() < 0.4,
        "1 s intro + 3 s trimmed + 1 s outro, got {duration}"
    );
    let stream = info.video().unwrap();
    assert_eq!((stream.width, stream.height), (Some(1280), Some(720)));
    // A frame of the main part: letterbox bars black, the watermark's corner red.
    let frame = rig.path("frame.rgb");
    ffmpeg(&[
        "-ss",
        "2.5",
        "-i",
        out.to_str().unwrap(),
        "-frames:v",
        "1",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        frame.to_str().unwrap(),
    ]);
    let rgb = std::fs::read(&frame).unwrap();
    let pixel = |x: usize, y: usize| {
        let i = (y * 1280 + x) * 3;
        (rgb[i], rgb[i + 1], rgb[i + 2])
    };
    let (r, g, b) = pixel(10, 360);
    assert!(
        r < 30 && g < 30 && b < 30,
        "left bar is black: {:?}",
        (r, g, b)
    );
    let (r, g, b) = pixel(1280 - 24 - 20, 720 - 24 - 10);
    assert!(
        r > 180 && g < 80 && b < 80,
        "the logo is in the bottom-right corner: {:?}",
        (r, g, b)
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_media_fails_without_retries_and_says_why() {
    let rig = Rig::start().await;
    let good = rig.path("good.jpg");
    photo(&good, "640x480");
    let bytes = std::fs::read(&good).unwrap();
    let truncated = rig.path("truncated.jpg");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let text = rig.path("notes.mp4");
    std::fs::write(&text, "just some text, named like a video").unwrap();
    let empty = rig.path("empty.png");
    std::fs::write(&empty, b"").unwrap();
    // A 15 KB PNG that claims 11000×11000 pixels (121 MP; the limit is 100 MP).
    let bomb = rig.path("bomb.png");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=black:size=11000x11000",
        "-frames:v",
        "1",
        "-pix_fmt",
        "monob",
        bomb.to_str().unwrap(),
    ]);
    assert!(std::fs::metadata(&bomb).unwrap().len() < 100_000);
    let movie = rig.path("movie.mp4");
    clip(&movie, "320x240", "2", true);
    let movie_bytes = std::fs::read(&movie).unwrap();
    let cut = rig.path("cut.mp4");
    std::fs::write(&cut, &movie_bytes[..movie_bytes.len() / 2]).unwrap();
    for (file, name, pipeline, says) in [
        (&truncated, "truncated.jpg", "image-basic", "truncated"),
        (&bomb, "bomb.png", "image-basic", "100000000"),
        (&cut, "cut.mp4", "video-basic", "truncated or corrupt"),
        (&text, "notes.mp4", "video-basic", "unsupported file type"),
        (&empty, "empty.png", "image-basic", "empty"),
    ] {
        let asset = rig.process(file, pipeline, json!({})).await;
        assert_eq!(asset["status"], "failed", "{name}: {asset}");
        let ingest = &asset["steps"][0];
        assert_eq!(ingest["state"], "failed", "{name}");
        assert_eq!(ingest["attempt"], 1, "{name}: not retried");
        let error = ingest["error"].as_str().unwrap();
        assert!(error.contains(says), "{name}: {error}");
    }
    rig.stop().await;
}

/// HLS as an option: a run of `video.transcode` then `video.hls` (created with
/// `POST /v1/runs`) segments the 720p output into a playlist and segments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_segments_the_transcoded_video() {
    let rig = Rig::start().await;
    let input = rig.path("clip.mp4");
    clip(&input, "640x360", "6", true);
    let objects = Objects::local(&rig.server.objects_dir).unwrap();
    let key = ObjectKey::upload("u1", "clip.mp4");
    objects.put_file(&key, &input).await.unwrap();
    let source = serde_json::json!({"key": key.as_str(), "name": "clip.mp4", "upload": "u1"});
    let run = serde_json::json!({
        "pipeline": "hls",
        "steps": [
            {"name": "transcode", "job": {"queue": "q-transcode", "kind": "video.transcode", "payload": {"input": source}}},
            {"name": "hls", "after": ["transcode"], "job": {"queue": "q-transcode", "kind": "video.hls", "payload": {"input": source, "segment_s": 2}}}
        ]
    });
    let done = rig.run(&run).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let outputs = done["steps"][1]["result"]["outputs"].as_array().unwrap();
    assert_eq!(outputs[0]["name"], "hls/playlist.m3u8");
    assert!(
        outputs.len() >= 3,
        "a playlist and at least two segments: {outputs:?}"
    );
    let playlist = rig
        .server
        .objects_dir
        .join(outputs[0]["key"].as_str().unwrap());
    let text = std::fs::read_to_string(&playlist).unwrap();
    for segment in &outputs[1..] {
        let name = segment["name"].as_str().unwrap().trim_start_matches("hls/");
        assert!(text.contains(name), "{name} in {text}");
        let file = rig
            .server
            .objects_dir
            .join(segment["key"].as_str().unwrap());
        assert_eq!(
            file.parent(),
            playlist.parent(),
            "segments beside the playlist"
        );
    }
    rig.stop().await;
}

/// Delivery to an HTTP endpoint that answers 503 to its first two requests: the deliver
/// step fails retryably, the queue retries it with backoff, and the third attempt delivers
/// every output; the asset ends processed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_that_fails_twice_is_retried_and_lands() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let requests = Arc::new(AtomicUsize::new(0));
    let received = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (count, store) = (requests.clone(), received.clone());
    let app = axum::Router::new().route(
        "/upload/{*name}",
        axum::routing::put(
            move |axum::extract::Path(name): axum::extract::Path<String>,
                  body: axum::body::Bytes| {
                let (count, store) = (count.clone(), store.clone());
                async move {
                    if count.fetch_add(1, Ordering::SeqCst) < 2 {
                        return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                    }
                    assert!(!body.is_empty());
                    store.lock().unwrap().push(name);
                    axum::http::StatusCode::OK
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let target: flotilla_distribute::TargetConfig = serde_json::from_value(serde_json::json!({
        "type": "http", "url": format!("http://{addr}/upload/{{name}}"), "method": "PUT",
        "allow_private": true,
    }))
    .unwrap();
    let targets = std::collections::BTreeMap::from([("web".to_owned(), target)]);
    let distributor = flotilla_distribute::Distributor::new(targets).unwrap();
    let rig = Rig::start_with(Some(distributor)).await;
    let input = rig.path("photo.jpg");
    photo(&input, "800x600");
    let params = json!({ "deliver": { "targets": ["web"] } });
    let asset = rig.process(&input, "image-basic", params).await;
    assert_eq!(asset["status"], "processed", "{asset}");
    let deliver = &asset["steps"][3];
    assert_eq!(
        deliver["attempt"], 3,
        "two failed attempts, then success: {deliver}"
    );
    assert_eq!(deliver["result"]["deliveries"].as_array().unwrap().len(), 4);
    let mut names: Vec<String> = received
        .lock()
        .unwrap()
        .iter()
        .map(|n| n.rsplit('/').next().unwrap().to_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["filtered.png", "large.jpg", "medium.webp", "thumb.jpg"]
    );
    rig.stop().await;
}
