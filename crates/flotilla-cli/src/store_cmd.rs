//! `flotilla migrate` and `flotilla store copy`: the store commands that run without a
//! server.
//!
//! A copy moves everything one store holds into another (e.g. from the embedded SQLite
//! file to PostgreSQL when a team outgrows one machine): queue settings, cron schedules
//! with their last tick, every job in every state exactly as it is (ids, leases, attempts,
//! errors, results), and the throughput counters. The target skips jobs whose id it has
//! already, so a copy that was interrupted or is run again finishes the job without
//! duplicating anything. At the end the per-queue, per-state counts of both stores are
//! compared. Stop the servers on the source first: a SQLite file refuses a second
//! process, and a PostgreSQL source that keeps changing would not verify.

use std::sync::Arc;

use anyhow::{Context, bail};
use flotilla_core::{Clock, SystemClock};
use flotilla_store::{JobListParams, QueueStatsParams, Store};

use crate::server::open_store;

/// Jobs read and written per call.
const PAGE: u32 = 1000;

/// `flotilla store …` commands.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum StoreCommand {
    /// Copies queues, cron schedules, jobs in every state and counters from one store to
    /// another, then verifies the counts; running it again is safe.
    Copy {
        /// The source store: sqlite:PATH or postgres://…
        #[arg(long)]
        from: String,
        /// The target store: sqlite:PATH or postgres://…
        #[arg(long)]
        to: String,
    },
}

/// Applies pending schema migrations to `store` (opening a store migrates it).
pub(crate) async fn migrate(store: &str) -> anyhow::Result<()> {
    open(store).await?;
    println!("{}: schema up to date", crate::server::redact(store));
    Ok(())
}

pub(crate) async fn run(command: StoreCommand) -> anyhow::Result<()> {
    match command {
        StoreCommand::Copy { from, to } => {
            if from == to {
                bail!("--from and --to name the same store");
            }
            let source = open(&from).await?;
            let target = open(&to).await?;
            let copied = copy(source.as_ref(), target.as_ref()).await?;
            println!(
                "copied {} queues, {} cron schedules, {} jobs ({} were there already); counts verified",
                copied.queues, copied.schedules, copied.inserted, copied.skipped
            );
            Ok(())
        }
    }
}

async fn open(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    open_store(
        url,
        flotilla_core::DEFAULT_MAX_PAYLOAD_BYTES,
        Default::default(),
    )
    .await
}

/// What a copy did.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Copied {
    queues: usize,
    schedules: usize,
    inserted: u64,
    skipped: u64,
}

/// Copies everything `from` holds into `to` and checks the counts.
pub(crate) async fn copy(from: &dyn Store, to: &dyn Store) -> anyhow::Result<Copied> {
    let mut copied = Copied::default();
    let queues = from
        .queue_list()
        .await
        .context("reading the source queues")?;
    for queue in &queues {
        to.queue_upsert(queue.clone())
            .await
            .with_context(|| format!("creating queue {}", queue.name))?;
    }
    copied.queues = queues.len();
    for entry in from.cron_list().await.context("reading the source cron")? {
        to.cron_import(entry)
            .await
            .context("copying a cron schedule")?;
        copied.schedules += 1;
    }
    let mut cursor = None;
    loop {
        let page = from
            .job_list(JobListParams {
                cursor,
                limit: PAGE,
                ..JobListParams::default()
            })
            .await
            .context("reading source jobs")?;
        let n = page.jobs.len() as u64;
        let inserted = to.job_import(page.jobs).await.context("writing jobs")?;
        copied.inserted += inserted;
        copied.skipped += n - inserted;
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let now = SystemClock.now();
    let source = from
        .queue_stats(QueueStatsParams { queue: None, now })
        .await?;
    for stats in &source {
        to.queue_import_totals(&stats.queue, stats.totals).await?;
    }
    let target = to
        .queue_stats(QueueStatsParams { queue: None, now })
        .await?;
    for stats in &source {
        let theirs = target.iter().find(|t| t.queue == stats.queue);
        let counts = theirs.map(|t| t.counts).unwrap_or_default();
        if counts != stats.counts {
            bail!(
                "verification failed for queue {}: the source has {:?}, the target {:?} (did something change either store during the copy?)",
                stats.queue,
                stats.counts,
                counts
            );
        }
    }
    Ok(copied)
}
