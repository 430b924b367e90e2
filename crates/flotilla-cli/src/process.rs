//! `flotilla process FILES…`: uploads each file as an asset through a pipeline and, with
//! `--wait`, follows each until it is processed or failed, with a progress bar per file
//! (bytes sent, then steps done), and prints a table of the results, then, for each asset
//! whose pipeline ran the AI steps, the labels found and the transcript's first line (the
//! one-line summaries of `flotilla assets get`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use flotilla_client::Client;
use flotilla_proto::{AssetStatus, AssetUploadQuery, AssetView, StepState};
use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tokio_util::io::ReaderStream;

use crate::remote::Remote;

/// Options of `flotilla process`.
#[derive(clap::Args, Debug)]
pub(crate) struct ProcessArgs {
    #[command(flatten)]
    remote: Remote,
    /// The files to upload.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The pipeline to run over each. Built in: image and video (transcoding and AI; they
    /// need a worker on q-ai-enrich with models), image-basic, video-basic and anb-video
    /// (transcoding only), image-ai and video-ai (AI only).
    #[arg(long, default_value = "image")]
    pipeline: String,
    /// Per-step parameter overrides as JSON, e.g. '{"transcode": {"crf": 20}}'.
    #[arg(long)]
    params: Option<String>,
    /// Wait until every asset is processed or failed; exit non-zero if any failed.
    #[arg(long)]
    wait: bool,
    /// Give up waiting after this long.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30m")]
    timeout: Duration,
}

pub(crate) async fn run(args: ProcessArgs) -> anyhow::Result<()> {
    let client = Client::new(args.remote.url(), args.remote.token())?;
    let bars = MultiProgress::new();
    let mut uploads = Vec::new();
    for file in &args.files {
        let bar = bars.add(ProgressBar::new(0));
        let asset = upload(&client, &args, file, &bar).await?;
        uploads.push((file.clone(), asset, bar));
    }
    let mut assets = Vec::new();
    for (file, asset, bar) in uploads {
        let asset = if args.wait {
            follow(&client, asset, &bar, args.timeout).await?
        } else {
            bar.finish_with_message(format!("asset {} uploaded", asset.id));
            asset
        };
        assets.push((file, asset));
    }
    if args.remote.json() {
        let views: Vec<&AssetView> = assets.iter().map(|(_, a)| a).collect();
        println!("{}", serde_json::to_string_pretty(&views)?);
    } else {
        print!("{}", results_table(&assets));
        print!("{}", enrichment_lines(&assets));
    }
    let failed = assets
        .iter()
        .filter(|(_, a)| a.status == AssetStatus::Failed)
        .count();
    if failed > 0 {
        anyhow::bail!("{failed} of {} assets failed", assets.len());
    }
    Ok(())
}

/// Streams `file` to the server, the bar counting bytes.
async fn upload(
    client: &Client,
    args: &ProcessArgs,
    file: &PathBuf,
    bar: &ProgressBar,
) -> anyhow::Result<AssetView> {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .context("a file name")?;
    let opened = tokio::fs::File::open(file)
        .await
        .with_context(|| format!("cannot open {}", file.display()))?;
    let size = opened.metadata().await?.len();
    bar.set_length(size);
    bar.set_style(
        ProgressStyle::with_template("{msg:30} [{bar:30}] {bytes}/{total_bytes}")?
            .progress_chars("=> "),
    );
    bar.set_message(name.clone());
    let counter = bar.clone();
    let stream = ReaderStream::new(opened).inspect(move |chunk| {
        if let Ok(bytes) = chunk {
            counter.inc(bytes.len() as u64);
        }
    });
    let query = AssetUploadQuery {
        name: name.clone(),
        pipeline: Some(args.pipeline.clone()),
        params: args.params.clone(),
    };
    client
        .upload_asset(&query, reqwest::Body::wrap_stream(stream))
        .await
        .with_context(|| format!("uploading {}", file.display()))
}

/// Polls the asset until it is processed or failed, the bar counting finished steps.
async fn follow(
    client: &Client,
    mut asset: AssetView,
    bar: &ProgressBar,
    timeout: Duration,
) -> anyhow::Result<AssetView> {
    bar.set_style(ProgressStyle::with_template(
        "{msg:30} [{bar:30}] {pos}/{len} steps",
    )?);
    bar.set_length(asset.steps.len() as u64);
    bar.set_position(0);
    let deadline = tokio::time::Instant::now() + timeout;
    while matches!(
        asset.status,
        AssetStatus::Uploaded | AssetStatus::Processing
    ) {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "asset {} still {:?} after {timeout:?}",
            asset.id,
            asset.status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        asset = client.asset(asset.id).await?;
        let done = asset
            .steps
            .iter()
            .filter(|s| s.state == StepState::Succeeded)
            .count();
        bar.set_position(done as u64);
    }
    bar.finish_with_message(format!("{} {:?}", asset.name, asset.status).to_lowercase());
    Ok(asset)
}

