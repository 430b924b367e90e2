//! The supervisor's own port: `/healthz` (alive), `/status` (the [`FleetReport`] as JSON,
//! what `flotilla fleet status` prints) and `/metrics` (Prometheus text format).

use std::fmt::Write;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use flotilla_proto::{FleetReport, HealthResponse};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::error;

/// Serves the port until `stop`.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    report: watch::Receiver<FleetReport>,
    stop: CancellationToken,
) {
    let app = Router::new()
        .route(
            "/healthz",
            get(|| async {
                axum::Json(HealthResponse {
                    status: "ok".into(),
                })
            }),
        )
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .with_state(report);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await;
    if let Err(err) = served {
        error!(%err, "the supervisor's status port failed");
    }
}

async fn status(State(report): State<watch::Receiver<FleetReport>>) -> axum::Json<FleetReport> {
    axum::Json(report.borrow().clone())
}

async fn metrics(State(report): State<watch::Receiver<FleetReport>>) -> impl IntoResponse {
    let text = render(&report.borrow());
    let content_type = "text/plain; version=0.0.4; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], text)
}

/// The report as Prometheus metrics (names documented in `deploy/prometheus/`).
pub fn render(report: &FleetReport) -> String {
    let mut out = String::new();
    let pools = &report.pools;
    type PoolValue = fn(&flotilla_proto::PoolReport) -> f64;
    let families: [(&str, &str, &str, PoolValue); 9] = [
        (
            "flotilla_fleet_replicas",
            "gauge",
            "Worker processes running.",
            |p| p.processes.iter().filter(|x| x.pid.is_some()).count() as f64,
        ),
        (
            "flotilla_fleet_desired_replicas",
            "gauge",
            "Worker processes the pool wants.",
            |p| f64::from(p.desired_replicas),
        ),
        (
            "flotilla_fleet_min_replicas",
            "gauge",
            "Fewest processes.",
            |p| f64::from(p.min_replicas),
        ),
        (
            "flotilla_fleet_max_replicas",
            "gauge",
            "Most processes.",
            |p| f64::from(p.max_replicas),
        ),
        (
            "flotilla_fleet_crashes_total",
            "counter",
            "Worker crashes.",
            |p| p.crashes as f64,
        ),
        (
            "flotilla_fleet_restarts_total",
            "counter",
            "Worker restarts.",
            |p| p.restarts as f64,
        ),
        (
            "flotilla_fleet_crash_loop",
            "gauge",
            "1 while the pool crash-loops.",
            |p| f64::from(u8::from(p.state == "crash_loop")),
        ),
        (
            "flotilla_fleet_queue_depth",
            "gauge",
            "Available jobs in the pool's queues.",
            |p| p.depth as f64,
        ),
        (
            "flotilla_fleet_oldest_available_age_seconds",
            "gauge",
            "Age of the oldest available job.",
            |p| p.oldest_available_age_ms.unwrap_or(0) as f64 / 1000.0,
        ),
    ];
    for (name, kind, help, value) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for p in pools {
            let _ = writeln!(out, "{name}{{pool=\"{}\"}} {}", p.name, value(p));
        }
    }
    let _ = writeln!(
        out,
        "# HELP flotilla_fleet_memory_limit_bytes Memory ceiling of each process.\n# TYPE flotilla_fleet_memory_limit_bytes gauge"
    );
    for p in pools {
        if let Some(limit) = p.memory_limit_bytes {
            let _ = writeln!(
                out,
                "flotilla_fleet_memory_limit_bytes{{pool=\"{}\"}} {limit}",
                p.name
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP flotilla_fleet_process_memory_bytes Resident memory of a worker and its children.\n# TYPE flotilla_fleet_process_memory_bytes gauge"
    );
    for p in pools {
        for x in &p.processes {
            if let Some(bytes) = x.memory_bytes {
                let _ = writeln!(
                    out,
                    "flotilla_fleet_process_memory_bytes{{pool=\"{}\",process=\"{}\"}} {bytes}",
                    p.name, x.id
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP flotilla_fleet_scaling_decisions_total Scaling decisions taken.\n# TYPE flotilla_fleet_scaling_decisions_total counter"
    );
    for p in pools {
        for (direction, n) in [("out", p.scale_outs), ("in", p.scale_ins)] {
            let _ = writeln!(
                out,
                "flotilla_fleet_scaling_decisions_total{{pool=\"{}\",direction=\"{direction}\"}} {n}",
                p.name
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP flotilla_fleet_alerts_firing Alerts firing now.\n# TYPE flotilla_fleet_alerts_firing gauge"
    );
    for a in &report.alerts {
        let _ = writeln!(
            out,
            "flotilla_fleet_alerts_firing{{pool=\"{}\",alert=\"{}\",severity=\"{}\"}} 1",
            a.pool, a.rule, a.severity
        );
    }
    out
}
