//! `flotilla`: the one binary: the server, the demo and the benchmarks.

mod assets;
mod bench;
mod bench_ai;
mod bench_e2e;
mod bench_media;
mod bench_producer;
mod demo;
mod demo_media;
mod fleet;
mod models;
mod process;
mod remote;
mod samples;
mod server;
mod signals;
mod store_cmd;
mod worker;

use clap::{Parser, Subcommand};

/// Flotilla: a durable task-queue server and a fleet of pull-based workers.
#[derive(Parser)]
#[command(name = "flotilla", version, about, long_about = None)]
struct Cli {
    /// Log format: human or json.
    #[arg(long, global = true, default_value = "human", value_parser = ["human", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the server: the /v1 HTTP API, the long-poll broker and the background services
    /// (promoter, reaper, pruner, cron), on the configured store.
    Server(server::ServerArgs),
    /// Runs the main job end to end on the embedded default: makes sample media with
    /// ffmpeg, installs the AI models, starts a server (SQLite, local object store), a media
    /// worker and an AI worker, runs the image, video and anb-video pipelines (image-basic,
    /// video-basic and anb-video with --no-ai), and prints each asset's status, labels,
    /// transcript and outputs.
    /// (--engine: the queue-engine demo instead.)
    Demo(demo_media::DemoArgs),
    /// Applies the store's pending schema migrations and exits (servers also migrate at
    /// start, one at a time).
    Migrate {
        /// The store: sqlite:PATH or postgres://… [env: FLOTILLA_STORE]
        #[arg(long, env = "FLOTILLA_STORE")]
        store: String,
    },
    /// Store maintenance without a server: copy one store into another.
    #[command(subcommand)]
    Store(store_cmd::StoreCommand),
    /// Runs a worker: built-in handlers, or any program with --exec.
    Worker(worker::WorkerArgs),
    /// Enqueues a job, or a batch of jobs read as JSON lines from stdin.
    Enqueue {
        #[command(flatten)]
        remote: remote::Remote,
        #[command(flatten)]
        args: remote::EnqueueArgs,
    },
    /// Lists, shows, cancels and retries jobs.
    Jobs {
        #[command(flatten)]
        remote: remote::Remote,
        #[command(subcommand)]
        command: remote::JobsCommand,
    },
    /// Lists queues; pauses and resumes them.
    Queues {
        #[command(flatten)]
        remote: remote::Remote,
        #[command(subcommand)]
        command: remote::QueuesCommand,
    },
    /// Lists, replays and purges dead jobs.
    Dead {
        #[command(flatten)]
        remote: remote::Remote,
        #[command(subcommand)]
        command: remote::DeadCommand,
    },
    /// Uploads files as assets through a pipeline (image, video, image-basic, video-basic,
    /// anb-video, image-ai, video-ai, or one of flotilla.toml's) and, with --wait, follows
    /// them to the end and prints the results, labels and transcripts.
    Process(process::ProcessArgs),
    /// Supervises pools of worker processes from a fleet.toml (restarts, memory ceilings,
    /// autoscaling on queue depth, alerts); `status` shows a running supervisor, `simulate`
    /// plans capacity for a policy over an arrival trace.
    Fleet(fleet::FleetArgs),
    /// Uploaded assets: list, get (steps, results, outputs), release one held by
    /// moderation.
    Assets {
        #[command(flatten)]
        remote: remote::Remote,
        #[command(subcommand)]
        command: assets::AssetsCommand,
    },
    /// The AI models of the enrichment steps: install the defaults, list, check.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Stores resources the pipelines use (the anb-video logo, intro and outro).
    #[command(subcommand)]
    Resources(ResourcesCommand),
    /// Lists registered workers with their health and current jobs.
    Workers {
        #[command(flatten)]
        remote: remote::Remote,
    },
    /// Measures throughput and prints the figures.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand)]
enum ResourcesCommand {
    /// Uploads a file as resources/NAME (admin).
    Put(process::ResourcePutArgs),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// The store in-process: batched and concurrent enqueues, batched claim+complete at
    /// small and large queue depths, and peak memory.
    Store(bench::StoreBenchArgs),
    /// A server and worker processes on loopback: HTTP enqueue, drain, enqueue→start
    /// latency, and a kill -9 crash run.
    E2e(bench_e2e::E2eBenchArgs),
    /// Media: the seed-001 filter comparison (sequential, threads, a pool of processes),
    /// 4000x3000 JPEG → three renditions, and the realtime factor of 1080p → 720p.
    Media(bench_media::MediaBenchArgs),
    /// AI: detection latency per image (load, p50/p95, pre-processing, inference,
    /// post-processing) for the default detectors and the Whisper real-time factor, each
    /// against issue 8's targets.
    Ai(bench_ai::BenchAiArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_format);
    let outcome = runtime(&cli.command)
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run(cli.command)));
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The tokio runtime `command` runs on. The server leaves one core to the store (the
/// SQLite writer thread, or a database on the same machine): on two cores, two runtime
/// threads and the writer thread fight over them and every hand-off costs a context
/// switch. A worker's runtime only moves jobs and bytes (its handlers' heavy work runs
/// on blocking threads or in child processes), so it takes one thread per two cores: a
/// job task, the HTTP connection it answers on and the poll loop then mostly share a
/// thread, and hand over without waking another (on two cores one thread drained 2–30 %
/// faster than two in five A/B pairs; see docs/ARCHITECTURE.md). The benchmarks use
/// every core (a benchmark's client on one thread measured slower: a thread that sleeps
/// between requests takes long to wake on a virtual machine); the other commands are one
/// client each and run on the calling thread. `TOKIO_WORKER_THREADS` overrides the count
/// of the multi-threaded ones.
fn runtime(command: &Command) -> std::io::Result<tokio::runtime::Runtime> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let threads = match command {
        Command::Server(_) => Some(cores.saturating_sub(1).max(1)),
        Command::Worker(_) => Some((cores / 2).max(1)),
        Command::Demo(_) | Command::Bench(_) => Some(cores),
        _ => None,
    };
    let mut builder = match threads {
        Some(default) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            let from_env = std::env::var("TOKIO_WORKER_THREADS")
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|n| *n > 0);
            b.worker_threads(from_env.unwrap_or(default));
            b
        }
        None => tokio::runtime::Builder::new_current_thread(),
    };
    builder.enable_all().build()
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Server(args) => server::run(args).await,
        Command::Worker(args) => worker::run(args).await,
        Command::Enqueue { remote, args } => remote::enqueue(&remote, args).await,
        Command::Jobs { remote, command } => remote::jobs(&remote, command).await,
        Command::Queues { remote, command } => remote::queues(&remote, command).await,
        Command::Dead { remote, command } => remote::dead(&remote, command).await,
        Command::Workers { remote } => remote::workers(&remote).await,
        Command::Process(args) => process::run(args).await,
        Command::Fleet(args) => fleet::run(args).await,
        Command::Models(command) => models::run(command).await,
        Command::Assets { remote, command } => assets::run(&remote, command).await,
        Command::Resources(ResourcesCommand::Put(args)) => process::put_resource(args).await,
        Command::Demo(args) => demo_media::run(args).await,
        Command::Migrate { store } => store_cmd::migrate(&store).await,
        Command::Store(command) => store_cmd::run(command).await,
        Command::Bench(BenchCommand::Store(args)) => bench::store(args).await,
        Command::Bench(BenchCommand::E2e(args)) => bench_e2e::run(args).await,
        Command::Bench(BenchCommand::Media(args)) => bench_media::run(args).await,
        Command::Bench(BenchCommand::Ai(args)) => bench_ai::run(args).await,
    }
}

/// Logs to stderr: human-readable or JSON lines, filtered by `RUST_LOG` (default `info`).
fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tower_http=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
