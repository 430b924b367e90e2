//! `flotilla server`: configuration (file → environment → flags), the store, the engine's
//! services and the HTTP API, until SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use flotilla_api::{Auth, Limits};
use flotilla_core::SystemClock;
use flotilla_server::{BusyPoll, Engine, ServerConfig};
use flotilla_store::Store;
use flotilla_store_postgres::{PgOptions, PgStore};
use flotilla_store_sqlite::{Durability, SqliteOptions, SqliteStore};
use tokio_util::sync::CancellationToken;

/// Options of `flotilla server`.
#[derive(clap::Args, Debug)]
pub(crate) struct ServerArgs {
    /// Configuration file (default: ./flotilla.toml when it exists).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Address to listen on [env: FLOTILLA_LISTEN] (default 127.0.0.1:7070).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// The store, `sqlite:PATH` or `postgres://user@host/db[?schema=NAME]` [env:
    /// FLOTILLA_STORE] (default sqlite:flotilla.db).
    #[arg(long)]
    store: Option<String>,
    /// Where assets' uploads and outputs live: a directory or
    /// `s3://bucket[/prefix]?endpoint=URL` [env: FLOTILLA_OBJECTS] (default: the directory
    /// flotilla-objects beside a SQLite store's file).
    #[arg(long)]
    objects: Option<String>,
}

/// Resolves the configuration: file, then `FLOTILLA_*` variables, then flags.
pub(crate) fn config(args: &ServerArgs) -> anyhow::Result<ServerConfig> {
    let default_file = PathBuf::from("flotilla.toml");
    let mut config = match &args.config {
        Some(path) => ServerConfig::from_file(path)?,
        None if default_file.exists() => ServerConfig::from_file(&default_file)?,
        None => ServerConfig::default(),
    };
    config.apply_env(|k| std::env::var(k).ok())?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(store) = &args.store {
        config.store.clone_from(store);
    }
    if let Some(objects) = &args.objects {
        config.objects = Some(objects.clone());
    }
    config.validate()?;
    Ok(config)
}

/// Opens (and migrates) the store `url` names: `sqlite:PATH`, or a PostgreSQL URL
/// (`postgres://user@host:port/db`, optionally `?schema=NAME` to keep Flotilla's tables in
/// their own schema; other query parameters go to the driver).
pub(crate) async fn open_store(
    url: &str,
    max_payload_bytes: usize,
    durability: Durability,
) -> anyhow::Result<Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let (url, schema) = split_schema(url);
        let options = PgOptions {
            schema,
            durability,
            max_payload_bytes,
            ..PgOptions::default()
        };
        let store = PgStore::connect(&url, options)
            .await
            .with_context(|| format!("opening the store {}", redact(&url)))?;
        return Ok(Arc::new(store));
    }
    let Some(path) = url.strip_prefix("sqlite:") else {
        bail!("unsupported store {url:?}: use sqlite:PATH or postgres://user@host/db");
    };
    let options = SqliteOptions {
        max_payload_bytes,
        durability,
        ..SqliteOptions::default()
    };
    let store =
        SqliteStore::open(path, options).with_context(|| format!("opening the store {url}"))?;
    Ok(Arc::new(store))
}

/// Takes the `schema` query parameter out of a PostgreSQL URL.
fn split_schema(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut schema = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.strip_prefix("schema=") {
            Some(name) => {
                schema = Some(name.to_owned());
                false
            }
            None => !pair.is_empty(),
        })
        .collect();
    let url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    (url, schema)
}

/// A store URL fit for a log line or an error: any password replaced by `***`.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = rest.split_once('/').map_or((rest, ""), |(a, t)| (a, t));
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    let user = userinfo.split(':').next().unwrap_or_default();
    let masked = if userinfo.contains(':') {
        format!("{user}:***")
    } else {
        user.to_owned()
    };
    let slash = if rest.contains('/') { "/" } else { "" };
    format!("{scheme}://{masked}@{host}{slash}{tail}")
}

