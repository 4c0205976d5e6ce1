//! The HTTP endpoints of the roles without the API (`roster project`,
//! `roster worker`, `roster relay`): `/healthz`, `/readyz` and `/metrics`.
//! The binary only wires them; what a status code means is decided here,
//! in the HTTP crate.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::routing::{get, MethodRouter};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use roster_projections::{LagLimits, Projector};
use roster_store::Clock;
use tokio::sync::watch;

use crate::routes::system::{readiness, READY_TIMEOUT};

/// `/metrics`: the Prometheus text format.
pub fn metrics_route(metrics: PrometheusHandle) -> MethodRouter {
    get(move || {
        let m = metrics.clone();
        async move {
            (
                [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                m.render(),
            )
        }
    })
}

/// `/healthz`: the process answers.
pub fn healthz_route() -> MethodRouter {
    get(|| async { Json(serde_json::json!({ "status": "ok" })) })
}

/// `/healthz`, `/readyz` (the projections' lag, as `serve` reports it) and
/// `/metrics` of `roster project` and `roster worker`.
pub fn projection_health(
    projector: Arc<Projector>,
    clock: Arc<dyn Clock>,
    limits: LagLimits,
    metrics: PrometheusHandle,
) -> Router {
    let readyz = get(move || {
        let (projector, clock) = (projector.clone(), clock.clone());
        async move {
            let (status, body) =
                readiness(&projector, clock.now().timestamp_micros(), limits).await;
            (status, Json(body))
        }
    });
    Router::new()
        .route("/healthz", healthz_route())
        .route("/readyz", readyz)
        .route("/metrics", metrics_route(metrics))
}

/// `/healthz`, `/readyz` and `/metrics` of `roster relay`: ready while the
/// database answers and publishing is not halted; the body says whether
/// this relay publishes or stands by, and how far behind the log it is.
/// A relay that has not been able to start publishing for `ready_failing`
/// is not ready: events pile up in the log (issue 16).
pub fn relay_health(
    relay: Arc<roster_relay::Relay>,
    metrics: PrometheusHandle,
    ready_failing: Duration,
) -> Router {
    let readyz = get(move || {
        let relay = relay.clone();
        async move { relay_readiness(&relay, ready_failing).await }
    });
    Router::new()
        .route("/healthz", healthz_route())
        .route("/readyz", readyz)
        .route("/metrics", metrics_route(metrics))
}

async fn relay_readiness(
    relay: &roster_relay::Relay,
    ready_failing: Duration,
) -> (StatusCode, Json<serde_json::Value>) {
    let halted = relay.halted().borrow().clone();
    let active = *relay.active().borrow();
    let failing = relay
        .failing()
        .borrow()
        .clone()
        .filter(|(since, _)| since.elapsed() >= ready_failing)
        .map(|(since, why)| (since.elapsed().as_secs(), why));
    let positions = tokio::time::timeout(READY_TIMEOUT, async {
        (relay.checkpoint().await, relay.log_head().await)
    })
    .await;
    let Ok((Ok(checkpoint), Ok(head))) = positions else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "database unavailable" })),
        );
    };
    let (code, status) = match (&halted, &failing, active) {
        (Some(_), _, _) => (StatusCode::SERVICE_UNAVAILABLE, "halted"),
        (None, Some(_), _) => (StatusCode::SERVICE_UNAVAILABLE, "cannot publish"),
        (None, None, true) => (StatusCode::OK, "active"),
        (None, None, false) => (StatusCode::OK, "standby"),
    };
    (
        code,
        Json(serde_json::json!({
            "status": status,
            "checkpoint": checkpoint,
            "log_head": head,
            "behind_events": (head - checkpoint).max(0),
            "halted": halted,
            "failing": failing.map(|(seconds, error)| serde_json::json!({
                "seconds": seconds,
                "error": error,
            })),
        })),
    )
}

/// Serves a role's health endpoints until `stop` turns true.
pub fn serve_health(
    listener: tokio::net::TcpListener,
    router: Router,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    tracing::info!(listen = %listener.local_addr()?, "health endpoints: /healthz, /readyz, /metrics");
    Ok(tokio::spawn(async move {
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, router)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::error!(error = %e, "health endpoints stopped");
        }
    }))
}
