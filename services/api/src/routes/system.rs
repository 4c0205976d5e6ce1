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

/// Readiness: the database answers and the projections are within reach of the log's head.
#[utoipa::path(get, path = "/readyz", tag = "system", responses(
    (status = 200, description = "ready", body = Health),
    (status = 503, description = "not ready", body = Health)))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let db_ok = state.store.db().ping().await.is_ok();
    let head = state.store.head_position().await.unwrap_or(-1);
    let projected = state.projector.checkpoint().await.unwrap_or(-1);
    let body = Health {
        status: if db_ok {
            "ready"
        } else {
            "database unavailable"
        },
        backend: state.store.db().backend().as_str(),
        log_head: head,
        projected,
    };
    let status = if db_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
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
