//! Server configuration: `flotilla.toml`, then `FLOTILLA_*` environment variables, then
//! command-line flags (applied by the CLI), resolved into one validated [`ServerConfig`]
//! before anything starts. A bad file is refused with its path, line and reason.
//!
//! ```toml
//! listen = "127.0.0.1:7070"
//! store = "sqlite:flotilla.db"
//!
//! [[tokens]]
//! role = "admin"
//! token_env = "FLOTILLA_ADMIN_TOKEN"   # or: token = "..."
//!
//! [[tokens]]
//! role = "producer"
//! name = "web-app"                      # whose jobs these are; default producer-1, -2, …
//! token_env = "FLOTILLA_WEB_TOKEN"
//!
//! [[queues]]
//! name = "default"
//! lease = "30s"
//! concurrency = 8
//! retry = { policy = "exponential", max_attempts = 10, initial = "1s", factor = 2.0, max_interval = "10m" }
//!
//! [[cron]]
//! name = "nightly-report"
//! spec = "0 3 * * *"
//! queue = "default"
//! kind = "report.build"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use flotilla_core::{CronSchedule, DEFAULT_MAX_PAYLOAD_BYTES, QueueConfig};
use serde::{Deserialize, Serialize};

use crate::services::ServiceIntervals;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Enqueue jobs and read them.
    Producer,
    /// Register, poll, heartbeat, complete and fail.
    Worker,
    /// Everything.
    Admin,
}

/// A bearer token and its role. The secret comes from `token` or from the environment
/// variable named by `token_env`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The role.
    pub role: Role,
    /// Who holds it (letters, digits, `.`, `_`, `-`; at most 64). A producer sees only the
    /// jobs enqueued under its name. Default: the role and its position among the tokens
    /// of that role (`producer-1`, `producer-2`, …), so name producer tokens whose order
    /// may change.
    #[serde(default)]
    pub name: Option<String>,
    /// The secret itself.
    #[serde(default)]
    pub token: Option<String>,
    /// The environment variable holding the secret.
    #[serde(default)]
    pub token_env: Option<String>,
}

impl std::fmt::Debug for TokenConfig {
    // Never print a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenConfig")
            .field("role", &self.role)
            .field("name", &self.name)
            .field("token_env", &self.token_env)
            .finish_non_exhaustive()
    }
}

impl Role {
    /// The role's name, as in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Producer => "producer",
            Role::Worker => "worker",
            Role::Admin => "admin",
        }
    }
}

/// A resolved token: its secret, role and holder's name.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The bearer secret.
    pub secret: String,
    /// What it may do.
    pub role: Role,
    /// Who holds it; see [`TokenConfig::name`].
    pub name: String,
}

impl std::fmt::Debug for Credential {
    // Never print a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("role", &self.role)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn valid_token_name(name: &str) -> Result<String, ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(name.to_owned())
    } else {
        Err(ConfigError::Invalid(format!(
            "token name {name:?}: use 1 to 64 letters, digits, '.', '_' or '-'"
        )))
    }
}

/// TLS certificate and key (PEM).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain file.
    pub cert: PathBuf,
    /// Private key file.
    pub key: PathBuf,
}

