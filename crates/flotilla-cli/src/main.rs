//! `flotilla`: the one binary. Today it runs the engine demo and the store benchmark; the
//! server, worker and admin commands join it as they land.

mod bench;
mod demo;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Flotilla: a durable task-queue server and a fleet of pull-based workers.
#[derive(Parser)]
#[command(name = "flotilla", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
    match Cli::parse().command {
        Command::Demo { db } => demo::run(db).await,
        Command::Bench(BenchCommand::Store(args)) => bench::store(args).await,
    }
}
