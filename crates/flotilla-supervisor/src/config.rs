//! `fleet.toml`: the server to pull from, the supervisor's status address, and its pools.
//! Parsed and validated whole before any process starts; a bad file is refused with its
//! path, line and reason.
//!
//! ```toml
//! server = "http://127.0.0.1:7070"   # FLOTILLA_TOKEN in the environment is passed on
//! listen = "127.0.0.1:9400"          # /healthz, /metrics, /status
//!
//! [[pools]]
//! name = "transcode"
//! queues = ["q-transcode"]
//! concurrency = 1
//! min_replicas = 1
//! max_replicas = 3
//! memory_limit = "4GiB"
//! args = ["--objects", "/srv/flotilla-objects"]
//! env = { RUST_LOG = "info" }
//! restart = { delay = "5s", max_delay = "5m", crash_loop_after = 5, crash_loop_window = "10m" }
//! scaling = { scale_out_depth = 10, scale_out_for = "3m" }   # seed 004's rules by default
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use flotilla_fleet::ScalingPolicy;
use flotilla_fleet::alerts::AlertPolicy;
use serde::{Deserialize, Deserializer};

/// A whole `fleet.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// The supervisor's name in reports (default: the host name).
    #[serde(default)]
    pub name: Option<String>,
    /// The Flotilla server the workers pull from.
    #[serde(default = "default_server")]
    pub server: String,
    /// Where the supervisor serves `/healthz`, `/metrics` and `/status`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// How often the queues' signals are read and the policy consulted.
    #[serde(default = "default_signal_interval", with = "humantime_serde")]
    pub signal_interval: Duration,
    /// How often the supervisor reports to the server (`PUT /v1/fleet/{name}`).
    #[serde(default = "default_report_interval", with = "humantime_serde")]
    pub report_interval: Duration,
    /// Alert thresholds and webhooks.
    #[serde(default)]
    pub alerts: AlertPolicy,
    /// The pools.
    pub pools: Vec<PoolConfig>,
}

/// One pool of identical worker processes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// The pool's name (worker ids are `<name>-<n>`).
    pub name: String,
    /// Queues its workers serve, in priority order.
    pub queues: Vec<String>,
    /// Jobs each process runs at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// Fewest processes (overrides `scaling.min_replicas`).
    #[serde(default)]
    pub min_replicas: Option<u32>,
    /// Most processes (overrides `scaling.max_replicas`).
    #[serde(default)]
    pub max_replicas: Option<u32>,
    /// A process whose resident memory (with its children's) passes this is drained and
    /// replaced: bytes, or `"512MiB"`, `"4GiB"`, `"800MB"`.
    #[serde(default, deserialize_with = "de_bytes")]
    pub memory_limit: Option<u64>,
    /// How long a draining process's running jobs may take before they are handed back
    /// (passed as the worker's `--shutdown-grace`); it is killed 30 s after that.
    #[serde(default = "default_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// The program and first arguments of a worker (default: this binary's `worker`).
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// Extra arguments after the supervisor's own (`--url`, `--queues`, `--concurrency`,
    /// `--id`, `--health-addr`, `--shutdown-grace`).
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Restarts after crashes.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// Autoscaling; seed 004's rules by default.
    #[serde(default)]
    pub scaling: ScalingPolicy,
}

/// When a crashed process comes back: after `delay`, doubled for each crash in a row up to
/// `max_delay`; `crash_loop_after` crashes inside `crash_loop_window` put the pool in the
/// crash-loop state (shown and alerted; restarts go on, backing off up to `max_delay`). A
/// process that ran
/// for `reset_after` starts the series again.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestartPolicy {
    /// The first delay.
    #[serde(with = "humantime_serde")]
    pub delay: Duration,
    /// The longest delay.
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
    /// Crashes within the window that make a crash loop.
    pub crash_loop_after: u32,
    /// The crash-loop window.
    #[serde(with = "humantime_serde")]
    pub crash_loop_window: Duration,
    /// A process that ran this long before crashing restarts after `delay` again.
    #[serde(with = "humantime_serde")]
    pub reset_after: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(300),
            crash_loop_after: 5,
            crash_loop_window: Duration::from_secs(600),
            reset_after: Duration::from_secs(60),
        }
    }
}

