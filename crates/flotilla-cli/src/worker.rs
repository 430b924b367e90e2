//! `flotilla worker`: runs the built-in handlers, or any program with `--exec`, pulling work
//! from a server over HTTP until SIGTERM/SIGINT (then drains and exits 0).
//!
//! Built-in kinds: the media handlers of `flotilla-media` (`media.ingest`,
//! `image.render`, `video.transcode`, `video.poster`, `video.preview`, `media.distribute`)
//! over the object store `--objects`, delivering to the targets of `--targets`, and:
//! - `noop`: does nothing, returns `{}`;
//! - `echo`: returns its payload;
//! - `sleep`: waits `payload.ms` milliseconds (stops early when cancelled);
//! - `fail`: fails with `payload.message`, retryable unless `payload.retryable` is false.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use flotilla_worker::{ExecHandler, JobContext, JobError, Worker, WorkerBuilder};
use serde_json::{Value, json};

use crate::remote::Remote;

/// Options of `flotilla worker`.
#[derive(clap::Args, Debug)]
pub(crate) struct WorkerArgs {
    #[command(flatten)]
    remote: Remote,
    /// Queues to serve, in strict priority order.
    #[arg(long, value_delimiter = ',', default_value = "default")]
    queues: Vec<String>,
    /// Jobs run at once [default: 4; on an AI worker with GPUs, one per GPU].
    #[arg(long)]
    concurrency: Option<u32>,
    /// Run this shell command for every job (payload on stdin, FLOTILLA_JOB_* variables,
    /// stdout is the result, a non-zero exit is a failure) instead of the built-in handlers.
    #[arg(long)]
    exec: Option<String>,
    /// Serve /healthz, /readyz and /metrics on this address.
    #[arg(long)]
    health_addr: Option<SocketAddr>,
    /// A stable worker id (kept across restarts); one is made when absent.
    #[arg(long)]
    id: Option<String>,
    /// On SIGTERM, how long running jobs may take to finish before they are handed back.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    shutdown_grace: Duration,
    /// The object store the media handlers read and write: the server's (a directory, or
    /// s3://bucket?endpoint=URL).
    #[arg(long, env = "FLOTILLA_OBJECTS", default_value = "flotilla-objects")]
    objects: String,
    /// A TOML file of delivery targets for media.distribute, one table each:
    /// `[archive]` `type = "dir"` `path = "/srv/out"` (also s3, http, ftp).
    #[arg(long)]
    targets: Option<PathBuf>,
    /// Drain and exit (as on SIGTERM) when the process `PID`, the one that started this
    /// worker, dies: set by `flotilla fleet` so that no worker outlives its supervisor.
    #[arg(long, value_name = "PID")]
    parent_pid: Option<u32>,
    /// Load the AI models at start and run the enrichment steps (ai.detect, ai.moderate,
    /// ai.redact_faces, ai.transcribe); implied when --queues names q-ai-enrich. A model
    /// that cannot load stops the worker at start, saying what to install.
    #[arg(long)]
    ai: bool,
    /// GPUs for the detectors: each is loaded once per GPU and an AI job takes a GPU of
    /// its own (one job per GPU). Default: the NVIDIA GPUs found (/dev/nvidiaN), 0 on a
    /// machine without; 0 runs on the CPU. A GPU that cannot be used falls back to the CPU
    /// with a warning.
    #[arg(long)]
    gpus: Option<u32>,
    /// Threads one inference may use on the CPU (detectors and Whisper) [default: every
    /// core]; give each of several AI workers on one machine its share.
    #[arg(long)]
    ai_threads: Option<usize>,
    /// The speech models to start a helper for (each holds its model in memory).
    #[arg(long, value_delimiter = ',', default_value = "tiny.en")]
    speech_models: Vec<String>,
    #[command(flatten)]
    models: crate::models::ModelsSource,
}

pub(crate) async fn run(mut args: WorkerArgs) -> anyhow::Result<()> {
    // Look for GPUs once; everything after reads the answer.
    args.gpus.get_or_insert_with(flotilla_media::detect_gpus);
    if let Some(parent) = args.parent_pid {
        exit_with_parent(parent)?;
    }
    let client = flotilla_client::Client::new(args.remote.url(), args.remote.token())?;
    let mut builder = Worker::builder(client)
        .queues(args.queues.clone())
        .concurrency(concurrency(&args))
        .shutdown_grace(args.shutdown_grace)
        .version(env!("CARGO_PKG_VERSION"));
    if let Some(id) = args.id.clone() {
        builder = builder.worker_id(id);
    }
    if let Some(addr) = args.health_addr {
        builder = builder.health_addr(addr);
    }
    builder = match args.exec.clone() {
        Some(command) => builder.default_handler(ExecHandler::new(command)),
        None => media(builder, &args)
            .await?
            .handler("noop", |_ctx: JobContext| async { Ok(json!({})) })
            .handler("echo", |ctx: JobContext| async move {
                Ok(ctx.payload().clone())
            })
            .handler("sleep", sleep)
            .handler("fail", fail),
    };
    builder.build()?.run_until_signal().await?;
    Ok(())
}

/// Whether the worker runs the AI steps: asked for, or serving `q-ai-enrich`.
fn runs_ai(args: &WorkerArgs) -> bool {
    args.exec.is_none()
        && (args.ai
            || args
                .queues
                .iter()
                .any(|q| q == flotilla_server::pipelines::Q_AI_ENRICH))
}

/// The GPUs the detectors run on: `--gpus`, else the ones found.
fn gpus(args: &WorkerArgs) -> u32 {
    args.gpus.unwrap_or_else(flotilla_media::detect_gpus)
}

