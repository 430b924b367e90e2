//! The supervisor's loop. One task owns every pool and slot, so there are no locks around
//! the fleet's state: it wakes for a process exit, a short tick (restarts due, drains
//! overdue), a status round every second (memory ceilings, each worker's health and jobs),
//! a signal round (queue depth and age → autoscaler → alerts), a report to the server, or
//! the stop signal (drain every pool, wait for the last process, return). Every network
//! wait inside the loop is bounded, so a slow server delays nothing else for long.

use std::time::{Duration, Instant};

use flotilla_client::Client;
use flotilla_fleet::alerts::{AlertEngine, PoolSnapshot};
use flotilla_proto::{AlertView, FleetReport, ScalingSignal, WorkerSelfStatus};
use futures::future::join_all;
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{FleetConfig, PoolConfig};
use crate::memory::ProcessTable;
use crate::pool::{Pool, QueueSignal};
use crate::slot::{Exit, Launch};
use crate::status;
use crate::webhook::{RetryPolicy, WebhookNotifier};

/// Restarts and overdue drains are looked at this often.
const TICK: Duration = Duration::from_millis(100);
/// Memory and each worker's `/status` are read this often.
const STATUS_EVERY: Duration = Duration::from_secs(1);
/// A worker's health port gets this long to answer.
const STATUS_TIMEOUT: Duration = Duration::from_millis(800);
/// A round of queue signals gets this long, so a slow server never holds up restarts,
/// drains or the stop signal for more than this.
const SIGNAL_TIMEOUT: Duration = Duration::from_secs(2);
/// Alerts still being delivered get this long when the supervisor stops.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the supervisor could not run.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// The status address is taken or not ours.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The server URL or token is unusable.
    #[error("server client: {0}")]
    Client(#[from] flotilla_client::ClientError),
    /// A webhook URL is unusable.
    #[error("alert webhooks: {0}")]
    Webhook(#[from] crate::webhook::WebhookError),
}

/// Runs `config`'s pools until `stop` fires, then drains them and returns. `worker` is the
/// program and arguments that start a worker when a pool names no `command` (normally
/// this binary and `worker`); `token` is given to the server calls (the workers inherit
/// `FLOTILLA_TOKEN` from the environment).
pub async fn run(
    config: FleetConfig,
    worker: Vec<String>,
    token: Option<String>,
    stop: CancellationToken,
) -> Result<(), SupervisorError> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| SupervisorError::Listen {
            addr: config.listen,
            source,
        })?;
    let client = Client::new(&config.server, token.clone())?;
    let notifier = WebhookNotifier::new(config.alerts.webhooks.clone(), RetryPolicy::default())?;
    let name = config.name.clone().unwrap_or_else(host_name);
    let pools = config
        .pools
        .iter()
        .enumerate()
        .map(|(i, pool)| {
            let launch = launch(&config, pool, &worker, token.as_deref());
            Pool::new(i, pool.clone(), launch)
        })
        .collect();
    let mut fleet = Fleet {
        report: FleetReport {
            name,
            host: host_name(),
            pid: std::process::id(),
            started_at: chrono::Utc::now(),
            draining: false,
            pools: Vec::new(),
            alerts: Vec::new(),
        },
        alerts: AlertEngine::new(config.alerts.clone()),
        notifier,
        pools,
        client,
        health: reqwest::Client::new(),
        epoch: Instant::now(),
    };
    let (report_tx, report_rx) = watch::channel(fleet.snapshot());
    let status_stop = CancellationToken::new();
    let server = tokio::spawn(status::serve(listener, report_rx, status_stop.clone()));
    info!(addr = %config.listen, pools = fleet.pools.len(), "fleet supervisor running");
    fleet.run(&config, &report_tx, stop).await;
    if tokio::time::timeout(FLUSH_TIMEOUT, fleet.notifier.flush())
        .await
        .is_err()
    {
        warn!("some alerts were not delivered before the supervisor stopped");
    }
    status_stop.cancel();
    let _ = server.await;
    Ok(())
}