/// Why a `fleet.toml` was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has a wrong or unknown field.
    #[error("{path}:{line}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// Why.
        reason: String,
    },
    /// The values make no sense together.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl FleetConfig {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Parses and validates `text`, naming `path` in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let mut config: Self = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            line: e.span().map_or(1, |s| line_of(text, s.start)),
            reason: e.message().to_owned(),
        })?;
        config.settle().map_err(|reason| ConfigError::Invalid {
            path: path.into(),
            reason,
        })?;
        Ok(config)
    }

    /// Moves pool-level bounds into each scaling policy and checks everything.
    fn settle(&mut self) -> Result<(), String> {
        if self.pools.is_empty() {
            return Err("no [[pools]]".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for pool in &mut self.pools {
            pool.settle()?;
            if !names.insert(pool.name.clone()) {
                return Err(format!("two pools named {:?}", pool.name));
            }
        }
        self.alerts
            .validate()
            .map_err(|e| format!("[alerts]: {e}"))?;
        if self.signal_interval.is_zero() || self.report_interval.is_zero() {
            return Err("signal_interval and report_interval must be above zero".into());
        }
        Ok(())
    }
}

impl PoolConfig {
    fn settle(&mut self) -> Result<(), String> {
        let name = &self.name;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!("pool name {name:?}: use letters, digits, - and _"));
        }
        if self.queues.is_empty() {
            return Err(format!("pool {name:?}: no queues"));
        }
        if self.concurrency == 0 {
            return Err(format!("pool {name:?}: concurrency must be at least 1"));
        }
        if self.command.as_ref().is_some_and(Vec::is_empty) {
            return Err(format!("pool {name:?}: command is empty"));
        }
        if let Some(min) = self.min_replicas {
            self.scaling.min_replicas = min;
        }
        if let Some(max) = self.max_replicas {
            self.scaling.max_replicas = max;
        }
        self.scaling
            .validate()
            .map_err(|e| format!("pool {name:?}: {e}"))?;
        let r = &self.restart;
        if r.delay.is_zero() || r.max_delay < r.delay || r.crash_loop_after == 0 {
            return Err(format!(
                "pool {name:?}: restart needs 0 < delay <= max_delay and crash_loop_after >= 1"
            ));
        }
        Ok(())
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    let before = &text[..offset.min(text.len())];
    before.matches('\n').count() + 1
}

fn default_server() -> String {
    "http://127.0.0.1:7070".into()
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9400))
}
fn default_signal_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_report_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_concurrency() -> u32 {
    4
}
fn default_grace() -> Duration {
    Duration::from_secs(600)
}

/// A byte size: an integer, or a number with a unit (`B`, `KB`, `MB`, `GB`, `KiB`, `MiB`,
/// `GiB`).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 512MiB"))?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => return Err(format!("unknown unit {other:?} in {text:?}")),
    };
    Ok((number * scale as f64) as u64)
}

fn de_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Size::deserialize(d)? {
        Size::Bytes(n) => Ok(Some(n)),
        Size::Text(t) => parse_bytes(&t).map(Some).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FleetConfig, ConfigError> {
        FleetConfig::from_toml(text, Path::new("fleet.toml"))
    }

    #[test]
    fn the_documented_example_parses_with_seed_defaults_where_silent() {
        let text = r#"
server = "http://127.0.0.1:7070"
[[pools]]
name = "transcode"
queues = ["q-transcode"]
concurrency = 1
max_replicas = 5
memory_limit = "4GiB"
restart = { delay = "1s" }
scaling = { scale_out_for = "1m" }
"#;
        let config = parse(text).unwrap();
        let pool = &config.pools[0];
        assert_eq!(pool.memory_limit, Some(4 << 30));
        assert_eq!(pool.scaling.max_replicas, 5, "pool bound wins");
        assert_eq!(pool.scaling.min_replicas, 1);
        assert_eq!(pool.scaling.scale_out_for, Duration::from_secs(60));
        assert_eq!(pool.scaling.scale_in_for, Duration::from_secs(300));
        assert_eq!(pool.restart.delay, Duration::from_secs(1));
        assert_eq!(pool.restart.crash_loop_after, 5);
        assert_eq!(config.listen.port(), 9400);
    }

    #[test]
    fn a_bad_file_names_its_line_and_reason() {
        let text = "server = \"x\"\n[[pools]]\nname = \"a\"\nqueues = [\"q\"]\nconcurency = 2\n";
        let err = parse(text).unwrap_err().to_string();
        assert!(err.starts_with("fleet.toml:5:"), "{err}");
        assert!(err.contains("concurency"), "{err}");
    }

    #[test]
    fn inconsistent_values_are_refused() {
        let cases = [
            ("pools = []", "no [[pools]]"),
            ("[[pools]]\nname = \"a\"\nqueues = []", "no queues"),
            ("[[pools]]\nname = \"a b\"\nqueues = [\"q\"]", "pool name"),
            (
                "[[pools]]\nname = \"a\"\nqueues = [\"q\"]\nmin_replicas = 4\nmax_replicas = 2",
                "pool \"a\"",
            ),
            (
                "[[pools]]\nname = \"a\"\nqueues = [\"q\"]\n[[pools]]\nname = \"a\"\nqueues = [\"q\"]",
                "two pools",
            ),
            (
                "[[pools]]\nname = \"a\"\nqueues = [\"q\"]\nmemory_limit = \"3 parsecs\"",
                "unknown unit",
            ),
        ];
        for (text, expected) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }

    #[test]
    fn sizes_take_decimal_and_binary_units() {
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("1.5GB"), Ok(1_500_000_000));
        assert_eq!(parse_bytes("1000"), Ok(1000));
        assert!(parse_bytes("MiB").is_err());
    }
}
