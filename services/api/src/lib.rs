//! Roster's HTTP API. Handlers stay thin: extract, authorise, execute, map
//! the error. Rules live in the aggregates; orchestration in [`app`].
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use roster_projections::Projector;
use roster_store::{Clock, Store};

pub mod app;
pub mod dto;
pub mod error;
pub mod extract;
pub mod openapi;
pub mod routes;

pub use error::{ApiError, ApiResult};
pub use routes::router;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub projector: Arc<Projector>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Option<PrometheusHandle>,
    /// How long a write waits for the projections to show it (read-your-writes).
    pub consistency_timeout: Duration,
}

impl AppState {
    pub fn new(store: Store, projector: Arc<Projector>, clock: Arc<dyn Clock>) -> Self {
        AppState {
            store,
            projector,
            clock,
            metrics: None,
            consistency_timeout: Duration::from_secs(10),
        }
    }

    /// Waits until the read models show everything up to `position`.
    pub async fn settle(&self, position: i64) {
        if position <= 0 {
            return;
        }
        if !self
            .projector
            .wait_for(position, self.consistency_timeout)
            .await
        {
            tracing::warn!(
                position,
                "the projections did not catch up within the consistency timeout; a read may not show this write yet"
            );
        }
    }
}
