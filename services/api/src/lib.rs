//! Roster's HTTP API. Handlers stay thin: extract, authorise, execute, map
//! the error. Rules live in the aggregates; orchestration in [`app`].
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use roster_projections::{LagLimits, Projector};
use roster_store::{Clock, SecretKey, Store};
use roster_sync::{DefaultReaders, OutboundPolicy, ReaderFactory, SyncService};

pub mod app;
pub mod dto;
pub mod error;
pub mod export;
pub mod extract;
pub mod imports;
pub mod inputs;
pub mod observe;
pub mod openapi;
pub mod routes;
pub mod server;
pub mod telemetry;

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
    /// How far behind the log's head the projections may be for `/readyz`.
    pub ready_lag: LagLimits,
    /// Directory sync (settings, runs, conflicts, exceptions, additions).
    pub sync: SyncService,
}

impl AppState {
    /// A state with the production directory readers and a throwaway
    /// secret key; a server sets its real key with [`AppState::with_secret_key`].
    pub fn new(store: Store, projector: Arc<Projector>, clock: Arc<dyn Clock>) -> Self {
        let sync = SyncService::new(
            store.clone(),
            projector.clone(),
            clock.clone(),
            SecretKey::generate(),
            Arc::new(DefaultReaders::default()),
        );
        AppState {
            store,
            projector,
            clock,
            metrics: None,
            consistency_timeout: Duration::from_secs(10),
            ready_lag: LagLimits::default(),
            sync,
        }
    }

    /// The key that seals directory secrets (D7).
    pub fn with_secret_key(mut self, key: SecretKey) -> Self {
        self.sync.key = key;
        self
    }

    /// Where directory connections may go (the operator's
    /// `ROSTER_ALLOW_OUTBOUND`): checked when settings are saved or tested,
    /// and by the production readers when they connect.
    pub fn with_outbound(mut self, outbound: Arc<OutboundPolicy>) -> Self {
        self.sync.outbound = outbound.clone();
        self.sync.readers = Arc::new(DefaultReaders::new(outbound));
        self
    }

    /// Other directory readers (tests of the Entra client use an emulator's endpoints through settings instead).
    pub fn with_readers(mut self, readers: Arc<dyn ReaderFactory>) -> Self {
        self.sync.readers = readers;
        self
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
