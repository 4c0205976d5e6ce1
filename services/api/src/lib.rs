//! Roster's HTTP API, one door of several: routes, DTOs, the mapping of
//! [`roster_app::AppError`] to HTTP, and the OpenAPI document. Handlers
//! stay thin: extract, authorise, call the application layer
//! ([`roster_app`]), map the error. Rules live in the aggregates.
#![forbid(unsafe_code)]
// No production function over 120 lines (clippy.toml; issue 13).
#![warn(clippy::too_many_lines)]

use metrics_exporter_prometheus::PrometheusHandle;
use roster_app::App;
use roster_projections::LagLimits;
use roster_sync::SyncService;

pub mod apidocs;
pub mod dto;
pub mod error;
pub mod export;
pub mod extract;
pub mod inputs;
pub mod observe;
pub mod openapi;
pub mod roles;
pub mod routes;
pub mod server;
pub mod telemetry;

pub use error::{ApiError, ApiResult};
pub use routes::{router, router_with_console};

/// What every handler can reach: the application layer (store, read
/// models, clock; reached through `Deref`) and the doors' own parts.
#[derive(Clone)]
pub struct AppState {
    pub app: App,
    pub metrics: Option<PrometheusHandle>,
    /// How far behind the log's head the projections may be for `/readyz`.
    pub ready_lag: LagLimits,
    /// Directory sync (settings, runs, conflicts, exceptions, additions).
    pub sync: SyncService,
}

impl AppState {
    /// The API's state on the application layer and the directory sync
    /// service (which holds the key that seals directory secrets, D7, and
    /// where directory connections may go).
    pub fn new(app: App, sync: SyncService) -> Self {
        AppState {
            app,
            metrics: None,
            ready_lag: LagLimits::default(),
            sync,
        }
    }
}

impl std::ops::Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.app
    }
}