/// The arguments every worker of `pool` starts with. `--parent-pid` makes a worker drain
/// and exit when the supervisor dies, whatever killed it; a token given to the
/// supervisor is passed on as `FLOTILLA_TOKEN`.
fn launch(
    config: &FleetConfig,
    pool: &PoolConfig,
    worker: &[String],
    token: Option<&str>,
) -> Launch {
    let command = pool.command.as_deref().unwrap_or(worker);
    let (program, first) = command
        .split_first()
        .map_or(("flotilla", &[][..]), |(p, a)| (p.as_str(), a));
    let mut args: Vec<String> = first.to_vec();
    args.extend([
        "--url".into(),
        config.server.clone(),
        "--queues".into(),
        pool.queues.join(","),
        "--concurrency".into(),
        pool.concurrency.to_string(),
        "--shutdown-grace".into(),
        humantime::format_duration(pool.shutdown_grace).to_string(),
        "--parent-pid".into(),
        std::process::id().to_string(),
    ]);
    let mut env: Vec<(String, String)> = pool.env.clone().into_iter().collect();
    if let Some(token) = token {
        env.push(("FLOTILLA_TOKEN".into(), token.into()));
    }
    Launch {
        program: program.into(),
        args,
        env,
        extra_args: pool.args.clone(),
    }
}

fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// Everything the loop owns.
struct Fleet {
    report: FleetReport,
    alerts: AlertEngine,
    notifier: WebhookNotifier,
    pools: Vec<Pool>,
    client: Client,
    /// For the workers' health ports; one client, so its connections are reused.
    health: reqwest::Client,
    epoch: Instant,
}

impl Fleet {
    async fn run(
        &mut self,
        config: &FleetConfig,
        report_tx: &watch::Sender<FleetReport>,
        stop: CancellationToken,
    ) {
        let (exits_tx, mut exits) = mpsc::unbounded_channel::<Exit>();
        for pool in &mut self.pools {
            pool.start(&exits_tx);
        }
        let mut tick = interval(TICK);
        let mut status_round = interval(STATUS_EVERY);
        let mut signal_round = interval(config.signal_interval);
        let mut report_round = interval(config.report_interval);
        loop {
            tokio::select! {
                // Stop and exits before timers: a drain or an exit is acted on before any
                // tick could signal a process that is already gone.
                biased;
                () = stop.cancelled(), if !self.report.draining => {
                    info!("stopping: draining every pool");
                    self.report.draining = true;
                    self.pools.iter_mut().for_each(Pool::drain_all);
                }
                Some(exit) = exits.recv() => {
                    let clock = self.clock();
                    if let Some(pool) = self.pools.get_mut(exit.pool) {
                        pool.on_exit(exit, clock);
                    }
                }
                _ = tick.tick() => {
                    if !self.report.draining {
                        let clock = self.clock();
                        self.pools.iter_mut().for_each(|p| p.tick(clock, &exits_tx));
                    } else {
                        let now = Instant::now();
                        self.pools.iter_mut().flat_map(|p| p.slots.iter_mut()).for_each(|s| s.kill_if_overdue(now));
                    }
                }
                _ = status_round.tick() => {
                    let table = ProcessTable::read();
                    self.pools.iter_mut().for_each(|p| p.check_memory(&table));
                    self.read_statuses().await;
                }
                _ = signal_round.tick(), if !self.report.draining => {
                    if tokio::time::timeout(SIGNAL_TIMEOUT, self.read_signals(&exits_tx)).await.is_err() {
                        warn!("the server did not answer the queue signals in time; not scaling this round");
                    }
                    self.evaluate_alerts();
                }
                _ = report_round.tick() => self.send_report(),
            }
            report_tx.send_replace(self.snapshot());
            if self.report.draining && !self.pools.iter().any(Pool::has_processes) {
                info!("every worker stopped");
                break;
            }
        }
        // The last report says the fleet stopped; awaited, or the runtime may drop it.
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            self.client.fleet_report(&self.snapshot()),
        )
        .await;
    }

    fn clock(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// Each running worker's `/status` (health, jobs).
    async fn read_statuses(&mut self) {
        let http = &self.health;
        let targets: Vec<(usize, usize, std::net::SocketAddr)> = self
            .pools
            .iter()
            .enumerate()
            .flat_map(|(p, pool)| {
                pool.slots.iter().enumerate().filter_map(move |(s, slot)| {
                    slot.health_addr
                        .filter(|_| slot.has_process())
                        .map(|a| (p, s, a))
                })
            })
            .collect();
        let answers = join_all(targets.iter().map(|&(_, _, addr)| {
            let http = http.clone();
            async move {
                let resp = http
                    .get(format!("http://{addr}/status"))
                    .timeout(STATUS_TIMEOUT)
                    .send()
                    .await
                    .ok()?;
                resp.json::<WorkerSelfStatus>().await.ok()
            }
        }))
        .await;
        for ((p, s, addr), status) in targets.into_iter().zip(answers) {
            if let Some(slot) = self.pools[p].slots.get_mut(s)
                && slot.health_addr == Some(addr)
            {
                // Not our worker on that port (it was taken before ours bound it): unknown.
                slot.status = status.filter(|st| st.id.as_deref().is_none_or(|id| id == slot.id));
            }
        }
    }

    /// Every pool's queue signals from the server, fed to its autoscaler.
    async fn read_signals(&mut self, exits: &mpsc::UnboundedSender<Exit>) {
        let client = &self.client;
        let reads = self.pools.iter().map(|pool| async move {
            let all = join_all(pool.config.queues.iter().map(|q| client.scaling(q))).await;
            all.into_iter().collect::<Result<Vec<ScalingSignal>, _>>()
        });
        let results = join_all(reads).await;
        let clock = self.clock();
        for (pool, result) in self.pools.iter_mut().zip(results) {
            match result {
                Ok(signals) => pool.observe(combine(&signals), clock, exits),
                Err(err) => {
                    warn!(pool = %pool.config.name, %err, "cannot read the queues' signals; not scaling this round")
                }
            }
        }
    }

    fn evaluate_alerts(&mut self) {
        let snapshots: Vec<PoolSnapshot> = self.pools.iter().map(snapshot_of).collect();
        let events = self.alerts.observe(self.clock(), &snapshots);
        for event in &events {
            self.notifier.notify(event);
        }
    }

    /// Posts the current report to the server, in the background.
    fn send_report(&self) {
        let (client, report) = (self.client.clone(), self.snapshot());
        tokio::spawn(async move {
            if let Err(err) = client.fleet_report(&report).await {
                warn!(%err, "cannot report to the server");
            }
        });
    }

    fn snapshot(&self) -> FleetReport {
        let started =
            chrono::Utc::now() - chrono::Duration::from_std(self.clock()).unwrap_or_default();
        FleetReport {
            pools: self.pools.iter().map(Pool::report).collect(),
            alerts: self
                .alerts
                .firing()
                .into_iter()
                .map(|a| alert_view(&a, started))
                .collect(),
            ..self.report.clone()
        }
    }
}