pub(crate) async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let config = config(&args)?;
    let tokens = config.resolve_tokens(|k| std::env::var(k).ok())?;
    let store = open_store(&config.store, config.max_payload_bytes, config.durability).await?;
    let engine = Engine::new(store, Arc::new(SystemClock));
    engine
        .apply(&config)
        .await
        .context("applying the configured queues and cron schedules")?;

    let shutdown = CancellationToken::new();
    let services = engine.start_services(&config.services, &shutdown);
    let limits = Limits {
        max_body_bytes: config.max_body_bytes,
        request_timeout: config.request_timeout,
    };
    let objects_url = config.objects_url();
    let objects = flotilla_objects::Objects::open(&objects_url)
        .with_context(|| format!("opening the object store {objects_url}"))?;
    tracing::info!(objects = objects.description(), "object store for assets");
    let media = flotilla_api::assets::Media {
        objects,
        pipelines: config.all_pipelines(),
        max_upload_bytes: config.max_upload_bytes,
    };
    let mut app = flotilla_api::router_with_media(engine, Auth::new(tokens), limits, Some(media));
    if let Some(busy) = BusyPoll::start(config.busy_poll) {
        app = app.layer(axum::middleware::from_fn_with_state(busy, touch_busy_poll));
    }
    let stop = shutdown.clone();
    tokio::spawn(async move {
        crate::signals::terminated().await;
        tracing::info!("shutting down: finishing requests in flight");
        stop.cancel();
    });
    serve(&config, app, &shutdown).await?;
    services.join_all().await;
    Ok(())
}

/// Keeps the CPUs awake from the start of each request until a window after its answer
/// (see [`BusyPoll`]).
async fn touch_busy_poll(
    axum::extract::State(busy): axum::extract::State<BusyPoll>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    busy.touch();
    let response = next.run(request).await;
    busy.touch();
    response
}

/// Serves `app` until `shutdown`: HTTPS with rustls (the `ring` provider) when `[tls]` is
/// set, plain HTTP otherwise; either way a client gets `header_timeout` to send its headers.
async fn serve(
    config: &ServerConfig,
    app: axum::Router,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let handle = axum_server::Handle::new();
    let mut server = axum_server::bind(config.listen).handle(handle.clone());
    server
        .http_builder()
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(config.header_timeout);
    let service = app.into_make_service();
    let running = match &config.tls {
        None => tokio::spawn(server.serve(service)),
        Some(tls) => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let rustls = axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert, &tls.key)
                .await
                .with_context(|| {
                    format!(
                        "loading TLS certificate {} and key {}",
                        tls.cert.display(),
                        tls.key.display()
                    )
                })?;
            let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(rustls);
            tokio::spawn(server.acceptor(acceptor).serve(service))
        }
    };
    let Some(listen) = handle.listening().await else {
        running.await??;
        anyhow::bail!("cannot listen on {}", config.listen);
    };
    tracing::info!(listen = %listen, store = %redact(&config.store), tls = config.tls.is_some(), "flotilla server ready");
    shutdown.cancelled().await;
    handle.graceful_shutdown(Some(std::time::Duration::from_secs(30)));
    running.await??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_comes_out_of_the_url_and_passwords_stay_out_of_logs() {
        assert_eq!(
            split_schema("postgres://u@h/db?schema=s1&sslmode=disable"),
            (
                "postgres://u@h/db?sslmode=disable".into(),
                Some("s1".into())
            )
        );
        assert_eq!(
            split_schema("postgres://u@h/db?schema=s1"),
            ("postgres://u@h/db".into(), Some("s1".into()))
        );
        assert_eq!(
            split_schema("postgres://u@h/db"),
            ("postgres://u@h/db".into(), None)
        );
        assert_eq!(
            redact("postgres://app:s3cret@db.example:5432/flotilla"),
            "postgres://app:***@db.example:5432/flotilla"
        );
        assert_eq!(redact("postgres://app@db/x"), "postgres://app@db/x");
        assert_eq!(redact("sqlite:/tmp/f.db"), "sqlite:/tmp/f.db");
    }
}