/// `--concurrency`, else one job per GPU on an AI worker with GPUs, else 4.
fn concurrency(args: &WorkerArgs) -> u32 {
    match args.concurrency {
        Some(n) => n,
        None if runs_ai(args) && gpus(args) > 0 => gpus(args),
        None => 4,
    }
}

/// Adds the media handlers over the object store `--objects`, delivering to `--targets`,
/// with the AI ones when asked for.
async fn media(builder: WorkerBuilder, args: &WorkerArgs) -> anyhow::Result<WorkerBuilder> {
    let objects = flotilla_objects::Objects::open(&args.objects)
        .with_context(|| format!("opening the object store {}", args.objects))?;
    let mut media = flotilla_media::Media::new(objects);
    if runs_ai(args) {
        load_ai(&mut media, args).await?;
    }
    if let Some(path) = args.targets.as_deref() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let targets: std::collections::BTreeMap<String, flotilla_distribute::TargetConfig> =
            toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
        media.distributor = flotilla_distribute::Distributor::new(targets)
            .with_context(|| format!("targets in {}", path.display()))?;
    }
    if media.ffmpeg.is_none() {
        tracing::warn!("ffmpeg/ffprobe not found: video jobs will fail until they are installed");
    }
    let builder = match media.speech.clone() {
        // A Whisper helper that keeps dying makes the worker degraded.
        Some(speech) => builder.health_check(move || {
            let reasons = speech.degraded();
            (!reasons.is_empty()).then(|| reasons.join("; "))
        }),
        None => builder,
    };
    Ok(flotilla_media::register(builder, Arc::new(media)))
}

/// Loads the detectors and starts the speech helpers; an error says what to install.
async fn load_ai(media: &mut flotilla_media::Media, args: &WorkerArgs) -> anyhow::Result<()> {
    let mut config = crate::models::resolve(&args.models)?;
    for model in &mut config.models {
        model.threads = model.threads.or(args.ai_threads);
    }
    let hint = "run `flotilla models install` (or add [[ai.models]] to flotilla.toml)";
    let gpus = gpus(args);
    let load = move || flotilla_media::Enrichment::load_on_gpus(&config, gpus);
    let enrich = tokio::task::spawn_blocking(load)
        .await?
        .with_context(|| format!("loading the AI models; {hint}"))?;
    tracing::info!(models = ?enrich.names(), gpus, "detectors loaded");
    media.enrich = Some(Arc::new(enrich));
    let served = crate::models::served_speech(&args.models)?;
    let wanted: Vec<_> = crate::models::speech_models(&args.models)?
        .into_iter()
        .filter(|m| args.speech_models.contains(&m.name))
        .map(|m| flotilla_speech::SpeechModel {
            threads: m.threads.or(args.ai_threads),
            ..m
        })
        .collect();
    let missing: Vec<&String> = args
        .speech_models
        .iter()
        .filter(|name| !wanted.iter().any(|m| &m.name == *name))
        .filter(|name| !served.iter().any(|m| &m.name == *name))
        .collect();
    anyhow::ensure!(missing.is_empty(), "no speech model {missing:?}; {hint}");
    let speech = flotilla_media::Speech::start_with_services(&wanted, &served)
        .await
        .with_context(|| format!("starting the speech models; {hint}"))?;
    tracing::info!(models = ?speech.models(), "speech models started");
    media.speech = Some(Arc::new(speech));
    Ok(())
}

async fn sleep(ctx: JobContext) -> Result<Value, JobError> {
    let ms = ctx.payload()["ms"].as_u64().unwrap_or(1000);
    tokio::select! {
        () = tokio::time::sleep(Duration::from_millis(ms)) => Ok(json!({ "slept_ms": ms })),
        () = ctx.cancelled() => Err(JobError::retryable("cancelled while sleeping")),
    }
}

async fn fail(ctx: JobContext) -> Result<Value, JobError> {
    let message = ctx.payload()["message"]
        .as_str()
        .unwrap_or("failed on purpose")
        .to_owned();
    if ctx.payload()["retryable"] == json!(false) {
        Err(JobError::fatal(message))
    } else {
        Err(JobError::retryable(message))
    }
}

/// Asks the kernel for SIGTERM when the parent dies, then checks that the parent is still
/// `parent` (it may have died before the request): if not, there is nothing to serve.
fn exit_with_parent(parent: u32) -> anyhow::Result<()> {
    use rustix::process::{Signal, getppid, set_parent_process_death_signal};
    set_parent_process_death_signal(Some(Signal::TERM))
        .context("cannot ask to be stopped with the parent process")?;
    let alive = getppid().is_some_and(|p| p.as_raw_nonzero().get() as u32 == parent);
    anyhow::ensure!(alive, "the supervisor (pid {parent}) is gone; not starting");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Args {
        #[command(flatten)]
        worker: WorkerArgs,
    }

    fn parse(args: &[&str]) -> WorkerArgs {
        let argv = std::iter::once("worker").chain(args.iter().copied());
        Args::try_parse_from(argv).unwrap().worker
    }

    #[test]
    fn an_ai_worker_with_gpus_takes_one_job_per_gpu_unless_told_otherwise() {
        let ai = |extra: &[&str]| {
            let mut args = vec!["--queues", "q-ai-enrich"];
            args.extend_from_slice(extra);
            concurrency(&parse(&args))
        };
        assert_eq!(ai(&["--gpus", "2"]), 2);
        assert_eq!(ai(&["--gpus", "2", "--concurrency", "6"]), 6);
        assert_eq!(ai(&["--gpus", "0"]), 4, "on the CPU: the default");
        assert_eq!(concurrency(&parse(&["--gpus", "2"])), 4, "not an AI worker");
        assert_eq!(concurrency(&parse(&["--ai", "--gpus", "3"])), 3);
    }
}
