//! `flotilla fleet`: worker-pool supervision. `flotilla fleet fleet.toml` runs the
//! supervisor (`flotilla-supervisor`) until SIGTERM/SIGINT; `status` prints a running
//! supervisor's pools, processes, decisions and alerts; `simulate` replays an arrival
//! trace through an autoscaling policy (`flotilla-fleet`) and writes a plot and a summary.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use flotilla_fleet::{ScalingPolicy, SimConfig};
use flotilla_proto::FleetReport;

use crate::remote::table;

/// `flotilla fleet`: a config file to supervise, or a subcommand.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true, arg_required_else_help = true)]
pub(crate) struct FleetArgs {
    /// The fleet to supervise: a fleet.toml of `[[pools]]` (queues, concurrency,
    /// min/max replicas, memory_limit, restart, scaling, args, env); see docs/operations.md.
    config: Option<PathBuf>,
    /// Bearer token for the server (role worker); the workers inherit FLOTILLA_TOKEN.
    #[arg(long, env = "FLOTILLA_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: Option<FleetCommand>,
}

/// `flotilla fleet` subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum FleetCommand {
    /// Prints a running supervisor's pools, processes (pid, uptime, restarts, memory,
    /// health, jobs), last decisions and alerts.
    Status {
        /// The supervisor's status address (`listen` in fleet.toml).
        #[arg(long, default_value = "http://127.0.0.1:9400")]
        url: String,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
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

pub(crate) async fn run(args: FleetArgs) -> anyhow::Result<()> {
    match (args.command, args.config) {
        (Some(FleetCommand::Simulate(sim)), _) => simulate(&sim),
        (Some(FleetCommand::Status { url, json }), _) => status(&url, json).await,
        (None, Some(config)) => supervise(&config, args.token).await,
        (None, None) => anyhow::bail!("give a fleet.toml to supervise, or a subcommand"),
    }
}

async fn supervise(path: &std::path::Path, token: Option<String>) -> anyhow::Result<()> {
    let config = flotilla_supervisor::FleetConfig::load(path)?;
    let exe = std::env::current_exe().context("cannot find this program to start workers")?;
    let worker = vec![exe.display().to_string(), "worker".into()];
    let stop = tokio_util::sync::CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        crate::signals::terminated().await;
        on_signal.cancel();
    });
    flotilla_supervisor::run(config, worker, token, stop).await?;
    Ok(())
}

async fn status(url: &str, json: bool) -> anyhow::Result<()> {
    let url = format!("{}/status", url.trim_end_matches('/'));
    let report: FleetReport = reqwest::get(&url)
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| format!("no supervisor answers at {url}"))?
        .json()
        .await
        .with_context(|| format!("{url} did not answer a fleet report"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render_status(&report));
    }
    Ok(())
}

/// The report as tables: pools, processes, decisions, alerts.
pub(crate) fn render_status(report: &FleetReport) -> String {
    let mut out = format!(
        "fleet {} on {} (pid {}){}\n\n",
        report.name,
        report.host,
        report.pid,
        if report.draining { ", draining" } else { "" }
    );
    let pools = report.pools.iter().map(|p| {
        vec![
            p.name.clone(),
            p.state.clone(),
            p.queues.join(","),
            format!(
                "{} ({}..{})",
                p.desired_replicas, p.min_replicas, p.max_replicas
            ),
            p.depth.to_string(),
            p.oldest_available_age_ms
                .map_or("-".into(), |ms| format!("{:.1}s", ms as f64 / 1000.0)),
            p.crashes.to_string(),
            p.restarts.to_string(),
        ]
    });
    out += &table(
        &[
            "POOL", "STATE", "QUEUES", "REPLICAS", "DEPTH", "OLDEST", "CRASHES", "RESTARTS",
        ],
        pools,
    );
    let processes = report
        .pools
        .iter()
        .flat_map(|p| p.processes.iter())
        .map(|x| {
            vec![
                x.id.clone(),
                x.pid.map_or("-".into(), |p| p.to_string()),
                x.state.clone(),
                humantime::format_duration(Duration::from_secs(x.uptime_ms / 1000)).to_string(),
                x.restarts.to_string(),
                x.memory_bytes
                    .map_or("-".into(), |b| format!("{} MiB", b >> 20)),
                x.health
                    .and_then(|h| serde_json::to_value(h).ok())
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_else(|| "-".into()),
                x.current_jobs
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            ]
        });
    out += "\n";
    out += &table(
        &[
            "PROCESS", "PID", "STATE", "UPTIME", "RESTARTS", "MEMORY", "HEALTH", "JOBS",
        ],
        processes,
    );
    let decisions = report
        .pools
        .iter()
        .flat_map(|p| p.decisions.iter().map(move |d| (p, d)))
        .map(|(p, d)| {
            vec![
                d.at.format("%H:%M:%S").to_string(),
                p.name.clone(),
                d.action.clone(),
                format!("{} → {}", d.from, d.to),
                d.reason.clone(),
            ]
        });
    out += "\n";
    out += &table(&["AT", "POOL", "DECISION", "REPLICAS", "REASON"], decisions);
    if !report.alerts.is_empty() {
        let alerts = report.alerts.iter().map(|a| {
            vec![
                a.severity.clone(),
                a.pool.clone(),
                a.rule.clone(),
                a.since.format("%H:%M:%S").to_string(),
                a.message.clone(),
            ]
        });
        out += "\n";
        out += &table(&["SEVERITY", "POOL", "ALERT", "SINCE", "MESSAGE"], alerts);
    }
    out
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
