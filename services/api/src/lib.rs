//! Roster's HTTP API, one door of several: routes, DTOs, the mapping of
//! [`roster_app::AppError`] to HTTP, and the OpenAPI document. Handlers
//! stay thin: extract, authorise, call the application layer
//! ([`roster_app`]), map the error. Rules live in the aggregates.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use roster_app::App;
use roster_projections::{LagLimits, Projector};
use roster_store::{Clock, SecretKey, Store};
use roster_sync::{DefaultReaders, OutboundPolicy, ReaderFactory, SyncService};

pub mod dto;
pub mod error;
pub mod export;
pub mod extract;
pub mod inputs;
pub mod openapi;
pub mod routes;
pub mod server;

pub use error::{ApiError, ApiResult};
pub use routes::router;

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
            app: App::new(store, projector, clock),
            metrics: None,
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

    /// How long a write waits for the projections to show it (read-your-writes).
    pub fn with_consistency_timeout(mut self, timeout: Duration) -> Self {
        self.app.consistency_timeout = timeout;
        self
    }
}

impl std::ops::Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.app
    }
}