/// The whole server configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on; loopback by default.
    pub listen: SocketAddr,
    /// The store: `sqlite:PATH`.
    pub store: String,
    /// `full` (default: an accepted job is fsynced before it is acknowledged; worker
    /// traffic within 50 ms), `strict` (every commit fsynced) or `relaxed` (acknowledged
    /// means written; survives a crash of the process, not of the machine). See
    /// [`flotilla_store::Durability`].
    pub durability: flotilla_store::Durability,
    /// Largest job payload, in bytes.
    pub max_payload_bytes: usize,
    /// Largest request body, in bytes (batches).
    pub max_body_bytes: usize,
    /// Longest time a request may take (long-polls get their wait on top).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Longest time a client may take to send a request's headers (slow clients are cut).
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// How long after each request idle CPUs spin instead of halting (see
    /// [`crate::BusyPoll`]); `0s` turns busy polling off.
    #[serde(with = "humantime_serde")]
    pub busy_poll: Duration,
    /// Bearer tokens; none means no authentication (loopback only).
    pub tokens: Vec<TokenConfig>,
    /// TLS, when set.
    pub tls: Option<TlsConfig>,
    /// Background service intervals.
    pub services: ServiceIntervals,
    /// Queues to create or update at start.
    pub queues: Vec<QueueConfig>,
    /// Cron schedules to create or update at start.
    pub cron: Vec<CronSchedule>,
    /// Where uploads and outputs live: a directory (a path, or `file:///ABS/DIR`), or
    /// `s3://bucket[/prefix]?endpoint=…` (credentials from `AWS_*` variables). Default: the
    /// directory `flotilla-objects` beside a SQLite store's file (or in the working
    /// directory); see [`ServerConfig::objects_url`].
    pub objects: Option<String>,
    /// Largest asset upload, in bytes.
    pub max_upload_bytes: u64,
    /// Pipelines besides (or replacing, by name) the built-in ones (`image`, `video`,
    /// `image-basic`, `video-basic`, `anb-video`, `image-ai`, `video-ai`).
    pub pipelines: Vec<crate::pipelines::PipelineConfig>,
    /// The AI models (`runtime`, `[[ai.models]]`): read by the workers that run the
    /// enrichment steps (`flotilla worker`, `flotilla models`), kept here so that one
    /// flotilla.toml can hold both; the server does not use it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ai: Option<toml::Table>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            store: "sqlite:flotilla.db".into(),
            durability: flotilla_store::Durability::Full,
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            max_body_bytes: 16 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            busy_poll: Duration::from_micros(200),
            tokens: Vec::new(),
            tls: None,
            services: ServiceIntervals::default(),
            queues: vec![QueueConfig::new("default")],
            cron: Vec::new(),
            objects: None,
            max_upload_bytes: 2 * 1024 * 1024 * 1024,
            pipelines: Vec::new(),
            ai: None,
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has a wrong or unknown key.
    #[error("{path}:{line}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl ServerConfig {
    /// Reads `path`.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Parses `text`, naming `path` in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(1, |span| {
                text[..span.start.min(text.len())].lines().count().max(1)
            });
            let line = if e
                .span()
                .is_some_and(|s| text[..s.start.min(text.len())].ends_with('\n'))
            {
                line + 1
            } else {
                line
            };
            ConfigError::Parse {
                path: path.into(),
                line,
                reason: e.message().to_owned(),
            }
        })
    }

    /// Applies `FLOTILLA_LISTEN`, `FLOTILLA_STORE`, `FLOTILLA_OBJECTS`, `FLOTILLA_TOKENS`
    /// (`role:secret,role:secret`), `FLOTILLA_DURABILITY` and `FLOTILLA_BUSY_POLL` from
    /// `env`.
    pub fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(listen) = env("FLOTILLA_LISTEN") {
            self.listen = listen
                .parse()
                .map_err(|e| ConfigError::Invalid(format!("FLOTILLA_LISTEN={listen:?}: {e}")))?;
        }
        if let Some(store) = env("FLOTILLA_STORE") {
            self.store = store;
        }
        if let Some(objects) = env("FLOTILLA_OBJECTS") {
            self.objects = Some(objects);
        }
        if let Some(durability) = env("FLOTILLA_DURABILITY") {
            self.durability = durability
                .parse()
                .map_err(|e| ConfigError::Invalid(format!("FLOTILLA_DURABILITY: {e}")))?;
        }
        if let Some(window) = env("FLOTILLA_BUSY_POLL") {
            self.busy_poll = humantime::parse_duration(&window)
                .map_err(|e| ConfigError::Invalid(format!("FLOTILLA_BUSY_POLL={window:?}: {e}")))?;
        }
        if let Some(tokens) = env("FLOTILLA_TOKENS") {
            for entry in tokens.split(',').filter(|e| !e.is_empty()) {
                let (role, secret) = entry.split_once(':').ok_or_else(|| {
                    ConfigError::Invalid("FLOTILLA_TOKENS entries are role:secret".into())
                })?;
                let role = serde_json::from_value(serde_json::Value::String(role.into())).map_err(
                    |_| ConfigError::Invalid(format!("FLOTILLA_TOKENS: unknown role {role:?}")),
                )?;
                self.tokens.push(TokenConfig {
                    role,
                    name: None,
                    token: Some(secret.into()),
                    token_env: None,
                });
            }
        }
        Ok(())
    }

    /// The secrets with their roles and names, reading `token_env` variables from `env`.
    pub fn resolve_tokens(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<Credential>, ConfigError> {
        let mut seen: Vec<Role> = Vec::new();
        self.tokens
            .iter()
            .map(|t| {
                seen.push(t.role);
                let position = seen.iter().filter(|r| **r == t.role).count();
                let name = match &t.name {
                    Some(name) => valid_token_name(name)?,
                    None => format!("{}-{position}", t.role.as_str()),
                };
                let secret = match (&t.token, &t.token_env) {
                    (Some(s), None) => s.clone(),
                    (None, Some(var)) => env(var).ok_or_else(|| {
                        ConfigError::Invalid(format!("token_env {var} is not set"))
                    })?,
                    _ => {
                        return Err(ConfigError::Invalid(
                            "each token needs exactly one of `token` or `token_env`".into(),
                        ));
                    }
                };
                if secret.len() < 16 {
                    return Err(ConfigError::Invalid(format!(
                        "a {:?} token is shorter than 16 characters",
                        t.role
                    )));
                }
                Ok(Credential {
                    secret,
                    role: t.role,
                    name,
                })
            })
            .collect()
    }

    /// The object store's URL: `objects` when set, else `flotilla-objects` beside a SQLite
    /// store's file, else in the working directory.
    pub fn objects_url(&self) -> String {
        if let Some(url) = &self.objects {
            return url.clone();
        }
        let beside = self
            .store
            .strip_prefix("sqlite:")
            .map(Path::new)
            .and_then(Path::parent)
            .filter(|dir| !dir.as_os_str().is_empty());
        match beside {
            Some(dir) => dir.join("flotilla-objects").display().to_string(),
            None => "flotilla-objects".into(),
        }
    }

    /// The pipelines in force: the built-in ones, replaced by name or added to by the
    /// configured ones.
    pub fn all_pipelines(&self) -> Vec<crate::pipelines::PipelineConfig> {
        let mut all = crate::pipelines::builtin();
        for p in &self.pipelines {
            all.retain(|b| b.name != p.name);
            all.push(p.clone());
        }
        all
    }

    /// The queues to create at start: the configured ones, then each queue a pipeline
    /// uses that is not configured, with the defaults of its kind of work.
    pub fn queues_to_create(&self) -> Vec<QueueConfig> {
        let mut queues = self.queues.clone();
        for p in self.all_pipelines() {
            for name in p.queues() {
                if !queues.iter().any(|q| q.name == name) {
                    queues.push(crate::pipelines::default_media_queue(name));
                }
            }
        }
        queues
    }

    /// Checks the settings together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.listen.ip().is_loopback() && self.tokens.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "refusing to listen on {} without tokens: anyone could reach the API. Configure [[tokens]] \
                 (or FLOTILLA_TOKENS) or listen on 127.0.0.1",
                self.listen
            )));
        }
        if self.max_payload_bytes == 0 || self.max_body_bytes < self.max_payload_bytes {
            return Err(ConfigError::Invalid(
                "max_body_bytes must be at least max_payload_bytes (> 0)".into(),
            ));
        }
        for q in &self.queues {
            q.validate()
                .map_err(|e| ConfigError::Invalid(format!("queue {:?}: {e}", q.name)))?;
        }
        for p in self.all_pipelines() {
            let run = p.run(
                &serde_json::Value::Null,
                serde_json::Value::Null,
                &Default::default(),
            );
            flotilla_core::validate_run(&run)
                .map_err(|e| ConfigError::Invalid(format!("pipeline {:?}: {e}", p.name)))?;
        }
        for c in &self.cron {
            c.validate()
                .map_err(|e| ConfigError::Invalid(format!("cron {:?}: {e}", c.name)))?;
            if !self.queues.iter().any(|q| q.name == c.queue) {
                return Err(ConfigError::Invalid(format!(
                    "cron {:?}: queue {:?} is not configured",
                    c.name, c.queue
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ServerConfig, ConfigError> {
        ServerConfig::from_toml(text, Path::new("flotilla.toml"))
    }

    #[test]
    fn a_full_file_parses() {
        let config = parse(
            r#"
listen = "127.0.0.1:9000"
store = "sqlite:/tmp/x.db"

[[queues]]
name = "q-transcode"
lease = "2m"
concurrency = 2
retry = { policy = "limited", max_attempts = 3, delay = "5s" }

[[cron]]
name = "tick"
spec = "*/5 * * * *"
queue = "q-transcode"
kind = "noop"
"#,
        )
        .unwrap();
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.queues[0].lease, Duration::from_secs(120));
        config.validate().unwrap();
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let err = parse("listen = \"127.0.0.1:1\"\n\n[[queues]]\nname = \"q\"\nleese = \"1s\"\n")
            .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("flotilla.toml:5: "), "{text}");
        assert!(text.contains("leese"), "{text}");
    }

    #[test]
    fn open_bind_without_tokens_is_refused() {
        let config = ServerConfig {
            listen: "0.0.0.0:7070".parse().unwrap(),
            ..ServerConfig::default()
        };
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("without tokens")
        );
    }

    #[test]
    fn durability_and_busy_polling_come_from_the_file_or_the_environment() {
        let config = parse("durability = \"strict\"\nbusy_poll = \"0s\"\n").unwrap();
        assert_eq!(config.durability, flotilla_store::Durability::Strict);
        assert_eq!(config.busy_poll, Duration::ZERO);
        let defaults = ServerConfig::default();
        assert_eq!(defaults.durability, flotilla_store::Durability::Full);
        assert_eq!(defaults.busy_poll, Duration::from_micros(200));

        let mut config = ServerConfig::default();
        config
            .apply_env(|k| match k {
                "FLOTILLA_DURABILITY" => Some("relaxed".into()),
                "FLOTILLA_BUSY_POLL" => Some("1ms".into()),
                _ => None,
            })
            .unwrap();
        assert_eq!(config.durability, flotilla_store::Durability::Relaxed);
        assert_eq!(config.busy_poll, Duration::from_millis(1));
        for (key, value) in [
            ("FLOTILLA_DURABILITY", "sometimes"),
            ("FLOTILLA_BUSY_POLL", "soon"),
        ] {
            let err = ServerConfig::default()
                .apply_env(|k| (k == key).then(|| value.to_owned()))
                .unwrap_err();
            assert!(err.to_string().contains(key), "{err}");
        }
    }

    #[test]
    fn tokens_come_from_env_and_never_print() {
        let mut config = ServerConfig::default();
        config
            .apply_env(|k| {
                (k == "FLOTILLA_TOKENS").then(|| "admin:0123456789abcdef0123".to_owned())
            })
            .unwrap();
        let tokens = config.resolve_tokens(|_| None).unwrap();
        assert_eq!(
            tokens,
            vec![Credential {
                secret: "0123456789abcdef0123".to_owned(),
                role: Role::Admin,
                name: "admin-1".to_owned(),
            }]
        );
        assert!(!format!("{tokens:?}").contains("0123456789abcdef"));
        assert!(!format!("{config:?}").contains("0123456789abcdef"));
    }
}
