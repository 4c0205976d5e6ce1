//! Health, readiness, metrics and the OpenAPI document.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::dto::Health;
use crate::AppState;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "system", responses((status = 200, description = "alive")))]
pub async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Readiness: the database answers and every projection is within the
/// configured lag of the log's head (default 1,000 events, or its oldest
/// unapplied event at most 5 s old); the body says how far behind each is.
#[utoipa::path(get, path = "/readyz", tag = "system", responses(
    (status = 200, description = "ready", body = Health),
    (status = 503, description = "not ready: the database is unavailable or a projection is behind", body = Health)))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let (status, body) = readiness(
        &state.projector,
        state.clock.now().timestamp_micros(),
        state.ready_lag,
    )
    .await;
    (status, Json(body)).into_response()
}

/// How long `/readyz` waits for the database before answering 503.
pub const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The readiness of a process that projects or reads projections (also
/// served by `roster worker` and `roster project` with `--listen`).
pub async fn readiness(
    projector: &roster_projections::Projector,
    now_micros: i64,
    limits: roster_projections::LagLimits,
) -> (StatusCode, Health) {
    let store = projector.store();
    // Bounded (issue 16): an unreachable database turns /readyz 503 within
    // the pool's acquire timeout, and never later than READY_TIMEOUT.
    let lag = tokio::time::timeout(READY_TIMEOUT, async {
        store.db().ping().await.ok()?;
        projector.lag(now_micros, limits).await.ok()
    })
    .await
    .ok()
    .flatten();
    let backend = store.db().backend().as_str();
    let Some((head, lags)) = lag else {
        let body = Health {
            status: "database unavailable",
            backend,
            log_head: -1,
            projected: -1,
            projections: vec![],
        };
        return (StatusCode::SERVICE_UNAVAILABLE, body);
    };
    let ready = lags.iter().all(|l| l.ready);
    let body = Health {
        status: if ready { "ready" } else { "projections behind" },
        backend,
        log_head: head,
        projected: lags.iter().map(|l| l.position).min().unwrap_or(head),
        projections: lags.into_iter().map(Into::into).collect(),
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body)
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "system", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    match &state.metrics {
        Some(h) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            h.render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics are not enabled").into_response(),
    }
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "system", responses((status = 200, description = "OpenAPI 3.1 document")))]
pub async fn openapi() -> impl IntoResponse {
    Json(crate::openapi::document())
}