/// One signal for a pool from its queues': summed depth and dead, the oldest age; a paused
/// queue's jobs do not count (no worker could take them).
fn combine(signals: &[ScalingSignal]) -> QueueSignal {
    let active = signals.iter().filter(|s| !s.paused);
    QueueSignal {
        depth: active.clone().map(|s| s.available).sum(),
        oldest_age: active
            .map(|s| s.oldest_available_age_seconds)
            .filter(|age| *age > 0.0)
            .max_by(f64::total_cmp)
            .map(Duration::from_secs_f64),
        dead: signals.iter().map(|s| s.dead).sum(),
    }
}

fn snapshot_of(pool: &Pool) -> PoolSnapshot {
    let signal = pool.signal.unwrap_or_default();
    PoolSnapshot {
        pool: pool.config.name.clone(),
        replicas: pool.desired(),
        max_replicas: pool.config.scaling.max_replicas,
        crashes_total: pool.crashes,
        crash_loop: pool.crash_loop,
        memory_bytes: pool.slots.iter().filter_map(|s| s.memory).max(),
        memory_limit: pool.config.memory_limit,
        depth: signal.depth,
        oldest_available_age: signal.oldest_age,
        dead_total: signal.dead,
    }
}

/// An alert as reports show it; `epoch_wall` is the wall time of the supervisor's clock 0.
fn alert_view(
    alert: &flotilla_fleet::alerts::Alert,
    epoch_wall: chrono::DateTime<chrono::Utc>,
) -> AlertView {
    AlertView {
        rule: alert.rule.as_str().into(),
        pool: alert.pool.clone(),
        severity: alert.severity.as_str().into(),
        message: alert.message.clone(),
        value: alert.value,
        since: epoch_wall + chrono::Duration::from_std(alert.since).unwrap_or_default(),
    }
}

fn interval(every: Duration) -> tokio::time::Interval {
    let mut i = tokio::time::interval(every);
    i.set_missed_tick_behavior(MissedTickBehavior::Delay);
    i
}