fn results_table(assets: &[(PathBuf, AssetView)]) -> String {
    let rows = assets.iter().map(|(file, a)| {
        let outputs: Vec<&str> = a.outputs.iter().map(|o| o.key.as_str()).collect();
        let error = a
            .steps
            .iter()
            .find_map(|s| s.error.as_deref().filter(|_| s.state == StepState::Failed))
            .unwrap_or("");
        vec![
            file.display().to_string(),
            a.id.to_string(),
            format!("{:?}", a.status).to_lowercase(),
            outputs.join(" "),
            error.to_owned(),
        ]
    });
    crate::remote::table(&["FILE", "ASSET", "STATUS", "OUTPUTS", "ERROR"], rows)
}

/// For each asset with labels or a transcript among its steps' results, a header line and
/// one indented line per such result ("labels: cat ×1 (0.91)", "transcript: hello…");
/// empty when no pipeline produced any.
fn enrichment_lines(assets: &[(PathBuf, AssetView)]) -> String {
    let mut out = String::new();
    for (file, asset) in assets {
        let found: Vec<String> = asset
            .steps
            .iter()
            .filter_map(|s| s.result.as_ref())
            .filter(|r| r.get("labels").is_some() || r.get("transcript").is_some())
            .map(crate::assets::summarize)
            .collect();
        if found.is_empty() {
            continue;
        }
        out += &format!("\n{} (asset {}):\n", file.display(), asset.id);
        for line in found {
            out += &format!("  {line}\n");
        }
    }
    out
}

/// Options of `flotilla resources put`.
#[derive(clap::Args, Debug)]
pub(crate) struct ResourcePutArgs {
    #[command(flatten)]
    remote: Remote,
    /// The file to store.
    file: PathBuf,
    /// Its name under resources/ (default: the file's name), e.g. logo.png.
    #[arg(long)]
    name: Option<String>,
}

/// `flotilla resources put FILE`: stores a resource for the pipelines (admin).
pub(crate) async fn put_resource(args: ResourcePutArgs) -> anyhow::Result<()> {
    let client = Client::new(args.remote.url(), args.remote.token())?;
    let name = match args.name {
        Some(name) => name,
        None => args
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .context("a file name")?,
    };
    let file = tokio::fs::File::open(&args.file)
        .await
        .with_context(|| format!("cannot open {}", args.file.display()))?;
    let body = reqwest::Body::wrap_stream(ReaderStream::new(file));
    let stored = client.put_resource(&name, body).await?;
    if args.remote.json() {
        println!("{}", serde_json::to_string_pretty(&stored)?);
    } else {
        println!("stored {} ({} bytes)", stored.key, stored.size);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A processed asset whose steps had these results.
    fn asset(pipeline: &str, results: &[(&str, serde_json::Value)]) -> AssetView {
        let steps: Vec<serde_json::Value> = results
            .iter()
            .map(|(name, result)| {
                json!({"name": name, "after": [], "state": "succeeded", "job_id": 1,
                       "attempt": 1, "result": result, "error": null})
            })
            .collect();
        serde_json::from_value(json!({
            "id": 7, "name": "x", "pipeline": pipeline, "status": "processed", "size": 1,
            "sha256": null, "key": "uploads/u/x", "steps": steps, "outputs": [],
            "created_at": "2025-01-01T00:00:00Z",
        }))
        .unwrap()
    }

    #[test]
    fn issue_8_process_prints_the_labels_and_the_transcripts_first_line() {
        let labels = json!({"labels": [
            {"label": "cat", "count": 1, "best_score": 0.914},
            {"label": "person", "count": 2, "best_score": 0.88},
        ]});
        let transcript =
            json!({"transcript": {"text": "hello world\nsecond line", "empty": false}});
        let assets = [
            (
                PathBuf::from("cat.png"),
                asset(
                    "image",
                    &[("ingest", json!({"type": "image"})), ("detect", labels)],
                ),
            ),
            (
                PathBuf::from("talk.mp4"),
                asset("video", &[("transcribe", transcript)]),
            ),
        ];
        assert_eq!(
            enrichment_lines(&assets),
            "\ncat.png (asset 7):\n  labels: cat ×1 (0.91), person ×2 (0.88)\n\
             \ntalk.mp4 (asset 7):\n  transcript: hello world\n"
        );
    }

    #[test]
    fn process_prints_nothing_more_without_ai_results() {
        let outputs = json!({"outputs": [{"name": "thumb.jpg"}]});
        let assets = [(
            PathBuf::from("photo.jpg"),
            asset("image-basic", &[("renditions", outputs)]),
        )];
        assert_eq!(enrichment_lines(&assets), "");
    }
}
