//! `flotilla fleet`: worker-pool supervision. So far, `simulate`: capacity planning that
//! replays an arrival trace through an autoscaling policy (`flotilla-fleet`) and writes a
//! plot of depth, replicas and wait over time, with a summary. The supervisor itself is
//! still to come.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use flotilla_fleet::{ScalingPolicy, SimConfig};

/// `flotilla fleet` subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum FleetCommand {
    /// Replays an arrival trace through an autoscaling policy and writes a plot (SVG) and a
    /// summary (waits, replica-minutes, scaling decisions).
    Simulate(SimulateArgs),
}

/// Options of `flotilla fleet simulate`.
#[derive(clap::Args, Debug)]
pub(crate) struct SimulateArgs {
    /// The policy: a TOML file of `min_replicas`, `max_replicas`, `scale_out_depth`,
    /// `scale_out_for`, `scale_out_cooldown`, `scale_in_depth`, `scale_in_for`,
    /// `scale_in_cooldown`, `max_age`; what it leaves out keeps seed 004's defaults (out
    /// by one above 10 for 3m, cooldown 5m; in by one below 3 for 5m, cooldown 10m; 1 to 3).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// The arrivals: CSV with the header `at_s,duration_s`, one job a row.
    #[arg(long)]
    arrivals: PathBuf,
    /// Jobs one replica runs at once.
    #[arg(long, default_value_t = 2)]
    concurrency: u32,
    /// How long a new replica takes to be ready.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    startup: Duration,
    /// How often the policy looks at the queue.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "15s")]
    tick: Duration,
    /// Where to write the plot.
    #[arg(long, default_value = "fleet-simulation.svg")]
    plot: PathBuf,
}

pub(crate) fn run(command: FleetCommand) -> anyhow::Result<()> {
    match command {
        FleetCommand::Simulate(args) => simulate(&args),
    }
}

fn simulate(args: &SimulateArgs) -> anyhow::Result<()> {
    let policy: ScalingPolicy = match &args.policy {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("{}", path.display()))?
        }
        None => ScalingPolicy::default(),
    };
    let csv = std::fs::read_to_string(&args.arrivals)
        .with_context(|| format!("cannot read {}", args.arrivals.display()))?;
    let trace =
        flotilla_fleet::read_trace(&csv).with_context(|| format!("{}", args.arrivals.display()))?;
    let config = SimConfig {
        policy,
        concurrency_per_replica: args.concurrency,
        start_replicas: 1,
        tick: args.tick,
        startup: args.startup,
    };
    let result = flotilla_fleet::simulate(&trace, &config)?;
    std::fs::write(&args.plot, flotilla_fleet::plot_svg(&result))
        .with_context(|| format!("cannot write {}", args.plot.display()))?;
    print!("{}", flotilla_fleet::summary(&result));
    println!("plot: {}", args.plot.display());
    Ok(())
}
