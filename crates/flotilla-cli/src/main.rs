//! `flotilla`: the one binary: the server, the demo and the benchmarks.

mod bench;
mod demo;
mod server;
mod signals;

use std::path::PathBuf;

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
    /// Runs a short end-to-end demo of the queue engine on an embedded SQLite store:
    /// enqueue, priorities, delays, retries into the dead-letter state, replay, unique
    /// jobs, fair groups and cron, printing what happens.
    Demo {
        /// Database file to use (a temporary one when absent).
        #[arg(long)]
        db: Option<PathBuf>,
    },
    /// Measures throughput and prints the figures.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// The store in-process: batched and concurrent enqueues, batched claim+complete at
    /// small and large queue depths, and peak memory.
    Store(bench::StoreBenchArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(&cli.log_format);
    match cli.command {
        Command::Server(args) => server::run(args).await,
        Command::Demo { db } => demo::run(db).await,
        Command::Bench(BenchCommand::Store(args)) => bench::store(args).await,
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
